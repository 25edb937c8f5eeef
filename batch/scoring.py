"""Score a column of tweets with a predictor: the part of batch scoring that needs no engine.

Spark's ``mapInPandas`` (``batch/spark.py``) calls :func:`score_texts` on every Arrow batch it hands a Python
worker. Rows that the API would refuse (missing, nothing visible after normalisation, over ``MAX_TEXT_CHARS``)
get no label and a ``reason``: they are kept, and they never fail the job.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from api.predictor import Predictor
from api.schemas import has_visible_character

OUTPUT_COLUMNS = ("label", "confidence", "p_positive", "model", "version", "reason")
MISSING, EMPTY, TOO_LONG = "missing", "empty", "too_long"
# The classical exports densify TF-IDF: 256 rows x 200k features x 4 bytes is about 200 MB per call, and Spark's
# Arrow batches hold 10,000 rows by default. Every predictor call is cut to this many rows at most.
DEFAULT_CHUNK_ROWS = 256


def default_chunk_rows(predictor: Predictor) -> int:
    """Rows per predictor call when none is asked for.

    A dynamically quantised (int8) graph scales its activations over each call, so a tweet's probability moves
    with its batch-mates (up to 0.06 measured on made-up tweets): one tweet per call gives every tweet the answer
    the API gives it alone, at about the speed of batches on CPUs (``../shared/FACTS.md``: MiniLM int8 batch 16
    is barely faster than batch 1). Other graphs answer the same in any batch.
    """
    return 1 if predictor.variant == "int8" else DEFAULT_CHUNK_ROWS


def problem(text: object, max_chars: int) -> str | None:
    """Why ``text`` cannot be scored (the API's own checks), or None when it can."""
    if not isinstance(text, str):  # None, or NaN in a pandas string column
        return MISSING
    if len(text) > max_chars:
        return TOO_LONG
    if not has_visible_character(text):
        return EMPTY
    return None


def predict_in_chunks(predictor: Predictor, texts: Sequence[str], chunk_rows: int) -> np.ndarray:
    """``(n, 2)`` probabilities of ``texts``, with no predictor call on more than ``chunk_rows`` texts."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    out = np.empty((len(texts), 2), dtype=np.float32)
    for start in range(0, len(texts), chunk_rows):
        out[start : start + chunk_rows] = predictor.predict_proba(texts[start : start + chunk_rows])
    return out


def score_texts(texts: pd.Series, predictor: Predictor, *, max_chars: int,
                chunk_rows: int = DEFAULT_CHUNK_ROWS) -> pd.DataFrame:
    """One output row per text, on the same index: :data:`OUTPUT_COLUMNS`.

    Args:
        texts: the tweets (None or NaN for a missing value).
        predictor: the model, from :func:`api.predictor.load_predictor`.
        max_chars: longest text scored (the API's ``MAX_TEXT_CHARS``).
        chunk_rows: most texts in one predictor call.

    Returns:
        ``label`` (``negative``/``positive``), ``confidence`` (probability of that label), ``p_positive``,
        ``model``, ``version``, and ``reason`` (None when scored); label and probabilities are null where
        ``reason`` is set.
    """
    reasons = [problem(text, max_chars) for text in texts]
    keep = [i for i, reason in enumerate(reasons) if reason is None]
    proba = predict_in_chunks(predictor, [texts.iat[i] for i in keep], chunk_rows)
    labels: list[str | None] = [None] * len(texts)
    confidence = np.full(len(texts), math.nan)
    p_positive = np.full(len(texts), math.nan)
    if keep:
        best = proba.argmax(axis=1)
        for row, index in zip(keep, best.tolist(), strict=True):
            labels[row] = predictor.labels[index]
        # float32 → float64 as the API does (float(row[i])): the same numbers, not re-rounded ones.
        confidence[keep] = proba[np.arange(len(keep)), best].astype(np.float64)
        p_positive[keep] = proba[:, 1].astype(np.float64)
    return pd.DataFrame({
        "label": pd.Series(labels, index=texts.index, dtype=object),
        "confidence": pd.Series(confidence, index=texts.index),
        "p_positive": pd.Series(p_positive, index=texts.index),
        "model": predictor.name,
        "version": predictor.version,
        "reason": pd.Series(reasons, index=texts.index, dtype=object),
    }, index=texts.index)
