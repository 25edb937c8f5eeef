"""The scoring rules: the text check, probabilities to a label (P = 0.5 is positive), and chunked scoring."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sentiment.scoring import (
    EMPTY,
    MISSING,
    OUTPUT_COLUMNS,
    TOO_LONG,
    check_text,
    describe_problem,
    positive_mask,
    score,
    to_labels,
)


@pytest.mark.parametrize(("text", "reason"), [
    (None, MISSING), (float("nan"), MISSING), ("", EMPTY), ("   \t", EMPTY), ("&nbsp;", EMPTY),
    ("\u200b\u2060", EMPTY), ("x" * 11, TOO_LONG), ("x" * 10, None), ("ok 👍", None),
])
def test_check_text_follows_the_api_checks(text: object, reason: str | None) -> None:
    assert check_text(text, max_chars=10) == reason


def test_half_is_positive_everywhere() -> None:
    proba = np.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]], dtype=np.float32)
    labels, confidence = to_labels(proba)
    assert labels == ["positive", "negative", "positive"]  # argmax would say negative at 0.5
    np.testing.assert_allclose(confidence, [0.5, 0.9, 0.8], rtol=1e-6)
    assert confidence.dtype == np.float64
    assert positive_mask(proba[:, 1]).tolist() == [1, 0, 1]
    assert to_labels(np.empty((0, 2)))[0] == []


def test_score_chunks_keeps_order_and_explains_skipped_rows() -> None:
    calls: list[int] = []

    def model(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        p = np.array([0.9 if "good" in t else 0.1 for t in texts], dtype=np.float32)
        return np.stack([1 - p, p], axis=1)

    texts = [f"good {i}" if i % 2 else f"bad {i}" for i in range(10)] + [None, " ", "x" * 50]
    progress: list[tuple[int, int]] = []
    scores = score(texts, model, max_chars=20, chunk_rows=4, on_chunk=lambda done, total: progress.append((done, total)))
    assert calls == [4, 4, 2]
    assert progress == [(4, 10), (8, 10), (10, 10)]
    assert scores.label[:4] == ["negative", "positive", "negative", "positive"]
    assert scores.label[10:] == [None, None, None] and scores.reason[10:] == [MISSING, EMPTY, TOO_LONG]
    assert all(math.isnan(v) for v in scores.p_positive[10:])
    assert list(scores.columns("m", "1")) == list(OUTPUT_COLUMNS)
    with pytest.raises(ValueError, match="chunk_rows"):
        score(texts, model, max_chars=20, chunk_rows=0)


def test_problems_are_explained_in_words() -> None:
    assert "limit is 1,000" in describe_problem(TOO_LONG, 1000, 1200)
    assert "nothing to classify" in describe_problem(EMPTY, 1000)
