"""Crash soak: SIGKILL a real `mimecast-connector run` again and again; nothing lost, nothing twice.

    .venv/bin/python scripts/soak.py [--minutes 10] [--kill-every 3] [--seed 1] [--records 20000]
                                     [--full-disk]

The simulator runs in this process (a thread), with a day of history, live records arriving,
and late records appearing now and then (dated before the poll that first misses them, within
the lookback). The connector runs as a child process (`run`, polling every second, pages of
50, so there are many commits to land between) with two sinks, a jsonl file and a webhook
(a slow receiver in this process), and is killed with SIGKILL at random moments (seeded) and
started again, for the given time. Then live mode stops, the connector runs one
last `--once`, and the output is checked against a reference: a clean `run --once` of a fresh
state over the same data.

It prints kills, alerts, lost (in the reference, not in the jsonl output), duplicated (more
than once in it), what the webhook missed and received again (it is at least once: repeats
are expected, misses are not), and the connector's resident memory sampled across its lives;
it exits 1 if anything was lost or duplicated. The CI test `tests/e2e/test_crash.py` runs it briefly.

``--full-disk`` (root only: it mounts tmpfs filesystems) also puts the state database and the
output files (jsonl and dead-letter) on two small tmpfs filesystems of their own, and a thread
fills them again and again while the connector runs: a filler file written until the
filesystem is full, or the filesystem remounted down to what it holds; after a while the space
comes back (the filler removed, the filesystem remounted bigger). The result required is the
same: nothing lost, nothing duplicated in the jsonl output (`make soak-disk`).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import http.server
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mimecast_connector import Category
from mimecast_connector._categories import LOG_CATEGORIES
from mimecast_connector.simulator import SimTenant, Simulator

SHARE = {Category.ATTACHMENT: 0.3, Category.IMPERSONATION: 0.2, Category.URL: 0.5}
#: tmpfs sizes of ``--full-disk``: room for the whole soak's output, until the filler takes it.
STATE_KIB, OUT_KIB = 32 * 1024, 128 * 1024


class SlowReceiver:
    """A webhook receiver on loopback that takes its time (0 to 300 ms) to acknowledge.

    The second sink widens the window between the jsonl sink's write and the checkpoint commit,
    so kills land there often: exactly the moment the jsonl sink's tail cut exists for.
    """

    def __init__(self, seed: int, slowest: float = 0.3) -> None:
        self.ids: Counter[str] = Counter()
        rng = random.Random(seed)
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                time.sleep(rng.uniform(0.0, slowest))
                try:
                    alerts = json.loads(body)
                except ValueError:  # the sender was killed mid-request: not acknowledged
                    return
                owner.ids.update(alert["id"] for alert in alerts)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                return  # senders are killed mid-request on purpose

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/ingest"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class Report:
    kills: int = 0
    alerts: int = 0
    expected: int = 0
    lost: int = 0
    duplicated: int = 0
    webhook_missing: int = 0
    webhook_repeats: int = 0
    late_added: int = 0
    rss_mib: list[float] = field(default_factory=list)
    disk_full: int = 0
    no_space: int = 0
    exits: Counter[int] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.duplicated == 0
            and self.alerts == self.expected
            and self.webhook_missing == 0
        )


def write_config(
    folder: Path,
    url: str,
    tenant: SimTenant,
    start: datetime,
    webhook: str | None = None,
    *,
    state: str = "state.db",
    out: str = "",
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.toml"
    path.write_text(
        f'state = "{state}"\ndead_letter = "{out}dead-letter.jsonl"\nlookback = "30m"\npage_size = 50\n\n'
        f'[[tenants]]\nname = "soak"\nbase_url = "{url}"\nclient_id = "{tenant.client_id}"\n'
        f'client_secret = "{tenant.client_secret}"\nstart = "{start.isoformat()}"\npoll_interval = "1s"\n\n'
        f'[[sinks]]\ntype = "jsonl"\npath = "{out}alerts.jsonl"\n'
        + (f'\n[[sinks]]\ntype = "webhook"\nurl = "{webhook}"\n' if webhook else "")
    )
    return path


def command(config: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mimecast_connector",
        "run",
        "--config",
        str(config),
        "--log-level",
        "error",
        *extra,
    ]


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def ids_in(path: Path) -> Counter[str]:
    if not path.exists():
        return Counter()
    return Counter(json.loads(line)["id"] for line in path.read_text("utf-8").splitlines())


def late_record(
    tenant: SimTenant, rng: random.Random, lookback_s: float
) -> tuple[Category, dict[str, object]]:
    """A record that becomes visible only after the next request, dated inside the lookback."""
    category = rng.choice(LOG_CATEGORIES)
    now = datetime.now(UTC)
    when = now - timedelta(seconds=rng.uniform(30, lookback_s * 0.8))
    # Generate it elsewhere (a scratch simulator of the same seed) so it is not visible yet.
    scratch = Simulator(seed=rng.randrange(1 << 30)).add_tenant("scratch")
    record = scratch.generate(category, count=1, start=when, end=when + timedelta(seconds=1))[0]
    return category, record


class DiskFiller:
    """Fills two small tmpfs filesystems again and again, and gives the space back.

    Each round picks the state filesystem, the output one or both, and either writes a filler
    file until the filesystem is full or remounts it down to the size it holds now; after 0.5 to
    3 s the space comes back (the filler removed, the filesystem remounted at its full size).
    Rounds start every 1 to 4 s, seeded, until :meth:`stop`.
    """

    def __init__(self, mounts: list[Path], size_kib: dict[Path, int], seed: int) -> None:
        self.mounts = mounts
        self.size_kib = size_kib
        self.rounds = 0
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        for where in self.mounts:
            self._give_back(where)

    def _run(self) -> None:
        while not self._stop.wait(self._rng.uniform(1.0, 4.0)):
            chosen = self._rng.choice([self.mounts[:1], self.mounts[1:], self.mounts])
            by_remount = self._rng.random() < 0.4
            for where in chosen:
                if by_remount:
                    used_kib = (shutil.disk_usage(where).used + 1023) // 1024
                    remount(where, used_kib + 4)  # tmpfs keeps a few KiB of its own
                else:
                    fill(where / "filler")
            self.rounds += 1
            self._stop.wait(self._rng.uniform(0.5, 3.0))
            for where in chosen:
                self._give_back(where)

    def _give_back(self, where: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            (where / "filler").unlink()
        remount(where, self.size_kib[where])


def fill(path: Path) -> None:
    """Write ``path`` until its filesystem has no room left."""
    chunk = b"\0" * 65536
    with path.open("ab", buffering=0) as filler:
        while True:
            try:
                filler.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    return
                chunk = chunk[: len(chunk) // 2]


def remount(where: Path, size_kib: int) -> None:
    subprocess.run(
        ["mount", "-o", f"remount,size={size_kib}k", str(where)],  # noqa: S607
        check=False,
        capture_output=True,
    )


@contextlib.contextmanager
def tmpfs(where: Path, size_kib: int) -> Iterator[Path]:
    """A tmpfs of ``size_kib`` mounted at ``where`` for the soak (root only)."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(where)],  # noqa: S607
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(
            f"--full-disk mounts tmpfs filesystems, which needs root: {done.stderr.decode().strip()}"
        )
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)  # noqa: S607


