"""Settings of the training pipeline, read from the environment at call time (never at import)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

EXPERIMENT_NAME = "tweet-sentiment"
REGISTERED_MODEL = "tweet-sentiment"
CHAMPION_ALIAS = "champion"
SEED = 42

# Names of the evaluation sets every model is scored on.
TEST_SET = "test"
VALIDATION_RANDOM_SET = "validation_random"
VALIDATION_RANDOM_FILE = "validation_random_4683.csv"


def data_dir() -> Path:
    """Folder holding the Sentiment140 files (``SENTIMENT140_DIR``, default ``../shared/data/sentiment140``)."""
    default = PROJECT_ROOT.parent / "shared" / "data" / "sentiment140"
    return Path(os.environ.get("SENTIMENT140_DIR", default))


def exports_dir() -> Path:
    """Where exported models are written (``EXPORTS_DIR``, default ``exports/``)."""
    return Path(os.environ.get("EXPORTS_DIR", PROJECT_ROOT / "exports"))


def artifacts_dir() -> Path:
    """Scratch space for checkpoints and trained models (git-ignored)."""
    return Path(os.environ.get("ARTIFACTS_DIR", PROJECT_ROOT / "artifacts"))


def tracking_uri() -> str:
    """MLflow tracking URI: ``MLFLOW_TRACKING_URI`` or the embedded sqlite store in the project."""
    return os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}")


def feedback_db() -> Path:
    """The product's feedback store (``FEEDBACK_DB``, default ``feedback.db`` in the project, as in the app)."""
    return Path(os.environ.get("FEEDBACK_DB", PROJECT_ROOT / "feedback.db"))


@dataclass(frozen=True)
class RetrainSettings:
    """Settings of ``make retrain`` and its gate; each field has an environment variable (``retrain_settings``)."""

    family: str = "minilm"  # RETRAIN_FAMILY: the model family fine-tuned from its current model
    feedback_oversample: int = 5  # RETRAIN_FEEDBACK_OVERSAMPLE: each feedback row is trained on this many times
    holdout_share: float = 0.2  # RETRAIN_HOLDOUT_SHARE: share of feedback texts (by hash) never trained on
    time_budget_min: float = 30.0  # RETRAIN_TIME_BUDGET_MIN: training time of one retraining
    max_validation_random_drop: float = 0.003  # GATE_MAX_VALIDATION_RANDOM_DROP: 0.3 point below the best champion
    min_feedback_gain: float = 0.01  # GATE_MIN_FEEDBACK_GAIN: accuracy gain required on the held-out feedback


_RETRAIN_ENV = {"family": "RETRAIN_FAMILY", "feedback_oversample": "RETRAIN_FEEDBACK_OVERSAMPLE",
                "holdout_share": "RETRAIN_HOLDOUT_SHARE", "time_budget_min": "RETRAIN_TIME_BUDGET_MIN",
                "max_validation_random_drop": "GATE_MAX_VALIDATION_RANDOM_DROP",
                "min_feedback_gain": "GATE_MIN_FEEDBACK_GAIN"}


def retrain_settings() -> RetrainSettings:
    """``RetrainSettings`` from the environment (unset variables keep the defaults above)."""
    values: dict[str, object] = {}
    for name, variable in _RETRAIN_ENV.items():
        raw = os.environ.get(variable)
        if raw is None:
            continue
        kind = type(getattr(RetrainSettings, name))
        try:
            values[name] = kind(raw)
        except ValueError as error:
            raise SystemExit(f"error: {variable}={raw!r} is not a valid {kind.__name__}") from error
    settings = RetrainSettings(**values)
    if not 0 < settings.holdout_share < 1 or settings.feedback_oversample < 1:
        raise SystemExit("error: RETRAIN_HOLDOUT_SHARE must be in (0, 1) and RETRAIN_FEEDBACK_OVERSAMPLE at least 1")
    return settings
