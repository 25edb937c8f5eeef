"""The README's model table is built from run records."""

from __future__ import annotations

import json
from pathlib import Path

from training.report import table


def test_table_sorts_by_random_validation_accuracy(tmp_path: Path) -> None:
    for name, accuracy in (("a", 0.7), ("b", 0.8)):
        record = {"run_name": name, "tags": {"model_name": name, "model_family": "classical"},
                  "metrics": {"validation_random_accuracy": accuracy, "validation_random_latency_p50_ms": 1.234}}
        (tmp_path / f"{name}.json").write_text(json.dumps(record))
    lines = table(tmp_path).splitlines()
    assert lines[2].startswith("| b | classical | 0.8000 |") and "| 1.23 |" in lines[2]
    assert lines[3].startswith("| a |") and lines[3].count("–") == 9


def test_table_has_the_out_of_domain_accuracies_beside_validation_random(tmp_path: Path) -> None:
    record = {"run_name": "m", "tags": {"model_name": "m", "model_family": "transformer"},
              "metrics": {"validation_random_accuracy": 0.85, "tweeteval_validation_accuracy": 0.8294,
                          "airline_dev_accuracy": 0.8262}}
    (tmp_path / "m.json").write_text(json.dumps(record))
    header, _, row = table(tmp_path).splitlines()
    assert "acc (tweeteval_validation) | acc (airline_dev)" in header
    assert "| 0.8294 | 0.8262 |" in row
