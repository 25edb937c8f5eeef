"""The feedback store: one SQLite row per thumbs verdict, kept until Application Insights accepted it.

The database (sqlite-utils, WAL journal) carries its schema version in ``PRAGMA user_version`` and is brought
up to date by :data:`MIGRATIONS` when opened. A row is keyed by the prediction's uuid, so a second click on
the same prediction updates that row (and bumps ``revision``) instead of adding one. Telemetry bookkeeping
lives in the same row: ``telemetry_state`` is ``pending`` until the ingestion endpoint accepted the row's
current revision, then ``sent``; ``attempts``, ``last_error`` and ``next_attempt_at`` drive the retries.

This module owns the rows: the product writes them (:class:`FeedbackStore`), retraining reads its labelled
rows with :func:`training_rows`, and both derive a label from a verdict with the one rule, :func:`implied_label`.
No other package runs SQL on the table (``tests/sentiment/test_one_rule.py``).
"""

from __future__ import annotations

import csv
import io
import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from sentiment.exports import LABELS, SENTIMENT140_CODES

logger = logging.getLogger(__name__)

TABLE = "feedback"
VERDICTS = ("up", "down")
REVIEW_STATES = ("new", "reviewed")
TELEMETRY_STATES = ("pending", "sent")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
# Header of the retraining export: Sentiment140's six columns and codes (0 negative, 4 positive), with the
# first column named ``label`` so that the training pipeline's CSV reader takes it as a labelled file.
EXPORT_COLUMNS = ("label", "ids", "date", "flag", "user", "text")
# Spreadsheets run a cell that starts with one of these as a formula (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CELL_ESCAPE = "'"
# What a labelled row taught a retraining (:attr:`FeedbackRow.kind`): a thumbs up, a thumbs down whose implied label
# the maintainer confirmed, or one the maintainer corrected back to the prediction.
THUMBS_UP, CONFIRMED, CORRECTED = "thumbs_up", "confirmed", "corrected"
# Why :func:`training_rows` leaves a row out (a key of its ``dropped`` counter): a maintainer has not reviewed it,
# and any visitor can write such rows (300 thumbs-up from one session once steered a retraining).
UNREVIEWED_THUMBS_DOWN, UNREVIEWED_THUMBS_UP = "unreviewed_thumbs_down", "unreviewed_thumbs_up"
_TRAINING_COLUMNS = "text, verdict, predicted_label, true_label, review_state"
_DELIVERY_COLUMNS = "id, verdict, revision, telemetry_state, sent_revision, attempts"


class SchemaError(RuntimeError):
    """The database was written by a newer version of the app."""


def implied_label(verdict: str, predicted_label: str) -> str:
    """The true label that a user's verdict on a prediction says: the prediction for ``up``, the other label for ``down``.

    The one verdict-to-label rule: :meth:`FeedbackStore.record_verdict` stores it as an unreviewed row's
    ``true_label``, and :func:`training_rows` labels an unreviewed thumbs up with it.

    Raises:
        ValueError: ``verdict`` is not one of :data:`VERDICTS`, or ``predicted_label`` not one of ``LABELS``.
    """
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    if predicted_label not in LABELS:
        raise ValueError(f"predicted_label must be one of {LABELS}, got {predicted_label!r}")
    return predicted_label if verdict == "up" else LABELS[1 - LABELS.index(predicted_label)]


@dataclass(frozen=True)
class FeedbackRow:
    """One labelled feedback text: ``label`` indexes ``LABELS``.

    ``kind`` is :data:`THUMBS_UP`, :data:`CONFIRMED` or :data:`CORRECTED` for a row of the store, ``export`` for a
    row of the Review page's CSV export (read by ``training.feedback``).
    """

    text: str
    label: int
    kind: str


