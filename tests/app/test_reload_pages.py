"""The pages follow a live reload: they read the registry the mounted API swaps, on every run.

One real tiny export published through a manifest; a second version is published and swapped in by the
registry's reload, as the API's watcher or admin route does, without a new process or a cleared cache.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app import services
from app.settings import get_settings
from sentiment.exports import METADATA_FILE
from sentiment.manifest import ModelEntry
from sentiment.publish import publish_state

MAIN = Path(__file__).resolve().parents[2] / "app" / "entry" / "main.py"
MODEL = "tiny-tfidf"  # the export of tests/app/conftest.py


def _version(source: Path, target: Path, version: str) -> None:
    shutil.copytree(source, target)
    meta = json.loads((target / METADATA_FILE).read_text())
    meta["version"] = version
    (target / METADATA_FILE).write_text(json.dumps(meta))


def test_the_pages_show_the_version_swapped_in(app_env: Path, classical_export: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    root = app_env / "served"
    _version(classical_export / MODEL, root / f"{MODEL}@1", "1")
    publish_state(root, MODEL, {MODEL: ModelEntry(f"{MODEL}@1", "1")}, "export")
    monkeypatch.setenv("EXPORTS_DIR", str(root))
    get_settings.cache_clear()

    at = AppTest.from_file(str(MAIN), default_timeout=60).run()
    at.text_area(key="tweet_text").input("what a lovely flight, great crew")
    at = at.button(key="predict").click().run()
    assert any(f"{MODEL} v1" in c.value for c in at.caption)

    _version(classical_export / MODEL, root / f"{MODEL}@2", "2")
    publish_state(root, MODEL, {MODEL: ModelEntry(f"{MODEL}@2", "2")}, "retrain")
    registry = services.model_registry()  # the one the mounted API serves and reloads
    assert asyncio.run(registry.reload()).outcome == "swapped"

    at = at.button(key="predict").click().run()
    assert not at.exception, at.exception
    assert any(f"{MODEL} v2" in c.value for c in at.caption)
    at.switch_page("../pages/about.py").run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert list(table["version"]) == ["2"] and list(table["champion"]) == [True]
