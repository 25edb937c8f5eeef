"""Scoring rules, each in one function: the text check, probabilities to a label, and scoring a list of texts.

Every caller uses them: the API routes (:func:`check_text` behind the schema, :func:`to_labels` on the queue's
answer), the Streamlit pages, ``api.cli`` and Spark (:func:`score`), and training's evaluation. A test
(``tests/sentiment/test_one_rule.py``) fails when a second threshold or ``argmax`` appears outside the engine.
"""

from __future__ import annotations

import codecs
import html
import math
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

LABELS = ("negative", "positive")
# P(positive) at or above it is positive. At exactly 0.5 the tweet is called positive, everywhere.
POSITIVE_THRESHOLD = 0.5
# Why a text is not scored (``reason``); the API refuses such a request with 422 instead.
MISSING, EMPTY, TOO_LONG = "missing", "empty", "too_long"
# Unassigned code points (Cn) stay visible: an emoji newer than this Python's Unicode tables is one.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Zs", "Zl", "Zp"})

# The one file layout (Spark, ``api.cli score``, the Predict page's download): the input columns, then these.
OUTPUT_COLUMNS = ("label", "confidence", "p_positive", "model", "version", "reason")
# The reason of a row whose fields cannot be trusted to sit in their columns (a CSV row with more or fewer fields
# than its header or layout): its "text" may be another field, or a piece of the text, so it is flagged, never scored.
MALFORMED = "malformed"

Proba = Callable[[list[str]], np.ndarray]


def has_visible_character(text: str) -> bool:
    """False when ``text`` is empty after normalisation or holds only invisible characters.

    Invisible means Unicode control, format, private-use or separator characters (Cc, Cf, Co, Z*): NUL, a
    soft hyphen, a tag character or a line separator alone carry nothing to classify. HTML entities are
    decoded first, as the normalisation does, so ``&nbsp;`` alone is empty too. Cheaper than normalising:
    the predictor normalises each text anyway, and this runs once per text on the request path.
    """
    if "&" in text:
        text = html.unescape(html.unescape(text))
    return any(unicodedata.category(char) not in _INVISIBLE_CATEGORIES for char in text)


# Longest first: UTF-32 LE's mark begins with UTF-16 LE's.
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def bom_encoding(prefix: bytes) -> str | None:
    """The encoding a file's byte-order mark announces (``utf-16`` for Excel's "Unicode text"), or None.

    Every reader of tweet files asks it first (the Predict upload, ``api.cli score``, Spark): read as latin-1, a
    UTF-16 file's ``ÿþt\x00e\x00x\x00t\x00`` was scored as a tweet.
    """
    return next((encoding for bom, encoding in _BOMS if prefix.startswith(bom)), None)


def check_text(text: object, max_chars: int) -> str | None:
    """Why ``text`` cannot be scored (:data:`MISSING`, :data:`TOO_LONG`, :data:`EMPTY`), or None when it can.

    ``max_chars`` is ``MAX_TEXT_CHARS`` (1,000 by default) for every caller.
    """
    if not isinstance(text, str):  # None, or NaN in a pandas column
        return MISSING
    if len(text) > max_chars:
        return TOO_LONG
    if not has_visible_character(text):
        return EMPTY
    return None


def describe_problem(reason: str, max_chars: int, length: int = 0) -> str:
    """A sentence for a person about ``reason`` (from :func:`check_text`)."""
    if reason == TOO_LONG:
        return f"The text is {length:,} characters long; the limit is {max_chars:,}. Shorten it and try again."
    if reason == EMPTY:
        return "The text has nothing to classify: it is empty, or only spaces, control or formatting characters."
    return "There is no text."


def to_labels(proba: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Labels and confidences of ``(n, 2)`` probabilities of (negative, positive).

    The label is positive when P(positive) ≥ :data:`POSITIVE_THRESHOLD`; the confidence is the probability of
    the label given, as float64.
    """
    proba = np.asarray(proba)
    if len(proba) == 0:
        return [], np.empty(0, dtype=np.float64)
    positive = proba[:, 1] >= POSITIVE_THRESHOLD
    confidence = np.where(positive, proba[:, 1], proba[:, 0]).astype(np.float64)
    return [LABELS[int(p)] for p in positive], confidence


def positive_mask(p_positive: np.ndarray) -> np.ndarray:
    """Whether each P(positive) is called positive (``1``) or negative (``0``), as integers (evaluation)."""
    return (np.asarray(p_positive) >= POSITIVE_THRESHOLD).astype(int)


@dataclass(frozen=True)
class Scores:
    """One entry per input text; ``label``, ``confidence`` and ``p_positive`` are None/NaN where ``reason`` is set."""

    label: list[str | None]
    confidence: np.ndarray
    p_negative: np.ndarray
    p_positive: np.ndarray
    reason: list[str | None]

    def columns(self, model: str, version: str) -> dict[str, object]:
        """The :data:`OUTPUT_COLUMNS`, each a list or an array of one entry per text."""
        size = len(self.reason)
        return {"label": self.label, "confidence": self.confidence, "p_positive": self.p_positive,
                "model": [model] * size, "version": [version] * size, "reason": self.reason}


def score(texts: Sequence[object], predict_proba: Proba, *, max_chars: int, chunk_rows: int = 256,
          on_chunk: Callable[[int, int], None] | None = None, malformed: Sequence[bool] | None = None) -> Scores:
    """Check every text, score those that pass in chunks of ``chunk_rows``, and label them.

    Rows that fail :func:`check_text` are kept with their ``reason``; they never fail the call.

    Args:
        texts: the tweets (None or NaN for a missing value).
        predict_proba: the model: a predictor's ``predict_proba``, or a queued one (pages).
        max_chars: longest text scored (``MAX_TEXT_CHARS``).
        chunk_rows: most texts in one model call (the classical exports densify TF-IDF: 256 rows is ~200 MB).
        on_chunk: called after each chunk with (texts scored so far, texts to score).
        malformed: True for the rows the reader could not split into their columns: they get the reason
            :data:`MALFORMED` whatever their text, and never reach the model.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    flags = malformed if malformed is not None else [False] * len(texts)
    reasons = [MALFORMED if flag else check_text(text, max_chars) for text, flag in zip(texts, flags, strict=True)]
    keep = [i for i, reason in enumerate(reasons) if reason is None]
    proba = np.full((len(texts), 2), math.nan)
    for start in range(0, len(keep), chunk_rows):
        rows = keep[start : start + chunk_rows]
        proba[rows] = np.asarray(predict_proba([texts[i] for i in rows]), dtype=np.float64)  # type: ignore[misc]
        if on_chunk is not None:
            on_chunk(start + len(rows), len(keep))
    labels: list[str | None] = [None] * len(texts)
    confidence = np.full(len(texts), math.nan)
    if keep:
        kept_labels, kept_confidence = to_labels(proba[keep])
        for row, label in zip(keep, kept_labels, strict=True):
            labels[row] = label
        confidence[keep] = kept_confidence
    return Scores(labels, confidence, proba[:, 0], proba[:, 1], reasons)
