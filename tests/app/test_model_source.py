"""The product follows an MLflow alias: the version it names is published into EXPORTS_DIR, again when it moves."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from api.settings import Settings as ApiSettings
from app.model_source import AliasFollower, parse_alias_uri
from app.settings import AppSettings
from sentiment.manifest import ModelEntry, read_manifest
from sentiment.registry import ModelRegistry

MODEL = "tiny-tfidf"  # the export of tests/app/conftest.py


def test_alias_uris_are_parsed_or_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FOLLOW_MODEL_URI", raising=False)
    assert parse_alias_uri("models:/tweet-sentiment@champion") == ("tweet-sentiment", "champion")
    for wrong in ("models:/tweet-sentiment/3", "runs:/abc/model", "models:/@champion"):
        with pytest.raises(ValueError, match="FOLLOW_MODEL_URI"):
            parse_alias_uri(wrong)
    assert AliasFollower.from_settings(AppSettings()) is None  # off unless FOLLOW_MODEL_URI is set


def test_the_follower_publishes_the_version_the_alias_names(classical_export: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    from training import config, tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    versions = [tracking.log_model_run(name=MODEL, family="classical", params={}, evaluations={}, data_hashes={},
                                       bundle=classical_export / MODEL)[1] for _ in range(2)]
    client = mlflow.MlflowClient(uri)
    client.set_registered_model_alias(config.REGISTERED_MODEL, "champion", versions[0])
    exports = tmp_path / "exports"
    follower = AliasFollower(f"models:/{config.REGISTERED_MODEL}@champion", uri, exports, interval_s=0.05)

    follower.start()  # checks at once
    try:
        for _ in range(600):
            if read_manifest(exports) is not None:
                break
            time.sleep(0.05)
    finally:
        follower.stop()
    assert dict(read_manifest(exports).models) == {MODEL: ModelEntry(f"{MODEL}@{versions[0]}", versions[0])}
    assert follower.check() is None  # the alias did not move

    client.set_registered_model_alias(config.REGISTERED_MODEL, "champion", versions[1])
    assert follower.check() == versions[1]
    manifest = read_manifest(exports)
    assert manifest.champion == MODEL and manifest.models[MODEL].version == versions[1]
    registry = ModelRegistry(ApiSettings(exports_dir=exports, log_format="none", api_keys=()))
    registry.load()
    assert registry.get().version == versions[1]
