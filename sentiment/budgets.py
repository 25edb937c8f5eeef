"""Each served model's queue bound and deadline, in seconds of that model's own work.

One bound in texts meant very different waits: 512 texts are about 0.6 s of MiniLM's work but 4.5 s of mpnet's, and
a 256-tweet batch to mpnet was answered 503 at the 5 s deadline while the machine was shared. Here each model's
rate is measured when it is loaded (a full micro-batch, after the warm-up), and:

- its queue holds ``QUEUE_SECONDS`` of that rate, at least one maximum-size request (``MAX_BATCH_TEXTS``) and at
  most ``MAX_DERIVED_QUEUE_TEXTS``;
- its deadline is ``DEADLINE_FACTOR`` times the full queue's work at that rate, and at least ``MIN_DEADLINE_S``.

``MODEL_MAX_QUEUE_TEXTS`` / ``MODEL_REQUEST_TIMEOUT_S`` (``name=value,…``) set one model's figures, and
``MAX_QUEUE_TEXTS`` / ``REQUEST_TIMEOUT_S`` every model's; each is used where given, the measured figures elsewhere.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sentiment.settings import MAX_BATCH_TEXTS, EngineSettings

# The full queue's work at the rate measured on a quiet machine, ×2.5 because another model's traffic may share the
# cores (a 256-tweet mpnet batch took 2.2× its idle time beside 8 connections to MiniLM: make bench-budgets), ×2
# margin for a request behind a full queue.
DEADLINE_FACTOR = 5.0
MIN_DEADLINE_S = 5.0
# Without a measured rate (WARMUP=false) the queue bound of earlier releases.
UNMEASURED_QUEUE_TEXTS = 512
# A derived bound never exceeds this: queued texts are held in memory (up to MAX_TEXT_CHARS each).
MAX_DERIVED_QUEUE_TEXTS = 4096


@dataclass(frozen=True)
class Budget:
    """What one model may hold and how long a request may wait for it."""

    queue_texts: int
    deadline_s: float
    rate: float | None  # texts per second of one full micro-batch, measured at load (None: not measured)
    source: str  # "measured", "settings" or "default"


def measure_rate(predict_proba: Callable[[Sequence[str]], np.ndarray], texts: Sequence[str], size: int) -> float:
    """Texts per second of one call of ``size`` texts (``texts`` repeated), the model already warm."""
    batch = [texts[i % len(texts)] for i in range(size)]
    started = time.perf_counter()
    predict_proba(batch)
    return size / max(time.perf_counter() - started, 1e-6)


def budget_for(name: str, rate: float | None, settings: EngineSettings) -> Budget:
    """The queue bound and deadline of model ``name`` (see the module docstring for the rule)."""
    queue = settings.model_max_queue_texts.get(name, settings.max_queue_texts)
    deadline = settings.model_request_timeout_s.get(name, settings.request_timeout_s)
    given = queue is not None and deadline is not None
    if queue is None:
        queue = (min(MAX_DERIVED_QUEUE_TEXTS, max(MAX_BATCH_TEXTS, math.ceil(rate * settings.queue_seconds))) if rate
                 else UNMEASURED_QUEUE_TEXTS)
    if deadline is None:
        deadline = max(MIN_DEADLINE_S, math.ceil(10 * DEADLINE_FACTOR * queue / rate) / 10) if rate else MIN_DEADLINE_S
    source = "settings" if given else ("measured" if rate else "default")
    return Budget(int(queue), float(deadline), rate, source)


def available_cpus(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may use: the cgroup's CPU quota (a container's limit) and its affinity, whichever is less.

    ``os.cpu_count()`` reports the host's cores, so a pod limited to 2 CPUs on a 64-core node would size itself
    for 64.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = None
    try:
        raw = (cgroup / "cpu.max").read_text().split()  # cgroup v2: "<quota> <period>" or "max <period>"
        if raw and raw[0] != "max":
            quota = int(raw[0]) / int(raw[1])
    except (OSError, ValueError, IndexError):
        try:  # cgroup v1
            limit = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
            if limit > 0:
                quota = limit / int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            pass
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


class ComputeSlots:
    """The model calls that may run at once in this process, granted in arrival order, whichever model asks.

    Two models' calls running together each with ``ONNX_THREADS`` threads oversubscribe the cores: a 256-tweet mpnet
    batch took 6-7 s while 8 connections sent single tweets to MiniLM, against 2.3 s alone. Serialised in arrival
    order, the models take turns call by call, and every call has the cores to itself.
    """

    def __init__(self, permits: int) -> None:
        if permits < 1:
            raise ValueError("permits must be at least 1")
        self.permits = permits
        self._free = permits
        self._lock = threading.Lock()
        self._waiting: deque[threading.Event] = deque()

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody is waiting (never blocks: the event loop may call it)."""
        with self._lock:
            if self._free and not self._waiting:
                self._free -= 1
                return True
            return False

    def acquire(self) -> None:
        with self._lock:
            if self._free and not self._waiting:
                self._free -= 1
                return
            turn = threading.Event()
            self._waiting.append(turn)
        turn.wait()

    def release(self) -> None:
        with self._lock:
            if self._waiting:
                self._waiting.popleft().set()  # handed over, never free in between: arrival order holds
            else:
                self._free += 1

    @contextmanager
    def held(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()
