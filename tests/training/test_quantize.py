"""Static int8 on small graphs: the rewrite keeps the weights, fixes the activation scales, and can be undone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

from training.quantize import (
    QuantizeError,
    activation_inputs,
    dynamic_int8,
    fp32_from_int8,
    is_static,
    static_int8,
    unsigned_weights,
)

RNG = np.random.default_rng(0)
W1 = RNG.normal(size=(8, 16)).astype(np.float32)
W2 = RNG.normal(size=(16, 4)).astype(np.float32)


def _float_graph(path: Path) -> Path:
    """x [batch, 8] → MatMul → Relu → MatMul → y [batch, 4]: two weights large enough to be quantised."""
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="first"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="second")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
                              [numpy_helper.from_array(W1, "w1"), numpy_helper.from_array(W2, "w2")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.fixture(params=[False, True], ids=["per-tensor", "per-channel"])
def int8(request: pytest.FixtureRequest, tmp_path: Path) -> onnx.ModelProto:
    quantize_dynamic(_float_graph(tmp_path / "fp32.onnx"), tmp_path / "int8.onnx", weight_type=QuantType.QInt8,
                     per_channel=request.param)
    return onnx.load(tmp_path / "int8.onnx")


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["y"], {"x": x})[0]


def _rows(n: int, scale: float = 1.0) -> np.ndarray:
    return (RNG.normal(size=(n, 8)) * scale).astype(np.float32)


def _ranges(model: onnx.ModelProto, low: float = -4.0, high: float = 4.0) -> dict[str, tuple[float, float]]:
    return {name: (low, high) for name in activation_inputs(model)}


def test_fp32_from_int8_is_the_float_graph_with_dequantised_weights(int8: onnx.ModelProto) -> None:
    fp32 = fp32_from_int8(int8)
    ops = {node.op_type for node in fp32.graph.node}
    assert ops == {"MatMul", "Relu"}
    x = _rows(16)
    expected = np.maximum(x @ W1, 0) @ W2
    # int8 weights: a small error against the original weights, none of the activation quantisation's.
    np.testing.assert_allclose(_run(fp32, x), expected, rtol=0.05, atol=0.2)
    assert np.abs(_run(fp32, x) - expected).max() < np.abs(_run(int8, x) - expected).max() + 0.2


def test_static_int8_answers_a_row_the_same_whatever_is_batched_with_it(int8: onnx.ModelProto) -> None:
    static = static_int8(int8, _ranges(int8))
    assert is_static(static) and not is_static(int8)
    x = _rows(8)
    neighbour = _rows(8, scale=10.0)  # rows with a wider range: a dynamic scale would follow them
    alone = np.concatenate([_run(static, x[i : i + 1]) for i in range(len(x))])
    together = _run(static, np.concatenate([x, neighbour]))[: len(x)]
    np.testing.assert_array_equal(alone, together)
    # The same check on the dynamic graph fails: it is what the rewrite fixes.
    dyn_alone = np.concatenate([_run(int8, x[i : i + 1]) for i in range(len(x))])
    assert np.abs(dyn_alone - _run(int8, np.concatenate([x, neighbour]))[: len(x)]).max() > 1e-3


def test_static_int8_tracks_the_float_graph_inside_its_range(int8: onnx.ModelProto) -> None:
    # x is standard normal; r = relu(x @ w1) stays under 16 for these rows. The served form has unsigned weights:
    # with signed ones, an x86 CPU without VNNI overflowed the per-channel graph's products (off by up to 5.5).
    static = unsigned_weights(static_int8(int8, {"x": (-4.0, 4.0), "r": (0.0, 16.0)}))
    x = np.clip(_rows(32), -4, 4)
    assert np.abs(_run(static, x) - _run(fp32_from_int8(int8), x)).max() < 0.6


def test_requantising_replaces_the_constants_and_dynamic_int8_undoes_it(int8: onnx.ModelProto) -> None:
    once = static_int8(int8, _ranges(int8, -4.0, 4.0))
    twice = static_int8(once, _ranges(int8, -2.0, 2.0))
    assert len(twice.graph.initializer) == len(once.graph.initializer)
    assert [n.op_type for n in twice.graph.node] == [n.op_type for n in once.graph.node]
    back = dynamic_int8(twice)
    assert [n.op_type for n in back.graph.node] == [n.op_type for n in int8.graph.node]
    x = _rows(4)
    np.testing.assert_array_equal(_run(back, x), _run(int8, x))


def test_a_range_that_does_not_hold_zero_is_widened_to_hold_it(int8: onnx.ModelProto) -> None:
    static = static_int8(int8, _ranges(int8, 1.0, 3.0))
    zero_points = [numpy_helper.to_array(t) for t in static.graph.initializer if t.name.endswith("zero_point")
                   and t.data_type == TensorProto.UINT8]
    assert zero_points and all(int(z) == 0 for z in zero_points)


def test_an_operator_it_cannot_rewrite_is_named() -> None:
    node = helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="odd")
    graph = helper.make_graph([node], "odd", [helper.make_tensor_value_info("q", TensorProto.UINT8, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
                              [numpy_helper.from_array(np.array(0.1, np.float32), "s"),
                               numpy_helper.from_array(np.array(0, np.uint8), "z")])
    with pytest.raises(QuantizeError, match="odd"):
        fp32_from_int8(helper.make_model(graph))


def test_the_float_graph_of_a_static_graph_is_that_of_its_dynamic_graph(int8: onnx.ModelProto) -> None:
    """In a static graph the activation scale is an initializer too: the weight's scale must still be the one used."""
    static = static_int8(int8, _ranges(int8))
    assert fp32_from_int8(static).SerializeToString() == fp32_from_int8(int8).SerializeToString()


def test_unsigned_weights_dequantise_to_the_same_weights(int8: onnx.ModelProto) -> None:
    static = static_int8(int8, _ranges(int8))
    served = unsigned_weights(static)
    types = {t.name: t.data_type for t in served.graph.initializer}
    products = [n for n in served.graph.node if n.op_type == "MatMulInteger"]
    assert products and all(types[n.input[1]] == types[n.input[3]] == TensorProto.UINT8 for n in products)
    assert unsigned_weights(served).SerializeToString() == served.SerializeToString()  # once is enough
    weights = {t.name: numpy_helper.to_array(t) for t in fp32_from_int8(static).graph.initializer}
    for t in fp32_from_int8(served).graph.initializer:
        np.testing.assert_array_equal(numpy_helper.to_array(t), weights[t.name])
