"""Live reload: what ``EXPORTS_DIR`` asks to serve (the plan), swapping it in (:class:`Reloader`), the watcher.

The plan comes from ``manifest.json`` when there is one (the champion and a folder per model), else from every
sub-folder holding a ``metadata.json``. Its fingerprint hashes the manifest, each named ``metadata.json`` and
the listing of each folder: a new version, another champion or a re-exported file changes it. The
watcher compares fingerprints every ``RELOAD_INTERVAL_S``; reading a few small JSON files is all a check
costs. A signal would be faster but single-process uvicorn exits on ``SIGHUP``: the authenticated route
``POST /v1/admin/reload`` asks for a check at once instead. With several worker processes it reaches one of them,
which also leaves a request in the workers' shared folder (:func:`request_everywhere`): every other worker's
watcher sees it within ``REQUEST_POLL_S`` and checks too, each coalescing the requests it gets.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
import uuid
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sentiment.exports import METADATA_FILE, discover
from sentiment.manifest import read_manifest

if TYPE_CHECKING:
    from sentiment.batching import MicroBatcher
    from sentiment.registry import ModelRegistry, ServedModel

logger = logging.getLogger(__name__)

Outcome = Literal["swapped", "unchanged", "refused", "not_ready"]


@dataclass(frozen=True)
class PlannedExport:
    """One folder to serve; ``name`` and ``version`` are what the manifest promises (None without one)."""

    folder: Path
    digest: str
    name: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class Plan:
    """What ``EXPORTS_DIR`` asks to serve now."""

    exports: tuple[PlannedExport, ...]
    champion: str | None
    source: Literal["manifest", "folders"]
    fingerprint: str


@dataclass(frozen=True)
class ReloadReport:
    """The result of one check of ``EXPORTS_DIR``; ``models`` maps each served model to its version after it."""

    outcome: Outcome
    detail: str | None = None
    models: dict[str, str] = field(default_factory=dict)
    default: str | None = None
    load_seconds: float | None = None
    swap_seconds: float | None = None
    predictions_during_load: int | None = None
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds"))


def _export_digest(folder: Path) -> str:
    """The export as it is on disk: its ``metadata.json`` and the name, size and time of every file in it.

    A model file replaced or damaged in place changes it, so the served copy is opened (and its sha256 checked)
    again: a truncated model file behind an unchanged ``metadata.json`` was reused silently.
    """
    try:
        metadata = (folder / METADATA_FILE).read_bytes()
    except OSError:
        metadata = b""  # missing or unreadable: loading it will say why
    return hashlib.sha256(metadata + b"\0" + _listing(folder).encode()).hexdigest()


def plan_exports(exports_dir: Path) -> Plan:
    """Read what ``exports_dir`` asks to serve (the manifest, else every export folder).

    Raises:
        sentiment.exports.ExportError: the manifest is invalid, or the folder does not exist.
    """
    root = Path(exports_dir)
    manifest = read_manifest(root)
    hasher = hashlib.sha256()
    if manifest is not None:
        hasher.update(json.dumps(manifest.to_dict(), sort_keys=True).encode())
        exports = tuple(
            PlannedExport(folder, _export_digest(folder), name, entry.version)
            for name, entry in manifest.models.items()
            for folder in (manifest.folder(root, name),)
        )
        champion, source = manifest.champion, "manifest"
    else:
        exports = tuple(PlannedExport(f, _export_digest(f)) for f in discover(root))
        champion, source = None, "folders"
    for export in exports:
        hasher.update(f"{export.folder}\0{export.digest}\0".encode())
    return Plan(exports, champion, source, hasher.hexdigest())


def _listing(folder: Path) -> str:
    """Name, size and modification time of every file in ``folder``: a copy still in progress when it was last
    refused is tried again once it is complete, although its ``metadata.json`` did not change meanwhile."""
    try:
        return ";".join(f"{p.relative_to(folder)}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
                        for p in sorted(folder.rglob("*")) if p.is_file())
    except OSError:
        return ""  # vanished while listed: the next check sees what is there


class Reloader:
    """Swaps what ``EXPORTS_DIR`` asks for into a registry: load in a thread, swap, retire the old models.

    A change is all or nothing: if any export it names cannot be served, nothing changes and the reason is kept
    in :attr:`error` (shown by ``/readyz``) until a later change is served or the broken one is withdrawn.
    """

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self.error: str | None = None
        self.last_check_at: str | None = None
        self.last_swap: ReloadReport | None = None
        self._refused: str | None = None  # fingerprint (or error) of the change last refused
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        # The reload waiting for the one in progress, shared by every caller that arrives meanwhile (and whether
        # it retries a refused change): a burst of N requests costs at most two builds, not N.
        self._queued: asyncio.Future[ReloadReport] | None = None
        self._queued_retry = False
        self._retiring: dict[asyncio.Task[None], list[ServedModel]] = {}
        # Retired batchers a late caller (a page thread holding an old model) may have restarted; closed again
        # when idle. Weak: a closed batcher nobody holds goes away with its model.
        self._retired: weakref.WeakSet[MicroBatcher] = weakref.WeakSet()

    async def reload(self, *, retry_refused: bool = False) -> ReloadReport:
        """Serve what ``EXPORTS_DIR`` asks for now, if it changed.

        Args:
            retry_refused: try again a change that was refused (the watcher skips it until it changes).

        Returns:
            ``swapped``, ``unchanged``, ``refused`` (the old models keep serving; ``detail`` says why) or
            ``not_ready`` (the first load is still running). Calls made while another waits for the one in
            progress share that waiting one's report.
        """
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop, self._queued = asyncio.Lock(), loop, None
        if self._queued is not None and (self._queued_retry or not retry_refused):
            # It has not started yet: it will see the files as they are when it does, as this call would.
            return await asyncio.shield(self._queued)
        queued: asyncio.Future[ReloadReport] = loop.create_future()
        self._queued, self._queued_retry = queued, retry_refused
        try:
            async with self._lock:
                if self._queued is queued:
                    self._queued = None  # running now: later callers queue the next one
                for batcher in list(self._retired):
                    if not batcher.busy:
                        await batcher.aclose()
                report = await self._reload(retry_refused)
        except BaseException as error:
            if self._queued is queued:
                self._queued = None
            if not queued.done():
                if isinstance(error, asyncio.CancelledError):
                    queued.cancel()
                else:
                    queued.set_exception(error)
                    queued.exception()  # retrieved: callers that shared it get it raised, nobody else warns
            raise
        queued.set_result(report)
        return report

    async def retired(self) -> None:
        """Wait until the models replaced so far are closed."""
        while self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)

    async def aclose(self) -> None:
        """Close the batchers of every replaced model, drained or not (shutdown)."""
        for task, models in list(self._retiring.items()):
            task.cancel()
            for model in models:
                await model.batcher.aclose()
        self._retiring.clear()
        for batcher in list(self._retired):
            await batcher.aclose()

    async def _reload(self, retry_refused: bool) -> ReloadReport:
        registry = self.registry
        self.last_check_at = datetime.now(UTC).isoformat(timespec="milliseconds")
        if registry.state not in ("ready", "failed"):
            return ReloadReport("not_ready", f"models are {registry.state.replace('_', ' ')}")
        current = registry.current
        try:
            plan = await asyncio.to_thread(plan_exports, registry.settings.exports_dir)
        except Exception as error:
            return self._refuse(f"error:{error}", error, retry_refused)
        if current is not None and plan.fingerprint == current.fingerprint:
            self._refused = self.error = None  # a refused change was withdrawn
            return self._report("unchanged")
        if plan.fingerprint == self._refused and not retry_refused:
            return self._report("refused", self.error)
        before = self._predictions()
        started = time.perf_counter()
        try:
            # After a failed first load (no current) broken exports are skipped: anything loadable beats nothing.
            snapshot, skipped = await asyncio.to_thread(registry.build, plan, current)
        except Exception as error:
            return self._refuse(plan.fingerprint, error, True)
        load_seconds = time.perf_counter() - started
        self._refused = self.error = None
        if current is not None and snapshot.same_as(current):
            registry.install(snapshot, skipped)  # e.g. the same folders published again: the new fingerprint
            return self._report("unchanged")
        swap_started = time.perf_counter()
        registry.install(snapshot, skipped)
        swap_seconds = time.perf_counter() - swap_started
        report = self._report("swapped", load_seconds=load_seconds, swap_seconds=swap_seconds,
                              predictions_during_load=self._predictions() - before)
        self.last_swap = report
        if registry.metrics is not None:
            registry.metrics.reloads.labels("swapped").inc()
            registry.metrics.reload_seconds.labels("load").set(load_seconds)
            registry.metrics.reload_seconds.labels("swap").set(swap_seconds)
        logger.info("models swapped", extra={
            "models": snapshot.versions(), "previous": current.versions() if current else {},
            "default": snapshot.default, "source": snapshot.source, "load_seconds": round(load_seconds, 3),
            "swap_ms": round(swap_seconds * 1000, 3), "predictions_during_load": report.predictions_during_load})
        replaced = [m for m in (current.models.values() if current else ()) if snapshot.models.get(m.name) is not m]
        if replaced:
            task = asyncio.get_running_loop().create_task(self._retire(replaced), name="retire-models")
            self._retiring[task] = replaced
            task.add_done_callback(lambda done: self._retiring.pop(done, None))
        return report

    def _refuse(self, key: str, error: Exception, report_again: bool) -> ReloadReport:
        """Keep serving what is served and say why the change was refused (once per distinct change)."""
        new = key != self._refused
        self._refused, self.error = key, str(error)
        if new or report_again:
            metrics, current = self.registry.metrics, self.registry.current
            if metrics is not None:
                metrics.reloads.labels("refused").inc()
            logger.error("reload refused: the served models stay", extra={
                "reason": str(error), "served": current.versions() if current else {},
                "exports_dir": str(self.registry.settings.exports_dir)})
        return self._report("refused", str(error))

    def _report(self, outcome: Outcome, detail: str | None = None, **timings: Any) -> ReloadReport:
        current = self.registry.current
        return ReloadReport(outcome, detail, current.versions() if current else {},
                            current.default if current else None, **timings)

    async def _retire(self, models: list[ServedModel]) -> None:
        """Close the replaced models' batchers once the requests they hold are answered."""
        started = time.perf_counter()
        # Past the request deadline whatever is left has already been answered 503.
        deadline = time.monotonic() + max((m.budget.deadline_s for m in models), default=0.0) + 1
        while any(m.batcher.busy for m in models) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        for model in models:
            await model.batcher.aclose()
            self._retired.add(model.batcher)
        drain_seconds = time.perf_counter() - started
        if self.registry.metrics is not None:
            self.registry.metrics.reload_seconds.labels("drain").set(drain_seconds)
        logger.info("old models retired", extra={"models": {m.name: m.version for m in models},
                                                 "drain_seconds": round(drain_seconds, 3)})

    def _predictions(self) -> int:
        metrics = self.registry.metrics
        return metrics.predictions_served() if metrics is not None else 0


