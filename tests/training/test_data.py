"""Readers for the three formats, cleaning counts, label errors and deterministic stratified splits."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from tests.training.conftest import synthetic_tweets, write_kaggle_csv
from training import config
from training.data import NEGATIVE_FILE, POSITIVE_FILE, DataFormatError, detect_format, load, sample, split


def test_kaggle_quoted_and_unquoted_read_alike(tmp_path: Path) -> None:
    rows = synthetic_tweets(20) + [('she said "hi", then left', 4)]
    quoted = load(write_kaggle_csv(tmp_path / "q.csv", rows, quote_all=True))
    plain = load(write_kaggle_csv(tmp_path / "p.csv", rows, quote_all=False))
    assert quoted.texts == plain.texts
    assert quoted.texts[-1] == 'she said "hi", then left'
    assert list(quoted.labels[:2]) == [0, 1]


def test_kaggle_is_latin1(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes(b'"4","1","d","NO_QUERY","u","caf\xe9 time \xa3 5"\n')
    assert load(path).texts == ["café time £ 5"]


def test_neutral_empty_duplicates_and_conflicts_are_dropped_and_counted(tmp_path: Path) -> None:
    rows = [("good day", 4), ("good day", 4), ("meh", 2), ("   ", 0), ("it is what it is", 0),
            ("it is what it is", 4), ("bad day", 0)]
    data = load(write_kaggle_csv(tmp_path / "d.csv", rows))
    assert data.texts == ["good day", "bad day"]
    assert data.counts == {"rows_read": 7, "neutral_dropped": 1, "empty_dropped": 1, "duplicates_dropped": 2,
                           "conflicting_dropped": 1, "rows_kept": 2}


@pytest.mark.parametrize("line, message", [
    ('"7","1","d","NO_QUERY","u","text"\n', "label '7'"),
    ('"4","1","d","u","text"\n', "expected 6 columns"),
])
def test_bad_rows_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text('"0","1","d","NO_QUERY","u","fine"\n' + line, encoding="latin-1")
    with pytest.raises(DataFormatError, match=rf"bad\.csv:2: .*{message}"):
        load(path)


def test_generic_csv(tmp_path: Path) -> None:
    path = tmp_path / "generic.csv"
    path.write_text("text,label\nlovely,positive\nawful,0\nok,neutral\nyay,4\n", encoding="utf-8")
    data = load(path)
    assert detect_format(path) == "generic"
    assert data.texts == ["lovely", "awful", "yay"] and list(data.labels) == [1, 0, 1]


def test_feedback_export_drops_the_formula_escape_but_a_generic_csv_keeps_its_quotes(tmp_path: Path) -> None:
    export = tmp_path / "reviewed.csv"
    export.write_text("label,ids,date,flag,user,text\n"
                      "0,a,d,NO_QUERY,feedback,'=SUM(A1:A9)\n"
                      "4,b,d,NO_QUERY,feedback,'@friend see you at the gate\n"
                      "4,c,d,NO_QUERY,feedback,''tis the season\n"
                      "0,d,d,NO_QUERY,feedback,no escape needed\n", encoding="utf-8")
    assert detect_format(export) == "feedback_export"
    assert load(export).texts == ["=SUM(A1:A9)", "@friend see you at the gate", "'tis the season", "no escape needed"]
    generic = tmp_path / "generic.csv"
    generic.write_text("text,label\n'tis the season,4\n", encoding="utf-8")
    assert load(generic).texts == ["'tis the season"]


def test_generic_csv_needs_its_columns(tmp_path: Path) -> None:
    path = tmp_path / "g.csv"
    path.write_text("tweet,label\nx,0\n", encoding="utf-8")
    # Without a "text" column the file is not the generic format; read as Kaggle it has too few columns.
    with pytest.raises(DataFormatError, match="g.csv:1"):
        load(path)


def test_two_file_format(tmp_path: Path) -> None:
    for name, texts in ((NEGATIVE_FILE, ["so sad", "ugh"]), (POSITIVE_FILE, ["yay", "so sad"])):
        with gzip.open(tmp_path / name, "wt", encoding="utf-8") as handle:
            handle.write("\n".join(texts) + "\n")
    data = load(tmp_path)
    assert data.texts == ["ugh", "yay"]
    assert data.counts["conflicting_dropped"] == 1


def test_missing_path_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="SENTIMENT140_DIR"):
        load(tmp_path / "nope.csv")


def test_split_is_deterministic_stratified_and_disjoint(tmp_path: Path) -> None:
    data = load(write_kaggle_csv(tmp_path / "d.csv", synthetic_tweets(400)))
    first, second = split(data, seed=3), split(data, seed=3)
    assert first.test.texts == second.test.texts and first.train.texts == second.train.texts
    assert split(data, seed=4).test.texts != first.test.texts
    parts = [set(first.train.texts), set(first.validation.texts), set(first.test.texts)]
    assert sum(map(len, parts)) == len(data) and len(set.union(*parts)) == len(data)
    for part in (first.validation, first.test):
        assert abs(part.labels.mean() - 0.5) <= 0.05
    assert len(sample(data, 100)) == 100 and abs(sample(data, 100).labels.mean() - 0.5) < 0.02


@pytest.mark.data
def test_real_files(shared_data: Path) -> None:
    data = load(shared_data)
    assert data.counts["rows_read"] == 100_000
    assert 99_000 < len(data) <= 100_000 and abs(data.labels.mean() - 0.5) < 0.01
    head_tail = load(shared_data / "training_head_tail_20k.csv")
    assert head_tail.counts["rows_read"] == 20_000 and set(np.unique(head_tail.labels)) == {0, 1}
    validation = load(shared_data / config.VALIDATION_RANDOM_FILE)
    assert validation.counts["rows_read"] == 4_683 and len(validation) >= 4_600
