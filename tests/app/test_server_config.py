"""How ``uvicorn app.server:app`` is arranged: the entry script, its Streamlit configuration, its access log."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from tests.app.conftest import REPO

ENTRY = REPO / "app" / "entry" / "main.py"
# What app/entry/.streamlit/config.toml promises (README, "Streamlit product").
EXPECTED_OPTIONS = {"server.maxUploadSize": 20, "browser.gatherUsageStats": False, "client.toolbarMode": "viewer",
                    "client.showErrorDetails": "type"}
PRINT_OPTIONS = f"""
import json
import app.server
from streamlit import config
print(json.dumps({{"script": str(app.server.SCRIPT), **{{k: config.get_option(k) for k in {list(EXPECTED_OPTIONS)!r}}}}}))
"""


def test_no_pages_folder_beside_the_entry_script() -> None:
    # Streamlit runs a pages/ folder beside the entry script as a v1 multipage app until st.navigation has been
    # called once in the process: the first visit of a page URL would skip the navigation.
    from app import server

    assert ENTRY.resolve() == server.SCRIPT
    assert not (ENTRY.parent / "pages").exists()
    assert sorted(p.name for p in (ENTRY.parent.parent / "pages").glob("*.py")) == [
        "about.py", "compare.py", "predict.py", "review.py"]


def test_streamlit_configuration_is_read_beside_the_entry_script_from_any_directory(tmp_path: Path) -> None:
    assert (ENTRY.parent / ".streamlit" / "config.toml").is_file()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")}
    env |= {"PYTHONPATH": str(REPO), "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1",
            "EXPORTS_DIR": str(tmp_path / "no-exports"), "FEEDBACK_DB": str(tmp_path / "feedback.db")}
    done = subprocess.run([sys.executable, "-c", PRINT_OPTIONS], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    options = json.loads(done.stdout.strip().splitlines()[-1])
    assert options.pop("script") == str(ENTRY.resolve())
    assert options == EXPECTED_OPTIONS


@pytest.mark.parametrize("path", ["/predict?text=Two%20hours%20stuck&model=tfidf-lr", "/review?secret=s3cret",
                                  "/api/v1/models?token=abc"])
def test_access_log_lines_carry_no_query_string(path: str, caplog: pytest.LogCaptureFixture) -> None:
    from app import server

    access = logging.getLogger(server.ACCESS_LOGGER)
    assert any(isinstance(f, server.QueryStringFilter) for f in access.filters)
    with caplog.at_level(logging.INFO, logger=server.ACCESS_LOGGER):
        access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5555", "GET", path, "1.1", 200)
    (line,) = [r.getMessage() for r in caplog.records]
    assert line == f'127.0.0.1:5555 - "GET {path.split("?")[0]}?[query omitted] HTTP/1.1" 200'
    for secret in ("Two", "s3cret", "abc", "tfidf-lr"):
        assert secret not in line


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_product_server_logs_one_json_line_per_request(tmp_path: Path) -> None:
    """``make run``'s command: a page, an API call and a websocket session are one line each, in JSON; no query
    string reaches the log (issue 17, "Logs": each request was logged twice in two formats, API calls three times)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("STREAMLIT_") and k not in ("LOG_FORMAT", "LOG_LEVEL", "API_KEYS", "ADMIN_KEY")}
    # No exports: the models fail to load (one error line); pages, /api/healthz and websockets answer all the same.
    env |= {"PYTHONPATH": str(REPO), "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "SEED_MLFLOW_RUNS": "false",
            "EXPORTS_DIR": str(tmp_path / "no-exports"), "FEEDBACK_DB": str(tmp_path / "feedback.db"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.server:app", "--host", "127.0.0.1", "--port",
                                    str(port)], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:  # a bare TCP connection is no request: it writes no access line
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/about?text=Two%20hours%20stuck").status_code == 200
        assert httpx.get(f"{base}/api/healthz?token=s3cret").status_code == 200
        with connect(f"ws://127.0.0.1:{port}/_stcore/stream", subprotocols=["streamlit"], open_timeout=30):
            pass
        time.sleep(0.5)  # the session's line is written when the server has seen it close
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
    text = log.read_text()
    lines = text.splitlines()

    def about(*marks: str) -> list[dict]:
        found = [line for line in lines if any(mark in line for mark in marks)]
        assert len(found) == 1, text
        return json.loads(found[0])

    page, health = about("/about"), about("/api/healthz")
    session = about("/_stcore/stream", "WebSocket", "connection open", "connection closed")
    assert (page["logger"], page["method"], page["path"], page["status"]) == ("app.access", "GET", "/about", 200)
    assert (health["logger"], health["path"], health["status"]) == ("api.access", "/api/healthz", 200)
    assert (session["logger"], session["method"], session["status"]) == ("app.access", "WEBSOCKET", 101)
    for secret in ("Two", "s3cret", "token="):
        assert secret not in text


def test_mlflow_draws_no_progress_bar_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's "Downloading artifacts" bars went to the server's log; a value the user set is kept."""
    from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR

    from app import server

    monkeypatch.delenv(server.MLFLOW_PROGRESS_BAR, raising=False)
    server.progress_bars_off()
    assert MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.get() is False
    monkeypatch.setenv(server.MLFLOW_PROGRESS_BAR, "true")
    server.progress_bars_off()
    assert MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.get() is True
