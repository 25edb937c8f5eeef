"""The flusher against a fake ingestion endpoint on 127.0.0.1: nothing lost, nothing sent twice."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.settings import get_settings
from app.telemetry import EVENT_NAME, AppInsightsSender, RetryPolicy, TelemetryFlusher, build_flusher
from sentiment.feedback import FeedbackFilter, FeedbackStore
from tests.app.fake_ingestion import FakeIngestion, connection_string


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "feedback.db"


@pytest.fixture
def fake() -> Iterator[FakeIngestion]:
    server = FakeIngestion().start()
    yield server
    server.stop()


def make_flusher(path: Path, clock: Clock, conn_str: str | None, include_text: bool = False,
                 batch_size: int = 10) -> TelemetryFlusher:
    store = FeedbackStore(path, clock=clock)
    sender = AppInsightsSender(conn_str, include_text=include_text, timeout_s=3) if conn_str else None
    return TelemetryFlusher(store, sender, batch_size=batch_size,
                            retry=RetryPolicy(backoff_base_s=10, backoff_max_s=80, lease_s=30))


def rate(store: FeedbackStore, n: int, verdict: str = "down") -> list[str]:
    ids = [str(uuid.uuid4()) for _ in range(n)]
    for feedback_id in ids:
        store.record_verdict(feedback_id=feedback_id, text="a tweet about my lost bag", model_name="tiny-tfidf",
                             model_version="3", predicted_label="positive", confidence=0.75, verdict=verdict)
    return ids


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_accepted_rows_become_sent_as_custom_events(fake: FakeIngestion, db_path: Path, clock: Clock) -> None:
    flusher = make_flusher(db_path, clock, fake.connection_string, batch_size=2)
    ids = rate(flusher.store, 5)
    report = flusher.flush_once()
    assert (report.sent, report.failed) == (5, 0)
    assert sorted(fake.feedback_ids()) == sorted(ids)
    assert fake.requests == 3  # batches of 2, 2 and 1
    assert flusher.store.telemetry_counts() == {"pending": 0, "failed": 0, "sent": 5}
    event = fake.events()[0]
    base = event["data"]["baseData"]
    assert event["name"] == "Microsoft.ApplicationInsights.Event" and base["name"] == EVENT_NAME
    assert base["properties"]["verdict"] == "down" and base["properties"]["revision"] == "1"
    assert base["properties"]["true_label"] == "negative" and base["measurements"] == {"confidence": 0.75}
    assert "tweet_text" not in base["properties"]  # privacy: text only with TELEMETRY_INCLUDE_TEXT
    assert event["tags"]["ai.operation.id"] == base["properties"]["feedback_id"].replace("-", "")
    assert flusher.flush_once().sent == 0  # nothing is sent twice


def test_tweet_text_is_sent_only_when_the_setting_allows(fake: FakeIngestion, db_path: Path, clock: Clock) -> None:
    flusher = make_flusher(db_path, clock, fake.connection_string, include_text=True)
    rate(flusher.store, 1)
    flusher.flush_once()
    assert fake.events()[0]["data"]["baseData"]["properties"]["tweet_text"] == "a tweet about my lost bag"


def test_503_keeps_rows_pending_with_backoff_and_the_resend_keeps_the_event_id(
        fake: FakeIngestion, db_path: Path, clock: Clock) -> None:
    flusher = make_flusher(db_path, clock, fake.connection_string)
    ids = rate(flusher.store, 3)
    fake.mode = "503"
    assert flusher.flush_once().failed == 3
    rows = {r["id"]: r for r in flusher.store.list()}
    assert all(r["telemetry_state"] == "pending" and r["attempts"] == 1 and "503" in r["last_error"]
               for r in rows.values())
    assert all(r["next_attempt_at"] == clock.now + 10 for r in rows.values())
    assert flusher.flush_once().failed == 0 and fake.requests == 1  # not due yet: no request at all
    clock.now += 11
    assert flusher.flush_once().failed == 3  # second failure doubles the wait
    assert all(r["next_attempt_at"] == clock.now + 20 for r in flusher.store.list())
    fake.mode = "accept"
    clock.now += 21
    assert flusher.flush_once().sent == 3
    assert sorted(fake.feedback_ids()) == sorted(ids)  # each exactly once
    tried = fake.events(accepted=False)
    assert len(tried) == 9
    assert sorted({e["data"]["baseData"]["properties"]["feedback_id"] for e in tried}) == sorted(ids)
    assert {e["tags"]["ai.operation.id"] for e in tried} == {i.replace("-", "") for i in ids}


def test_partial_acceptance_marks_only_the_accepted_items(fake: FakeIngestion, db_path: Path, clock: Clock) -> None:
    flusher = make_flusher(db_path, clock, fake.connection_string)
    rate(flusher.store, 4)
    fake.mode = "partial"
    report = flusher.flush_once()
    assert (report.sent, report.failed) == (2, 2)
    assert flusher.store.telemetry_counts() == {"pending": 0, "failed": 2, "sent": 2}
    failed = [r for r in flusher.store.list() if r["telemetry_state"] == "pending"]
    assert all("500" in r["last_error"] for r in failed)
    fake.mode = "accept"
    clock.now += 11
    assert flusher.flush_once().sent == 2
    assert len(fake.feedback_ids()) == 4 and len(set(fake.feedback_ids())) == 4


@pytest.mark.parametrize("mode", ["accept", "partial"])
def test_rows_held_back_by_the_exporters_rate_limit_stay_pending(
        fake: FakeIngestion, db_path: Path, clock: Clock, mode: str) -> None:
    # With offline storage off, the exporter's token bucket drops what it cannot send now and still reports
    # success; only the endpoint's reply may mark a row sent. 20/s keeps rows held back on a slow machine too.
    store = FeedbackStore(db_path, clock=clock)
    sender = AppInsightsSender(fake.connection_string, timeout_s=3, max_envelopes_per_second=20)
    flusher = TelemetryFlusher(store, sender, batch_size=50)
    ids = rate(store, 400)
    fake.mode = mode
    report = flusher.flush_once()
    rows = store.list(FeedbackFilter(verdict=None), limit=len(ids))
    sent = {r["id"] for r in rows if r["telemetry_state"] == "sent"}
    accepted = fake.feedback_ids()
    assert report.sent == len(sent) == len(accepted) < len(ids)
    assert sent == set(accepted)
    received = set(fake.feedback_ids(accepted=False))
    held_back = [r for r in rows if r["attempts"] and r["id"] not in received]  # tried, never on the wire
    assert held_back and all("rate limit" in r["last_error"] for r in held_back)
    assert all(r["telemetry_state"] == "pending" for r in rows if r["id"] not in sent)
    fake.mode = "accept"
    flusher.sender = AppInsightsSender(fake.connection_string, timeout_s=3)  # the exporter's default limit
    clock.now += 3600
    assert flusher.flush_once().sent == len(ids) - len(sent)
    assert sorted(fake.feedback_ids()) == sorted(ids)  # every row accepted once, none lost


def test_endpoint_down_then_back(db_path: Path, clock: Clock) -> None:
    port = free_port()
    down = connection_string(port)
    flusher = make_flusher(db_path, clock, down)
    ids = rate(flusher.store, 3)
    report = flusher.flush_once()  # nothing listens on the port
    assert (report.sent, report.failed) == (0, 3)
    assert {r["last_error"] for r in flusher.store.list()} == {"ingestion endpoint unreachable"}
    back = FakeIngestion(port).start()
    try:
        clock.now += 11
        assert flusher.flush_once().sent == 3
        assert sorted(back.feedback_ids()) == sorted(ids)
    finally:
        back.stop()


def test_app_restarted_between_sends(fake: FakeIngestion, db_path: Path, clock: Clock) -> None:
    first = make_flusher(db_path, clock, fake.connection_string)
    sent_before = rate(first.store, 2)
    first.flush_once()
    fake.mode = "503"
    pending_at_crash = rate(first.store, 3)
    first.flush_once()
    first.store.close()  # the process dies here; the flusher object is gone with it
    fake.mode = "accept"
    clock.now += 11
    second = make_flusher(db_path, clock, fake.connection_string)  # a new process on the same volume
    assert second.store.telemetry_counts() == {"pending": 0, "failed": 3, "sent": 2}
    assert second.flush_once().sent == 3
    assert sorted(fake.feedback_ids()) == sorted(sent_before + pending_at_crash)
    assert second.flush_once().sent == 0


def test_crash_after_claiming_loses_nothing(fake: FakeIngestion, db_path: Path, clock: Clock) -> None:
    flusher = make_flusher(db_path, clock, fake.connection_string)
    ids = rate(flusher.store, 2)
    flusher.store.claim_due(10, flusher.retry.lease_s)  # the process died between the lease and the send
    assert flusher.flush_once().sent == 0  # leased: no other flusher takes them meanwhile
    clock.now += flusher.retry.lease_s + 1
    assert flusher.flush_once().sent == 2
    assert sorted(fake.feedback_ids()) == sorted(ids)


def test_a_changed_verdict_is_resent_under_the_same_id(fake: FakeIngestion, db_path: Path, clock: Clock) -> None:
    flusher = make_flusher(db_path, clock, fake.connection_string)
    (feedback_id,) = rate(flusher.store, 1, verdict="up")
    flusher.flush_once()
    flusher.store.record_verdict(feedback_id=feedback_id, text="x", model_name="tiny-tfidf", model_version="3",
                                 predicted_label="positive", confidence=0.75, verdict="down")
    assert flusher.flush_once().sent == 1
    events = [e["data"]["baseData"]["properties"] for e in fake.events()]
    assert [(e["feedback_id"], e["revision"], e["verdict"]) for e in events] == [
        (feedback_id, "1", "up"), (feedback_id, "2", "down")]


def test_without_connection_string_telemetry_is_off_and_rows_stay_pending(
        db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APPLICATIONINSIGHTS_CONNECTION_STRING", raising=False)
    monkeypatch.setenv("MAINTAINER_SECRET", "unused-here")
    get_settings.cache_clear()
    store = FeedbackStore(db_path)
    flusher = build_flusher(store, get_settings())
    rate(store, 2)
    assert not flusher.enabled
    report = flusher.flush_once()
    assert not report.enabled and report.sent == 0
    assert store.telemetry_counts()["pending"] == 2
    flusher.start()  # a no-op without a sender
    flusher.stop()
    get_settings.cache_clear()


def test_build_flusher_reads_the_connection_string_and_privacy_setting(
        fake: FakeIngestion, db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPLICATIONINSIGHTS_CONNECTION_STRING", fake.connection_string)
    monkeypatch.setenv("TELEMETRY_INCLUDE_TEXT", "true")
    get_settings.cache_clear()
    flusher = build_flusher(FeedbackStore(db_path), get_settings())
    get_settings.cache_clear()
    assert flusher.enabled and flusher.sender.include_text  # type: ignore[union-attr]
    assert flusher.retry == RetryPolicy(backoff_base_s=10, backoff_max_s=3600, lease_s=4 * 10 + 30)


def test_a_malformed_connection_string_turns_telemetry_off(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPLICATIONINSIGHTS_CONNECTION_STRING", "InstrumentationKey=not-a-uuid")
    get_settings.cache_clear()
    flusher = build_flusher(FeedbackStore(db_path), get_settings())
    get_settings.cache_clear()
    assert not flusher.enabled


def test_background_thread_flushes_when_woken(fake: FakeIngestion, db_path: Path) -> None:
    store = FeedbackStore(db_path)
    flusher = TelemetryFlusher(store, AppInsightsSender(fake.connection_string, timeout_s=3), interval_s=60)
    flusher.start()
    try:
        ids = rate(store, 2)
        flusher.wake()
        deadline = time.monotonic() + 10
        while store.telemetry_counts()["sent"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(fake.feedback_ids()) == sorted(ids)
    finally:
        flusher.stop()
    assert flusher._thread is None


def test_sender_exception_keeps_rows_pending(db_path: Path, clock: Clock) -> None:
    class Broken:
        def send(self, rows: object) -> object:
            raise RuntimeError("boom")

    store = FeedbackStore(db_path, clock=clock)
    flusher = TelemetryFlusher(store, Broken(), retry=RetryPolicy(backoff_base_s=5))
    rate(store, 1)
    assert flusher.flush_once().failed == 1
    row = store.list()[0]
    assert row["telemetry_state"] == "pending" and "boom" in row["last_error"]


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(backoff_base_s=10, backoff_max_s=60)
    assert [policy.backoff(n) for n in range(1, 6)] == [10, 20, 40, 60, 60]
