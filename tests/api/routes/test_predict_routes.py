"""POST /v1/predict and /v1/predict/batch: shapes, models, order, agreement with the predictor."""

from __future__ import annotations

import numpy as np
import pytest

TEXTS = ["I love this airline", "worst flight ever, lost my bag", "@crew thanks! 😀 http://x.co", "meh"]


def test_single_prediction_shape(client, predictors) -> None:
    response = client.post("/v1/predict", json={"text": TEXTS[0]})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"label", "confidence", "probabilities", "model", "version"}
    assert body["model"] == "tiny-bert" and body["version"] == "1"
    proba = body["probabilities"]
    assert proba["negative"] + proba["positive"] == pytest.approx(1, abs=1e-5)
    assert body["confidence"] == max(proba.values())
    assert body["label"] == max(proba, key=proba.get)
    expected = predictors["tiny-bert"].predict_proba([TEXTS[0]])[0]
    assert proba["positive"] == pytest.approx(float(expected[1]), abs=1e-5)


@pytest.mark.parametrize("model", ["tiny-bert", "tiny-lr"])
def test_batch_matches_single_predictions_in_order(client, predictors, model: str) -> None:
    response = client.post("/v1/predict/batch", json={"texts": TEXTS, "model": model})
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == model and body["count"] == len(TEXTS)
    batch = [p["probabilities"]["positive"] for p in body["predictions"]]
    singles = [client.post("/v1/predict", json={"text": t, "model": model}).json()["probabilities"]["positive"]
               for t in TEXTS]
    np.testing.assert_allclose(batch, singles, atol=1e-5)
    np.testing.assert_allclose(batch, predictors[model].predict_proba(TEXTS)[:, 1], atol=1e-5)


def test_classical_model_learned_the_made_up_tweets(client) -> None:
    body = client.post("/v1/predict/batch", json={"texts": ["love great happy", "worst awful angry"],
                                                   "model": "tiny-lr"}).json()
    assert [p["label"] for p in body["predictions"]] == ["positive", "negative"]


def test_full_batch_of_256(client) -> None:
    texts = [f"tweet {i} {'good' if i % 2 else 'bad'}" for i in range(256)]
    body = client.post("/v1/predict/batch", json={"texts": texts, "model": "tiny-lr"}).json()
    assert body["count"] == 256 and len(body["predictions"]) == 256


@pytest.mark.parametrize("text", ["😀😀😀", "مرحبا بالعالم", "שלום", "zero\u200bwidth\u200djoiner", "e\u0301t\u00e9",
                                  "𝕳𝖊𝖑𝖑𝖔", "\u202eRTL override", "tab\tand\nnewline", "a" * 1000, "<b>&amp;</b>"])
def test_unicode_of_every_kind(client, text: str) -> None:
    for model in ("tiny-bert", "tiny-lr"):
        response = client.post("/v1/predict", json={"text": text, "model": model})
        assert response.status_code == 200, response.text


def test_lone_surrogates_are_replaced_not_fatal(client) -> None:
    for raw in (b'{"text": "\\ud83d"}', b'{"text": "half \\ude00 emoji"}', b'{"texts": ["\\udfff", "ok"]}'):
        route = "/v1/predict/batch" if b"texts" in raw else "/v1/predict"
        response = client.post(route, content=raw, headers={"Content-Type": "application/json"})
        assert response.status_code == 200, response.text


def test_content_type_with_charset_is_json(client) -> None:
    response = client.post("/v1/predict", content=b'{"text": "fine"}',
                           headers={"Content-Type": "application/json; charset=utf-8"})
    assert response.status_code == 200


@pytest.mark.parametrize("model", ["tiny-bert", "tiny-lr"])
def test_explain_gives_each_word_its_contribution_from_the_same_model(client, predictors, model: str) -> None:
    text = "lost my bag but the crew was lovely"
    response = client.post("/v1/predict", json={"text": text, "model": model, "explain": True})
    assert response.status_code == 200
    body = response.json()
    words = body["explanation"]["words"]
    assert body["explanation"]["method"] == "occlusion" and body["explanation"]["words_total"] == 8
    assert [w["word"] for w in words] == text.split() and not body["explanation"]["truncated"]
    assert all(text[w["start"]:w["end"]] == w["word"] for w in words)
    predictor = predictors[model]
    full = float(predictor.predict_proba([text])[0, 1])
    assert body["probabilities"]["positive"] == pytest.approx(full, abs=1e-5)
    for index, word in enumerate(words):
        without = " ".join(w for j, w in enumerate(text.split()) if j != index)
        expected = full - float(predictor.predict_proba([without])[0, 1])
        assert word["contribution"] == pytest.approx(expected, abs=1e-4)


def test_without_explain_the_answer_has_no_explanation(client) -> None:
    assert "explanation" not in client.post("/v1/predict", json={"text": "nice", "explain": False}).json()


def test_an_explanation_counts_one_prediction_and_is_bounded(app, client) -> None:
    def served() -> float:
        text = client.get("/metrics").text
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("predictions_total{"))

    before = served()
    long_text = " ".join(f"word{i}" for i in range(100))
    body = client.post("/v1/predict", json={"text": long_text, "explain": True}).json()
    assert served() == before + 1  # the occlusion texts explain the prediction; they are not predictions
    limit = app.state.settings.explain_max_words
    assert len(body["explanation"]["words"]) == limit and body["explanation"]["truncated"]
    assert body["explanation"]["words_total"] == 100


def test_explain_is_for_one_tweet_only(client) -> None:
    response = client.post("/v1/predict/batch", json={"texts": ["a", "b"], "explain": True})
    assert response.status_code == 422
