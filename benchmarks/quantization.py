"""Does a tweet get the same answer alone and in a batch? Static int8 beside dynamic int8 and fp32, in one run.

For each served transformer (``exports/minilm``, ``exports/mpnet``) and each graph: its export's static int8, the
dynamic int8 it came from (``training.quantize.dynamic_int8``: the same weights, run-time activation scales) and
the fp32 graph (rebuilt from the int8 weights when absent: ``make fp32``). Every tweet of validation_random is
scored alone, then again in shuffled batches of 32 through the predictor (the API's micro-batch path). Reported:
accuracy both ways, labels that flip, the largest and mean change of P(positive), batch-1 p50 latency and
batch-32 throughput, timed in turns (each graph in every round, medians of 5 rounds) so that a machine whose speed
drifts favours none of them. Run it on an idle machine (the load is recorded).

    python -m benchmarks.quantization [--models minilm,mpnet] [--limit N] [--threads 2]   # make bench-quantization

Writes ``results/quantization.json`` and ``results/quantization.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx

from sentiment.exports import FP32_FILE, read_metadata, write_metadata
from sentiment.predictor import Predictor, load_predictor
from sentiment.scoring import positive_mask
from training import config
from training.data import load
from training.quantize import dynamic_int8, is_static, rebuild_fp32

logger = logging.getLogger(__name__)
RESULTS = config.PROJECT_ROOT / "results"
BATCH = 32
# The timed part, repeated in turns: single tweets and tweets in batches of 32, per graph and round.
ROUNDS = 5
TIMED_SINGLES = 200
TIMED_BATCHED = 640


def score_alone(model: Predictor, texts: list[str]) -> tuple[np.ndarray, float]:
    """P(positive) of each tweet scored by itself, and the median seconds of one call."""
    out, seconds = np.empty(len(texts)), []
    for row, text in enumerate(texts):
        started = time.perf_counter()
        out[row] = model.predict_proba([text])[0, 1]
        seconds.append(time.perf_counter() - started)
    return out, statistics.median(seconds)


def score_batched(model: Predictor, texts: list[str], seed: int = 0) -> tuple[np.ndarray, float]:
    """P(positive) of each tweet scored in shuffled batches of 32, and the tweets per second."""
    order = np.random.default_rng(seed).permutation(len(texts))
    out = np.empty(len(texts))
    started = time.perf_counter()
    for start in range(0, len(order), BATCH):
        rows = order[start : start + BATCH]
        out[rows] = model.predict_proba([texts[i] for i in rows])[:, 1]
    return out, len(texts) / (time.perf_counter() - started)


def measure(model: Predictor, texts: list[str], labels: np.ndarray) -> dict[str, float]:
    """Answers of every tweet alone and in batches (the timing is :func:`timings`'s, taken in turns)."""
    alone, _ = score_alone(model, texts)
    batched, _ = score_batched(model, texts)
    change = np.abs(alone - batched)
    return {"accuracy_alone": float((positive_mask(alone) == labels).mean()),
            "accuracy_batched": float((positive_mask(batched) == labels).mean()),
            "label_flips": int((positive_mask(alone) != positive_mask(batched)).sum()),
            "max_abs_change": float(change.max()), "mean_abs_change": float(change.mean())}


def timings(models: dict[str, Predictor], texts: list[str], rounds: int = ROUNDS) -> dict[str, dict[str, float]]:
    """Batch-1 p50 and batch-32 throughput of each graph, measured in turns (graph A, B, C, A, B, C, …) on the same
    tweets: a machine whose speed drifts over minutes favours none of them. Medians over the rounds."""
    singles, rates = {name: [] for name in models}, {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            singles[name].append(score_alone(model, texts[:TIMED_SINGLES])[1])
            rates[name].append(score_batched(model, texts[:TIMED_BATCHED])[1])
    return {name: {"batch1_p50_ms": 1000 * statistics.median(singles[name]),
                   "batch32_tweets_per_s": statistics.median(rates[name])} for name in models}


def dynamic_folder(folder: Path, tmp: Path) -> Path:
    """A copy of the export whose int8 graph is the dynamic one its static graph came from."""
    copy = tmp / folder.name
    copy.mkdir()
    meta = read_metadata(folder)
    onnx.save_model(dynamic_int8(onnx.load(str(folder / meta["variants"]["int8"]))), str(copy / "model.int8.onnx"))
    (copy / meta["tokenizer"]).write_bytes((folder / meta["tokenizer"]).read_bytes())
    write_metadata(copy, {**meta, "variants": {"int8": "model.int8.onnx"}, "external_data": {}})
    return copy


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="minilm,mpnet")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N tweets (a smoke run)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data = load(config.data_dir() / config.VALIDATION_RANDOM_FILE)
    texts, labels = data.texts[: args.limit], data.labels[: args.limit]
    report = {"created_at": datetime.now(UTC).isoformat(timespec="seconds"), "tweets": len(texts),
              "threads": args.threads, "load_before": [round(x, 2) for x in os.getloadavg()], "models": {}}
    for name in args.models.split(","):
        folder = config.exports_dir() / name
        meta = read_metadata(folder)
        if not is_static(onnx.load(str(folder / meta["variants"]["int8"]), load_external_data=False)):
            raise SystemExit(f"error: {folder}'s int8 graph is dynamic; run `make quantize` first")
        if not (folder / FP32_FILE).exists():
            rebuild_fp32(folder)
        rows = {}
        with tempfile.TemporaryDirectory() as tmp:
            graphs = {"static int8": (folder, "int8"), "dynamic int8": (dynamic_folder(folder, Path(tmp)), "int8"),
                      "fp32": (folder, "fp32")}
            loaded = {graph: load_predictor(where, variant, threads=args.threads)
                      for graph, (where, variant) in graphs.items()}
            for graph, model in loaded.items():
                logger.info("%s %s: scoring %d tweets alone, then in batches of %d", name, graph, len(texts), BATCH)
                rows[graph] = measure(model, texts, labels)
            logger.info("%s: timing the graphs in turns (%d rounds)", name, ROUNDS)
            for graph, timed in timings(loaded, texts).items():
                rows[graph].update(timed)
        report["models"][name] = {"version": meta["version"], "quantization": meta.get("quantization", {}), "graphs": rows}
    report["load_after"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "quantization.json").write_text(json.dumps(report, indent=1) + "\n")
    (RESULTS / "quantization.md").write_text(markdown(report))
    sys.stdout.write(markdown(report))


def markdown(report: dict) -> str:
    lines = ["# Static int8: the same answer alone and in a batch", "",
             f"`make bench-quantization`, {report['created_at']}: {report['tweets']} tweets of validation_random, "
             f"each scored alone and in shuffled batches of {BATCH} through the predictor (timing: the graphs in turns, "
             f"medians of {ROUNDS} rounds of {TIMED_SINGLES} single tweets and {TIMED_BATCHED} in batches); "
             f"{report['threads']} ONNX threads; load {report['load_before']} before, {report['load_after']} after.", "",
             "| model | graph | accuracy alone | accuracy in batches | label flips | max \\|ΔP\\| | mean \\|ΔP\\| "
             "| batch-1 p50 | batch-32 tweets/s |", "|---|---|---|---|---|---|---|---|---|"]
    for name, model in report["models"].items():
        for graph, row in model["graphs"].items():
            lines.append(f"| {name} v{model['version']} | {graph} | {row['accuracy_alone']:.4f} | "
                         f"{row['accuracy_batched']:.4f} | {row['label_flips']} | {row['max_abs_change']:.5f} | "
                         f"{row['mean_abs_change']:.5f} | {row['batch1_p50_ms']:.2f} ms | {row['batch32_tweets_per_s']:.0f} |")
    lines += ["", "Ratios, static int8 against the others in this run:", ""]
    for name, model in report["models"].items():
        g = model["graphs"]
        static, dynamic, fp32 = g["static int8"], g["dynamic int8"], g["fp32"]
        lines.append(f"- {name}: accuracy {100 * (static['accuracy_alone'] - fp32['accuracy_alone']):+.2f} points "
                     f"against fp32, {100 * (static['accuracy_alone'] - dynamic['accuracy_alone']):+.2f} against "
                     f"dynamic int8 alone; batch-32 throughput "
                     f"{static['batch32_tweets_per_s'] / dynamic['batch32_tweets_per_s']:.2f}× dynamic int8's; "
                     f"batch-1 p50 {static['batch1_p50_ms'] / dynamic['batch1_p50_ms']:.2f}× dynamic int8's.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