@contextmanager
def _read_only(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to an existing store (no migration, no write lock), closed on exit."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)
    try:
        yield conn
    finally:
        conn.close()


def _query(path: Path, conn: sqlite3.Connection, sql: str) -> list[sqlite3.Row]:
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.DatabaseError as error:
        raise ValueError(f"{path} is not a feedback store readable by this version ({error})") from error


def training_rows(path: str | Path) -> tuple[list[FeedbackRow], Counter[str]]:
    """The labelled rows of a store for retraining, oldest verdict first, and the rows left out by reason.

    The store is opened read-only. Only rows a maintainer reviewed are used, labelled with the maintainer's
    ``true_label`` (a reviewed row without a valid one keeps the label its verdict implies): a visitor can write
    any number of verdicts, so no unreviewed row reaches a retraining or its gate. Unreviewed rows are counted as
    :data:`UNREVIEWED_THUMBS_UP` and :data:`UNREVIEWED_THUMBS_DOWN`.

    Raises:
        FileNotFoundError: there is no file at ``path``.
        ValueError: the file is not a feedback store this version can read.
    """
    path = Path(path)
    dropped: Counter[str] = Counter()
    rows = []
    with _read_only(path) as conn:
        records = _query(path, conn, f"SELECT {_TRAINING_COLUMNS} FROM {TABLE} ORDER BY updated_at, id")
    for text, verdict, predicted, true_label, review_state in records:
        if review_state != "reviewed":
            dropped[UNREVIEWED_THUMBS_DOWN if verdict == "down" else UNREVIEWED_THUMBS_UP] += 1
            continue
        label = true_label if true_label in LABELS else implied_label(verdict, predicted)
        kind = THUMBS_UP if verdict == "up" else CONFIRMED if label == implied_label(verdict, predicted) else CORRECTED
        rows.append(FeedbackRow(text, LABELS.index(label), kind))
    return rows, dropped


def delivery_rows(path: str | Path) -> list[dict[str, Any]]:
    """Every row's verdict and delivery state, read from a store opened read-only (``make soak`` checks them).

    Each row holds ``id``, ``verdict``, ``revision``, ``telemetry_state``, ``sent_revision`` and ``attempts``.
    """
    path = Path(path)
    with _read_only(path) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in _query(path, conn, f"SELECT {_DELIVERY_COLUMNS} FROM {TABLE}")]


def utc_iso(moment: datetime | None = None) -> str:
    """A sortable UTC timestamp (``2025-01-31T12:00:00.000000Z``)."""
    moment = moment or datetime.now(UTC)
    return moment.astimezone(UTC).strftime(_TIME_FORMAT)


def parse_iso(value: str) -> datetime:
    return datetime.strptime(value, _TIME_FORMAT).replace(tzinfo=UTC)


def neutralise_cell(value: str) -> str:
    """``value`` behind a single quote when a spreadsheet would run it as a formula, or when it starts with a quote.

    Escaping the texts that already start with the quote makes the escape reversible: dropping one leading quote
    from every cell that has one gives back the original (``training.data`` does so when it reads the export).
    """
    return CELL_ESCAPE + value if value.startswith((*FORMULA_STARTS, CELL_ESCAPE)) else value


def _migration_1(db: sqlite_utils.Database) -> None:
    db.table(TABLE).create(
        {
            "id": str, "created_at": str, "updated_at": str, "text": str,
            "model_name": str, "model_version": str, "predicted_label": str, "confidence": float,
            "verdict": str, "true_label": str, "review_state": str, "review_note": str, "reviewed_at": str,
            "revision": int, "telemetry_state": str, "attempts": int, "last_error": str,
            "next_attempt_at": float, "sent_at": str, "sent_revision": int,
        },
        pk="id",
        not_null=["created_at", "updated_at", "text", "model_name", "predicted_label", "verdict",
                  "review_state", "revision", "telemetry_state", "attempts", "next_attempt_at"],
        defaults={"review_state": "new", "revision": 1, "telemetry_state": "pending", "attempts": 0,
                  "next_attempt_at": 0.0, "review_note": ""},
    )


