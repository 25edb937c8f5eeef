"""The app factory: the service mounted in a host app, as the Streamlit product does it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.routing import Mount

from api.main import create_app
from sentiment.registry import ModelRegistry


def test_mounted_under_a_prefix_with_the_host_running_our_lifespan(exports_dir, settings_factory) -> None:
    settings = settings_factory(exports_dir)
    registry = ModelRegistry(settings)
    api = create_app(settings, registry)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with api.router.lifespan_context(api):  # the documented way for a host
            yield

    host = Starlette(routes=[Mount("/api", app=api)], lifespan=lifespan)
    with TestClient(host) as client:
        registry.load()  # the lifespan began loading in a thread; wait for it here
        assert client.get("/api/readyz").status_code == 200
        body = client.post("/api/v1/predict", json={"text": "mounted"}).json()
        assert body["model"] == "tiny-bert"
        assert client.get("/api/openapi.json").status_code == 200
        metrics = client.get("/api/metrics").text
        assert 'route="/v1/predict"' in metrics and "models_ready 1.0" in metrics
    # The lifespan closed the batchers on the way out; the registry still serves if used again.
    assert registry.ready


def test_registry_loaded_before_the_app_is_built(exports_dir, settings_factory) -> None:
    """A host that loads first (a Streamlit page) and builds the API later still reports readiness."""
    settings = settings_factory(exports_dir)
    registry = ModelRegistry(settings)
    registry.load()
    client = TestClient(create_app(settings, registry))
    assert client.get("/readyz").status_code == 200
    assert "models_ready 1.0" in client.get("/metrics").text
