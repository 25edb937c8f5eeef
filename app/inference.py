"""Predictions for the pages: input checks, one tweet on one or every model, and CSV batches.

Anything with ``name``, ``version``, ``labels`` and ``predict_proba(texts) -> (n, 2)`` is a :class:`Model`. The
pages pass :class:`QueuedModel`: a model of the API's registry reached through its queue
(:func:`sentiment.classify.classify_from_thread`), so the UI's tweets share batches, limits, deadline and metrics with
the API's requests; the tests' fakes are plain predictors.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

import numpy as np
import pandas as pd

from sentiment.batching import DeadlineError, QueueFullError
from sentiment.classify import classify_from_thread
from sentiment.explain import Explanation, explain, occlusions
from sentiment.feedback import neutralise_cell
from sentiment.registry import ModelRegistry, ServedModel
from sentiment.scoring import TOO_LONG, bom_encoding, check_text, describe_problem, score, to_labels

# A tweet's own limit: shown as guidance only. What is accepted is MAX_TEXT_CHARS, as in the API.
MAX_TWEET_CHARS = 280
# Written for this product (not taken from any data set): a spread of clear and tricky cases.
EXAMPLE_TWEETS = (
    "Crew upgraded my seat and the landing was so smooth, best flight I've had all year!",
    "Three hours on the tarmac with no water and no updates. Never flying with you again.",
    "Not bad at all, the new app actually found me a seat on the earlier flight",
    "Lost my luggage AGAIN. Thanks a lot @airline, really great service 🙄",
    "Boarding now, see you all in Lisbon",
)
TEXT_COLUMNS = ("text", "tweet", "content", "message")
_SENTIMENT140_COLUMNS = 6
_POLARITIES = {"0", "2", "4"}  # Sentiment140's first column
_LAYOUT_ROWS = 50  # rows looked at to tell a headerless layout
SNIFF_BYTES = 64 * 1024  # prefix of an upload decoded to choose UTF-8 or latin-1
MAX_LINE_CHARS = 131_072  # the csv module's default field limit: no tweet file has longer lines
# A file of tweets has a text column and a few others (id, date, user): a header far wider than this is not one,
# and every row would be padded to it (a 132 kB file with 65,000 columns took 1.6 GB).
MAX_COLUMNS = 64
# Retries of a batch chunk refused by a busy queue (QueueFullError, DeadlineError), each after its retry_after.
BUSY_RETRIES = 3


class Model(Protocol):
    """The part of ``sentiment.predictor.Predictor`` the pages use."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def labels(self) -> tuple[str, ...]: ...

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class QueuedModel:
    """A served model reached through the server's queue, deadline and metrics, from a page's thread.

    ``predict_proba`` raises ``sentiment.batching.QueueFullError`` or ``DeadlineError`` when the queue is busy; without
    a running server loop (page tests) the predictor is called directly (see
    :func:`sentiment.classify.classify_from_thread`).
    """

    registry: ModelRegistry
    served: ServedModel

    @property
    def name(self) -> str:
        return self.served.name

    @property
    def version(self) -> str:
        return self.served.version

    @property
    def labels(self) -> tuple[str, ...]:
        return self.served.predictor.labels

    def predict_proba(self, texts: Sequence[str], counted: int | None = None) -> np.ndarray:
        """``counted``: only the first texts are predictions (the others explain them), for the metrics."""
        return classify_from_thread(self.registry, self.served, texts, counted=counted)


class BusyError(RuntimeError):
    """The models' queue refused the work (full, or its deadline passed); ``retry_after`` is a fair wait in s."""

    def __init__(self, retry_after: int, message: str | None = None) -> None:
        super().__init__(message or f"The models are busy right now; try again in {retry_after} s.")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Prediction:
    """One model's verdict on one tweet; ``id`` keys its feedback row."""

    text: str
    model_name: str
    model_version: str
    label: str
    confidence: float
    probabilities: dict[str, float]
    latency_ms: float
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


def validate_tweet(text: str | None, max_chars: int) -> str | None:
    """The message to show for unusable input, or None when the tweet can be scored.

    The engine's one text check (:func:`sentiment.scoring.check_text`), with the API's ``MAX_TEXT_CHARS``.
    """
    reason = check_text(text, max_chars)
    if reason is None:
        return None
    if reason == TOO_LONG:
        return describe_problem(reason, max_chars, len(text or ""))
    return "Type a tweet first: the text is empty or has nothing visible to classify."


