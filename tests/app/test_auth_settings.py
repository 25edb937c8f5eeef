"""The maintainer lock and the settings / secrets reader."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import settings as app_settings
from app.auth import LoginGuard


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_login_guard_delays_after_wrong_attempts_and_resets_on_success() -> None:
    clock, slept = Clock(), []
    guard = LoginGuard(base_delay_s=2, max_delay_s=5, clock=clock, sleep=slept.append)
    assert not guard.check("anything", None).ok
    assert guard.check("right-secret-123", "right-secret-123").ok
    assert guard.check("wrong", "right-secret-123").message == "Wrong secret."
    assert slept == [2]
    blocked = guard.check("right-secret-123", "right-secret-123")  # even the right one waits
    assert not blocked.ok and "try again in 2 s" in blocked.message
    clock.now += 2.1
    assert guard.check("wrong", "right-secret-123").message == "Wrong secret."
    clock.now += 3.9
    assert not guard.check("right-secret-123", "right-secret-123").ok  # 4 s after the second failure
    clock.now += 0.2
    guard.check("wrong", "right-secret-123")
    clock.now += 4.9
    assert not guard.check("x", "right-secret-123").ok  # capped at 5 s, still blocked at 4.9 s
    clock.now += 0.2
    assert guard.check("right-secret-123", "right-secret-123").ok
    assert guard._failures == 0


def test_defaults_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in ("FEEDBACK_DB", "EXPORTS_DIR", "TELEMETRY_INCLUDE_TEXT", "ALERT_THRESHOLD"):
        monkeypatch.delenv(key, raising=False)
    defaults = app_settings.AppSettings()
    assert defaults.feedback_db == app_settings.PROJECT_ROOT / "feedback.db"
    assert defaults.runs_dir == app_settings.PROJECT_ROOT / "exports" / "runs"
    assert not defaults.telemetry_include_text
    monkeypatch.setenv("FEEDBACK_DB", str(tmp_path / "x.db"))
    monkeypatch.setenv("telemetry_include_text", "1")
    monkeypatch.setenv("ALERT_THRESHOLD", "5")
    custom = app_settings.AppSettings()
    assert (custom.feedback_db, custom.telemetry_include_text, custom.alert_threshold) == (tmp_path / "x.db", True, 5)


def test_secrets_come_from_the_environment_and_placeholders_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAINTAINER_SECRET", "  a-long-enough-secret  ")
    assert app_settings.maintainer_secret() == "a-long-enough-secret"
    monkeypatch.setenv("MAINTAINER_SECRET", "changethis")
    assert app_settings.maintainer_secret() is None
    monkeypatch.setenv("APPLICATIONINSIGHTS_CONNECTION_STRING", "InstrumentationKey=abc")
    assert app_settings.connection_string() == "InstrumentationKey=abc"


def test_secrets_fall_back_to_streamlit_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    import streamlit as st
    from streamlit.runtime.secrets import Secrets

    monkeypatch.delenv("MAINTAINER_SECRET", raising=False)
    fake = Secrets()
    fake._secrets = {"MAINTAINER_SECRET": "from-secrets-toml"}
    monkeypatch.setattr(st, "secrets", fake)
    assert app_settings.maintainer_secret() == "from-secrets-toml"
    empty = Secrets()
    empty._secrets = {}
    monkeypatch.setattr(st, "secrets", empty)
    assert app_settings.maintainer_secret() is None


def test_only_the_settings_module_reads_the_secrets() -> None:
    root = Path(app_settings.__file__).parent
    readers = [p.relative_to(root).as_posix() for p in root.rglob("*.py")
               if any(k in p.read_text() for k in ('"MAINTAINER_SECRET"', '"APPLICATIONINSIGHTS_CONNECTION_STRING"',
                                                   "st.secrets", "os.environ.get"))]
    assert readers == ["settings.py"]
