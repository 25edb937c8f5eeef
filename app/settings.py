"""Settings of the Streamlit product: one object read from the environment, and the only reader of secrets.

Every setting is an environment variable (documented in the README, section "Streamlit product"). The two
secrets, ``APPLICATIONINSIGHTS_CONNECTION_STRING`` and ``MAINTAINER_SECRET``, are read here and nowhere else:
from the environment first, then from ``st.secrets`` (``.streamlit/secrets.toml``, git-ignored). Placeholder
values such as ``changethis`` are treated as unset, so a copied example file never unlocks anything.
:func:`redact_uri` is what the pages show of a URI that may carry credentials (``MLFLOW_TRACKING_URI``);
:func:`redact_text` hides them, and the MLflow client's own (``MLFLOW_TRACKING_PASSWORD``, ``MLFLOW_TRACKING_TOKEN``),
in free text such as an error message.
"""

from __future__ import annotations

import base64
import logging
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, quote_plus, unquote_plus, urlsplit

from pydantic import Field, IPvAnyNetwork, field_validator
from pydantic_settings import NoDecode

from sentiment.settings import PROJECT_ROOT, ProjectSettings

logger = logging.getLogger(__name__)

__all__ = ["PROJECT_ROOT", "AppSettings", "connection_string", "get_settings", "maintainer_secret", "redact_text",
           "redact_uri"]
CONNECTION_STRING_KEY = "APPLICATIONINSIGHTS_CONNECTION_STRING"
MAINTAINER_SECRET_KEY = "MAINTAINER_SECRET"
_PLACEHOLDERS = frozenset({"", "changethis", "changeme", "change-me", "secret", "password", "todo", "xxx"})
# The Azure exporter's own self-diagnostics (statsbeat, control plane, SDK stats) call Microsoft endpoints;
# they are off unless TELEMETRY_SDK_STATS is true, so only our events ever leave the machine.
AZURE_SELF_DIAGNOSTICS_FLAGS = (
    "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL",
    "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED",
    "APPLICATIONINSIGHTS_SDKSTATS_DISABLED",
)
REDACTED = "***"
# Query parameters whose value is a credential: ?token=, ?access_token=, ?password=, ?api_key=, Azure's ?sig=
_CREDENTIAL_PARAMETER = re.compile(r"token|pass|pwd|secret|key|sig|auth|cred", re.IGNORECASE)
# The MLflow client's credentials (it reads them itself, for a tracking server that asks for a user): never shown.
MLFLOW_USERNAME_KEY = "MLFLOW_TRACKING_USERNAME"
MLFLOW_CLIENT_SECRET_KEYS = ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
# Shorter values are not searched for in text: they would hide ordinary words.
_MIN_SECRET_CHARS = 4


class AppSettings(ProjectSettings):
    """Non-secret settings of the Streamlit product (environment variables, case-insensitive).

    The paths, the default model and the MLflow store come from :class:`sentiment.settings.ProjectSettings`;
    the API mounted at ``/api`` reads its own (``api.settings.Settings``).
    """

    runs_cache_ttl_s: int = Field(60, ge=0, description="Seconds the Compare page keeps the MLflow runs it read; "
                                  "0 reads the store on every run of the page.")
    seed_runs: bool = Field(True, validation_alias="SEED_MLFLOW_RUNS",
                            description="Seed an empty MLflow store from exports/runs for the Compare page.")
    telemetry_include_text: bool = Field(False, description="Send the tweet's text with feedback telemetry.")
    telemetry_flush_interval_s: float = Field(30.0, gt=0, description="Seconds between telemetry flushes.")
    telemetry_batch_size: int = Field(50, ge=1, le=500, description="Most feedback rows sent in one flush.")
    telemetry_backoff_base_s: float = Field(10.0, gt=0, description="First wait after a failed send (doubles).")
    telemetry_backoff_max_s: float = Field(3600.0, gt=0, description="Longest wait between retries of a row.")
    telemetry_timeout_s: float = Field(10.0, gt=0, description="Timeout of one send to Application Insights.")
    telemetry_sdk_stats: bool = Field(False, description="Let the Azure exporter send its own statistics "
                                      "(statsbeat) to Microsoft; off keeps only our events leaving the machine.")
    alert_threshold: int = Field(3, ge=0, description="Thumbs-down within the window that raise the alert.")
    alert_window_minutes: int = Field(5, ge=1, description="The alert's window, in minutes.")
    maintainer_delay_s: float = Field(2.0, ge=0, validation_alias="MAINTAINER_FAILED_LOGIN_DELAY_S",
                                      description="Delay after a wrong maintainer secret (per client, doubling).")
    maintainer_session_ttl_min: float = Field(30.0, gt=0, description="Minutes a Review page unlock lasts.")
    maintainer_failures_per_hour: int = Field(
        100, ge=1, description="Wrong maintainer secrets accepted from all clients together in any hour; past it "
        "every attempt waits (many addresses guessing together).")
    feedback_per_client_per_hour: int = Field(
        120, ge=1, description="Thumbs a client address (IPv6: /64 and /56) may give in any hour; more are refused "
        "with a message.")
    feedback_per_hour: int = Field(5000, ge=1, description="Thumbs accepted from all clients together in any hour.")
    trusted_proxies: Annotated[tuple[IPvAnyNetwork, ...], NoDecode] = Field(
        (), validation_alias="TRUSTED_PROXIES",
        description="Comma-separated networks whose X-Forwarded-For is trusted for the client address.")
    batch_max_rows: int = Field(10_000, ge=1, description="Most rows of a CSV scored on the Predict page.")
    follow_model_uri: str | None = Field(None, description="models:/<registered model>@<alias>: published into "
                                         "EXPORTS_DIR at start and whenever the alias moves.")
    follow_model_interval_s: float = Field(30.0, gt=0, description="Seconds between checks of FOLLOW_MODEL_URI.")

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @property
    def runs_dir(self) -> Path:
        """The exported MLflow run records (``exports/runs``)."""
        return self.exports_dir / "runs"


