"""Publishing to EXPORTS_DIR (``sentiment.publish``): the history, adopt, publish_version, select, rollback, the CLI.

Every folder is published in one order (stage, write the version, verify the sha256, rename, write the manifest):
``adopt`` and ``publish_version`` both go through it, so both refuse a bundle whose files do not match their sha256
and leave the manifest and the served folders as they were.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import onnx
import pytest

from sentiment.exports import FP32_FILE, METADATA_FILE, ExportError, sha256_file
from sentiment.manifest import Manifest, ManifestError, ModelEntry, read_manifest
from sentiment.predictor import load_predictor
from sentiment.publish import (
    adopt,
    best_champion_accuracy,
    main,
    new_version,
    publish_state,
    publish_version,
    rollback,
    select,
)
from tests.api.conftest import build_classical_export
from tests.sentiment.test_manifest import _export


@pytest.fixture
def root(tmp_path: Path) -> Path:
    _export(tmp_path, "minilm", "minilm", "4")
    _export(tmp_path, "minilm@5", "minilm", "5")
    _export(tmp_path, "tfidf-lr", "tfidf-lr", "3")
    return tmp_path


def _bundle(folder: Path, name: str = "minilm", payload: bytes = b"onnx graph") -> Path:
    """An export bundle whose model file matches the sha256 in its metadata, as training logs it to MLflow."""
    _export(folder.parent, folder.name, name, "unregistered")
    (folder / "model.onnx").write_bytes(payload)
    meta = json.loads((folder / METADATA_FILE).read_text())
    meta["files"] = {"model.onnx": sha256_file(folder / "model.onnx")}
    (folder / METADATA_FILE).write_text(json.dumps(meta))
    return folder


def _trained_bundle(folder: Path, accuracy: float = 0.9) -> Path:
    """A real, loadable bundle as a retraining leaves it: a TF-IDF graph plus the fp32 graph that is not served."""
    build_classical_export(folder, name="tiny-lr", metrics={"validation_random": {"accuracy": accuracy}})
    (folder / FP32_FILE).write_bytes(b"the fp32 graph, kept for parity checks")
    meta = json.loads((folder / METADATA_FILE).read_text())
    meta["files"][FP32_FILE] = sha256_file(folder / FP32_FILE)
    (folder / METADATA_FILE).write_text(json.dumps(meta))
    return folder


def _served(root: Path) -> dict[str, bytes]:
    """Every file of ``root`` (the manifest and the folders), to compare before and after a refusal."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".manifest.lock"}


def test_publish_state_writes_a_readable_manifest_and_appends_history(root: Path) -> None:
    first = publish_state(root, "minilm", {"minilm": ModelEntry("minilm", "4"), "tfidf-lr": ModelEntry("tfidf-lr", "3")},
                          "export", run_id="run-1")
    second = publish_state(root, "minilm", {"minilm": ModelEntry("minilm@5", "5"),
                                            "tfidf-lr": ModelEntry("tfidf-lr", "3")}, "retrain", run_id="run-2",
                           restores=0)
    read = read_manifest(root)
    assert read == second
    assert [h["reason"] for h in read.history] == ["export", "retrain"]
    assert read.history[0]["models"] == {name: {"path": e.path, "version": e.version}
                                         for name, e in first.models.items()}
    assert read.history[-1]["run_id"] == "run-2" and read.history[-1]["champion"] == "minilm"
    assert read.history[-1]["restores"] == 0  # extra fields are kept
    with pytest.raises(ExportError, match="version 5"):  # a folder that does not match: nothing written
        publish_state(root, "minilm", {"minilm": ModelEntry("minilm", "5")}, "retrain")
    assert read_manifest(root) == second


