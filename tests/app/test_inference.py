"""Input checks, single and all-model predictions, CSV batches."""

from __future__ import annotations

import pandas as pd
import pytest

from app.inference import (
    EXAMPLE_TWEETS,
    MAX_TWEET_CHARS,
    CsvError,
    char_count,
    predict,
    predict_all,
    read_tweets_csv,
    score_frame,
    validate_tweet,
)
from tests.app.conftest import FakePredictor


@pytest.mark.parametrize("text, expected", [("", "empty"), ("   \n", "empty"), (None, "empty"),
                                            ("x" * (MAX_TWEET_CHARS + 1), "281 characters"), ("fine", None)])
def test_validate_tweet(text: str | None, expected: str | None) -> None:
    message = validate_tweet(text)
    assert (message is None) if expected is None else (expected in message)


def test_char_count() -> None:
    assert char_count("hello") == "5 / 280 characters"
    assert char_count(None) == "0 / 280 characters"
    assert "2 too many" in char_count("x" * 282)


def test_examples_fit_in_a_tweet() -> None:
    assert all(validate_tweet(t) is None for t in EXAMPLE_TWEETS)


def test_predict_and_predict_all() -> None:
    model = FakePredictor()
    result = predict(model, "I love this great crew")
    assert (result.label, result.model_name, result.model_version) == ("positive", "fake-lexicon", "7")
    assert result.confidence == pytest.approx(max(result.probabilities.values()))
    assert result.id != predict(model, "again").id  # each prediction gets its own feedback id
    table = predict_all([model, FakePredictor("other", aliases=())], "worst delay, lost my bag")
    assert list(table["model"]) == ["fake-lexicon", "other"] and set(table["label"]) == {"negative"}


def test_read_csv_with_a_text_header() -> None:
    frame = read_tweets_csv(b"id,Text\n1,hello there\n2,\"quoted, with comma\"\n", 10)
    assert list(frame["text"]) == ["hello there", "quoted, with comma"] and list(frame["id"]) == ["1", "2"]


def test_read_csv_sentiment140_layout_and_single_column() -> None:
    six = b'"0","1","Mon Apr 06 22:19:45 PDT 2009","NO_QUERY","someone","my own test tweet"\n'
    assert list(read_tweets_csv(six, 10)["text"]) == ["my own test tweet"]
    assert list(read_tweets_csv("first\nsecond 😀\n".encode(), 10)["text"]) == ["first", "second 😀"]
    assert list(read_tweets_csv("caf\xe9 latin-1\n".encode("latin-1"), 10)["text"]) == ["café latin-1"]


@pytest.mark.parametrize("data, message", [(b"", "empty"), (b"a,b,c\n1,2,3\n", "No text column"),
                                           (b"text\n", "no rows"), (b"text\n" + b"x\n" * 5, "limit is 3")])
def test_read_csv_errors(data: bytes, message: str) -> None:
    with pytest.raises(CsvError, match=message):
        read_tweets_csv(data, 3)


def test_score_frame_skips_empty_rows_flags_long_ones_and_reports_progress() -> None:
    frame = pd.DataFrame({"text": ["love it", "", "worst trip", "great " * 60]})
    shares: list[float] = []
    out = score_frame(FakePredictor(), frame, batch_size=2, progress=shares.append)
    assert list(out["label"]) == ["positive", "", "negative", "positive"]
    assert out["note"].tolist()[1] == "empty: not scored" and "longer than 280" in out["note"].tolist()[3]
    assert out["confidence"].isna().tolist() == [False, True, False, False]
    assert shares[-1] == 1.0 and shares == sorted(shares)
