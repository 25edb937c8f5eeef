"""One evaluation for every model: quality metrics, calibration and measured CPU latency.

Every model is scored on the out-of-domain sets of ``OUT_OF_DOMAIN_DIR`` beside its own evaluation sets
(:func:`out_of_domain_files`): Sentiment140's emoticon labels say little about the recent tweets users send.

Command line: score an export folder or an MLflow model URI on a labelled file (and on the out-of-domain sets
present) and print JSON::

    python -m training.evaluate --model exports/minilm --data ../shared/data/sentiment140/validation_random_4683.csv
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from sentiment.scoring import LABELS as SCORING_LABELS
from sentiment.scoring import POSITIVE_THRESHOLD, positive_mask
from training import config
from training.data import Dataset, load

logger = logging.getLogger(__name__)

LABELS = list(SCORING_LABELS)
MISCLASSIFIED_SAMPLE = 50


class ProbabilisticModel(Protocol):
    def predict_proba(self, texts: Sequence[str]) -> np.ndarray: ...


def expected_calibration_error(y_true: np.ndarray, p_positive: np.ndarray, bins: int = 10) -> float:
    """ECE of the predicted class's confidence over equal-width bins."""
    predicted = positive_mask(p_positive)
    confidence = np.where(predicted == 1, p_positive, 1 - p_positive)
    correct = predicted == y_true
    edges = np.linspace(POSITIVE_THRESHOLD, 1.0, bins + 1)
    ece = 0.0
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        lowest = low == edges[0]  # the first bin holds confidence exactly at the threshold too
        in_bin = (confidence >= low) & (confidence <= high) if lowest else (confidence > low) & (confidence <= high)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def measure_latency(model: ProbabilisticModel, texts: Sequence[str], singles: int = 200,
                    batches: int = 10, batch_size: int = 32) -> dict[str, float]:
    """CPU latency of single-tweet calls (p50/p95, ms) and throughput of batch-32 calls (tweets/s)."""
    texts = list(texts)
    model.predict_proba(texts[:batch_size])  # warm-up: first calls allocate and compile
    timings = []
    for text in texts[:singles]:
        start = time.perf_counter()
        model.predict_proba([text])
        timings.append((time.perf_counter() - start) * 1000)
    batch_times = []
    for b in range(batches):
        chunk = texts[b * batch_size : (b + 1) * batch_size] or texts[:batch_size]
        start = time.perf_counter()
        model.predict_proba(chunk)
        batch_times.append(time.perf_counter() - start)
    quantiles = statistics.quantiles(timings, n=20) if len(timings) > 1 else [timings[0]] * 19
    return {"latency_p50_ms": float(statistics.median(timings)), "latency_p95_ms": float(quantiles[18]),
            "throughput_batch32": float(batch_size / statistics.median(batch_times))}


def evaluate(model: ProbabilisticModel, data: Dataset, *, latency: bool = True,
             batch_size: int = 256) -> tuple[dict[str, float], dict[str, Any]]:
    """Score a model on a labelled data set.

    Args:
        model: anything with ``predict_proba(texts) -> (n, 2)``.
        data: the evaluation set.
        latency: also measure CPU latency and throughput.
        batch_size: chunk size for scoring (bounded memory).

    Returns:
        ``(metrics, artifacts)``: flat metric values, and JSON-ready artifacts (confusion matrix, ROC curve,
        classification report, indices of misclassified rows).
    """
    proba = np.concatenate([model.predict_proba(data.texts[i : i + batch_size])
                            for i in range(0, len(data), batch_size)]).astype(np.float64)
    p_pos = proba[:, 1]
    y = data.labels
    pred = positive_mask(p_pos)
    precision, recall, f1, _ = precision_recall_fscore_support(y, pred, average="macro", zero_division=0)
    metrics = {
        "accuracy": float(accuracy_score(y, pred)),
        "precision_macro": float(precision),
        "recall_macro": float(recall),
        "f1_macro": float(f1),
        "roc_auc": float(roc_auc_score(y, p_pos)) if len(set(y)) == 2 else float("nan"),
        "log_loss": float(log_loss(y, np.clip(proba, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "ece": expected_calibration_error(y, p_pos),
        "rows": float(len(y)),
    }
    if latency:
        metrics.update(measure_latency(model, data.texts))
    fpr, tpr, _ = roc_curve(y, p_pos)
    # Thin the curve: a few hundred points draw the same chart and keep run records small.
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), 200)).astype(int))
    wrong = np.flatnonzero(pred != y)
    artifacts = {
        "confusion_matrix": {"labels": LABELS, "matrix": confusion_matrix(y, pred, labels=[0, 1]).tolist()},
        "roc_curve": {"fpr": fpr[keep].round(5).tolist(), "tpr": tpr[keep].round(5).tolist(),
                      "auc": metrics["roc_auc"]},
        "classification_report": classification_report(y, pred, labels=[0, 1], target_names=LABELS,
                                                        output_dict=True, zero_division=0),
        "misclassified": [{"index": int(i), "label": LABELS[y[i]], "p_positive": round(float(p_pos[i]), 4)}
                          for i in wrong[np.argsort(-np.abs(p_pos[wrong] - POSITIVE_THRESHOLD))][:MISCLASSIFIED_SAMPLE]],
    }
    return metrics, artifacts


