"""The mpnet family on a tiny MPNet built from a config (no weights): train, time budget, freeze, export, serve."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import load_file

from sentiment.exports import read_metadata, sha256_file
from sentiment.predictor import graph_feeds, load_predictor, softmax
from tests.training.conftest import synthetic_tweets
from training import train_transformer as tt
from training.bundle import FP32_FILE, INT8_FILE, MAX_FILE_BYTES, max_abs_diff, transformer_bundle
from training.data import Dataset
from training.quantize import rebuild_fp32, tokenize


def _data(n: int = 96, seed: int = 0) -> Dataset:
    rows = synthetic_tweets(n, seed=seed)
    return Dataset([t for t, _ in rows], np.array([int(label == 4) for _, label in rows]))


def _cfg(out: Path, **kw) -> tt.TrainConfig:
    settings = {"tiny": True, "batch_size": 16, "checkpoint_every": 100, "log_every": 1, "threads": 1}
    return tt.config_for("mpnet", str(out), **(settings | kw))


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(model_dir / "model.safetensors")


def test_mpnet_defaults_and_command_line() -> None:
    cfg = tt.config_for("mpnet", "out")
    assert (cfg.learning_rate, cfg.max_length, cfg.batch_size, cfg.pad_multiple) == (3e-5, 64, 32, 16)
    assert tt.config_for("minilm", "out").learning_rate == 5e-5
    parsed, _ = tt.parse_args(["--family", "mpnet", "--train-limit", "30000", "--time-budget-min", "90",
                               "--freeze-embeddings", "--freeze-layers", "4"])
    assert (parsed.learning_rate, parsed.train_limit, parsed.time_budget_min) == (3e-5, 30000, 90.0)
    assert parsed.freeze_embeddings and parsed.freeze_layers == 4 and parsed.output_dir.endswith("mpnet")
    assert tt.parse_args(["--family", "mpnet", "--learning-rate", "1e-4"])[0].learning_rate == 1e-4
    with pytest.raises(SystemExit):
        tt.config_for("roberta", "out")


def test_expected_cpu_hours_come_from_the_measured_step(caplog: pytest.LogCaptureFixture) -> None:
    cfg = tt.config_for("mpnet", "out", time_budget_min=60)
    assert tt.expected_seconds(cfg, 1000) == 7000
    with caplog.at_level(logging.INFO, logger=tt.logger.name):
        tt._log_estimate(cfg, 32_000, 1000)
    assert "expected 1.9 CPU hours" in caplog.text and "7.0 s a step" in caplog.text
    assert "covers about 514 steps" in caplog.text


@pytest.mark.slow
def test_time_budget_stops_at_a_checkpoint_and_resume_reaches_the_same_weights(tmp_path: Path) -> None:
    data = _data()
    straight = tt.train(_cfg(tmp_path / "a"), data)
    budgeted = _cfg(tmp_path / "b", time_budget_min=1e-6)  # spent after the first step
    assert tt.train(budgeted, data) is None
    state = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    assert state["step"] == 1
    assert tt.train(budgeted, data, resume=True) is None  # each session makes progress, then stops again
    with pytest.raises(SystemExit, match="other settings"):
        tt.train(_cfg(tmp_path / "b", learning_rate=1e-3), data, resume=True)
    resumed = tt.train(_cfg(tmp_path / "b"), data, resume=True)
    assert not (tmp_path / "b" / "checkpoint.pt").exists()
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys() and any(k.startswith("mpnet.encoder.layer.1") for k in a)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["config"]["family"] == "mpnet"


@pytest.mark.slow
def test_frozen_embeddings_and_lower_layers_keep_their_initial_weights(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    cfg = _cfg(tmp_path, freeze_embeddings=True, freeze_layers=1, learning_rate=1e-3)
    model_dir = tt.train(cfg, _data(48))
    tt._seed_everything(cfg.seed)  # the tiny model is built right after seeding: rebuild its initial weights
    initial = tt.tiny_model(AutoTokenizer.from_pretrained(tt.base_model_path()), "mpnet").state_dict()
    trained = _weights(model_dir)
    for key, value in trained.items():
        frozen = key.startswith(("mpnet.embeddings.", "mpnet.encoder.layer.0."))
        assert torch.equal(value, initial[key]) == frozen, key
    assert json.loads((tmp_path / "summary.json").read_text())["frozen_parameters"] > 0
    with pytest.raises(SystemExit, match="2 encoder layers"):
        tt.train(_cfg(tmp_path / "bad", freeze_layers=3), _data(16))


@pytest.mark.slow
def test_exported_mpnet_loads_in_the_api_predictor_and_matches_torch(tmp_path: Path) -> None:
    model_dir = tt.train(_cfg(tmp_path / "train", learning_rate=1e-3, epochs=2.0), _data(160))
    # split_over=0 forces the int8 graph into external data files, as the 110 MB int8 all-mpnet-base-v2 is.
    meta = transformer_bundle(model_dir, tmp_path / "bundle", name="mpnet", display_name="tiny MPNet",
                              max_length=64, calibration_texts=_data(64, seed=5).texts, split_over=0)
    bundle = tmp_path / "bundle"
    assert meta["quantization"]["activations"] == "static" and meta["quantization"]["calibration_tweets"] == 64
    assert meta["architecture"] == "mpnet" and meta["family"] == "transformer"
    # The relative position bias added to the scores defeats ONNX Runtime's attention fusion; layer norms fuse.
    assert meta["fused_ops"]["Attention"] == 0 and meta["fused_ops"]["SkipLayerNormalization"] == 5
    graph = onnx.load(str(bundle / FP32_FILE), load_external_data=False).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask"]  # MPNet takes no token_type_ids

    external = meta["external_data"]["int8"]
    assert external and all(name.startswith(INT8_FILE + ".data/") for name in external)
    on_disk = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()} - {"metadata.json"}
    assert set(meta["files"]) == on_disk and set(external) <= on_disk
    assert all(sha256_file(bundle / name) == meta["files"][name] for name in external)
    assert {(bundle / name).stat().st_mode for name in external} == {(bundle / INT8_FILE).stat().st_mode}
    assert max((bundle / name).stat().st_size for name in on_disk - {FP32_FILE}) <= MAX_FILE_BYTES
    assert read_metadata(bundle)["files"] == meta["files"]

    # More than one chunk of 32, of mixed lengths: the predictor pads (with id 0, not MPNet's pad id 1).
    texts = [t + " and" * (i % 9) for i, t in enumerate(_data(80, seed=3).texts)]
    torch_proba = tt.TorchClassifier.from_path(model_dir).predict_proba(texts)
    fp32 = load_predictor(bundle, variant="fp32", threads=1)
    assert max_abs_diff(fp32.predict_proba(texts), torch_proba) < 1e-4
    singles = np.concatenate([fp32.predict_proba([t]) for t in texts[:12]])  # unpadded, one length per call
    assert max_abs_diff(singles, torch_proba[:12]) < 1e-4
    int8 = load_predictor(bundle, threads=1)
    assert int8.variant == "int8" and int8.name == "mpnet"
    int8_proba = int8.predict_proba(texts)
    assert int8_proba.shape == (80, 2) and np.allclose(int8_proba.sum(axis=1), 1, atol=1e-5)
    agreement = np.mean(int8_proba.argmax(axis=1) == torch_proba.argmax(axis=1))
    assert agreement >= 0.9
    # Static int8: each tweet's answer is the one it gets alone, whatever the batch.
    alone = np.concatenate([int8.predict_proba([t]) for t in texts])
    assert max_abs_diff(alone, int8_proba) <= 1e-3

    # The fp32 graph rebuilt from the static int8 weights (make fp32) answers as torch does.
    rebuilt = tmp_path / "rebuilt.onnx"
    rebuild_fp32(bundle, rebuilt)
    ops = {node.op_type for node in onnx.load(str(rebuilt)).graph.node}
    assert not ops & {"MatMulInteger", "DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear"}
    session = ort.InferenceSession(str(rebuilt), providers=["CPUExecutionProvider"])
    encodings = tokenize(bundle / meta["tokenizer"], 64, texts[:12])
    rebuilt_proba = np.concatenate([softmax(session.run(["logits"], graph_feeds([e], {"input_ids", "attention_mask"}))[0])
                                    for e in encodings])
    assert max_abs_diff(rebuilt_proba, torch_proba[:12]) < 1e-3
