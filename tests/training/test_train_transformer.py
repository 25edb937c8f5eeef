"""Fine-tuning loop on a tiny BERT built from a config (no weights): padding, checkpoints, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.training.conftest import synthetic_tweets
from training.data import Dataset
from training.train_transformer import TrainConfig, pad_batch, train

pytestmark = pytest.mark.slow


def _data(n: int = 96) -> Dataset:
    rows = synthetic_tweets(n)
    return Dataset([t for t, _ in rows], torch.tensor([int(label == 4) for _, label in rows]).numpy())


def _cfg(out: Path, **kw) -> TrainConfig:
    settings = {"tiny": True, "batch_size": 16, "epochs": 1.0, "checkpoint_every": 2, "log_every": 1, "threads": 1}
    return TrainConfig(output_dir=str(out), **(settings | kw))


def test_pad_batch_rounds_up_to_the_multiple() -> None:
    ids, mask = pad_batch([[1, 2, 3], [4] * 17], pad_id=0, multiple=16)
    assert ids.shape == (2, 32) and mask.sum().item() == 20 and ids[0, 3:].eq(0).all()


def test_interrupted_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    data = _data()
    straight = train(_cfg(tmp_path / "a"), data)
    assert train(_cfg(tmp_path / "b", stop_after=3), data) is None
    assert (tmp_path / "b" / "checkpoint.pt").exists()
    with pytest.raises(SystemExit, match="--resume"):
        train(_cfg(tmp_path / "b"), data)
    resumed = train(_cfg(tmp_path / "b"), data, resume=True)
    assert not (tmp_path / "b" / "checkpoint.pt").exists()
    from safetensors.torch import load_file

    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)


def test_finished_run_is_reused_only_with_the_same_settings(tmp_path: Path) -> None:
    data = _data(48)
    model_dir = train(_cfg(tmp_path), data)
    assert train(_cfg(tmp_path, checkpoint_every=5), data) == model_dir
    with pytest.raises(SystemExit, match="other settings"):
        train(_cfg(tmp_path, learning_rate=1e-3), data)


def test_a_finished_run_from_before_the_family_settings_is_still_reused(tmp_path: Path) -> None:
    data = _data(32)
    model_dir = train(_cfg(tmp_path), data)
    summary_path = tmp_path / "summary.json"
    summary = json.loads(summary_path.read_text())
    for key in ("family", "freeze_embeddings", "freeze_layers", "time_budget_min"):
        del summary["config"][key]
    summary_path.write_text(json.dumps(summary))
    assert train(_cfg(tmp_path), data) == model_dir
    with pytest.raises(SystemExit, match="other settings"):
        train(_cfg(tmp_path, freeze_layers=1), data)


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_tiny_run_trains_in_the_precision_asked(tmp_path: Path, precision: str) -> None:
    """bf16 is forced here, whatever this CPU has: the forward pass really ran in bfloat16 (autocast)."""
    model_dir = train(_cfg(tmp_path, precision=precision), _data(32))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["config"]["precision"] == precision
    assert summary["compute_dtype"] == ("bfloat16" if precision == "bf16" else "float32")
    from safetensors.torch import load_file

    weights = load_file(model_dir / "model.safetensors")
    assert all(t.dtype == torch.float32 for t in weights.values())  # autocast leaves the weights in fp32


def test_auto_precision_follows_the_cpu_and_is_recorded(tmp_path: Path) -> None:
    from training.train_transformer import bf16_supported, resolve_precision

    assert bf16_supported("flags : fpu sse avx512f avx512_bf16 amx_tile") is True
    assert bf16_supported("flags : fpu sse avx2") is False
    assert resolve_precision("auto") == ("bf16" if bf16_supported() else "fp32")
    with pytest.raises(SystemExit, match="--precision"):
        resolve_precision("fp16")
    train(_cfg(tmp_path), _data(16))
    assert json.loads((tmp_path / "summary.json").read_text())["config"]["precision"] == resolve_precision("auto")


def test_a_run_recorded_before_precision_existed_counts_as_fp32(tmp_path: Path) -> None:
    data = _data(16)
    model_dir = train(_cfg(tmp_path, precision="fp32"), data)
    summary_path = tmp_path / "summary.json"
    summary = json.loads(summary_path.read_text())
    del summary["config"]["precision"]
    summary_path.write_text(json.dumps(summary))
    assert train(_cfg(tmp_path, precision="fp32"), data) == model_dir
    with pytest.raises(SystemExit, match="other settings"):
        train(_cfg(tmp_path, precision="bf16"), data)
