"""Static int8: a tweet's answer no longer depends on the tweets batched with it (decision record 0007).

    python -m training.quantize exports/minilm exports/mpnet            # make quantize
    python -m training.quantize --fp32-only exports/minilm exports/mpnet  # make fp32: the git-ignored graphs only
    python -m training.quantize --unsigned-weights-only exports/mpnet     # weights as uint8, calibration kept

Dynamic int8 (``quantize_dynamic``) computes each activation's scale over the whole input tensor at run time:
a tweet shared it with the other tweets of its length in a micro-batch, and its label could change with them.
:func:`static_int8` turns every ``DynamicQuantizeLinear`` of an int8 graph into a ``QuantizeLinear`` whose scale
and zero point are constants calibrated on train-split tweets. The weights, the fused operators (``QAttention``,
``QEmbedLayerNormalization``) and the integer kernels are the int8 graph's own.

The fp32 graph is git-ignored, so a fresh clone has none. :func:`fp32_from_int8` rebuilds it from the int8 graph's
initializers (weights dequantised; every quantised operator back to its float form), and the command checks it
against the int8 graph's answers before it calibrates on it. The rebuild is deterministic: its sha256 is the one
the export's metadata records once this command has run.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
from tokenizers import Tokenizer

from sentiment.exports import FP32_FILE, read_metadata, write_metadata
from sentiment.predictor import graph_feeds, softmax
from sentiment.preprocess import normalize_for_transformer
from sentiment.scoring import positive_mask

logger = logging.getLogger(__name__)

INT8_FILE = "model.int8.onnx"
MS_DOMAIN = "com.microsoft"
CALIBRATION_TWEETS = 512
CALIBRATION_SEED = 7
# Each activation's range is this percentile of the per-tweet minima and maxima over the calibration tweets:
# min/max of the whole sample (100) also gives 0 flips, a point of clipping measured a little better (0007).
CALIBRATION_PERCENTILE = 99.9
# The rebuilt fp32 graph must agree with the int8 graph it came from on at least this share of labels.
MIN_FP32_AGREEMENT = 0.95


class QuantizeError(ValueError):
    """A graph this module cannot rewrite (an operator pattern it does not know)."""


def _dequantize(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int = -1) -> np.ndarray:
    """``(q - zero_point) * scale`` in float32; a 1-D scale runs along ``axis`` (per-channel weights)."""
    scale = np.asarray(scale, dtype=np.float32)
    zero_point = np.asarray(zero_point, dtype=np.float32)
    if scale.ndim == 1 and q.ndim > 1:
        shape = [1] * q.ndim
        shape[axis] = scale.size
        scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
    return ((q.astype(np.float32) - zero_point) * scale).astype(np.float32)


class _Graph:
    """Index of a graph's producers, consumers and initializers, for the rewrites below."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.graph = graph
        # One list of the node objects, so that identities (``id``) hold while the rewrite runs.
        self.nodes = list(graph.node)
        self.inits = {t.name: t for t in graph.initializer}
        self.producer = {out: node for node in self.nodes for out in node.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.nodes:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def array(self, name: str) -> np.ndarray:
        if name not in self.inits:
            raise QuantizeError(f"{name!r} is not an initializer")
        return numpy_helper.to_array(self.inits[name])

    def only_consumer(self, name: str, op_type: str) -> onnx.NodeProto:
        found = self.consumers.get(name, [])
        if len(found) != 1 or found[0].op_type != op_type:
            raise QuantizeError(f"{name!r} should feed one {op_type}, feeds {[n.op_type for n in found]}")
        return found[0]


def _float_source(index: _Graph, quantized: str) -> str:
    """The float tensor an activation quantizer read to produce ``quantized``."""
    node = index.producer.get(quantized)
    if node is None or node.op_type not in ("DynamicQuantizeLinear", "QuantizeLinear"):
        raise QuantizeError(f"{quantized!r} does not come from an activation quantizer")
    return node.input[0]


def _activation_scale(index: _Graph, quantized: str) -> str:
    """The scale tensor of the activation quantizer that produced ``quantized``."""
    node = index.producer[quantized]
    return node.output[1] if node.op_type == "DynamicQuantizeLinear" else node.input[1]


# The inputs of an integer matrix product that hold its weight and the weight's zero point (ONNX / contrib specs).
_WEIGHT_INPUTS = {"MatMulInteger": (1, 3), "QAttention": (1, 7)}


def fp32_from_int8(model: onnx.ModelProto) -> onnx.ModelProto:
    """The float graph of an int8 graph (dynamic or static): every quantised operator back to its float form.

    ``MatMulInteger`` (with its ``Cast`` and scale ``Mul``\\ s) → ``MatMul``; ``QAttention`` → ``Attention``;
    ``QEmbedLayerNormalization`` → ``EmbedLayerNormalization``; ``Gather`` + ``DequantizeLinear`` of a quantised
    table → ``Gather`` of the float table. Weights are dequantised; the activation quantizers fall away.

    Raises:
        QuantizeError: an operator pattern this function does not know.
    """
    out = copy.deepcopy(model)
    index = _Graph(out.graph)
    floats: dict[str, np.ndarray] = {}
    dropped: set[int] = set()
    nodes: list[onnx.NodeProto] = []

    def weight(q: str, scale: str, zero_point: str, axis: int = -1) -> str:
        name = q.removesuffix("_quantized") + "_float" if q.endswith("_quantized") else q + "_float"
        floats[name] = _dequantize(index.array(q), index.array(scale), index.array(zero_point), axis)
        return name

    for node in index.nodes:
        if id(node) in dropped:
            continue
        if node.op_type == "MatMulInteger":
            cast = index.only_consumer(node.output[0], "Cast")
            mul = index.only_consumer(cast.output[0], "Mul")
            scales = index.producer[mul.input[1] if mul.input[0] == cast.output[0] else mul.input[0]]
            # Mul(activation scale, weight scale): in a static graph both are initializers.
            a_scale = _activation_scale(index, node.input[0])
            w_scale = next(name for name in scales.input if name != a_scale)
            dropped.update({id(cast), id(mul)})
            a = _float_source(index, node.input[0])
            w_at, z_at = _WEIGHT_INPUTS[node.op_type]
            w = weight(node.input[w_at], w_scale, node.input[z_at])
            nodes.append(helper.make_node("MatMul", [a, w], [mul.output[0]], name=node.name.removesuffix("_quant")))
        elif node.op_type == "QAttention":
            a = _float_source(index, node.input[0])
            w_at, z_at = _WEIGHT_INPUTS[node.op_type]
            w = weight(node.input[w_at], node.input[4], node.input[z_at])
            inputs = [a, w, node.input[2], node.input[5]] + ([node.input[8]] if len(node.input) > 8 and node.input[8] else [])
            nodes.append(helper.make_node("Attention", inputs, list(node.output), name=node.name + "_float",
                                          domain=MS_DOMAIN, **{a.name: helper.get_attribute_value(a) for a in node.attribute}))
        elif node.op_type == "QEmbedLayerNormalization":
            tables = [weight(node.input[i], node.input[i + 6], node.input[i + 11]) if node.input[i] else ""
                      for i in range(2, 7)]
            inputs = [node.input[0], node.input[1], *tables, node.input[7]]
            nodes.append(helper.make_node("EmbedLayerNormalization", inputs, list(node.output), name=node.name + "_float",
                                          domain=MS_DOMAIN, **{a.name: helper.get_attribute_value(a) for a in node.attribute}))
        elif node.op_type == "DequantizeLinear" and node.input[0] not in index.inits:
            nodes.extend(_float_table_lookup(index, node, weight))
        elif node.op_type in ("DequantizeLinear", "QLinearMatMul", "MatMulIntegerToFloat", "DynamicQuantizeMatMul"):
            raise QuantizeError(f"{node.name}: {node.op_type} is not rewritten to float by this module")
        else:
            nodes.append(node)
    for name, array in floats.items():
        out.graph.initializer.append(numpy_helper.from_array(array, name))
    _replace_nodes(out.graph, nodes)
    return out


# Operators the quantizer applies to int8 tensors as they are (``Direct8BitOp``): they move values, not scales.
_DIRECT_8BIT = frozenset({"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten"})


def _float_table_lookup(index: _Graph, dequantize: onnx.NodeProto, weight: Any) -> list[onnx.NodeProto]:
    """``DequantizeLinear(Transpose…(Gather(table_q, ids)))`` → ``Transpose…(Gather(table, ids))``."""
    chain = []
    source = index.producer.get(dequantize.input[0])
    while source is not None and source.op_type in _DIRECT_8BIT:
        chain.append(source)
        source = index.producer.get(source.input[0])
    if source is None or source.op_type != "Gather" or source.input[0] not in index.inits:
        raise QuantizeError(f"{dequantize.name}: DequantizeLinear of something other than a quantised table")
    table = weight(source.input[0], dequantize.input[1], dequantize.input[2])
    steps = [source, *reversed(chain)]
    out, previous = [], None
    for position, step in enumerate(steps):
        inputs = [table if previous is None else previous, *step.input[1:]]
        output = dequantize.output[0] if position == len(steps) - 1 else step.output[0] + "_float"
        out.append(helper.make_node(step.op_type, inputs, [output], name=step.name + "_float",
                                    **{a.name: helper.get_attribute_value(a) for a in step.attribute}))
        previous = output
    return out


def _replace_nodes(graph: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> None:
    """Set the graph's nodes, then drop what no longer reaches an output (nodes, initializers, value infos)."""
    needed = {o.name for o in graph.output}
    live: list[onnx.NodeProto] = []
    for node in reversed(nodes):
        if any(name in needed for name in node.output):
            live.append(node)
            needed.update(name for name in node.input if name)
    live.reverse()
    del graph.node[:]
    graph.node.extend(live)
    produced = {name for node in live for name in node.output} | {i.name for i in graph.input}
    kept = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    infos = [v for v in graph.value_info if v.name in produced]
    del graph.value_info[:]
    graph.value_info.extend(infos)


def activation_inputs(model: onnx.ModelProto) -> list[str]:
    """The float tensors an int8 graph quantises at run time (dynamic) or with calibrated constants (static)."""
    inits = {t.name for t in model.graph.initializer}
    return [node.input[0] for node in model.graph.node
            if node.op_type == "DynamicQuantizeLinear" or (node.op_type == "QuantizeLinear" and node.input[0] not in inits)]


def _session(model: onnx.ModelProto, threads: int = 2) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def tokenize(tokenizer_file: Path, max_length: int, texts: Sequence[str]) -> list[Any]:
    """Tokenise ``texts`` as a transformer predictor does (normalised, truncated, unpadded)."""
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.enable_truncation(int(max_length))
    tokenizer.no_padding()
    return tokenizer.encode_batch([normalize_for_transformer(t) for t in texts])


def activation_ranges(fp32: onnx.ModelProto, names: Sequence[str], encodings: Sequence[Any], *,
                      percentile: float = CALIBRATION_PERCENTILE) -> tuple[dict[str, tuple[float, float]], np.ndarray]:
    """Calibrate: each tensor's (low, high) over ``encodings``, one tweet at a time, and fp32's P(positive).

    Returns:
        The ranges (``percentile`` of the per-tweet minima and maxima, widened to hold 0) and the fp32 graph's
        P(positive) for each encoding.
    """
    probe = copy.deepcopy(fp32)
    known = {o.name for o in probe.graph.output}
    for name in names:
        if name not in known:
            probe.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = _session(probe)
    inputs = {i.name for i in session.get_inputs()}
    lows = np.empty((len(encodings), len(names)))
    highs = np.empty_like(lows)
    p_positive = np.empty(len(encodings))
    for row, encoding in enumerate(encodings):
        logits, *values = session.run(["logits", *names], graph_feeds([encoding], inputs))
        p_positive[row] = softmax(logits.astype(np.float32))[0, 1]
        lows[row] = [v.min() for v in values]
        highs[row] = [v.max() for v in values]
    low = np.minimum(np.percentile(lows, 100 - percentile, axis=0), 0.0)
    high = np.maximum(np.percentile(highs, percentile, axis=0), 0.0)
    return {name: (float(lo), float(hi)) for name, lo, hi in zip(names, low, high, strict=True)}, p_positive


def static_int8(model: onnx.ModelProto, ranges: dict[str, tuple[float, float]]) -> onnx.ModelProto:
    """``model`` with every activation quantizer a ``QuantizeLinear`` of constant scale and zero point (uint8).

    The constants are ``DynamicQuantizeLinear``'s own formula applied to the calibrated range, so the integer
    operators downstream read the same kind of input as before. Re-quantising a static graph replaces its constants.
    """
    out = copy.deepcopy(model)
    inits = {t.name: t for t in out.graph.initializer}
    nodes = []
    for node in out.graph.node:
        static = node.op_type == "QuantizeLinear" and node.input[0] not in inits
        if node.op_type != "DynamicQuantizeLinear" and not static:
            nodes.append(node)
            continue
        low, high = ranges[node.input[0]]
        scale = np.float32((high - low) / 255.0) if high > low else np.float32(1.0)
        zero_point = np.uint8(np.clip(np.round(-low / scale), 0, 255))
        if static:
            scale_name, zero_name = node.input[1], node.input[2]
            output = node.output[0]
        else:
            output, scale_name, zero_name = node.output
        for name, value in ((scale_name, scale), (zero_name, zero_point)):
            if name in inits:
                inits[name].CopyFrom(numpy_helper.from_array(np.array(value), name))
            else:
                out.graph.initializer.append(numpy_helper.from_array(np.array(value), name))
        nodes.append(helper.make_node("QuantizeLinear", [node.input[0], scale_name, zero_name], [output],
                                      name=node.name.removesuffix("_static") + "_static"))
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out


# x86 CPUs without VNNI (AVX2 only: AMD Zen 3, Intel before Cascade Lake) multiply uint8 activations by int8
# weights with VPMADDUBSW, which adds two products into a saturating int16: 255 × 127 × 2 overflows it, and mpnet's
# static int8 answered at chance there (decision 0007). ONNX Runtime runs uint8 × uint8 with no such sum, and the
# same integers shifted by 128 (zero point 128) give the same products: the same answers on every CPU.
UNSIGNED_ZERO_POINT = 128
WEIGHTS_ENTRY = "uint8, zero point 128"


def _integer_weights(model: onnx.ModelProto) -> list[tuple[onnx.NodeProto, int, int]]:
    """(node, weight input, weight zero-point input) of every integer matrix product."""
    return [(node, *_WEIGHT_INPUTS[node.op_type]) for node in model.graph.node if node.op_type in _WEIGHT_INPUTS]


def unsigned_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with the int8 weights of its integer matrix products stored as uint8 (``q + 128``, zero point + 128).

    Dequantised, every weight is the same number, so :func:`fp32_from_int8` gives the same graph. Weights already
    unsigned are left as they are. The embedding tables (looked up, never multiplied) stay int8.
    """
    out = copy.deepcopy(model)
    inits = {t.name: t for t in out.graph.initializer}
    for node, w_at, z_at in _integer_weights(out):
        weight = node.input[w_at]
        if weight not in inits:
            raise QuantizeError(f"{node.name}: its weight {weight!r} is not an initializer")
        while len(node.input) <= z_at:
            node.input.append("")
        zero_point = node.input[z_at]
        if not zero_point:  # an absent zero point is 0
            zero_point = node.input[z_at] = weight + "_zero_point_unsigned"
            inits[zero_point] = numpy_helper.from_array(np.array(0, np.int8), zero_point)
            out.graph.initializer.append(inits[zero_point])
        for name in (weight, zero_point):
            if inits[name].data_type == onnx.TensorProto.UINT8:  # already shifted (here, or by an earlier run)
                continue
            shifted = (numpy_helper.to_array(inits[name]).astype(np.int16) + UNSIGNED_ZERO_POINT).astype(np.uint8)
            inits[name].CopyFrom(numpy_helper.from_array(shifted, name))
    return out


def dynamic_int8(model: onnx.ModelProto) -> onnx.ModelProto:
    """The dynamic graph a static one came from (for side-by-side measurements: ``benchmarks/quantization.py``)."""
    out = copy.deepcopy(model)
    activations = set(activation_inputs(out))
    nodes, constants = [], set()
    for node in out.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] in activations:
            nodes.append(helper.make_node("DynamicQuantizeLinear", [node.input[0]],
                                          [node.output[0], node.input[1], node.input[2]],
                                          name=node.name.removesuffix("_static")))
            constants.update(node.input[1:3])
        else:
            nodes.append(node)
    kept = [t for t in out.graph.initializer if t.name not in constants]
    del out.graph.initializer[:]
    out.graph.initializer.extend(kept)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out


def is_static(model: onnx.ModelProto) -> bool:
    return not any(n.op_type == "DynamicQuantizeLinear" for n in model.graph.node)


def calibration_sample(train: Any, n: int = CALIBRATION_TWEETS) -> list[str]:
    """``n`` tweets of the train split ``train`` (a ``training.data.Dataset``; stratified, seeded) that calibrate the
    activation ranges: the one choice of calibration tweets, for ``make quantize`` and for training exports."""
    from training.data import sample

    return sample(train, n, seed=CALIBRATION_SEED).texts


def calibration_texts(n: int = CALIBRATION_TWEETS) -> list[str]:
    """:func:`calibration_sample` of the configured data's train split: never validation or test tweets."""
    from training import config
    from training.data import load_splits

    return calibration_sample(load_splits(config.data_dir()).train, n)


def save_graph(model: onnx.ModelProto, path: Path, *, split: bool) -> list[str]:
    """Write ``model`` to ``path``; a large graph keeps its tensors in ``<name>.data/`` (``training.bundle``)."""
    from training.onnx_files import split_external_data

    data_dir = path.with_name(path.name + ".data")
    if data_dir.exists():
        shutil.rmtree(data_dir)
    if not split:
        onnx.save_model(model, str(path))
        return []
    onnx.save_model(model, str(path), save_as_external_data=True, location=path.name + ".tmp-data")
    written = split_external_data(path)
    path.with_name(path.name + ".tmp-data").unlink()
    return written


def rebuild_fp32(folder: Path, target: Path | None = None) -> onnx.ModelProto:
    """Write the fp32 graph of ``folder``'s int8 graph to ``target`` (default ``folder/model.fp32.onnx``).

    The same int8 graph always gives the same bytes, so the sha256 the export's metadata records checks a rebuild.
    """
    meta = read_metadata(folder)
    fp32 = fp32_from_int8(onnx.load(str(folder / meta["variants"]["int8"])))
    path = target or folder / FP32_FILE
    tmp = path.with_name(path.name + ".partial")
    onnx.save_model(fp32, str(tmp))  # ~440 MB for MPNet: one file, under protobuf's 2 GB, never committed
    os.replace(tmp, path)
    return fp32


def calibrate_static(int8: onnx.ModelProto, fp32: onnx.ModelProto, encodings: Sequence[Any], *,
                     percentile: float = CALIBRATION_PERCENTILE) -> tuple[onnx.ModelProto, dict[str, Any], np.ndarray]:
    """The static form of ``int8``, its ranges calibrated on ``fp32``'s activations for ``encodings``.

    Returns:
        The static graph, the ``quantization`` entry of the export's metadata, and the fp32 graph's P(positive)
        for each encoding (for the caller's checks).
    """
    ranges, p_fp32 = activation_ranges(fp32, activation_inputs(int8), encodings, percentile=percentile)
    entry = {"activations": "static", "calibration_tweets": len(encodings), "calibration_seed": CALIBRATION_SEED,
             "calibration_percentile": percentile, "calibration_source": "train split", "weights": WEIGHTS_ENTRY}
    return unsigned_weights(static_int8(int8, ranges)), entry, p_fp32


def quantize_export(folder: Path, texts: Sequence[str], *, percentile: float = CALIBRATION_PERCENTILE) -> dict[str, Any]:
    """Rebuild the fp32 graph, check it, calibrate on ``texts`` and rewrite the int8 graph static, in place.

    Returns:
        The ``quantization`` entry written to the export's metadata.

    Raises:
        QuantizeError: the rebuilt fp32 graph disagrees with the int8 graph (see ``MIN_FP32_AGREEMENT``).
    """
    started = time.perf_counter()
    meta = read_metadata(folder)
    int8_path = folder / meta["variants"]["int8"]
    int8 = onnx.load(str(int8_path))
    fp32 = rebuild_fp32(folder)
    encodings = tokenize(folder / meta["tokenizer"], meta["max_length"], texts)
    static, entry, p_fp32 = calibrate_static(int8, fp32, encodings, percentile=percentile)
    session = _session(unsigned_weights(int8))  # signed weights can overflow on this CPU: see unsigned_weights
    inputs = {i.name for i in session.get_inputs()}
    p_int8 = np.array([softmax(session.run(["logits"], graph_feeds([e], inputs))[0])[0, 1] for e in encodings])
    agreement = float((positive_mask(p_fp32) == positive_mask(p_int8)).mean())
    if agreement < MIN_FP32_AGREEMENT:
        raise QuantizeError(f"{folder}: the rebuilt fp32 graph agrees with the int8 graph on {agreement:.1%} of "
                            f"{len(texts)} tweets (at least {MIN_FP32_AGREEMENT:.0%} expected)")
    external = save_graph(static, int8_path, split=bool(meta.get("external_data", {}).get("int8")))
    entry |= {"fp32_rebuilt_from": "int8 initializers", "fp32_int8_label_agreement": round(agreement, 4),
              "fp32_int8_max_abs_diff": round(float(np.abs(p_fp32 - p_int8).max()), 4)}
    meta["quantization"] = entry
    meta["variants"] = {**meta["variants"], "fp32": FP32_FILE}
    meta["external_data"] = {**meta.get("external_data", {}), **({"int8": external} if external else {})}
    meta.pop("files", None)
    write_metadata(folder, meta)
    logger.info("%s: static int8 from %d calibration tweets in %.1f s (fp32 rebuilt from the int8 weights agrees on "
                "%.2f%% of labels)", folder.name, len(texts), time.perf_counter() - started, 100 * agreement)
    return entry


def unsign_export(folder: Path) -> None:
    """Store ``folder``'s int8 weights unsigned in place, keeping its calibrated activation constants."""
    meta = read_metadata(folder)
    int8_path = folder / meta["variants"]["int8"]
    external = save_graph(unsigned_weights(onnx.load(str(int8_path))), int8_path,
                          split=bool(meta.get("external_data", {}).get("int8")))
    rebuild_fp32(folder)  # the same dequantised weights: its sha256 is the one recorded before, now re-recorded
    meta["quantization"] = {**meta.get("quantization", {}), "weights": WEIGHTS_ENTRY}
    meta["external_data"] = {**meta.get("external_data", {}), **({"int8": external} if external else {})}
    meta.pop("files", None)
    write_metadata(folder, meta)
    logger.info("%s: int8 weights stored unsigned", folder.name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="transformer export folders, e.g. exports/minilm")
    parser.add_argument("--fp32-only", action="store_true", help="only rebuild the git-ignored fp32 graphs")
    parser.add_argument("--unsigned-weights-only", action="store_true",
                        help="only store the int8 weights unsigned (exports quantised before that rule), then re-score")
    parser.add_argument("--calibration-tweets", type=int, default=CALIBRATION_TWEETS)
    parser.add_argument("--percentile", type=float, default=CALIBRATION_PERCENTILE)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for folder in args.folders:
        if read_metadata(folder).get("family") != "transformer":
            raise SystemExit(f"error: {folder} is not a transformer export")
    if args.fp32_only:
        for folder in args.folders:
            rebuild_fp32(folder)
            logger.info("%s: %s rebuilt from the int8 weights", folder, folder / FP32_FILE)
        return
    if args.unsigned_weights_only:
        for folder in args.folders:
            unsign_export(folder)
            refresh_metrics(folder)
        return
    texts = calibration_texts(args.calibration_tweets)
    for folder in args.folders:
        quantize_export(folder, texts, percentile=args.percentile)
        refresh_metrics(folder)


def refresh_metrics(folder: Path) -> None:
    """Re-score the export on validation_random: its metadata's quality metrics describe the graph it serves.

    The metrics the dynamic graph was registered with stay in MLflow; the replaced accuracy is kept as
    ``metrics.other.dynamic_int8_validation_random_accuracy``. Latency figures are left to ``make bench``.
    """
    from sentiment.predictor import load_predictor
    from training import config
    from training.data import load
    from training.evaluate import evaluate

    path = config.data_dir() / config.VALIDATION_RANDOM_FILE
    if not path.exists():
        logger.warning("%s is missing: %s keeps its recorded metrics (set SENTIMENT140_DIR)", path, folder)
        return
    scored, _ = evaluate(load_predictor(folder), load(path), latency=False)
    meta = read_metadata(folder)
    metrics = meta.setdefault("metrics", {})
    recorded = metrics.setdefault(config.VALIDATION_RANDOM_SET, {})
    other = metrics.setdefault("other", {})
    other.setdefault("dynamic_int8_validation_random_accuracy", recorded.get("accuracy"))
    recorded.update(scored)
    meta.pop("files", None)
    write_metadata(folder, meta)
    logger.info("%s: validation_random accuracy %.4f (dynamic int8: %s)", folder.name, scored["accuracy"],
                other["dynamic_int8_validation_random_accuracy"])


if __name__ == "__main__":
    main()
