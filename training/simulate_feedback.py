"""Fill a feedback store from a seeded slice of the train split, as users and a maintainer would have.

The champion in force (``EXPORTS_DIR``) predicts every tweet of the slice: a right answer becomes a thumbs up, a
wrong one a thumbs down, and the maintainer reviews every row with its true label (retraining reads reviewed rows
only). validation_random is never
touched: it stays the honest set. The slice must then be held out of the retraining that uses it::

    python -m training.simulate_feedback --feedback-db /tmp/sim/feedback.db --rows 3000
    FEEDBACK_DB=/tmp/sim/feedback.db make retrain RETRAIN_ARGS="--remove-feedback-from-train"

The rows go through ``sentiment.feedback.FeedbackStore``, the product's own writer; the champion's labels come from
the engine's one rule (``sentiment.scoring.to_labels``). Verdicts are spaced ``--interval-s`` apart, ending now, so
the ageing chart has a time axis.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import uuid
from pathlib import Path

from sentiment import publish
from sentiment.exports import LABELS
from sentiment.feedback import FeedbackStore
from sentiment.predictor import load_predictor
from sentiment.scoring import to_labels
from training import config
from training.data import load_splits, sample

logger = logging.getLogger(__name__)

SIMULATION_SEED = 2026  # not the split's seed: the slice is a sample of the train split, not a split of it


def simulate(store_path: Path, data_path: Path, exports_dir: Path, rows: int, interval_s: float) -> dict[str, object]:
    """Write ``rows`` verdicts of the champion on a seeded slice of the train split; return the counts."""
    manifest = publish.current(exports_dir)
    model = load_predictor(exports_dir / manifest.models[manifest.champion].path)
    data = sample(load_splits(data_path).train, rows, seed=SIMULATION_SEED)
    predicted_labels, confidences = to_labels(model.predict_proba(data.texts))
    start = time.time() - len(data) * interval_s
    clock = {"now": start}
    store = FeedbackStore(store_path, clock=lambda: clock["now"])
    up = 0
    for index, (text, truth, predicted, confidence) in enumerate(
            zip(data.texts, data.labels, predicted_labels, confidences, strict=True)):
        clock["now"] = start + index * interval_s
        feedback_id = str(uuid.uuid4())
        right = predicted == LABELS[truth]
        store.record_verdict(feedback_id=feedback_id, text=text, model_name=model.name, model_version=model.version,
                             predicted_label=predicted, confidence=float(confidence), verdict="up" if right else "down")
        # The simulation plays the maintainer too: retraining reads reviewed rows only.
        store.review(feedback_id, true_label=LABELS[truth], note="simulated review")
        up += right
    store.close()
    return {"feedback_db": str(store_path), "model": f"{model.name} v{model.version}", "rows": len(data),
            "thumbs_up": up, "thumbs_down_corrected": len(data) - up, "champion_accuracy": up / len(data),
            "seed": SIMULATION_SEED}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feedback-db", required=True, help="the store to fill (created; use a new file)")
    parser.add_argument("--rows", type=int, default=3000, help="size of the slice of the train split")
    parser.add_argument("--data", default=None, help="training data (default: SENTIMENT140_DIR)")
    parser.add_argument("--exports-dir", default=None, help="default: EXPORTS_DIR or exports/")
    parser.add_argument("--interval-s", type=float, default=20.0, help="seconds between two verdicts")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    store = Path(args.feedback_db)
    if store.exists():
        raise SystemExit(f"error: {store} exists; the simulation writes a new store")
    try:
        report = simulate(store, Path(args.data) if args.data else config.data_dir(),
                          Path(args.exports_dir) if args.exports_dir else config.exports_dir(), args.rows,
                          args.interval_s)
    except FileNotFoundError as error:
        raise SystemExit(f"error: {error}") from error
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
