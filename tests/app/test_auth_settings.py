"""The maintainer lock and the settings / secrets reader."""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path

import pytest
from pydantic import ValidationError

from app import settings as app_settings
from app.auth import LoginGuard, client_address

CLIENT = "203.0.113.9"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_login_guard_delays_after_wrong_attempts_and_resets_on_success() -> None:
    clock, slept = Clock(), []
    guard = LoginGuard(base_delay_s=2, max_delay_s=5, clock=clock, sleep=slept.append)
    assert not guard.check("anything", None, client=CLIENT).ok
    assert guard.check("right-secret-123", "right-secret-123", client=CLIENT).ok
    assert guard.check("wrong", "right-secret-123", client=CLIENT).message == "Wrong secret."
    assert slept == [2]
    blocked = guard.check("right-secret-123", "right-secret-123", client=CLIENT)  # even the right one waits
    assert not blocked.ok and "try again in 2 s" in blocked.message
    clock.now += 2.1
    assert guard.check("wrong", "right-secret-123", client=CLIENT).message == "Wrong secret."
    clock.now += 3.9
    assert not guard.check("right-secret-123", "right-secret-123", client=CLIENT).ok  # 4 s after the second failure
    clock.now += 0.2
    guard.check("wrong", "right-secret-123", client=CLIENT)
    clock.now += 4.9
    assert not guard.check("x", "right-secret-123", client=CLIENT).ok  # capped at 5 s, still blocked at 4.9 s
    clock.now += 0.2
    assert guard.check("right-secret-123", "right-secret-123", client=CLIENT).ok
    guard.check("wrong", "right-secret-123", client=CLIENT)
    assert "try again in 2 s" in guard.check("x", "right-secret-123", client=CLIENT).message  # the count restarted


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


RIGHT = "right-secret-123"


def test_a_guessing_client_is_slowed_while_another_logs_in_at_once() -> None:
    clock = Clock()
    guard = LoginGuard(base_delay_s=2, max_delay_s=60, clock=clock, sleep=lambda _: None)
    for _ in range(7):
        guard.check("guess", RIGHT, client="203.0.113.9")
        clock.now += 1
    assert "try again in" in guard.check(RIGHT, RIGHT, client="203.0.113.9").message
    assert guard.check(RIGHT, RIGHT, client="198.51.100.7").ok
    # an IPv6 guesser owns a whole /64, often a /56: its addresses share one delay, another site's do not
    guard.check("guess", RIGHT, client="2001:db8:1:2::1")
    assert not guard.check(RIGHT, RIGHT, client="2001:db8:1:2::ffff").ok
    assert not guard.check(RIGHT, RIGHT, client="2001:db8:1:3::1").ok  # the same /56
    assert guard.check(RIGHT, RIGHT, client="2001:db8:2:3::1").ok


def test_the_guard_remembers_a_bounded_number_of_clients_for_a_bounded_time() -> None:
    clock = Clock()
    guard = LoginGuard(base_delay_s=2, max_delay_s=60, max_clients=2, forget_after_s=600, clock=clock,
                       sleep=lambda _: None)
    for client in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        guard.check("guess", RIGHT, client=client)
    assert guard.check(RIGHT, RIGHT, client="192.0.2.1").ok  # the oldest was dropped to make room
    assert not guard.check(RIGHT, RIGHT, client="192.0.2.3").ok
    for _ in range(4):  # 2, 4, 8, 16 s
        clock.now += 61
        guard.check("guess", RIGHT, client="192.0.2.3")
    clock.now += 601
    guard.check("guess", RIGHT, client="192.0.2.3")
    assert "try again in 2 s" in guard.check(RIGHT, RIGHT, client="192.0.2.3").message  # counting from one again


def test_many_addresses_of_one_ipv6_site_cannot_guess_freely() -> None:
    """Audit: 20,000 wrong secrets from 20,000 /64s of one /48 were all answered, none refused."""
    clock = Clock()
    guard = LoginGuard(base_delay_s=2, max_delay_s=60, max_clients=10_000, clock=clock, sleep=lambda _: None)
    answered = 0
    for i in range(20_000):
        site, subnet = divmod(i, 256)  # the /48 2001:db8:7::/48 holds 256 /56s of 256 /64s each
        result = guard.check("guess", RIGHT, client=f"2001:db8:7:{site:02x}{subnet:02x}::1")
        answered += result.message == "Wrong secret."
        clock.now += 0.01
    assert answered <= 100  # the global budget of wrong secrets per hour, whatever the spread of addresses
    assert "on this page lately" in guard.check(RIGHT, RIGHT, client="198.51.100.7").message
    clock.now += 3600
    assert guard.check(RIGHT, RIGHT, client="198.51.100.7").ok  # the window moved on


def test_a_site_shares_its_delay_across_its_64s() -> None:
    clock = Clock()
    guard = LoginGuard(base_delay_s=2, max_delay_s=60, clock=clock, sleep=lambda _: None)
    for subnet in range(5):  # five /64s of one /56, one guess each: 2, 4, 8, 16, 32 s for the /56
        clock.now += 61
        guard.check("guess", RIGHT, client=f"2001:db8:9:{subnet:x}::1")
    assert "try again in 32 s" in guard.check(RIGHT, RIGHT, client="2001:db8:9:ff::1").message


