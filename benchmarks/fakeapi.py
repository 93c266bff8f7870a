"""A fast fake Mimecast API 2.0 for the many-tenant benchmark: raw asyncio, HTTP/1.1 keep-alive.

    python benchmarks/fakeapi.py --port-file FILE [--records-per-page 2]

Not the simulator (which is faithful, and slow on purpose where Mimecast is): this one answers
``POST /oauth/token`` for any ``client_id`` and every log call (the three TTP ``get-logs`` and
``get-rejections``) with a page of a few
*new* records dated a few seconds before the window's end, and no ``next``, so one poll of a
stream is one request. It does as little as a server can, so that the client side is what is
measured; it writes its CPU seconds, connection count and request count to stdout as one JSON
line on SIGTERM or SIGINT, and the time of the first log request (epoch seconds) to
``<port-file>.first`` when it arrives.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

_TIME = "%Y-%m-%dT%H:%M:%S%z"
_TOKEN_BODY = json.dumps(
    {"access_token": "bench-token", "token_type": "Bearer", "expires_in": 1800}
).encode()

# One record per category, in the shapes of Mimecast's logs; ``{when}`` and ``{n}`` are filled in.
_RECORDS = {
    "attachment": '{{"result":"malicious","date":"{when}","senderAddress":"a@evil.example",'
    '"recipientAddress":"u@corp.example","fileName":"invoice-{n}.xlsm","fileType":"xlsm",'
    '"actionTriggered":"block","route":"inbound","details":"Malicious","definition":"Default",'
    '"subject":"Invoice {n}","messageId":"<{n}@evil.example>","sha256":"{n:064x}"}}',
    "impersonation": '{{"id":"MTOKEN:bench{n}","eventTime":"{when}","taggedMalicious":true,'
    '"senderAddress":"ceo@evil.example","recipientAddress":"u@corp.example","subject":"Wire {n}",'
    '"definition":"Default","hits":3,"action":"hold","identifiers":["similar_internal_domain"],'
    '"messageId":"<{n}@evil.example>","senderIpAddress":"203.0.113.9"}}',
    "url": '{{"date":"{when}","scanResult":"malicious","url":"https://evil.example/{n}",'
    '"category":"Phishing","userEmailAddress":"u@corp.example","action":"block","route":"inbound",'
    '"ttpDefinition":"Default","creationMethod":"User Click","messageId":"<{n}@evil.example>",'
    '"subject":"Parcel {n}","sendingIp":"203.0.113.7","fromUserEmailAddress":"a@evil.example"}}',
    "rejection": '{{"id":"eNpVbench{n}","created":"{when}","description":"Invalid Recipient Address",'
    '"info":"Invalid Recipient","type":14012,"fromAddress":"probe{n}@evil.example",'
    '"toAddress":"u{n}@corp.example","ipAddress":"203.0.113.5","remoteName":"mx.evil.example",'
    '"spamScore":0,"detectionLevel":"not_initiated","manageRecipient":"false"}}',
}
_LIST_KEYS = {
    "attachment": "attachmentLogs",
    "impersonation": "impersonationLogs",
    "url": "clickLogs",
    "rejection": "rejections",
}
#: Request path -> (category, the window field that holds its end).
_PATHS = {
    **{
        f"/api/ttp/{c}/get-logs".encode(): (c, "to") for c in ("attachment", "impersonation", "url")
    },
    b"/api/gateway/get-rejections": ("rejection", "end"),
}


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Server:
    def __init__(self, per_page: int) -> None:
        self.per_page = per_page
        self.connections = 0
        self.requests = 0
        self.serial = 0
        self.first_log: float | None = None
        self.first_file: Path | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, _, rest = head.partition(b"\r\n")
                length = 0
                for header in rest.split(b"\r\n"):
                    name, _, value = header.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
                self.requests += 1
                payload = self.answer(line.split(b" ")[1], body)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                    b"\r\n%b" % (len(payload), payload)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def answer(self, path: bytes, body: bytes) -> bytes:
        if path == b"/oauth/token":
            return _TOKEN_BODY
        category, end_field = _PATHS[path]
        if self.first_log is None:
            self.first_log = time.time()
            if self.first_file is not None:
                self.first_file.write_text(repr(self.first_log))
        window = json.loads(body)["data"][0]
        end = datetime.strptime(window[end_field], _TIME)
        when = end.timestamp() - 5
        stamp = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")
        records = []
        for _ in range(self.per_page):
            self.serial += 1
            records.append(_RECORDS[category].format(when=stamp, n=self.serial))
        return (
            b'{"meta":{"status":200,"pagination":{"pageSize":%d,"totalCount":%d}},"data":[{"%b":[%b]}],"fail":[]}'
            % (
                self.per_page,
                len(records),
                _LIST_KEYS[category].encode(),
                ",".join(records).encode(),
            )
        )


async def serve(handle: Handler, port_file: Path) -> None:
    """Serve ``handle`` on a free loopback port, written to ``port_file``, until SIGTERM or
    SIGINT (the benchmark's fake servers share this)."""
    listener = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
    port_file.write_text(str(listener.sockets[0].getsockname()[1]))  # noqa: ASYNC240 - once, before any client connects
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with listener:
        await stop.wait()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--records-per-page", type=int, default=2)
    args = parser.parse_args()
    server = Server(args.records_per_page)
    server.first_file = args.port_file.with_suffix(".first")
    await serve(server.handle, args.port_file)
    times = os.times()
    print(
        json.dumps(
            {
                "cpu_s": times.user + times.system,
                "connections": server.connections,
                "requests": server.requests,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main())
