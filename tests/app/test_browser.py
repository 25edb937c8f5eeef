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
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
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


def _make_run_options() -> list[str]:
    """The uvicorn options of the Makefile's ``run`` target, after ``app.server:app`` (HOST and PORT as made)."""
    recipe = re.search(r"^run:.*\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert recipe, "no run target in the Makefile"
    # The recipe's uvicorn line (a port check may come first).
    line = next((line for line in recipe.group(1).splitlines() if "uvicorn" in line), "")
    words = shlex.split(line.strip())
    assert "app.server:app" in words, words
    return words[words.index("app.server:app") + 1:]


@contextmanager
def _serve(tmp: Path, options: list[str]) -> Iterator[LiveServer]:
    """``uvicorn app.server:app`` plus ``options`` on a free port, with its own feedback DB, MLflow store and
    fake ingestion; ``$(HOST)`` and ``$(PORT)`` in the options become the test's host and port."""
    ingestion = FakeIngestion().start()
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "EXPORTS_DIR": str(_exports(tmp)),
           "FEEDBACK_DB": str(tmp / "feedback.db"), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
           "MAINTAINER_SECRET": SECRET, "MAINTAINER_FAILED_LOGIN_DELAY_S": "0.5",
           "APPLICATIONINSIGHTS_CONNECTION_STRING": ingestion.connection_string, "TELEMETRY_FLUSH_INTERVAL_S": "60",
           "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true", "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
           "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true", "LOG_FORMAT": "text"}
    env.pop("DEFAULT_MODEL", None)
    args = [{"$(HOST)": "127.0.0.1", "$(PORT)": str(port)}.get(word, word) for word in options]
    log = tmp / "server.log"
    with log.open("wb") as sink:
        spawned_at = time.monotonic()
        process = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.server:app", *args], cwd=REPO, env=env,
                                   stdout=sink, stderr=subprocess.STDOUT)
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


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """``uvicorn app.server:app`` on a free port (no access log), shared by the tests of this module."""
    with _serve(tmp_path_factory.mktemp("live"), ["--host", "$(HOST)", "--port", "$(PORT)", "--no-access-log"]) \
            as server:
        try:
            yield server
        finally:
            TIMINGS.parent.mkdir(exist_ok=True)
            TIMINGS.write_text(json.dumps({k: round(v, 3) for k, v in server.timings.items()}, indent=2) + "\n")


@pytest.fixture
def fresh_make_run_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A server of its own, started with the Makefile's ``run`` options: no browser has visited it yet."""
    with _serve(tmp_path, _make_run_options()) as server:
        yield server


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


QUIET_MS = 600  # the script must stay finished this long: a click's rerun can take a moment to start

SETTLED_JS = """(quietMs) => {
    const app = document.querySelector('[data-testid="stApp"]');
    const done = app !== null && app.dataset.testConnectionState === 'CONNECTED'
        && app.dataset.testScriptState === 'notRunning'
        && document.querySelector('[data-testid="stSkeleton"], [data-stale="true"]') === null;
    const now = performance.now();
    if (!done) { window.__settledSince = null; return false; }
    if (window.__settledSince == null) window.__settledSince = now;
    return now - window.__settledSince >= quietMs;
}"""

ALL_CHARTS_DRAWN_JS = """() => [...document.querySelectorAll('[data-testid="stPlotlyChart"]')]
    .every(chart => chart.querySelector('.js-plotly-plot .main-svg') !== null)"""


def _wait_until_finished(page: Any, timeout_ms: int = 60_000) -> None:
    """Until Streamlit has finished running the script (for QUIET_MS) and Plotly has drawn every chart it sent: a
    chart count alone can be reached while the script is still adding charts above the ones counted."""
    page.evaluate("window.__settledSince = null")
    page.wait_for_function(SETTLED_JS, arg=QUIET_MS, polling=100, timeout=timeout_ms)
    page.wait_for_function(ALL_CHARTS_DRAWN_JS, polling=100, timeout=timeout_ms)


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


def _widget_text(page: Any, key: str) -> str:
    """What a widget shows (label and chosen values), found by its key (Streamlit's ``st-key-<key>`` class)."""
    return page.locator(f".st-key-{key}").inner_text()


def _selected(page: Any, key: str) -> str:
    """The value a select box shows, found by its key."""
    return page.locator(f".st-key-{key} input").input_value()


