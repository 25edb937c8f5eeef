"""Operations routes, always open: ``/healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Response, status
from fastapi.responses import JSONResponse

from api.deps import MetricsDep, RegistryDep
from api.schemas import Health, Readiness, ReloadResult, ReloadState
from sentiment.registry import ModelRegistry

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> Health:
    """The process is up and its event loop answers (models may still be loading)."""
    return Health(status="ok")


def reload_state(registry: ModelRegistry) -> ReloadState:
    """The watcher's part of ``/readyz``."""
    reloader, current = registry.reloader, registry.current
    swap = reloader.last_swap
    return ReloadState(interval_s=registry.settings.reload_interval_s,
                       source=current.source if current else None,  # type: ignore[arg-type]
                       last_check_at=reloader.last_check_at, last_error=reloader.error,
                       last_swap=ReloadResult(**asdict(swap)) if swap else None)


@router.get("/readyz", summary="Readiness", response_model=Readiness,
            responses={503: {"model": Readiness, "description": "Models not loaded (yet) or failed to load."}})
async def readyz(registry: RegistryDep) -> JSONResponse:
    """200 once every model is loaded and warmed up; 503 before (asking also starts the loading).

    A refused reload keeps the answer 200: the models served before it still answer, and failing the probe
    of every replica at once over one bad publication would take the whole service down. ``reload.last_error``
    says why it was refused.
    """
    if registry.ready:
        snapshot = registry.snapshot
        body = Readiness(status="ready", models=list(snapshot.models), versions=snapshot.versions(),
                         default=snapshot.default, champion=snapshot.champion, skipped=registry.skipped,
                         reload=reload_state(registry))
        return JSONResponse(body.model_dump())
    # Mounted in a host whose lifespan did not start the registry: a probe is enough to begin loading.
    registry.start_background()
    body = Readiness(status=registry.state, detail=registry.error, skipped=registry.skipped,
                     reload=reload_state(registry))
    return JSONResponse(body.model_dump(), status_code=status.HTTP_503_SERVICE_UNAVAILABLE)


@router.get("/metrics", summary="Prometheus metrics",
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
async def metrics(metrics: MetricsDep) -> Response:
    """Request counts and latency per route, batch sizes, predictions per label, errors."""
    return Response(metrics.render(), media_type=metrics.content_type)
