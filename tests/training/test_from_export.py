"""A served export is enough to continue training from: its torch model rebuilt from the ONNX graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from sentiment.exports import read_metadata
from sentiment.predictor import load_predictor
from training import from_export
from training import train_transformer as tt
from training.quantize import fp32_from_int8

EXPORTS = Path(__file__).resolve().parents[2] / "exports"


@pytest.fixture(scope="module")
def rebuilt_minilm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return from_export.rebuild(EXPORTS / "minilm", tmp_path_factory.mktemp("minilm"), tt.FAMILIES["minilm"].weights()[0])


def test_the_rebuilt_minilm_answers_as_the_served_export(rebuilt_minilm: Path) -> None:
    texts = ["the crew was lovely and the seats were great", "three hours late and they lost my bag, terrible",
             "boarding now, see you in Lisbon", "not bad at all", "worst airline ever #fail"]
    torch_p = tt.TorchClassifier.from_path(rebuilt_minilm).predict_proba(texts)[:, 1]
    served_p = load_predictor(EXPORTS / "minilm").predict_proba(texts)[:, 1]
    # The same weights; the served graph also rounds its activations to int8.
    assert np.array_equal(torch_p >= 0.5, served_p >= 0.5)
    assert np.abs(torch_p - served_p).max() < 0.05


def test_a_wrong_mapping_is_caught_by_the_check(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = from_export.state_dict_from_graph

    def swapped(graph: onnx.ModelProto, expected: dict) -> dict:
        state = real(graph, expected)
        query, key = "bert.encoder.layer.0.attention.self.query.weight", "bert.encoder.layer.0.attention.self.key.weight"
        state[query], state[key] = state[key], state[query]
        return state

    monkeypatch.setattr(from_export, "state_dict_from_graph", swapped)
    with pytest.raises(from_export.RebuildError, match="mapping is wrong"):
        from_export.rebuild(EXPORTS / "minilm", tmp_path / "out", tt.FAMILIES["minilm"].weights()[0])
    assert not (tmp_path / "out").exists()


def test_a_parameter_missing_from_the_graph_is_named() -> None:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tt.FAMILIES["minilm"].weights()[0], num_labels=2)
    meta = read_metadata(EXPORTS / "minilm")
    graph = fp32_from_int8(onnx.load(str(EXPORTS / "minilm" / meta["variants"]["int8"])))
    kept = [t for t in graph.graph.initializer if t.name != "classifier.bias"]
    del graph.graph.initializer[:]
    graph.graph.initializer.extend(kept)
    with pytest.raises(from_export.RebuildError, match="classifier.bias"):
        from_export.state_dict_from_graph(graph, model.state_dict())
