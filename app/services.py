"""Process-wide resources of the product, cached by Streamlit: models, feedback store, flusher, MLflow runs.

Pages and the ASGI server (``app.server``) reach the same objects through these functions: the registry the
UI predicts with is the one the mounted API serves. The plain builders (``build_*``) are what tests replace.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

import pandas as pd
import streamlit as st

from api.settings import Settings as ApiSettings
from app import runs
from app.alerts import AlertRule
from app.auth import LOOPBACK, LoginGuard, RateLimiter, client_address
from app.inference import Prediction
from app.settings import AppSettings, get_settings, redact_uri
from app.telemetry import TelemetryFlusher, build_flusher
from sentiment.feedback import FeedbackStore
from sentiment.registry import ModelRegistry

logger = logging.getLogger(__name__)

ARTIFACT_TTL_S = 3600


def build_registry(settings: AppSettings) -> ModelRegistry:
    """The API's model registry for the exports in ``settings.exports_dir`` (not loaded yet)."""
    return ModelRegistry(ApiSettings(exports_dir=settings.exports_dir, default_model=settings.default_model))


@st.cache_resource(show_spinner=False)
def model_registry() -> ModelRegistry:
    """The one registry of this process (loading starts in the server's lifespan or on first use)."""
    return build_registry(get_settings())


def ready_registry() -> ModelRegistry:
    """The registry with its models loaded (waits for a load in progress).

    Raises:
        sentiment.registry.NotReadyError: no model could be loaded.
    """
    registry = model_registry()
    if not registry.ready:
        with st.spinner("Loading the models…"):
            registry.load()
    registry.models()  # raises NotReadyError with the reason when loading failed
    return registry


def champion_name(registry: ModelRegistry) -> str:
    """The manifest's champion, else the export aliased ``champion``, else the champion rule's pick, whatever
    DEFAULT_MODEL says; it follows live reloads."""
    return registry.champion


def default_model_summary(registry: ModelRegistry) -> tuple[str, pd.DataFrame]:
    """Which model answers a request that names none, why, and each served model's measured accuracy and speed.

    The figures are those of the served exports' metadata (validation_random, measured by the training run
    through the served ONNX graph), so the page and the API can never disagree about what is served.
    """
    default, champion = registry.default_name, champion_name(registry)
    why = ("the champion: the best validation_random accuracy, ties to four decimals broken by the lower p50 "
           "latency (`sentiment.champion`)" if default == champion else
           f"`DEFAULT_MODEL` names it (the champion, {champion}, is one `model` field away)")
    rows = []
    for model in registry.models():
        measured = model.metadata.get("metrics", {}).get("validation_random", {})
        rows.append({"model": model.name, "version": model.version, "default": model.name == default,
                     "champion": model.name == champion, "validation_random accuracy": measured.get("accuracy"),
                     "p50 ms (one tweet)": measured.get("latency_p50_ms"),
                     "tweets/s (batch 32)": measured.get("throughput_batch32")})
    table = pd.DataFrame(rows)
    if not table.empty:
        table = table.sort_values("validation_random accuracy", ascending=False, na_position="last")
    return f"The API answers with **{default}** when a request names no model: {why}.", table


@st.cache_resource(show_spinner=False)
def feedback_store() -> FeedbackStore:
    return FeedbackStore(get_settings().feedback_db)


@st.cache_resource(show_spinner=False)
def telemetry_flusher() -> TelemetryFlusher:
    """The flusher, started in the background (a no-op when telemetry is off)."""
    flusher = build_flusher(feedback_store(), get_settings())
    flusher.start()
    return flusher


