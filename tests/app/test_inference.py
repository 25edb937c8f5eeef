"""Input checks, single and all-model predictions, CSV batches."""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

from app.inference import (
    EXAMPLE_TWEETS,
    MAX_TWEET_CHARS,
    CsvError,
    NoTextColumnError,
    TextColumn,
    char_count,
    predict,
    predict_all,
    read_tweets_csv,
    score_frame,
    scored_csv,
    validate_tweet,
)
from sentiment.batching import DeadlineError, QueueFullError
from tests.app.conftest import FakePredictor


@pytest.mark.parametrize("text, expected", [("", "empty"), ("   \n", "empty"), (None, "empty"),
                                            ("\u200b", "nothing visible"), ("x" * (MAX_TWEET_CHARS + 1), None),
                                            ("x" * 1001, "1,001 characters"), ("fine", None)])
def test_validate_tweet_is_the_api_check(text: str | None, expected: str | None) -> None:
    """The page accepts what the API accepts: up to MAX_TEXT_CHARS, and something visible (280 was the page's own)."""
    message = validate_tweet(text, 1000)
    assert (message is None) if expected is None else (expected in message)


def test_char_count_guides_to_a_tweet_and_refuses_past_the_limit() -> None:
    assert char_count("hello", 1000) == "5 / 280 characters"
    assert char_count(None, 1000) == "0 / 280 characters"
    # Said with an icon and bold words, not a colour (orange and red captions failed WCAG AA contrast).
    assert "longer than a tweet" in char_count("x" * 282, 1000) and ":orange[" not in char_count("x" * 282, 1000)
    assert ":material/" in char_count("x" * 282, 1000) and ":red[" not in char_count("x" * 1002, 1000)
    assert "2 over the limit of 1,000" in char_count("x" * 1002, 1000)


def test_examples_fit_in_a_tweet() -> None:
    assert all(validate_tweet(t, MAX_TWEET_CHARS) is None for t in EXAMPLE_TWEETS)


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
    frame = pd.DataFrame({"text": ["love it", "", "worst trip", "great " * 60, "x" * 1001]})
    shares: list[float] = []
    out = score_frame(FakePredictor(), frame, max_chars=1000, batch_size=2,
                      progress=lambda share, _: shares.append(share))
    # The engine's one layout: the input columns, then label, confidence, p_positive, model, version, reason.
    assert list(out.columns) == ["text", "label", "confidence", "p_positive", "model", "version", "reason"]
    assert list(out["label"]) == ["positive", None, "negative", "positive", None]
    assert out["reason"].tolist() == [None, "empty", None, None, "too_long"]
    assert out["confidence"].isna().tolist() == [False, True, False, False, True]
    assert set(out["model"]) == {"fake-lexicon"} and set(out["version"]) == {"7"}
    assert shares[-1] == 1.0 and shares == sorted(shares)


