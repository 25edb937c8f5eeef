"""The ASGI application: the Streamlit product at ``/`` and the FastAPI service mounted at ``/api``.

Run it with ``uvicorn app.server:app`` (``make run``). One process, one port: the UI and the API share
one model registry, loaded in the background from ``st.App``'s lifespan (a mounted app's own lifespan does
not run, so this one enters it), and the telemetry flusher starts there too. The MLflow store is seeded on
the first visit to the Compare page, not here: seeding imports MLflow and builds its database, seconds of
CPU that would slow the first predictions (``python -m app.runs`` seeds ahead of time).
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import streamlit as st
from starlette.routing import Mount

from api.main import create_app
from app.model_source import AliasFollower
from app.settings import get_settings

logger = logging.getLogger(__name__)

SCRIPT = Path(__file__).resolve().parent / "entry" / "main.py"
API_PREFIX = "/api"
ACCESS_LOGGER = "uvicorn.access"
QUERY_OMITTED = "?[query omitted]"


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
    """Keep query strings out of the access log, however uvicorn was started (``make run`` logs accesses)."""
    access = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, QueryStringFilter) for f in access.filters):
        access.addFilter(QueryStringFilter())


def _configure_logging() -> None:
    """Send the ``app`` loggers to stderr (the API configures its own ``api`` loggers)."""
    root = logging.getLogger("app")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)


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
    """Build the ASGI app; nothing is loaded until the server starts (the lifespan)."""
    _configure_logging()
    _filter_access_log()
    services = _import_services()
    registry = services.model_registry()
    api = create_app(registry.settings, registry)

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[dict[str, Any]]:
        # The API's lifespan starts loading the models in a thread, watches EXPORTS_DIR for new versions and
        # closes its batchers on the way out.
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

    return st.App(SCRIPT, routes=[Mount(API_PREFIX, app=api)], lifespan=lifespan)


app = create_server()
