"""The models served side by side, each with its micro-batcher, and their live replacement.

Life cycle: ``not_started`` → ``loading`` → ``ready`` (or ``failed``). :meth:`ModelRegistry.load` does the
work synchronously (validate metadata and sha256, open the ONNX sessions, warm up); :meth:`start` runs it in
a thread so the event loop keeps answering ``/healthz`` and ``/readyz`` meanwhile. Any of the app lifespan,
a host application (the Streamlit product, where a mounted app's lifespan does not run) or the first
request may start it; it loads once.

What is served is one immutable :class:`Snapshot`. :meth:`ModelRegistry.reload` (the watcher of
``sentiment.reload`` or ``POST /v1/admin/reload``) loads, verifies and warms up what changed in a thread, then
replaces the snapshot in one assignment on the event loop: a request takes its model from the snapshot and
queues on that model's batcher without yielding in between, so it runs on the old model or the new one,
never on neither. The old batchers are closed once their queues drain, which frees the old models. A change
is all or nothing: if any export it names cannot be served, nothing changes and the reason is reported.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sentiment.batching import MicroBatcher
from sentiment.budgets import Budget, ComputeSlots, available_cpus, budget_for, measure_rate
from sentiment.champion import resolve_champion
from sentiment.exports import ExportError, read_metadata
from sentiment.metrics import Metrics
from sentiment.predictor import Predictor, load_predictor
from sentiment.reload import Plan, PlannedExport, Reloader, ReloadReport, plan_exports
from sentiment.settings import EngineSettings

logger = logging.getLogger(__name__)

# Different lengths, emoji and an empty normalisation: the first calls allocate what later calls reuse.
WARMUP_TEXTS = (
    "warming up",
    "I love this airline, the crew was great and the flight landed early 😀",
    "@user worst delay ever, lost my bag and nobody at the desk would help http",
    "ok",
)

# Tweet-like texts of the lengths real traffic has (5 to 30 tokens), repeated to a full micro-batch to measure a
# model's rate at load (sentiment.budgets): the short warm-up texts alone measured mpnet 1.5× too fast.
RATE_TEXTS = (
    "@united flight 1234 delayed again, third time this month. not impressed",
    "Just landed in Denver, smooth flight and a lovely crew, thanks!",
    "why is it so hard to get a refund for a cancelled flight?? been on hold for two hours #fail",
    "good morning everyone :)",
    "Lost my bag somewhere between Chicago and Boston and nobody at the desk seems to know anything about it",
    "can't wait for the weekend, beach here we come",
    "ugh monday",
    "The new seats are actually comfortable, and the wifi worked the whole way. Color me surprised http://t.co/abc",
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
    budget: Budget
    # The export's digest (metadata.json and its files' listing, sentiment.reload): an unchanged folder is reused
    # by a reload, not reloaded.
    digest: str = ""

    @property
    def name(self) -> str:
        return self.predictor.name

    @property
    def version(self) -> str:
        return self.predictor.version

    @property
    def metadata(self) -> dict[str, Any]:
        return self.predictor.metadata


@dataclass(frozen=True)
class Snapshot:
    """Everything served at one time; a reload replaces it whole."""

    models: Mapping[str, ServedModel]
    default: str
    champion: str
    fingerprint: str
    source: str

    def versions(self) -> dict[str, str]:
        return {name: model.version for name, model in self.models.items()}

    def same_as(self, other: Snapshot) -> bool:
        """Serves the very same model objects with the same default and champion."""
        return (self.default, self.champion) == (other.default, other.champion) and self.models.keys() == \
            other.models.keys() and all(model is other.models[name] for name, model in self.models.items())


def choose_default(metadata: dict[str, dict[str, Any]], preferred: str | None,
                   manifest_champion: str | None = None) -> str:
    """Name of the default model: ``preferred`` (``DEFAULT_MODEL``), else :func:`resolve_champion`.

    Raises:
        ExportError: ``preferred`` is not among the models, or there is no model.
    """
    if not metadata:
        raise ExportError("no model could be loaded")
    if preferred:
        if preferred not in metadata:
            raise ExportError(f"DEFAULT_MODEL={preferred!r} is not among the loaded models {sorted(metadata)}")
        return preferred
    champion = resolve_champion(metadata, manifest_champion)
    assert champion is not None
    return champion


def open_model(exports_dir: Path, name: str | None, default_model: str | None = None) -> Predictor:
    """Load one export: ``name``, or the default the service would pick, without loading the others.

    Raises:
        ExportError: no such model, or its export is invalid.
    """
    metadata = {}
    folders = {}
    plan = plan_exports(exports_dir)  # the manifest's folders when there is one, like the service
    for folder in (export.folder for export in plan.exports):
        try:
            meta = read_metadata(folder)
        except ExportError as error:
            logger.warning("skipping %s: %s", folder, error)
            continue
        metadata[meta["name"]] = meta
        folders[meta["name"]] = folder
    chosen = name or choose_default(metadata, default_model, plan.champion)
    if chosen not in folders:
        raise ExportError(f"no model {chosen!r} in {exports_dir}; available: {sorted(folders)}")
    return load_predictor(folders[chosen])


class ModelRegistry:
    """Loads, holds, hands out and replaces the served models."""

    def __init__(self, settings: EngineSettings, metrics: Metrics | None = None, loader: Loader = load_predictor) -> None:
        """Args:
        settings: where the exports are and how to serve them.
        metrics: where to record batch sizes and model-call durations (optional; create_app attaches its own).
        loader: ``(folder, threads=...) -> Predictor``; tests pass a wrapper that counts model calls.
        """
        self.settings = settings
        self.metrics = metrics
        self._loader = loader
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._state = "not_started"
        self._error: str | None = None
        self._skipped: dict[str, str] = {}
        # Folder → digest of the exports skipped as broken: a reload leaves them out until they change.
        self._skipped_digests: dict[Path, str] = {}
        self._task: asyncio.Task[None] | None = None
        self.ready_seconds: float | None = None
        # The server's event loop, where the batchers run; other threads hand their predictions to it.
        self.loop: asyncio.AbstractEventLoop | None = None
        self.reloader = Reloader(self)
        # Every model's calls share the cores: at most cores ÷ ONNX_THREADS run at once, in arrival order.
        # This process's share of the cores: the server's other worker processes have theirs.
        self.slots = ComputeSlots(max(1, available_cpus() // (settings.onnx_threads * settings.web_concurrency)))

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
    def current(self) -> Snapshot | None:
        """What is served now, None before the first load succeeds."""
        return self._snapshot

    @property
    def snapshot(self) -> Snapshot:
        """What is served now (read it once per use: a reload may replace it at any await)."""
        self._require_ready()
        assert self._snapshot is not None
        return self._snapshot

    @property
    def default_name(self) -> str:
        return self.snapshot.default

    @property
    def champion(self) -> str:
        """The manifest's champion when it is served, else the export aliased ``champion``, else the champion rule."""
        return self.snapshot.champion

    def models(self) -> list[ServedModel]:
        return list(self.snapshot.models.values())

    def get(self, name: str | None = None) -> ServedModel:
        """The model called ``name``, or the default one.

        Raises:
            NotReadyError: models are not loaded.
            UnknownModelError: no model of that name is served.
        """
        snapshot = self.snapshot
        model = snapshot.models.get(name or snapshot.default)
        if model is None:
            raise UnknownModelError(f"unknown model {name!r}; available: {sorted(snapshot.models)}")
        return model

    def load(self) -> None:
        """Load every export, pick the default and warm up (blocking; runs once, later calls return)."""
        with self._lock:
            if self._state in ("ready", "failed"):
                return
            self._state = "loading"
            started = time.perf_counter()
            try:
                snapshot, skipped = self.build(plan_exports(self.settings.exports_dir), None)
            except Exception as error:
                self._state, self._error = "failed", str(error)
                logger.exception("models failed to load", extra={"exports_dir": str(self.settings.exports_dir)})
                return
            self.ready_seconds = time.perf_counter() - started
            self.install(snapshot, skipped)
            logger.info("models ready", extra={"models": snapshot.versions(), "default": snapshot.default,
                                               "source": snapshot.source, "seconds": round(self.ready_seconds, 3)})

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

    async def reload(self, *, retry_refused: bool = False) -> ReloadReport:
        """Serve what ``EXPORTS_DIR`` asks for now, if it changed (see :class:`sentiment.reload.Reloader`)."""
        return await self.reloader.reload(retry_refused=retry_refused)

    async def aclose(self) -> None:
        """Stop the batchers' workers, the retired ones too (the sessions go with the process)."""
        await self.reloader.aclose()
        if self._snapshot is not None:
            for model in self._snapshot.models.values():
                await model.batcher.aclose()

    def _require_ready(self) -> None:
        if self._state == "failed":
            raise NotReadyError(f"models failed to load: {self._error}")
        if self._state != "ready":
            raise NotReadyError(f"models are {self._state.replace('_', ' ')}")

    def build(self, plan: Plan, current: Snapshot | None) -> tuple[Snapshot, dict[str, str]]:
        """Open what ``plan`` names (reusing what ``current`` already serves unchanged) into a new snapshot.

        Without ``current`` (first load) a broken export is skipped and reported; with it, the whole change is
        refused, except exports skipped before whose metadata did not change since.

        Raises:
            ExportError: nothing loadable, ENABLED_MODELS or DEFAULT_MODEL not served, or (reload) a broken export.
        """
        wanted = set(self.settings.enabled_models)
        served: dict[str, ServedModel] = {}
        skipped: dict[str, str] = {}
        unloadable: dict[str, dict[str, Any]] = {}  # readable metadata of exports that failed to load
        reasons: dict[str, str] = {}  # model name (the manifest's, else its metadata's) → why it failed
        for export in plan.exports:
            folder = export.folder
            if export.name is not None and wanted and export.name not in wanted:
                continue
            if current is not None and self._skipped_digests.get(folder) == export.digest:
                skipped[folder.name] = self._skipped[folder.name]
                continue
            meta = None
            try:
                meta = read_metadata(folder)
                if wanted and meta["name"] not in wanted:
                    continue
                if export.name is not None and (meta["name"], str(meta["version"])) != (export.name, export.version):
                    raise ExportError(f"{folder} holds {meta['name']} version {meta['version']}, the manifest "
                                      f"says {export.name} version {export.version}")
                if meta["name"] in served:
                    raise ExportError(f"{folder}: a model named {meta['name']!r} is already loaded")
                served[meta["name"]] = self._reuse(current, meta["name"], export) or self._open(folder, meta, export)
            except Exception as error:
                if current is not None:
                    raise ExportError(f"{folder.name}: {error}") from error
                # One broken export must not take the others down; it is reported by /readyz and the logs.
                skipped[folder.name] = str(error)
                self._skipped_digests[folder] = export.digest
                if meta is not None:
                    unloadable[meta["name"]] = meta
                reasons[export.name or (meta or {}).get("name", folder.name)] = str(error)
                logger.error("export skipped", extra={"folder": str(folder), "reason": str(error)})
        missing = wanted - set(served)
        if missing:
            raise ExportError(f"ENABLED_MODELS names {sorted(missing)}, not found or not loadable in "
                              f"{self.settings.exports_dir}")
        if not served:
            raise ExportError(f"no loadable export in {self.settings.exports_dir}: set EXPORTS_DIR or run "
                              "`make export`")
        metadata = {name: model.metadata for name, model in served.items()}
        # The manifest names the champion; without one, the rule decides among every export, loaded or not.
        intended = plan.champion or resolve_champion({**unloadable, **metadata})
        if intended in reasons and not self.settings.default_model:  # failed, not left out by ENABLED_MODELS
            # Serving the next best model instead would change every client's default without a word (and differ
            # from pods that loaded it): not ready, with the reason, until the champion is fixed or DEFAULT_MODEL
            # names another model.
            raise ExportError(f"the champion {intended!r} could not be loaded ({reasons[intended]}); fix its export, or set "
                              "DEFAULT_MODEL to serve another model by default")
        champion = choose_default(metadata, None, plan.champion)
        default = choose_default(metadata, self.settings.default_model, champion)
        return Snapshot(served, default, champion, plan.fingerprint, plan.source), skipped

    @staticmethod
    def _reuse(current: Snapshot | None, name: str, export: PlannedExport) -> ServedModel | None:
        model = current.models.get(name) if current is not None else None
        if model is not None and model.predictor.folder == export.folder and model.digest == export.digest:
            return model
        return None

    def _open(self, folder: Path, meta: dict[str, Any], export: PlannedExport) -> ServedModel:
        began = time.perf_counter()
        threads = self.settings.onnx_threads if meta["family"] == "transformer" else None
        predictor = self._loader(folder, threads=threads)
        rate = None
        if self.settings.warmup:
            predictor.predict_proba(list(WARMUP_TEXTS[:1]))
            predictor.predict_proba(list(WARMUP_TEXTS))
            rate = measure_rate(predictor.predict_proba, RATE_TEXTS, self.settings.max_batch_size)
        budget = budget_for(predictor.name, rate, self.settings)
        logger.info("model loaded", extra={"model": predictor.name, "version": predictor.version,
                                           "variant": predictor.variant, "family": predictor.family,
                                           "texts_per_s": round(rate) if rate else None,
                                           "queue_texts": budget.queue_texts, "deadline_s": budget.deadline_s})
        return ServedModel(predictor, self._batcher(predictor, budget), time.perf_counter() - began, budget,
                           export.digest)

    def install(self, snapshot: Snapshot, skipped: dict[str, str]) -> None:
        """Serve ``snapshot`` from now on (one reference assignment) and point the metrics at it."""
        previous = self._snapshot
        self._snapshot = snapshot
        self._state, self._error = "ready", None
        self._skipped = skipped
        self._skipped_digests = {folder: digest for folder, digest in self._skipped_digests.items()
                                 if folder.name in skipped}
        if self.metrics is None:
            return
        for name, model in snapshot.models.items():
            batcher = model.batcher
            self.metrics.track_queue(name, lambda batcher=batcher: float(batcher.queued_texts),
                                     model.budget.queue_texts, model.budget.deadline_s)
        for name in set(previous.models if previous else ()) - set(snapshot.models):
            self.metrics.untrack_queue(name)
        self.metrics.show_served(snapshot.versions(), snapshot.default)

    def _batcher(self, predictor: Predictor, budget: Budget) -> MicroBatcher:
        def on_batch(size: int, seconds: float) -> None:
            if self.metrics is not None:  # read now: an app may attach its metrics after the load
                self.metrics.observe_batch(predictor.name, size, seconds)

        def on_drop(reason: str) -> None:
            if self.metrics is not None:
                self.metrics.observe_drop(predictor.name, reason)

        return MicroBatcher(
            predictor.predict_proba,
            max_batch_size=self.settings.max_batch_size,
            max_wait_ms=self.settings.max_batch_wait_ms,
            name=predictor.name,
            on_batch=on_batch,
            max_queue_texts=budget.queue_texts,
            on_drop=on_drop,
            workers=self.settings.model_workers,
            slots=self.slots,
        )
