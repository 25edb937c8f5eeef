"""``POST /v1/predict`` and ``POST /v1/predict/batch``."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Body, Request

from api.deps import predict_texts
from api.schemas import (
    BatchPredictRequest,
    BatchPredictResponse,
    ExplainedPrediction,
    Explanation,
    Prediction,
    PredictRequest,
    Probabilities,
    WordContribution,
)
from sentiment import explain
from sentiment.registry import ServedModel
from sentiment.scoring import to_labels

router = APIRouter(prefix="/v1/predict", tags=["predict"])

_SINGLE_EXAMPLES = {
    "positive": {"summary": "A happy passenger", "value": {"text": "Smooth flight and friendly crew, thank you!"}},
    "negative": {"summary": "An angry passenger", "value": {"text": "3 hours late and no one tells us anything"}},
    "model": {"summary": "Ask for a given model", "value": {"text": "not bad at all", "model": "tfidf-lr"}},
    "emoji": {"summary": "Emoji, mentions and URLs", "value": {"text": "@airline loved it 😍 https://t.co/x"}},
    "explain": {"summary": "Why? Each word's contribution",
                "value": {"text": "Lost my bag but the crew was lovely", "explain": True}},
}
_BATCH_EXAMPLES = {
    "two": {"summary": "Two tweets", "value": {"texts": ["Great service today", "Lost my bag. Again."]}},
}


def to_predictions(model: ServedModel, proba: np.ndarray, kind: type[Prediction] = Prediction) -> list[Prediction]:
    """Turn an (n, 2) probability array into predictions (of class ``kind``)."""
    labels, confidence = to_labels(proba)
    return [
        kind(label=label, confidence=float(conf), model=model.name, version=model.version,
             probabilities=Probabilities(negative=float(row[0]), positive=float(row[1])))
        for row, label, conf in zip(proba.tolist(), labels, confidence.tolist(), strict=True)
    ]


@router.post("", summary="Classify one tweet", response_model_exclude_none=True)
async def predict(
    request: Request,
    body: Annotated[PredictRequest, Body(openapi_examples=_SINGLE_EXAMPLES)],
) -> ExplainedPrediction:
    """Label one tweet `positive` or `negative`, with both probabilities and the model's name and version.

    Concurrent calls are grouped into shared model calls (micro-batching); each still gets its own answer.
    503 with `Retry-After` when the model's queue is full or the answer misses the model's deadline.
    With `"explain": true`, `explanation` gives each word's contribution (leave-one-word-out, in the same call).
    """
    if not body.explain:
        model, proba = await predict_texts(request, [body.text], body.model, "text")
        return to_predictions(model, proba, ExplainedPrediction)[0]
    words, occluded = explain.occlusions(body.text, request.app.state.settings.explain_max_words)
    model, proba = await predict_texts(request, [body.text, *occluded], body.model, "text", counted=1)
    why = explain.explain(body.text, words, proba[:, 1])
    prediction = to_predictions(model, proba[:1], ExplainedPrediction)[0]
    prediction.explanation = Explanation(
        method="occlusion", words_total=why.words_total, truncated=why.truncated,
        words=[WordContribution(word=w.text, start=w.start, end=w.end, contribution=w.contribution)
               for w in why.words])
    return prediction


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
