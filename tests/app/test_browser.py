"""The running product (``uvicorn app.server:app``) driven by Debian's Chromium through Playwright.

A user types a tweet, predicts and gives a thumbs down; the maintainer unlocks the review page and finds the
tweet there; the analyst's comparison page draws its charts; the event reaches a fake Application Insights.
Screenshots go to ``artifacts/screenshots/``, or to ``docs/screenshots/`` (the README shows them) when
``UPDATE_SCREENSHOTS=1``, so that a test run leaves the tracked files alone; the measured times go to
``artifacts/app-timings.json``.

Needs ``pip install playwright`` and ``apt-get install -y chromium`` (``/usr/bin/chromium``); skipped without
them. The server uses the committed exports when ``exports/`` holds any, else tiny ones made here.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.app.conftest import REPO, build_classical_export, write_run_records
from tests.app.fake_ingestion import FakeIngestion

pytestmark = pytest.mark.slow

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOTS = REPO / ("docs" if os.environ.get("UPDATE_SCREENSHOTS") == "1" else "artifacts") / "screenshots"
TIMINGS = REPO / "artifacts" / "app-timings.json"
SECRET = "browser-test-maintainer-secret"
# Written for this test.
TWEET = "Two hours stuck at the gate and nobody told us anything. Great job, really."
STARTUP_TIMEOUT_S = 180


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen[bytes]
    spawned_at: float
    ingestion: FakeIngestion
    log: Path
    timings: dict[str, float] = field(default_factory=dict)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - local test server
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _wait_for(url: str, process: subprocess.Popen[bytes], log: Path, deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if _get(url, timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail(f"{url} not ready after {STARTUP_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")


def _exports(tmp: Path) -> Path:
    """The committed exports when present, else a tiny classical export and run records made here."""
    committed = REPO / "exports"
    if any(committed.glob("*/metadata.json")):
        return committed
    root = tmp / "exports"
    build_classical_export(root / "tiny-tfidf")
    build_classical_export(root / "tiny-tfidf-b", name="tiny-tfidf-b", aliases=(), accuracy=0.75)
    write_run_records(root / "runs")
    return root


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: apt-get install -y chromium")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """``uvicorn app.server:app`` on a free port, with its own feedback DB, MLflow store and fake ingestion."""
    tmp = tmp_path_factory.mktemp("live")
    ingestion = FakeIngestion().start()
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "EXPORTS_DIR": str(_exports(tmp)),
           "FEEDBACK_DB": str(tmp / "feedback.db"), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
           "MAINTAINER_SECRET": SECRET, "MAINTAINER_FAILED_LOGIN_DELAY_S": "0.5",
           "APPLICATIONINSIGHTS_CONNECTION_STRING": ingestion.connection_string, "TELEMETRY_FLUSH_INTERVAL_S": "60",
           "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true", "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
           "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true", "LOG_FORMAT": "text"}
    env.pop("DEFAULT_MODEL", None)
    log = tmp / "server.log"
    with log.open("wb") as sink:
        spawned_at = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.server:app", "--host", "127.0.0.1", "--port", str(port),
             "--no-access-log"], cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)
    server = LiveServer(f"http://127.0.0.1:{port}", process, spawned_at, ingestion, log)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        _wait_for(f"{server.url}/_stcore/health", process, log, deadline)
        server.timings["start_to_health_s"] = time.monotonic() - spawned_at
        _wait_for(f"{server.url}/api/readyz", process, log, deadline)
        server.timings["start_to_models_ready_s"] = time.monotonic() - spawned_at
        yield server
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        ingestion.stop()
        TIMINGS.parent.mkdir(exist_ok=True)
        TIMINGS.write_text(json.dumps({k: round(v, 3) for k, v in server.timings.items()}, indent=2) + "\n")


def test_one_port_serves_the_ui_and_the_api(live_server: LiveServer) -> None:
    status, _ = _get(f"{live_server.url}/")
    assert status == 200
    assert _get(f"{live_server.url}/api/docs")[0] == 200
    ready = json.loads(_get(f"{live_server.url}/api/readyz")[1])
    request = urllib.request.Request(f"{live_server.url}/api/v1/predict", data=json.dumps({"text": TWEET}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - local test server
        body = json.loads(response.read())
    assert body["model"] == ready["default"] and body["label"] in ("negative", "positive")


def _wait_for_charts(page: Any, count: int = 1) -> None:
    page.locator('[data-testid="stPlotlyChart"] .main-svg').nth(count - 1).wait_for(timeout=60_000)


def _screenshot(page: Any, name: str) -> None:
    """The whole page: Streamlit scrolls inside its main block, so grow the viewport to that block's height."""
    size = page.viewport_size
    height = 0
    for _ in range(3):  # charts may grow the page once they render at the new size
        page.wait_for_timeout(500)
        new = min(6000, int(page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")))
        if new <= height:
            break
        height = new
        page.set_viewport_size({"width": size["width"], "height": max(size["height"], height)})
    page.screenshot(path=str(SCREENSHOTS / name))
    page.set_viewport_size(size)


def test_user_thumbs_down_reaches_the_maintainer(chromium: Any, live_server: LiveServer) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = chromium.new_page(viewport={"width": 1400, "height": 1100})
    page.set_default_timeout(60_000)
    # -- the user ------------------------------------------------------------------------------------------
    page.goto(live_server.url)
    area = page.get_by_label("Tweet", exact=True)
    area.fill(TWEET)
    area.press("Control+Enter")
    page.get_by_text(f"{len(TWEET)} / 280 characters").wait_for()
    started = time.monotonic()
    page.get_by_role("button", name="Predict").click()
    page.get_by_text("Was this prediction right?").wait_for()
    live_server.timings["first_ui_prediction_round_trip_ms"] = (time.monotonic() - started) * 1000
    live_server.timings["start_to_first_ui_prediction_s"] = time.monotonic() - live_server.spawned_at
    assert page.locator('[data-testid="stText"]').filter(has_text=TWEET).count() == 1
    _wait_for_charts(page)
    page.get_by_role("radio", name="Thumbs down").click()
    page.get_by_text("Saved as misclassified").wait_for()
    _screenshot(page, "predict.png")

    page.get_by_text("Show every model's verdict").click()
    started = time.monotonic()
    page.get_by_role("button", name="Predict").click()
    page.get_by_text("All models").wait_for()
    live_server.timings["all_models_ui_round_trip_ms"] = (time.monotonic() - started) * 1000
    _wait_for_charts(page, 2)
    _screenshot(page, "predict-all-models.png")

    # -- telemetry: the background flusher sent the event, without the tweet text -----------------------------
    deadline = time.monotonic() + 20
    while not live_server.ingestion.events() and time.monotonic() < deadline:
        time.sleep(0.1)
    (event,) = live_server.ingestion.events()
    assert event["data"]["baseData"]["properties"]["verdict"] == "down"
    assert "tweet_text" not in event["data"]["baseData"]["properties"]

    # -- the maintainer -------------------------------------------------------------------------------------
    page.get_by_role("link", name="Review feedback").click()
    secret = page.get_by_label("Maintainer secret")
    secret.fill("wrong-secret")
    page.get_by_role("button", name="Unlock").click()
    page.get_by_text("Wrong secret.").wait_for()
    secret.fill(SECRET)
    page.get_by_role("button", name="Unlock").click()
    page.get_by_text("Misclassified tweets (1)").wait_for()
    page.locator('[data-testid="stCode"]').filter(has_text=TWEET).wait_for()
    page.get_by_text("Sent").first.wait_for()
    _wait_for_charts(page)
    _screenshot(page, "review.png")

    # -- the analyst ----------------------------------------------------------------------------------------
    started = time.monotonic()
    page.get_by_role("link", name="Compare models").click()
    page.get_by_role("heading", name="Compare models").wait_for()
    _wait_for_charts(page, 3)
    live_server.timings["compare_first_visit_with_seeding_s"] = time.monotonic() - started
    _screenshot(page, "compare.png")
    page.close()
