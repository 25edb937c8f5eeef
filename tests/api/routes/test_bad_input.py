"""Every bad input gets a clear 4xx (never a 5xx) on every route that takes a body."""

from __future__ import annotations

import json

import pytest

SINGLE = ["/v1/predict", "/predict"]
BATCH = ["/v1/predict/batch", "/predict_batch"]
JSON = {"Content-Type": "application/json"}


def _post(client, route: str, payload: object):
    return client.post(route, content=json.dumps(payload).encode(), headers=JSON)


@pytest.mark.parametrize("route", SINGLE)
@pytest.mark.parametrize("payload", [
    {"text": ""}, {"text": "   "}, {"text": "\n\t "}, {"text": "\u200b\u200b"}, {"text": "a" * 1001},
    {"text": 42}, {"text": None}, {"text": ["a"]}, {"text": {"a": 1}}, {"text": True}, {}, {"texts": ["a"]},
    [], "text", 3, None,
])
def test_bad_single_payloads(client, route: str, payload: object) -> None:
    response = _post(client, route, payload)
    assert response.status_code == 422, response.text
    assert "detail" in response.json()


@pytest.mark.parametrize("route", BATCH)
@pytest.mark.parametrize("payload", [
    {"texts": ["ok"] * 257}, {"texts": ["ok", ""]}, {"texts": ["ok", "   "]}, {"texts": ["ok", "b" * 1001]},
    {"texts": "not a list"}, {"texts": [1, 2]}, {"texts": [None]}, {"text": "a"}, {},
])
def test_bad_batch_payloads(client, route: str, payload: object) -> None:
    response = _post(client, route, payload)
    assert response.status_code == 422, response.text


def test_empty_v1_batch_is_rejected(client) -> None:
    assert _post(client, "/v1/predict/batch", {"texts": []}).status_code == 422


def test_length_error_names_the_text(client) -> None:
    detail = _post(client, "/v1/predict/batch", {"texts": ["ok", "b" * 1001]}).json()["detail"]
    assert detail[0]["loc"] == ["body", "texts", 1] and detail[0]["type"] == "string_too_long"


def test_unknown_field_and_bad_model_name_on_v1(client) -> None:
    assert _post(client, "/v1/predict", {"text": "a", "lang": "en"}).status_code == 422
    assert _post(client, "/v1/predict", {"text": "a", "model": "../etc/passwd"}).status_code == 422
    assert _post(client, "/v1/predict", {"text": "a", "model": ""}).status_code == 422


@pytest.mark.parametrize("route", ["/v1/predict", "/v1/predict/batch"])
def test_unknown_model_is_404(client, route: str) -> None:
    payload = {"text": "a", "model": "bert-large"} if route == "/v1/predict" else {"texts": ["a"], "model": "x"}
    response = _post(client, route, payload)
    assert response.status_code == 404
    assert "available" in response.json()["detail"]


@pytest.mark.parametrize("route", SINGLE + BATCH)
@pytest.mark.parametrize("raw", [b'{"text": ', b"{'text': 'single quotes'}", b"not json", b'{"text": "a"} trailing',
                                 b'{"text": NaN}'])
def test_malformed_json(client, route: str, raw: bytes) -> None:
    response = client.post(route, content=raw, headers=JSON)
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("route", SINGLE + BATCH)
def test_invalid_utf8_is_a_client_error(client, route: str) -> None:
    response = client.post(route, content=b'{"text": "\xff\xfe"}', headers=JSON)
    assert 400 <= response.status_code < 500


@pytest.mark.parametrize("route", SINGLE + BATCH)
@pytest.mark.parametrize("headers", [{"Content-Type": "text/plain"}, {"Content-Type": "application/xml"},
                                     {"Content-Type": "application/x-www-form-urlencoded"}, {}])
def test_wrong_content_type_is_415(client, route: str, headers: dict[str, str]) -> None:
    key = "texts" if route in BATCH else "text"
    body = json.dumps({key: ["a"] if key == "texts" else "a"}).encode()
    response = client.post(route, content=body, headers=headers)
    assert response.status_code == 415, response.text


@pytest.mark.parametrize("route", SINGLE + BATCH)
def test_body_over_limit_is_413_with_content_length(client, route: str) -> None:
    body = json.dumps({"text": "a" * (1 << 20)}).encode()
    response = client.post(route, content=body, headers=JSON)
    assert response.status_code == 413


def test_body_over_limit_is_413_when_streamed_without_length(client) -> None:
    """Chunked upload, no Content-Length: the limit is enforced on the bytes as they arrive."""

    def chunks():
        yield b'{"text": "'
        for _ in range(40):
            yield b"a" * 50_000
        yield b'"}'

    response = client.post("/v1/predict", content=chunks(), headers=JSON)
    assert response.status_code == 413
    assert "x-request-id" in response.headers


def test_wrong_method_and_unknown_route(client) -> None:
    assert client.get("/v1/predict").status_code == 405
    assert client.post("/v2/predict", json={"text": "a"}).status_code == 404


@pytest.mark.parametrize("raw", [b'{"text": NaN}', b'{"text": "a", "extra": Infinity}', b'{"texts": [-Infinity]}',
                                 b'{"text": "a", "model": NaN}'])
def test_non_finite_numbers_are_422(client, raw: bytes) -> None:
    route = "/v1/predict/batch" if b"texts" in raw else "/v1/predict"
    response = client.post(route, content=raw, headers=JSON)
    assert response.status_code == 422, response.text


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("route", SINGLE + BATCH)
@pytest.mark.parametrize("depth", [480, 979, 5000, 100_000])
def test_deeply_nested_json_is_a_client_error(client, route: str, depth: int, caplog) -> None:
    """Audit finding 3: nesting once hit a RecursionError (500) and logged a 136 KB traceback per request."""
    key = "texts" if route in BATCH else "text"
    raw = f'{{"{key}": {_nested(depth)}}}'.encode()
    with caplog.at_level("DEBUG"):
        response = client.post(route, content=raw, headers=JSON)
    assert 400 <= response.status_code < 500, response.text[:300]
    assert len(response.content) < 2000
    assert all(len(record.getMessage()) + len(str(record.__dict__)) < 4000 for record in caplog.records)


@pytest.mark.parametrize("depth", [500, 2000])
def test_deeply_nested_extra_field_is_a_client_error(client, depth: int, caplog) -> None:
    raw = ('{"text": "fine", "extra": %s}' % ('{"a": ' * depth + "1" + "}" * depth)).encode()
    with caplog.at_level("DEBUG"):
        response = client.post("/v1/predict", content=raw, headers=JSON)
    assert 400 <= response.status_code < 500, response.text[:300]
    assert all(len(record.getMessage()) + len(str(record.__dict__)) < 4000 for record in caplog.records)


@pytest.mark.parametrize("route", SINGLE)
@pytest.mark.parametrize("text", ["\u0000", "\u0000\u0000\u0000", "\x07\x1f", "\x7f", "\u00ad", "\U000e0041",
                                  "\ue000", "\u2028\u2029", "\u3000", "&nbsp;", "&amp;#8203;", "\x00 \u00ad \x1f"])
def test_control_format_private_or_separator_only_text_is_422(client, route: str, text: str) -> None:
    """Audit finding 5: texts with nothing visible (Cc, Cf, Co, Z*) once got a prediction."""
    response = _post(client, route, {"text": text})
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("text", ["ok\u0000", "\u00adhi", "👍\u200d", "\ue000 great", "\u0644\u0627"])
def test_text_with_a_visible_character_is_classified(client, text: str) -> None:
    assert _post(client, "/v1/predict", {"text": text}).status_code == 200
