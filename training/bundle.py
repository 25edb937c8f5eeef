"""Build model bundles: the ONNX files plus ``metadata.json`` that the serving side loads.

A bundle is what gets logged to MLflow as the model's artifacts and, once registered, copied to
``exports/<name>/``; the format is described in ``api/exports.py``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from datetime import UTC, datetime
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

from api.exports import LABELS, METADATA_FILE, SCHEMA_VERSION, sha256_file
from api.preprocess import PREPROCESSING_VERSION

logger = logging.getLogger(__name__)

OPSET = 17
CLASSICAL_FILE = "model.onnx"
FP32_FILE = "model.fp32.onnx"
INT8_FILE = "model.int8.onnx"
TOKENIZER_FILE = "tokenizer.json"


def write_metadata(folder: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Complete ``meta`` with the sha256 of every file in ``folder`` and write ``metadata.json``."""
    files = {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != METADATA_FILE}
    full = {"schema_version": SCHEMA_VERSION, "labels": list(LABELS), "preprocessing_version": PREPROCESSING_VERSION,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"), "version": "unregistered",
            "aliases": [], "metrics": {}, "mlflow": {}, **meta, "files": files}
    (folder / METADATA_FILE).write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
    return full


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
                       preprocessing_version: str = PREPROCESSING_VERSION, keep_fp32: bool = True) -> dict[str, Any]:
    """Export a fine-tuned BERT classifier to ONNX, fuse attention, quantise to int8, write its bundle.

    Args:
        model_dir: a Hugging Face model folder (``save_pretrained`` output with its tokenizer).
        folder: the bundle folder (replaced).
        name: export name; display_name: human name.
        max_length: truncation length used in training.
        preprocessing_version: the normalisation version the model was trained with.
        keep_fp32: keep the fp32 ONNX beside the int8 one (parity checks need it).
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = _fresh(folder)
    started = time.perf_counter()
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    dummy = tokenizer(["a short tweet", "another one, a little longer"], padding=True, return_tensors="pt")
    raw = folder / "model.raw.onnx"
    axes = {0: "batch", 1: "sequence"}
    with torch.inference_mode():
        torch.onnx.export(model, (dummy["input_ids"], dummy["attention_mask"], dummy["token_type_ids"]), raw,
                          input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["logits"],
                          dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                                        "logits": {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
    config = model.config
    fused = optimize_model(str(raw), model_type="bert", num_heads=config.num_attention_heads,
                           hidden_size=config.hidden_size)
    fused.save_model_to_file(str(folder / FP32_FILE))
    raw.unlink()
    # Shape inference of the fused graph fails without a default tensor type (measured with onnxruntime 1.2x).
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))  # the quantiser logs one INFO line per tensor on the root logger
    try:
        quantize_dynamic(folder / FP32_FILE, folder / INT8_FILE, weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root.setLevel(level)
    tokenizer.backend_tokenizer.save(str(folder / TOKENIZER_FILE))
    logger.info("%s exported, fused and quantised in %.1f s", name, time.perf_counter() - started)
    if not keep_fp32:
        (folder / FP32_FILE).unlink()
    variants = {"int8": INT8_FILE} | ({"fp32": FP32_FILE} if keep_fp32 else {})
    return write_metadata(folder, {"name": name, "display_name": display_name, "family": "transformer",
                                   "variants": variants, "default_variant": "int8", "max_length": max_length,
                                   "tokenizer": TOKENIZER_FILE, "preprocessing_version": preprocessing_version,
                                   "fused_ops": _count_ops(folder / FP32_FILE) if keep_fp32 else {}})


def _count_ops(path: Path) -> dict[str, int]:
    graph = onnx.load(str(path), load_external_data=False).graph
    wanted = ("Attention", "SkipLayerNormalization", "EmbedLayerNormalization")
    return {op: sum(node.op_type == op for node in graph.node) for op in wanted}


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))
