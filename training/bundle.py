"""Build model bundles: the ONNX files plus ``metadata.json`` that the serving side loads.

A bundle is what gets logged to MLflow as the model's artifacts and, once registered, copied to
``exports/<name>/``; the format is described in ``sentiment/exports.py``.
"""

from __future__ import annotations

import inspect
import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.transformers.optimizer import optimize_model
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import StringTensorType
from sklearn.pipeline import Pipeline

from sentiment.exports import FP32_FILE, write_metadata
from sentiment.preprocess import PREPROCESSING_VERSION
from training.onnx_files import MAX_FILE_BYTES, split_external_data
from training.quantize import calibrate_static, tokenize

# Per-tensor int8 cost the fine-tuned MPNet 1.8 points on validation_random (0.8268 against fp32's 0.8447);
# per-channel weight scales cost 0.3 (0.8417), same size. MiniLM's per-tensor graph already matches fp32.
PER_CHANNEL_ARCHITECTURES = frozenset({"mpnet"})

logger = logging.getLogger(__name__)

OPSET = 17
CLASSICAL_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
TOKENIZER_FILE = "tokenizer.json"
# Reported in the bundle's metadata: what ONNX Runtime's transformer optimizer fused.
FUSED_OPS = ("Attention", "MultiHeadAttention", "SkipLayerNormalization", "EmbedLayerNormalization", "BiasGelu",
             "FastGelu", "Gelu")


def _fresh(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def classical_bundle(pipeline: Pipeline, folder: Path, *, name: str, display_name: str) -> dict[str, Any]:
    """Convert a fitted TF-IDF pipeline with skl2onnx and write its bundle."""
    folder = _fresh(folder)
    started = time.perf_counter()
    tfidf, clf = pipeline.steps[0][1], pipeline.steps[-1][1]
    # locale "C": ONNX Runtime's StringNormalizer fails where the default en_US.UTF-8 locale is not installed
    # (slim images); the token pattern is ASCII, so C-locale lowercasing gives the same tokens.
    onx = convert_sklearn(pipeline, initial_types=[("text", StringTensorType([None, 1]))], target_opset=OPSET,
                          options={id(clf): {"zipmap": False}, id(tfidf): {"locale": "C"}})
    onnx.save(onx, folder / CLASSICAL_FILE)
    logger.info("%s converted to ONNX in %.1f s", name, time.perf_counter() - started)
    return write_metadata(folder, {"name": name, "display_name": display_name, "family": "classical",
                                   "variants": {"onnx": CLASSICAL_FILE}, "default_variant": "onnx",
                                   "probability_output": "probabilities"})


def transformer_bundle(model_dir: Path, folder: Path, *, name: str, display_name: str, max_length: int,
                       calibration_texts: Sequence[str], preprocessing_version: str = PREPROCESSING_VERSION,
                       keep_fp32: bool = True, split_over: int = MAX_FILE_BYTES) -> dict[str, Any]:
    """Export a fine-tuned encoder classifier (BERT, MPNet) to ONNX, fuse, quantise to static int8, write its bundle.

    The legacy exporter (opset 17) writes the graph; ONNX Runtime's transformer optimizer (``model_type="bert"``)
    fuses what it recognises: for BERT attention, skip layer norms and the embedding layer norm; for MPNet the
    relative position bias added to the attention scores defeats the attention fusion, so only skip layer norms
    and bias-GELUs fuse (``fused_ops`` in the metadata says which). The int8 graph is split into external data
    files when it would exceed ``MAX_FILE_BYTES``; the fp32 graph stays one file (git-ignored, not served).
    The int8 graph's activation scales are constants calibrated on ``calibration_texts`` (``training.quantize``):
    a tweet's answer does not depend on the tweets batched with it.

    Args:
        model_dir: a Hugging Face model folder (``save_pretrained`` output with its tokenizer).
        folder: the bundle folder (replaced).
        name: export name; display_name: human name.
        max_length: truncation length used in training.
        calibration_texts: train-split tweets the activation ranges are calibrated on (never evaluation tweets).
        preprocessing_version: the normalisation version the model was trained with.
        keep_fp32: keep the fp32 ONNX beside the int8 one (parity checks need it).
        split_over: split the int8 graph into external data files when it is larger than this (bytes).
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = _fresh(folder)
    started = time.perf_counter()
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    # MPNet takes no token_type_ids; BERT does (the predictor feeds zeros to graphs that declare them).
    accepted = inspect.signature(model.forward).parameters
    inputs = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in accepted]
    dummy = tokenizer(["a short tweet", "another one, a little longer"], padding=True, return_tensors="pt")
    dummy["token_type_ids"] = torch.zeros_like(dummy["input_ids"])
    raw = folder / "model.raw.onnx"
    axes = {0: "batch", 1: "sequence"}
    with torch.inference_mode():
        torch.onnx.export(model, tuple(dummy[n] for n in inputs), raw, input_names=inputs, output_names=["logits"],
                          dynamic_axes={n: axes for n in inputs} | {"logits": {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
    config = model.config
    del model
    fused = optimize_model(str(raw), model_type="bert", num_heads=config.num_attention_heads,
                           hidden_size=config.hidden_size)
    fused_ops = _count_ops(fused.model.graph)
    fused.save_model_to_file(str(folder / FP32_FILE))
    del fused
    raw.unlink()
    # Shape inference of the fused graph fails without a default tensor type (measured with onnxruntime 1.2x).
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))  # the quantiser logs one INFO line per tensor on the root logger
    try:
        quantize_dynamic(folder / FP32_FILE, folder / INT8_FILE, weight_type=QuantType.QInt8,
                         per_channel=config.model_type in PER_CHANNEL_ARCHITECTURES,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root.setLevel(level)
    tokenizer.backend_tokenizer.save(str(folder / TOKENIZER_FILE))
    static, quantization, _ = calibrate_static(onnx.load(str(folder / INT8_FILE)), onnx.load(str(folder / FP32_FILE)),
                                            tokenize(folder / TOKENIZER_FILE, max_length, calibration_texts))
    onnx.save_model(static, str(folder / INT8_FILE))
    del static
    external = {}
    if (folder / INT8_FILE).stat().st_size > split_over:
        external["int8"] = split_external_data(folder / INT8_FILE)
    logger.info("%s exported, fused (%s) and quantised in %.1f s", name,
                ", ".join(f"{v} {k}" for k, v in fused_ops.items() if v) or "nothing fused", time.perf_counter() - started)
    if not keep_fp32:
        (folder / FP32_FILE).unlink()
    variants = {"int8": INT8_FILE} | ({"fp32": FP32_FILE} if keep_fp32 else {})
    return write_metadata(folder, {"name": name, "display_name": display_name, "family": "transformer",
                                   "architecture": config.model_type, "variants": variants, "default_variant": "int8",
                                   "max_length": max_length, "tokenizer": TOKENIZER_FILE,
                                   "preprocessing_version": preprocessing_version, "fused_ops": fused_ops,
                                   "quantization": quantization, "external_data": external})


def _count_ops(graph: onnx.GraphProto) -> dict[str, int]:
    return {op: sum(node.op_type == op for node in graph.node) for op in FUSED_OPS}


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))
