"""End to end: `run --once` against the simulator, for N records, on this machine.

    .venv/bin/python benchmarks/run_once.py [--records 100000] [--api 2.0] [--process]

`mimecast-connector simulate` runs as its own process with N records spread over the three
categories and a day; the connector, in this process, reads them all over HTTP on loopback in
pages of 500 and writes native JSON lines to a temporary folder, committing after every page.
Prints records and alerts per second, and this process's peak memory, which stays flat as N
grows (compare 100,000 with 300,000).

``--process``: each side runs as a process of its own, timed from its start to its exit, so
Python's start-up and each side's imports count as a user pays them: the connector as
``python -m mimecast_connector run --once --config ...``, the bare client as this file with
``--bare`` (importing httpx and msgspec only).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import msgspec

# The connector is imported only where it runs (``main``): ``--bare`` is a process of its own
# that must pay for httpx and msgspec alone.

#: Each log's share of the records.
SHARE = {"attachment": 0.3, "impersonation": 0.2, "url": 0.5}
#: Each log's path and the key of its records' list, as the bare client reads them.
Log = tuple[str, str]


def start_simulator(tmp: Path, records: int) -> tuple[subprocess.Popen[bytes], str]:
    counts = ", ".join(f"{name} = {int(records * share)}" for name, share in SHARE.items())
    scenario = tmp / "scenario.toml"
    scenario.write_text(
        f'seed = 5\n[[tenants]]\nname = "bench"\nclient_id = "bench-id"\nclient_secret = "bench-secret"\n'
        f'app_id = "bench-app"\napp_key = "bench-app-key"\naccess_key = "bench-access"\n'
        f'secret_key = "{SECRET_KEY}"\nhistory = "24h"\nrecords = {{ {counts} }}\n'
    )
    port_file = tmp / "port"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mimecast_connector",
            "simulate",
            "--port",
            "0",
            "--scenario",
            str(scenario),
            "--port-file",
            str(port_file),
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not port_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the simulator did not start")
        time.sleep(0.1)
    return process, f"http://127.0.0.1:{port_file.read_text().strip()}"


SECRET_KEY = "YmVuY2gtc2VjcmV0LWtleS1ieXRlcw=="
_WINDOW_FORMAT = "%Y-%m-%dT%H:%M:%S+0000"


async def bare(url: str, start: datetime, out: Path, logs: list[Log]) -> int:
    """The floor: a plain httpx client fetching the same pages (token, then each category's
    pages concurrently), decoding each with msgspec and appending every record as a line to a
    file, fsynced once at the end. Returns the records written."""
    decoder = msgspec.json.Decoder()
    encoder = msgspec.json.Encoder()
    window = {
        "from": start.strftime(_WINDOW_FORMAT),
        "to": datetime.now(UTC).strftime(_WINDOW_FORMAT),
        "oldestFirst": True,
    }
    written = 0
    with out.open("ab") as sink:
        async with httpx.AsyncClient(base_url=url, timeout=60.0) as http:
            answer = await http.post(
                "/oauth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": "bench-id",
                    "client_secret": "bench-secret",
                },
            )
            headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}

            async def stream(path: str, list_key: str) -> None:
                nonlocal written
                token = None
                while True:
                    pagination: dict[str, object] = {"pageSize": 500}
                    if token is not None:
                        pagination["pageToken"] = token
                    body = {"meta": {"pagination": pagination}, "data": [window]}
                    page = decoder.decode(
                        (await http.post(path, json=body, headers=headers)).content
                    )
                    records = page["data"][0][list_key] if page["data"] else []
                    sink.write(encoder.encode_lines(records))
                    written += len(records)
                    token = page["meta"].get("pagination", {}).get("next")
                    if not token or not records:
                        return

            await asyncio.gather(*(stream(path, key) for path, key in logs))
        sink.flush()
        os.fsync(sink.fileno())
    return written


def timed(command: list[str], cwd: Path) -> float:
    """Seconds from starting ``command`` to its exit, which must be 0 (else its output is
    shown)."""
    began = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True)
    took = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{command[2:4]} failed ({done.returncode}):\n{done.stderr.decode()}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--api", choices=["2.0", "1.0"], default="2.0")
    parser.add_argument("--process", action="store_true", help="time each side as a process")
    parser.add_argument(
        "--bare", nargs=4, metavar=("URL", "START", "OUT", "LOGS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.process and args.api != "2.0":
        parser.error("--process compares with the bare client, which speaks API 2.0 only")
    if args.bare:
        url, start_text, out, logs = args.bare
        asyncio.run(
            bare(url, datetime.fromisoformat(start_text), Path(out), msgspec.json.decode(logs))
        )
        return
    from mimecast_connector._categories import LOG_CATEGORIES
    from mimecast_connector.config import load_config
    from mimecast_connector.runner import Runner

    logs = [(c.path, c.list_key) for c in LOG_CATEGORIES]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        process, url = start_simulator(tmp, args.records)
        try:
            made = sum(int(args.records * share) for share in SHARE.values())
            creds = (
                'client_id = "bench-id"\nclient_secret = "bench-secret"'
                if args.api == "2.0"
                else f'app_id = "bench-app"\napp_key = "bench-app-key"\naccess_key = "bench-access"\nsecret_key = "{SECRET_KEY}"'
            )
            start = datetime.now(UTC) - timedelta(days=2)
            config_path = tmp / "config.toml"
            config_path.write_text(
                f'[[tenants]]\nname = "bench"\napi = "{args.api}"\nbase_url = "{url}"\n{creds}\n'
                f'start = "{start.isoformat()}"\n\n[[sinks]]\ntype = "jsonl"\npath = "alerts.jsonl"\n'
            )
            config = load_config(config_path, {})

            async def run() -> tuple[int, int]:
                runner = Runner(config)
                await runner.start()
                try:
                    results = await runner.run_once()
                finally:
                    await runner.aclose()
                failed = [r for r in results if r.error is not None]
                if failed:
                    raise SystemExit(f"failed: {failed}")
                return sum(r.alerts for r in results), sum(
                    r.counts.get("fetched", 0) for r in results
                )

            if args.process:
                measure_processes(tmp, url, start, config_path, made, logs)
                return
            floors = []
            if args.api == "2.0":
                began = time.perf_counter()
                assert asyncio.run(bare(url, start, tmp / "bare-1.jsonl", logs)) == made
                floors.append(time.perf_counter() - began)
            began = time.perf_counter()
            alerts, fetched = asyncio.run(run())
            took = time.perf_counter() - began
            size = (tmp / "alerts.jsonl").stat().st_size
            if args.api == "2.0":
                began = time.perf_counter()
                assert asyncio.run(bare(url, start, tmp / "bare-2.jsonl", logs)) == made
                floors.append(time.perf_counter() - began)
        finally:
            process.terminate()
            process.wait(timeout=30)
    assert fetched == made, f"fetched {fetched} of {made}"
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"run --once, API {args.api}: {made:,} records, {alerts:,} alerts, {size / 2**20:.1f} MiB written "
        f"in {took:.1f} s: {made / took:,.0f} records/s, {alerts / took:,.0f} alerts/s; "
        f"connector peak RSS {peak_mib:.0f} MiB"
    )
    if floors:
        floor = min(floors)
        print(
            f"bare httpx client, same pages, before and after: best {floor:.1f} s "
            f"({made / floor:,.0f} records/s); connector / bare = {took / floor:.2f}x"
        )


def measure_processes(
    tmp: Path, url: str, start: datetime, config: Path, made: int, logs: list[Log]
) -> None:
    """``--process``: bare client, connector, bare client, each a process of its own."""
    bare_command = [sys.executable, __file__, "--bare", url, start.isoformat()]
    shown = msgspec.json.encode(logs).decode()
    floors = [timed([*bare_command, str(tmp / "bare-1.jsonl"), shown], tmp)]
    took = timed(
        [sys.executable, "-m", "mimecast_connector", "run", "--once", "--config", str(config)],
        tmp,
    )
    floors.append(timed([*bare_command, str(tmp / "bare-2.jsonl"), shown], tmp))
    for name in ("bare-1.jsonl", "bare-2.jsonl"):
        assert (tmp / name).read_bytes().count(b"\n") == made, name
    alerts = (tmp / "alerts.jsonl").read_bytes().count(b"\n")
    floor = min(floors)
    print(
        f"as processes, API 2.0: {made:,} records, {alerts:,} alerts; `run --once` from its "
        f"start to its exit {took:.2f} s; the bare client as a process, best of two "
        f"{floor:.2f} s; connector / bare = {took / floor:.2f}x"
    )


if __name__ == "__main__":
    main()
