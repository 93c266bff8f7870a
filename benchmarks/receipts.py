"""The SIEM receipt feed's hot path: gzip bytes to alerts, on one core.

    .venv/bin/python benchmarks/receipts.py [--rows 1000000] [--rejected 0.1] [--repeat 3]

Writes a gzip NDJSON batch file of ``--rows`` API 2.0 receipt events (``mta-rejections.md``
§2.1; a share ``--rejected`` of them rejections carrying the six Sophos texts and others, with
drift; the rest accepted), then, each in a fresh process, reads it in 64 KiB chunks:

* the floor: gzip-decompress and split into lines, nothing else;
* the connector: :class:`~mimecast_connector.receipts.GzipLines` and
  ``ReceiptChain.process`` (API 2.0) on pieces of 1,000 lines: accepted rows skipped and
  counted, rejections decoded, typed, mapped and built into alerts.

Then a file of accepted receipts only (``--rows``): rows skipped a second; and a file of
rejections only (``--rows`` / 10 of them): rejections typed a second.
Printed per run: CPU seconds, rows a second, the ratio to the floor, peak RSS of the process,
and the alert count (checked against what was written). Medians over ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_TEXTS = (
    ("Anti-Spoofing Lockout", "Anti-Spoofing policy - Inbound not allowed"),
    ("Invalid Recipient Address", "Invalid Recipient"),
    (
        "Connection Limit",
        "IP Temporarily Blacklisted - https://community.mimecast.com/docs/DOC-1369#451",
    ),
    ("Authentication Failure", "Submitter failed to authenticate"),
    ("Thread Limit", "EXCEEDING OUTBOUND THREAD LIMIT"),
    ("Content Examination", "Message bounced due to Content Examination Policy [mx1]"),
    ("IP Found In RBL", "Access denied, IP address found on RBL"),
    ("Greylisting", "Greylisting in action, please come back later"),
)
_ACCEPTED = (
    '{{"aggregateId":"agg{n}","processingId":"proc{n}","accountId":"CDEMO01",'
    '"timestamp":{ms},"action":"Acc","subtype":"Acc","type":"receipt","direction":"Inbound",'
    '"senderEnvelope":"news{k}@lists.example.org","senderHeader":"news{k}@lists.example.org",'
    '"senderIp":"198.51.100.{k}","recipients":"user{k}@demo.example.com",'
    '"messageId":"<{n}@lists.example.org>","subject":"Weekly digest {n}","rejectionType":null,'
    '"rejectionCode":null,"rejectionInfo":null,"receiptErrors":null,"virusFound":null,'
    '"spamScore":"0","spamInfo":"[]","spamProcessingDetail":"{{\\"spf\\":{{\\"allow\\":true}}}}",'
    '"tlsVersion":"TLSv1.3","tlsCipher":"TLS_AES_256_GCM_SHA384","numberAttachments":"0",'
    '"_offset":{n},"_partition":7}}'
)
_REJECTED = (
    '{{"aggregateId":"agg{n}","processingId":"proc{n}","accountId":"CDEMO01",'
    '"timestamp":{ms},"action":"Rej","subtype":"Rej","type":"receipt","direction":"Inbound",'
    '"senderEnvelope":"probe{k}@203-0-113-{k}.example","senderHeader":null,'
    '"senderIp":"203.0.113.{k}","recipients":"user{k}@demo.example.com","messageId":null,'
    '"subject":null,"rejectionType":"{kind}","rejectionCode":"550","rejectionInfo":"{info}",'
    '"receiptErrors":null,"virusFound":null,"spamScore":null,"spamInfo":null,'
    '"spamProcessingDetail":null,"tlsVersion":"TLSv1.3","tlsCipher":"TLS_AES_256_GCM_SHA384",'
    '"numberAttachments":"0","_offset":{n},"_partition":7}}'
)


def write_file(path: Path, rows: int, rejected: float) -> int:
    """The batch file; returns how many rows are rejections that must become alerts."""
    every = round(1 / rejected) if rejected > 0 else 0
    expected = 0
    start_ms = 1_764_580_000_000
    with gzip.open(path, "wb", compresslevel=6) as out:
        lines = []
        for n in range(rows):
            k = n % 250 + 1
            ms = start_ms + n * 7
            if every and n % every == 0:
                kind, info = _TEXTS[(n // every) % len(_TEXTS)]
                expected += kind != "Greylisting"
                lines.append(_REJECTED.format(n=n, k=k, ms=ms, kind=kind, info=info))
            else:
                lines.append(_ACCEPTED.format(n=n, k=k, ms=ms))
            if len(lines) == 10_000:
                out.write(("\n".join(lines) + "\n").encode())
                lines = []
        out.write(("\n".join(lines) + "\n").encode() if lines else b"")
    return expected


def measure(path: str, mode: str) -> None:
    """In a fresh process: read ``path`` as ``mode`` says; print one JSON line."""
    from mimecast_connector.receipts import GzipLines
    from mimecast_connector.rules import load_table
    from mimecast_connector.runner._receipt_chain import ReceiptChain

    chain = ReceiptChain("bench", "2.0", load_table())
    start = time.process_time()
    rows = alerts = 0
    skipped = 0
    with open(path, "rb") as handle:
        if mode == "floor":
            import zlib

            inflate = zlib.decompressobj(wbits=31)
            partial = b""
            while chunk := handle.read(65536):
                lines = (partial + inflate.decompress(chunk)).split(b"\n")
                partial = lines.pop()
                rows += len(lines)
        else:
            reader = GzipLines()
            piece: list[bytes] = []
            while chunk := handle.read(65536):
                piece.extend(reader.feed(chunk))
                while len(piece) >= 1000:
                    handled = chain.process(piece[:1000], 0.0)
                    del piece[:1000]
                    rows += 1000
                    alerts += len(handled.alerts)
                    skipped += sum(handled.skipped.values())
            piece.extend(reader.end())
            handled = chain.process(piece, 0.0)
            rows += len(piece)
            alerts += len(handled.alerts)
            skipped += sum(handled.skipped.values())
    cpu = time.process_time() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"cpu": cpu, "rows": rows, "alerts": alerts, "skipped": skipped, "rss": rss}))


def run(path: Path, mode: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--measure", str(path), "--mode", mode],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rejected", type=float, default=0.1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.mode)
        return
    with tempfile.TemporaryDirectory() as folder:
        mixed, only = Path(folder) / "mixed.ndjson.gz", Path(folder) / "rejections.ndjson.gz"
        accepted = Path(folder) / "accepted.ndjson.gz"
        expected_mixed = write_file(mixed, args.rows, args.rejected)
        expected_only = write_file(only, args.rows // 10, 1.0)
        write_file(accepted, args.rows, 0.0)
        print(
            f"batch file: {args.rows:,} rows, {args.rejected:.0%} rejections, "
            f"{os.path.getsize(mixed) / 2**20:.1f} MiB gzip; rejections only: {args.rows // 10:,} rows"
        )
        print(
            f"{'file':<12}{'reader':<11}{'CPU s':>8}{'rows/s':>12}{'ratio':>8}{'RSS MiB':>9}{'alerts':>9}"
        )
        for name, path, expected in (
            ("mixed", mixed, expected_mixed),
            ("accepted", accepted, 0),
            ("rejections", only, expected_only),
        ):
            floors, connectors = [], []
            for _ in range(args.repeat):
                floors.append(run(path, "floor"))
                connectors.append(run(path, "connector"))
            for reader, results in (("floor", floors), ("connector", connectors)):
                cpu = statistics.median(r["cpu"] for r in results)
                rows = results[0]["rows"]
                ratio = cpu / statistics.median(r["cpu"] for r in floors)
                rss = max(r["rss"] for r in results)
                alerts = int(results[0]["alerts"])
                print(
                    f"{name:<12}{reader:<11}{cpu:>8.2f}{rows / cpu:>12,.0f}{ratio:>7.1f}x{rss:>9.0f}{alerts:>9}"
                )
            got = {int(r["alerts"]) for r in connectors}
            assert got == {expected}, f"{name}: alerts {got}, expected {expected}"


if __name__ == "__main__":
    main()
