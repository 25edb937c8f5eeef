"""Continue training from a served export: the fine-tuned torch model rebuilt from the export's ONNX graph.

    python -m training.from_export exports/minilm artifacts/minilm-from-export
    python -m training.train_transformer --family minilm --base-model artifacts/minilm-from-export …

The exports hold int8 ONNX only (the fp32 graph and the torch weights are git-ignored), so a fresh clone had nothing
to continue a retraining from but the pretrained base. Here the int8 graph's weights, dequantised
(``training.quantize.fp32_from_int8``), are put back into the family's Hugging Face architecture: parameters by
their initializer names, linear layers by the names of the nodes that read them (``/bert/encoder/layer.0/…/MatMul``),
BERT's fused attention by layer. Every parameter must be found. The rebuilt model is then checked against the fp32
graph it came from on real tweets (the same weights: the same answers, to float rounding), so a wrong mapping cannot
go unnoticed. The weights are the served ones, int8 rounding included.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from sentiment.exports import read_metadata
from sentiment.predictor import graph_feeds, softmax
from training.quantize import _session, fp32_from_int8, tokenize

logger = logging.getLogger(__name__)

# Largest difference of P(positive) between the rebuilt torch model and the fp32 graph it came from.
MAX_ABS_DIFF = 1e-3
CHECK_TEXTS = (
    "@united flight 1234 delayed again, third time this month. not impressed",
    "Just landed in Denver, smooth flight and a lovely crew, thanks!",
    "why is it so hard to get a refund for a cancelled flight?? been on hold for two hours #fail",
    "good morning everyone :)", "ugh monday", "can't wait for the weekend, beach here we come",
    "Lost my bag somewhere between Chicago and Boston and nobody at the desk knows anything",
    "The new seats are actually comfortable, and the wifi worked the whole way",
)


class RebuildError(ValueError):
    """The export's graph could not be mapped onto the architecture, or the rebuilt model disagrees with it."""


def state_dict_from_graph(graph: onnx.ModelProto, expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The parameters of ``expected``'s model (its ``state_dict``) read from a float graph of it.

    Raises:
        RebuildError: a parameter has no counterpart in the graph, or a shape differs.
    """
    arrays = {t.name: numpy_helper.to_array(t) for t in graph.graph.initializer}
    prefix = next(iter(expected)).split(".", 1)[0]  # "bert", "mpnet"
    state: dict[str, torch.Tensor] = {}

    def put(key: str, array: np.ndarray, transpose: bool = False) -> None:
        if key not in expected:
            return
        value = torch.from_numpy(np.array(array.T if transpose else array, copy=True, order="C"))
        if tuple(value.shape) != tuple(expected[key].shape):
            raise RebuildError(f"{key}: the graph holds shape {tuple(value.shape)}, the model {tuple(expected[key].shape)}")
        state[key] = value.to(expected[key].dtype)

    for name, array in arrays.items():  # parameters kept under their own names (biases, norms, dequantised tables)
        put(name.removesuffix("_float"), array)
    layer = 0
    for node in graph.graph.node:
        if node.op_type == "MatMul" and node.input[1] in arrays:  # a Linear: its weight is the transposed matrix
            module = node.name.strip("/").rsplit("/", 1)[0].replace("/", ".")
            put(f"{module}.weight", arrays[node.input[1]], transpose=True)
        elif node.op_type == "Attention":  # BERT's fused query, key and value, one node per layer in order
            weight, bias = arrays[node.input[1]], arrays[node.input[2]]
            size = weight.shape[1] // 3
            for index, part in enumerate(("query", "key", "value")):
                base = f"{prefix}.encoder.layer.{layer}.attention.self.{part}"
                put(f"{base}.weight", weight[:, index * size:(index + 1) * size], transpose=True)
                put(f"{base}.bias", bias[index * size:(index + 1) * size])
            layer += 1
    missing = sorted(key for key, value in expected.items() if key not in state and value.requires_grad is not None
                     and not key.endswith(("position_ids", "token_type_ids")))
    if missing:
        raise RebuildError(f"{len(missing)} parameters have no counterpart in the graph, e.g. {missing[:3]}")
    return state


def rebuild(folder: Path, target: Path, base_model: str | Path) -> Path:
    """Write a Hugging Face folder at ``target`` with the fine-tuned weights of the export in ``folder``.

    Args:
        folder: a transformer export (``exports/minilm``).
        target: the folder to write (replaced).
        base_model: the family's pretrained folder: its configuration and tokenizer files.

    Raises:
        RebuildError: see :func:`state_dict_from_graph`, or the rebuilt model's answers differ from the graph's.
    """
    import sys

    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    if not sys.stderr.isatty():  # save_pretrained's "Writing model shards" bar belongs on a terminal
        hf_logging.disable_progress_bar()
    meta = read_metadata(folder)
    graph = fp32_from_int8(onnx.load(str(folder / meta["variants"]["int8"])))
    model = AutoModelForSequenceClassification.from_pretrained(base_model, num_labels=2, attn_implementation="eager")
    model.load_state_dict(state_dict_from_graph(graph, model.state_dict()), strict=False)
    model.eval()
    check(model, graph, folder / meta["tokenizer"], int(meta["max_length"]))
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(base_model).save_pretrained(target)
    logger.info("%s v%s rebuilt as a torch model in %s", meta["name"], meta["version"], target)
    return target


def check(model: Any, graph: onnx.ModelProto, tokenizer_file: Path, max_length: int) -> float:
    """Largest difference of P(positive) between ``model`` and ``graph`` on :data:`CHECK_TEXTS`, one at a time."""
    session = _session(graph)
    inputs = {i.name for i in session.get_inputs()}
    worst = 0.0
    for encoding in tokenize(tokenizer_file, max_length, CHECK_TEXTS):
        feeds = graph_feeds([encoding], inputs)
        onnx_p = softmax(session.run(["logits"], feeds)[0])[0, 1]
        with torch.inference_mode():
            logits = model(**{k: torch.from_numpy(v) for k, v in feeds.items() if k != "token_type_ids" or
                              "token_type_ids" in model.forward.__code__.co_varnames}).logits
        torch_p = float(torch.softmax(logits.float(), dim=1)[0, 1])
        worst = max(worst, abs(torch_p - float(onnx_p)))
    if worst > MAX_ABS_DIFF:
        raise RebuildError(f"the rebuilt model differs from the export by up to {worst:.4f} in P(positive) "
                           f"(at most {MAX_ABS_DIFF} expected): the mapping is wrong")
    return worst


def main(argv: list[str] | None = None) -> None:
    from training import train_transformer as tt

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", type=Path, help="a transformer export, e.g. exports/minilm")
    parser.add_argument("target", type=Path, help="the Hugging Face folder to write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    family = read_metadata(args.export)["name"]
    if family not in tt.FAMILIES:
        raise SystemExit(f"error: {args.export} is {family!r}, not one of {sorted(tt.FAMILIES)}")
    base, _ = tt.FAMILIES[family].weights()
    rebuild(args.export, args.target, base)


if __name__ == "__main__":
    main()
