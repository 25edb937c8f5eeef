"""What a "why" costs: one tweet scored alone against the tweet and its leave-one-word-out texts in one call.

For each transformer export, the first ``--tweets`` tweets of validation_random are scored both ways through the
predictor (``sentiment.explain``, at most ``EXPLAIN_MAX_WORDS`` extra texts a tweet), one after another on an idle
machine. Reported: words per tweet, p50 and p95 of each, and their ratio.

    python -m benchmarks.explain [--tweets 300] [--models minilm,mpnet]     # make bench-explain

Writes ``results/explain.json`` and ``results/explain.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime

import numpy as np

from sentiment.explain import occlusions
from sentiment.predictor import load_predictor
from sentiment.settings import EngineSettings
from training import config
from training.data import load

RESULTS = config.PROJECT_ROOT / "results"


def _ms(seconds: list[float], q: float) -> float:
    return round(1000 * float(np.percentile(seconds, q)), 2)


def measure(name: str, texts: list[str], max_words: int, threads: int) -> dict:
    model = load_predictor(config.exports_dir() / name, threads=threads)
    model.predict_proba(texts[:32])
    plain, explained, words = [], [], []
    for text in texts:
        started = time.perf_counter()
        model.predict_proba([text])
        plain.append(time.perf_counter() - started)
        found, occluded = occlusions(text, max_words)
        words.append(len(found))
        started = time.perf_counter()
        model.predict_proba([text, *occluded])
        explained.append(time.perf_counter() - started)
    return {"version": model.version, "tweets": len(texts), "words_median": statistics.median(words),
            "words_max": max(words), "plain_p50_ms": _ms(plain, 50), "plain_p95_ms": _ms(plain, 95),
            "explain_p50_ms": _ms(explained, 50), "explain_p95_ms": _ms(explained, 95),
            "ratio_p50": round(statistics.median(explained) / statistics.median(plain), 2)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tweets", type=int, default=300)
    parser.add_argument("--models", default="minilm,mpnet")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    texts = load(config.data_dir() / config.VALIDATION_RANDOM_FILE).texts[: args.tweets]
    max_words = EngineSettings().explain_max_words
    report = {"created_at": datetime.now(UTC).isoformat(timespec="seconds"), "max_words": max_words,
              "threads": args.threads, "load_before": [round(x, 2) for x in os.getloadavg()],
              "models": {name: measure(name, texts, max_words, args.threads) for name in args.models.split(",")}}
    report["load_after"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "explain.json").write_text(json.dumps(report, indent=1) + "\n")
    (RESULTS / "explain.md").write_text(markdown(report))
    sys.stdout.write(markdown(report))


def markdown(report: dict) -> str:
    lines = ["# What a \"why\" costs", "",
             f"`make bench-explain`, {report['created_at']}: validation_random tweets scored alone, then with their "
             f"leave-one-word-out texts in one call (at most {report['max_words']} words), in-process with "
             f"{report['threads']} ONNX threads. Load {report['load_before']} before, {report['load_after']} after.", "",
             "| model | tweets | words (median, max) | alone p50 / p95 | with why p50 / p95 | p50 ratio |",
             "|---|---|---|---|---|---|"]
    for name, row in report["models"].items():
        lines.append(f"| {name} v{row['version']} | {row['tweets']} | {row['words_median']:.0f}, {row['words_max']} | "
                     f"{row['plain_p50_ms']} / {row['plain_p95_ms']} ms | {row['explain_p50_ms']} / "
                     f"{row['explain_p95_ms']} ms | {row['ratio_p50']}× |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
