"""The MLflow client's own credentials (``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``, or
``MLFLOW_TRACKING_TOKEN``), which the product holds to read a tracking server that asks for a user (the Compose
stack's MLflow with basic-auth), never show: not in the Compare page's errors, however the message quotes them."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest

from app import runs
from app.settings import get_settings, redact_text
from tests.app.test_pages import fakes, open_page, rendered_text  # noqa: F401  (fakes: a fixture)

USER, PASSWORD, TOKEN = "reader", "r3ader pa55/word+x", "tok-5ecret-value"
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


@pytest.fixture
def client_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", USER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", TOKEN)


@pytest.mark.parametrize("message", [
    f"InvalidHeader: Invalid return character or leading space in header: Authorization: 'Basic {BASIC}'",
    f"request headers {{'Authorization': 'Basic {BASIC}', 'User-Agent': 'mlflow-python-client'}}",
    f"login failed for {USER} with password {PASSWORD}",
    f"GET /api/2.0/mlflow/users/get?username={USER}&secret={quote(PASSWORD, safe='')}",
    f"{{'Authorization': 'Bearer {TOKEN}'}}",
], ids=["invalid-header", "headers-dict", "plain", "percent-encoded", "bearer"])
def test_the_mlflow_clients_credentials_never_survive_redaction(client_credentials: None, message: str) -> None:
    shown = redact_text(message)
    for secret in (PASSWORD, quote(PASSWORD, safe=""), BASIC, TOKEN):
        assert secret not in shown
    assert "***" in shown


def test_any_quoted_authorization_header_is_hidden() -> None:
    shown = redact_text("{'Authorization': 'Basic dXNlcjpzb21lLXBhc3N3b3Jk'} and Authorization: Bearer abc.def-1")
    assert shown == "{'Authorization': 'Basic ***'} and Authorization: Bearer ***"
    assert redact_text("basic information about the run") == "basic information about the run"


def test_the_compare_page_never_shows_the_mlflow_password(fakes: dict, client_credentials: None,  # noqa: F811
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    get_settings.cache_clear()

    def refused(tracking_uri: str) -> None:
        raise ConnectionError(f"headers={{'Authorization': 'Basic {BASIC}'}} user {USER} password {PASSWORD}")

    monkeypatch.setattr(runs, "search_runs", refused)
    compare = open_page("compare.py")
    assert "Could not read the runs from MLflow at http://mlflow:5000" in compare.error[0].value
    text = rendered_text(compare)
    assert PASSWORD not in text and BASIC not in text