REQUEST_FILE = "reload-requested"
REQUEST_POLL_S = 0.2
_written_here: set[str] = set()  # requests this process made: it has already acted on them


def request_everywhere(shared_dir: Path | None) -> None:
    """Ask every worker of this server to check ``EXPORTS_DIR`` now (``POST /v1/admin/reload`` reached one).

    The request is a file in the workers' shared folder, replaced atomically; each worker's watcher looks at it
    every ``REQUEST_POLL_S``. Without a shared folder (one process) there is no one else to tell.
    """
    if shared_dir is None:
        return
    token = f"{os.getpid()}-{uuid.uuid4().hex}"
    _written_here.add(token)
    staged = shared_dir / f".{REQUEST_FILE}.{os.getpid()}"
    staged.write_text(token, encoding="utf-8")
    os.replace(staged, shared_dir / REQUEST_FILE)


def _request_stamp(shared_dir: Path) -> tuple[int, int] | None:
    try:
        stat = (shared_dir / REQUEST_FILE).stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def _new_request(shared_dir: Path, stamp: tuple[int, int] | None) -> bool:
    """Whether the request behind ``stamp`` came from another worker (this one acted on its own already)."""
    try:
        token = (shared_dir / REQUEST_FILE).read_text(encoding="utf-8")
    except OSError:
        return stamp is not None
    return token not in _written_here


