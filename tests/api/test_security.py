"""Optional API keys: X-API-Key or Bearer, constant-time comparison, health routes open."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.main import create_app
from api.security import KeyChecker

KEYS = ("first-key-0123456789", "second-key-0123456789")


@pytest.fixture(scope="module")
def secured(exports_dir, tmp_path_factory):
    from api.settings import Settings

    settings = Settings(exports_dir=exports_dir, api_keys=KEYS, log_format="none")
    with TestClient(create_app(settings)) as client:
        client.app.state.registry.load()
        yield client


@pytest.mark.parametrize("route, payload", [("/v1/predict", {"text": "hi"}), ("/v1/predict/batch", {"texts": ["hi"]}),
                                            ("/predict", {"text": "hi"}), ("/predict_batch", {"texts": ["hi"]})])
def test_predict_routes_need_a_key(secured, route: str, payload: dict) -> None:
    missing = secured.post(route, json=payload)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert secured.post(route, json=payload, headers={"X-API-Key": "wrong"}).status_code == 401
    assert secured.post(route, json=payload, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert secured.post(route, json=payload, headers={"Authorization": f"Basic {KEYS[0]}"}).status_code == 401
    assert secured.post(route, json=payload, headers={"X-API-Key": KEYS[0]}).status_code == 200
    assert secured.post(route, json=payload, headers={"Authorization": f"Bearer {KEYS[1]}"}).status_code == 200


def test_models_route_needs_a_key(secured) -> None:
    assert secured.get("/v1/models").status_code == 401
    assert secured.get("/v1/models", headers={"X-API-Key": KEYS[1]}).status_code == 200


@pytest.mark.parametrize("route", ["/healthz", "/readyz", "/metrics", "/", "/docs", "/openapi.json"])
def test_open_routes_stay_open(secured, route: str) -> None:
    assert secured.get(route).status_code == 200


def test_key_is_checked_before_the_body(secured) -> None:
    """An anonymous caller learns nothing from validation errors."""
    assert secured.post("/v1/predict", json={"text": ""}).status_code == 401


def test_schema_documents_the_keys(secured) -> None:
    schemes = secured.get("/openapi.json").json()["components"]["securitySchemes"]
    assert {"APIKeyHeader", "HTTPBearer"} <= set(schemes)


def test_open_when_no_keys(client) -> None:
    assert client.post("/v1/predict", json={"text": "hi"}).status_code == 200
    assert "securitySchemes" not in client.get("/openapi.json").json().get("components", {})


def test_key_checker() -> None:
    checker = KeyChecker([SecretStr(k) for k in KEYS])
    assert checker.enabled
    assert checker.is_valid(KEYS[0]) and checker.is_valid(KEYS[1])
    for bad in (None, "", KEYS[0][:-1], KEYS[0] + "x", "ключ", "\ud800"):
        assert not checker.is_valid(bad)
    assert not KeyChecker([]).enabled


@pytest.mark.parametrize("route", ["/v1/predict", "/v1/predict/batch", "/predict", "/predict_batch"])
@pytest.mark.parametrize("raw", [b'{"text": ', b"not json", b'{"text": NaN}', b"[" * 2000])
def test_key_is_checked_before_malformed_json(secured, route: str, raw: bytes) -> None:
    """Audit finding 4: a keyless request with malformed JSON got a 422 with parser details."""
    response = secured.post(route, content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 401, response.text
    assert "loc" not in response.text


def test_key_is_checked_before_the_content_type(secured) -> None:
    response = secured.post("/v1/predict", content=b"hi", headers={"Content-Type": "text/plain"})
    assert response.status_code == 401


def test_unknown_paths_need_a_key_too(secured) -> None:
    assert secured.get("/v2/anything").status_code == 401
    assert secured.get("/v2/anything", headers={"X-API-Key": KEYS[0]}).status_code == 404
