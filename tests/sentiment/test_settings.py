"""One settings base: every deployable reads the shared variables the same way, and the docs table is generated."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from api.settings import Settings
from app.settings import AppSettings
from sentiment.settings import PROJECT_ROOT, EngineSettings, ProjectSettings
from training import config

ROOT = Path(__file__).resolve().parents[2]
SHARED = ("PROJECT_ROOT", "EXPORTS_DIR", "DEFAULT_MODEL", "FEEDBACK_DB", "MLFLOW_TRACKING_URI")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*SHARED, "SENTIMENT140_DIR", "ARTIFACTS_DIR"):
        monkeypatch.delenv(name, raising=False)


def test_every_deployable_subclasses_the_base() -> None:
    for cls in (Settings, AppSettings, config.TrainingSettings, config.RetrainSettings, EngineSettings):
        assert issubclass(cls, ProjectSettings)


def test_shared_variables_are_read_once_the_same_way(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EXPORTS_DIR", str(tmp_path / "exports"))
    monkeypatch.setenv("DEFAULT_MODEL", "tfidf-lr")
    monkeypatch.setenv("FEEDBACK_DB", str(tmp_path / "f.db"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    for settings in (Settings(), AppSettings(), config.settings(), config.retrain_settings()):
        assert settings.exports_dir == tmp_path / "exports"
        assert settings.default_model == "tfidf-lr"
        assert settings.feedback_db == tmp_path / "f.db"
        assert settings.mlflow_tracking_uri == "http://mlflow:5000"
    assert config.exports_dir() == tmp_path / "exports" and config.feedback_db() == tmp_path / "f.db"


def test_paths_default_to_the_project_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert Settings().exports_dir == PROJECT_ROOT / "exports"
    assert config.data_dir() == PROJECT_ROOT.parent / "shared" / "data" / "sentiment140"
    monkeypatch.setenv("PROJECT_ROOT", str(tmp_path))
    assert AppSettings().exports_dir == tmp_path / "exports"
    assert AppSettings().mlflow_tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert config.artifacts_dir() == tmp_path / "artifacts"


def test_retrain_settings_take_short_names_and_refuse_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETRAIN_FAMILY", "tfidf-lr")
    settings = config.retrain_settings(time_budget_min=5, feedback_oversample=None)
    assert (settings.family, settings.time_budget_min, settings.feedback_oversample) == ("tfidf-lr", 5, 5)
    monkeypatch.setenv("RETRAIN_HOLDOUT_SHARE", "1.5")
    with pytest.raises(SystemExit, match="RETRAIN_HOLDOUT_SHARE"):
        config.retrain_settings()


def test_the_docs_table_is_generated_from_the_classes() -> None:
    """docs/configuration.md's table is what docs/settings_table.py makes now: docs and code cannot disagree."""
    script = runpy.run_path(str(ROOT / "docs" / "settings_table.py"))
    document = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert script["render"](document) == document, "run `python docs/settings_table.py` and commit the result"
    table = script["table"]()
    for cls in (Settings, AppSettings, config.TrainingSettings, config.RetrainSettings):
        for name, info in cls.model_fields.items():
            variable = info.validation_alias if isinstance(info.validation_alias, str) else name.upper()
            assert f"| `{variable}` |" in table
