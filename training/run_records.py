"""Evaluations measured after training, added to the run records (``exports/runs/<run_id>.json``).

A run record is what the Compare page shows of a run (``training.export`` writes it from the MLflow store). When a
served export is scored later on a set its training run never saw (the out-of-domain sets), the figures go into
the record of the run behind the export, found through the export's ``metadata.json`` (``mlflow.run_id``), and
into that run itself when this machine's store has it, so that the next ``make export`` keeps them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from training.tracking import EVAL_ARTIFACTS, add_to_run

logger = logging.getLogger(__name__)

Evaluation = tuple[dict[str, float], dict[str, Any]]  # (metrics, artifacts) of training.evaluate.evaluate


def record_path(metadata: dict[str, Any], runs_dir: Path) -> Path | None:
    """The record of the run behind an export (its ``metadata.json``), or None when there is none in ``runs_dir``."""
    run_id = metadata.get("mlflow", {}).get("run_id")
    path = runs_dir / f"{run_id}.json" if run_id else None
    return path if path is not None and path.is_file() else None


def add_evaluations(path: Path, evaluations: dict[str, Evaluation], source: str) -> None:
    """Write each set's metrics (``<set>_<metric>``) and chart artifacts (``eval/<set>/…``) into a run record.

    Args:
        path: the run record.
        evaluations: set name → ``(metrics, artifacts)``; a set already in the record is replaced.
        source: how the figures were measured, kept as the tag ``evaluated_by.<set>``.
    """
    record = json.loads(path.read_text(encoding="utf-8"))
    metrics = {f"{name}_{key}": value for name, (scores, _) in evaluations.items() for key, value in scores.items()}
    # The charts only: the misclassified sample points at rows of the data, which records never carry.
    artifacts = {f"eval/{name}/{key}.json": charts[key] for name, (_, charts) in evaluations.items()
                 for key in EVAL_ARTIFACTS}
    tags = {f"evaluated_by.{name}": source for name in evaluations}
    record.setdefault("metrics", {}).update(metrics)
    record.setdefault("artifacts", {}).update(artifacts)
    record.setdefault("tags", {}).update(tags)
    path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    logged = add_to_run(record["run_id"], metrics, artifacts, tags)
    logger.info("%s: %s written%s", path, ", ".join(evaluations), " (and logged to its MLflow run)" if logged else "")
