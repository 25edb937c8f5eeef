"""Classical models: TF-IDF features + LogisticRegression, Complement NB or a calibrated linear SVM.

The vectoriser is fitted once; a small grid over each classifier's regularisation is searched on the
validation split. The settings keep the pipeline convertible by skl2onnx with exact parity: a token
pattern that Python's ``re`` and ONNX Runtime's RE2 read alike, and binary term frequencies
(skl2onnx's TfIdfVectorizer does not reproduce ``sublinear_tf``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.naive_bayes import ComplementNB
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from sentiment.preprocess import normalize_tweet
from training.data import Dataset

logger = logging.getLogger(__name__)

# Apostrophes stay inside tokens so that negations ("don't", "can't") survive as features.
TOKEN_PATTERN = r"[a-zA-Z0-9_']+"


@dataclass(frozen=True)
class ClassicalSpec:
    """A classifier family and the grid searched for it."""

    name: str
    display_name: str
    build: Callable[..., ClassifierMixin]
    grid: list[dict[str, Any]]


SPECS: dict[str, ClassicalSpec] = {
    "tfidf-lr": ClassicalSpec("tfidf-lr", "TF-IDF + Logistic Regression",
                              lambda seed, **p: LogisticRegression(max_iter=2000, random_state=seed, **p),
                              [{"C": c} for c in (0.5, 1.0, 2.0, 4.0)]),
    "tfidf-cnb": ClassicalSpec("tfidf-cnb", "TF-IDF + Complement Naive Bayes",
                               lambda seed, **p: ComplementNB(**p),
                               [{"alpha": a} for a in (0.1, 0.3, 1.0)]),
    "tfidf-svm": ClassicalSpec("tfidf-svm", "TF-IDF + linear SVM (sigmoid-calibrated)",
                               lambda seed, **p: CalibratedClassifierCV(
                                   LinearSVC(random_state=seed, **p), method="sigmoid", cv=3),
                               [{"C": c} for c in (0.05, 0.1, 0.3)]),
}


@dataclass
class VectorizerParams:
    ngram_max: int = 2
    min_df: int = 2
    max_features: int = 200_000

    def build(self) -> TfidfVectorizer:
        return TfidfVectorizer(ngram_range=(1, self.ngram_max), min_df=self.min_df,
                               max_features=self.max_features, token_pattern=TOKEN_PATTERN,
                               lowercase=True, binary=True, dtype=np.float32)


@dataclass
class ClassicalResult:
    """The fitted pipeline and what the search saw."""

    pipeline: Pipeline
    params: dict[str, Any]
    search: list[dict[str, Any]] = field(default_factory=list)
    fit_seconds: float = 0.0


class PipelineModel:
    """Wraps a fitted pipeline with the shared ``predict_proba(raw_texts)`` contract."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.pipeline.predict_proba([normalize_tweet(t) for t in texts]).astype(np.float32)


def train(spec: ClassicalSpec, train_set: Dataset, validation: Dataset, *,
          vectorizer: VectorizerParams | None = None, seed: int = 42) -> ClassicalResult:
    """Fit the vectoriser once, search the classifier grid on ``validation``, return the best pipeline.

    Args:
        spec: which classifier family, with its grid.
        train_set: training tweets (raw).
        validation: tweets used to choose the grid point (raw).
        vectorizer: TF-IDF settings.
        seed: random seed of the classifiers.

    Returns:
        The best pipeline (vectoriser + classifier, refitted on nothing new: it is the fitted candidate).
    """
    vectorizer_params = vectorizer or VectorizerParams()
    started = time.perf_counter()
    tfidf = vectorizer_params.build()
    x_train = tfidf.fit_transform([normalize_tweet(t) for t in train_set.texts])
    x_val = tfidf.transform([normalize_tweet(t) for t in validation.texts])
    logger.info("%s: %d features from %d tweets in %.1f s", spec.name, x_train.shape[1], x_train.shape[0],
                time.perf_counter() - started)
    best, best_score, search = None, -1.0, []
    for point in spec.grid:
        clf = spec.build(seed, **point).fit(x_train, train_set.labels)
        score = float(accuracy_score(validation.labels, clf.predict(x_val)))
        search.append({**point, "validation_accuracy": score})
        logger.info("%s %s: validation accuracy %.4f", spec.name, point, score)
        if score > best_score:
            best, best_score, best_point = clf, score, point
    pipeline = Pipeline([("tfidf", tfidf), ("clf", best)])
    params = {"classifier": spec.name, **{f"clf_{k}": v for k, v in best_point.items()},
              **{f"tfidf_{k}": v for k, v in vars(vectorizer_params).items()},
              "token_pattern": TOKEN_PATTERN, "binary_tf": True, "features": x_train.shape[1]}
    return ClassicalResult(pipeline, params, search, time.perf_counter() - started)
