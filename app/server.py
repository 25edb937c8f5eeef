"""The ASGI application: the Streamlit product at ``/`` and the FastAPI service mounted at ``/api``.

Run it with ``uvicorn app.server:app`` (``make run``). One process, one port: the UI and the API share
one model registry, loaded in the background from ``st.App``'s lifespan (a mounted app's own lifespan does
not run, so this one enters it), and the telemetry flusher starts there too. The MLflow store is seeded on
the first visit to the Compare page, not here: seeding imports MLflow and builds its database, seconds of
CPU that would slow the first predictions (``python -m app.runs`` seeds ahead of time).

Logs: one line per request, in ``LOG_FORMAT`` (JSON by default), like every other line of the project's loggers.
The API logs its own requests (``api.access``, with the request id); :class:`AccessLogMiddleware` logs the UI's
(``app.access``: pages, static files, and one line per websocket session, written when it ends). uvicorn's
access line and its per-connection websocket lines would repeat them in another format: they are off while the
server runs. ``LOG_FORMAT=none`` leaves all of it to uvicorn and Streamlit. MLflow's progress bars, drawn on
stderr while the Compare page reads artifacts, stay off unless ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR`` is set.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, nullcontext
from pathlib import Path
from types import ModuleType
from typing import Any

import streamlit as st
from starlette.middleware import Middleware
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.main import create_app
from api.middleware import KNOWN_METHODS, OTHER_METHOD
from app.model_source import AliasFollower
from app.settings import get_settings
from sentiment.logs import SERVER_ACCESS_LOGGER, configure_logging

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("app.access")

SCRIPT = Path(__file__).resolve().parent / "entry" / "main.py"
API_PREFIX = "/api"
ACCESS_LOGGER = SERVER_ACCESS_LOGGER
SERVER_ERROR_LOGGER = "uvicorn.error"
QUERY_OMITTED = "?[query omitted]"
# Set to "false" when unset: MLflow reads it each time it would draw a bar.
MLFLOW_PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
WEBSOCKET_METHOD = "WEBSOCKET"
# A log line must not grow with what a client sends.
_LOGGED_PATH_CHARS = 200


class QueryStringFilter(logging.Filter):
    """Drop the query string from uvicorn's access lines: shared links carry a tweet (``/predict?text=…``).

    uvicorn logs ``'%s - "%s %s HTTP/%s" %d'`` with the path and its query string as the third argument.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], args[2].split("?", 1)[0] + QUERY_OMITTED, *args[3:])
        return True


def _filter_access_log() -> None:
    """Keep query strings out of uvicorn's access log, whenever it is on (``LOG_FORMAT=none``, or a log
    configuration of the host's)."""
    access = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, QueryStringFilter) for f in access.filters):
        access.addFilter(QueryStringFilter())


class WebsocketLinesFilter(logging.Filter):
    """Drop uvicorn's per-connection websocket lines (``"WebSocket /_stcore/stream" [accepted]``, ``connection
    open``, ``connection closed``): :class:`AccessLogMiddleware` writes one line per session instead."""

    PER_CONNECTION = ("connection open", "connection closed")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not isinstance(record.msg, str):
            return True
        return not (record.msg in self.PER_CONNECTION or record.msg.startswith('%s - "WebSocket '))


@contextmanager
def _websocket_lines_off() -> Iterator[None]:
    """Filter the websocket lines out of uvicorn's error log while the server runs (a filter, not a level:
    Streamlit resets the level of uvicorn's loggers when it parses its configuration)."""
    websocket_filter = WebsocketLinesFilter()
    loggers = [logging.getLogger(name) for name in (SERVER_ERROR_LOGGER, "websockets.server")]
    for target in loggers:
        target.addFilter(websocket_filter)
    try:
        yield
    finally:
        for target in loggers:
            target.removeFilter(websocket_filter)


class AccessLogMiddleware:
    """One line per request to the UI (``app.access``): method, path without its query string, status, duration.

    Requests under ``skip_prefix`` (the API) are logged by the API. A websocket session is one line, written when it
    ends: method ``WEBSOCKET``, status 101 once accepted, its length as the duration.
    """

    def __init__(self, app: ASGIApp, skip_prefix: str = API_PREFIX + "/") -> None:
        self.app = app
        self.skip_prefix = skip_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        path: str = scope.get("path", "")
        if kind not in ("http", "websocket") or path.startswith(self.skip_prefix) \
                or not access_logger.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] in ("http.response.start", "websocket.http.response.start"):
                status = message["status"]
            elif message["type"] == "websocket.accept":
                status = 101
            elif message["type"] == "websocket.close" and status == 500:
                status = 403  # closed before the handshake: uvicorn answers 403
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            if kind == "websocket":
                method = WEBSOCKET_METHOD
            else:
                method = scope["method"] if scope["method"] in KNOWN_METHODS else OTHER_METHOD
            access_logger.info("request", extra={"method": method, "path": path[:_LOGGED_PATH_CHARS],
                                                 "status": status,
                                                 "duration_ms": round((time.perf_counter() - started) * 1000, 3)})


def progress_bars_off() -> None:
    """No MLflow progress bar in the server's log: MLflow draws a "Downloading artifacts" bar on stderr for each
    artifact the Compare page reads. An explicit ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR`` is kept."""
    os.environ.setdefault(MLFLOW_PROGRESS_BAR, "false")


def _import_services() -> ModuleType:
    """Import :mod:`app.services` without Streamlit's "no runtime yet" warnings.

    Its cached functions are declared before ``st.App`` creates the runtime; Streamlit then warns that it
    falls back to in-memory cache storage, which is what these caches use anyway.
    """
    noisy = logging.getLogger("streamlit.runtime.caching.cache_data_api")
    level = noisy.level
    noisy.setLevel(logging.ERROR)
    try:
        return importlib.import_module("app.services")
    finally:
        noisy.setLevel(level)


def create_server() -> st.App:
    """Build the ASGI app; nothing is loaded, and the process's logging is left alone, until the server starts
    (the lifespan)."""
    _filter_access_log()
    services = _import_services()
    registry = services.model_registry()
    settings = registry.settings
    api = create_app(settings, registry)
    # LOG_FORMAT=none: the host's logging as it is, uvicorn's access lines included.
    logs_here = settings.log_format != "none"

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[dict[str, Any]]:
        progress_bars_off()
        if logs_here:
            configure_logging(settings.log_level, settings.log_format, trees=("app",))
        # The API's lifespan starts loading the models in a thread, watches EXPORTS_DIR for new versions, keeps
        # uvicorn's access line off while it runs, and closes its batchers on the way out.
        with _websocket_lines_off() if logs_here else nullcontext():
            async with api.router.lifespan_context(api):
                flusher = services.telemetry_flusher()
                follower = AliasFollower.from_settings(get_settings())  # None unless FOLLOW_MODEL_URI is set
                if follower is not None:
                    follower.start()
                logger.info("serving the UI at / and the API at %s (telemetry %s)", API_PREFIX,
                            "on" if flusher.enabled else "off")
                yield {"api": api}
                flusher.stop()
                if follower is not None:
                    follower.stop()

    middleware = [Middleware(AccessLogMiddleware, skip_prefix=API_PREFIX + "/")] if logs_here else []
    return st.App(SCRIPT, routes=[Mount(API_PREFIX, app=api)], middleware=middleware, lifespan=lifespan)


app = create_server()
