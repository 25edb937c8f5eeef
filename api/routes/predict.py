"""``POST /v1/predict`` and ``POST /v1/predict/batch``."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Body, Request

from api.deps import predict_texts
from api.schemas import BatchPredictRequest, BatchPredictResponse, Prediction, PredictRequest, Probabilities
from sentiment.registry import ServedModel
from sentiment.scoring import to_labels

router = APIRouter(prefix="/v1/predict", tags=["predict"])

_SINGLE_EXAMPLES = {
    "positive": {"summary": "A happy passenger", "value": {"text": "Smooth flight and friendly crew, thank you!"}},
    "negative": {"summary": "An angry passenger", "value": {"text": "3 hours late and no one tells us anything"}},
    "model": {"summary": "Ask for a given model", "value": {"text": "not bad at all", "model": "tfidf-lr"}},
    "emoji": {"summary": "Emoji, mentions and URLs", "value": {"text": "@airline loved it 😍 https://t.co/x"}},
}
_BATCH_EXAMPLES = {
    "two": {"summary": "Two tweets", "value": {"texts": ["Great service today", "Lost my bag. Again."]}},
}


def to_predictions(model: ServedModel, proba: np.ndarray) -> list[Prediction]:
    """Turn an (n, 2) probability array into predictions."""
    labels, confidence = to_labels(proba)
    return [
        Prediction(label=label, confidence=float(conf), model=model.name, version=model.version,
                   probabilities=Probabilities(negative=float(row[0]), positive=float(row[1])))
        for row, label, conf in zip(proba.tolist(), labels, confidence.tolist(), strict=True)
    ]


@router.post("", summary="Classify one tweet")
async def predict(
    request: Request,
    body: Annotated[PredictRequest, Body(openapi_examples=_SINGLE_EXAMPLES)],
) -> Prediction:
    """Label one tweet `positive` or `negative`, with both probabilities and the model's name and version.

    Concurrent calls are grouped into shared model calls (micro-batching); each still gets its own answer.
    503 with `Retry-After` when the model's queue is full or the answer misses `REQUEST_TIMEOUT_S`.
    """
    model, proba = await predict_texts(request, [body.text], body.model, "text")
    return to_predictions(model, proba)[0]


@router.post("/batch", summary="Classify up to 256 tweets")
async def predict_batch(
    request: Request,
    body: Annotated[BatchPredictRequest, Body(openapi_examples=_BATCH_EXAMPLES)],
) -> BatchPredictResponse:
    """One prediction per text, in the order given; the texts run in chunks of `MAX_BATCH_SIZE`."""
    model, proba = await predict_texts(request, body.texts, body.model, "texts")
    predictions = to_predictions(model, proba)
    return BatchPredictResponse(model=model.name, version=model.version, count=len(predictions),
                                predictions=predictions)
