"""Each model's queue bound and deadline, in seconds of its own work, measured at load or set per model."""

from __future__ import annotations

import asyncio
import re
import threading
import time

import numpy as np
import pytest
from pydantic import ValidationError

from sentiment.batching import MicroBatcher
from sentiment.budgets import (
    DEADLINE_FACTOR,
    MAX_DERIVED_QUEUE_TEXTS,
    MIN_DEADLINE_S,
    UNMEASURED_QUEUE_TEXTS,
    ComputeSlots,
    available_cpus,
    budget_for,
)
from sentiment.metrics import Metrics
from sentiment.settings import MAX_BATCH_TEXTS, EngineSettings


def _settings(**values: object) -> EngineSettings:
    return EngineSettings(**({"max_queue_texts": None, "request_timeout_s": None, "model_max_queue_texts": {},
                              "model_request_timeout_s": {}, "queue_seconds": 2.0} | values))


def test_a_fast_model_queues_more_texts_than_a_slow_one_for_the_same_seconds() -> None:
    fast = budget_for("minilm", 800.0, _settings())
    slow = budget_for("mpnet", 113.0, _settings())
    assert fast.queue_texts == 1600 and fast.source == "measured"
    assert fast.deadline_s == pytest.approx(DEADLINE_FACTOR * 1600 / 800)
    # Two seconds of mpnet are fewer texts than one maximum-size request: that request must still fit.
    assert slow.queue_texts == MAX_BATCH_TEXTS
    assert slow.deadline_s == pytest.approx(DEADLINE_FACTOR * MAX_BATCH_TEXTS / 113, abs=0.1)
    assert slow.deadline_s / (MAX_BATCH_TEXTS / 113) >= 2.5 * 2  # 2.5× for a shared machine, 2× margin


def test_a_deadline_is_never_shorter_than_the_floor_and_a_queue_never_longer_than_the_cap() -> None:
    assert budget_for("minilm", 800.0, _settings(queue_seconds=0.5)).deadline_s == MIN_DEADLINE_S
    fastest = budget_for("tfidf-lr", 100_000.0, _settings())
    assert fastest.queue_texts == MAX_DERIVED_QUEUE_TEXTS
    assert fastest.deadline_s == MIN_DEADLINE_S


def test_without_a_measured_rate_the_old_bounds_apply() -> None:
    budget = budget_for("minilm", None, _settings())
    assert (budget.queue_texts, budget.deadline_s, budget.source) == (UNMEASURED_QUEUE_TEXTS, MIN_DEADLINE_S, "default")


def test_settings_win_per_model_then_for_every_model() -> None:
    settings = _settings(max_queue_texts=64, request_timeout_s=3.0,
                         model_max_queue_texts={"mpnet": 2048}, model_request_timeout_s={"mpnet": 30.0})
    mpnet = budget_for("mpnet", 113.0, settings)
    assert (mpnet.queue_texts, mpnet.deadline_s) == (lambda b: (b.queue_texts, b.deadline_s))(
        budget_for("mpnet", None, settings))
    assert (mpnet.queue_texts, mpnet.deadline_s, mpnet.source) == (2048, 30.0, "settings")
    minilm = budget_for("minilm", 800.0, settings)
    assert (minilm.queue_texts, minilm.deadline_s) == (64, 3.0)
    # Only the queue set: the deadline still follows the measured rate and that queue.
    partly = budget_for("minilm", 800.0, _settings(max_queue_texts=8000))
    assert partly.deadline_s == pytest.approx(DEADLINE_FACTOR * 8000 / 800) and partly.source == "measured"


def test_per_model_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_MAX_QUEUE_TEXTS", "mpnet=256, minilm=2048")
    monkeypatch.setenv("MODEL_REQUEST_TIMEOUT_S", "mpnet=20")
    settings = EngineSettings()
    assert settings.model_max_queue_texts == {"mpnet": 256, "minilm": 2048}
    assert settings.model_request_timeout_s == {"mpnet": 20.0}


