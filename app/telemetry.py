"""Feedback telemetry: pending SQLite rows become Application Insights ``customEvents`` named ``TweetFeedback``.

Delivery is at-least-once and driven by the feedback store, never by an in-memory queue:

- :class:`AppInsightsSender` turns rows into OpenTelemetry log records carrying
  ``microsoft.custom_event.name`` and exports them with ``azure-monitor-opentelemetry``'s
  ``AzureMonitorLogExporter`` synchronously, with the exporter's own retries and offline file storage
  turned off: the store is the only retry queue. The exporter's result is not trusted: its rate limiter
  drops what it cannot send now and still reports success. Instead the sender watches each request the
  exporter makes (which rows it carries) and its reply (``errors`` by item ``index``), so a row counts as
  accepted only when a reply accepted the item that carried it.
- :class:`TelemetryFlusher` leases due rows, sends them, marks the accepted ones ``sent`` and schedules the
  others again by its :class:`RetryPolicy`. An outage, a crash or a restart leaves rows pending in SQLite; a
  resend carries the same event id (``feedback_id``, also the event's ``operation_Id``) and the row's
  ``revision``.

Without a connection string there is no sender: rows stay pending and the UI says telemetry is off.
Whether the tweet text is sent is the ``TELEMETRY_INCLUDE_TEXT`` setting (off by default).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from app.settings import AZURE_SELF_DIAGNOSTICS_FLAGS, CONNECTION_STRING_KEY, AppSettings, connection_string
from sentiment.feedback import FeedbackStore, parse_iso

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import ReadableLogRecord

logger = logging.getLogger(__name__)

EVENT_NAME = "TweetFeedback"
SERVICE_NAME = "tweet-sentiment-app"
_CUSTOM_EVENT_ATTRIBUTE = "microsoft.custom_event.name"
_CUSTOM_MEASUREMENTS_ATTRIBUTE = "microsoft.custom_measurements"
_SAMPLED_OUT = "telemetry sampled out."
_UNREACHABLE = "ingestion endpoint unreachable"
_HELD_BACK = "not sent: held back by the exporter's rate limit"


@dataclass(frozen=True)
class RetryPolicy:
    """When a row that ingestion did not accept is tried again (the store counts the attempts).

    Attributes:
        backoff_base_s: the wait after the first failed attempt; it doubles after each further one.
        backoff_max_s: the longest wait; a row is retried at this pace for as long as it is not accepted.
        lease_s: how long rows in flight are held from other flushers; after a crash mid-send they are due
            again once it ends.
    """

    backoff_base_s: float = 10.0
    backoff_max_s: float = 3600.0
    lease_s: float = 120.0

    @classmethod
    def from_settings(cls, settings: AppSettings) -> RetryPolicy:
        # A send is one request bounded by the timeout; the lease outlasts it with room to spare, so rows still
        # in flight are never claimed a second time.
        return cls(backoff_base_s=settings.telemetry_backoff_base_s, backoff_max_s=settings.telemetry_backoff_max_s,
                   lease_s=4 * settings.telemetry_timeout_s + 30)

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt: doubling from the base, capped."""
        return min(self.backoff_max_s, self.backoff_base_s * 2 ** max(0, attempts - 1))


@dataclass
class SendResult:
    """Outcome of one send: rows accepted by ingestion, and rows not accepted with the reason."""

    accepted: list[tuple[str, int]] = field(default_factory=list)
    failed: list[tuple[str, int, str]] = field(default_factory=list)


class Sender(Protocol):
    """Something that delivers feedback rows and says which ones were accepted."""

    def send(self, rows: Sequence[dict[str, Any]]) -> SendResult: ...


def event_properties(row: dict[str, Any], include_text: bool) -> dict[str, str]:
    """The customDimensions of a row's event (the tweet text only when ``include_text``)."""
    properties = {
        "feedback_id": row["id"], "revision": str(row["revision"]), "verdict": row["verdict"],
        "model_name": row["model_name"], "model_version": str(row["model_version"]),
        "predicted_label": row["predicted_label"], "true_label": str(row["true_label"]),
        "created_at": row["created_at"],
    }
    if include_text:
        properties["tweet_text"] = row["text"]
    return properties


def _trace_id(feedback_id: str) -> int:
    """The feedback uuid as a 128-bit trace id: Application Insights shows it as ``operation_Id``."""
    try:
        return uuid.UUID(feedback_id).int or 1
    except ValueError:
        return int.from_bytes(hashlib.sha256(feedback_id.encode()).digest()[:16], "big") or 1


