"""Fixtures for the Streamlit product's tests: tiny exports, run records and fakes, all made here.

Every tweet below was written for these tests; nothing is copied from a data set.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sentiment.exports import LABELS, METADATA_FILE, SCHEMA_VERSION, sha256_file
from sentiment.preprocess import PREPROCESSING_VERSION

REPO = Path(__file__).resolve().parents[2]
OFFLINE_FLAGS = {
    "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
    "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
    "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true",
}
POSITIVE = [
    "what a lovely flight, the crew was great", "great service and friendly staff, thank you",
    "love the new seats, so comfortable", "landed early, happy and relaxed", "best airline ever, great food",
    "thank you for the smooth trip, loved it", "happy to be home, great landing", "wonderful crew, lovely trip",
]
NEGATIVE = [
    "worst delay ever, lost my bag", "terrible service, rude staff at the desk", "cancelled again, so angry",
    "hate waiting three hours for nothing", "awful food and broken seats", "delayed and lost luggage, worst trip",
    "rude crew and a terrible delay", "never again, awful airline",
]

for _flag, _value in OFFLINE_FLAGS.items():
    os.environ.setdefault(_flag, _value)


class FakePredictor:
    """A predictor with the ``sentiment.predictor`` contract whose answer depends on words in the text."""

    def __init__(self, name: str = "fake-lexicon", version: str = "7", family: str = "classical",
                 aliases: Sequence[str] = ("champion",)) -> None:
        self.name, self.version, self.family, self.variant = name, version, family, "onnx"
        self.labels = LABELS
        self.metadata: dict[str, Any] = {"name": name, "aliases": list(aliases),
                                         "metrics": {"validation_random": {"accuracy": 0.9}}}
        self.calls = 0

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        rows = []
        for text in texts:
            lowered = text.lower()
            score = sum(w in lowered for w in ("love", "great", "happy")) - sum(
                w in lowered for w in ("hate", "worst", "awful", "lost"))
            p_positive = 0.5 + max(-0.45, min(0.45, 0.3 * score)) if score else 0.55
            rows.append([1 - p_positive, p_positive])
        return np.asarray(rows, dtype=np.float32)


def write_metadata(folder: Path, **meta: Any) -> dict[str, Any]:
    """Write ``metadata.json`` (schema 1) for the files already in ``folder``."""
    files = {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != METADATA_FILE}
    full = {"schema_version": SCHEMA_VERSION, "labels": list(LABELS), "preprocessing_version": PREPROCESSING_VERSION,
            "version": "1", "aliases": [], "metrics": {}, "mlflow": {}, "display_name": meta.get("name"),
            **meta, "files": files}
    (folder / METADATA_FILE).write_text(json.dumps(full, indent=2))
    return full


def build_classical_export(folder: Path, name: str = "tiny-tfidf", aliases: Sequence[str] = ("champion",),
                           accuracy: float = 0.8) -> Path:
    """A real skl2onnx TF-IDF + logistic regression export trained on the tweets above (a second or so)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import StringTensorType
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    folder.mkdir(parents=True, exist_ok=True)
    tfidf, clf = TfidfVectorizer(), LogisticRegression(C=10.0)
    pipeline = Pipeline([("tfidf", tfidf), ("clf", clf)]).fit(NEGATIVE + POSITIVE, [0] * 8 + [1] * 8)
    onx = convert_sklearn(pipeline, initial_types=[("text", StringTensorType([None, 1]))], target_opset=17,
                          options={id(clf): {"zipmap": False}, id(tfidf): {"locale": "C"}})
    (folder / "model.onnx").write_bytes(onx.SerializeToString())
    write_metadata(folder, name=name, family="classical", variants={"onnx": "model.onnx"}, default_variant="onnx",
                   probability_output="probabilities", aliases=list(aliases),
                   metrics={"validation_random": {"accuracy": accuracy}})
    return folder


def run_record(run_id: str, model: str, family: str, accuracy: float, latency: float,
               with_history: bool = False) -> dict[str, Any]:
    """A run record in the exports/runs layout of docs/CONTRACTS.md (made-up numbers)."""
    metrics: dict[str, float] = {}
    for offset, set_name in ((0.0, "test"), (0.01, "validation_random")):
        metrics |= {f"{set_name}_accuracy": accuracy - offset, f"{set_name}_f1_macro": accuracy - offset - 0.005,
                    f"{set_name}_roc_auc": min(0.99, accuracy + 0.08)}
    metrics["validation_random_latency_p50_ms"] = latency  # measured on one set, as training does
    record: dict[str, Any] = {
        "run_id": run_id, "run_name": model, "experiment": "tweet-sentiment",
        "start_time": 1_760_000_000_000, "end_time": 1_760_000_060_000, "status": "FINISHED",
        "params": {"C": "1.0", "max_length": "64"}, "metrics": metrics,
        "tags": {"model_name": model, "model_family": family, "preprocessing_version": PREPROCESSING_VERSION},
        "metric_history": {},
        "artifacts": {
            "eval/test/confusion_matrix.json": {"labels": list(LABELS), "matrix": [[40, 10], [8, 42]]},
            "eval/test/roc_curve.json": {"fpr": [0.0, 0.2, 1.0], "tpr": [0.0, 0.8, 1.0], "auc": accuracy + 0.08},
        },
    }
    if with_history:
        record["metric_history"]["train_loss"] = [[step, 0.7 - step * 0.01, 1_760_000_000_000 + step]
                                                  for step in range(0, 40, 2)]
        record["metrics"]["train_loss"] = 0.32
    return record


def write_run_records(folder: Path) -> list[dict[str, Any]]:
    folder.mkdir(parents=True, exist_ok=True)
    records = [run_record("a" * 32, "tiny-tfidf", "classical", 0.80, 0.4),
               run_record("b" * 32, "tiny-minilm", "transformer", 0.86, 6.0, with_history=True),
               run_record("c" * 32, "tiny-vader", "lexicon", 0.70, 0.1)]
    for record in records:
        (folder / f"{record['run_id']}.json").write_text(json.dumps(record))
    return records


@pytest.fixture(scope="session")
def classical_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An exports folder holding one real tiny classical export (``tiny-tfidf``, champion)."""
    root = tmp_path_factory.mktemp("exports")
    build_classical_export(root / "tiny-tfidf")
    return root


@pytest.fixture
def app_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, classical_export: Path) -> Iterator[Path]:
    """Environment of one app instance: fresh feedback DB and MLflow store, telemetry off, no waits."""
    import streamlit as st

    from app.settings import get_settings

    for key in ("APPLICATIONINSIGHTS_CONNECTION_STRING", "MAINTAINER_SECRET", "DEFAULT_MODEL",
                "TELEMETRY_INCLUDE_TEXT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("EXPORTS_DIR", str(classical_export))
    monkeypatch.setenv("FEEDBACK_DB", str(tmp_path / "feedback.db"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MAINTAINER_FAILED_LOGIN_DELAY_S", "0")
    monkeypatch.setenv("LOG_FORMAT", "none")
    get_settings.cache_clear()
    st.cache_resource.clear()
    st.cache_data.clear()
    yield tmp_path
    st.cache_resource.clear()
    st.cache_data.clear()
    get_settings.cache_clear()


@pytest.fixture
def compare_env(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``app_env`` serving one tiny classical export, with run records for the Compare page; returns exports/."""
    from app.settings import get_settings

    exports = app_env / "exports"
    build_classical_export(exports / "tiny-tfidf")
    write_run_records(exports / "runs")
    monkeypatch.setenv("EXPORTS_DIR", str(exports))
    get_settings.cache_clear()
    return exports