@pytest.mark.parametrize("raw", ["mpnet", "mpnet=", "=5", "mpnet=-1", "mpnet=many"])
def test_a_malformed_per_model_setting_is_refused_with_its_name(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("MODEL_MAX_QUEUE_TEXTS", raw)
    with pytest.raises(ValidationError, match="model_max_queue_texts"):
        EngineSettings()


def test_the_registry_measures_each_model_and_bounds_its_queue(registry_factory) -> None:
    registry = registry_factory(max_queue_texts=None, request_timeout_s=None)
    registry.metrics = Metrics()
    registry.load()
    for model in registry.models():
        assert model.budget.rate and model.budget.rate > 0
        assert model.batcher.max_queue_texts == model.budget.queue_texts >= MAX_BATCH_TEXTS
        assert model.budget.deadline_s >= MIN_DEADLINE_S
    exposition = registry.metrics.render().decode()
    for model in registry.models():
        limit = re.search(rf'^model_queue_limit_texts{{model="{model.name}"}} ([0-9.e+]+)$', exposition, re.MULTILINE)
        deadline = re.search(rf'^model_deadline_seconds{{model="{model.name}"}} ([0-9.e+]+)$', exposition, re.MULTILINE)
        assert limit and float(limit.group(1)) == model.budget.queue_texts
        assert deadline and float(deadline.group(1)) == model.budget.deadline_s


def test_without_warm_up_the_registry_keeps_the_unmeasured_bounds(registry_factory) -> None:
    registry = registry_factory(warmup=False, max_queue_texts=None, request_timeout_s=None)
    registry.load()
    assert {m.budget.source for m in registry.models()} == {"default"}


@pytest.mark.parametrize(("files", "expected"), [
    ({"cpu.max": "150000 100000\n"}, 2),        # cgroup v2 quota of 1.5 CPUs: 2 slots' worth, never 0
    ({"cpu.max": "100000 100000\n"}, 1),
    ({"cpu.max": "max 100000\n"}, None),       # no quota: the affinity decides
    ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),  # cgroup v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({}, None),
])
def test_cpus_are_counted_from_the_cgroup_quota(tmp_path, files: dict[str, str], expected: int | None) -> None:
    import os

    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    affinity = len(os.sched_getaffinity(0))
    assert available_cpus(tmp_path) == (min(expected, affinity) if expected else affinity)


def test_compute_slots_are_granted_in_arrival_order() -> None:
    slots = ComputeSlots(1)
    assert slots.try_acquire()
    order: list[int] = []
    threads = []
    for index in range(4):
        def wait(index: int = index) -> None:
            with slots.held():
                order.append(index)
        thread = threading.Thread(target=wait)
        thread.start()
        threads.append(thread)
        while len(slots._waiting) < index + 1:  # each waits in turn before the next starts
            time.sleep(0.001)
    assert not slots.try_acquire()  # taken, and others wait: the event loop never blocks on it
    slots.release()
    for thread in threads:
        thread.join(5)
    assert order == [0, 1, 2, 3]
    assert slots.try_acquire()


def test_two_models_never_call_at_once_when_one_slot_is_free() -> None:
    slots = ComputeSlots(1)
    running, most = [0], [0]
    lock = threading.Lock()

    def model(texts):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 1
        return np.tile([0.5, 0.5], (len(texts), 1)).astype(np.float32)

    async def main() -> None:
        first = MicroBatcher(model, max_batch_size=4, name="first", slots=slots)
        second = MicroBatcher(model, max_batch_size=4, name="second", slots=slots)
        await asyncio.gather(*(b.predict([f"t{i}"] * (1 + i % 3)) for i in range(12) for b in (first, second)))
        await first.aclose()
        await second.aclose()

    asyncio.run(main())
    assert most[0] == 1
