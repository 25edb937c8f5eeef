"""Predictors built from export folders: the one inference path for the API, the app, evaluation and tests.

Each predictor has ``predict_proba(texts) -> (n, 2)`` probabilities of (negative, positive) and needs only
ONNX Runtime, tokenizers and numpy.
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from sentiment.batching import length_chunks
from sentiment.exports import ExportError, discover, read_metadata, verify_file
from sentiment.preprocess import normalize_for_transformer, normalize_tweet
from sentiment.scoring import to_labels

logger = logging.getLogger(__name__)
__all__ = ["discover", "graph_feeds", "softmax", "load_predictor", "Predictor", "TransformerPredictor", "ClassicalPredictor"]


def _session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# Flags of x86 CPUs whose int8 kernels add uint8 × int8 products in int32 (VNNI, AMX). Without them ONNX Runtime
# adds pairs of products in a saturating int16, and an int8-weight graph can answer at chance (decision 0007).
_EXACT_INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The feature flags of the first CPU in the text of ``/proc/cpuinfo`` (x86: its ``flags`` line)."""
    return frozenset(next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines()
                           if line.startswith("flags")), []))


def int8_weights_overflow(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU would overflow the products of signed int8 weights (an x86 without VNNI)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return False
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return False  # unknown: the export's own answers are all there is to go by
    return not _EXACT_INT8_FLAGS & cpu_flags(text)


def _check_int8_weights(folder: Path, meta: dict[str, Any], variant: str) -> None:
    """Refuse an int8 graph whose weights are signed on a CPU that would overflow them: its answers are wrong."""
    if variant != "int8" or meta.get("quantization", {}).get("weights") or not int8_weights_overflow():
        return
    raise ExportError(f"{folder}: its int8 weights are signed, and this CPU (x86 without VNNI) adds their products "
                      f"in a saturating int16, so its answers would be wrong; store them unsigned with "
                      f"`python -m training.quantize --unsigned-weights-only {folder}`, or serve variant 'fp32'")


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


class Predictor:
    """Common part of every served model: identity, metadata and the ``predict_proba`` contract."""

    def __init__(self, folder: Path, meta: dict[str, Any], variant: str) -> None:
        self.folder = folder
        self.metadata = meta
        self.variant = variant
        self.name: str = meta["name"]
        self.version: str = str(meta["version"])
        self.family: str = meta["family"]
        self.labels: tuple[str, ...] = tuple(meta["labels"])

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def predict(self, texts: Sequence[str]) -> list[str]:
        return to_labels(self.predict_proba(texts))[0]


class TransformerPredictor(Predictor):
    """A BERT-family classifier exported to ONNX, tokenised by the Rust ``tokenizers`` library."""

    CHUNK = 32
    # One place decides the text a transformer sees; training.evaluate_emoji swaps it to compare the two.
    normalize = staticmethod(normalize_for_transformer)

    def __init__(self, folder: Path, meta: dict[str, Any], variant: str, threads: int = 2) -> None:
        super().__init__(folder, meta, variant)
        self.max_length = int(meta["max_length"])
        self.tokenizer = Tokenizer.from_file(str(verify_file(folder, meta, meta["tokenizer"])))
        self.tokenizer.enable_truncation(self.max_length)
        self.tokenizer.no_padding()
        _check_int8_weights(folder, meta, variant)
        graph = verify_file(folder, meta, meta["variants"][variant])
        for name in meta.get("external_data", {}).get(variant, []):
            verify_file(folder, meta, name)  # ONNX Runtime reads these weights by itself, unchecked
        self.session = _session(graph, threads)
        self._inputs = {i.name for i in self.session.get_inputs()}

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.empty((0, 2), dtype=np.float32)
        encodings = self.tokenizer.encode_batch([self.normalize(t) for t in texts])
        if len(encodings) <= self.CHUNK:
            return self._run_by_length(encodings)
        out = np.empty((len(encodings), 2), dtype=np.float32)
        for index in length_chunks([len(e.ids) for e in encodings], self.CHUNK):
            out[index] = self._run([encodings[i] for i in index])
        return out

    def _run_by_length(self, encodings: list) -> np.ndarray:
        # Small inputs (the API's micro-batches) mix lengths: one call per token length, with no padding, beat
        # one padded call (16 tweets: about 730 → 960 tweets/s on 2 cores), and a tweet's int8 answer no longer
        # depends on the padding its batch-mates bring.
        groups: dict[int, list[int]] = {}
        for row, enc in enumerate(encodings):
            groups.setdefault(len(enc.ids), []).append(row)
        if len(groups) == 1:
            return self._run(encodings)
        out = np.empty((len(encodings), 2), dtype=np.float32)
        for rows in groups.values():
            out[rows] = self._run([encodings[i] for i in rows])
        return out

    def _run(self, encodings: list) -> np.ndarray:
        (logits,) = self.session.run(["logits"], graph_feeds(encodings, self._inputs))
        return softmax(logits.astype(np.float32))


def graph_feeds(encodings: Sequence[Any], inputs: set[str]) -> dict[str, np.ndarray]:
    """The inputs of a transformer graph for ``encodings``: ids, attention mask and (if declared) token types."""
    width = max(len(e.ids) for e in encodings)
    ids = np.zeros((len(encodings), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, enc in enumerate(encodings):
        ids[row, : len(enc.ids)] = enc.ids
        mask[row, : len(enc.ids)] = 1
    feeds = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in inputs:
        feeds["token_type_ids"] = np.zeros_like(ids)
    return feeds


class ClassicalPredictor(Predictor):
    """A scikit-learn pipeline converted to ONNX by skl2onnx (string input, probability output)."""

    def __init__(self, folder: Path, meta: dict[str, Any], variant: str, threads: int = 1) -> None:
        super().__init__(folder, meta, variant)
        self.session = _session(verify_file(folder, meta, meta["variants"][variant]), threads)
        self._input = self.session.get_inputs()[0].name
        self._output = meta.get("probability_output", "probabilities")

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.empty((0, 2), dtype=np.float32)
        column = np.array([normalize_tweet(t) for t in texts], dtype=object).reshape(-1, 1)
        (proba,) = self.session.run([self._output], {self._input: column})
        return np.asarray(proba, dtype=np.float32)


_BACKENDS: dict[str, type[Predictor]] = {"transformer": TransformerPredictor, "classical": ClassicalPredictor}


def load_predictor(folder: str | Path, variant: str | None = None, threads: int | None = None) -> Predictor:
    """Load the export in ``folder`` after validating its metadata and file hashes.

    Args:
        folder: an ``exports/<model>/`` folder.
        variant: which ONNX file to serve (default: the export's ``default_variant``).
        threads: ONNX Runtime intra-op threads (default: the backend's).

    Raises:
        ExportError: the folder, its metadata or a file is missing or does not match.
    """
    folder = Path(folder)
    meta = read_metadata(folder)
    variant = variant or meta["default_variant"]
    if variant not in meta["variants"]:
        raise ExportError(f"{folder}: no variant {variant!r}; available: {sorted(meta['variants'])}")
    backend = _BACKENDS.get(meta["family"])
    if backend is None:
        raise ExportError(f"{folder}: unknown family {meta['family']!r}")
    kwargs = {} if threads is None else {"threads": threads}
    return backend(folder, meta, variant, **kwargs)
