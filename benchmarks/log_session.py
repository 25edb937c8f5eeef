"""``make bench-logs``: what one scripted session of the product server writes to its log, line by line.

Starts ``python -m uvicorn app.server:app --host 127.0.0.1 --port <free port>`` as ``make run`` does (the
project root as working directory, ``HF_HUB_OFFLINE=1``, ``TOKENIZERS_PARALLELISM=false``, the committed
``exports/``; a throw-away feedback database and MLflow store, so that every run seeds the same runs), with
stdout and stderr captured in one file. It waits for the port and the engine's ``models ready`` line without
sending a request (readiness polls would add a number of logged requests that depends on how fast the models
load), then sends the same requests in the same order every time:

* ``GET /api/readyz`` (200), then ``GET`` of the home page and of the four pages' URLs (one with a query
  string, as a shared link carries): over plain HTTP these fetch Streamlit's HTML shell only, the pages'
  scripts do not run;
* one websocket session per page (``/_stcore/stream``, as a browser opens): each asks Streamlit to run the
  page's script and waits until it has finished; the Compare page reads MLflow (runs, artifacts, metric
  history), which is where MLflow's "Downloading artifacts" progress bars came from;
* ``GET /api/healthz``, ``/api/readyz``, ``/api/v1/models``, 30 ``POST /api/v1/predict`` with varied tweets
  (every third naming ``tfidf-lr``), 5 ``POST /api/v1/predict/batch`` of 8 tweets, 3 bad requests (422),
  ``GET /api/metrics`` and ``GET /api/docs``.

Then it stops the server (SIGTERM) and counts: log lines (``\\n``-separated), requests (each websocket session
one), lines per request, progress-bar lines (a ``\\r``, ``Downloading artifacts`` or ``%|``), the lines that tell
of one request (access lines in any format, websocket accept/open/close lines) and the distinct line formats.
It also counts lines holding a tweet it sent or the query string's text: there must be none.

Writes ``results/log_session.json`` and ``results/log_session.md``, one row per ``--label`` (a run replaces the
row of its label and keeps the others); the server's log goes to ``results/tmp/log_session-<label>.log``.
``before`` was measured on the commit before the logging fix, extracted with ``git archive`` and run with
``--project-root`` (the archive lacks the git-ignored model files: the exports default to this checkout's
``exports/``)::

    git archive HEAD | tar -x -C /tmp/logs-before
    .venv/bin/python -m benchmarks.log_session --label before --project-root /tmp/logs-before --commit <sha>
    .venv/bin/python -m benchmarks.log_session --label after
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.servers import HOST, PROJECT_ROOT, free_port
from benchmarks.tweets import make_tweets

logger = logging.getLogger("benchmarks")

SINGLE_TWEETS = 30
BATCHES, BATCH_SIZE = 5, 8
# A shared link to the Predict page: its text must not reach the log.
QUERY_TEXT = "Stuck on the tarmac for two hours"
PAGE_URLS = ("/", f"/predict?text={QUERY_TEXT.replace(' ', '%20')}", "/compare", "/review", "/about")
# Websocket page runs, by the url_path of each st.Page ("" is the default page).
WS_PAGES = ("", "predict", "compare", "review", "about")
BAD_BODIES = ({"text": "   "}, {"text": "fine flight", "colour": "blue"}, {"texts": []})
# Variables that would make the server differ from its shipped defaults.
UNSET = ("LOG_FORMAT", "LOG_LEVEL", "API_KEYS", "ADMIN_KEY", "ENABLED_MODELS", "DEFAULT_MODEL", "FOLLOW_MODEL_URI",
         "APPLICATIONINSIGHTS_CONNECTION_STRING", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "MLFLOW_TRACKING_URI",
         "FEEDBACK_DB", "EXPORTS_DIR", "PROJECT_ROOT", "SEED_MLFLOW_RUNS")
READY_TIMEOUT_S = 300.0
# The engine's line once every model is loaded (sentiment.registry; before and after the logging fix alike).
READY_LINE = b'"message": "models ready"'
WS_TIMEOUT_S = 180.0

# Line formats, tried in order; the first that matches names the line.
_ACCESS_REQUEST = r'"(?:GET|HEAD|POST|PUT|DELETE|PATCH|OPTIONS|WebSocket) [^"]*"'
FORMATS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("progress bar", re.compile(r"\r|Downloading artifacts|%\|")),
    ("uvicorn text access line", re.compile(r"^INFO:\s+\S+ - " + _ACCESS_REQUEST)),
    ("Streamlit-format text access line",
     re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \S+ - " + _ACCESS_REQUEST)),
    ("websocket text line", re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} connection (?:open|closed)$")),
    ("uvicorn text line", re.compile(r"^(?:INFO|WARNING|ERROR|DEBUG|CRITICAL):\s")),
    ("Streamlit-format text line", re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} ")),
    ("app text line", re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \S+: ")),
    ("MLflow text line", re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d [A-Z]+ mlflow")),
    ("onnxruntime text line", re.compile(r"\[[EWIV]:onnxruntime:")),
    ("empty line", re.compile(r"^\s*$")),
)
# Formats that tell of one request each (websocket sessions included).
REQUEST_FORMATS = {"uvicorn text access line", "Streamlit-format text access line", "websocket text line",
                   "JSON access line"}
ACCESS_LOGGERS = {"api.access", "app.access"}


def classify(line: str) -> str:
    """The format of one log line (a name of :data:`FORMATS`, ``JSON access line``, ``JSON line`` or ``other``)."""
    for name, pattern in FORMATS:
        if pattern.search(line):
            return name
    if line.startswith("{"):
        try:
            entry = json.loads(line)
        except ValueError:
            return "other"
        if isinstance(entry, dict):
            return "JSON access line" if entry.get("logger") in ACCESS_LOGGERS else "JSON line"
    return "other"


def count_lines(log: str, secrets: list[str]) -> dict[str, Any]:
    """Line counts of a captured log: in all, by format, progress-bar lines, and lines holding a secret."""
    lines = log.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    formats = Counter(classify(line) for line in lines)
    return {
        "log_lines": len(lines),
        "request_lines": sum(n for name, n in formats.items() if name in REQUEST_FORMATS),
        "progress_bar_lines": formats.get("progress bar", 0),
        "progress_bar_updates": log.count("\r"),
        "formats": dict(sorted(formats.items(), key=lambda kv: (-kv[1], kv[0]))),
        "lines_with_sent_text": sum(any(s in line for s in secrets) for line in lines),
    }


@dataclass
class Session:
    """The client side of the session: counts what it sends."""

    port: int
    requests: int = 0
    failures: int = 0

    def call(self, method: str, path: str, body: object = None, expect: int = 200) -> int:
        connection = http.client.HTTPConnection(HOST, self.port, timeout=60)
        try:
            data = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json"} if data is not None else {}
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            response.read()
            status = response.status
        finally:
            connection.close()
        self.requests += 1
        if status != expect:
            self.failures += 1
            logger.warning("%s %s: %d, expected %d", method, path.split("?")[0], status, expect)
        return status

    def run_page(self, page: str) -> str:
        """One websocket session: ask Streamlit to run ``page``'s script and wait until it has finished (the
        rerun included, when the script asks for one)."""
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
        from websockets.sync.client import connect

        self.requests += 1
        with connect(f"ws://{HOST}:{self.port}/_stcore/stream", subprotocols=["streamlit"],  # type: ignore[list-item]
                     max_size=None, open_timeout=30) as websocket:
            rerun = BackMsg()
            rerun.rerun_script.query_string = ""
            rerun.rerun_script.page_name = page
            websocket.send(rerun.SerializeToString())
            deadline = time.monotonic() + WS_TIMEOUT_S
            while True:
                message = ForwardMsg()
                message.ParseFromString(websocket.recv(timeout=max(deadline - time.monotonic(), 0.1)))
                if message.WhichOneof("type") == "script_finished":
                    status = ForwardMsg.ScriptFinishedStatus.Name(message.script_finished)
                    if status == "FINISHED_EARLY_FOR_RERUN":  # the navigation reruns the script: wait for that run
                        continue
                    if status != "FINISHED_SUCCESSFULLY":
                        self.failures += 1
                    return status


def _wait_ready(process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    """Wait for the port to accept connections and the engine's "models ready" line, without a request: polling
    ``/api/readyz`` would add a number of logged requests that depends on how fast the models load."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}; see {log_path}")
        if READY_LINE in log_path.read_bytes():
            try:
                socket.create_connection((HOST, port), timeout=1.0).close()  # no request: nothing logged
                return
            except OSError:
                pass
        time.sleep(0.1)
    raise TimeoutError(f"not ready after {READY_TIMEOUT_S:.0f} s; see {log_path}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _drive(session: Session) -> dict[str, str]:
    """The fixed list of requests; returns how each page's script finished."""
    session.call("GET", "/api/readyz")
    for url in PAGE_URLS:
        session.call("GET", url)
    pages = {page or "home": session.run_page(page) for page in WS_PAGES}
    for path in ("/api/healthz", "/api/readyz", "/api/v1/models"):
        session.call("GET", path)
    for n, text in enumerate(make_tweets(SINGLE_TWEETS, seed=17)):
        session.call("POST", "/api/v1/predict", {"text": text} | ({"model": "tfidf-lr"} if n % 3 == 2 else {}))
    batch_tweets = make_tweets(BATCHES * BATCH_SIZE, seed=18)
    for n in range(BATCHES):
        session.call("POST", "/api/v1/predict/batch", {"texts": batch_tweets[n * BATCH_SIZE:(n + 1) * BATCH_SIZE]})
    session.call("POST", "/api/v1/predict", BAD_BODIES[0], expect=422)
    session.call("POST", "/api/v1/predict", BAD_BODIES[1], expect=422)
    session.call("POST", "/api/v1/predict/batch", BAD_BODIES[2], expect=422)
    session.call("GET", "/api/metrics")
    session.call("GET", "/api/docs")
    return pages


def measure(project_root: Path, exports_dir: Path, python: str, log_path: Path) -> dict[str, Any]:
    """Run the session against the server of ``project_root``; its counts."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="log-session-") as state:
        env = {k: v for k, v in os.environ.items() if k not in UNSET and not k.startswith("STREAMLIT_")}
        env |= {"PYTHONPATH": str(project_root), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                "EXPORTS_DIR": str(exports_dir), "FEEDBACK_DB": str(Path(state) / "feedback.db"),
                "MLFLOW_TRACKING_URI": f"sqlite:///{Path(state) / 'mlflow.db'}"}
        command = [python, "-m", "uvicorn", "app.server:app", "--host", HOST, "--port", str(port)]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with log_path.open("wb") as log:
            # A session of its own: stopping it stops exactly this server.
            process = subprocess.Popen(command, cwd=project_root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            session = Session(port)
            _wait_ready(process, port, log_path)
            ready_s = time.perf_counter() - started
            pages = _drive(session)
        finally:
            _stop(process)
    sent = [QUERY_TEXT, *make_tweets(SINGLE_TWEETS, seed=17), *make_tweets(BATCHES * BATCH_SIZE, seed=18)]
    counts = count_lines(log_path.read_bytes().decode("utf-8", errors="replace"), sent)
    return {"requests": session.requests, "unexpected_statuses": session.failures,
            "ready_seconds": round(ready_s, 1), "page_runs": pages, **counts,
            "lines_per_request": round(counts["log_lines"] / session.requests, 2),
            "request_lines_per_request": round(counts["request_lines"] / session.requests, 2),
            "exit_code": process.returncode}


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Log lines of one scripted session (`make bench-logs`)", "",
        "`benchmarks/log_session.py` starts `uvicorn app.server:app` as `make run` does, waits for its port and "
        "the engine's `models ready` line (no request), then sends the same requests each time: `GET /api/readyz`, "
        "the home page and the four pages over plain HTTP (Streamlit's HTML "
        "shell), one websocket session per page (each runs the page's script; Compare reads MLflow), the health "
        "routes, 30 single and 5 batch predictions, 3 bad "
        "requests (422), `/api/metrics` and `/api/docs`; then it stops the server and counts the lines of its "
        "stdout and stderr. *Request lines* are the lines that tell of one request (access lines in any format, "
        "websocket lines); startup, model-loading and shutdown lines make up the rest.", "",
        "| run | measured | requests sent | log lines | lines per request | request lines per request "
        "| progress-bar lines (\\r updates) | lines with a sent text | line formats seen |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, run in result["runs"].items():
        formats = ", ".join(f"{name} ({n})" for name, n in run["formats"].items())
        lines.append(
            f"| {label} | {run['measured_at']} ({run['commit']}) | {run['requests']} | {run['log_lines']} "
            f"| {run['lines_per_request']} | {run['request_lines_per_request']} | {run['progress_bar_lines']} "
            f"({run['progress_bar_updates']}) | {run['lines_with_sent_text']} | {formats} |")
    return "\n".join(lines) + "\n"


def _commit(project_root: Path) -> str:
    """The checkout's HEAD, marked ``+changes`` when its working tree differs from it."""
    head = subprocess.run(["git", "-C", str(project_root), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False)
    if head.returncode != 0:
        return "unknown"
    status = subprocess.run(["git", "-C", str(project_root), "status", "--porcelain", "--untracked-files=no"],
                            capture_output=True, text=True, check=False)
    return head.stdout.strip() + ("+changes" if status.stdout.strip() else "")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", default="after", help="row of the results this run writes (replaces that row)")
    parser.add_argument("--project-root", type=Path, default=PROJECT_ROOT,
                        help="the checkout whose server runs (its working directory and PYTHONPATH)")
    parser.add_argument("--exports-dir", type=Path, default=PROJECT_ROOT / "exports",
                        help="EXPORTS_DIR of the server (default: this checkout's exports/)")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs uvicorn")
    parser.add_argument("--commit", default=None, help="what the project root holds, for the results "
                        "(default: its git HEAD)")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "results")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    project_root = args.project_root.resolve()
    log_path = PROJECT_ROOT / "results" / "tmp" / f"log_session-{args.label}.log"
    run = measure(project_root, args.exports_dir.resolve(), args.python, log_path)
    run |= {"measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "commit": args.commit or _commit(project_root), "project_root": str(project_root),
            "server_log": str(log_path.relative_to(PROJECT_ROOT))}
    json_path = args.out / "log_session.json"
    result = json.loads(json_path.read_text()) if json_path.is_file() else {"runs": {}}
    result["runs"][args.label] = run
    args.out.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "log_session.md").write_text(markdown(result))
    logger.info("%s: %d requests, %d log lines (%.2f per request), %d progress-bar lines; wrote %s", args.label,
                run["requests"], run["log_lines"], run["lines_per_request"], run["progress_bar_lines"],
                args.out / "log_session.md")


if __name__ == "__main__":
    main()