@lru_cache(maxsize=1)
def get_settings() -> AppSettings:
    """The process-wide settings, read once (tests call ``get_settings.cache_clear()``)."""
    return AppSettings()


def _from_streamlit_secrets(key: str) -> str | None:
    try:
        import streamlit as st

        if not st.secrets.load_if_toml_exists():
            return None
        value = st.secrets.get(key)
    except Exception:  # a malformed secrets.toml must not take the app down
        logger.warning("could not read %s from st.secrets", key, exc_info=True)
        return None
    return None if value is None else str(value)


def _secret(key: str) -> str | None:
    value = os.environ.get(key)
    if value is None:
        value = _from_streamlit_secrets(key)
    if value is None:
        return None
    value = value.strip()
    if value.lower() in _PLACEHOLDERS:
        logger.warning("%s holds a placeholder value; it is treated as unset", key)
        return None
    return value


def connection_string() -> str | None:
    """The Application Insights connection string, or None (telemetry off)."""
    return _secret(CONNECTION_STRING_KEY)


def maintainer_secret() -> str | None:
    """The maintainer page's secret, or None (the page stays locked)."""
    return _secret(MAINTAINER_SECRET_KEY)


def redact_uri(uri: str) -> str:
    """``uri`` as it may be shown to anyone: no user or password, no credential in the query string.

    >>> redact_uri("https://alice:pw@mlflow.example/?token=abc&workspace=7")
    'https://***@mlflow.example/?token=***&workspace=7'
    """
    parts = urlsplit(uri)
    shown = uri  # edited in place: a urlunsplit round trip rewrites sqlite:///path as sqlite:/path
    if "@" in parts.netloc:
        shown = shown.replace(f"//{parts.netloc}", f"//{REDACTED}@{parts.netloc.rpartition('@')[2]}", 1)
    if parts.query:
        fields = []
        for field in parts.query.split("&"):
            name, equals, _ = field.partition("=")
            credential = equals and _CREDENTIAL_PARAMETER.search(unquote_plus(name))
            fields.append(f"{name}={REDACTED}" if credential else field)
        shown = shown.replace(f"?{parts.query}", f"?{'&'.join(fields)}", 1)
    return shown


# In free text (an exception's message), a credential can appear anywhere and quoted in any way: a URL's userinfo,
# or name=value with "=" and "&" written as themselves or percent-encoded (urllib3 quotes what it failed to reach).
_USERINFO_IN_TEXT = re.compile(r"(?<=//)[^/\s@'\"<>]+@")
# An Authorization header quoted in a message ("Authorization: Basic …", {'Authorization': 'Bearer …'}).
_AUTHORIZATION_IN_TEXT = re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?(?:basic|bearer|token)\s+)[^\s'\",}]+")
_CREDENTIAL_IN_TEXT = re.compile(
    r"(?i)((?:[a-z0-9_.-]*(?:token|pass|pwd|secret|key|sig|auth|cred)[a-z0-9_.-]*)(?:=|%3d|%253d))"
    r"([^&\s'\"<>]*?)(?=&|%26|%2526|\s|['\"<>]|/|$)")


def _mlflow_client_secrets() -> list[str]:
    """The MLflow client's password and token from the environment, as they may be quoted: as such,
    percent-encoded, and inside the ``Basic`` header the client sends (longest first)."""
    values = set()
    for key in MLFLOW_CLIENT_SECRET_KEYS:
        value = os.environ.get(key) or ""
        if len(value) >= _MIN_SECRET_CHARS:
            values |= {value, quote(value, safe=""), quote_plus(value)}
    password, username = os.environ.get(MLFLOW_CLIENT_SECRET_KEYS[0]), os.environ.get(MLFLOW_USERNAME_KEY)
    if password and username:
        values.add(base64.b64encode(f"{username}:{password}".encode()).decode("ascii"))
    return sorted(values, key=len, reverse=True)


def redact_text(text: str, *uris: str) -> str:
    """``text`` (an error message, a log line) with every credential hidden, wherever and however it is quoted.

    Each of ``uris`` is first replaced by :func:`redact_uri` of it; then the MLflow client's password and token
    (``MLFLOW_TRACKING_PASSWORD``, ``MLFLOW_TRACKING_TOKEN``, also percent-encoded or in a ``Basic`` header), any
    quoted ``Authorization`` header, any URL userinfo and any token-like ``name=value`` left in the text,
    percent-encoded or not, are replaced by ``***``.

    >>> redact_text("Max retries exceeded with url: /base?token=t0ken&workspace=7/api/2.0")
    'Max retries exceeded with url: /base?token=***&workspace=7/api/2.0'
    """
    for uri in uris:
        text = text.replace(uri, redact_uri(uri))
    for secret in _mlflow_client_secrets():
        text = text.replace(secret, REDACTED)
    text = _AUTHORIZATION_IN_TEXT.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    text = _USERINFO_IN_TEXT.sub(f"{REDACTED}@", text)
    return _CREDENTIAL_IN_TEXT.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
