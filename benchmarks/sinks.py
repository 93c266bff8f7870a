"""Alerts per second into each kind of sink, against the receiver its tests deliver to.

    .venv/bin/python benchmarks/sinks.py [--alerts N] [--batch B] [--repeat R] [--only NAME ...]

Each sink is built by its conformance adapter (``tests/sinks/adapter_<type>.py``), exactly as
the conformance suite builds it, and delivers N alerts (URL clicks, all distinct) in batches of
B, each batch acknowledged before the next, as the runner does. Printed per adapter, median of R
runs: alerts per second, and the median and 95th-percentile latency of one batch (from the
call to ``deliver`` to its acknowledgement). As a floor, the same alerts encoded (``native``,
one JSON array a batch) with nothing sent.

Caveats, also in the README: the receivers are fakes written from each protocol's
documentation (except ``syslog-rsyslog``, a real rsyslogd, and ``kafka``, librdkafka's mock
cluster) and most run in threads of this same process, so they share its one interpreter and
its CPU: these numbers bound the sink's own cost from below, not a real server's throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.sinks.adapters import Adapter, collected
from tests.sinks.helpers import clicks
from tests.sinks.receiver import Receiver

from mimecast_connector.alerts import ARRAY_ENCODERS

#: Adapters whose settings exist to test an edge, not to be measured (run them with --only).
EDGE_CASES = {
    "elasticsearch-basic-gzip": "its 8 KiB body cap exists to test splitting (a request per alert)",
}


class _Request:
    """What the adapters ask of pytest's ``request``: finalizers, and the two fixtures they use."""

    def __init__(self, tmp: Path) -> None:
        self._tmp = tmp
        self.finalizers: list[Callable[[], Any]] = []

    def addfinalizer(self, finalizer: Callable[[], Any]) -> None:
        self.finalizers.append(finalizer)

    def getfixturevalue(self, name: str) -> Any:
        if name == "receiver":
            receiver = Receiver()
            receiver.start()
            self.addfinalizer(receiver.stop)
            return receiver
        if name == "tmp_path_factory":
            return _TmpFactory(self._tmp)
        raise LookupError(f"the benchmark cannot make the fixture {name!r}")

    def close(self) -> None:
        for finalizer in reversed(self.finalizers):
            finalizer()


class _TmpFactory:
    def __init__(self, base: Path) -> None:
        self._base = base
        self._count = 0

    def mktemp(self, name: str) -> Path:
        self._count += 1
        path = self._base / f"{name}{self._count}"
        path.mkdir()
        return path


async def _run(adapter: Adapter, batches: list[list[Any]]) -> tuple[float, list[float]]:
    sink = await adapter.open("native")
    latencies = []
    started = time.perf_counter()
    for batch in batches:
        began = time.perf_counter()
        sink.committed(await sink.deliver(batch))
        latencies.append(time.perf_counter() - began)
    wall = time.perf_counter() - started
    await sink.aclose()
    return wall, latencies


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alerts", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=None, help="adapter names (see the output)")
    args = parser.parse_args()
    alerts = clicks(args.alerts)
    batches = [alerts[i : i + args.batch] for i in range(0, len(alerts), args.batch)]
    encode = ARRAY_ENCODERS["native"]
    floor = []
    for _ in range(args.repeat):
        began = time.perf_counter()
        for batch in batches:
            encode(batch)
        floor.append(time.perf_counter() - began)
    floor_s = statistics.median(floor)
    print(f"{args.alerts:,} alerts in batches of {args.batch}, median of {args.repeat} runs")
    print(
        f"{'sink (adapter)':<26}{'alerts/s':>12}{'batch p50 ms':>14}{'batch p95 ms':>14}{'x floor':>9}"
    )
    print(f"{'(floor: encode only)':<26}{args.alerts / floor_s:>12,.0f}")
    factories = collected()
    # One folder for the whole run: some receivers keep what they made in it (the syslog test CA)
    # for the session, as pytest's tmp_path_factory would.
    session = Path(tempfile.mkdtemp(prefix="bench-sinks-"))
    for name in sorted(factories):
        if args.only and name not in args.only:
            continue
        if not args.only and name in EDGE_CASES:
            print(f"{name:<26}  not run: {EDGE_CASES[name]}")
            continue
        walls: list[float] = []
        latencies: list[float] = []
        problem = None
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory(dir=session) as tmp:
                request = _Request(session)
                try:
                    adapter = factories[name](request, Path(tmp))  # type: ignore[arg-type]
                    wall, batch_latencies = asyncio.run(_run(adapter, batches))
                except Exception as exc:
                    problem = f"{type(exc).__name__}: {exc}"[:70]
                    break
                finally:
                    request.close()
            walls.append(wall)
            latencies.extend(batch_latencies)
        if problem is not None:
            print(f"{name:<26}  not run: {problem}")
            continue
        wall = statistics.median(walls)
        latencies.sort()
        p50 = latencies[len(latencies) // 2] * 1000
        p95 = latencies[int(len(latencies) * 0.95)] * 1000
        print(
            f"{name:<26}{args.alerts / wall:>12,.0f}{p50:>14.1f}{p95:>14.1f}{wall / floor_s:>8.1f}x"
        )
    shutil.rmtree(session, ignore_errors=True)


if __name__ == "__main__":
    main()