class FeedbackLimited(RuntimeError):
    """This client (or everyone together) gave too many verdicts lately; ``retry_after`` is in seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"Thanks, but we have had a lot of feedback from your address lately: try again in "
                         f"{max(1, round(retry_after / 60))} min.")
        self.retry_after = retry_after


@st.cache_resource(show_spinner=False)
def feedback_limiter() -> RateLimiter:
    """Shared by every session: a new session costs nothing, so the client address is the unit."""
    settings = get_settings()
    return RateLimiter(settings.feedback_per_client_per_hour, settings.feedback_per_hour)


def record_feedback(prediction: Prediction, verdict: str, client: str = LOOPBACK) -> dict[str, Any]:
    """Save a user's verdict (``up``/``down``) on a prediction, then wake the flusher to send it.

    A second verdict on the same prediction updates its row. Without telemetry the row simply stays pending.

    Raises:
        FeedbackLimited: ``client`` gave too many verdicts this hour (or everyone did); nothing was saved.

    Returns:
        The stored row.
    """
    wait = feedback_limiter().allow(client)
    if wait:
        raise FeedbackLimited(wait)
    row = feedback_store().record_verdict(
        feedback_id=prediction.id, text=prediction.text, model_name=prediction.model_name,
        model_version=prediction.model_version, predicted_label=prediction.label,
        confidence=prediction.confidence, verdict=verdict)
    telemetry_flusher().wake()
    return row


@st.cache_resource(show_spinner=False)
def login_guard() -> LoginGuard:
    """Shared by every session, so opening a new tab does not reset a client's delay after wrong secrets."""
    settings = get_settings()
    return LoginGuard(base_delay_s=settings.maintainer_delay_s,
                      global_failures_per_hour=settings.maintainer_failures_per_hour)


def client_ip() -> str:
    """The address of this session's visitor, for the login delay (see :func:`app.auth.client_address`)."""
    return client_address(st.context.ip_address, st.context.headers.get_all("X-Forwarded-For"),
                           get_settings().trusted_proxies)


def alert_rule() -> AlertRule:
    settings = get_settings()
    return AlertRule(threshold=settings.alert_threshold, window=timedelta(minutes=settings.alert_window_minutes))


@st.cache_resource(show_spinner="Seeding MLflow from exports/runs…")
def seed_runs(tracking_uri: str, runs_dir: str) -> list[str]:
    """Seed the store once per process (idempotent across processes too)."""
    try:
        return runs.seed_from_records(runs_dir, tracking_uri)
    except Exception:  # the page still shows whatever the store holds
        logger.exception("could not seed MLflow at %s from %s", redact_uri(tracking_uri), runs_dir)
        return []


def runs_frame(tracking_uri: str, runs_dir: str, seed: bool = True) -> pd.DataFrame:
    """``mlflow.search_runs`` over every experiment, after seeding an empty store; cached ``RUNS_CACHE_TTL_S``.

    The window number is part of the cache key, so the TTL comes from the settings at call time (a decorator's
    ``ttl`` would be read at import); 0 reads the store on every call.
    """
    ttl = get_settings().runs_cache_ttl_s
    window = int(time.time() // ttl) if ttl else time.time_ns()
    return _runs_frame(tracking_uri, runs_dir, seed, window)


@st.cache_data(max_entries=4, show_spinner="Reading MLflow runs…")
def _runs_frame(tracking_uri: str, runs_dir: str, seed: bool, window: int) -> pd.DataFrame:
    if seed:
        seed_runs(tracking_uri, runs_dir)
    return runs.search_runs(tracking_uri)


def clear_runs_cache() -> None:
    """Forget the cached runs (the Compare page's refresh button)."""
    _runs_frame.clear()


@st.cache_data(ttl=ARTIFACT_TTL_S, show_spinner=False)
def run_artifact(tracking_uri: str, run_id: str, path: str) -> Any | None:
    return runs.load_artifact(tracking_uri, run_id, path)


@st.cache_data(ttl=ARTIFACT_TTL_S, show_spinner=False)
def run_metric_history(tracking_uri: str, run_id: str, key: str) -> pd.DataFrame:
    return runs.metric_history(tracking_uri, run_id, key)
