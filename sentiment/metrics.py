"""Prometheus metrics of the service, in a registry of their own per app.

A private ``CollectorRegistry`` (not the process-wide default) lets several apps live in one process (tests,
or the API mounted in Streamlit next to other instrumented code) without "duplicated timeseries" errors.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# HTTP latency: the service answers in milliseconds, the seed-style server in tens of milliseconds.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """The service's counters and histograms; ``render()`` gives the /metrics payload."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests_total", "HTTP requests by route, method and status code.",
            ["route", "method", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds", "HTTP request latency by route.",
            ["route", "method"], buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.errors = Counter(
            "http_errors_total", "HTTP responses with status >= 400, by route and status code.",
            ["route", "status"], registry=self.registry,
        )
        self.batch_size = Histogram(
            "model_batch_size", "Texts per model call (micro-batches and batch chunks).",
            ["model"], buckets=_BATCH_BUCKETS, registry=self.registry,
        )
        self.inference = Histogram(
            "model_inference_seconds", "Duration of one model call.",
            ["model"], buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.predictions = Counter(
            "predictions_total", "Predictions served, by model and label.",
            ["model", "label"], registry=self.registry,
        )
        self.queue_texts = Gauge(
            "model_queue_texts", "Texts waiting for the model (not counting the call in progress).",
            ["model"], registry=self.registry,
        )
        self.queue_limit = Gauge(
            "model_queue_limit_texts", "Most texts allowed to wait for the model (QUEUE_SECONDS of its rate, or set).",
            ["model"], registry=self.registry,
        )
        self.deadline = Gauge(
            "model_deadline_seconds", "Deadline of a request to the model (queue and call), past which it gets 503.",
            ["model"], registry=self.registry,
        )
        self.dropped = {
            reason: Counter(name, help_text, ["model"], registry=self.registry)
            for reason, name, help_text in (
                ("shed", "requests_shed_total", "Requests refused at once with 503 because the queue was full."),
                ("timed_out", "requests_timed_out_total", "Requests answered 503 at the model's deadline, work dropped."),
                ("cancelled", "requests_cancelled_total", "Requests whose client went away; queued work dropped."),
            )
        }
        self.models_ready = Gauge("models_ready", "1 when the models are loaded and warmed up.", registry=self.registry)
        self.served = Gauge(
            "model_served_info", "1 for each model version served now; default=\"true\" marks the default model.",
            ["model", "version", "default"], registry=self.registry,
        )
        self.reloads = Counter(
            "model_reloads_total", "Changes of EXPORTS_DIR swapped in, or refused (the served models stayed).",
            ["outcome"], registry=self.registry,
        )
        for outcome in ("swapped", "refused"):
            self.reloads.labels(outcome)
        self.reload_seconds = Gauge(
            "model_reload_seconds", "Last swap: load (load, verify, warm up), swap (replace the served set), drain "
            "(until the old models' last requests were answered).", ["phase"], registry=self.registry,
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Record one HTTP exchange."""
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)
        if status >= 400:
            self.errors.labels(route, str(status)).inc()

    def observe_batch(self, model: str, size: int, seconds: float) -> None:
        """Record one model call of ``size`` texts."""
        self.batch_size.labels(model).observe(size)
        self.inference.labels(model).observe(seconds)

    def track_queue(self, model: str, depth: Callable[[], float], limit: int, deadline_s: float) -> None:
        """Report ``model``'s queue depth on each scrape, its bounds, and create its drop counters at 0."""
        self.queue_texts.labels(model).set_function(depth)
        self.queue_limit.labels(model).set(limit)
        self.deadline.labels(model).set(deadline_s)
        for counter in self.dropped.values():
            counter.labels(model)

    def untrack_queue(self, model: str) -> None:
        """Stop reporting the queue of a model that is no longer served."""
        for gauge in (self.queue_texts, self.queue_limit, self.deadline):
            with contextlib.suppress(KeyError):
                gauge.remove(model)

    def show_served(self, versions: dict[str, str], default: str) -> None:
        """Make ``model_served_info`` list exactly the models served now."""
        self.served.clear()
        for model, version in versions.items():
            self.served.labels(model, version, str(model == default).lower()).set(1)

    def predictions_served(self) -> int:
        """Texts classified so far, all models and labels together."""
        return int(sum(sample.value for metric in self.predictions.collect() for sample in metric.samples
                       if sample.name.endswith("_total")))

    def observe_drop(self, model: str, reason: str) -> None:
        """Count one request shed, timed out or cancelled."""
        self.dropped[reason].labels(model).inc()

    def count_predictions(self, model: str, label: str, count: int = 1) -> None:
        self.predictions.labels(model, label).inc(count)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
