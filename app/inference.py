"""Predictions for the pages: input checks, one tweet on one or every model, and CSV batches.

The models are the API's predictors (``api.predictor``, loaded by ``api.registry``): anything with ``name``,
``version``, ``labels`` and ``predict_proba(texts) -> (n, 2)`` works, which is what the tests' fakes give.
"""

from __future__ import annotations

import csv
import io
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd

MAX_TWEET_CHARS = 280
# Written for this product (not taken from any data set): a spread of clear and tricky cases.
EXAMPLE_TWEETS = (
    "Crew upgraded my seat and the landing was so smooth, best flight I've had all year!",
    "Three hours on the tarmac with no water and no updates. Never flying with you again.",
    "Not bad at all, the new app actually found me a seat on the earlier flight",
    "Lost my luggage AGAIN. Thanks a lot @airline, really great service 🙄",
    "Boarding now, see you all in Lisbon",
)
TEXT_COLUMNS = ("text", "tweet", "content", "message")
_SENTIMENT140_COLUMNS = 6


class Model(Protocol):
    """The part of ``api.predictor.Predictor`` the pages use."""

    name: str
    version: str
    labels: tuple[str, ...]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class Prediction:
    """One model's verdict on one tweet; ``id`` keys its feedback row."""

    text: str
    model_name: str
    model_version: str
    label: str
    confidence: float
    probabilities: dict[str, float]
    latency_ms: float
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


def validate_tweet(text: str | None) -> str | None:
    """The message to show for unusable input, or None when the tweet can be scored."""
    if text is None or not text.strip():
        return "Type a tweet first: the text is empty."
    if len(text) > MAX_TWEET_CHARS:
        return f"The tweet is {len(text)} characters long; the limit is {MAX_TWEET_CHARS}. Shorten it and try again."
    return None


def char_count(text: str | None) -> str:
    """``"42 / 280 characters"``, with how many to remove when the text is too long."""
    length = len(text or "")
    if length > MAX_TWEET_CHARS:
        return f":red[{length} / {MAX_TWEET_CHARS} characters: {length - MAX_TWEET_CHARS} too many]"
    return f"{length} / {MAX_TWEET_CHARS} characters"


def predict(model: Model, text: str) -> Prediction:
    """Score ``text`` with ``model`` and time the call."""
    start = time.perf_counter()
    proba = np.asarray(model.predict_proba([text]), dtype=float)[0]
    latency_ms = (time.perf_counter() - start) * 1000
    best = int(proba.argmax())
    return Prediction(text=text, model_name=model.name, model_version=str(model.version),
                      label=model.labels[best], confidence=float(proba[best]),
                      probabilities={label: float(p) for label, p in zip(model.labels, proba, strict=True)},
                      latency_ms=latency_ms)


def predict_all(models: Sequence[Model], text: str) -> pd.DataFrame:
    """Every model's verdict on ``text``: ``model, version, label, confidence, p_positive, latency_ms``."""
    rows = []
    for model in models:
        result = predict(model, text)
        rows.append({"model": result.model_name, "version": result.model_version, "label": result.label,
                     "confidence": result.confidence, "p_positive": result.probabilities.get("positive", np.nan),
                     "latency_ms": result.latency_ms})
    return pd.DataFrame(rows)


class CsvError(ValueError):
    """An uploaded file that holds no tweets we can find."""


def read_tweets_csv(data: bytes, max_rows: int) -> pd.DataFrame:
    """The tweets of an uploaded CSV as a frame with a ``text`` column (other columns kept).

    Accepted: a header with a ``text`` (or ``tweet``, ``content``, ``message``) column; Sentiment140's six
    columns without header (text in the last); or a single column without header.

    Raises:
        CsvError: the file is empty, not text, has no usable column or more than ``max_rows`` rows.
    """
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        content = data.decode("latin-1")
    rows = [row for row in csv.reader(io.StringIO(content)) if row]
    if not rows:
        raise CsvError("The file is empty.")
    header = [cell.strip().lower() for cell in rows[0]]
    text_column = next((name for name in TEXT_COLUMNS if name in header), None)
    if text_column is not None:
        body = rows[1:]
        width = len(header)
        frame = pd.DataFrame([(r + [""] * width)[:width] for r in body], columns=header)
        frame = frame.rename(columns={text_column: "text"})
    elif all(len(r) == _SENTIMENT140_COLUMNS for r in rows[:50]):
        frame = pd.DataFrame({"text": [r[-1] for r in rows]})
    elif all(len(r) == 1 for r in rows[:50]):
        frame = pd.DataFrame({"text": [r[0] for r in rows]})
    else:
        raise CsvError(f"No text column found: add a header with one of {', '.join(TEXT_COLUMNS)}, "
                       "or upload one tweet per line.")
    if len(frame) > max_rows:
        raise CsvError(f"The file has {len(frame):,} rows; the limit is {max_rows:,}.")
    if frame.empty:
        raise CsvError("The file has a header but no rows.")
    return frame.reset_index(drop=True)


def score_frame(model: Model, frame: pd.DataFrame, batch_size: int = 64,
                progress: Callable[[float], None] | None = None) -> pd.DataFrame:
    """``frame`` with ``label``, ``confidence``, ``p_negative``, ``p_positive`` and ``note`` added.

    Empty rows are not scored (``note`` says why); over-long rows are scored and flagged.
    """
    texts = frame["text"].fillna("").astype(str).tolist()
    usable = [i for i, t in enumerate(texts) if t.strip()]
    proba = np.full((len(texts), 2), np.nan)
    for start in range(0, len(usable), batch_size):
        index = usable[start : start + batch_size]
        proba[index] = np.asarray(model.predict_proba([texts[i] for i in index]), dtype=float)
        if progress is not None:
            progress(min(1.0, (start + len(index)) / len(usable)))
    if progress is not None:
        progress(1.0)
    out = frame.copy()
    scored = ~np.isnan(proba[:, 0])
    best = np.where(scored, np.nan_to_num(proba).argmax(axis=1), 0)
    out["label"] = [model.labels[b] if s else "" for b, s in zip(best, scored, strict=True)]
    out["confidence"] = np.where(scored, np.nanmax(np.where(scored[:, None], proba, 0), axis=1), np.nan)
    out["p_negative"] = proba[:, 0]
    out["p_positive"] = proba[:, 1]
    out["note"] = ["empty: not scored" if not t.strip() else
                   (f"longer than {MAX_TWEET_CHARS} characters" if len(t) > MAX_TWEET_CHARS else "") for t in texts]
    out["model"] = f"{model.name} v{model.version}"
    return out