def char_count(text: str | None, max_chars: int) -> str:
    """``"42 / 280 characters"``: a tweet's length as guidance, with an icon and bold words past a tweet's length.

    Not colour: orange and red text faded by the caption measured 2.8:1 and 3.0:1 against white (axe-core, WCAG AA
    asks 4.5:1); the caption's own colour passes, and the icon and the words say it without colour.
    """
    length = len(text or "")
    if length > max_chars:
        return (f":material/error: **{length:,} characters: {length - max_chars:,} over the limit of "
                f"{max_chars:,}**")
    if length > MAX_TWEET_CHARS:
        return (f":material/info: **{length:,} / {MAX_TWEET_CHARS} characters: longer than a tweet** (up to "
                f"{max_chars:,} accepted)")
    return f"{length} / {MAX_TWEET_CHARS} characters"


def predict(model: Model, text: str) -> Prediction:
    """Score ``text`` with ``model`` and time the call (queue included).

    Raises:
        BusyError: the model's queue is full or missed its deadline.
    """
    start = time.perf_counter()
    proba = _scored(model, [text])
    return _prediction(model, text, proba[0], (time.perf_counter() - start) * 1000)


def explain_prediction(model: Model, text: str, max_words: int) -> tuple[Prediction, Explanation]:
    """:func:`predict`, and why: the tweet and each leave-one-word-out text in one call (``sentiment.explain``).

    Raises:
        BusyError: the model's queue is full or missed its deadline.
    """
    start = time.perf_counter()
    words, occluded = occlusions(text, max_words)
    proba = _scored(model, [text, *occluded], counted=1)
    latency_ms = (time.perf_counter() - start) * 1000
    return _prediction(model, text, proba[0], latency_ms), explain(text, words, proba[:, 1])


def _scored(model: Model, texts: list[str], counted: int | None = None) -> np.ndarray:
    try:
        if isinstance(model, QueuedModel):
            return np.asarray(model.predict_proba(texts, counted=counted), dtype=float)
        return np.asarray(model.predict_proba(texts), dtype=float)
    except (QueueFullError, DeadlineError) as error:
        raise BusyError(error.retry_after) from error


def _prediction(model: Model, text: str, proba: np.ndarray, latency_ms: float) -> Prediction:
    (label,), (confidence,) = to_labels(proba[None, :])
    return Prediction(text=text, model_name=model.name, model_version=str(model.version),
                      label=label, confidence=float(confidence),
                      probabilities={label: float(p) for label, p in zip(model.labels, proba, strict=True)},
                      latency_ms=latency_ms)


def predict_all(models: Sequence[Model], text: str) -> pd.DataFrame:
    """Every model's verdict on ``text``: ``model, version, label, confidence, p_positive, latency_ms``.

    Raises:
        BusyError: a model's queue is full or missed its deadline.
    """
    rows = []
    for model in models:
        result = predict(model, text)
        rows.append({"model": result.model_name, "version": result.model_version, "label": result.label,
                     "confidence": result.confidence, "p_positive": result.probabilities.get("positive", np.nan),
                     "latency_ms": result.latency_ms})
    return pd.DataFrame(rows)


class CsvError(ValueError):
    """An uploaded file that holds no tweets we can find."""


class NoTextColumnError(CsvError):
    """A readable table without a recognised text column: the user may say which column holds the tweets.

    ``first_row`` holds the cells of the file's first row (a header or the first tweet's row) to name the choices.
    """

    def __init__(self, message: str, first_row: list[str]) -> None:
        super().__init__(message)
        self.first_row = first_row


@dataclass(frozen=True)
class TextColumn:
    """The user's answer to :class:`NoTextColumnError`: the column (0-based) and whether the first row is a header."""

    index: int
    header: bool


