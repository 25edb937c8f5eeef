"""Settings come from environment variables, with safe defaults and checks."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from api.settings import Settings
from sentiment.settings import PROJECT_ROOT


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


def test_defaults() -> None:
    settings = Settings()
    assert settings.exports_dir == PROJECT_ROOT / "exports"
    assert settings.max_text_chars == 1000
    assert settings.max_body_bytes == 1 << 20
    assert settings.api_keys == ()
    assert settings.enabled_models == ()


def test_environment_variables(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("EXPORTS_DIR", str(tmp_path))
    monkeypatch.setenv("ENABLED_MODELS", "minilm, tfidf-lr")
    monkeypatch.setenv("API_KEYS", "k-one-0123456789,k-two-0123456789")
    monkeypatch.setenv("MAX_BATCH_WAIT_MS", "0")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    settings = Settings()
    assert settings.exports_dir == tmp_path
    assert settings.enabled_models == ("minilm", "tfidf-lr")
    assert [k.get_secret_value() for k in settings.api_keys] == ["k-one-0123456789", "k-two-0123456789"]
    assert settings.max_batch_wait_ms == 0
    assert settings.log_level == "DEBUG"
    assert "k-one" not in repr(settings)  # keys never show in logs or tracebacks


@pytest.mark.parametrize("name, value", [("API_KEYS", "changethis"), ("MAX_BATCH_SIZE", "0"),
                                         ("MAX_BATCH_SIZE", "257"), ("LOG_FORMAT", "xml"), ("ONNX_THREADS", "x")])
def test_rejects_bad_values(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()
