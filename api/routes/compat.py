"""The original project's routes, in its exact shapes, so its consumers can switch without changes.

``GET /`` → ``{"message": ...}``; ``POST /predict {"text"}`` → ``{"tweet", "prediction": 0|4, "confidence",
"sentiment"}``; ``POST /predict_batch {"texts"}`` → a list of those. They use the default model and the same
limits as the v1 routes.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.deps import predict_texts
from api.routes.predict import to_predictions
from api.schemas import CompatBatchRequest, CompatMessage, CompatPrediction, CompatPredictRequest
from sentiment.exports import SENTIMENT140_CODES

router = APIRouter(tags=["compatibility"])
open_router = APIRouter(tags=["compatibility"])

ORIGINAL_MESSAGE = "Service BERT FastAPI is running."
# Exactly the original's strings: consumers may compare them.
SENTIMENTS = {"negative": "Tweet négatif", "positive": "Tweet positif"}


async def _classify(request: Request, texts: list[str], field: str) -> list[CompatPrediction]:
    model, proba = await predict_texts(request, texts, None, field)
    return [
        CompatPrediction(tweet=text, prediction=SENTIMENT140_CODES[p.label], confidence=p.confidence,
                         sentiment=SENTIMENTS[p.label])
        for text, p in zip(texts, to_predictions(model, proba), strict=True)
    ]


@open_router.get("/", summary="Original: service message")
async def root() -> CompatMessage:
    """The original image's greeting, unchanged."""
    return CompatMessage(message=ORIGINAL_MESSAGE)


@router.post("/predict", summary="Original: classify one tweet")
async def predict(request: Request, body: CompatPredictRequest) -> CompatPrediction:
    """`prediction` is Sentiment140's code (0 negative, 4 positive), `confidence` the top probability."""
    return (await _classify(request, [body.text], "text"))[0]


@router.post("/predict_batch", summary="Original: classify a list of tweets")
async def predict_batch(request: Request, body: CompatBatchRequest) -> list[CompatPrediction]:
    """One answer per tweet, in order (at most 256 tweets)."""
    return await _classify(request, body.texts, "texts")
