"""The Predict page's predictions go through the API's queue, deadline and metrics (audit finding 8).

A real uvicorn server runs the API on a tiny export whose model is slowed down and records who called it; API
clients flood it while the page predicts through ``AppTest`` (its script runs in a thread of its own, as in
Streamlit) with the server's registry, the way ``app.server`` shares one registry between the UI and the API.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from api.main import create_app
from api.settings import Settings
from app import services
from app.inference import score_frame
from sentiment.predictor import Predictor, load_predictor
from sentiment.registry import ModelRegistry
from tests.api.conftest import ServerThread

MAIN = Path(__file__).resolve().parents[2] / "app" / "entry" / "main.py"
MODEL = "tiny-tfidf"  # the export of tests/app/conftest.py
WORKER_THREAD = f"predict-{MODEL}_0"  # the batcher's one thread (sentiment.batching.MicroBatcher's executor)
GATE_TIMEOUT_S = 10.0


class RecordingPredictor(Predictor):
    """Wraps a predictor: records the thread and texts of every call, sleeps a little, can be held shut."""

    def __init__(self, inner: Predictor, delay_s: float = 0.02) -> None:
        super().__init__(inner.folder, inner.metadata, inner.variant)
        self.inner = inner
        self.delay_s = delay_s
        self.calls: list[tuple[str, list[str]]] = []
        self.gate = threading.Event()
        self.gate.set()
        self._lock = threading.Lock()

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            self.calls.append((threading.current_thread().name, list(texts)))
        self.gate.wait(GATE_TIMEOUT_S)  # a bypassing caller is held too, but not forever
        time.sleep(self.delay_s)
        return self.inner.predict_proba(texts)

    def calls_with(self, prefix: str) -> list[tuple[int, str, list[str]]]:
        """(index, thread, texts) of the calls holding a text that starts with ``prefix``."""
        with self._lock:
            return [(i, thread, texts) for i, (thread, texts) in enumerate(self.calls)
                    if any(t.startswith(prefix) for t in texts)]


class Server(ServerThread):
    """The API of ``app.server`` (``create_app`` on the shared registry) in uvicorn, in a thread."""

    def __init__(self, exports: Path, **overrides: Any) -> None:
        values: dict[str, Any] = {"exports_dir": exports, "enabled_models": (MODEL,), "api_keys": (),
                                  "default_model": None, "log_format": "none", "warmup": False,
                                  "max_batch_size": 8, "max_batch_wait_ms": 2.0}
        self.settings = Settings(**(values | overrides))
        self.model: RecordingPredictor | None = None

        def loader(folder: Path, threads: int | None = None) -> Predictor:
            self.model = RecordingPredictor(load_predictor(folder, threads=threads))
            return self.model

        self.registry = ModelRegistry(self.settings, loader=loader)
        super().__init__(create_app(self.settings, self.registry))

    def start(self) -> Server:
        super().start(timeout_s=30.0, require_ready=True)
        return self

    def stop(self) -> None:
        assert self.model is not None
        self.model.gate.set()
        super().stop()

    def metric(self, name: str) -> float:
        text = httpx.get(f"{self.base}/metrics").text
        return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE))


class Flood:
    """API clients sending single tweets back to back from their own thread until stopped."""

    def __init__(self, base: str, clients: int = 4) -> None:
        self.base, self.clients = base, clients
        self.ok = 0
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        async with httpx.AsyncClient(base_url=self.base, timeout=30) as client:
            async def one_client(number: int) -> None:
                sent = 0
                while not self._stop.is_set():
                    response = await client.post("/v1/predict", json={"text": f"api {number}-{sent} lovely crew"})
                    self.statuses.append(response.status_code)
                    self.ok += response.status_code == 200
                    sent += 1

            await asyncio.gather(*(one_client(n) for n in range(self.clients)))

    def __enter__(self) -> Flood:
        self._thread.start()
        deadline = time.monotonic() + 10
        while self.ok < 10 and time.monotonic() < deadline:  # the API is busy before the page predicts
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


@pytest.fixture
def serve(app_env: Path, classical_export: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Server]]:
    """Start a server; the pages' registry (``services.model_registry``) is the server's, as in ``app.server``."""
    started: list[Server] = []

    def start(**overrides: Any) -> Server:
        server = Server(classical_export, **overrides).start()
        monkeypatch.setattr(services, "build_registry", lambda settings: server.registry)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def test_page_predictions_share_the_api_queue_and_metrics_while_the_api_is_flooded(serve) -> None:
    server = serve()
    model = server.model
    assert model is not None
    csv = "text\n" + "".join(f"page batch {i} great flight\n" for i in range(20))
    with Flood(server.base) as flood:
        at = AppTest.from_file(str(MAIN), default_timeout=60).run()
        at.toggle(key="compare_all").set_value(True)
        at.text_area(key="tweet_text").input("page single, what a lovely flight, great crew")
        at = at.button(key="predict").click().run()
        at.file_uploader(key="batch_file").set_value(("mine.csv", csv.encode(), "text/csv")).run()
        at = at.button(key="score_batch").click().run()
    assert not at.exception, at.exception
    assert at.metric[0].value == "Positive"
    assert len(at.dataframe[1].value) == 20  # [0] is the every-model table
    assert set(flood.statuses) == {200} and flood.ok > 10

    # Every page text reached the model through the server's batcher (its worker thread, or the event loop
    # itself for a lone tweet on an idle model), never from the script thread.
    page_calls = model.calls_with("page ")
    threads = {thread for _, thread, _ in page_calls}
    assert page_calls and threads <= {WORKER_THREAD, server.thread.name}, page_calls
    single = model.calls_with("page single")
    assert len(single) == 2  # the selected model, then the every-model table (one model served)
    batch = model.calls_with("page batch")
    assert [len([t for t in texts if t.startswith("page batch")]) for _, _, texts in batch] == [8, 8, 4]
    # The batch went in chunks one after another, and API requests were answered between them.
    first, last = batch[0][0], batch[-1][0]
    api_between = [i for i, _, _ in model.calls_with("api ") if first < i < last]
    assert api_between, model.calls[first : last + 1]

    # Counted like the API's requests: per label and per model call.
    page_texts = 2 + 20
    assert server.metric("predictions_total") == flood.ok + page_texts
    assert server.metric("model_batch_size_sum") == flood.ok + page_texts
    assert server.metric("model_queue_texts") == 0


def hold_the_queue_full(server: Server) -> list[threading.Thread]:
    """Block the model on one API request and fill the queue behind it with API texts."""
    model = server.model
    assert model is not None
    model.gate.clear()
    limit = server.settings.max_queue_texts

    def post(path: str, body: dict[str, Any]) -> threading.Thread:
        thread = threading.Thread(target=lambda: httpx.post(f"{server.base}{path}", json=body, timeout=30),
                                  daemon=True)
        thread.start()
        return thread

    threads = [post("/v1/predict", {"text": "api running"})]
    while not model.calls_with("api running"):
        time.sleep(0.01)
    threads.append(post("/v1/predict/batch", {"texts": [f"api queued {i}" for i in range(limit)]}))
    batcher = server.registry.get(MODEL).batcher
    while batcher.queued_texts < limit:
        time.sleep(0.01)
    return threads


def test_a_full_queue_gives_the_page_a_busy_message_instead_of_a_bypass(serve) -> None:
    server = serve(max_queue_texts=4)
    model = server.model
    assert model is not None
    at = AppTest.from_file(str(MAIN), default_timeout=60).run()
    threads = hold_the_queue_full(server)
    at.text_area(key="tweet_text").input("page single, what a lovely flight, great crew")
    at = at.button(key="predict").click().run()
    model.gate.set()
    for thread in threads:
        thread.join(30)
    assert not at.exception, at.exception
    assert not at.metric and "busy" in at.warning[0].value and "try again in" in at.warning[0].value
    assert not model.calls_with("page ")  # the model never saw the page's tweet
    assert server.metric("requests_shed_total") == 1  # shed and counted like an API request


def test_a_batch_waits_for_a_full_queue_from_another_thread_then_completes(serve) -> None:
    from app.inference import QueuedModel

    server = serve(max_queue_texts=4)
    model = server.model
    assert model is not None
    threads = hold_the_queue_full(server)
    batcher = server.registry.get(MODEL).batcher
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # the page would sleep retry_after; here the queue drains meanwhile
        waits.append(seconds)
        model.gate.set()
        while batcher.queued_texts:
            time.sleep(0.01)

    notes: list[str] = []
    outcome: dict[str, Any] = {}
    frame = pd.DataFrame({"text": [f"page batch {i} great flight" for i in range(6)]})

    def script() -> None:  # a Streamlit script thread
        outcome["frame"] = score_frame(QueuedModel(server.registry, server.registry.get(MODEL)), frame,
                                       max_chars=1000, batch_size=4, progress=lambda _, text: notes.append(text), sleep=sleep)

    page = threading.Thread(target=script, name="ScriptRunner.scriptThread")
    page.start()
    page.join(60)
    for thread in threads:
        thread.join(30)
    assert len(waits) == 1 and waits[0] >= 1
    assert any("busy" in note and "retrying in" in note for note in notes), notes
    assert len(outcome["frame"]) == 6 and set(outcome["frame"]["label"]) <= {"negative", "positive"}
    assert {thread for _, thread, _ in model.calls_with("page ")} == {WORKER_THREAD}
    assert server.metric("requests_shed_total") == 1
