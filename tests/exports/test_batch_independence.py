"""The committed transformers answer a tweet the same alone and in any batch (static int8, decision record 0007)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import onnx
import pytest

from sentiment.exports import FP32_FILE, read_metadata, sha256_file, write_metadata
from sentiment.predictor import load_predictor
from sentiment.scoring import positive_mask
from training import config
from training.quantize import dynamic_int8, is_static, rebuild_fp32

EXPORTS = config.PROJECT_ROOT / "exports"
TRANSFORMERS = ("minilm", "mpnet")
BATCH = 32


def _texts() -> list[str]:
    """96 tweet-like texts of many lengths, the same on every run."""
    openings = ["@united", "flight delayed again", "thanks so much", "ugh monday", "just landed in Denver",
                "can't believe this", "loving the new seats", "lost my bag", "best crew ever", "worst service"]
    endings = ["", " :)", " :(", " #fail", " http://t.co/x", " for 3 hours now and nobody tells us anything",
               " really happy with how it went today", " never again"]
    pairs = itertools.product(openings, endings)
    return [a + b for a, b in itertools.islice(pairs, 96)]


def _alone_and_batched(folder: Path, variant: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    model = load_predictor(folder, variant)
    texts = _texts()
    alone = np.array([model.predict_proba([t])[0, 1] for t in texts])
    order = np.random.default_rng(0).permutation(len(texts))
    batched = np.empty(len(texts))
    for start in range(0, len(order), BATCH):
        rows = order[start : start + BATCH]
        batched[rows] = model.predict_proba([texts[i] for i in rows])[:, 1]
    return alone, batched


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_a_tweet_gets_the_same_answer_alone_and_in_a_batch(name: str) -> None:
    meta = read_metadata(EXPORTS / name)
    assert meta["quantization"]["activations"] == "static"
    assert is_static(onnx.load(str(EXPORTS / name / meta["variants"]["int8"]), load_external_data=False))
    alone, batched = _alone_and_batched(EXPORTS / name)
    np.testing.assert_array_equal(positive_mask(alone), positive_mask(batched))
    assert np.abs(alone - batched).max() <= 1e-3


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_the_dynamic_graph_it_replaced_fails_that_check(name: str, tmp_path: Path) -> None:
    folder = EXPORTS / name
    meta = read_metadata(folder)
    onnx.save_model(dynamic_int8(onnx.load(str(folder / meta["variants"]["int8"]))), str(tmp_path / "dynamic.onnx"))
    (tmp_path / meta["tokenizer"]).write_bytes((folder / meta["tokenizer"]).read_bytes())
    write_metadata(tmp_path, {**meta, "variants": {"int8": "dynamic.onnx"}, "external_data": {}})
    alone, batched = _alone_and_batched(tmp_path)
    assert np.abs(alone - batched).max() > 1e-3


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_the_fp32_graph_is_rebuilt_byte_for_byte(name: str, tmp_path: Path) -> None:
    """``make fp32`` reproduces the graph the export's metadata records (it is git-ignored)."""
    folder = EXPORTS / name
    rebuild_fp32(folder, tmp_path / FP32_FILE)
    assert sha256_file(tmp_path / FP32_FILE) == read_metadata(folder)["files"][FP32_FILE]
