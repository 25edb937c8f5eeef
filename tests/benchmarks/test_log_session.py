"""Issue 17, "Logs": the log-session benchmark's line counting, and progress bars only on a terminal.

The lines below are the shapes the product server wrote (``results/tmp/log_session-*.log``), with made-up
addresses and ids. The end-to-end checks of one line per request are in ``tests/api/test_main.py`` (the lean API)
and ``tests/app/test_server_config.py`` (the product server).
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from benchmarks.log_session import classify, count_lines, markdown

JSON_ACCESS = json.dumps({"time": "2026-01-01T00:00:00.000+00:00", "level": "INFO", "logger": "api.access",
                          "message": "request", "method": "POST", "path": "/api/v1/predict", "status": 200})
BEFORE = "\n".join([
    "INFO:     Started server process [1]",
    'INFO:     127.0.0.1:5000 - "GET /predict?[query omitted] HTTP/1.1" 200 OK',
    '2026-01-01 00:00:00.001 127.0.0.1:5000 - "GET /predict?[query omitted] HTTP/1.1" 200',
    'INFO:     127.0.0.1:5001 - "POST /api/v1/predict HTTP/1.1" 200 OK',
    '2026-01-01 00:00:00.002 127.0.0.1:5001 - "POST /api/v1/predict HTTP/1.1" 200',
    JSON_ACCESS,
    '2026-01-01 00:00:00.003 127.0.0.1:5002 - "WebSocket /_stcore/stream" [accepted]',
    "2026-01-01 00:00:00.004 connection open",
    "Downloading artifacts:   0%|          | 0/1 [00:00<?, ?it/s]\rDownloading artifacts: 100%|##########| 1/1",
    "2026-01-01 00:00:00,005 INFO app.runs: seeded 6 MLflow run(s)",
    "2026/01/01 00:00:00 INFO mlflow.store.db.utils: Creating initial MLflow database tables...",
    "2026-01-01 00:00:01.000 Shutting down",
    "",
])


def test_each_line_shape_is_named() -> None:
    names = [classify(line) for line in BEFORE.split("\n")[:-1]]
    assert names == ["uvicorn text line", "uvicorn text access line", "Streamlit-format text access line",
                     "uvicorn text access line", "Streamlit-format text access line", "JSON access line",
                     "Streamlit-format text access line", "websocket text line", "progress bar", "app text line",
                     "MLflow text line", "Streamlit-format text line"]
    assert classify(json.dumps({"logger": "sentiment.registry", "message": "models ready"})) == "JSON line"
    assert classify("{not json") == "other"


def test_counts_split_on_newlines_only_and_find_sent_texts() -> None:
    counts = count_lines(BEFORE, secrets=["Two hours stuck"])
    assert counts["log_lines"] == 12  # the \r of the bar does not end a line
    assert counts["request_lines"] == 7  # 2 for the page, 3 for the API call, 2 for the websocket
    assert (counts["progress_bar_lines"], counts["progress_bar_updates"]) == (1, 1)
    assert counts["lines_with_sent_text"] == 0
    assert count_lines(BEFORE + "a line with Two hours stuck\n", ["Two hours stuck"])["lines_with_sent_text"] == 1


def test_the_report_shows_every_label() -> None:
    run = {"measured_at": "2026-01-01T00:00:00+00:00", "commit": "abc1234", "requests": 10, "log_lines": 12,
           "lines_per_request": 1.2, "request_lines_per_request": 1.0, "progress_bar_lines": 0,
           "progress_bar_updates": 0, "lines_with_sent_text": 0, "formats": {"JSON access line": 10}}
    text = markdown({"runs": {"before": run | {"log_lines": 30}, "after": run}})
    assert "| before |" in text and "| after |" in text and "JSON access line (10)" in text


class NotATerminal(io.StringIO):
    """stderr redirected to a file (``nohup``, a service's log)."""

    def isatty(self) -> bool:
        return False


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_training_bar_is_drawn_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from training.train_transformer import progress_bar

    log = NotATerminal()
    monkeypatch.setattr("sys.stderr", log)
    with progress_bar(total=10, desc="fine-tune tiny", unit="step") as bar:
        bar.update(10)
    assert bar.disable and log.getvalue() == ""
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    with progress_bar(total=10, desc="fine-tune tiny", unit="step") as bar:
        bar.update(10)
    assert "fine-tune tiny" in terminal.getvalue()


class FakeTeacher:
    name, version = "teacher-fake", "1"

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return np.tile([0.25, 0.75], (len(texts), 1))


def test_teacher_scoring_logs_its_progress_instead_of_a_bar_in_a_log_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from training import distill

    log = NotATerminal()
    monkeypatch.setattr("sys.stderr", log)
    with caplog.at_level(logging.INFO, logger="training.distill"):
        scores = distill.teacher_targets(FakeTeacher(), [f"tweet {i}" for i in range(5)], tmp_path / "cache",
                                         stamp="teacher-fake@1:test")
    assert np.allclose(scores, 0.75)
    assert log.getvalue() == ""
    assert "teacher teacher-fake: 5/5 tweets scored" in caplog.messages


def test_training_logs_a_progress_line_every_log_every_steps_in_a_log_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from tests.training.conftest import synthetic_tweets
    from training.data import Dataset
    from training.train_transformer import TrainConfig, train

    rows = synthetic_tweets(64)
    data = Dataset([text for text, _ in rows], np.array([int(label == 4) for _, label in rows]))
    cfg = TrainConfig(output_dir=str(tmp_path), tiny=True, batch_size=16, epochs=1.0, log_every=2,
                      checkpoint_every=100, threads=1)
    log = NotATerminal()
    monkeypatch.setattr("sys.stderr", log)
    with caplog.at_level(logging.INFO, logger="training.train_transformer"):
        assert train(cfg, data) is not None
    assert "fine-tune" not in log.getvalue() and "\r" not in log.getvalue()
    steps = [m.split(":")[0] for m in caplog.messages if m.startswith("step ")]
    assert steps == ["step 2/4 (epoch 0.50)", "step 4/4 (epoch 1.00)"]
