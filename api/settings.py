"""Settings of the lean API service: one object, read from environment variables.

Every field is read from the environment variable of the same name in upper case (``EXPORTS_DIR``,
``MAX_BATCH_SIZE``, ...); the README's "HTTP API" section lists them. Nothing is read at import time:
:func:`api.main.create_app` builds a :class:`Settings` when it is not given one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The issue fixes the batch bound at 256 texts per request; it is part of the public schema.
MAX_BATCH_TEXTS = 256
# Values people paste from examples: serving with one of them would be an open door.
_PLACEHOLDER_KEYS = {"changethis", "changeme", "secret", "api-key", "your-api-key"}


def _split_csv(value: object) -> object:
    """Accept ``a,b , c`` from the environment as well as a list from Python."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class Settings(BaseSettings):
    """Configuration of one API process (or of the API mounted inside the Streamlit product)."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    exports_dir: Path = Field(
        default=PROJECT_ROOT / "exports",
        description="Folder of exports (one sub-folder per model with a metadata.json).",
    )
    enabled_models: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Comma-separated model names to load; empty loads every export found."
    )
    default_model: str | None = Field(
        default=None,
        description="Model used when a request names none; default: the export aliased 'champion', "
        "else the best validation_random accuracy.",
    )
    onnx_threads: int = Field(default=2, ge=1, le=64, description="ONNX Runtime intra-op threads per transformer.")
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
    max_queue_texts: int = Field(
        default=512, ge=1, le=1_000_000,
        description="Most texts waiting per model; a request that does not fit gets 503 with Retry-After at once.",
    )
    request_timeout_s: float = Field(
        default=5.0, gt=0, le=3600,
        description="Deadline of a prediction (queue and model call); past it 503 with Retry-After, work dropped.",
    )
    max_text_chars: int = Field(default=1000, ge=1, le=100_000, description="Longest accepted text, in characters.")
    max_body_bytes: int = Field(default=1 << 20, ge=1024, description="Largest accepted request body (413 above).")
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        default=(), description="Comma-separated API keys; empty leaves the API open. Health routes stay open."
    )
    admin_key: SecretStr | None = Field(
        default=None,
        description="Key of POST /v1/admin/reload (X-API-Key or Bearer). Unset: the API_KEYS open it; with no "
        "API_KEYS either the route answers 403 (the watcher still reloads).",
    )
    reload_interval_s: float = Field(
        default=10.0, ge=0, le=30,
        description="Seconds between checks of EXPORTS_DIR for a new or changed export; 0 disables the watcher.",
    )
    ready_timeout_s: float = Field(
        default=30.0, ge=0, description="How long a prediction waits for models still loading before a 503."
    )
    warmup: bool = Field(default=True, description="Run a few predictions per model before reporting ready.")
    log_level: str = Field(default="INFO", description="Level of the 'api' loggers.")
    log_format: Literal["json", "text", "none"] = Field(
        default="json", description="json: one JSON object per line; text: plain; none: leave logging to the host."
    )

    @field_validator("enabled_models", "api_keys", mode="before")
    @classmethod
    def _split_lists(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("api_keys")
    @classmethod
    def _reject_placeholders(cls, keys: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        for key in keys:
            if key.get_secret_value().lower() in _PLACEHOLDER_KEYS:
                raise ValueError("API_KEYS holds a placeholder value; set real keys or leave API_KEYS empty")
        return keys

    @field_validator("admin_key")
    @classmethod
    def _reject_placeholder_admin_key(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and key.get_secret_value().lower() in _PLACEHOLDER_KEYS:
            raise ValueError("ADMIN_KEY holds a placeholder value; set a real key or leave it unset")
        if key is not None and not key.get_secret_value():
            return None
        return key

    @field_validator("log_level")
    @classmethod
    def _upper_level(cls, value: str) -> str:
        return value.upper()
