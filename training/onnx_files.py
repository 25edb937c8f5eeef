"""ONNX files as the exports keep them: large graphs split into one external data file per tensor."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import onnx
from onnx.external_data_helper import convert_model_to_external_data, uses_external_data

# Each committed file stays under this size (git hosts refuse files over 100 MB); larger graphs keep their
# tensors as ONNX external data in ``<graph>.data/``.
MAX_FILE_BYTES = 95_000_000
EXTERNAL_DATA_SUFFIX = ".data"


def split_external_data(path: Path, *, max_bytes: int = MAX_FILE_BYTES, size_threshold: int = 1 << 16) -> list[str]:
    """Rewrite the ONNX graph at ``path`` with its large tensors in ``<name>.data/``, one file per tensor.

    Git hosts refuse files over 100 MB, and an int8 MPNet graph is about 110 MB: kept as ONNX external data
    (``save_model(..., save_as_external_data=True, all_tensors_to_one_file=False)``, each file named after its
    tensor or the node reading it, instead of random ids) every file stays small: each weight matrix over ``size_threshold`` bytes gets its own
    file, biases and norms stay in the graph file. ONNX Runtime loads such a graph from its path as usual.

    Returns:
        The external data files, relative to the graph's folder (POSIX paths), in graph order.

    Raises:
        ValueError: a file would still exceed ``max_bytes``.
    """
    model = onnx.load(str(path))
    data_dir = path.with_name(path.name + EXTERNAL_DATA_SUFFIX)
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir()
    convert_model_to_external_data(model, all_tensors_to_one_file=False, size_threshold=size_threshold)
    # The legacy exporter names transposed Linear weights "onnx::MatMul_<n>", a number that changes from one
    # export to the next; the node that reads the weight has a stable name ("/mpnet/encoder/layer.0/…/MatMul_quant").
    reader = {}
    for node in model.graph.node:
        for name in node.input:
            reader.setdefault(name, node.name)
    written, taken = [], set()
    for tensor in _initializers(model.graph):
        if not uses_external_data(tensor):
            continue
        label = reader.get(tensor.name) if tensor.name.startswith("onnx::") else None
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", label or tensor.name).strip("._") or "tensor"
        name, n = stem, 1
        while name.lower() in taken:  # unique even on case-insensitive file systems
            n += 1
            name = f"{stem}_{n}"
        taken.add(name.lower())
        location = f"{data_dir.name}/{name}"
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
        written.append(location)
    onnx.save_model(model, str(path))
    for location in written:  # onnx creates them 0600: unreadable to a non-root server of a root-built image
        shutil.copymode(path, path.parent / location)
    too_big = [p.name for p in [path, *(path.parent / w for w in written)] if p.stat().st_size > max_bytes]
    if too_big:
        raise ValueError(f"{too_big} exceed {max_bytes} bytes even as external data")
    return written


def _initializers(graph: onnx.GraphProto) -> list[onnx.TensorProto]:
    """Initializers of ``graph`` and of its sub-graphs (If/Loop bodies), the tensors external data can hold."""
    tensors = list(graph.initializer)
    for node in graph.node:
        for attribute in node.attribute:
            for sub in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                tensors.extend(_initializers(sub))
    return tensors
