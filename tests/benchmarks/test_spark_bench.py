"""benchmarks/spark.py without Spark: the slices, one measured phase of a tiny command, the report."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import asdict
from pathlib import Path

from benchmarks.spark import Phase, head, run_phase, write_report


def test_head_keeps_whole_quoted_rows(tmp_path: Path) -> None:
    source = tmp_path / "big.csv"
    rows = [["0", str(i), "Mon Apr 06", "NO_QUERY", "user", f'a "quoted", tweet {i} café'] for i in range(10)]
    with source.open("w", encoding="latin-1", newline="") as handle:
        csv.writer(handle, quoting=csv.QUOTE_ALL).writerows(rows)
    with head(source, tmp_path / "slice.csv", 3).open(encoding="latin-1", newline="") as handle:
        assert list(csv.reader(handle)) == rows[:3]


def test_a_phase_is_timed_and_its_summary_read(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "import json; print('noise'); print(json.dumps({'rows': 5, 'scored': 4}))"]
    phase = run_phase(Phase("tiny", "python", "none", 5), command, tmp_path / "tiny.log")
    assert phase.summary == {"rows": 5, "scored": 4}
    assert phase.wall_s > 0 and phase.tweets_per_s > 0 and phase.peak_rss_mb >= 0
    results = {"quick": True, "date": "2026-11-26 04:00 UTC", "commit": "abc", "cores": 2, "pyspark": "4.3.0",
               "java": 'openjdk version "17"', "phases": [asdict(phase)]}
    write_report(results, tmp_path / "spark.md")
    text = (tmp_path / "spark.md").read_text()
    assert "| tiny | python | none | 5 |" in text and json.dumps(phase.summary) in text