def read_tweets_csv(source: bytes | BinaryIO, max_rows: int, column: TextColumn | None = None) -> pd.DataFrame:
    """The tweets of an uploaded CSV as a frame with a ``text`` column (other columns kept).

    Accepted: a header with a ``text`` (or ``tweet``, ``content``, ``message``) column, at most
    :data:`MAX_COLUMNS` wide; Sentiment140's six columns without header (a polarity 0, 2 or 4 first, the text
    last); a single column without header; or any table, with ``column`` saying where the tweets are. UTF-8 (with or without BOM), UTF-16 or UTF-32 with a byte-order mark (Excel's "Unicode
    text", tab-separated), else latin-1.

    The file is read as a stream, row by row, and reading stops at the first row past ``max_rows``: memory
    depends on the row limit, not on the size of the file.

    Args:
        source: the file's bytes, or a seekable binary file (Streamlit's ``UploadedFile``), left open.
        max_rows: most rows accepted (the header not counted).

    Raises:
        NoTextColumnError: no column is recognised and ``column`` is None: ask the user which one.
        CsvError: the file is empty, has no usable column, more than ``max_rows`` rows or a line or cell far
            longer than any tweet.
    """
    stream = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    start = stream.tell()
    prefix = stream.read(SNIFF_BYTES)
    stream.seek(start)
    announced = bom_encoding(prefix)
    if announced is not None and announced != "utf-8-sig":
        try:
            return _read_csv(stream, announced, max_rows, column)
        except UnicodeDecodeError as error:
            raise CsvError(f"The file starts with a {announced.upper()} byte-order mark but is not {announced.upper()} "
                           "text: save it again as UTF-8 CSV.") from error
    try:
        codecs.getincrementaldecoder("utf-8")().decode(prefix, final=len(prefix) < SNIFF_BYTES)
    except UnicodeDecodeError:
        return _read_csv(stream, "latin-1", max_rows, column)
    try:
        return _read_csv(stream, "utf-8-sig", max_rows, column)
    except UnicodeDecodeError:
        # UTF-8 at the start only: read it all as latin-1, as a decode of the whole file would have.
        stream.seek(start)
        return _read_csv(stream, "latin-1", max_rows, column)


def _read_csv(stream: BinaryIO, encoding: str, max_rows: int, column: TextColumn | None = None) -> pd.DataFrame:
    text = io.TextIOWrapper(stream, encoding=encoding, newline="")
    try:
        lines = _lines(text)
        first = next(lines, "")
        # Excel's "Unicode text" (UTF-16) separates its columns with tabs: a first line of tabs and no comma.
        delimiter = "\t" if "\t" in first and "," not in first else ","
        rows = csv.reader(itertools.chain([first] if first else [], lines), delimiter=delimiter)
        return _frame((row for row in rows if row), max_rows, column)
    except csv.Error as error:
        if "field limit" in str(error):
            raise CsvError(f"A cell is longer than {csv.field_size_limit():,} characters: this is not a file of "
                           "tweets.") from error
        raise CsvError(f"The file is not a readable CSV: {error}.") from error
    finally:
        text.detach()  # leave the caller's file open


def _lines(text: io.TextIOWrapper) -> Iterator[str]:
    """The physical lines of ``text``, refusing one far longer than any tweet before it is all in memory."""
    while line := text.readline(MAX_LINE_CHARS):
        if len(line) == MAX_LINE_CHARS and not line.endswith(("\n", "\r")):
            raise CsvError(f"A line is longer than {MAX_LINE_CHARS:,} characters: this is not a file of tweets.")
        yield line


def _frame(rows: Iterator[list[str]], max_rows: int, column: TextColumn | None = None) -> pd.DataFrame:
    first = next(rows, None)
    if first is None:
        raise CsvError("The file is empty.")
    if len(first) > MAX_COLUMNS:
        raise CsvError(f"The first row has {len(first):,} columns; a file of tweets has at most {MAX_COLUMNS}.")
    if column is not None:
        return _chosen(first, rows, max_rows, column)
    header = [cell.strip().lower() for cell in first]
    text_column = next((name for name in TEXT_COLUMNS if name in header), None)
    if text_column is not None:
        width = len(header)
        body = [(r + [""] * width)[:width] for r in _at_most(rows, max_rows)]
        if not body:
            raise CsvError("The file has a header but no rows.")
        return pd.DataFrame(body, columns=header).rename(columns={text_column: "text"})
    head = [first, *itertools.islice(rows, _LAYOUT_ROWS - 1)]
    if all(len(r) == _SENTIMENT140_COLUMNS and r[0].strip() in _POLARITIES for r in head):
        index = -1
    elif all(len(r) == 1 for r in head):
        index = 0
    else:
        # A six-column header without a text column is not Sentiment140: its header row would be scored.
        raise NoTextColumnError(f"No text column found: choose the column that holds the tweets, or add a header "
                                f"with one of {', '.join(TEXT_COLUMNS)}.", first)
    return pd.DataFrame({"text": [r[index] for r in _at_most(itertools.chain(head, rows), max_rows)]})


