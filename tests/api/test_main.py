"""The app factory: the service mounted in a host app, as the Streamlit product does it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.routing import Mount

from api.main import create_app
from sentiment.registry import ModelRegistry
from tests.api.conftest import PROJECT_ROOT


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


def _started(command: list[str], env: dict[str, str], log: Path, port: int) -> subprocess.Popen[bytes]:
    """Start ``command`` (its own session, output in ``log``) and wait until ``port`` accepts connections; a bare
    TCP connection is no request, so it writes no access line."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError(f"not listening after 60 s: {log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def test_one_request_to_the_lean_api_is_one_json_line(tmp_path: Path) -> None:
    """``make serve``'s command logs a request once, as the app's JSON line: not uvicorn's text line beside it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("LOG_FORMAT", "LOG_LEVEL", "API_KEYS", "ADMIN_KEY")}
    # No exports: the models fail to load (an error line, not a request line); /healthz answers all the same.
    env |= {"EXPORTS_DIR": str(tmp_path / "no-exports"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(PROJECT_ROOT)}
    log = tmp_path / "serve.log"
    process = _started([sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory", "--host", "127.0.0.1",
                        "--port", str(port)], env, log, port)
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/healthz?probe=s3cret").status_code == 200
    finally:
        _stop(process)
    text = log.read_text()
    lines = [line for line in text.splitlines() if "/healthz" in line]
    assert len(lines) == 1, text
    entry = json.loads(lines[0])
    assert (entry["logger"], entry["path"], entry["status"]) == ("api.access", "/healthz", 200)
    assert "s3cret" not in text
