"""Many tenants in one process: one `run --once` cycle against a fast fake API, and its floor.

    .venv/bin/python benchmarks/tenants.py [--tenants 100,1000,3000] [--records-per-page 2]

For each N: ``benchmarks/fakeapi.py`` runs in its own process (raw asyncio, keep-alive; each
log request answers a page of a few new records and no ``next``); a configuration with N API
2.0 tenants x 3 categories and one jsonl sink is written; then, each in a process of its own,
measured with ``wait4``:

* the connector: ``mimecast-connector run --once``, from process start to exit;
* the floor: a bare asyncio HTTP/1.1 client (this file, ``--bare``) making the same requests
  (one token per tenant, one log request per stream) over 32 keep-alive connections, decoding
  each page with msgspec and appending its records to a file.

Printed per N: wall seconds, CPU seconds, the CPU ratio connector / floor, peak RSS, start-up
(process start to the first log request the server sees), the server's connection count and its
own CPU seconds (to show it is not the bottleneck).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

CATEGORIES = ("attachment", "impersonation", "url")
HERE = Path(__file__).resolve().parent


@dataclass
class Measured:
    wall: float
    cpu: float
    rss_mib: float
    startup: float
    connections: int
    server_cpu: float
    written: int  # records in the output file: the floor and the connector must agree


def start_server(tmp: Path, per_page: int) -> tuple[subprocess.Popen[bytes], Path, int]:
    port_file = tmp / f"port-{time.monotonic_ns()}"
    process = subprocess.Popen(
        [
            *(sys.executable, str(HERE / "fakeapi.py"), "--port-file", str(port_file)),
            *("--records-per-page", str(per_page)),
        ],
        stdout=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while not port_file.exists() or not port_file.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the fake API did not start")
        time.sleep(0.02)
    return process, port_file, int(port_file.read_text())


def stop_server(process: subprocess.Popen[bytes]) -> dict[str, float]:
    process.terminate()
    out, _ = process.communicate(timeout=30)
    result: dict[str, float] = json.loads(out.decode().strip().splitlines()[-1])
    return result


def write_config(tmp: Path, tenants: int, port: int) -> Path:
    start = (datetime.now(UTC) - timedelta(minutes=1)).replace(microsecond=0).isoformat()
    lines = [
        'state = "state.db"',
        'dead_letter = "dead-letter.jsonl"',
        "",
        "[[sinks]]",
        'type = "jsonl"',
        'path = "alerts.jsonl"',
    ]
    for n in range(tenants):
        lines += [
            "",
            "[[tenants]]",
            f'name = "tenant-{n:05d}"',
            f'base_url = "http://127.0.0.1:{port}"',
            f'client_id = "client-{n:05d}"',
            f'client_secret = "secret-{n:05d}-0123456789abcdef"',
            f'start = "{start}"',
        ]
    path = tmp / "config.toml"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def measure(command: list[str], tmp: Path, per_page: int, tenants: int) -> Measured:
    server, port_file, port = start_server(tmp, per_page)
    try:
        config = write_config(tmp, tenants, port)
        first = port_file.with_suffix(".first")
        started = time.time()
        began = time.monotonic()
        child = subprocess.Popen(
            [*command, "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=tmp,
        )
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.monotonic() - began
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{command[-1]} failed with {os.waitstatus_to_exitcode(status)}")
        startup = float(first.read_text()) - started if first.exists() else float("nan")
        written = sum(
            path.read_bytes().count(b"\n")
            for path in (tmp / "alerts.jsonl", tmp / "bare.jsonl")
            if path.exists()
        )
    finally:
        stats = stop_server(server)
    return Measured(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        rss_mib=usage.ru_maxrss / 1024,
        startup=startup,
        connections=int(stats["connections"]),
        server_cpu=stats["cpu_s"],
        written=written,
    )


# --- the floor: a bare asyncio client ---------------------------------------------------------


class Pool:
    """Keep-alive HTTP/1.1 connections to one host, at most ``size`` of them."""

    def __init__(self, port: int, size: int) -> None:
        self.port = port
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self.slots = asyncio.Semaphore(size)

    async def post(self, path: str, body: bytes, headers: str = "") -> bytes:
        async with self.slots:
            if self.idle.empty():
                connection = await asyncio.open_connection("127.0.0.1", self.port)
            else:
                connection = self.idle.get_nowait()
            reader, writer = connection
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
                f"{headers}\r\n".encode()
                + body
            )
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            payload = await reader.readexactly(length)
            self.idle.put_nowait(connection)
            return payload


class _Token(msgspec.Struct):
    access_token: str


class _Page(msgspec.Struct):
    data: list[dict[str, list[msgspec.Raw]]]


async def bare(config: dict[str, Any], config_path: Path) -> None:
    port = int(config["tenants"][0]["base_url"].rsplit(":", 1)[1])
    pool = Pool(port, 32)
    token_decoder = msgspec.json.Decoder(_Token)
    page_decoder = msgspec.json.Decoder(_Page)
    out = open(config_path.parent / "bare.jsonl", "ab")  # noqa: SIM115, ASYNC230 - the floor
    now = datetime.now(UTC)
    window = {
        "from": (now - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S+0000"),
        "to": now.strftime("%Y-%m-%dT%H:%M:%S+0000"),
        "oldestFirst": True,
    }
    body = msgspec.json.encode({"meta": {"pagination": {"pageSize": 500}}, "data": [window]})

    async def stream(token: str, category: str) -> None:
        page = page_decoder.decode(
            await pool.post(
                f"/api/ttp/{category}/get-logs",
                body,
                f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n",
            )
        )
        out.write(
            b"".join(bytes(r) + b"\n" for item in page.data for rs in item.values() for r in rs)
        )

    async def tenant(entry: dict[str, str]) -> None:
        form = f"grant_type=client_credentials&client_id={entry['client_id']}&client_secret={entry['client_secret']}"
        token = token_decoder.decode(
            await pool.post(
                "/oauth/token",
                form.encode(),
                "Content-Type: application/x-www-form-urlencoded\r\n",
            )
        ).access_token
        await asyncio.gather(*(stream(token, c) for c in CATEGORIES))

    await asyncio.gather(*(tenant(t) for t in config["tenants"]))
    out.flush()
    os.fsync(out.fileno())
    out.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--tenants", default="100,1000,3000")
    parser.add_argument("--records-per-page", type=int, default=2)
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        asyncio.run(bare(tomllib.loads(args.config.read_text("utf-8")), args.config))
        return
    connector = [sys.executable, "-m", "mimecast_connector", "run", "--once"]
    floor = [sys.executable, str(Path(__file__).resolve()), "--bare"]
    print(
        f"{'tenants':>8} {'streams':>8} {'':<10}{'wall s':>8}{'CPU s':>8}{'ratio':>8}"
        f"{'RSS MiB':>9}{'start s':>9}{'sockets':>9}{'server CPU s':>14}{'records':>9}"
    )
    for tenants in (int(n) for n in args.tenants.split(",")):
        results = {}
        for name, command in (("floor", floor), ("connector", connector)):
            with tempfile.TemporaryDirectory() as folder:
                results[name] = measure(command, Path(folder), args.records_per_page, tenants)
        assert (
            results["floor"].written
            == results["connector"].written
            == tenants * 3 * (args.records_per_page)
        ), "the connector and the floor did not write the same records"
        for name in ("floor", "connector"):
            m = results[name]
            ratio = m.cpu / results["floor"].cpu
            print(
                f"{tenants:>8} {tenants * 3:>8} {name:<10}{m.wall:>8.1f}{m.cpu:>8.1f}{ratio:>7.1f}x"
                f"{m.rss_mib:>9.0f}{m.startup:>9.2f}{m.connections:>9}{m.server_cpu:>14.1f}"
                f"{m.written:>9}",
                flush=True,
            )


if __name__ == "__main__":
    main()
