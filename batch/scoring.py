"""Score a column of tweets with a predictor: the part of batch scoring that needs no Spark.

Spark's ``mapInPandas`` (``batch/spark.py``) calls :func:`score_texts` on every Arrow batch it hands a Python
worker. The scoring itself is the engine's (:func:`sentiment.scoring.score`): rows that the API would refuse
(missing, nothing visible, over ``MAX_TEXT_CHARS``) get no label and a ``reason``: they are kept, and they never
fail the job. So are the rows the reader flags as :data:`MALFORMED` (a CSV row with more or fewer fields than its
header or layout), which are never sent to the model.
"""

from __future__ import annotations

import pandas as pd

from sentiment.predictor import Predictor
from sentiment.scoring import MALFORMED, OUTPUT_COLUMNS, score

__all__ = ["DEFAULT_CHUNK_ROWS", "MALFORMED", "OUTPUT_COLUMNS", "default_chunk_rows", "score_texts"]

# The classical exports densify TF-IDF: 256 rows x 200k features x 4 bytes is about 200 MB per call, and Spark's
# Arrow batches hold 10,000 rows by default. Every predictor call is cut to this many rows at most.
DEFAULT_CHUNK_ROWS = 256


def default_chunk_rows(predictor: Predictor) -> int:
    """Rows per predictor call when none is asked for.

    A dynamically quantised int8 graph (an export made before decision 0007 and not re-quantised with
    ``make quantize``) scales its activations over each call, so a tweet's probability moves with its batch-mates
    (up to 0.06 measured on made-up tweets): one tweet per call gives every tweet the answer the API gives it alone.
    Static int8, fp32 and classical graphs answer the same in any batch.
    """
    dynamic = predictor.variant == "int8" and predictor.metadata.get("quantization", {}).get("activations") != "static"
    return 1 if dynamic else DEFAULT_CHUNK_ROWS


def score_texts(texts: pd.Series, predictor: Predictor, *, max_chars: int,
                chunk_rows: int = DEFAULT_CHUNK_ROWS, malformed: pd.Series | None = None) -> pd.DataFrame:
    """One output row per text, on the same index: :data:`OUTPUT_COLUMNS`.

    Args:
        texts: the tweets (None or NaN for a missing value).
        predictor: the model, from :func:`sentiment.predictor.load_predictor`.
        max_chars: longest text scored (``MAX_TEXT_CHARS``).
        chunk_rows: most texts in one predictor call.
        malformed: True for the rows the reader could not split into their columns: they get the reason
            :data:`MALFORMED` whatever their text, and never reach the model.

    Returns:
        ``label`` (``negative``/``positive``), ``confidence`` (probability of that label), ``p_positive``,
        ``model``, ``version``, and ``reason`` (None when scored); label and probabilities are null where
        ``reason`` is set.
    """
    flags = None if malformed is None else [bool(flag) for flag in malformed.tolist()]
    scores = score(texts.tolist(), predictor.predict_proba, max_chars=max_chars, chunk_rows=chunk_rows,
                   malformed=flags)
    columns = scores.columns(predictor.name, predictor.version)
    return pd.DataFrame({name: pd.Series(values, index=texts.index, dtype=object if name in ("label", "reason")
                                         else None) for name, values in columns.items()}, index=texts.index)