async def watch(registry: ModelRegistry, interval_s: float, shared_dir: Path | None = None) -> None:
    """Check ``EXPORTS_DIR`` every ``interval_s`` seconds (0: never by itself), and at once when another worker
    sharing ``shared_dir`` was asked to reload; swap in what changed (runs until cancelled)."""
    tick = min(t for t in (interval_s, REQUEST_POLL_S if shared_dir else 0) if t > 0)
    stamp = _request_stamp(shared_dir) if shared_dir else None
    due = time.monotonic() + interval_s
    while True:
        await asyncio.sleep(tick)
        requested = False
        if shared_dir is not None:
            seen, stamp = stamp, _request_stamp(shared_dir)
            requested = stamp != seen and _new_request(shared_dir, stamp)
        if not requested and (interval_s <= 0 or time.monotonic() < due):
            continue
        due = time.monotonic() + interval_s
        try:
            await registry.reload(retry_refused=requested)
        except Exception:  # the watcher must outlive any surprise; the next tick tries again
            logger.exception("reload check failed")


def start_watcher(registry: ModelRegistry, interval_s: float,
                  shared_dir: Path | None = None) -> asyncio.Task[None] | None:
    """Start :func:`watch` in the running loop; None when ``interval_s`` is 0 and no other worker can ask."""
    if interval_s <= 0 and shared_dir is None:
        return None
    return asyncio.get_running_loop().create_task(watch(registry, interval_s, shared_dir), name="watch-exports")
