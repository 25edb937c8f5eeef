"""Markdown table of the models from the run records in ``exports/runs/`` (what the README shows).

    python -m training.report > results/models.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from training import config

COLUMNS = [("validation_random_accuracy", "acc (random 4,683)", "{:.4f}"),
           ("validation_random_f1_macro", "F1 macro", "{:.4f}"),
           ("validation_random_roc_auc", "ROC AUC", "{:.4f}"),
           ("validation_random_log_loss", "log loss", "{:.3f}"),
           ("validation_random_ece", "ECE", "{:.3f}"),
           ("test_accuracy", "acc (100k test split)", "{:.4f}"),
           # Out of domain: recent human-labelled tweets (issue 19); "–" for a run never scored on them.
           *((f"{name}_accuracy", f"acc ({name})", "{:.4f}") for name in config.OUT_OF_DOMAIN_SETS.values()),
           ("validation_random_latency_p50_ms", "p50 ms/tweet", "{:.2f}"),
           ("validation_random_latency_p95_ms", "p95 ms/tweet", "{:.2f}"),
           ("validation_random_throughput_batch32", "tweets/s (batch 32)", "{:,.0f}")]


def table(runs_dir: Path) -> str:
    records = [json.loads(p.read_text()) for p in sorted(runs_dir.glob("*.json"))]
    records.sort(key=lambda r: -r["metrics"].get("validation_random_accuracy", 0))
    lines = ["| model | family | " + " | ".join(c[1] for c in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for record in records:
        cells = [fmt.format(record["metrics"][key]) if key in record["metrics"] else "–"
                 for key, _, fmt in COLUMNS]
        lines.append(f"| {record['tags'].get('model_name', record['run_name'])} | "
                     f"{record['tags'].get('model_family', '')} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=str(config.exports_dir() / "runs"))
    sys.stdout.write(table(Path(parser.parse_args(argv).runs)))


if __name__ == "__main__":
    main()
