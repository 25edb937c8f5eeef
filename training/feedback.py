"""Feedback for retraining: reviewed verdicts from the feedback store or from the Review page's CSV export.

Which rows teach the model something (``sentiment.feedback.training_rows`` decides): the rows a maintainer reviewed,
with the reviewed label, whether it confirms the user or corrects them. Unreviewed rows, thumbs up or down, are
dropped: anyone can write them, and one anonymous session's flood of thumbs-up once moved the retrained model.

Rows are keyed by their normalised text (``sentiment.preprocess.normalize_tweet``): repeated texts keep one row, texts seen
with both labels are dropped, and texts already in the Sentiment140 data (training, validation, test and
validation_random) are dropped so that the honest sets stay honest. Every drop is counted by reason.

The held-out slice is chosen by a hash of the normalised text, never by a random state: the same text always falls
on the same side, so successive retrainings compare on the same rows as the feedback grows.

The store, its schema and which label a row teaches belong to ``sentiment.feedback``: :func:`read_store` reads the
store through its ``training_rows`` (the same verdict-to-label rule the product's writer uses, ``implied_label``), and
``training/`` runs no SQL of its own.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sentiment.feedback import FeedbackRow, training_rows
from sentiment.preprocess import normalize_tweet
from training.data import Dataset, load

logger = logging.getLogger(__name__)

_HASH_SPACE = 1 << 32


@dataclass
class Feedback:
    """Feedback split into what is trained on and the stable held-out slice, with the counts behind it."""

    train: Dataset
    holdout: Dataset
    counts: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)


def key(text: str) -> str:
    """The text as the models see it: the identity used for duplicates, known texts and the slice."""
    return normalize_tweet(text).strip()


def in_holdout(text: str, share: float) -> bool:
    """True for the texts of the held-out slice: the first ``share`` of the sha256 space of the normalised text."""
    digest = hashlib.sha256(key(text).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") < share * _HASH_SPACE


def read_store(path: str | Path) -> tuple[list[FeedbackRow], Counter]:
    """Labelled rows of a feedback store (``sentiment.feedback.training_rows``), and the rows dropped by reason."""
    try:
        return training_rows(path)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{path} does not exist: set FEEDBACK_DB or pass --feedback-db (or --feedback-csv "
                                "with the Review page's export)") from error


def read_export(path: str | Path) -> tuple[list[FeedbackRow], Counter]:
    """Rows of the Review page's export (reviewed rows only), read by ``training.data.load``."""
    data = load(path)
    dropped = Counter({f"export_{k}": v for k, v in data.counts.items()
                       if k.endswith("_dropped") and v})
    return [FeedbackRow(t, int(y), "export") for t, y in zip(data.texts, data.labels, strict=True)], dropped


def known_keys(datasets: Iterable[Dataset]) -> set[str]:
    """Normalised texts of the data sets a feedback row must not repeat."""
    return {key(text) for data in datasets for text in data.texts}


def prepare(rows: list[FeedbackRow], known: set[str], holdout_share: float, dropped: Counter | None = None) -> Feedback:
    """Deduplicate, drop known and conflicting texts, and split off the stable held-out slice.

    Args:
        rows: labelled feedback, oldest first (a repeated text keeps its first row).
        known: normalised texts already in the training or evaluation data.
        holdout_share: share of the hash space held out.
        dropped: counts of rows dropped earlier (unreviewed verdicts), extended here.

    Returns:
        The train part, the held-out slice and the counts (``rows_read``, ``used``, ``trained``, ``held_out``,
        the kinds of used rows) with ``dropped`` by reason.
    """
    dropped = Counter(dropped or {})
    read = len(rows) + sum(dropped.values())
    first: dict[str, FeedbackRow] = {}
    conflicting: set[str] = set()
    for row in rows:
        text_key = key(row.text)
        if not text_key:
            dropped["empty"] += 1
            continue
        seen = first.setdefault(text_key, row)
        if seen is not row:
            if seen.label != row.label:
                conflicting.add(text_key)
            dropped["duplicate"] += 1
    kept = []
    for text_key, row in first.items():
        if text_key in conflicting:
            dropped["conflicting_labels"] += 1
        elif text_key in known:
            dropped["already_in_sentiment140_data"] += 1
        else:
            kept.append(row)
    train = [r for r in kept if not in_holdout(r.text, holdout_share)]
    holdout = [r for r in kept if in_holdout(r.text, holdout_share)]
    counts = {"rows_read": read,
              "used": len(kept), "trained": len(train), "held_out": len(holdout),
              **{f"used_{kind}": n for kind, n in sorted(Counter(r.kind for r in kept).items())}}
    return Feedback(_dataset(train, "feedback"), _dataset(holdout, "feedback holdout"), counts, dict(dropped))


def _dataset(rows: list[FeedbackRow], source: str) -> Dataset:
    return Dataset([r.text for r in rows], np.array([r.label for r in rows], dtype=np.int64), source)


def oversampled(data: Dataset, feedback: Dataset, times: int) -> Dataset:
    """``data`` followed by ``times`` copies of ``feedback``: how feedback weighs more in any family's training."""
    texts = data.texts + feedback.texts * times
    labels = np.concatenate([data.labels, np.tile(feedback.labels, times)]).astype(np.int64)
    return Dataset(texts, labels, f"{data.source} + {times}× feedback")
