"""The lean FastAPI service: ``create_app(settings=None) -> FastAPI``.

Run alone (the lean image, ``make serve``)::

    uvicorn api.main:create_app --factory --host 0.0.0.0 --port 8000

Each request is logged once, by the app (``api.access``, in ``LOG_FORMAT``); while it runs uvicorn's own access
line is off (``--no-access-log`` changes nothing more).

The app's lifespan starts loading the models in a thread and returns at once: ``/healthz`` answers
immediately, ``/readyz`` turns 200 when every model is loaded and warmed up.

Mounted in another ASGI app (the Streamlit product mounts it at ``/api``), where a mounted sub-app's
lifespan does not run. The models still load — on the first ``/readyz`` or prediction, which waits for
them — but the host should start the loading itself so the first user does not wait::

    api = create_app()

    @asynccontextmanager
    async def lifespan(_):
        async with api.router.lifespan_context(api):   # runs the API's lifespan: start loading, then stop
            yield

    # or, without the lifespan: `await api.state.registry.start()` (async, in a thread) or
    # `api.state.registry.load()` (blocking), then `await api.state.registry.aclose()` on shutdown.

The app reads nothing at import time; ``app.state`` holds ``settings``, ``registry`` and ``metrics``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.exceptions import RequestValidationError

from api.deps import require_json
from api.docs import asset_paths, install_docs
from api.errors import validation_error_handler
from api.middleware import RequestContextMiddleware
from api.routes import admin, compat, health, models, predict
from api.schemas import TEXT_FIELD_MARK, ErrorResponse
from api.security import ApiKeyGate, KeyChecker, api_key_dependency
from api.settings import Settings
from sentiment.logs import configure_logging, server_access_log_off
from sentiment.metrics import Metrics, multiprocess_dir
from sentiment.registry import ModelRegistry
from sentiment.reload import start_watcher

logger = logging.getLogger(__name__)

API_VERSION = "1.0.0"
DESCRIPTION = """Tweet sentiment (negative / positive) for airline social-media monitoring.

Send one tweet to `POST /v1/predict` or up to 256 to `POST /v1/predict/batch`; `GET /v1/models` lists the
models. The original service's routes (`POST /predict`, `POST /predict_batch`, `GET /`) answer in its shape.
When `API_KEYS` is set, send a key as `X-API-Key` or `Authorization: Bearer`; health routes stay open.
A new export in `EXPORTS_DIR` is swapped in without a restart, within `RELOAD_INTERVAL_S` or at once through
`POST /v1/admin/reload` (`ADMIN_KEY`).
"""
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "Unknown model."},
    413: {"model": ErrorResponse, "description": "Body larger than MAX_BODY_BYTES."},
    415: {"model": ErrorResponse, "description": "Body not sent as application/json."},
    503: {"model": ErrorResponse, "description": "Models not loaded yet, queue full or deadline passed (retry "
          "after Retry-After seconds), or models failed to load."},
}
_AUTH_ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": ErrorResponse, "description": "Missing or bad API key."}}
def create_app(settings: Settings | None = None, registry: ModelRegistry | None = None) -> FastAPI:
    """Build the service.

    Args:
        settings: configuration; read from the environment when omitted.
        registry: the models to serve; built from ``settings`` when omitted (tests pass one with a wrapped
            loader).

    Returns:
        The FastAPI app; its models load in the lifespan, when the host starts ``app.state.registry``, or on
        the first request that needs them.
    """
    settings = settings or Settings()
    configure_logging(settings.log_level, settings.log_format)
    if registry is None:
        registry = ModelRegistry(settings)
    metrics = registry.metrics or Metrics()
    registry.metrics = metrics
    metrics.sample(metrics.models_ready, lambda: float(registry.ready))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # One line per request: the middleware's (api.access). uvicorn's access line would be a second one, in
        # another format; with LOG_FORMAT=none the host's logging, uvicorn's line included, is left as it is.
        with nullcontext() if settings.log_format == "none" else server_access_log_off():
            registry.start_background()
            watcher = start_watcher(registry, settings.reload_interval_s, multiprocess_dir())
            yield
            if watcher is not None:
                watcher.cancel()
            await registry.aclose()

    app = FastAPI(
        title="Tweet sentiment API",
        version=API_VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
        # Counted on the streamed bytes as they arrive, not only on Content-Length (Starlette's body limit).
        max_body_size=settings.max_body_bytes,
        # Served by api.docs from vendored assets: FastAPI's own pages load a CDN and stay blank offline.
        docs_url=None, redoc_url=None,
    )
    install_docs(app)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.state.settings = settings
    app.state.registry = registry
    app.state.metrics = metrics
    checker = KeyChecker(settings.api_keys)
    if checker.enabled:
        # Added before the context middleware, so it runs inside it: a 401 still gets an id, a log line, metrics.
        app.add_middleware(ApiKeyGate, checker=checker, open_paths=_open_paths(app))
    app.add_middleware(RequestContextMiddleware, metrics=metrics)

    guarded = [Depends(api_key_dependency(checker))] if checker.enabled else []
    errors = {**_ERRORS, **(_AUTH_ERRORS if checker.enabled else {})}
    body_routes = [*guarded, Depends(require_json)]
    app.include_router(predict.router, dependencies=body_routes, responses=errors)
    app.include_router(models.router, dependencies=guarded, responses=errors)
    app.include_router(compat.router, dependencies=body_routes, responses=errors)
    app.include_router(compat.open_router)
    app.include_router(health.router)
    keys = admin.admin_checker(settings)
    # The admin key is checked by the route's own dependency: the gate would ask for one of API_KEYS instead.
    app.include_router(admin.router, dependencies=[Depends(api_key_dependency(keys) if keys.enabled else admin.disabled)])
    _advertise_text_limit(app, settings.max_text_chars)
    return app


def _open_paths(app: FastAPI) -> set[str]:
    """Paths the API key gate lets through: health, metrics, the original greeting, the documentation, and the
    admin routes (they check their own key)."""
    routers = (health.router, compat.open_router, admin.router)
    paths = {route.path for router in routers for route in router.routes if hasattr(route, "path")}
    return paths | {app.openapi_url} | asset_paths()


def _advertise_text_limit(app: FastAPI, max_text_chars: int) -> None:
    """Make the OpenAPI schema give tweet fields ``maxLength: MAX_TEXT_CHARS`` (a runtime setting)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _fill_text_limits(build(), max_text_chars)  # build() caches the schema in app.openapi_schema
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def _fill_text_limits(node: Any, max_text_chars: int) -> None:
    if isinstance(node, dict):
        if node.pop(TEXT_FIELD_MARK, False):
            node["maxLength"] = max_text_chars
        for value in node.values():
            _fill_text_limits(value, max_text_chars)
    elif isinstance(node, list):
        for value in node:
            _fill_text_limits(value, max_text_chars)
