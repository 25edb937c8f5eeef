"""The settings base class: what every deployable shares, and the engine's own serving settings.

Every field is read from the environment variable of the same name in upper case (``EXPORTS_DIR``, ...), at
construction, never at import. The HTTP service (``api.settings.Settings``), the product
(``app.settings.AppSettings``) and training (``training.config``) subclass :class:`ProjectSettings`, so a path
such as ``EXPORTS_DIR`` is read in one place. ``docs/configuration.md`` holds the one table of variables,
generated from these classes (``python docs/settings_table.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Fixed by the public schema: the most texts one request may carry.
MAX_BATCH_TEXTS = 256


def split_csv(value: object) -> object:
    """Accept ``a,b , c`` from the environment as well as a list from Python."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def split_pairs(value: object) -> object:
    """Accept ``mpnet=256, minilm=2048`` from the environment as well as a mapping from Python."""
    if not isinstance(value, str):
        return value
    pairs = {}
    for part in split_csv(value):
        name, sep, number = part.partition("=")
        if not sep or not name.strip() or not number.strip():
            raise ValueError(f"expected name=value pairs separated by commas, got {part!r}")
        pairs[name.strip()] = number.strip()
    return pairs


class ProjectSettings(BaseSettings):
    """What the service, the product and training share: where things are, and which model answers by default."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    project_root: Path = Field(
        default=PROJECT_ROOT, description="The checkout (or the image's /app): the default paths below are in it."
    )
    exports_dir: Path = Field(
        default_factory=lambda data: data["project_root"] / "exports",
        description="Folder of exports (one sub-folder per model with a metadata.json, and manifest.json).",
    )
    default_model: str | None = Field(
        default=None,
        description="Model used when a request names none; default: the manifest's champion, else the champion "
        "rule (best validation_random accuracy).",
    )
    feedback_db: Path = Field(
        default_factory=lambda data: data["project_root"] / "feedback.db",
        description="SQLite file of the product's feedback store (read by make retrain).",
    )
    mlflow_tracking_uri: str = Field(
        default_factory=lambda data: f"sqlite:///{data['project_root'] / 'mlflow.db'}",
        description="MLflow tracking store (training writes runs there; the Compare page reads them).",
    )
    log_level: str = Field(default="INFO", description="Level of the project's loggers (api, sentiment, batch, ...).")

    @field_validator("log_level")
    @classmethod
    def _upper_level(cls, value: str) -> str:
        return value.upper()


class EngineSettings(ProjectSettings):
    """How the engine serves models: threads, micro-batches, queue bounds, deadlines, reload and text limits."""

    enabled_models: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Comma-separated model names to load; empty loads every export found."
    )
    onnx_threads: int = Field(default=2, ge=1, le=64, description="ONNX Runtime intra-op threads per transformer.")
    web_concurrency: int = Field(
        default=1, ge=1, le=64,
        description="Worker processes of the server (uvicorn's variable, which python -m api.serve fills in from the "
        "CPUs): each process runs at most CPUs ÷ (workers × ONNX_THREADS) model calls at once.",
    )
    model_workers: int = Field(
        default=1, ge=1, le=16,
        description="Model calls that may run at once per model, each in its own thread (ONNX_THREADS each).",
    )
    max_batch_size: int = Field(
        default=32, ge=1, le=MAX_BATCH_TEXTS, description="Most texts in one model call (micro-batches and chunks)."
    )
    max_batch_wait_ms: float = Field(
        default=5.0, ge=0, le=1000, description="Longest wait for more requests to fill a micro-batch under load."
    )
    queue_seconds: float = Field(
        default=2.0, gt=0, le=600,
        description="Seconds of a model's own work its queue holds (its rate measured at load; at least one "
        "256-text request); a request that does not fit gets 503 with Retry-After at once.",
    )
    max_queue_texts: int | None = Field(
        default=None, ge=1, le=1_000_000,
        description="Most texts waiting per model, for every model; unset: QUEUE_SECONDS of each model's rate.",
    )
    request_timeout_s: float | None = Field(
        default=None, gt=0, le=3600,
        description="Deadline of a prediction (queue and model call), for every model; past it 503 with "
        "Retry-After, work dropped. Unset: 5× the model's full queue of work, at least 5 s.",
    )
    model_max_queue_texts: Annotated[dict[str, Annotated[int, Field(ge=1)]], NoDecode] = Field(
        default_factory=dict, description="One model's queue bound, e.g. mpnet=256,minilm=2048 (over MAX_QUEUE_TEXTS).",
    )
    model_request_timeout_s: Annotated[dict[str, Annotated[float, Field(gt=0)]], NoDecode] = Field(
        default_factory=dict, description="One model's deadline in seconds, e.g. mpnet=20 (over REQUEST_TIMEOUT_S).",
    )
    explain_max_words: int = Field(
        default=64, ge=1, le=256,
        description="Most words a \"why\" explains: one extra text each, scored with the tweet in one call and counted "
        "against the model's queue and deadline.",
    )
    max_text_chars: int = Field(
        default=1000, ge=1, le=100_000,
        description="Longest accepted text, in characters, everywhere: API, pages, CLI and Spark.",
    )
    reload_interval_s: float = Field(
        default=10.0, ge=0, le=30,
        description="Seconds between checks of EXPORTS_DIR for a new or changed export; 0 disables the watcher.",
    )
    ready_timeout_s: float = Field(
        default=30.0, ge=0, description="How long a prediction waits for models still loading before a 503."
    )
    warmup: bool = Field(default=True, description="Run a few predictions per model before reporting ready.")

    @field_validator("enabled_models", mode="before")
    @classmethod
    def _split_models(cls, value: object) -> object:
        return split_csv(value)

    @field_validator("model_max_queue_texts", "model_request_timeout_s", mode="before")
    @classmethod
    def _split_pairs(cls, value: object) -> object:
        return split_pairs(value)