def evaluate_sets(model: ProbabilisticModel, sets: dict[str, Dataset],
                  latency_set: str = config.VALIDATION_RANDOM_SET) -> dict[str, tuple[dict[str, float], dict[str, Any], Dataset]]:
    """:func:`evaluate` on each set: set name → ``(metrics, artifacts, data)``, what ``log_model_run`` takes.

    Latency is measured once, on ``latency_set``: it belongs to the model, not to the data.
    """
    return {name: (*evaluate(model, data, latency=name == latency_set), data) for name, data in sets.items()}


def out_of_domain_files() -> dict[str, Path]:
    """Set name → file of each out-of-domain set present in ``OUT_OF_DOMAIN_DIR``.

    An absent folder is one log line and no set (a machine without the shared data still trains and evaluates);
    a folder that lacks one of the files names it in a warning.
    """
    folder = config.out_of_domain_dir()
    if not folder.is_dir():
        logger.info("no out-of-domain folder at %s (OUT_OF_DOMAIN_DIR): out-of-domain sets not scored", folder)
        return {}
    found = {}
    for file, name in config.OUT_OF_DOMAIN_SETS.items():
        if (folder / file).exists():
            found[name] = folder / file
        else:
            logger.warning("%s is missing: %s not scored (set OUT_OF_DOMAIN_DIR)", folder / file, name)
    return found


def out_of_domain_sets() -> dict[str, Dataset]:
    """The out-of-domain sets present (:func:`out_of_domain_files`), loaded."""
    return {name: load(path) for name, path in out_of_domain_files().items()}


def load_model(uri: str) -> ProbabilisticModel:
    """An export folder or an MLflow model URI (``models:/name@alias``, ``runs:/id/model``)."""
    if Path(uri).is_dir():
        from sentiment.predictor import load_predictor

        return load_predictor(uri)
    if ":/" not in uri:
        raise FileNotFoundError(f"{uri} is neither an export folder nor an MLflow model URI "
                                "(models:/tweet-sentiment@champion, runs:/<run_id>/model); run `make export`")
    from training.tracking import load_mlflow_model

    return load_mlflow_model(uri)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Score a model on a labelled file; print the metrics as JSON.")
    parser.add_argument("--model", required=True, help="export folder or MLflow model URI")
    parser.add_argument("--data", default=None,
                        help=f"labelled file or folder (default: {config.VALIDATION_RANDOM_FILE} in SENTIMENT140_DIR)")
    parser.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    parser.add_argument("--no-out-of-domain", action="store_true",
                        help="score --data only, not the out-of-domain sets of OUT_OF_DOMAIN_DIR")
    parser.add_argument("--log-to-mlflow", action="store_true", help="log the metrics to a new MLflow run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    data_path = Path(args.data) if args.data else config.data_dir() / config.VALIDATION_RANDOM_FILE
    try:
        data = load(data_path)
        model = load_model(args.model)
        ood = {} if args.no_out_of_domain else out_of_domain_sets()
    except Exception as error:  # noqa: BLE001 - any load failure is reported as one clear line
        raise SystemExit(f"error: {error}") from error
    metrics, artifacts = evaluate(model, data, latency=not args.no_latency)
    scored = {name: evaluate(model, dataset, latency=False) for name, dataset in ood.items()}
    report = {"model": args.model, "data": str(data_path), "rows": len(data), "counts": data.counts,
              "metrics": metrics, "confusion_matrix": artifacts["confusion_matrix"],
              "out_of_domain": {name: {"rows": len(ood[name]), "metrics": m, "confusion_matrix": a["confusion_matrix"]}
                                for name, (m, a) in scored.items()}}
    if args.log_to_mlflow:
        from training.tracking import log_evaluation

        report["mlflow_run_id"] = log_evaluation(args.model, data_path, metrics, artifacts, others=scored)
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