# -- uploads read as a stream (audit finding 8) ------------------------------------------------------------------
class CountingUpload(io.BytesIO):
    """An uploaded file (Streamlit's ``UploadedFile`` is a ``BytesIO``) that counts the bytes read from it."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk

    def read1(self, size: int = -1) -> bytes:
        chunk = super().read1(size)
        self.bytes_read += len(chunk)
        return chunk

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def, override]
        count = super().readinto(buffer)
        self.bytes_read += count
        return count


def one_column_file(rows: int) -> bytes:
    return "".join(f"made-up tweet number {i} about a late flight\n" for i in range(rows)).encode()


def test_a_file_far_over_the_row_limit_is_refused_after_reading_about_the_limit() -> None:
    upload = CountingUpload(one_column_file(200_000))  # 9 MB, 200,000 rows
    with pytest.raises(CsvError, match="limit is 100"):
        read_tweets_csv(upload, 100)
    # 101 rows are 5 KB; what was read beyond them is the encoding sniff and the decoder's buffer.
    assert upload.bytes_read < 256 * 1024, upload.bytes_read
    assert not upload.closed  # the caller's file stays usable


def test_memory_of_a_refused_file_is_bounded_by_the_row_limit_not_the_file_size() -> None:
    data = b"ok\n" * 400_000  # 1.2 MB of one-column rows: a whole read made about 40 MB of lists
    tracemalloc.start()
    try:
        with pytest.raises(CsvError, match="limit is 100"):
            read_tweets_csv(data, 100)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * 1024 * 1024, peak


@pytest.mark.parametrize("names", [lambda i: "c", lambda i: f"c{i}"], ids=["same-names", "distinct-names"])
def test_a_header_of_thousands_of_columns_is_refused_before_rows_are_read(names) -> None:
    """Audit: a 132 kB upload (65,000 header columns, short rows) raised the page's memory by 1.6 GB."""
    header = ",".join(["text", *(names(i) for i in range(65_000))]).encode()
    data = header + b"\n" + b"a tweet,1\n" * 1_000
    tracemalloc.start()
    try:
        with pytest.raises(CsvError, match=r"65,001 columns; a file of tweets has at most 64|longer than 131,072"):
            read_tweets_csv(data, 10_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 * 1024 * 1024, peak


def test_memory_of_the_widest_accepted_file_is_bounded() -> None:
    """64 columns and 10,000 rows (the row limit) of a 1 MB file stay far under the 100 MB budget."""
    header = ",".join(["text", *(f"c{i}" for i in range(63))]).encode()
    data = header + b"\n" + (b"a tweet" + b",x" * 63 + b"\n") * 10_000
    tracemalloc.start()
    try:
        frame = read_tweets_csv(data, 10_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert frame.shape == (10_000, 64)
    assert peak < 100 * 1024 * 1024, peak


@pytest.mark.parametrize("data", [
    b'text\n"' + b"x" * 200_000 + b'"\n',  # a quoted cell over the csv module's field limit
    b"y" * 2_000_000,  # one 2 MB line without a newline
], ids=["long-quoted-cell", "long-line"])
def test_an_overlong_cell_or_line_is_a_clear_csv_error(data: bytes) -> None:
    with pytest.raises(CsvError, match="longer than"):
        read_tweets_csv(data, 10)


@pytest.mark.parametrize("data, texts", [
    (b"id,Text\n1,hello there\n2,\"quoted, with comma\"\n", ["hello there", "quoted, with comma"]),
    (b'"0","1","Mon Apr 06 22:19:45 PDT 2009","NO_QUERY","someone","my own test tweet"\n', ["my own test tweet"]),
    ("\ufefffirst\r\nsecond \U0001f600\r\n".encode(), ["first", "second \U0001f600"]),
    ("caf\xe9 latin-1\n".encode("latin-1"), ["caf\xe9 latin-1"]),
    (b"text\n\"two\nlines\"\n\nthird\n", ["two\nlines", "third"]),
], ids=["header", "sentiment140", "utf-8-bom-crlf", "latin-1", "multiline-cell"])
def test_accepted_formats_from_an_uploaded_file(data: bytes, texts: list[str]) -> None:
    upload = CountingUpload(data)
    assert list(read_tweets_csv(upload, 10)["text"]) == texts
    assert list(read_tweets_csv(data, 10)["text"]) == texts


def test_a_file_that_stops_being_utf8_after_the_sniffed_prefix_is_read_as_latin1() -> None:
    data = ("\xe9t\xe9\n" * 30_000).encode() + "caf\xe9\n".encode("latin-1")
    frame = read_tweets_csv(CountingUpload(data), 100_000)
    assert len(frame) == 30_001 and frame["text"].iloc[-1] == "caf\xe9"
    assert frame["text"].iloc[0] == "\xe9t\xe9".encode().decode("latin-1")  # as a whole-file decode gave


def test_exactly_max_rows_is_accepted() -> None:
    assert len(read_tweets_csv(one_column_file(100), 100)) == 100
    assert len(read_tweets_csv(b"text\n" + one_column_file(100), 100)) == 100


# -- a busy queue: retries, clear errors --------------------------------------------------------------------------
class BusyPredictor(FakePredictor):
    """A model whose first calls fail the way the server's queue refuses work."""

    def __init__(self, failures: list[Exception], always: Exception | None = None) -> None:
        super().__init__()
        self.failures = failures
        self.always = always
        self.sizes: list[int] = []

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if self.always is not None:
            raise self.always
        if self.failures:
            raise self.failures.pop(0)
        self.sizes.append(len(texts))
        return super().predict_proba(texts)


def test_score_frame_waits_retry_after_when_the_queue_is_busy_and_says_so() -> None:
    model = BusyPredictor([QueueFullError("busy", retry_after=3), DeadlineError("late", retry_after=2)])
    frame = pd.DataFrame({"text": [f"love it {i}" for i in range(5)]})
    sleeps: list[float] = []
    notes: list[tuple[float, str]] = []
    out = score_frame(model, frame, max_chars=1000, batch_size=2,
                      progress=lambda share, text: notes.append((share, text)), sleep=sleeps.append)
    assert sleeps == [3, 2]
    assert model.sizes == [2, 2, 1]  # chunks sent one after another
    assert list(out["label"]) == ["positive"] * 5
    busy = [text for _, text in notes if "busy" in text]
    assert len(busy) == 2 and "retrying in 3 s" in busy[0] and "retrying in 2 s" in busy[1]
    assert notes[-1] == (1.0, "Scoring… 100%")


def test_score_frame_gives_up_after_bounded_retries_with_a_clear_error() -> None:
    from app.inference import BusyError

    model = BusyPredictor([], always=QueueFullError("busy", retry_after=4))
    sleeps: list[float] = []
    with pytest.raises(BusyError, match="nothing was kept. Try again in 4 s") as raised:
        score_frame(model, pd.DataFrame({"text": ["a", "b", "c"]}), max_chars=1000, batch_size=2, retries=2,
                    sleep=sleeps.append)
    assert sleeps == [4, 4] and raised.value.retry_after == 4


@pytest.mark.parametrize("error", [QueueFullError("busy", retry_after=7), DeadlineError("late", retry_after=7)])
def test_a_busy_queue_gives_single_predictions_a_clear_message(error: Exception) -> None:
    from app.inference import BusyError

    with pytest.raises(BusyError, match="busy.*try again in 7 s"):
        predict(BusyPredictor([], always=error), "hello")
    with pytest.raises(BusyError, match="try again in 7 s"):
        predict_all([FakePredictor(), BusyPredictor([], always=error)], "hello")


def test_the_scored_download_neutralises_formulas() -> None:
    """Audit: the Predict page's download wrote =HYPERLINK(…), @SUM(1), -1+2 and +3 unescaped."""
    texts = ['=HYPERLINK("http://x","click")', "@SUM(1)", "-1+2", "+3", "'quoted", "a normal tweet"]
    out = score_frame(FakePredictor(), pd.DataFrame({"text": texts, "id": ["=1", "2", "3", "4", "5", "6"]}),
                      max_chars=1000)
    written = pd.read_csv(io.BytesIO(scored_csv(out)), dtype=str, keep_default_na=False)
    assert written["text"].tolist() == ["'" + t for t in texts[:5]] + ["a normal tweet"]
    assert written["id"].tolist()[0] == "'=1"
    assert written["label"].tolist()[-1] in ("positive", "negative")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_a_unicode_text_file_from_excel_is_read_as_such(encoding: str) -> None:
    """Audit: a UTF-16 file was read as latin-1 and its mark and NULs scored as a tweet."""
    bom = {"utf-16": b"", "utf-16-be": b"\xfe\xff", "utf-32": b""}[encoding]
    data = bom + "text\tid\r\nlovely crew 😀\t1\r\nlost my bag\t2\r\n".encode(encoding)
    frame = read_tweets_csv(data, 10)
    assert frame["text"].tolist() == ["lovely crew 😀", "lost my bag"] and frame["id"].tolist() == ["1", "2"]


def test_a_false_byte_order_mark_is_a_clear_error() -> None:
    with pytest.raises(CsvError, match="UTF-16 byte-order mark but is not UTF-16"):
        read_tweets_csv(b"\xff\xfe" + "text\nabc\n".encode("utf-16-le") + b"\x00\xd8", 10)


def test_a_six_column_header_without_text_is_not_read_as_sentiment140() -> None:
    data = b"id,date,user,lang,flag,message_body\n1,Mon,me,en,x,my flight was great\n"
    with pytest.raises(NoTextColumnError) as raised:
        read_tweets_csv(data, 10)
    assert raised.value.first_row == ["id", "date", "user", "lang", "flag", "message_body"]
    # The user names the column: the header stays a header, never a tweet.
    frame = read_tweets_csv(data, 10, TextColumn(5, header=True))
    assert list(frame["text"]) == ["my flight was great"] and list(frame["user"]) == ["me"]


def test_a_chosen_column_without_header_keeps_the_first_row_as_a_tweet() -> None:
    data = b"2024-01-01,first tweet here,x\n2024-01-02,second one,y\n"
    with pytest.raises(NoTextColumnError):
        read_tweets_csv(data, 10)
    frame = read_tweets_csv(data, 10, TextColumn(1, header=False))
    assert list(frame["text"]) == ["first tweet here", "second one"]
    assert list(frame.columns) == ["column 1", "text", "column 3"]
    with pytest.raises(CsvError, match="Column 4 does not exist"):
        read_tweets_csv(data, 10, TextColumn(3, header=False))