def _migration_2(db: sqlite_utils.Database) -> None:
    table = db.table(TABLE)
    table.create_index(["telemetry_state", "next_attempt_at"], index_name="idx_feedback_due")
    table.create_index(["verdict", "updated_at"], index_name="idx_feedback_verdict_time")


# Index i brings a database from version i to i + 1. Append only: never edit a shipped migration.
MIGRATIONS: tuple[Callable[[sqlite_utils.Database], None], ...] = (_migration_1, _migration_2)
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class FeedbackFilter:
    """Filters of the maintainer's list; None means no filter."""

    verdict: str | None = "down"
    model_name: str | None = None
    predicted_label: str | None = None
    review_state: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    min_confidence: float | None = None
    max_confidence: float | None = None


class FeedbackStore:
    """Thread-safe access to the feedback database (one connection, one lock, WAL for other processes)."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.RLock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=10.0)
        self.db = sqlite_utils.Database(conn)
        self.db.enable_wal()
        self.db.execute("PRAGMA busy_timeout = 10000")
        self.migrate()

    # -- schema -------------------------------------------------------------------------------------------
    @property
    def schema_version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        """Apply the missing migrations, each in its own transaction with its version bump.

        The version is read inside the write transaction, so two processes opening the same new file
        apply each migration once.
        """
        while True:
            with self._transaction() as db:
                current = self.schema_version
                if current > SCHEMA_VERSION:
                    raise SchemaError(f"{self.path} has schema version {current}; this app knows up to "
                                      f"{SCHEMA_VERSION}. Upgrade the app or point FEEDBACK_DB elsewhere.")
                if current == SCHEMA_VERSION:
                    return
                MIGRATIONS[current](db)
                db.execute(f"PRAGMA user_version = {current + 1}")
            logger.info("feedback store %s migrated to schema version %d", self.path, current + 1)

    def close(self) -> None:
        with self._lock:
            self.db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite_utils.Database]:
        """A write transaction taken up front (``BEGIN IMMEDIATE``): no other process can slip in between.

        sqlite-utils' ``atomic()`` would begin a deferred transaction, which a concurrent writer can make fail
        halfway instead of waiting. A failed ``COMMIT`` (a constraint checked at commit, a full disk) is rolled
        back too: left open, the transaction would make every later ``BEGIN`` of this connection fail.
        """
        with self._lock:
            self.db.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
                self.db.conn.execute("COMMIT")
            except BaseException:
                self.db.rollback()
                raise

    # -- writes from the prediction page -----------------------------------------------------------------
    def record_verdict(self, *, feedback_id: str, text: str, model_name: str, model_version: str,
                       predicted_label: str, confidence: float, verdict: str) -> dict[str, Any]:
        """Insert the verdict on a prediction, or update it when the same prediction was rated before.

        A changed verdict bumps ``revision``, re-derives ``true_label`` (unless the maintainer reviewed it)
        and makes the row pending again so the new verdict reaches Application Insights under the same id.

        Returns:
            The stored row.
        """
        derived = implied_label(verdict, predicted_label)  # checks both values
        now = utc_iso(datetime.fromtimestamp(self._clock(), UTC))
        with self._transaction() as db:
            existing = self._get(feedback_id)
            if existing is None:
                db.table(TABLE).insert({
                    "id": feedback_id, "created_at": now, "updated_at": now, "text": text,
                    "model_name": model_name, "model_version": str(model_version),
                    "predicted_label": predicted_label, "confidence": float(confidence), "verdict": verdict,
                    "true_label": derived, "review_state": "new", "review_note": "", "revision": 1,
                    "telemetry_state": "pending", "attempts": 0, "next_attempt_at": 0.0,
                })
            elif existing["verdict"] != verdict:
                updates: dict[str, Any] = {
                    "verdict": verdict, "updated_at": now, "revision": existing["revision"] + 1,
                    "telemetry_state": "pending", "attempts": 0, "last_error": None, "next_attempt_at": 0.0,
                }
                if existing["review_state"] != "reviewed":
                    updates["true_label"] = derived
                db.table(TABLE).update(feedback_id, updates)
            row = self._get(feedback_id)
        assert row is not None
        return row

    # -- the maintainer's reads and writes ------------------------------------------------------------------
    def get(self, feedback_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._get(feedback_id)

    def _get(self, feedback_id: str) -> dict[str, Any] | None:
        rows = list(self.db.query(f"SELECT * FROM {TABLE} WHERE id = ?", [feedback_id]))
        return rows[0] if rows else None

    def list(self, filters: FeedbackFilter | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Rows matching ``filters``, newest verdict first."""
        filters = filters or FeedbackFilter()
        clauses, params = [], []
        for column, value in (("verdict", filters.verdict), ("model_name", filters.model_name),
                              ("predicted_label", filters.predicted_label), ("review_state", filters.review_state)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if filters.since is not None:
            clauses.append("updated_at >= ?")
            params.append(utc_iso(filters.since))
        if filters.until is not None:
            clauses.append("updated_at < ?")
            params.append(utc_iso(filters.until))
        if filters.min_confidence is not None:
            clauses.append("confidence >= ?")
            params.append(filters.min_confidence)
        if filters.max_confidence is not None:
            clauses.append("confidence <= ?")
            params.append(filters.max_confidence)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT * FROM {TABLE} {where} ORDER BY updated_at DESC LIMIT ?"
        with self._lock:
            return list(self.db.query(sql, [*params, limit]))

    def model_names(self) -> list[str]:
        with self._lock:
            return [r["model_name"] for r in self.db.query(f"SELECT DISTINCT model_name FROM {TABLE} ORDER BY 1")]

    def review(self, feedback_id: str, *, true_label: str, note: str = "", reviewed: bool = True) -> dict[str, Any]:
        """Record the maintainer's true label, note and review state (local only: no new telemetry)."""
        if true_label not in LABELS:
            raise ValueError(f"true_label must be one of {LABELS}, got {true_label!r}")
        now = utc_iso(datetime.fromtimestamp(self._clock(), UTC))
        with self._transaction() as db:
            if self._get(feedback_id) is None:
                raise KeyError(feedback_id)
            db.table(TABLE).update(feedback_id, {
                "true_label": true_label, "review_note": note,
                "review_state": "reviewed" if reviewed else "new", "reviewed_at": now if reviewed else None,
            })
            row = self._get(feedback_id)
        assert row is not None
        return row

    def verdict_history(self) -> list[dict[str, Any]]:
        """Every verdict without its tweet text, oldest first: what the model-ageing charts aggregate."""
        with self._lock:
            return list(self.db.query(
                f"SELECT updated_at, model_name, model_version, verdict, predicted_label, true_label, review_state "
                f"FROM {TABLE} ORDER BY updated_at"))

    def count_verdicts_since(self, verdict: str, since: datetime) -> int:
        """How many rows got ``verdict`` at or after ``since`` (their latest verdict time)."""
        with self._lock:
            row = self.db.execute(f"SELECT COUNT(*) FROM {TABLE} WHERE verdict = ? AND updated_at >= ?",
                                  [verdict, utc_iso(since)]).fetchone()
        return int(row[0])

    def export_reviewed_csv(self) -> str:
        """Reviewed rows as a Sentiment140-layout CSV (UTF-8) that ``training.data.load`` reads.

        Every cell goes through :func:`neutralise_cell`, so a tweet cannot act as a formula when the maintainer
        opens the file in a spreadsheet; the training reader drops the escape again.
        """
        with self._lock:
            rows = list(self.db.query(f"SELECT * FROM {TABLE} WHERE review_state = 'reviewed' "
                                      "AND true_label IS NOT NULL ORDER BY updated_at"))
        out = io.StringIO()
        # RFC 4180's line end. With "\n" alone, Python 3.11's writer leaves a text holding a bare "\r" unquoted,
        # and readers split the row there.
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(EXPORT_COLUMNS)
        for row in rows:
            moment = parse_iso(row["updated_at"]).strftime("%a %b %d %H:%M:%S UTC %Y")
            writer.writerow([neutralise_cell(str(cell)) for cell in (
                SENTIMENT140_CODES[row["true_label"]], row["id"], moment, "NO_QUERY", "feedback", row["text"])])
        return out.getvalue()

    # -- telemetry bookkeeping ------------------------------------------------------------------------------
    def telemetry_counts(self) -> dict[str, int]:
        """``pending`` (never tried or waiting), ``failed`` (pending after a failed attempt) and ``sent``."""
        with self._lock:
            row = self.db.execute(
                f"SELECT SUM(telemetry_state = 'pending' AND attempts = 0), "
                f"SUM(telemetry_state = 'pending' AND attempts > 0), SUM(telemetry_state = 'sent') FROM {TABLE}"
            ).fetchone()
        return {"pending": int(row[0] or 0), "failed": int(row[1] or 0), "sent": int(row[2] or 0)}

    def claim_due(self, limit: int, lease_s: float) -> list[dict[str, Any]]:
        """Pending rows whose next attempt is due, leased for ``lease_s`` so no other flusher takes them.

        The lease is the ``next_attempt_at`` itself pushed into the future: a crash mid-send leaves the row
        pending, and it is due again once the lease ends.
        """
        now = self._clock()
        with self._transaction() as db:
            rows = list(db.query(
                f"SELECT * FROM {TABLE} WHERE telemetry_state = 'pending' AND next_attempt_at <= ? "
                "ORDER BY next_attempt_at, updated_at LIMIT ?", [now, limit]))
            ids = [r["id"] for r in rows]
            if ids:
                marks = ",".join("?" * len(ids))
                db.execute(f"UPDATE {TABLE} SET next_attempt_at = ? WHERE id IN ({marks})", [now + lease_s, *ids])
        return rows

    def mark_sent(self, accepted: Sequence[tuple[str, int]]) -> int:
        """Mark rows sent; each ``(id, revision)`` only if the row still holds that revision.

        A verdict changed while its previous revision was in flight stays pending, so the newer verdict
        is sent too (under the same id).

        Returns:
            The number of rows marked.
        """
        now_iso = utc_iso(datetime.fromtimestamp(self._clock(), UTC))
        marked = 0
        with self._transaction() as db:
            for feedback_id, revision in accepted:
                cursor = db.execute(
                    f"UPDATE {TABLE} SET telemetry_state = 'sent', sent_at = ?, sent_revision = ?, "
                    "last_error = NULL WHERE id = ? AND revision = ?", [now_iso, revision, feedback_id, revision])
                marked += cursor.rowcount
        return marked

    def mark_failed(self, failures: Sequence[tuple[str, int, str]], backoff: Callable[[int], float]) -> None:
        """Keep rows pending after a failed attempt: count it, keep the error, schedule the next one.

        Args:
            failures: ``(id, revision, error)`` for each row that was not accepted.
            backoff: attempts so far → seconds to wait before the next attempt.
        """
        now = self._clock()
        with self._transaction() as db:
            for feedback_id, revision, error in failures:
                row = self._get(feedback_id)
                if row is None or row["revision"] != revision:
                    continue  # a newer verdict reset the retry state: leave it due now
                attempts = row["attempts"] + 1
                db.table(TABLE).update(feedback_id, {
                    "attempts": attempts, "last_error": error[:500], "next_attempt_at": now + backoff(attempts),
                })

    def release(self, claimed: Sequence[tuple[str, int]]) -> None:
        """Make leased rows due again without counting an attempt (a flush that was interrupted)."""
        with self._transaction() as db:
            for feedback_id, revision in claimed:
                db.execute(f"UPDATE {TABLE} SET next_attempt_at = 0 WHERE id = ? AND revision = ? "
                           "AND telemetry_state = 'pending'", [feedback_id, revision])