def _span_id(feedback_id: str, revision: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{feedback_id}:{revision}".encode()).digest()[:8], "big") or 1


@dataclass
class _Exchange:
    """One track request as the exporter's HTTP pipeline saw it: the rows it carried, in order, and the reply."""

    keys: list[tuple[str, int]]
    status: int | None = None
    body: str = ""

    def outcomes(self) -> dict[tuple[str, int], str | None]:
        """Each carried row → None when the reply accepted its item, else why not."""
        if self.status is None:
            return dict.fromkeys(self.keys, _UNREACHABLE)
        errors = _item_errors(self.body) if self.status in (200, 206) else None
        if errors is None:
            return dict.fromkeys(self.keys, f"HTTP {self.status}: {self.body[:200]}".strip())
        outcomes: dict[tuple[str, int], str | None] = {}
        for index, key in enumerate(self.keys):
            error = errors.get(index)
            if error is None or error[1].lower() == _SAMPLED_OUT:
                outcomes[key] = None  # a sampled-out item is final: ingestion will never take it
            else:
                outcomes[key] = f"item rejected with {error[0]}: {error[1]}"[:500]
        return outcomes


class AppInsightsSender:
    """Sends rows to Application Insights through ``AzureMonitorLogExporter``, one request per batch."""

    def __init__(self, conn_str: str, *, include_text: bool = False, timeout_s: float = 10.0,
                 sdk_stats: bool = False, max_envelopes_per_second: int | None = None) -> None:
        """
        Args:
            conn_str: the Application Insights connection string.
            include_text: send the tweet text with each event.
            timeout_s: connect and read timeout of a request.
            sdk_stats: let the exporter send its own statistics to Microsoft.
            max_envelopes_per_second: the exporter's client-side rate limit (None: its default); the rows it
                holds back stay pending.
        """
        if not sdk_stats:
            for flag in AZURE_SELF_DIAGNOSTICS_FLAGS:
                os.environ.setdefault(flag, "true")
        from azure.monitor.opentelemetry.exporter import AzureMonitorLogExporter
        from opentelemetry.sdk.resources import Resource

        # The exporter logs every request's headers at INFO; keep our logs readable.
        logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
        self.include_text = include_text
        self._resource = Resource.create({"service.name": SERVICE_NAME})
        self._exchanges: list[_Exchange] = []
        limit: dict[str, Any] = {}
        if max_envelopes_per_second is not None:  # passing None would turn the exporter's limit off
            limit["max_envelopes_per_second"] = max_envelopes_per_second
        self._exporter = AzureMonitorLogExporter(
            connection_string=conn_str,
            disable_offline_storage=True,  # the feedback store is the retry queue
            retry_total=0,  # one attempt per flush: backoff is ours, per row
            timeout=timeout_s,
            read_timeout=timeout_s,
            raw_request_hook=self._on_request,
            raw_response_hook=self._on_response,
            **limit,
        )

    def _on_request(self, pipeline_request: Any) -> None:
        self._exchanges.append(_Exchange(_carried_keys(pipeline_request.http_request.content)))

    def _on_response(self, pipeline_response: Any) -> None:
        response = pipeline_response.http_response
        try:
            body = response.text()
        except Exception:  # the body is only used for per-item results and error messages
            body = ""
        if self._exchanges:
            self._exchanges[-1].status = int(response.status_code)
            self._exchanges[-1].body = body

    def _record(self, row: dict[str, Any]) -> ReadableLogRecord:
        from opentelemetry import trace
        from opentelemetry._logs import LogRecord, SeverityNumber
        from opentelemetry.sdk._logs import ReadableLogRecord
        from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

        span = NonRecordingSpan(SpanContext(trace_id=_trace_id(row["id"]), span_id=_span_id(row["id"], row["revision"]),
                                            is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED)))
        attributes: dict[str, Any] = {
            _CUSTOM_EVENT_ATTRIBUTE: EVENT_NAME,
            _CUSTOM_MEASUREMENTS_ATTRIBUTE: json.dumps({"confidence": float(row["confidence"])}),
            **event_properties(row, self.include_text),
        }
        timestamp = int(parse_iso(row["updated_at"]).timestamp() * 1e9)
        record = LogRecord(timestamp=timestamp, context=trace.set_span_in_context(span), body=EVENT_NAME,
                           severity_number=SeverityNumber.INFO, attributes=attributes)
        return ReadableLogRecord(log_record=record, resource=self._resource)

    def send(self, rows: Sequence[dict[str, Any]]) -> SendResult:
        """Export ``rows``; a row is accepted only when a reply accepted the item that carried it.

        The exporter's result is ignored: it says SUCCESS when its rate limiter dropped the end of the batch,
        and nothing per item. A row in no request was held back; a request without a reply never arrived.
        """
        self._exchanges = []
        self._exporter.export([self._record(row) for row in rows])
        accepted: set[tuple[str, int]] = set()
        reasons: dict[tuple[str, int], str] = {}
        for exchange in self._exchanges:  # more than one after a redirect
            for key, reason in exchange.outcomes().items():
                if reason is None:
                    accepted.add(key)
                else:
                    reasons[key] = reason
        result = SendResult()
        for row in rows:
            key = (row["id"], int(row["revision"]))
            if key in accepted:
                result.accepted.append(key)
            else:
                result.failed.append((*key, reasons.get(key, _HELD_BACK)))
        return result

    def close(self) -> None:
        self._exporter.shutdown()


