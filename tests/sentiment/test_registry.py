"""The registry loads every export side by side, picks the default, skips broken exports, warms up."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from pathlib import Path

import pytest

from sentiment.exports import METADATA_FILE
from sentiment.predictor import load_predictor
from sentiment.registry import ModelRegistry, NotReadyError, UnknownModelError


def _copy_exports(src: Path, dst: Path, edit: dict[str, dict] | None = None) -> Path:
    shutil.copytree(src, dst)
    for name, fields in (edit or {}).items():
        path = dst / name / METADATA_FILE
        meta = json.loads(path.read_text())
        meta.update(fields)
        path.write_text(json.dumps(meta))
    return dst


def test_loads_every_export_and_picks_the_champion(registry_factory) -> None:
    registry = registry_factory()
    assert registry.state == "not_started"
    registry.load()
    assert registry.ready
    assert sorted(m.name for m in registry.models()) == ["tiny-bert", "tiny-lr"]
    # tiny-bert is aliased champion although tiny-lr has the better validation accuracy.
    assert registry.default_name == "tiny-bert"
    assert registry.get().name == "tiny-bert"
    assert registry.get("tiny-lr").predictor.family == "classical"
    assert registry.ready_seconds is not None


def test_default_model_setting_wins(registry_factory) -> None:
    registry = registry_factory(default_model="tiny-lr")
    registry.load()
    assert registry.default_name == "tiny-lr"


def test_without_champion_the_most_accurate_is_default(exports_dir: Path, tmp_path: Path, settings_factory) -> None:
    root = _copy_exports(exports_dir, tmp_path / "exports", {"tiny-bert": {"aliases": []}})
    registry = ModelRegistry(settings_factory(root))
    registry.load()
    assert registry.default_name == "tiny-lr"


def test_enabled_models_filter(registry_factory) -> None:
    registry = registry_factory(enabled_models=("tiny-lr",))
    registry.load()
    assert [m.name for m in registry.models()] == ["tiny-lr"]
    assert registry.default_name == "tiny-lr"


def test_unknown_default_or_enabled_model_fails(registry_factory) -> None:
    for overrides in ({"default_model": "nope"}, {"enabled_models": ("nope",)}):
        registry = registry_factory(**overrides)
        registry.load()
        assert registry.state == "failed"
        assert "nope" in (registry.error or "")
        with pytest.raises(NotReadyError):
            registry.get()


def test_corrupt_export_is_skipped_and_reported(exports_dir: Path, tmp_path: Path, settings_factory) -> None:
    root = _copy_exports(exports_dir, tmp_path / "exports")
    with (root / "tiny-lr" / "model.onnx").open("ab") as handle:
        handle.write(b"tampered")
    registry = ModelRegistry(settings_factory(root))
    registry.load()
    assert [m.name for m in registry.models()] == ["tiny-bert"]
    assert "sha256" in registry.skipped["tiny-lr"]


def test_no_exports_means_failed_not_crashed(tmp_path: Path, settings_factory) -> None:
    for root in (tmp_path / "missing", tmp_path):
        registry = ModelRegistry(settings_factory(root))
        registry.load()
        assert registry.state == "failed"
        assert "EXPORTS_DIR" in (registry.error or "")


def test_unknown_model(registry_factory) -> None:
    registry = registry_factory()
    registry.load()
    with pytest.raises(UnknownModelError, match="available"):
        registry.get("bert-large")


def test_not_ready_before_load(registry_factory) -> None:
    registry = registry_factory()
    with pytest.raises(NotReadyError, match="not started"):
        registry.get()


def test_concurrent_starts_load_once(registry_factory) -> None:
    calls: list[Path] = []
    gate = threading.Event()

    def slow_loader(folder: Path, threads: int | None = None):
        gate.wait(5)
        calls.append(folder)
        return load_predictor(folder, threads=threads)

    registry = registry_factory(loader=slow_loader)

    async def scenario() -> None:
        waiters = [asyncio.create_task(registry.wait_ready(10)) for _ in range(5)]
        await asyncio.sleep(0.05)
        assert registry.state == "loading"
        gate.set()
        await asyncio.gather(*waiters)

    asyncio.run(scenario())
    assert registry.ready
    assert len(calls) == 2  # one load per export, not one per waiter


def test_wait_ready_times_out_with_not_ready(registry_factory) -> None:
    gate = threading.Event()

    def blocked_loader(folder: Path, threads: int | None = None):
        gate.wait(5)
        return load_predictor(folder, threads=threads)

    registry = registry_factory(loader=blocked_loader)

    async def scenario() -> None:
        with pytest.raises(NotReadyError, match="loading"):
            await registry.wait_ready(0.05)
        gate.set()
        await registry.wait_ready(10)

    asyncio.run(scenario())
    assert registry.ready


def test_an_export_cannot_name_files_outside_its_folder(tmp_path) -> None:
    from sentiment.exports import ExportError, verify_file

    meta = {"name": "x", "files": {"../secret": "0" * 64, "/etc/passwd": "0" * 64}}
    for name in meta["files"]:
        with pytest.raises(ExportError, match="outside the export folder"):
            verify_file(tmp_path, meta, name)


def test_a_champion_left_out_by_enabled_models_is_not_a_failure(exports_dir: Path, tmp_path: Path,
                                                                  settings_factory) -> None:
    """With a manifest naming tiny-bert champion, ENABLED_MODELS=tiny-lr serves tiny-lr: a choice, not a breakage."""
    from sentiment.manifest import ModelEntry
    from sentiment.publish import publish_state

    root = _copy_exports(exports_dir, tmp_path / "exports")
    publish_state(root, "tiny-bert", {"tiny-bert": ModelEntry("tiny-bert", "1"),
                                      "tiny-lr": ModelEntry("tiny-lr", "1")}, "export")
    registry = ModelRegistry(settings_factory(root, enabled_models=("tiny-lr",)))
    registry.load()
    assert registry.ready and registry.default_name == "tiny-lr"
