"""Sentiment140 readers, cleaning and deterministic stratified splits.

Four formats are read:
- the Kaggle file (``training.1600000.processed.noemoticon.csv``): no header, six columns
  ``target,ids,date,flag,user,text``, latin-1, fields quoted or not;
- the 100k two-file format: a folder with ``tweets_100k_negative.txt.gz`` and ``tweets_100k_positive.txt.gz``,
  one UTF-8 tweet per line;
- the app's export of reviewed feedback: the same six columns under the header ``label,ids,date,flag,user,text``,
  UTF-8, each cell escaped against spreadsheet formulas (a leading single quote, which the reader drops);
- a generic CSV with a header holding ``text`` and ``label`` columns.

Labels are returned as 0 (negative) / 1 (positive). Only text and label are kept in memory, so the 1.6M-row
file is read as a stream.
"""

from __future__ import annotations

import csv
import gzip
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

logger = logging.getLogger(__name__)

NEGATIVE_FILE = "tweets_100k_negative.txt.gz"
POSITIVE_FILE = "tweets_100k_positive.txt.gz"
# Raw label spellings accepted in files; None marks neutral rows, which binary sentiment drops.
_LABELS: dict[str, int | None] = {
    "0": 0, "4": 1, "2": None, "1": 1,
    "negative": 0, "positive": 1, "neutral": None,
}
_KAGGLE_COLUMNS = 6
_KAGGLE_TEXT = 5
# Written by ``sentiment.feedback.FeedbackStore.export_reviewed_csv`` (``EXPORT_COLUMNS`` and ``CELL_ESCAPE`` there).
# The app also escapes every cell that already starts with the escape, so dropping one leading quote is always right.
_FEEDBACK_EXPORT_HEADER = ["label", "ids", "date", "flag", "user", "text"]
_CELL_ESCAPE = "'"


class DataFormatError(ValueError):
    """A data file that cannot be read, with the file and line at fault."""


@dataclass
class Dataset:
    """Tweets and their binary labels (1 = positive)."""

    texts: list[str]
    labels: np.ndarray
    source: str = ""
    counts: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, index: np.ndarray) -> Dataset:
        return Dataset([self.texts[i] for i in index], self.labels[index], self.source)


def _parse_label(raw: str, path: Path, line: int) -> int | None:
    key = raw.strip().strip('"').lower()
    if key not in _LABELS:
        raise DataFormatError(
            f"{path}:{line}: label {raw!r} is not one of 0 (negative), 2 (neutral), 4 (positive)"
        )
    return _LABELS[key]


def _read_kaggle(path: Path) -> Iterator[tuple[str, str, int]]:
    with path.open(encoding="latin-1", newline="") as handle:
        reader = csv.reader(handle)
        for row in reader:
            if not row:
                continue
            if len(row) != _KAGGLE_COLUMNS:
                raise DataFormatError(
                    f"{path}:{reader.line_num}: expected {_KAGGLE_COLUMNS} columns "
                    f"(target,ids,date,flag,user,text), found {len(row)}"
                )
            yield row[0], row[_KAGGLE_TEXT], reader.line_num


def _read_generic(path: Path) -> Iterator[tuple[str, str, int]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"text", "label"} - set(reader.fieldnames or [])
        if missing:
            raise DataFormatError(f"{path}:1: header lacks column(s) {sorted(missing)}")
        for row in reader:
            if row["text"] is None or row["label"] is None:
                raise DataFormatError(f"{path}:{reader.line_num}: row has too few columns")
            yield row["label"], row["text"], reader.line_num


def _read_feedback_export(path: Path) -> Iterator[tuple[str, str, int]]:
    for label, text, line in _read_generic(path):
        yield label, text.removeprefix(_CELL_ESCAPE), line


def _read_two_file(folder: Path) -> Iterator[tuple[str, str, int]]:
    for name, label in ((NEGATIVE_FILE, "0"), (POSITIVE_FILE, "4")):
        path = folder / name
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: the 100k format needs {NEGATIVE_FILE} and {POSITIVE_FILE}")
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                yield label, line.rstrip("\n"), number


