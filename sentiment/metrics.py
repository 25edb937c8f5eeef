"""Prometheus metrics of the service, in a registry of their own per app.

A private ``CollectorRegistry`` (not the process-wide default) lets several apps live in one process (tests,
or the API mounted in Streamlit next to other instrumented code) without "duplicated timeseries" errors.

With several worker processes (``python -m api.serve``), prometheus-client's multiprocess mode is on:
``PROMETHEUS_MULTIPROC_DIR`` names a folder where every worker writes its values, and whichever worker answers
``/metrics`` adds them up. Counters and histograms are summed over workers, dead ones included, so they never go
back; gauges say which worker value they show (``multiprocess_mode``), and a dead worker's gauges are dropped.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

# HTTP latency: the service answers in milliseconds, the seed-style server in tens of milliseconds.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# Gauges that exist only for served models: a zero is a model that left (multiprocess files keep every series).
_ZERO_MEANS_GONE = ("model_served_info", "model_queue_limit_texts", "model_deadline_seconds")
_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+_(\d+)\.db$")
SAMPLE_INTERVAL_S = 1.0
_SERVED_LABELS = ("model", "version", "default")


def multiprocess_dir() -> Path | None:
    """The folder shared by this server's workers, when prometheus-client's multiprocess mode is on."""
    value = os.environ.get(MULTIPROC_DIR_VARIABLE)
    return Path(value) if value else None


class Metrics:
    """The service's counters and histograms; ``render()`` gives the /metrics payload."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.shared_dir = multiprocess_dir()
        # Gauges read from a function: on each scrape in one process; sampled every second by each worker in
        # multiprocess mode, where a scrape reaches one worker only (``set_function`` would show that one's).
        self._sampled: dict[tuple[Gauge, tuple[str, ...]], Callable[[], float]] = {}
        self._sampler: threading.Thread | None = None
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
            "model_queue_texts", "Texts waiting for the model (not counting the call in progress); with several "
            "workers, the longest queue of any.", ["model"], registry=self.registry, multiprocess_mode="livemax",
        )
        self.queue_limit = Gauge(
            "model_queue_limit_texts", "Most texts allowed to wait for the model (QUEUE_SECONDS of its rate, or set), "
            "in each worker.", ["model"], registry=self.registry, multiprocess_mode="livemax",
        )
        self.deadline = Gauge(
            "model_deadline_seconds", "Deadline of a request to the model (queue and call), past which it gets 503.",
            ["model"], registry=self.registry, multiprocess_mode="livemax",
        )
        self.dropped = {
            reason: Counter(name, help_text, ["model"], registry=self.registry)
            for reason, name, help_text in (
                ("shed", "requests_shed_total", "Requests refused at once with 503 because the queue was full."),
                ("timed_out", "requests_timed_out_total", "Requests answered 503 at the model's deadline, work dropped."),
                ("cancelled", "requests_cancelled_total", "Requests whose client went away; queued work dropped."),
            )
        }
        self.models_ready = Gauge("models_ready", "1 when the models are loaded and warmed up (in every worker).",
                                  registry=self.registry, multiprocess_mode="livemin")
        self.served = Gauge(
            "model_served_info", "1 for each model version served now (by any worker: both during a reload); "
            "default=\"true\" marks the default model.",
            _SERVED_LABELS, registry=self.registry, multiprocess_mode="livemax",
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
            multiprocess_mode="livemostrecent",
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

    def sample(self, gauge: Gauge, read: Callable[[], float], *labels: str) -> None:
        """Report ``read()`` as the value of ``gauge`` (with ``labels``) whenever metrics are read."""
        child = gauge.labels(*labels) if labels else gauge
        if self.shared_dir is None:
            child.set_function(read)
            return
        self._sampled[(gauge, labels)] = read
        child.set(read())
        if self._sampler is None:
            self._sampler = threading.Thread(target=self._sample_forever, name="metrics-sampler", daemon=True)
            self._sampler.start()

    def _sample_forever(self) -> None:
        while True:
            time.sleep(SAMPLE_INTERVAL_S)
            self._sample_now()

    def _sample_now(self) -> None:
        for (gauge, labels), read in list(self._sampled.items()):
            with contextlib.suppress(Exception):  # a model being swapped out: its next sample comes
                (gauge.labels(*labels) if labels else gauge).set(read())

    def track_queue(self, model: str, depth: Callable[[], float], limit: int, deadline_s: float) -> None:
        """Report ``model``'s queue depth on each scrape, its bounds, and create its drop counters at 0."""
        self.sample(self.queue_texts, depth, model)
        self.queue_limit.labels(model).set(limit)
        self.deadline.labels(model).set(deadline_s)
        for counter in self.dropped.values():
            counter.labels(model)

    def untrack_queue(self, model: str) -> None:
        """Stop reporting the queue of a model that is no longer served."""
        self._sampled.pop((self.queue_texts, (model,)), None)
        for gauge in (self.queue_texts, self.queue_limit, self.deadline):
            self._forget(gauge, (model,))

    def show_served(self, versions: dict[str, str], default: str) -> None:
        """Make ``model_served_info`` list exactly the models served now."""
        shown = {(model, version, str(model == default).lower()) for model, version in versions.items()}
        listed = {tuple(sample.labels[name] for name in _SERVED_LABELS)
                  for metric in self.served.collect() for sample in metric.samples}
        for labels in listed - shown:
            self._forget(self.served, labels)
        for labels in shown:
            self.served.labels(*labels).set(1)

    def _forget(self, gauge: Gauge, labels: tuple[str, ...]) -> None:
        """Remove one series; in multiprocess mode first zero it, since the shared files keep its last value."""
        if self.shared_dir is not None:
            with contextlib.suppress(KeyError, ValueError):
                gauge.labels(*labels).set(0)
        with contextlib.suppress(KeyError):
            gauge.remove(*labels)

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
        """The Prometheus text exposition of every metric (of every live and dead worker in multiprocess mode)."""
        if self.shared_dir is None:
            return generate_latest(self.registry)
        self._sample_now()
        forget_dead_workers(self.shared_dir)
        merged = CollectorRegistry()
        merged.register(_WithoutGoneModels(multiprocess.MultiProcessCollector(None, path=str(self.shared_dir))))
        return generate_latest(merged)


class _WithoutGoneModels:
    """The merged metrics, less the zeroed series of models no worker serves any more."""

    def __init__(self, collector: multiprocess.MultiProcessCollector) -> None:
        self.collector = collector

    def collect(self):  # noqa: ANN201 - prometheus-client's collector protocol
        for metric in self.collector.collect():
            if metric.name in _ZERO_MEANS_GONE:
                metric.samples = [sample for sample in metric.samples if sample.value != 0]
            yield metric


def forget_dead_workers(shared_dir: Path) -> list[int]:
    """Drop the live gauges of workers that died (killed ones never say so); their counters stay in the sums."""
    dead = set()
    for path in shared_dir.glob("gauge_live*_*.db"):
        match = _LIVE_GAUGE_FILE.search(path.name)
        if match and not _alive(int(match.group(1))):
            dead.add(int(match.group(1)))
    for pid in dead:
        multiprocess.mark_process_dead(pid, str(shared_dir))
    return sorted(dead)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
