"""VADER lexicon baseline: no training, a reference point for every learned model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from sentiment.preprocess import normalize_tweet


class VaderModel:
    """VADER's compound score in [-1, 1] mapped linearly to P(positive) in [0, 1]."""

    def __init__(self) -> None:
        self.analyzer = SentimentIntensityAnalyzer()

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        compound = np.array([self.analyzer.polarity_scores(normalize_tweet(t))["compound"] for t in texts],
                            dtype=np.float64).reshape(-1)
        p_pos = (compound + 1.0) / 2.0
        return np.column_stack([1.0 - p_pos, p_pos]).astype(np.float32)
