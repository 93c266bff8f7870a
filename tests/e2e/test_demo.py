"""The demo with its output piped (a file, CI): summary lines while it runs, not silence."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

#: ``demo 2s: 4 polls, 680 records fetched, 364 alerts (rejection 160, ...), written to …``
LINE = re.compile(
    r"^demo (\d+)s: (\d+) polls(?: \(\d+ failed\))?, (\d+) records fetched, (\d+) alerts"
    r"(?: \(([a-z]+ \d+(?:, [a-z]+ \d+)*)\))?, written to (.+)/alerts\.\*$"
)


def test_demo_piped_prints_summary_lines_while_it_runs(tmp_path: Path) -> None:
    """With stderr a pipe, `demo --every 0.5` prints a summary line every half second while it
    runs (three are read before it exits), counts that only grow and that add up, and no
    terminal control sequences; then the final table, and exit 0."""
    out = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "FORCE_TERMINAL")}
    args = ["demo", "--out", str(out), "--duration", "3.5", "--every", "0.5"]
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "mimecast_connector", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert process.stderr is not None
    read: list[str] = []
    summaries: list[re.Match[str]] = []
    try:
        while len(summaries) < 3:
            raw = process.stderr.readline()
            assert raw, f"ended before 3 summary lines: {read}"
            read.append(raw.decode("utf-8").rstrip("\n"))
            if (found := LINE.match(read[-1])) is not None:
                summaries.append(found)
        assert process.poll() is None, "the three lines came only at the end"
        _, rest = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, read
    text = "\n".join(read) + "\n" + rest.decode("utf-8")
    assert "\x1b" not in text  # no redrawn table, no colours: a pipe gets plain lines
    summaries += [m for line in text.splitlines()[len(read) :] if (m := LINE.match(line))]
    assert len(summaries) >= 5, text
    polls = [int(m[2]) for m in summaries]
    alerts = [int(m[4]) for m in summaries]
    assert polls == sorted(polls), text
    assert alerts == sorted(alerts), text
    last = summaries[-1]
    assert int(last[2]) >= 4, last[0]  # the demo tenant's four categories polled at least once
    assert int(last[3]) >= int(last[4]) > 0, last[0]
    by_category = dict(item.split(" ") for item in last[5].split(", "))
    assert sum(int(n) for n in by_category.values()) == int(last[4])
    assert set(by_category) <= {"attachment", "impersonation", "url", "rejection"}
    assert last[6] == str(out)
    delivered = (out / "alerts.jsonl").read_text().splitlines()
    assert len(delivered) >= int(last[4])
    assert f"{len(delivered)} alerts delivered" in text  # the final table, after the run
