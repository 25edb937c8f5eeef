"""The held-out fold of the out-of-domain sets (``training.folds``): fixed by text, never trained on."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.data import Dataset, load
from training.feedback import Feedback, in_holdout
from training.folds import DROP_REASON, guard, heldout_name, in_heldout_fold, split, write_train_folds


def _set(n: int, tag: str) -> Dataset:
    texts = [f"@airline flight {tag}{i} was {'great' if i % 2 else 'late'}" for i in range(n)]
    return Dataset(texts, np.array([i % 2 for i in range(n)], dtype=np.int64), tag)


def _feedback(texts: list[str], labels: list[int]) -> Feedback:
    train = [i for i, t in enumerate(texts) if not in_holdout(t, 0.2)]
    held = [i for i, t in enumerate(texts) if in_holdout(t, 0.2)]
    part = lambda rows: Dataset([texts[i] for i in rows], np.array([labels[i] for i in rows], dtype=np.int64), "f")  # noqa: E731
    return Feedback(part(train), part(held), {"used": len(texts), "trained": len(train), "held_out": len(held)}, {})


def test_the_fold_depends_on_the_text_only_and_splits_about_half() -> None:
    data = _set(2000, "a")
    train, heldout = split(data)
    assert len(train) + len(heldout) == 2000 and 900 < len(heldout) < 1100
    assert not set(train.texts) & set(heldout.texts)
    assert in_heldout_fold(heldout.texts[0]) and in_heldout_fold(f"  {heldout.texts[0]}  ")
    reversed_data = Dataset(data.texts[::-1], data.labels[::-1], "reversed")
    assert set(split(reversed_data)[1].texts) == set(heldout.texts)
    # Independent of the retraining's own feedback slice, which must still get its share of a train fold.
    assert 0.1 < np.mean([in_holdout(t, 0.2) for t in train.texts]) < 0.3


def test_guard_drops_held_out_rows_and_reports_the_set_trained_on_by_its_held_out_fold() -> None:
    airline, other = _set(400, "air"), _set(50, "other")
    train_fold, heldout_fold = split(airline)
    leaked = heldout_fold.texts[:7]
    texts = train_fold.texts + leaked + ["a tweet from no set at all"]
    feedback = _feedback(texts, [1] * len(texts))

    guarded, reported, trained_on = guard(feedback, {"airline_dev": airline, "tweeteval_validation": other})

    kept = set(guarded.train.texts) | set(guarded.holdout.texts)
    assert not kept & set(heldout_fold.texts) and guarded.dropped == {DROP_REASON: 7}
    assert len(kept) == len(train_fold) + 1 and guarded.counts["used"] == len(kept)
    assert guarded.counts["from_out_of_domain_train_folds"] == len(train_fold)
    assert trained_on == ["airline_dev"]
    assert set(reported) == {heldout_name("airline_dev"), "tweeteval_validation"}
    assert reported[heldout_name("airline_dev")].texts == heldout_fold.texts
    assert reported["tweeteval_validation"] is other


def test_feedback_from_no_set_changes_nothing() -> None:
    sets = {"airline_dev": _set(40, "air")}
    feedback = _feedback(["my own tweet", "another one"], [0, 1])
    guarded, reported, trained_on = guard(feedback, sets)
    assert guarded.dropped == {} and trained_on == [] and reported == sets


def test_the_train_folds_file_is_what_retrain_reads(tmp_path: Path) -> None:
    sets = {"airline_dev": _set(300, "air"), "tweeteval_validation": _set(100, "tw")}
    written = write_train_folds(sets, tmp_path / "folds.csv")
    loaded = load(tmp_path / "folds.csv")
    assert written == {name: len(split(data)[0]) for name, data in sets.items()}
    assert len(loaded) == sum(written.values()) and not any(in_heldout_fold(t) for t in loaded.texts)
    expected = {}
    for data in sets.values():
        train = split(data)[0]
        expected |= {t: int(y) for t, y in zip(train.texts, train.labels, strict=True)}
    assert {t: int(y) for t, y in zip(loaded.texts, loaded.labels, strict=True)} == expected
