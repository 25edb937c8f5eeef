"""The service over the real exports in exports/ (skipped where they are absent), and ONNX vs torch parity.

Predictor-level checks of the committed models live in tests/exports; here the same models are reached
through HTTP (default model, micro-batching, compatibility routes), and the served ONNX graph is compared
with the fine-tuned torch model in artifacts/minilm/model when that is present.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import Settings
from benchmarks.tweets import make_tweets
from sentiment.exports import read_metadata
from sentiment.predictor import load_predictor
from sentiment.preprocess import normalize_for_transformer

PROJECT_ROOT = Path(__file__).resolve().parents[2]
EXPORTS = PROJECT_ROOT / "exports"
MINILM = EXPORTS / "minilm"
TORCH_MODEL = PROJECT_ROOT / "artifacts" / "minilm" / "model"

needs_exports = pytest.mark.skipif(not (MINILM / "metadata.json").is_file(), reason="exports/minilm not exported yet")


@pytest.fixture(scope="module")
def real_app() -> FastAPI:
    app = create_app(Settings(exports_dir=EXPORTS, api_keys=(), enabled_models=(), default_model=None,
                              log_format="none"))
    app.state.registry.load()
    return app


@pytest.fixture(scope="module")
def real_client(real_app: FastAPI):
    with TestClient(real_app) as client:
        yield client


@needs_exports
def test_serves_every_export_and_the_champion_by_default(real_client) -> None:
    assert real_client.get("/readyz").status_code == 200
    listing = real_client.get("/v1/models").json()
    champions = [m["name"] for m in listing["models"] if "champion" in m["aliases"]]
    assert champions == [listing["default"]]
    assert {"minilm", "tfidf-lr"} <= {m["name"] for m in listing["models"]}


@needs_exports
@pytest.mark.parametrize("model", ["minilm", "tfidf-lr"])
def test_obvious_tweets_through_http(real_client, model: str) -> None:
    texts = ["@united thank you so much, the crew was wonderful and we landed early!",
             "best flight ever, loved every minute :)",
             "@delta lost my luggage AGAIN and nobody at the desk would help. worst airline.",
             "cancelled flight, stuck at the airport all night, so angry :("]
    body = real_client.post("/v1/predict/batch", json={"texts": texts, "model": model}).json()
    assert [p["label"] for p in body["predictions"]] == ["positive", "positive", "negative", "negative"]
    compat = real_client.post("/predict_batch", json={"texts": texts}).json()
    assert [c["prediction"] for c in compat] == [4, 4, 0, 0]


async def _concurrent_predictions(app: FastAPI, texts: list[str], model: str) -> np.ndarray:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        responses = await asyncio.gather(*(client.post("/v1/predict", json={"text": t, "model": model}) for t in texts))
    await app.state.registry.aclose()  # stop the batchers' workers before this event loop ends
    return np.array([r.json()["probabilities"]["positive"] for r in responses])


@needs_exports
def test_micro_batched_answers_equal_unbatched_classical(real_app: FastAPI) -> None:
    texts = make_tweets(24, seed=3)
    unbatched = np.array([load_predictor(EXPORTS / "tfidf-lr").predict_proba([t])[0, 1] for t in texts])
    np.testing.assert_allclose(asyncio.run(_concurrent_predictions(real_app, texts, "tfidf-lr")), unbatched,
                               atol=1e-6)


@needs_exports
def test_micro_batched_answers_close_to_unbatched_int8(real_app: FastAPI) -> None:
    """Dynamic int8 quantisation scales activations per call, so batch-mates move a tweet's probability a
    little (fp32 is exactly batch-invariant, see test_fp32_is_batch_invariant); clear cases keep their label."""
    texts = make_tweets(24, seed=3)
    predictor = load_predictor(MINILM)
    unbatched = np.array([predictor.predict_proba([t])[0, 1] for t in texts])
    batched = asyncio.run(_concurrent_predictions(real_app, texts, "minilm"))
    difference = np.abs(batched - unbatched)
    assert difference.mean() < 0.03 and difference.max() < 0.15, difference
    clear = np.abs(unbatched - 0.5) > 0.15
    assert ((batched > 0.5) == (unbatched > 0.5))[clear].all()


@needs_exports
def test_fp32_is_batch_invariant() -> None:
    if not (MINILM / read_metadata(MINILM)["variants"].get("fp32", "-")).is_file():
        pytest.skip("the fp32 graph (git-ignored) is not here")
    predictor = load_predictor(MINILM, variant="fp32")
    texts = make_tweets(16, seed=4)
    single = np.array([predictor.predict_proba([t])[0] for t in texts])
    np.testing.assert_allclose(predictor.predict_proba(texts), single, atol=1e-5)


@pytest.fixture(scope="module")
def torch_reference():
    if not (TORCH_MODEL / "config.json").is_file() or not (MINILM / "metadata.json").is_file():
        pytest.skip("artifacts/minilm/model (the fine-tuned torch model) or exports/minilm is absent")
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(TORCH_MODEL)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(TORCH_MODEL).eval()
    max_length = int(read_metadata(MINILM)["max_length"])

    def predict_proba(texts: list[str]) -> np.ndarray:
        inputs = tokenizer([normalize_for_transformer(t) for t in texts], padding=True, truncation=True,
                           max_length=max_length, return_tensors="pt")
        with torch.no_grad():
            return torch.softmax(model(**inputs).logits, dim=-1).numpy()

    return predict_proba


@pytest.mark.parametrize("variant", ["int8", "fp32"])
def test_onnx_matches_the_torch_model(torch_reference, variant: str) -> None:
    meta = read_metadata(MINILM)
    if variant not in meta["variants"] or not (MINILM / meta["variants"][variant]).is_file():
        pytest.skip(f"no {variant} graph in exports/minilm (the fp32 one is git-ignored)")
    texts = make_tweets(96, seed=7) + ["I don't like it", "not bad at all", "😀", "@user http"]
    expected = np.concatenate([torch_reference(texts[i:i + 32]) for i in range(0, len(texts), 32)])
    actual = load_predictor(MINILM, variant=variant).predict_proba(texts)
    difference = np.abs(actual[:, 1] - expected[:, 1])
    agreement = float((actual.argmax(1) == expected.argmax(1)).mean())
    if variant == "fp32":
        assert difference.max() < 1e-3
    else:
        # Dynamic int8 quantisation moves probabilities by a few points (0.04 on average when measured) and
        # flips a few borderline labels; its effect on accuracy is checked on real data in tests/exports.
        assert difference.mean() < 0.06 and agreement >= 0.95, (difference.mean(), agreement)