def test_concurrent_publishers_never_lose_a_history_entry(root: Path) -> None:
    models = {"minilm": ModelEntry("minilm", "4")}
    threads = [threading.Thread(target=lambda: [publish_state(root, "minilm", models, "export") for _ in range(10)])
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(read_manifest(root).history) == 40


def test_select_keeps_the_chosen_models_and_deletes_the_others(root: Path, capsys) -> None:
    publish_state(root, "minilm", {"minilm": ModelEntry("minilm@5", "5"), "tfidf-lr": ModelEntry("tfidf-lr", "3")},
                  "retrain")
    assert main(["select", "--exports-dir", str(root), "--keep", "minilm"]) == 0
    assert json.loads(capsys.readouterr().out) == {"champion": "minilm", "models": {"minilm": "5"}}
    manifest = read_manifest(root)
    assert dict(manifest.models) == {"minilm": ModelEntry("minilm@5", "5")}
    assert manifest.history[-1]["reason"] == "select"
    # The other model and the older version of the kept one are gone; the kept folder stays whole.
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["minilm@5"]


def test_select_refuses_to_drop_the_champion_and_changes_nothing(root: Path, capsys) -> None:
    publish_state(root, "tfidf-lr", {"minilm": ModelEntry("minilm", "4"), "tfidf-lr": ModelEntry("tfidf-lr", "3")},
                  "export")
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


def test_select_can_crown_the_best_kept_model_when_the_champion_is_left_out(tmp_path: Path, capsys) -> None:
    """How the images drop mpnet: the champion rule picks among what stays (Dockerfiles' EXPORTS argument)."""
    def scored(accuracy: float, p50: float) -> dict:
        return {"metrics": {"validation_random": {"accuracy": accuracy, "latency_p50_ms": p50}}}

    _export(tmp_path, "mpnet", "mpnet", "2", aliases=["mpnet", "champion"], **scored(0.85, 10.0))
    _export(tmp_path, "minilm", "minilm", "4", **scored(0.83, 0.8))
    _export(tmp_path, "tfidf-lr", "tfidf-lr", "3", **scored(0.78, 0.3))
    publish_state(tmp_path, "mpnet",
                  {n: ModelEntry(n, v) for n, v in (("mpnet", "2"), ("minilm", "4"), ("tfidf-lr", "3"))}, "export")

    assert main(["select", "--exports-dir", str(tmp_path), "--keep", "minilm tfidf-lr"]) == 2
    assert (tmp_path / "mpnet").is_dir()  # refused: nothing deleted
    before = (tmp_path / "manifest.json").read_bytes()
    # --dry-run (operators label an image with it): the same answer, nothing written or deleted.
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
    # A version served already, now asked to be the champion: only the manifest changes, the folder stays as is.
    (exports / "tfidf-lr@3" / "model.onnx").touch()
    stamp = (exports / "tfidf-lr@3" / "model.onnx").stat().st_mtime_ns
    crowned = adopt(exports, other, "3", champion=True)
    assert crowned.champion == "tfidf-lr" and len(crowned.history) == 3
    assert (exports / "tfidf-lr@3" / "model.onnx").stat().st_mtime_ns == stamp
    assert not [p for p in exports.iterdir() if p.name.endswith(".partial")]


def test_adopt_beside_folders_served_without_a_manifest_keeps_them_as_the_first_history_entry(tmp_path: Path) -> None:
    _export(tmp_path, "tfidf-lr", "tfidf-lr", "3", aliases=["champion"])
    adopted = adopt(tmp_path, _bundle(tmp_path / "download" / "minilm"), "7")
    assert adopted.champion == "tfidf-lr" and set(adopted.models) == {"tfidf-lr", "minilm"}
    assert [h["reason"] for h in adopted.history] == ["export", "mlflow"]
    assert adopted.history[0]["models"] == {"tfidf-lr": {"path": "tfidf-lr", "version": "3"}}


def test_a_staging_copy_left_by_a_crash_is_never_served(tmp_path: Path) -> None:
    """``.<name>@<version>.partial`` holds a metadata.json before it is checked: it was found by discover()."""
    from sentiment.exports import discover

    staging = tmp_path / ".minilm@7.partial"
    _bundle(staging)
    assert discover(tmp_path) == []
    adopted = adopt(tmp_path, _bundle(tmp_path / "download" / "tfidf-lr", name="tfidf-lr"), "3")
    assert set(adopted.models) == {"tfidf-lr"} and [h["reason"] for h in adopted.history] == ["mlflow"]


def test_adopt_and_publish_version_refuse_a_file_that_does_not_match_its_sha256(tmp_path: Path) -> None:
    """Both publishers verify the bundle against the sha256 it recorded, before anything is renamed or named."""
    exports = tmp_path / "exports"
    first = adopt(exports, _trained_bundle(tmp_path / "v1"), "1", champion=True)
    before = _served(exports)

    broken = _trained_bundle(tmp_path / "v2")
    graph = onnx.load(str(broken / "model.onnx"))
    graph.doc_string = "replaced after its sha256 was recorded"  # another file, still a graph the service loads
    onnx.save(graph, str(broken / "model.onnx"))
    with pytest.raises(ExportError, match="sha256"):
        adopt(exports, broken, "2", champion=True)
    with pytest.raises(ExportError, match="sha256"):  # the old publish_version re-hashed the files and published it
        publish_version(exports, broken, name="tiny-lr", version="2", run_id="run-2", metadata={})

    assert read_manifest(exports) == first
    assert _served(exports) == before  # no folder renamed, no half copy left
    assert sorted(p.name for p in exports.iterdir() if p.is_dir()) == ["tiny-lr@1"]


def test_publish_version_publishes_the_champion_without_its_fp32_graph(tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    build_classical_export(exports / "tiny-lr", metrics={"validation_random": {"accuracy": 0.95}})  # no manifest yet
    bundle = _trained_bundle(tmp_path / "bundle", accuracy=0.9)

    published = publish_version(exports, bundle, name="tiny-lr", version="8", run_id="run-8",
                                metadata={"metrics": {"validation_random": {"accuracy": 0.91}},
                                          "aliases": ["tiny-lr", "champion"], "mlflow": {"run_id": "run-8"}})

    assert published == read_manifest(exports)
    assert published.champion == "tiny-lr" and dict(published.models) == {"tiny-lr": ModelEntry("tiny-lr@8", "8")}
    # The state served without a manifest is the first history entry: the promotion can be rolled back.
    assert [(h["reason"], h["run_id"]) for h in published.history] == [("export", None), ("retrain", "run-8")]
    assert [h["champion_validation_random"] for h in published.history] == [0.95, 0.91]
    folder = exports / "tiny-lr@8"
    meta = json.loads((folder / METADATA_FILE).read_text())
    assert meta["version"] == "8" and meta["metrics"] == {"validation_random": {"accuracy": 0.91}}
    assert meta["aliases"] == ["tiny-lr", "champion"] and meta["mlflow"] == {"run_id": "run-8"}
    assert not (folder / FP32_FILE).exists() and meta["files"][FP32_FILE] == sha256_file(bundle / FP32_FILE)
    assert load_predictor(folder).version == "8"
    assert best_champion_accuracy(exports, published) == 0.95

    with pytest.raises(ManifestError, match="published already"):  # a run is published once
        publish_version(exports, bundle, name="tiny-lr", version="8", run_id="run-8", metadata={})
    assert read_manifest(exports) == published


def test_a_version_trained_here_is_never_numbered_below_one_served_before(tmp_path: Path) -> None:
    """A fresh clone's registry counts from 1: its retraining of version 4 was published as @1 (decision 0011)."""
    exports = tmp_path / "exports"
    adopt(exports, _trained_bundle(tmp_path / "v4"), "4", champion=True)
    adopt(exports, _trained_bundle(tmp_path / "v2"), "2", champion=True)  # a rollback to an older registry version

    published = publish_version(exports, _trained_bundle(tmp_path / "fresh"), name="tiny-lr", version="1",
                                run_id="run-fresh", metadata={"mlflow": {"model_version": "1"}})

    assert dict(published.models) == {"tiny-lr": ModelEntry("tiny-lr@5", "5")}
    meta = json.loads((exports / "tiny-lr@5" / METADATA_FILE).read_text())
    assert meta["version"] == "5" and meta["mlflow"] == {"model_version": "1"}  # the registry's number stays
    assert load_predictor(exports / "tiny-lr@5").version == "5"
    # A registry version above every one served keeps its number.
    later = publish_version(exports, _trained_bundle(tmp_path / "v9"), name="tiny-lr", version="9", run_id="run-9",
                            metadata={})
    assert later.models["tiny-lr"] == ModelEntry("tiny-lr@9", "9")


def test_new_version_counts_only_the_model_s_own_versions() -> None:
    history = ({"models": {"minilm": {"path": "minilm", "version": "4"}, "mpnet": {"path": "mpnet", "version": "7"}}},)
    manifest = Manifest("mpnet", {"mpnet": ModelEntry("mpnet", "7")}, "2026-12-05T00:00:00Z", history)
    assert new_version(manifest, "minilm", "1") == "5"
    assert new_version(manifest, "minilm", "6") == "6"
    assert new_version(manifest, "tfidf-lr", "1") == "1"
    assert new_version(None, "minilm", "1") == "1"


def test_publish_version_refuses_what_the_service_could_not_load(tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    first = adopt(exports, _trained_bundle(tmp_path / "v1"), "1", champion=True)
    garbage = _bundle(tmp_path / "v2", name="tiny-lr", payload=b"not an onnx graph")  # its sha256 matches
    with pytest.raises(ExportError, match="cannot be loaded"):
        publish_version(exports, garbage, name="tiny-lr", version="2", run_id=None, metadata={})
    assert read_manifest(exports) == first
    assert sorted(p.name for p in exports.iterdir() if p.is_dir()) == ["tiny-lr@1"]


def test_rollback_walks_back_through_the_history(root: Path, capsys) -> None:
    with pytest.raises(ManifestError, match="no manifest"):
        rollback(root)
    publish_state(root, "minilm", {"minilm": ModelEntry("minilm", "4")}, "export")
    publish_state(root, "minilm", {"minilm": ModelEntry("minilm@5", "5")}, "retrain", run_id="run-5")
    publish_state(root, "tfidf-lr", {"minilm": ModelEntry("minilm@5", "5"), "tfidf-lr": ModelEntry("tfidf-lr", "3")},
                  "export")

    rolled = rollback(root)
    assert rolled.history[-1]["restores"] == 1 and rolled.history[-1]["run_id"] == "run-5"
    assert dict(rolled.models) == {"minilm": ModelEntry("minilm@5", "5")}
    assert main(["rollback", "--exports-dir", str(root)]) == 0
    assert json.loads(capsys.readouterr().out)["models"] == {"minilm": {"path": "minilm", "version": "4"}}
    assert [h["reason"] for h in read_manifest(root).history] == ["export", "retrain", "export", "rollback", "rollback"]
    assert main(["rollback", "--exports-dir", str(root)]) == 2
    assert "nothing earlier" in capsys.readouterr().err
    assert main(["show", "--exports-dir", str(root)]) == 0
    assert json.loads(capsys.readouterr().out) == read_manifest(root).to_dict()


def test_rollback_refuses_an_entry_whose_folder_is_gone(root: Path) -> None:
    publish_state(root, "minilm", {"minilm": ModelEntry("minilm", "4")}, "export")
    publish_state(root, "minilm", {"minilm": ModelEntry("minilm@5", "5")}, "retrain")
    before = read_manifest(root)
    (root / "minilm" / METADATA_FILE).unlink()
    with pytest.raises(ManifestError, match="no longer exist"):
        rollback(root)
    assert read_manifest(root) == before
