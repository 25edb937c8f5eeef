"""Memory and time of classical training on a 1.6M-row Kaggle-format file (the size of the real one).

The real ``training.1600000.processed.noemoticon.csv`` cannot be downloaded here, so a file of the same
size and format is made by resampling the 100k: each row joins one tweet with the first words of another,
so the rows stay distinct (exact duplicates would be dropped) and the vocabulary grows as real data does.
The training runs in a child process, whose peak RSS is read from ``getrusage``.

    python -m benchmarks.train_memory [--rows 1600000] [--model tfidf-lr]

Writes ``results/train_memory.json`` and ``results/train_memory.md``. Target: peak RSS ≤ 4 GB.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from training import config

logger = logging.getLogger(__name__)

RSS_TARGET_MB = 4096


def make_file(path: Path, rows: int, seed: int = 42) -> Path:
    """Write ``rows`` Kaggle-format rows (quoted, latin-1) resampled from the shared 100k."""
    from training.data import load

    data = load(config.data_dir())
    rng = np.random.default_rng(seed)
    first = rng.integers(0, len(data), rows)
    second = rng.integers(0, len(data), rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="latin-1", errors="replace", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL)
        for i, (a, b) in enumerate(zip(first, second, strict=True)):
            text = f"{data.texts[a]} {' '.join(data.texts[b].split()[:3])}"
            writer.writerow([4 if data.labels[a] else 0, i, "Mon Apr 06 22:19:45 PDT 2009", "NO_QUERY", "user", text])
    return path


def child(path: Path, model: str) -> dict[str, float]:
    """The measured work: read the file, split, fit and search like ``make train`` does."""
    from training import train_classical
    from training.data import load_splits

    started = time.perf_counter()
    splits = load_splits(path)
    loaded = time.perf_counter() - started
    result = train_classical.train(train_classical.SPECS[model], splits.train, splits.validation)
    return {"rows_kept": len(splits.train) + len(splits.validation) + len(splits.test), "load_seconds": loaded,
            "train_seconds": result.fit_seconds, "features": result.params["features"],
            "best_validation_accuracy": max(p["validation_accuracy"] for p in result.search)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_600_000)
    parser.add_argument("--model", default="tfidf-lr")
    parser.add_argument("--file", default=None, help="use this file instead of making one")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--results", default=str(config.PROJECT_ROOT / "results"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.child:
        json.dump(child(Path(args.file), args.model), sys.stdout)
        return
    path = Path(args.file) if args.file else config.artifacts_dir() / "bench" / f"resampled_{args.rows}.csv"
    if not path.exists():
        if not (config.data_dir() / config.VALIDATION_RANDOM_FILE).exists():
            raise SystemExit(f"error: Sentiment140 data not found in {config.data_dir()} (set SENTIMENT140_DIR)")
        started = time.perf_counter()
        make_file(path, args.rows)
        logger.info("wrote %s (%.0f MB) in %.0f s", path, path.stat().st_size / 1e6, time.perf_counter() - started)
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "benchmarks.train_memory", "--child", "--file", str(path),
                          "--model", args.model], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result = {"model": args.model, "rows_in_file": args.rows, "file_mb": round(path.stat().st_size / 1e6, 1),
              **json.loads(out.stdout), "wall_seconds": round(wall, 1), "peak_rss_mb": round(peak_mb),
              "rss_target_mb": RSS_TARGET_MB, "target_met": peak_mb <= RSS_TARGET_MB}
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    (results / "train_memory.json").write_text(json.dumps(result, indent=2) + "\n")
    (results / "train_memory.md").write_text(
        "| model | rows in file | rows kept | features | load s | train+search s | peak RSS MB | target ≤ 4096 MB |\n"
        "|---|---|---|---|---|---|---|---|\n"
        f"| {args.model} | {args.rows:,} | {result['rows_kept']:,} | {result['features']:,} | "
        f"{result['load_seconds']:.0f} | {result['train_seconds']:.0f} | {result['peak_rss_mb']:,} | "
        f"{'met' if result['target_met'] else 'NOT met'} |\n")
    logger.info("%s", result)


if __name__ == "__main__":
    main()