@pytest.mark.parametrize("peer, forwarded_for, trusted, expected", [
    ("203.0.113.9", [], "", "203.0.113.9"),
    ("203.0.113.9", ["192.0.2.1"], "", "203.0.113.9"),  # nobody trusted: the header is the visitor's word
    ("203.0.113.9", ["192.0.2.1"], "10.0.0.0/8", "203.0.113.9"),  # the peer is not the proxy
    ("10.0.0.2", ["192.0.2.1"], "10.0.0.0/8", "192.0.2.1"),
    ("10.0.0.2", ["198.51.100.1, 192.0.2.1"], "10.0.0.0/8", "192.0.2.1"),  # the leftmost was typed by the visitor
    ("10.0.0.2", ["192.0.2.1, 10.0.0.7"], "10.0.0.0/8", "192.0.2.1"),  # two proxies of ours
    ("10.0.0.2", ["192.0.2.1", "10.0.0.7"], "10.0.0.0/8", "192.0.2.1"),  # the header repeated
    ("10.0.0.2", ["192.0.2.1:52814"], "10.0.0.0/8", "192.0.2.1"),  # a proxy that adds the port
    ("10.0.0.2", ["[2001:db8::1]:52814"], "10.0.0.0/8", "2001:db8::1"),
    ("10.0.0.2", ["not-an-address"], "10.0.0.0/8", "10.0.0.2"),
    ("10.0.0.2", [], "10.0.0.0/8", "10.0.0.2"),
    (None, ["192.0.2.1"], "", "127.0.0.1"),  # Streamlit reports a loopback peer as None
    (None, ["192.0.2.1"], "127.0.0.1", "192.0.2.1"),  # a reverse proxy on the same host
    ("::ffff:10.0.0.2", ["192.0.2.1"], "10.0.0.0/8", "192.0.2.1"),
])
def test_forwarded_for_counts_only_from_a_trusted_proxy(peer: str | None, forwarded_for: list[str], trusted: str,
                                                        expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTED_PROXIES", trusted)
    proxies = app_settings.AppSettings().trusted_proxies
    assert client_address(peer, forwarded_for, proxies) == expected


def test_trusted_proxies_and_session_ttl_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("TRUSTED_PROXIES", "MAINTAINER_SESSION_TTL_MIN"):
        monkeypatch.delenv(key, raising=False)
    defaults = app_settings.AppSettings()
    assert (defaults.trusted_proxies, defaults.maintainer_session_ttl_min) == ((), 30)
    monkeypatch.setenv("TRUSTED_PROXIES", " 10.0.0.1, 192.168.0.0/16,,fd00::/8 ")
    monkeypatch.setenv("MAINTAINER_SESSION_TTL_MIN", "5")
    custom = app_settings.AppSettings()
    assert custom.trusted_proxies == (ip_network("10.0.0.1"), ip_network("192.168.0.0/16"), ip_network("fd00::/8"))
    assert custom.maintainer_session_ttl_min == 5
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.300")
    with pytest.raises(ValidationError, match="TRUSTED_PROXIES"):
        app_settings.AppSettings()


@pytest.mark.parametrize("uri, shown", [
    ("sqlite:///tmp/mlflow.db", "sqlite:///tmp/mlflow.db"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("databricks", "databricks"),
    ("https://alice:pa55@mlflow.example:8443/base", "https://***@mlflow.example:8443/base"),
    ("https://token-only@mlflow.example", "https://***@mlflow.example"),
    ("postgresql://bob:p%40ss@db.example/mlflow", "postgresql://***@db.example/mlflow"),
    ("postgresql://bob:p@ss@db.example/mlflow", "postgresql://***@db.example/mlflow"),  # an unescaped @
    ("https://mlflow.example/?token=abc&workspace=7&Password=x&sig=y",
     "https://mlflow.example/?token=***&workspace=7&Password=***&sig=***"),
    ("mysql://u:p@db.example/mlflow?ssl_ca=/ca.pem&api_key=k",
     "mysql://***@db.example/mlflow?ssl_ca=/ca.pem&api_key=***"),
])
def test_redact_uri_hides_userinfo_and_credential_parameters(uri: str, shown: str) -> None:
    assert app_settings.redact_uri(uri) == shown


def test_a_failed_seeding_never_logs_the_tracking_uris_password(monkeypatch, caplog) -> None:
    from app import runs, services

    def fail(runs_dir, tracking_uri):
        raise RuntimeError("no server")

    monkeypatch.setattr(runs, "seed_from_records", fail)
    services.seed_runs.clear()
    with caplog.at_level("ERROR"):
        assert services.seed_runs("https://alice:s3cret-pass@mlflow.example", "exports/runs") == []
    assert caplog.records and "s3cret-pass" not in caplog.text


def test_the_feedback_limiter_counts_per_client_site_and_overall() -> None:
    from app.auth import RateLimiter

    clock = Clock()
    limiter = RateLimiter(per_client=3, overall=5, window_s=3600, clock=clock)
    assert [limiter.allow("198.51.100.7") for _ in range(3)] == [0, 0, 0]
    assert limiter.allow("198.51.100.7") == pytest.approx(3600)  # its fourth in the hour waits for the first
    assert limiter.allow("2001:db8:5:1::1") == 0 and limiter.allow("2001:db8:5:2::1") == 0  # another client, one /56
    assert limiter.allow("2001:db8:5:3::1") == pytest.approx(3600)  # that /56 had 2, the whole page 5
    clock.now += 3601
    assert limiter.allow("198.51.100.7") == 0  # the window moved on
