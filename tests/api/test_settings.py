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


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.7", "api.example.org"])
def test_no_key_on_a_public_address_refuses_to_start(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    """The images listen on 0.0.0.0: with an empty API_KEYS they answered anyone; now they say what to set."""
    monkeypatch.setenv("UVICORN_HOST", host)
    with pytest.raises(ValidationError, match="API_KEYS.*ALLOW_ANONYMOUS_API"):
        Settings()
    monkeypatch.setenv("API_KEYS", "a-real-key-0123456789")
    assert Settings().api_keys


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "[::1]", "localhost"])
def test_loopback_may_stay_open_and_a_public_address_only_by_choice(monkeypatch: pytest.MonkeyPatch,
                                                                    host: str) -> None:
    monkeypatch.setenv("UVICORN_HOST", host)
    assert Settings().api_keys == ()
    monkeypatch.setenv("UVICORN_HOST", "0.0.0.0")
    monkeypatch.setenv("ALLOW_ANONYMOUS_API", "true")
    assert Settings().allow_anonymous_api


def test_the_launcher_tells_the_settings_the_address_it_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import os

    import api.serve

    # Set first, so that monkeypatch puts back what the launcher writes (it writes os.environ, as uvicorn reads it).
    monkeypatch.setenv("UVICORN_HOST", "127.0.0.1")
    monkeypatch.setenv("ONNX_THREADS", "1")
    monkeypatch.setenv("WEB_CONCURRENCY", "1")
    seen: dict[str, str] = {}
    command = importlib.import_module("uvicorn.main").main  # the click command uvicorn's CLI runs
    monkeypatch.setattr(command, "main", lambda **_: seen.update(host=os.environ["UVICORN_HOST"]))
    api.serve.main(["--host", "0.0.0.0", "--port", "8000"])
    assert seen == {"host": "0.0.0.0"}
