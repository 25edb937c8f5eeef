"""The export contract: ``exports/<model>/metadata.json`` and the checks made before a model is served.

``metadata.json`` fields (schema version 1):

- ``name``, ``display_name``, ``family`` (``transformer`` | ``classical``), ``version`` (registry version),
  ``labels`` (class index → name, ``["negative", "positive"]``), ``preprocessing_version``;
- ``variants``: variant name → ONNX file (``int8``/``fp32`` for transformers, ``onnx`` for classical),
  ``default_variant``; transformers also give ``max_length`` and ``tokenizer`` (``tokenizer.json``);
- ``files``: file path (relative, possibly in a sub-folder) → sha256 of every file the export ships (files
  absent from the folder, such as the fp32 ONNX kept out of git, are only checked when asked for);
- ``external_data`` (optional): variant → the files holding that graph's weights (ONNX external data, one
  file per tensor, so that no file of a large model is over 95 MB); each is checked like the graph;
- ``architecture`` (optional): the base model's architecture (``bert``, ``mpnet``);
- ``metrics``: evaluation set → metric → value; ``mlflow``: run id, registered model and version;
  ``aliases`` (e.g. ``["champion"]``), ``created_at``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sentiment.preprocess import PREPROCESSING_VERSION
from sentiment.scoring import LABELS

METADATA_FILE = "metadata.json"
SCHEMA_VERSION = 1
# A transformer bundle's fp32 graph: kept beside the int8 one for parity checks, listed in ``files``, not served.
FP32_FILE = "model.fp32.onnx"
# The original project's API answered 0 / 4, Sentiment140's own codes.
SENTIMENT140_CODES = {"negative": 0, "positive": 4}
_REQUIRED = ("name", "family", "version", "labels", "preprocessing_version", "variants", "default_variant", "files")


class ExportError(RuntimeError):
    """An export folder that cannot be served; the message names the path and the fix."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_metadata(folder: Path, meta: dict[str, Any], *, files: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Complete ``meta`` with the format's defaults and the sha256 of its files, and write ``metadata.json``.

    Args:
        folder: the export folder.
        meta: the fields (their ``files`` is ignored); missing defaults are filled in (schema version, labels,
            preprocessing version, ``created_at``, ``version`` ``unregistered``, empty aliases, metrics, mlflow).
        files: the sha256 already recorded for the folder's files, written as they are (a publication then checks
            the files against them); default: the sha256 of every file under ``folder``. Files in sub-folders (the
            external data of a large ONNX graph) are listed by their POSIX path relative to ``folder``, e.g.
            ``model.int8.onnx.data/mpnet_encoder_layer.0_output_dense_MatMul_quant``.

    Returns:
        The metadata written.
    """
    if files is None:
        files = {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*"))
                 if p.is_file() and p.relative_to(folder).as_posix() != METADATA_FILE}
    full = {"schema_version": SCHEMA_VERSION, "labels": list(LABELS), "preprocessing_version": PREPROCESSING_VERSION,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"), "version": "unregistered",
            "aliases": [], "metrics": {}, "mlflow": {}, **meta, "files": dict(files)}
    (folder / METADATA_FILE).write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
    return full


def read_metadata(folder: Path) -> dict[str, Any]:
    """Read and validate ``metadata.json`` of an export folder."""
    path = folder / METADATA_FILE
    if not path.is_file():
        raise ExportError(f"{path} is missing: run `make export` (or point EXPORTS_DIR at a folder of exports)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ExportError(f"{path} is not valid JSON ({error}); re-run `make export`") from error
    missing = [key for key in _REQUIRED if key not in meta]
    if missing:
        raise ExportError(f"{path} lacks {missing}; re-run `make export`")
    if meta.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise ExportError(f"{path} has schema version {meta.get('schema_version')}, expected {SCHEMA_VERSION}")
    if tuple(meta["labels"]) != LABELS:
        raise ExportError(f"{path}: labels {meta['labels']} differ from {list(LABELS)}")
    if meta["preprocessing_version"].split(".")[0] != PREPROCESSING_VERSION.split(".")[0]:
        raise ExportError(
            f"{path}: trained with preprocessing {meta['preprocessing_version']}, this code has "
            f"{PREPROCESSING_VERSION}; re-train and re-export the model"
        )
    return meta


def inside(folder: Path, name: str, source: Path, what: str = "export folder") -> Path:
    """``folder/name``, refusing a ``name`` (read from ``source``) that leads outside ``folder``.

    Outside means absolute, climbing out with ``..``, or through a symbolic link whose target is elsewhere: an
    export or a manifest names files inside its own folder only.

    Raises:
        ExportError: ``name`` points outside ``folder``.
    """
    relative = Path(name)
    if not name or relative.is_absolute() or ".." in relative.parts:
        raise ExportError(f"{source} names {name!r}, outside the {what}")
    path = folder / relative
    if not path.resolve().is_relative_to(folder.resolve()):
        raise ExportError(f"{source} names {name!r}, a link to {path.resolve()}, outside the {what}")
    return path


def verify_file(folder: Path, meta: dict[str, Any], name: str) -> Path:
    """Return ``folder/name`` after checking that it exists and matches its recorded sha256."""
    path = inside(folder, name, folder / METADATA_FILE)
    if not path.is_file():
        raise ExportError(f"{path} is missing: re-run `make export` for {meta['name']}")
    expected = meta["files"].get(name)
    if expected is None:
        raise ExportError(f"{folder / METADATA_FILE} records no sha256 for {name}")
    if sha256_file(path) != expected:
        raise ExportError(f"{path} does not match its sha256 in {METADATA_FILE}: the file is corrupt or was "
                          "replaced; restore it from git or re-run `make export`")
    return path


def discover(exports_dir: str | Path) -> list[Path]:
    """Export folders (those holding a ``metadata.json``) under ``exports_dir``, sorted by name.

    Hidden folders are skipped: publishing stages a copy in ``.<name>@<version>.partial`` before it is checked.
    """
    root = Path(exports_dir)
    if not root.is_dir():
        raise ExportError(f"{root} is not a folder of exports: set EXPORTS_DIR or run `make export`")
    return sorted(p.parent for p in root.glob("*/metadata.json") if not p.parent.name.startswith("."))