def detect_format(path: Path) -> str:
    """Return ``two_file``, ``feedback_export``, ``generic`` or ``kaggle`` for a data path."""
    if path.is_dir():
        return "two_file"
    with path.open(encoding="latin-1") as handle:
        header = handle.readline().strip().lower().replace('"', "").split(",")
    if header == _FEEDBACK_EXPORT_HEADER:
        return "feedback_export"
    return "generic" if {"text", "label"} <= set(header) else "kaggle"


def load(path: str | Path) -> Dataset:
    """Read a labelled data set in any supported format, dropping neutral, empty and duplicate rows.

    Exact duplicates (same text, same label) keep their first row; a text seen with both labels is dropped
    altogether because its label is noise. Every drop is counted in ``Dataset.counts``.

    Args:
        path: a Kaggle-format, feedback-export or generic CSV file, or a folder in the 100k two-file format.

    Returns:
        The cleaned data set.

    Raises:
        FileNotFoundError: the path does not exist.
        DataFormatError: a row is malformed or has an unknown label (the message names file and line).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist: set SENTIMENT140_DIR or pass --data-dir to the folder holding the data"
        )
    fmt = detect_format(path)
    readers = {"two_file": _read_two_file, "feedback_export": _read_feedback_export, "generic": _read_generic,
               "kaggle": _read_kaggle}
    rows = readers[fmt](path)
    counts = {"rows_read": 0, "neutral_dropped": 0, "empty_dropped": 0, "duplicates_dropped": 0,
              "conflicting_dropped": 0}
    first_label: dict[str, int] = {}
    conflicting: set[str] = set()
    for raw_label, text, line in rows:
        counts["rows_read"] += 1
        label = _parse_label(raw_label, path, line)
        if label is None:
            counts["neutral_dropped"] += 1
            continue
        text = text.strip()
        if not text:
            counts["empty_dropped"] += 1
            continue
        seen = first_label.setdefault(text, label)
        if seen != label:
            conflicting.add(text)
    # A second pass over the dict keeps memory at one entry per distinct text, even for 1.6M rows.
    texts = [t for t in first_label if t not in conflicting]
    labels = np.fromiter((first_label[t] for t in texts), dtype=np.int64, count=len(texts))
    kept_rows = counts["rows_read"] - counts["neutral_dropped"] - counts["empty_dropped"]
    counts["conflicting_dropped"] = len(conflicting)
    counts["duplicates_dropped"] = kept_rows - len(first_label)
    counts["rows_kept"] = len(texts)
    logger.info("loaded %s (%s): %s", path, fmt, counts)
    return Dataset(texts, labels, str(path), counts)


@dataclass
class Splits:
    train: Dataset
    validation: Dataset
    test: Dataset


def split(data: Dataset, *, validation_size: float = 0.05, test_size: float = 0.05, seed: int = 42) -> Splits:
    """Deterministic stratified train/validation/test split.

    Args:
        data: the cleaned data set.
        validation_size: share of rows for validation (model selection).
        test_size: share of rows held out for the final report.
        seed: random seed; the same seed and data give the same split.

    Returns:
        The three subsets.
    """
    index = np.arange(len(data))
    rest, test = train_test_split(index, test_size=test_size, stratify=data.labels, random_state=seed)
    train, validation = train_test_split(
        rest, test_size=validation_size / (1 - test_size), stratify=data.labels[rest], random_state=seed
    )
    return Splits(data.subset(np.sort(train)), data.subset(np.sort(validation)), data.subset(np.sort(test)))


def sample(data: Dataset, n: int, seed: int = 42) -> Dataset:
    """A stratified sample of ``n`` rows (all rows when ``n`` is larger)."""
    if n >= len(data):
        return data
    index, _ = train_test_split(np.arange(len(data)), train_size=n, stratify=data.labels, random_state=seed)
    return data.subset(np.sort(index))


def load_splits(data_path: str | Path, seed: int = 42) -> Splits:
    """Load the training data (any supported format) and split it into train/validation/test."""
    return split(load(data_path), seed=seed)
