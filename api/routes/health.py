"""Operations routes, always open: ``/healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from fastapi.responses import JSONResponse

from api.deps import MetricsDep, RegistryDep
from api.schemas import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> Health:
    """The process is up and its event loop answers (models may still be loading)."""
    return Health(status="ok")


@router.get("/readyz", summary="Readiness", response_model=Readiness,
            responses={503: {"model": Readiness, "description": "Models not loaded (yet) or failed to load."}})
async def readyz(registry: RegistryDep) -> JSONResponse:
    """200 once every model is loaded and warmed up; 503 before (asking also starts the loading)."""
    if registry.ready:
        body = Readiness(status="ready", models=[m.name for m in registry.models()],
                         default=registry.default_name, skipped=registry.skipped)
        return JSONResponse(body.model_dump())
    # Mounted in a host whose lifespan did not start the registry: a probe is enough to begin loading.
    registry.start_background()
    body = Readiness(status=registry.state, detail=registry.error, skipped=registry.skipped)
    return JSONResponse(body.model_dump(), status_code=status.HTTP_503_SERVICE_UNAVAILABLE)


@router.get("/metrics", summary="Prometheus metrics",
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
async def metrics(metrics: MetricsDep) -> Response:
    """Request counts and latency per route, batch sizes, predictions per label, errors."""
    return Response(metrics.render(), media_type=metrics.content_type)