def soak(
    *,
    seconds: float,
    kill_every: float,
    seed: int,
    records: int,
    live_rate: float = 3.0,
    folder: Path | None = None,
    say: bool = True,
    full_disk: bool = False,
) -> Report:
    rng = random.Random(seed)
    report = Report()
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(hours=24)
    with (
        tempfile.TemporaryDirectory() as scratch_dir,
        Simulator(seed=seed) as sim,
        contextlib.ExitStack() as mounts,  # unmounted first, before the folder is removed
    ):
        root = folder or Path(scratch_dir)
        tenant = sim.add_tenant("soak")
        for category, share in SHARE.items():
            tenant.generate(
                category, count=int(records * share), start=start, end=now - timedelta(minutes=1)
            )
        if live_rate > 0:
            tenant.start_live(rate_per_second=live_rate)
        receiver = SlowReceiver(seed)
        filler: DiskFiller | None = None
        if full_disk:
            state_fs = mounts.enter_context(tmpfs(root / "run" / "state", STATE_KIB))
            out_fs = mounts.enter_context(tmpfs(root / "run" / "out", OUT_KIB))
            config = write_config(
                root / "run",
                sim.url,
                tenant,
                start,
                receiver.url,
                state="state/state.db",
                out="out/",
            )
            output = root / "run" / "out" / "alerts.jsonl"
            filler = DiskFiller([state_fs, out_fs], {state_fs: STATE_KIB, out_fs: OUT_KIB}, seed)
            filler.start()
        else:
            config = write_config(root / "run", sim.url, tenant, start, receiver.url)
            output = root / "run" / "alerts.jsonl"
        log_path = root / "connector.log"  # the connector's errors, across its lives
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with log_path.open("ab") as log:  # the child keeps its own descriptor
                child = subprocess.Popen(command(config), stdout=subprocess.DEVNULL, stderr=log)
            life = rng.uniform(0.2, 2 * kill_every)
            end_of_life = min(time.monotonic() + life, deadline)
            while time.monotonic() < end_of_life and child.poll() is None:
                time.sleep(0.1)
                sample = rss_mib(child.pid)
                if sample is not None:
                    report.rss_mib.append(sample)
            if rng.random() < 0.3:
                category, record = late_record(tenant, rng, 30 * 60)
                tenant.add_late(category, [record], after_requests=rng.randrange(1, 5))
                report.late_added += 1
            if child.poll() is None:
                child.send_signal(signal.SIGKILL)
                report.kills += 1
            report.exits[child.wait()] += 1
            if say and report.kills % 10 == 0 and report.kills:
                print(
                    f"  {report.kills} kills, {sum(ids_in(output).values())} alerts so far"
                    + (f", {filler.rounds} disk-full rounds" if filler else ""),
                    flush=True,
                )
        if filler is not None:
            filler.stop()  # the space comes back for the final passes
            report.disk_full = filler.rounds
        tenant.stop_live()
        # Two clean passes: the requests of the first make the last late records visible
        # (each waits for at most four more requests), the second reads them.
        for _ in range(2):
            final = subprocess.run(command(config, "--once"), capture_output=True, timeout=600)
            if final.returncode != 0:
                raise SystemExit(f"a final --once failed:\n{final.stderr.decode(errors='replace')}")
        reference = write_config(root / "reference", sim.url, tenant, start)
        done = subprocess.run(command(reference, "--once"), capture_output=True, timeout=600)
        if done.returncode != 0:
            raise SystemExit(f"the reference run failed:\n{done.stderr.decode(errors='replace')}")
        logged = log_path.read_text("utf-8", "replace") if log_path.exists() else ""
        report.no_space = logged.count("no space left") + logged.count("database or disk is full")
        got = ids_in(output)
        want = ids_in(root / "reference" / "alerts.jsonl")
        receiver.close()
    report.webhook_missing = len(set(want) - set(receiver.ids))
    report.webhook_repeats = sum(n - 1 for n in receiver.ids.values() if n > 1)
    report.alerts = sum(got.values())
    report.expected = sum(want.values())
    report.lost = len(set(want) - set(got))
    report.duplicated = sum(n - 1 for n in got.values() if n > 1)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--kill-every", type=float, default=3.0, help="mean seconds between kills")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument(
        "--full-disk",
        action="store_true",
        help="state and output on small tmpfs filesystems that fill and empty again (root only)",
    )
    args = parser.parse_args()
    print(
        f"soak: {args.minutes} min, a SIGKILL every ~{args.kill_every} s, seed {args.seed}, {args.records:,} records + live + late"
        + (", state and output filesystems filling up" if args.full_disk else "")
    )
    began = time.monotonic()
    report = soak(
        seconds=args.minutes * 60,
        kill_every=args.kill_every,
        seed=args.seed,
        records=args.records,
        full_disk=args.full_disk,
    )
    rss = report.rss_mib or [0.0]
    quarter = max(1, len(rss) // 4)
    print(
        f"{report.kills} kills in {(time.monotonic() - began) / 60:.1f} min; {report.alerts:,} alerts "
        f"(reference {report.expected:,}); jsonl: lost {report.lost}, duplicated {report.duplicated}; "
        f"webhook (at least once): missing {report.webhook_missing}, repeats {report.webhook_repeats}; "
        f"{report.late_added} late records added; connector RSS MiB: first quarter max "
        f"{max(rss[:quarter]):.0f}, last quarter max {max(rss[-quarter:]):.0f}, overall max {max(rss):.0f}"
        + (
            f"; {report.disk_full} disk-full rounds, {report.no_space} full-disk errors logged"
            if args.full_disk
            else ""
        )
        + "; child exits: "
        + ", ".join(f"{code}: {n}" for code, n in sorted(report.exits.items()))
    )
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