def _carried_keys(content: Any) -> list[tuple[str, int]]:
    """``(feedback_id, revision)`` of each envelope in a track request body, in order."""
    try:
        return [(envelope["data"]["baseData"]["properties"]["feedback_id"],
                 int(envelope["data"]["baseData"]["properties"]["revision"])) for envelope in json.loads(content)]
    except (ValueError, TypeError, KeyError):
        return []  # a body we cannot read: none of its rows can count as accepted


def _item_errors(body: str) -> dict[int, tuple[int, str]] | None:
    """``index → (statusCode, message)`` from a track reply, or None when the body is not one."""
    try:
        reply = json.loads(body)
        return {int(e["index"]): (int(e.get("statusCode", 0)), str(e.get("message", "")))
                for e in reply.get("errors") or []}
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


@dataclass
class FlushReport:
    """What one flush did."""

    sent: int = 0
    failed: int = 0
    enabled: bool = True


class TelemetryFlusher:
    """Moves pending feedback rows to the sender, in the background and on demand."""

    def __init__(self, store: FeedbackStore, sender: Sender | None, *, batch_size: int = 50,
                 interval_s: float = 30.0, retry: RetryPolicy | None = None) -> None:
        self.store = store
        self.sender = sender
        self.batch_size = batch_size
        self.interval_s = interval_s
        self.retry = retry or RetryPolicy()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        """False when no connection string is configured (telemetry off)."""
        return self.sender is not None

    def flush_once(self, stop: threading.Event | None = None) -> FlushReport:
        """Send every due row, batch by batch; stop early when the endpoint is unreachable or failing.

        Args:
            stop: checked between batches (the background thread passes its stop event).
        """
        if self.sender is None:
            return FlushReport(enabled=False)
        report = FlushReport()
        with self._flush_lock:
            while stop is None or not stop.is_set():
                rows = self.store.claim_due(self.batch_size, self.retry.lease_s)
                if not rows:
                    break
                try:
                    result = self.sender.send(rows)
                except Exception as error:  # a sender bug must not lose rows: they stay pending
                    logger.exception("telemetry send failed")
                    result = SendResult(failed=[(r["id"], int(r["revision"]), repr(error)) for r in rows])
                report.sent += self.store.mark_sent(result.accepted)
                if result.failed:
                    self.store.mark_failed(result.failed, self.retry.backoff)
                    report.failed += len(result.failed)
                    logger.warning("telemetry: %d row(s) not accepted (%s); will retry", len(result.failed),
                                   result.failed[0][2])
                    if not result.accepted:
                        break
        if report.sent:
            logger.info("telemetry: %d feedback event(s) accepted by Application Insights", report.sent)
        return report

    def wake(self) -> None:
        """Ask the background thread to flush now (after a new verdict)."""
        self._wake.set()

    def start(self) -> None:
        """Start the background thread (idempotent; a no-op when telemetry is off)."""
        if self.sender is None or (self._thread is not None and self._thread.is_alive()):
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="telemetry-flusher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.flush_once(self._stop)
            except Exception:  # e.g. the database is locked for longer than the busy timeout
                logger.exception("telemetry flush failed; retrying in %.0f s", self.interval_s)
            self._wake.wait(self.interval_s)
            self._wake.clear()

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop the background thread; rows not yet accepted stay pending for the next start."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None


def build_flusher(store: FeedbackStore, settings: AppSettings) -> TelemetryFlusher:
    """The flusher for these settings: with an Application Insights sender when a connection string is set."""
    conn_str = connection_string()
    sender: Sender | None = None
    if conn_str:
        try:
            sender = AppInsightsSender(conn_str, include_text=settings.telemetry_include_text,
                                       timeout_s=settings.telemetry_timeout_s, sdk_stats=settings.telemetry_sdk_stats)
        except ValueError as error:  # a malformed connection string
            logger.error("telemetry off: %s", error)
    else:
        logger.info("telemetry off: %s is not set; feedback stays in SQLite", CONNECTION_STRING_KEY)
    return TelemetryFlusher(store, sender, batch_size=settings.telemetry_batch_size,
                            interval_s=settings.telemetry_flush_interval_s, retry=RetryPolicy.from_settings(settings))
