"""The Spark-free part of batch scoring: output columns and reasons on a pandas index, the worker cache."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from batch import spark as batch_spark
from batch.scoring import DEFAULT_CHUNK_ROWS, MALFORMED, OUTPUT_COLUMNS, default_chunk_rows, score_texts
from sentiment.exports import ExportError
from sentiment.predictor import Predictor, load_predictor
from sentiment.scoring import EMPTY, MISSING, TOO_LONG

TFIDF_LR = Path(__file__).resolve().parents[2] / "exports" / "tfidf-lr"


class RecordingPredictor(Predictor):
    """Wraps a real predictor and records how many texts each call gets."""

    def __init__(self, inner: Predictor) -> None:
        super().__init__(inner.folder, inner.metadata, inner.variant)
        self.inner = inner
        self.calls: list[int] = []

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        return self.inner.predict_proba(texts)


@pytest.fixture(scope="module")
def tfidf_lr() -> Predictor:
    return load_predictor(TFIDF_LR)


def test_bad_rows_get_a_reason_and_no_label(tfidf_lr: Predictor) -> None:
    texts = pd.Series(["I love this crew", None, "   ", "x" * 1001, "lost my bag, worst airline"],
                      index=[10, 11, 12, 13, 14])
    out = score_texts(texts, tfidf_lr, max_chars=1000, chunk_rows=2)
    assert list(out.columns) == list(OUTPUT_COLUMNS)
    assert list(out.index) == [10, 11, 12, 13, 14]
    assert out["reason"].tolist() == [None, MISSING, EMPTY, TOO_LONG, None]
    assert out["label"].tolist() == ["positive", None, None, None, "negative"]
    assert out.loc[[11, 12, 13], ["confidence", "p_positive"]].isna().all().all()
    assert (out["model"] == "tfidf-lr").all() and (out["version"] == tfidf_lr.version).all()
    expected = tfidf_lr.predict_proba(["I love this crew", "lost my bag, worst airline"])
    assert out.loc[[10, 14], "p_positive"].tolist() == [float(p) for p in expected[:, 1]]
    assert out.loc[[10, 14], "confidence"].tolist() == [float(p) for p in expected.max(axis=1)]


def test_all_rows_bad_calls_no_model(tfidf_lr: Predictor) -> None:
    recording = RecordingPredictor(tfidf_lr)
    out = score_texts(pd.Series([None, ""]), recording, max_chars=1000)
    assert out["reason"].tolist() == [MISSING, EMPTY]
    assert sum(recording.calls) == 0


def test_malformed_rows_are_flagged_whatever_their_text_and_never_reach_the_model(tfidf_lr: Predictor) -> None:
    recording = RecordingPredictor(tfidf_lr)
    texts = pd.Series(["I love this crew", "worst airline", None, "lost my bag, worst airline"], index=[5, 6, 7, 8])
    malformed = pd.Series([False, True, True, False], index=texts.index)
    out = score_texts(texts, recording, max_chars=1000, malformed=malformed)
    assert out["reason"].tolist() == [None, MALFORMED, MALFORMED, None]
    assert out["label"].tolist() == ["positive", None, None, "negative"]
    assert out.loc[[6, 7], ["confidence", "p_positive"]].isna().all().all()
    assert sum(recording.calls) == 2


def test_a_worker_loads_its_predictor_once(monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[Path] = []

    def loader(folder: Path, variant: str | None = None, threads: int | None = None) -> str:
        loads.append(folder)
        return f"predictor of {folder}"

    monkeypatch.setattr(batch_spark, "load_predictor", loader)
    monkeypatch.setattr(batch_spark, "_PREDICTORS", {})
    first = batch_spark.worker_predictor(str(TFIDF_LR), "onnx", 1)
    assert batch_spark.worker_predictor(str(TFIDF_LR), "onnx", 1) is first
    assert loads == [TFIDF_LR]


def test_an_export_missing_on_a_node_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ExportError, match="--archives"):
        batch_spark.locate_export(str(tmp_path / "absent"))


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_spark_refuses_a_wide_encoding_with_the_fix(tmp_path: Path, encoding: str) -> None:
    source = tmp_path / "tweets.csv"
    source.write_bytes("text\nhello\n".encode(encoding))
    with pytest.raises(ValueError, match=f"{encoding.upper()} text.*iconv -f {encoding.upper()} -t UTF-8"):
        batch_spark._refuse_wide_encodings(str(source))
    (tmp_path / "plain.csv").write_text("text\nhello\n", encoding="utf-8")
    batch_spark._refuse_wide_encodings(str(tmp_path / "plain.csv"))  # UTF-8: read as usual


def test_static_int8_is_scored_in_chunks_and_a_dynamic_graph_one_tweet_a_call() -> None:
    class Graph:
        variant = "int8"

        def __init__(self, activations: str | None) -> None:
            self.metadata = {"quantization": {"activations": activations}} if activations else {}

    assert default_chunk_rows(Graph("static")) == DEFAULT_CHUNK_ROWS
    assert default_chunk_rows(Graph(None)) == 1  # an export quantised before decision 0007
    assert default_chunk_rows(load_predictor(TFIDF_LR.parent / "minilm")) == DEFAULT_CHUNK_ROWS
