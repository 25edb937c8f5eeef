"""The models served side by side: every export in ``EXPORTS_DIR``, each with its micro-batcher.

Life cycle: ``not_started`` → ``loading`` → ``ready`` (or ``failed``). :meth:`ModelRegistry.load` does the
work synchronously (validate metadata and sha256, open the ONNX sessions, warm up); :meth:`start` runs it in
a thread so the event loop keeps answering ``/healthz`` and ``/readyz`` meanwhile. Any of the app lifespan,
a host application (the Streamlit product, where a mounted app's lifespan does not run) or the first
request may start it; it loads once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api.batching import MicroBatcher
from api.champion import from_metrics, pick_champion
from api.exports import ExportError, read_metadata
from api.metrics import Metrics
from api.predictor import Predictor, discover, load_predictor
from api.settings import Settings

logger = logging.getLogger(__name__)

CHAMPION_ALIAS = "champion"
# Different lengths, emoji and an empty normalisation: the first calls allocate what later calls reuse.
WARMUP_TEXTS = (
    "warming up",
    "I love this airline, the crew was great and the flight landed early 😀",
    "@user worst delay ever, lost my bag and nobody at the desk would help http",
    "ok",
)

Loader = Callable[..., Predictor]


class UnknownModelError(LookupError):
    """A request named a model that is not served."""


class NotReadyError(RuntimeError):
    """The models are not loaded (yet, or loading failed)."""


@dataclass(frozen=True)
class ServedModel:
    """One loaded export and the batcher that feeds it."""

    predictor: Predictor
    batcher: MicroBatcher
    load_seconds: float

    @property
    def name(self) -> str:
        return self.predictor.name

    @property
    def version(self) -> str:
        return self.predictor.version

    @property
    def metadata(self) -> dict[str, Any]:
        return self.predictor.metadata


def choose_default(metadata: dict[str, dict[str, Any]], preferred: str | None) -> str:
    """Name of the default model: ``preferred``, else the champion, else the best selection accuracy.

    Args:
        metadata: model name → its export's metadata.
        preferred: ``DEFAULT_MODEL``, if set.

    Raises:
        ExportError: ``preferred`` is not among the models, or there is no model.
    """
    if not metadata:
        raise ExportError("no model could be loaded")
    if preferred:
        if preferred not in metadata:
            raise ExportError(f"DEFAULT_MODEL={preferred!r} is not among the loaded models {sorted(metadata)}")
        return preferred

    champions = [name for name, meta in metadata.items() if CHAMPION_ALIAS in meta.get("aliases", [])]
    if len(champions) > 1:
        logger.warning("several exports are aliased champion: %s; applying the champion rule", sorted(champions))
    best = pick_champion(from_metrics(name, metadata[name].get("metrics", {})) for name in champions or metadata)
    assert best is not None
    return best.name


class ModelRegistry:
    """Loads, holds and hands out the served models."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None, loader: Loader = load_predictor) -> None:
        """Args:
        settings: where the exports are and how to serve them.
        metrics: where to record batch sizes and model-call durations (optional; create_app attaches its own).
        loader: ``(folder, threads=...) -> Predictor``; tests pass a wrapper that counts model calls.
        """
        self.settings = settings
        self.metrics = metrics
        self._loader = loader
        self._lock = threading.Lock()
        self._models: dict[str, ServedModel] = {}
        self._default: str | None = None
        self._state = "not_started"
        self._error: str | None = None
        self._skipped: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None
        self.ready_seconds: float | None = None
        # The server's event loop, where the batchers run; other threads hand their predictions to it.
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def state(self) -> str:
        """``not_started``, ``loading``, ``ready`` or ``failed``."""
        return self._state

    @property
    def ready(self) -> bool:
        return self._state == "ready"

    @property
    def error(self) -> str | None:
        return self._error

    @property
    def skipped(self) -> dict[str, str]:
        """Export folders that were not served, with the reason."""
        return dict(self._skipped)

    @property
    def default_name(self) -> str:
        self._require_ready()
        assert self._default is not None
        return self._default

    def models(self) -> list[ServedModel]:
        self._require_ready()
        return list(self._models.values())

    def get(self, name: str | None = None) -> ServedModel:
        """The model called ``name``, or the default one.

        Raises:
            NotReadyError: models are not loaded.
            UnknownModelError: no model of that name is served.
        """
        self._require_ready()
        model = self._models.get(name or self.default_name)
        if model is None:
            raise UnknownModelError(f"unknown model {name!r}; available: {sorted(self._models)}")
        return model

    def load(self) -> None:
        """Load every export, pick the default and warm up (blocking; runs once, later calls return)."""
        with self._lock:
            if self._state in ("ready", "failed"):
                return
            self._state = "loading"
            started = time.perf_counter()
            try:
                self._load_all()
            except Exception as error:
                self._state, self._error = "failed", str(error)
                logger.exception("models failed to load", extra={"exports_dir": str(self.settings.exports_dir)})
                return
            self.ready_seconds = time.perf_counter() - started
            self._state = "ready"
            logger.info("models ready", extra={"models": sorted(self._models), "default": self._default,
                                               "seconds": round(self.ready_seconds, 3)})

    async def start(self) -> None:
        """Load in a worker thread and wait for it; concurrent callers share one load."""
        self.loop = asyncio.get_running_loop()
        if self._state in ("ready", "failed"):
            return
        if self._task is None or self._task.get_loop() is not asyncio.get_running_loop():
            self._task = asyncio.create_task(asyncio.to_thread(self.load), name="load-models")
        await asyncio.shield(self._task)

    def start_background(self) -> None:
        """Begin loading without waiting (from a lifespan or a readiness probe)."""
        self.loop = asyncio.get_running_loop()
        if self._state == "not_started" and self._task is None:
            self._task = asyncio.create_task(asyncio.to_thread(self.load), name="load-models")

    async def wait_ready(self, timeout: float) -> None:
        """Start loading if nobody did and wait up to ``timeout`` seconds for it.

        Raises:
            NotReadyError: still loading after ``timeout``, or loading failed.
        """
        if not self.ready:
            try:
                async with asyncio.timeout(timeout):
                    await self.start()
            except TimeoutError:
                pass
        self._require_ready()

    async def aclose(self) -> None:
        """Stop the batchers' workers (the sessions go with the process)."""
        for model in self._models.values():
            await model.batcher.aclose()

    def _require_ready(self) -> None:
        if self._state == "failed":
            raise NotReadyError(f"models failed to load: {self._error}")
        if self._state != "ready":
            raise NotReadyError(f"models are {self._state.replace('_', ' ')}")

    def _load_all(self) -> None:
        wanted = set(self.settings.enabled_models)
        predictors: dict[str, Predictor] = {}
        timings: dict[str, float] = {}
        for folder in discover(self.settings.exports_dir):
            try:
                meta = read_metadata(folder)
                if wanted and meta["name"] not in wanted:
                    continue
                if meta["name"] in predictors:
                    raise ExportError(f"{folder}: a model named {meta['name']!r} is already loaded")
                began = time.perf_counter()
                predictor = self._open(folder, meta)
                timings[predictor.name] = time.perf_counter() - began
                predictors[predictor.name] = predictor
            except Exception as error:
                # One broken export must not take the others down; it is reported by /readyz and the logs.
                self._skipped[folder.name] = str(error)
                logger.error("export skipped", extra={"folder": str(folder), "reason": str(error)})
        missing = wanted - set(predictors)
        if missing:
            raise ExportError(f"ENABLED_MODELS names {sorted(missing)}, not found or not loadable in "
                              f"{self.settings.exports_dir}")
        if not predictors:
            raise ExportError(f"no loadable export in {self.settings.exports_dir}: set EXPORTS_DIR or run "
                              "`make export`")
        self._default = choose_default({n: p.metadata for n, p in predictors.items()}, self.settings.default_model)
        for name, predictor in predictors.items():
            self._models[name] = ServedModel(predictor, self._batcher(predictor), timings[name])

    def _open(self, folder: Path, meta: dict[str, Any]) -> Predictor:
        threads = self.settings.onnx_threads if meta["family"] == "transformer" else None
        predictor = self._loader(folder, threads=threads)
        if self.settings.warmup:
            predictor.predict_proba(list(WARMUP_TEXTS[:1]))
            predictor.predict_proba(list(WARMUP_TEXTS))
        logger.info("model loaded", extra={"model": predictor.name, "version": predictor.version,
                                           "variant": predictor.variant, "family": predictor.family})
        return predictor

    def _batcher(self, predictor: Predictor) -> MicroBatcher:
        def on_batch(size: int, seconds: float) -> None:
            if self.metrics is not None:  # read now: an app may attach its metrics after the load
                self.metrics.observe_batch(predictor.name, size, seconds)

        def on_drop(reason: str) -> None:
            if self.metrics is not None:
                self.metrics.observe_drop(predictor.name, reason)

        batcher = MicroBatcher(
            predictor.predict_proba,
            max_batch_size=self.settings.max_batch_size,
            max_wait_ms=self.settings.max_batch_wait_ms,
            name=predictor.name,
            on_batch=on_batch,
            max_queue_texts=self.settings.max_queue_texts,
            on_drop=on_drop,
            workers=self.settings.model_workers,
        )
        if self.metrics is not None:
            self.metrics.track_queue(predictor.name, lambda: float(batcher.queued_texts))
        return batcher