def _chosen(first: list[str], rows: Iterator[list[str]], max_rows: int, column: TextColumn) -> pd.DataFrame:
    """The table with the user's text column (renamed ``text``); other columns keep their header names."""
    width = len(first)
    if not 0 <= column.index < width:
        raise CsvError(f"Column {column.index + 1} does not exist: the file has {width} columns.")
    if column.header:
        names = [cell.strip() or f"column {i + 1}" for i, cell in enumerate(first)]
        body_rows: Iterator[list[str]] = rows
    else:
        names = [f"column {i + 1}" for i in range(width)]
        body_rows = itertools.chain([first], rows)
    # Unique names (a header may repeat one), "text" kept for the chosen column only.
    names = [f"{name} ({i + 1})" if names.count(name) > 1 or name.lower() == "text" else name
             for i, name in enumerate(names)]
    names[column.index] = "text"
    body = [(r + [""] * width)[:width] for r in _at_most(body_rows, max_rows)]
    if not body:
        raise CsvError("The file has a header but no rows.")
    return pd.DataFrame(body, columns=names)


def _at_most(rows: Iterator[list[str]], max_rows: int) -> list[list[str]]:
    """The first ``max_rows`` rows; refused as soon as one more is seen."""
    kept = list(itertools.islice(rows, max_rows))
    if next(rows, None) is not None:
        raise CsvError(f"The file has more than {max_rows:,} rows; the limit is {max_rows:,}.")
    return kept


Progress = Callable[[float, str], None]


def score_frame(model: Model, frame: pd.DataFrame, max_chars: int, batch_size: int = 32,
                progress: Progress | None = None, *, retries: int = BUSY_RETRIES,
                sleep: Callable[[float], None] = time.sleep) -> pd.DataFrame:
    """``frame`` with the engine's :data:`~sentiment.scoring.OUTPUT_COLUMNS` added (the layout of every scored file).

    The engine's one scoring function (:func:`sentiment.scoring.score`) checks and labels the texts: rows it
    cannot score get no label and a ``reason``. The texts go in chunks of ``batch_size``, one after another, so
    other clients of the model's queue are served between them. A chunk refused by a busy queue waits its
    ``retry_after`` and is sent again, up to ``retries`` times.

    Args:
        max_chars: longest text scored (``MAX_TEXT_CHARS``).
        progress: called with the share done and a line to show (``"Scoring… 40%"``, or why it waits).
        retries: tries of a refused chunk after the first.
        sleep: how to wait (tests pass a recorder).

    Raises:
        BusyError: a chunk was still refused after ``retries`` waits; nothing is returned.
    """
    report = progress or (lambda share, text: None)
    done = 0.0

    def patient(texts: list[str]) -> np.ndarray:
        for attempt in range(retries + 1):
            try:
                return np.asarray(model.predict_proba(texts), dtype=float)
            except (QueueFullError, DeadlineError) as error:
                if attempt == retries:
                    raise BusyError(error.retry_after, (
                        f"The models stayed busy after {retries} retries: the file was not scored and nothing "
                        f"was kept. Try again in {error.retry_after} s.")) from error
                report(done, f"Scoring… {done:.0%} · the models are busy: retrying in {error.retry_after} s "
                             f"(retry {attempt + 1} of {retries})")
                sleep(error.retry_after)
        raise AssertionError("unreachable")

    def advanced(scored: int, total: int) -> None:
        nonlocal done
        done = min(1.0, scored / total)
        report(done, f"Scoring… {done:.0%}")

    texts = [text if isinstance(text, str) else None for text in frame["text"].tolist()]
    scores = score(texts, patient, max_chars=max_chars, chunk_rows=batch_size, on_chunk=advanced)
    report(1.0, "Scoring… 100%")
    out = frame.copy()
    for name, values in scores.columns(model.name, str(model.version)).items():
        out[name] = pd.Series(values, index=out.index, dtype=object if name in ("label", "reason") else None)
    return out


def scored_csv(frame: pd.DataFrame) -> bytes:
    """The scored file to download (UTF-8 CSV), every text cell neutralised for spreadsheets.

    An uploaded tweet such as ``=HYPERLINK(...)`` or ``@SUM(1)`` would run as a formula when the analyst opens the
    file; :func:`sentiment.feedback.neutralise_cell` puts a quote in front, as the Review page's export does.
    """
    safe = frame.copy()
    for column in safe.columns:
        if safe[column].dtype == object or pd.api.types.is_string_dtype(safe[column]):
            safe[column] = [neutralise_cell(v) if isinstance(v, str) else v for v in safe[column]]
    return safe.to_csv(index=False).encode("utf-8")
