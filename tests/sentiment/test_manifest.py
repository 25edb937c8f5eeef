"""The manifest format of EXPORTS_DIR: validation, atomic replacement, the folders it names (publishing: test_publish.py)."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest

from sentiment.exports import METADATA_FILE, ExportError, sha256_file
from sentiment.manifest import (
    MANIFEST_FILE,
    Manifest,
    ManifestError,
    ModelEntry,
    from_folders,
    read_manifest,
    write_manifest,
)
from sentiment.preprocess import PREPROCESSING_VERSION


def _export(root: Path, folder: str, name: str, version: str, **fields) -> Path:
    """A metadata.json that passes validation (no model file: the manifest never opens one)."""
    path = root / folder
    path.mkdir(parents=True)
    meta = {"schema_version": 1, "name": name, "family": "classical", "version": version,
            "labels": ["negative", "positive"], "preprocessing_version": PREPROCESSING_VERSION,
            "variants": {"onnx": "model.onnx"}, "default_variant": "onnx", "files": {}, **fields}
    (path / METADATA_FILE).write_text(json.dumps(meta), encoding="utf-8")
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    _export(tmp_path, "minilm", "minilm", "4")
    _export(tmp_path, "minilm@5", "minilm", "5")
    _export(tmp_path, "tfidf-lr", "tfidf-lr", "3")
    return tmp_path


def test_without_a_manifest_read_returns_none(root: Path) -> None:
    assert read_manifest(root) is None


@pytest.mark.parametrize(("data", "message"), [
    ({"schema_version": 2, "champion": "a", "models": {"a": {"path": "a", "version": "1"}}}, "schema version"),
    ({"schema_version": 1, "champion": "b", "models": {"a": {"path": "a", "version": "1"}}}, "champion 'b'"),
    ({"schema_version": 1, "champion": "a", "models": {}}, "at least one model"),
    ({"schema_version": 1, "champion": "a", "models": {"a": {"path": "a"}}}, "needs a 'path'"),
    ({"schema_version": 1, "champion": "a", "models": {"a": {"path": "../a", "version": "1"}}}, "outside"),
    ({"schema_version": 1, "champion": "a", "models": {"a": {"path": "/etc", "version": "1"}}}, "outside"),
    ({"schema_version": 1, "champion": "a", "models": {"a": {"path": ".", "version": "1"}}}, "empty path"),
    ({"schema_version": 1, "champion": "a", "models": {"a": {"path": "a", "version": "1"}}, "history": {}}, "history"),
    ([], "JSON object"),
])
def test_invalid_manifests_are_refused_with_the_reason(tmp_path: Path, data, message: str) -> None:
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=message):
        read_manifest(tmp_path)


def test_a_manifest_that_is_not_json_is_refused(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_FILE).write_text('{"champion": "a", ')
    with pytest.raises(ManifestError, match="not valid JSON"):
        read_manifest(tmp_path)


def test_a_reader_never_sees_half_a_change(tmp_path: Path) -> None:
    """Two different manifests replaced in turn, as fast as possible, while another thread reads."""
    big = {f"model-{i}": ModelEntry(f"model-{i}@{'x' * 200}", "1") for i in range(200)}  # several pages of JSON
    variants = [Manifest("model-0", {**big, "model-0": ModelEntry("a", "1")}, "t1"),
                Manifest("model-1", {**big, "model-1": ModelEntry("b", "2")}, "t2")]
    expected = {(m.champion, m.models[m.champion].version, len(m.models)) for m in variants}
    write_manifest(tmp_path, variants[0], verify=False)
    stop = threading.Event()
    seen: list[tuple[str, str, int]] = []
    errors: list[BaseException] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                manifest = read_manifest(tmp_path)
                seen.append((manifest.champion, manifest.models[manifest.champion].version, len(manifest.models)))
            except BaseException as error:  # a torn read shows up as invalid JSON or a missing file
                errors.append(error)
                return

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(40):
            write_manifest(tmp_path, variants[i % 2], verify=False)
    finally:
        stop.set()
        thread.join()
    assert not errors, errors[0]
    assert seen and set(seen) <= expected


def test_write_manifest_replaces_the_file_readable_by_others_and_leaves_no_temporary(root: Path) -> None:
    manifest = Manifest("minilm", {"minilm": ModelEntry("minilm@5", "5"), "tfidf-lr": ModelEntry("tfidf-lr", "3")}, "t")
    write_manifest(root, manifest)
    assert read_manifest(root) == manifest
    assert read_manifest(root).folder(root, "minilm") == root / "minilm@5"
    # Readable by a service running as another user; no temporary file left behind.
    assert stat.S_IMODE(os.stat(root / MANIFEST_FILE).st_mode) & 0o044 == 0o044
    assert not [p for p in root.iterdir() if p.name.endswith(".tmp")]


def test_a_manifest_that_does_not_match_its_folders_is_not_written(root: Path) -> None:
    good = Manifest("minilm", {"minilm": ModelEntry("minilm", "4")}, "t")
    write_manifest(root, good)
    for models, message in (({"minilm": ModelEntry("minilm", "5")}, "version 4"),
                            ({"minilm": ModelEntry("tfidf-lr", "3")}, "holds tfidf-lr"),
                            ({"minilm": ModelEntry("nowhere", "4")}, "missing")):
        with pytest.raises(ExportError, match=message):
            write_manifest(root, Manifest("minilm", models, "t2"))
    assert read_manifest(root) == good


def test_from_folders_describes_what_is_served_without_a_manifest(tmp_path: Path) -> None:
    _export(tmp_path, "minilm", "minilm", "4", aliases=["champion"])
    _export(tmp_path, "tfidf-lr", "tfidf-lr", "3")
    described = from_folders(tmp_path)
    assert described.champion == "minilm" and dict(described.models) == {"minilm": ModelEntry("minilm", "4"),
                                                                         "tfidf-lr": ModelEntry("tfidf-lr", "3")}
    assert read_manifest(tmp_path) is None  # described, not written
    _export(tmp_path, "minilm@5", "minilm", "5")
    with pytest.raises(ManifestError, match="also in"):
        from_folders(tmp_path)


def test_a_symlink_named_by_the_manifest_cannot_lead_outside_exports_dir(tmp_path: Path) -> None:
    """Audit: a link in EXPORTS_DIR named in the manifest was followed to a folder elsewhere."""
    served, elsewhere = tmp_path / "exports", tmp_path / "elsewhere"
    _export(tmp_path, "elsewhere", "minilm", "9")
    served.mkdir()
    (served / "minilm").symlink_to(elsewhere, target_is_directory=True)
    (served / MANIFEST_FILE).write_text(json.dumps({
        "schema_version": 1, "champion": "minilm", "models": {"minilm": {"path": "minilm", "version": "9"}}}))
    with pytest.raises(ManifestError, match="outside the exports folder"):
        read_manifest(served)


def test_a_symlinked_model_file_cannot_lead_outside_its_export(tmp_path: Path) -> None:
    from sentiment.exports import verify_file

    folder = _export(tmp_path, "minilm", "minilm", "1")
    (tmp_path / "secret.onnx").write_bytes(b"not yours")
    (folder / "model.onnx").symlink_to(tmp_path / "secret.onnx")
    meta = json.loads((folder / METADATA_FILE).read_text())
    with pytest.raises(ExportError, match="outside the export folder"):
        verify_file(folder, meta, "model.onnx")
    inner = folder / "inner.onnx"
    inner.write_bytes(b"graph")
    (folder / "alias.onnx").symlink_to(inner)  # a link inside the export stays allowed
    meta["files"]["alias.onnx"] = sha256_file(inner)
    assert verify_file(folder, meta, "alias.onnx") == folder / "alias.onnx"
