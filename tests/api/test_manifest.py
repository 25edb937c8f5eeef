"""The manifest of EXPORTS_DIR: validation, atomic replacement, publication history and ``select``."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest

from api.exports import METADATA_FILE, ExportError, sha256_file
from api.manifest import (
    MANIFEST_FILE,
    Manifest,
    ManifestError,
    ModelEntry,
    adopt,
    main,
    publish,
    read_manifest,
    select,
    write_manifest,
)
from api.preprocess import PREPROCESSING_VERSION


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


def test_publish_writes_a_readable_manifest_and_appends_history(root: Path) -> None:
    first = publish(root, "minilm", {"minilm": ModelEntry("minilm", "4"), "tfidf-lr": ModelEntry("tfidf-lr", "3")},
                    "export", run_id="run-1")
    second = publish(root, "minilm", {"minilm": ModelEntry("minilm@5", "5"), "tfidf-lr": ModelEntry("tfidf-lr", "3")},
                     "retrain", run_id="run-2", extra={"restores": 0})
    read = read_manifest(root)
    assert read == second
    assert read.folder(root, "minilm") == root / "minilm@5"
    assert [h["reason"] for h in read.history] == ["export", "retrain"]
    assert read.history[0]["models"] == {name: {"path": e.path, "version": e.version}
                                         for name, e in first.models.items()}
    assert read.history[-1]["run_id"] == "run-2" and read.history[-1]["champion"] == "minilm"
    assert read.history[-1]["restores"] == 0  # extra fields are kept
    # Readable by a service running as another user; no temporary file left behind.
    assert stat.S_IMODE(os.stat(root / MANIFEST_FILE).st_mode) & 0o044 == 0o044
    assert not [p for p in root.iterdir() if p.name.endswith(".tmp")]


def test_a_manifest_that_does_not_match_its_folders_is_not_written(root: Path) -> None:
    good = publish(root, "minilm", {"minilm": ModelEntry("minilm", "4")}, "export")
    for models, message in (({"minilm": ModelEntry("minilm", "5")}, "version 4"),
                            ({"minilm": ModelEntry("tfidf-lr", "3")}, "holds tfidf-lr"),
                            ({"minilm": ModelEntry("nowhere", "4")}, "missing")):
        with pytest.raises(ExportError, match=message):
            publish(root, "minilm", models, "retrain")
    assert read_manifest(root) == good


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


def test_select_keeps_the_chosen_models_and_deletes_the_others(root: Path, capsys) -> None:
    publish(root, "minilm", {"minilm": ModelEntry("minilm@5", "5"), "tfidf-lr": ModelEntry("tfidf-lr", "3")},
            "retrain")
    assert main(["select", "--exports-dir", str(root), "--keep", "minilm"]) == 0
    assert json.loads(capsys.readouterr().out) == {"champion": "minilm", "models": {"minilm": "5"}}
    manifest = read_manifest(root)
    assert dict(manifest.models) == {"minilm": ModelEntry("minilm@5", "5")}
    assert manifest.history[-1]["reason"] == "select"
    # The other model and the older version of the kept one are gone; the kept folder stays whole.
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["minilm@5"]


def test_select_refuses_to_drop_the_champion_and_changes_nothing(root: Path, capsys) -> None:
    publish(root, "tfidf-lr", {"minilm": ModelEntry("minilm", "4"), "tfidf-lr": ModelEntry("tfidf-lr", "3")}, "export")
    assert main(["select", "--exports-dir", str(root), "--keep", "minilm"]) == 2
    assert "champion 'tfidf-lr' must be kept" in capsys.readouterr().err
    assert len(read_manifest(root).models) == 2
    assert (root / "tfidf-lr").is_dir()
    with pytest.raises(ManifestError, match="no model"):
        select(root, ["tfidf-lr", "bert"])


def test_select_without_a_manifest_makes_one_from_the_folders(tmp_path: Path) -> None:
    _export(tmp_path, "minilm", "minilm", "4", aliases=["champion"])
    _export(tmp_path, "tfidf-lr", "tfidf-lr", "3")
    _export(tmp_path, "tfidf-svm", "tfidf-svm", "2")
    (tmp_path / "runs").mkdir()  # not an export: left alone
    manifest = select(tmp_path, ["minilm", "tfidf-lr"])
    assert manifest.champion == "minilm"
    assert read_manifest(tmp_path) == manifest
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["minilm", "runs", "tfidf-lr"]


def _bundle(folder: Path, name: str = "minilm", payload: bytes = b"onnx graph") -> Path:
    """An export bundle whose model file matches the sha256 in its metadata, as training logs it to MLflow."""
    _export(folder.parent, folder.name, name, "unregistered")
    (folder / "model.onnx").write_bytes(payload)
    meta = json.loads((folder / METADATA_FILE).read_text())
    meta["files"] = {"model.onnx": sha256_file(folder / "model.onnx")}
    (folder / METADATA_FILE).write_text(json.dumps(meta))
    return folder


def test_adopt_publishes_a_downloaded_bundle_under_its_version(tmp_path: Path, capsys) -> None:
    exports = tmp_path / "exports"
    bundle = _bundle(tmp_path / "download" / "artifacts" / "minilm")  # `mlflow artifacts download` layout
    assert main(["adopt", "--exports-dir", str(exports), "--bundle", str(tmp_path / "download"),
                 "--version", "7", "--champion"]) == 0
    assert json.loads(capsys.readouterr().out) == {"champion": "minilm", "models": {"minilm": "7"}}
    manifest = read_manifest(exports)
    assert dict(manifest.models) == {"minilm": ModelEntry("minilm@7", "7")}
    assert json.loads((exports / "minilm@7" / METADATA_FILE).read_text())["version"] == "7"
    assert adopt(exports, bundle, "7", champion=True) == manifest  # the same version again: nothing to do
    other = _bundle(tmp_path / "tfidf", name="tfidf-lr")
    after = adopt(exports, other, "3")  # not asked to be champion: the champion stays
    assert after.champion == "minilm" and set(after.models) == {"minilm", "tfidf-lr"}
    assert [h["reason"] for h in after.history] == ["mlflow", "mlflow"]


def test_adopt_refuses_a_bundle_whose_files_do_not_match(tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    first = adopt(exports, _bundle(tmp_path / "v7"), "7")
    broken = _bundle(tmp_path / "v8")
    (broken / "model.onnx").write_bytes(b"truncated")
    with pytest.raises(ExportError, match="sha256"):
        adopt(exports, broken, "8", champion=True)
    assert read_manifest(exports) == first
    assert sorted(p.name for p in exports.iterdir() if p.is_dir()) == ["minilm@7"]  # no half copy left


def test_select_can_crown_the_best_kept_model_when_the_champion_is_left_out(tmp_path: Path, capsys) -> None:
    """How the images drop mpnet: the champion rule picks among what stays (Dockerfiles' EXPORTS argument)."""
    def scored(accuracy: float, p50: float) -> dict:
        return {"metrics": {"validation_random": {"accuracy": accuracy, "latency_p50_ms": p50}}}

    _export(tmp_path, "mpnet", "mpnet", "2", aliases=["mpnet", "champion"], **scored(0.85, 10.0))
    _export(tmp_path, "minilm", "minilm", "4", **scored(0.83, 0.8))
    _export(tmp_path, "tfidf-lr", "tfidf-lr", "3", **scored(0.78, 0.3))
    publish(tmp_path, "mpnet", {n: ModelEntry(n, v) for n, v in (("mpnet", "2"), ("minilm", "4"), ("tfidf-lr", "3"))},
            "export")

    assert main(["select", "--exports-dir", str(tmp_path), "--keep", "minilm tfidf-lr"]) == 2
    assert (tmp_path / "mpnet").is_dir()  # refused: nothing deleted
    before = (tmp_path / "manifest.json").read_bytes()
    # --dry-run (docker/test.sh labels the image with it): the same answer, nothing written or deleted.
    assert main(["select", "--exports-dir", str(tmp_path), "--keep", "minilm tfidf-lr", "--repick-champion",
                 "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == {"champion": "minilm",
                                                                      "models": {"minilm": "4", "tfidf-lr": "3"}}
    assert (tmp_path / "manifest.json").read_bytes() == before and (tmp_path / "mpnet").is_dir()
    assert main(["select", "--exports-dir", str(tmp_path), "--keep", "minilm tfidf-lr", "--repick-champion"]) == 0
    manifest = read_manifest(tmp_path)
    assert manifest.champion == "minilm" and set(manifest.models) == {"minilm", "tfidf-lr"}
    assert not (tmp_path / "mpnet").exists()
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["champion"] == "minilm"
