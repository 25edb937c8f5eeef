"""Settings of the training pipeline: one settings class on the project's base, read at call time (never at import).

:class:`TrainingSettings` and :class:`RetrainSettings` extend :class:`sentiment.settings.ProjectSettings`, so
``EXPORTS_DIR``, ``FEEDBACK_DB`` and ``MLFLOW_TRACKING_URI`` are read by the same code as in the service and the
product. The functions below are what the stages call; each builds its settings when called.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import SettingsConfigDict

from sentiment.champion import CHAMPION_ALIAS
from sentiment.settings import PROJECT_ROOT, ProjectSettings

__all__ = ["CHAMPION_ALIAS", "EXPERIMENT_NAME", "PROJECT_ROOT", "REGISTERED_MODEL", "SEED", "TEST_SET",
           "OUT_OF_DOMAIN_SETS", "VALIDATION_RANDOM_FILE", "VALIDATION_RANDOM_SET", "RetrainSettings", "TrainingSettings", "artifacts_dir",
           "data_dir", "exports_dir", "feedback_db", "out_of_domain_dir", "retrain_settings", "settings",
           "tracking_uri"]

EXPERIMENT_NAME = "tweet-sentiment"
REGISTERED_MODEL = "tweet-sentiment"
SEED = 42

# Names of the evaluation sets every model is scored on.
TEST_SET = "test"
VALIDATION_RANDOM_SET = "validation_random"
VALIDATION_RANDOM_FILE = "validation_random_4683.csv"


class TrainingSettings(ProjectSettings):
    """Where training reads its data and writes its scratch files."""

    sentiment140_dir: Path = Field(
        default_factory=lambda data: data["project_root"].parent / "shared" / "data" / "sentiment140",
        description="Folder of the Sentiment140 files (read its README); never copied into the project.",
    )
    out_of_domain_dir: Path = Field(
        default_factory=lambda data: data["project_root"].parent / "shared" / "data" / "out_of_domain",
        description="Folder of the out-of-domain sets (TweetEval validation, airline tweets; text,label CSVs).",
    )
    artifacts_dir: Path = Field(
        default_factory=lambda data: data["project_root"] / "artifacts",
        description="Scratch space for checkpoints, fine-tuned weights and bundles (git-ignored).",
    )


class RetrainSettings(ProjectSettings):
    """Settings of ``make retrain`` and its gate; keyword arguments may use the field names (``family=``)."""

    model_config = SettingsConfigDict(populate_by_name=True)

    family: str = Field("minilm", validation_alias="RETRAIN_FAMILY",
                        description="Model family fine-tuned by make retrain.")
    feedback_oversample: int = Field(5, ge=1, validation_alias="RETRAIN_FEEDBACK_OVERSAMPLE",
                                     description="Times each feedback row is trained on per retraining.")
    holdout_share: float = Field(
        0.2, gt=0, lt=1, validation_alias="RETRAIN_HOLDOUT_SHARE",
        description="Share of feedback texts (by hash) held out for the gate, never trained on.")
    time_budget_min: float = Field(30.0, gt=0, validation_alias="RETRAIN_TIME_BUDGET_MIN",
                                   description="Training time of one retraining, in minutes.")
    max_validation_random_drop: float = Field(
        0.003, ge=0, validation_alias="GATE_MAX_VALIDATION_RANDOM_DROP",
        description="Largest validation_random drop below the best champion that the gate accepts.")
    min_feedback_gain: float = Field(0.01, validation_alias="GATE_MIN_FEEDBACK_GAIN",
                                     description="Accuracy gain on the held-out feedback that the gate requires.")


def settings() -> TrainingSettings:
    """The training settings from the environment, read now."""
    return TrainingSettings()


def data_dir() -> Path:
    """Folder holding the Sentiment140 files (``SENTIMENT140_DIR``, default ``../shared/data/sentiment140``)."""
    return settings().sentiment140_dir


# The out-of-domain sets every model is scored on beside validation_random (file in OUT_OF_DOMAIN_DIR → set name).
OUT_OF_DOMAIN_SETS = {"tweeteval_val_posneg.csv": "tweeteval_validation", "airline_dev_2000.csv": "airline_dev"}


def out_of_domain_dir() -> Path:
    """Folder of the out-of-domain sets (``OUT_OF_DOMAIN_DIR``, default ``../shared/data/out_of_domain``)."""
    return settings().out_of_domain_dir


def exports_dir() -> Path:
    """Where exported models are written (``EXPORTS_DIR``, default ``exports/``)."""
    return settings().exports_dir


def artifacts_dir() -> Path:
    """Scratch space for checkpoints and trained models (``ARTIFACTS_DIR``, git-ignored)."""
    return settings().artifacts_dir


def tracking_uri() -> str:
    """MLflow tracking URI: ``MLFLOW_TRACKING_URI`` or the embedded sqlite store in the project."""
    return settings().mlflow_tracking_uri


def feedback_db() -> Path:
    """The product's feedback store (``FEEDBACK_DB``, default ``feedback.db`` in the project, as in the app)."""
    return settings().feedback_db


def retrain_settings(**overrides: object) -> RetrainSettings:
    """``RetrainSettings`` from the environment; ``overrides`` (field names, None skipped) win.

    Raises:
        SystemExit: a value is invalid; the message names the variable.
    """
    try:
        return RetrainSettings(**{name: value for name, value in overrides.items() if value is not None})
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise SystemExit(f"error: invalid retraining settings: {problems}") from error
