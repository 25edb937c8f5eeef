"""The original project's routes answer in its exact shapes (see /work/shared/ORIGINAL.md)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from sentiment.exports import SENTIMENT140_CODES


def test_root_message(client) -> None:
    assert client.get("/").json() == {"message": "Service BERT FastAPI is running."}


def test_predict_shape_and_values(client) -> None:
    tweet = "I love this airline"
    body = client.post("/predict", json={"text": tweet}).json()
    assert list(body) == ["tweet", "prediction", "confidence", "sentiment"]
    assert body["tweet"] == tweet
    v1 = client.post("/v1/predict", json={"text": tweet}).json()
    assert body["prediction"] == SENTIMENT140_CODES[v1["label"]]
    assert body["confidence"] == pytest.approx(v1["confidence"])
    assert body["sentiment"] == {0: "Tweet négatif", 4: "Tweet positif"}[body["prediction"]]


def test_predict_batch_is_a_list_in_order(client) -> None:
    tweets = ["great crew", "awful delay", "ok 😀"]
    body = client.post("/predict_batch", json={"texts": tweets}).json()
    assert isinstance(body, list) and [item["tweet"] for item in body] == tweets
    assert all(item["prediction"] in (0, 4) for item in body)
    assert client.post("/predict_batch", json={"texts": []}).json() == []


def test_both_sentiments_spelled_like_the_original(exports_dir, settings_factory) -> None:
    """With the classical model as default, which separates these two clearly."""
    with TestClient(create_app(settings_factory(exports_dir, default_model="tiny-lr"))) as client:
        body = client.post("/predict_batch", json={"texts": ["love great happy", "worst awful angry"]}).json()
    assert [(b["prediction"], b["sentiment"]) for b in body] == [(4, "Tweet positif"), (0, "Tweet négatif")]


def test_extra_fields_are_ignored_like_the_original(client) -> None:
    assert client.post("/predict", json={"text": "hello", "lang": "en"}).status_code == 200
