"""Why a label: how much each word pushed the tweet towards positive or negative, measured with the model itself.

Leave-one-word-out occlusion: the tweet is scored again once per word, without that word, in the same call as the
tweet (the API's ``"explain": true``, the Predict page's "Why?"). A word's contribution is P(positive) of the tweet
minus P(positive) without it: above 0 it pushed towards positive, below 0 towards negative. The served int8 graphs
answer a text the same whatever is batched with it (decision 0007), so the texts of one explanation do not change
each other's answers. The cost is bounded: at most ``EXPLAIN_MAX_WORDS`` extra texts per explanation, and they count
against the model's queue bound and deadline like any text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Word:
    """One word of the tweet: where it is (character offsets) and how it moved P(positive)."""

    text: str
    start: int
    end: int
    contribution: float


@dataclass(frozen=True)
class Explanation:
    """The words explained, in tweet order, and how many the tweet had."""

    words: tuple[Word, ...]
    words_total: int
    method: str = "occlusion"

    @property
    def truncated(self) -> bool:
        return len(self.words) < self.words_total

    def strongest(self, n: int = 5) -> tuple[Word, ...]:
        """The ``n`` words with the largest effect either way, strongest first."""
        return tuple(sorted(self.words, key=lambda w: -abs(w.contribution))[:n])


def occlusions(text: str, max_words: int) -> tuple[list[re.Match[str]], list[str]]:
    """The words of ``text`` to explain (the first ``max_words``) and, for each, the text without it."""
    words = list(_WORD.finditer(text))
    explained = words[:max_words]
    others = [w.group() for w in words]
    texts = [" ".join(others[:i] + others[i + 1:]) for i in range(len(explained))]
    return words, texts


def explain(text: str, words: list[re.Match[str]], p_positive: np.ndarray) -> Explanation:
    """The explanation of ``text`` from P(positive) of the tweet (first) and of each occlusion (in word order)."""
    full = float(p_positive[0])
    explained = [Word(m.group(), m.start(), m.end(), round(full - float(p), 6))
                 for m, p in zip(words, p_positive[1:], strict=False)]
    return Explanation(tuple(explained), len(words))
