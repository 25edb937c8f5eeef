"""A fixed held-out fold of each out-of-domain set, so that a model may learn from the rest of it.

The out-of-domain sets (``OUT_OF_DOMAIN_DIR``) are development sets. A small human-labelled stage can train on one
of them, the way an airline would teach the model its own labelled tweets, but only on its **train fold**; the
**held-out fold** is never trained on, and a model that saw any of a set is reported on that set's held-out fold only.

- The fold of a tweet is a salted sha256 of its normalised text (:func:`training.feedback.key`): the same text is
  always on the same side, whichever file or order it comes in. The salt keeps it independent of the retraining's
  own feedback slice (``training.feedback.in_holdout``), which then takes its share of a train fold too.
- :func:`guard` is what ``training.retrain`` applies to the feedback it reads: rows in a held-out fold are dropped
  (reason ``in_out_of_domain_heldout_fold``), and each set that any remaining row comes from is scored on its
  held-out fold, named ``<set>_heldout``.
- ``python -m training.evaluate_ood --write-train-folds FILE`` writes the train folds as a ``text,label`` CSV that
  ``make retrain RETRAIN_ARGS="--feedback-csv FILE"`` reads, and reports every model on the held-out folds too.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from training.data import Dataset
from training.feedback import Feedback, key

HELDOUT_SHARE = 0.5
_SALT = b"out-of-domain held-out fold\0"
_HASH_SPACE = 1 << 32
DROP_REASON = "in_out_of_domain_heldout_fold"


def in_heldout_fold(text: str) -> bool:
    """True for the tweets of an out-of-domain set that no model may train on."""
    digest = hashlib.sha256(_SALT + key(text).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") < HELDOUT_SHARE * _HASH_SPACE


def heldout_name(name: str) -> str:
    return f"{name}_heldout"


def split(data: Dataset) -> tuple[Dataset, Dataset]:
    """``(train fold, held-out fold)`` of an out-of-domain set."""
    heldout = [in_heldout_fold(text) for text in data.texts]
    train = [i for i, h in enumerate(heldout) if not h]
    held = [i for i, h in enumerate(heldout) if h]
    return (Dataset([data.texts[i] for i in train], data.labels[train], f"{data.source} (train fold)"),
            Dataset([data.texts[i] for i in held], data.labels[held], f"{data.source} (held-out fold)"))


def heldout_sets(sets: Mapping[str, Dataset]) -> dict[str, Dataset]:
    """``<set>_heldout`` → the held-out fold of each set (none for a set whose fold is empty)."""
    folds = {heldout_name(name): split(data)[1] for name, data in sets.items()}
    return {name: data for name, data in folds.items() if len(data)}


def write_train_folds(sets: Mapping[str, Dataset], path: Path) -> dict[str, int]:
    """Write the train folds of ``sets`` as one ``text,label`` CSV; return the rows written per set."""
    written: dict[str, int] = {}
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["text", "label"])
        for name, data in sets.items():
            train = split(data)[0]
            writer.writerows(zip(train.texts, train.labels.tolist(), strict=True))
            written[name] = len(train)
    return written


def _keep(data: Dataset, keep: list[bool]) -> Dataset:
    rows = [i for i, k in enumerate(keep) if k]
    return Dataset([data.texts[i] for i in rows], data.labels[rows], data.source)


def guard(feedback: Feedback, sets: Mapping[str, Dataset]) -> tuple[Feedback, dict[str, Dataset], list[str]]:
    """Keep a retraining honest on the out-of-domain sets.

    Returns:
        The feedback without the rows of any held-out fold (counted under :data:`DROP_REASON`); the sets to report,
        where each set that the remaining feedback draws from is replaced by its held-out fold (``<set>_heldout``);
        and the names of those sets.
    """
    keys = {name: {key(text) for text in data.texts} for name, data in sets.items()}
    protected = set().union(*(k for k in keys.values())) if keys else set()
    dropped = Counter(feedback.dropped)
    parts = []
    for part in (feedback.train, feedback.holdout):
        keep = [not (key(text) in protected and in_heldout_fold(text)) for text in part.texts]
        dropped[DROP_REASON] += keep.count(False)
        parts.append(_keep(part, keep) if not all(keep) else part)
    if not dropped[DROP_REASON]:
        del dropped[DROP_REASON]
    train, holdout = parts
    used = {key(text) for text in train.texts + holdout.texts}
    trained_on = [name for name, k in keys.items() if k & used]
    counts = {**feedback.counts, "used": len(train) + len(holdout), "trained": len(train), "held_out": len(holdout)}
    if trained_on:
        counts["from_out_of_domain_train_folds"] = sum(len(keys[name] & used) for name in trained_on)
    reported = {(heldout_name(name) if name in trained_on else name): (split(data)[1] if name in trained_on else data)
                for name, data in sets.items()}
    return Feedback(train, holdout, counts, dict(dropped)), reported, trained_on
