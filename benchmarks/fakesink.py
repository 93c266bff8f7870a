"""A fast webhook receiver for the fleet benchmark: raw asyncio, HTTP/1.1 keep-alive.

    python benchmarks/fakesink.py --port-file FILE

Not the soak's receiver (slow on purpose, and keeping every id): this one reads each request,
counts the alerts in its body (a webhook POST is one JSON array) and answers ``200`` with
``Content-Length: 0`` at once, so that the workers are what is measured. It writes its port to
``--port-file`` once it listens, and its CPU seconds, connection, request and alert counts to
stdout as one JSON line on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path

from fakeapi import serve  # beside this file (scripts run with their folder on sys.path)

_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


class Sink:
    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0
        self.alerts = 0
        self.bytes = 0
        self.bad = 0  # bodies that were not a JSON array

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                chunked = False
                for header in head.split(b"\r\n")[1:]:
                    name, _, value = header.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"transfer-encoding" and b"chunked" in value.lower():
                        chunked = True
                body = await _chunked(reader) if chunked else await reader.readexactly(length)
                self.requests += 1
                self.bytes += len(body)
                self.count(body)
                writer.write(_OK)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    def count(self, body: bytes) -> None:
        try:
            alerts = json.loads(body)
        except ValueError:
            self.bad += 1
            return
        if isinstance(alerts, list):
            self.alerts += len(alerts)
        else:
            self.bad += 1


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers are sent: the empty line
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", type=Path, required=True)
    args = parser.parse_args()
    sink = Sink()
    await serve(sink.handle, args.port_file)
    times = os.times()
    print(
        json.dumps(
            {
                "cpu_s": times.user + times.system,
                "connections": sink.connections,
                "requests": sink.requests,
                "alerts": sink.alerts,
                "bytes": sink.bytes,
                "bad": sink.bad,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main())
