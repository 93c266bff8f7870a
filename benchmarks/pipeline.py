"""Records per second through the pipeline, in one process, from page bytes to output bytes.

    .venv/bin/python benchmarks/pipeline.py [--records N] [--repeat R]

For each category, the simulator's generator makes N records (seeded), forced to a malicious
verdict so that every record becomes an alert (the worst case for the encoder), cut into pages
of 500 exactly as the API sends them. Then, best of R runs:

* pipeline: the client's page decoding (envelope, line-break and UTF-8 checks), format check,
  safe filter, alert type, ATT&CK, identity, alert, encode as native JSON lines (and,
  separately, as OCSF: the two alternate, best of R each, and ``ocsf/native`` is the ratio
  of their times);
* floor: a bare msgspec JSON decode and encode of the same page bytes, generic objects;
* stdlib: the same with the standard library's json, for reference.

It prints alerts per second on one core and the ratio to the floor.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from mimecast_connector import Category
from mimecast_connector._categories import LOG_CATEGORIES
from mimecast_connector.alerts import LINE_ENCODERS
from mimecast_connector.client import MimecastClient
from mimecast_connector.client._client import _PAGE_DECODERS, _records_of
from mimecast_connector.rules import load_table
from mimecast_connector.runner import Chain
from mimecast_connector.simulator import Simulator

WINDOW = (0.0, 4e9)  # 1970 to 2096: every generated record is inside
MALICIOUS = {
    Category.ATTACHMENT: ("result", "malicious"),
    Category.IMPERSONATION: ("taggedMalicious", True),
    Category.URL: ("scanResult", "malicious"),
    Category.REJECTION: ("info", "Invalid Recipient"),  # a phrase: every rejection an alert
}


def pages_of(category: Category, count: int) -> list[bytes]:
    sim = Simulator(seed=42)
    tenant = sim.add_tenant("bench")
    now = datetime.now(UTC)
    records: list[dict[str, Any]] = tenant.generate(
        category, count=count, start=now - timedelta(days=1), end=now
    )
    field, value = MALICIOUS[category]
    for record in records:
        record[field] = value
    records.sort(key=lambda r: r[category.time_field])
    return [
        msgspec.json.encode(
            {
                "meta": {"status": 200, "pagination": {"pageSize": 500, "next": "token"}},
                "data": [{category.list_key: records[i : i + 500]}],
                "fail": [],
            }
        )
        for i in range(0, len(records), 500)
    ]


def best(repeat: int, work: Callable[[], int]) -> tuple[float, int]:
    """Best wall time of ``repeat`` runs (GC collected before each), and the work's result."""
    times = []
    result = 0
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    table = load_table()
    generic_decoder, generic_encoder = msgspec.json.Decoder(), msgspec.json.Encoder()
    print(f"{args.records:,} records per category, pages of 500, best of {args.repeat}; one core")
    print(
        f"{'category':<14}{'bytes/rec':>10}{'native alerts/s':>17}{'ocsf alerts/s':>15}{'floor rec/s':>13}{'stdlib rec/s':>14}{'native/floor':>14}{'ocsf/native':>13}"
    )
    for category in LOG_CATEGORIES:
        pages = pages_of(category, args.records)
        size = sum(len(p) for p in pages) / args.records
        decoder = _PAGE_DECODERS[category]

        def pipeline(
            fmt: str,
            pages: list[bytes] = pages,
            category: Category = category,
            decoder: Any = decoder,
        ) -> int:
            chain = Chain("bench", category, table)
            encode = LINE_ENCODERS[fmt]  # type: ignore[index]
            alerts = 0
            for page in pages:
                # The client's own page decoding: envelope, line-break and UTF-8 checks.
                (envelope, utf8), _ = MimecastClient._decode_page(category, page)
                # As the runner calls it: with the window asked for, which every record is in.
                handled = chain.process(_records_of(envelope), 0.0, utf8=utf8, window=WINDOW)
                encode(handled.alerts)
                alerts += len(handled.alerts)
            return alerts

        def floor(pages: list[bytes] = pages) -> int:
            for page in pages:
                generic_encoder.encode(generic_decoder.decode(page))
            return len(pages)

        def stdlib(pages: list[bytes] = pages) -> int:
            for page in pages:
                json.dumps(json.loads(page))
            return len(pages)

        # Native and OCSF alternate, each its best of the same number of runs, so that a noisy
        # moment of the machine does not fall on one of them only.
        native_s = ocsf_s = float("inf")
        for _ in range(args.repeat):
            native_once, alerts = best(1, lambda: pipeline("native"))
            assert alerts == args.records, f"{alerts} alerts from {args.records} records"
            native_s = min(native_s, native_once)
            ocsf_s = min(ocsf_s, best(1, lambda: pipeline("ocsf"))[0])
        floor_s, _ = best(args.repeat, floor)
        stdlib_s, _ = best(max(1, args.repeat // 2), stdlib)
        n = args.records
        print(
            f"{category.value:<14}{size:>10.0f}{n / native_s:>17,.0f}{n / ocsf_s:>15,.0f}"
            f"{n / floor_s:>13,.0f}{n / stdlib_s:>14,.0f}{native_s / floor_s:>13.2f}x"
            f"{ocsf_s / native_s:>12.2f}x"
        )


if __name__ == "__main__":
    main()
