"""MLflow tracking: one experiment, one run per trained model, models registered with aliases.

Tracking defaults to the embedded sqlite store in the project (``mlflow.db``, artifacts in ``mlartifacts/``);
``MLFLOW_TRACKING_URI`` switches to a server. Nothing here reaches the network.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities import Metric, RunTag
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from sentiment.exports import sha256_file
from sentiment.preprocess import PREPROCESSING_VERSION
from training import config
from training.data import NEGATIVE_FILE, POSITIVE_FILE, Dataset

logger = logging.getLogger(__name__)

# A made-up tweet: examples logged with models must not carry dataset rows.
INPUT_EXAMPLE = pd.DataFrame({"text": ["Just landed and my bag made it too, what a great start to the trip!"]})
# The chart artifacts of each evaluation set (eval/<set>/<name>.json); run records carry them too.
EVAL_ARTIFACTS = ("confusion_matrix", "roc_curve", "classification_report")
PYFUNC_REQUIREMENTS = ["onnxruntime==1.32.0", "tokenizers==0.23.3", "numpy==2.4.6", "pandas==3.1.1"]


def setup() -> str:
    """Point MLflow at the configured store and make sure the experiment exists; return its id."""
    os.environ.setdefault("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")
    uri = config.tracking_uri()
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.get_experiment_by_name(config.EXPERIMENT_NAME)
    if experiment is None:
        location = None
        if uri.startswith("sqlite:///"):
            # Artifacts beside the embedded database, not in the working directory of whoever runs it.
            location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
        experiment_id = mlflow.create_experiment(config.EXPERIMENT_NAME, artifact_location=location)
    else:
        experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=config.PROJECT_ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=config.PROJECT_ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def file_hashes(paths: Iterable[Path]) -> dict[str, str]:
    """sha256 of each data file (the two files of a 100k folder), keyed by file name."""
    hashes = {}
    for path in paths:
        for file in [path / NEGATIVE_FILE, path / POSITIVE_FILE] if path.is_dir() else [path]:
            if file.is_file():
                hashes[file.name] = sha256_file(file)
    return hashes


def _log_eval_artifacts(set_name: str, artifacts: dict[str, Any], data: Dataset, root: Path) -> None:
    folder = root / "eval" / set_name
    folder.mkdir(parents=True, exist_ok=True)
    for key in EVAL_ARTIFACTS:
        (folder / f"{key}.json").write_text(json.dumps(artifacts[key]))
    # Tweet text stays in the (git-ignored) MLflow store only; exports never carry it.
    with (folder / "misclassified_sample.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["true_label", "p_positive", "text"])
        for row in artifacts["misclassified"]:
            writer.writerow([row["label"], row["p_positive"], data.texts[row["index"]]])


def log_model_run(*, name: str, family: str, params: dict[str, Any],
                  evaluations: dict[str, tuple[dict[str, float], dict[str, Any], Dataset]],
                  data_hashes: dict[str, str], bundle: Path | None = None, extra_metrics: dict[str, float] | None = None,
                  history: list[dict[str, float]] | None = None, tags: dict[str, str] | None = None) -> tuple[str, str | None]:
    """Log one trained model: params, per-set metrics, tags, evaluation artifacts and the model.

    Args:
        name: model name (also the registry alias of its latest version).
        family: ``lexicon``, ``classical`` or ``transformer``.
        params: hyper-parameters.
        evaluations: set name → (metrics, artifacts, data) from ``training.evaluate.evaluate``.
        data_hashes: file name → sha256 of the data files used.
        bundle: the export bundle to log as an MLflow pyfunc and register (None: metrics only).
        extra_metrics: metrics that belong to no evaluation set (parity, training time).
        history: training-loss history (``step``, ``loss``, ``learning_rate``).
        tags: extra tags.

    Returns:
        ``(run_id, registered_version or None)``.
    """
    setup()
    with mlflow.start_run(run_name=name) as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tags({"model_name": name, "model_family": family, "git_commit": git_commit(),
                         "preprocessing_version": PREPROCESSING_VERSION,
                         **{f"data_sha256.{k}": v for k, v in data_hashes.items()}, **(tags or {})})
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        metrics = dict(extra_metrics or {})
        for set_name, (set_metrics, artifacts, data) in evaluations.items():
            metrics.update({f"{set_name}_{k}": v for k, v in set_metrics.items()})
            _log_eval_artifacts(set_name, artifacts, data, Path(tmp))
        mlflow.log_metrics(metrics)
        logger.info("%s accuracy: %s", name, ", ".join(f"{set_name} {scores[0]['accuracy']:.4f}"
                                                        for set_name, scores in evaluations.items()))
        for point in history or []:
            mlflow.log_metrics({"train_loss": point["loss"], "learning_rate": point["learning_rate"]},
                               step=int(point["step"]))
        mlflow.log_artifacts(tmp)
        version = None
        if bundle is not None:
            model_info = mlflow.pyfunc.log_model(
                name="model", python_model=str(Path(__file__).with_name("pyfunc_model.py")),
                artifacts={"bundle": str(bundle)}, code_paths=[str(config.PROJECT_ROOT / "sentiment")],
                signature=infer_signature(INPUT_EXAMPLE, pd.DataFrame({"label": ["positive"], "negative": [0.1],
                                                                       "positive": [0.9]})),
                input_example=INPUT_EXAMPLE, pip_requirements=PYFUNC_REQUIREMENTS,
                registered_model_name=config.REGISTERED_MODEL,
            )
            version = str(model_info.registered_model_version)
            _move_alias_if_better(name, version, metrics.get(f"{config.VALIDATION_RANDOM_SET}_accuracy"))
        logger.info("logged run %s (%s), registered version %s", run.info.run_id, name, version)
        return run.info.run_id, version


def _move_alias_if_better(alias: str, version: str, accuracy: float | None) -> None:
    """Point the model-name alias at ``version`` unless the version it holds scores better.

    The alias names the best version of each model, so a worse retraining stays registered (and visible)
    without replacing what is served or exported.
    """
    client = MlflowClient()
    try:
        current = client.get_model_version_by_alias(config.REGISTERED_MODEL, alias)
    except mlflow.exceptions.MlflowException:
        current = None
    if current is not None and accuracy is not None:
        held = client.get_run(current.run_id).data.metrics.get(f"{config.VALIDATION_RANDOM_SET}_accuracy")
        if held is not None and held > accuracy:
            logger.info("%s: version %s (%.4f) does not beat version %s (%.4f); alias kept", alias, version,
                        accuracy, current.version, held)
            return
    client.set_registered_model_alias(config.REGISTERED_MODEL, alias, version)


def log_evaluation(model_uri: str, data_path: Path, metrics: dict[str, float], artifacts: dict[str, Any],
                   others: dict[str, tuple[dict[str, float], dict[str, Any]]] | None = None) -> str:
    """Log a stand-alone evaluation (from the ``evaluate`` command) as its own run.

    ``metrics`` and ``artifacts`` are those of ``data_path`` (``eval_<metric>``); ``others`` maps further sets (the
    out-of-domain ones) to theirs (``eval_<set>_<metric>``, ``eval/<set>/``).
    """
    setup()
    with mlflow.start_run(run_name=f"evaluate {Path(model_uri).name}") as run:
        mlflow.set_tags({"run_kind": "evaluation", "model_uri": model_uri, "data": str(data_path),
                         "git_commit": git_commit(), **{f"data_sha256.{k}": v for k, v in file_hashes([data_path]).items()}})
        mlflow.log_metrics({f"eval_{k}": v for k, v in metrics.items()})
        mlflow.log_dict(artifacts["confusion_matrix"], "eval/confusion_matrix.json")
        mlflow.log_dict(artifacts["roc_curve"], "eval/roc_curve.json")
        for set_name, (set_metrics, set_artifacts) in (others or {}).items():
            mlflow.log_metrics({f"eval_{set_name}_{k}": v for k, v in set_metrics.items()})
            for key in ("confusion_matrix", "roc_curve"):
                mlflow.log_dict(set_artifacts[key], f"eval/{set_name}/{key}.json")
        return run.info.run_id


def add_to_run(run_id: str, metrics: dict[str, float], artifacts: dict[str, Any], tags: dict[str, str]) -> bool:
    """Add metrics, JSON artifacts (path → content) and tags to a run of the configured store, if it has the run.

    So that a later ``make export``, which rebuilds run records from the store, keeps what was added to a record.

    Returns:
        False when the store (or the run) is not here; an absent sqlite file is not created.
    """
    uri = config.tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return False
    client = MlflowClient(tracking_uri=uri)
    try:
        client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        return False
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
                     tags=[RunTag(k, v) for k, v in tags.items()])
    for path, content in artifacts.items():
        client.log_dict(run_id, content, path)
    return True


class _PyfuncAdapter:
    """Gives an MLflow pyfunc the ``predict_proba(texts)`` contract used by evaluation."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict_proba(self, texts: list[str]) -> Any:
        out = self.model.predict(pd.DataFrame({"text": list(texts)}))
        return out[["negative", "positive"]].to_numpy(dtype="float32")


def load_mlflow_model(uri: str) -> _PyfuncAdapter:
    setup()
    return _PyfuncAdapter(mlflow.pyfunc.load_model(uri))