def test_direct_page_urls_go_through_the_navigation_and_share_views(chromium: Any,
                                                                    fresh_make_run_server: LiveServer) -> None:
    """The first visit of a fresh server is a page's own URL: it must still get the product's navigation, and
    the URL's parameters pre-fill the page; Review stays locked and Predict never predicts by itself. Neither
    the tweet nor the secret of these URLs reaches the server's log (started as ``make run`` starts it)."""
    server = fresh_make_run_server
    ready = json.loads(_get(f"{server.url}/api/readyz")[1])
    other = next(name for name in ready["models"] if name != ready["default"])
    page = chromium.new_page(viewport={"width": 1400, "height": 1100})
    page.set_default_timeout(60_000)
    try:
        # -- Review, first visit of the server: filters from the URL, a secret in the URL ignored and dropped ---
        page.goto(f"{server.url}/review?state=new&label=positive&secret={urllib.parse.quote(SECRET)}")
        page.get_by_role("heading", name="Review feedback").wait_for()
        # st.navigation's pages (titles and sections), not file names of a pages/ folder
        page.get_by_role("link", name="Compare models").wait_for()
        assert page.get_by_role("link", name=re.compile(r"^(main|predict|review|compare|about)$")).count() == 0
        page.get_by_label("Maintainer secret").wait_for()
        page.wait_for_timeout(1000)
        assert page.get_by_text("Misclassified tweets").count() == 0
        assert "secret" not in urllib.parse.urlparse(page.url).query
        page.get_by_label("Maintainer secret").fill(SECRET)
        page.get_by_role("button", name="Unlock").click()
        page.get_by_text("Misclassified tweets (0)").wait_for()
        assert (_selected(page, "state"), _selected(page, "label")) == ("new", "positive")
        assert "secret" not in urllib.parse.urlparse(page.url).query

        # -- Predict (the default page, at /): pre-filled, not predicted ----------------------------------------
        page.goto(f"{server.url}/?{urllib.parse.urlencode({'text': TWEET, 'model': other})}")
        page.get_by_text(f"{len(TWEET)} / 280 characters").wait_for()
        assert page.get_by_label("Tweet", exact=True).input_value() == TWEET
        assert _selected(page, "model") == other
        page.wait_for_timeout(1000)
        assert page.get_by_text("Was this prediction right?").count() == 0
        assert page.locator('[data-testid="stMetric"]').count() == 0
        page.get_by_role("tab", name="Batch (CSV)").click()
        page.get_by_text("20MB per file").wait_for()  # the upload limit of app/entry/.streamlit/config.toml

        # -- Compare: families, evaluation sets and the trade-off set from the URL ---------------------------------
        page.goto(f"{server.url}/compare?families=classical&sets=test&sets=validation_random&tradeoff=test")
        page.get_by_role("heading", name="Compare models").wait_for()
        _wait_for_charts(page)
        families = _widget_text(page, "families")
        assert "classical" in families and "transformer" not in families
        sets = _widget_text(page, "sets")
        assert "test" in sets and "validation_random" in sets
        assert _selected(page, "tradeoff") == "test"
    finally:
        page.close()

    log = server.log.read_text(errors="replace")
    # One access line per request, its path without the query string (sentiment.logs, app.server).
    assert '"path": "/compare"' in log or "path=/compare " in log, log[-3000:]
    assert "families=classical" not in log and "tradeoff=test" not in log
    for secret_text in (TWEET, urllib.parse.quote(TWEET), urllib.parse.quote_plus(TWEET), SECRET, "Two%20hours",
                        "Two+hours"):
        assert secret_text not in log, f"{secret_text!r} in the server log"


# layout="wide": the centered layout is at most 736 px wide (checked once the page config has landed).
WIDE_LAYOUT_JS = """() => {
    const main = document.querySelector('[data-testid="stMainBlockContainer"]');
    return main !== null && main.getBoundingClientRect().width > 1000;
}"""
_PAGE_TITLES = {"/": "Predict", "/predict": "Predict", "/compare": "Compare models", "/review": "Review feedback",
                "/about": "About"}
_RAW_NAMES = re.compile(r"^(main|predict|review|compare|about|home)$")


def _plot_data(page: Any) -> list[dict]:
    """The traces every Plotly chart of the page draws (names and points), as the browser holds them."""
    return page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].map(plot => (plot.data || [])
        .map(trace => ({name: trace.name ?? null, x: trace.x ?? null, y: trace.y ?? null})))""")


def test_every_page_url_opened_in_a_fresh_context_gets_the_products_shell(chromium: Any,
                                                                           fresh_make_run_server: LiveServer) -> None:
    """Each page URL, with and without parameters, and an unknown path, in a new browser context each time."""
    server = fresh_make_run_server
    urls = ["/about", "/compare", "/review", "/predict", "/", "/predict?text=hello%20there", "/compare?sets=test",
            "/review?state=new", "/nowhere-at-all"]
    for path in urls:
        context = chromium.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(60_000)
        try:
            page.goto(f"{server.url}{path}")
            page.get_by_role("link", name="Compare models").wait_for()
            for label in ("Predict", "Review feedback", "About"):
                assert page.get_by_role("link", name=label).count() == 1, (path, label)
            for section in ("Product", "Maintainer"):
                assert page.get_by_text(section, exact=True).count() >= 1, (path, section)
            assert page.get_by_role("link", name=_RAW_NAMES).count() == 0, path
            bare = path.split("?")[0]
            if bare in _PAGE_TITLES:
                page.wait_for_function("t => document.title.startsWith(t)", arg=_PAGE_TITLES[bare])
            else:
                page.get_by_text("Page not found").first.wait_for()
            # layout="wide" (the centered layout is at most 736 px); the page config can land after the first paint
            page.wait_for_function(WIDE_LAYOUT_JS, timeout=15_000)
        finally:
            context.close()

    # A shared Compare link reproduces the filtered chart data, not only the widgets' values.
    link = f"{server.url}/compare?families=classical&sets=test&tradeoff=test"
    data = []
    for _ in range(2):
        context = chromium.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(60_000)
        try:
            page.goto(link)
            page.get_by_role("heading", name="Compare models").wait_for()
            _wait_for_charts(page, 3)
            _wait_until_finished(page)
            data.append(_plot_data(page))
        finally:
            context.close()
    assert data[0] == data[1] and data[0]
    drawn = json.dumps(data[0])
    assert "minilm" not in drawn and "vader" not in drawn and "tfidf-lr" in drawn
    assert "validation_random" not in drawn
