"""Settings of the training pipeline, read from the environment at call time (never at import)."""

from __future__ import annotations

import os
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
