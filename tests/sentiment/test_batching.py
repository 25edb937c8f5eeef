"""Micro-batching: concurrent requests share model calls, results stay in order and equal unbatched ones."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import numpy as np
import pytest

from sentiment.batching import AbandonedError, DeadlineError, MicroBatcher, QueueFullError


class FakeModel:
    """P(positive) = a number derived from the text, so every answer can be checked; records call sizes."""

    def __init__(self, delay_s: float = 0.0, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.texts: list[list[str]] = []
        self.delay_s = delay_s
        self.fail = fail

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        self.texts.append(list(texts))
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail:
            raise ValueError("model exploded")
        positive = np.array([(len(t) % 10) / 10 for t in texts], dtype=np.float32)
        return np.stack([1 - positive, positive], axis=1)


def run(coroutine):
    return asyncio.run(coroutine)


def test_concurrent_requests_share_one_call() -> None:
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch_size=32, max_wait_ms=5)
    texts = [f"tweet {'x' * i}" for i in range(10)]

    async def scenario():
        results = await asyncio.gather(*(batcher.predict([t]) for t in texts))
        await batcher.aclose()
        return results

    results = run(scenario())
    assert model.calls == [10]
    np.testing.assert_allclose(np.concatenate(results), model(texts))


def test_results_keep_request_order_across_many_batches() -> None:
    model = FakeModel(delay_s=0.01)
    batcher = MicroBatcher(model, max_batch_size=4, max_wait_ms=2)
    texts = [f"t{'y' * (i % 7)}{i}" for i in range(30)]

    async def scenario():
        results = await asyncio.gather(*(batcher.predict([t]) for t in texts))
        await batcher.aclose()
        return results

    results = run(scenario())
    assert max(model.calls) <= 4 and sum(model.calls) == 30
    np.testing.assert_allclose(np.concatenate(results), model(texts))


def test_batch_request_is_split_into_chunks() -> None:
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch_size=8, max_wait_ms=0)
    texts = [f"text number {i}" for i in range(21)]

    async def scenario():
        result = await batcher.predict(texts)
        await batcher.aclose()
        return result

    result = run(scenario())
    assert model.calls == [8, 8, 5]
    np.testing.assert_allclose(result, model(texts))


def test_large_request_is_chunked_by_length_and_answered_in_order() -> None:
    """Chunks group texts of similar length (less padding); the answer keeps the request's order."""
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch_size=4, max_wait_ms=0)
    texts = ["x" * n for n in (9, 1, 8, 2, 7, 3, 6, 4, 5, 10, 0, 11)]

    async def scenario():
        result = await batcher.predict(texts)
        await batcher.aclose()
        return result

    result = run(scenario())
    chunks = [[len(t) for t in chunk] for chunk in model.texts]
    assert chunks == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    np.testing.assert_allclose(result, model(texts))


def test_a_lone_client_is_not_delayed() -> None:
    """Sequential requests (recent batches of one) never wait for a batch to fill."""
    batcher = MicroBatcher(FakeModel(), max_batch_size=32, max_wait_ms=500)

    async def scenario() -> float:
        started = time.perf_counter()
        for _ in range(5):
            await batcher.predict(["alone"])
        await batcher.aclose()
        return time.perf_counter() - started

    assert run(scenario()) < 0.4  # five waits of 500 ms would take 2.5 s


def test_waits_for_stragglers_under_load() -> None:
    """After batches of several requests, the worker waits (bounded) so late arrivals join the next batch."""
    model = FakeModel(delay_s=0.02)
    batcher = MicroBatcher(model, max_batch_size=32, max_wait_ms=50)

    async def client(i: int) -> None:
        for _ in range(4):
            await batcher.predict([f"client {i}"])
            await asyncio.sleep(0.002 * (i % 4))  # clients come back at slightly different times

    async def scenario() -> None:
        await asyncio.gather(*(client(i) for i in range(8)))
        await batcher.aclose()

    run(scenario())
    # 32 requests; without the adaptive wait, staggered returns split them into many small calls.
    assert sum(model.calls) == 32
    assert len(model.calls) <= 5  # 4 full batches of 8; without waiting: 7 calls of 8, 2, 6, 2, ...


def test_model_error_reaches_every_waiting_request() -> None:
    batcher = MicroBatcher(FakeModel(fail=True), max_batch_size=8, max_wait_ms=1)

    async def scenario():
        results = await asyncio.gather(*(batcher.predict([str(i)]) for i in range(3)), return_exceptions=True)
        await batcher.aclose()
        return results

    results = run(scenario())
    assert all(isinstance(r, ValueError) for r in results)


def test_cancelled_request_is_skipped() -> None:
    model = FakeModel(delay_s=0.05)
    batcher = MicroBatcher(model, max_batch_size=8, max_wait_ms=0)

    async def scenario():
        first = asyncio.create_task(batcher.predict(["first"]))
        await asyncio.sleep(0.01)  # the first call is running; the next two queue up
        doomed = asyncio.create_task(batcher.predict(["gone"]))
        kept = asyncio.create_task(batcher.predict(["kept"]))
        await asyncio.sleep(0)
        doomed.cancel()
        await asyncio.gather(first, kept)
        await batcher.aclose()

    run(scenario())
    assert model.calls == [1, 1]


def test_works_across_event_loops() -> None:
    """A new event loop (a new test client, a restarted host) gets a new worker."""
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch_size=8, max_wait_ms=0)
    for _ in range(2):
        assert run(batcher.predict(["again"])).shape == (1, 2)
    assert model.calls == [1, 1]


def test_empty_input_and_bad_size() -> None:
    batcher = MicroBatcher(FakeModel(), max_batch_size=4)
    assert run(batcher.predict([])).shape == (0, 2)
    with pytest.raises(ValueError):
        MicroBatcher(FakeModel(), max_batch_size=0)


def test_restarts_after_close() -> None:
    """A host may run the app's lifespan (start, then aclose) several times; predictions keep working."""
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch_size=8, max_wait_ms=0)

    async def scenario() -> None:
        for _ in range(3):
            assert (await batcher.predict(["again"])).shape == (1, 2)
            await batcher.aclose()

    run(scenario())
    assert model.calls == [1, 1, 1]


class GatedModel(FakeModel):
    """Blocks each call until the test opens the gate, so the queue can be filled behind a running call."""

    def __init__(self) -> None:
        super().__init__()
        import threading

        self.gate = threading.Event()
        self.started = threading.Event()

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.started.set()
        self.gate.wait(5)
        return super().__call__(texts)


async def _busy(batcher: MicroBatcher, model: GatedModel) -> asyncio.Task:
    """Start a call and wait until the model is running it (the queue is empty again)."""
    running = asyncio.ensure_future(batcher.predict(["in flight"]))
    while not model.started.is_set():
        await asyncio.sleep(0.001)
    return running


def test_a_full_queue_sheds_at_once_and_counts_it() -> None:
    """Audit finding 1: the queue had no bound; now a request that does not fit is refused straight away."""
    model, drops = GatedModel(), []
    batcher = MicroBatcher(model, max_batch_size=4, max_queue_texts=8, on_drop=drops.append)

    async def scenario():
        running = await _busy(batcher, model)
        queued = [asyncio.ensure_future(batcher.predict([f"q{i}", f"r{i}"])) for i in range(4)]
        await asyncio.sleep(0)
        assert batcher.queued_texts == 8
        started = time.perf_counter()
        with pytest.raises(QueueFullError) as refused:
            await batcher.predict(["one too many"])
        assert time.perf_counter() - started < 0.5
        assert refused.value.retry_after >= 1
        model.gate.set()
        await asyncio.gather(running, *queued)
        assert batcher.queued_texts == 0
        await batcher.predict(["fits again"])
        await batcher.aclose()

    run(scenario())
    assert drops == ["shed"]


def test_a_large_request_is_taken_when_the_queue_is_empty() -> None:
    batcher = MicroBatcher(FakeModel(), max_batch_size=4, max_queue_texts=8)

    async def scenario():
        proba = await batcher.predict([f"t{i}" for i in range(20)])
        await batcher.aclose()
        return proba

    assert run(scenario()).shape == (20, 2)


def test_the_deadline_drops_queued_work_before_the_model_sees_it() -> None:
    model, drops = GatedModel(), []
    batcher = MicroBatcher(model, max_batch_size=4, max_queue_texts=100, on_drop=drops.append)

    async def scenario():
        running = await _busy(batcher, model)
        with pytest.raises(DeadlineError) as late:
            await batcher.predict(["too late"] * 10, timeout=0.05)
        assert late.value.retry_after >= 1
        assert batcher.queued_texts == 0
        model.gate.set()
        await running
        await batcher.predict(["after"])
        await batcher.aclose()

    run(scenario())
    assert drops == ["timed_out"]
    assert all("too late" not in call for call in model.texts)


def test_work_of_an_abandoned_request_never_reaches_the_model() -> None:
    """Audit finding 1: 40 abandoned batch requests were all scored; now their queued chunks are dropped."""
    model, drops = GatedModel(), []
    batcher = MicroBatcher(model, max_batch_size=4, max_queue_texts=1000, on_drop=drops.append)

    async def scenario():
        running = await _busy(batcher, model)
        gone = [asyncio.get_running_loop().create_future() for _ in range(5)]
        requests = [asyncio.ensure_future(batcher.predict([f"abandoned {i}"] * 12, abandoned=g))
                    for i, g in enumerate(gone)]
        await asyncio.sleep(0.01)
        assert batcher.queued_texts == 60
        for future in gone:
            future.set_result(None)
        results = await asyncio.gather(*requests, return_exceptions=True)
        assert all(isinstance(r, AbandonedError) for r in results)
        assert batcher.queued_texts == 0
        model.gate.set()
        await running
        await batcher.predict(["next client"])
        await batcher.aclose()

    run(scenario())
    assert drops == ["cancelled"] * 5
    assert model.calls == [1, 1]  # the call in flight and the next client: nothing abandoned was scored


def test_a_cancelled_caller_leaves_the_queue() -> None:
    model = GatedModel()
    batcher = MicroBatcher(model, max_batch_size=4, max_queue_texts=100)

    async def scenario():
        running = await _busy(batcher, model)
        waiting = asyncio.ensure_future(batcher.predict(["cancel me"] * 3))
        await asyncio.sleep(0.01)
        waiting.cancel()
        await asyncio.sleep(0)
        assert batcher.queued_texts == 0
        model.gate.set()
        await running
        await batcher.aclose()

    run(scenario())
    assert model.calls == [1]


def test_a_lone_tweet_on_an_idle_model_runs_on_the_event_loop_and_others_queue_for_the_worker() -> None:
    import threading

    threads: list[str] = []

    def model(texts: Sequence[str]) -> np.ndarray:
        threads.append(threading.current_thread().name)
        time.sleep(0.01)
        return FakeModel()(texts)

    batcher = MicroBatcher(model, max_batch_size=8)

    async def scenario():
        await batcher.predict(["first"])  # starts the worker
        threads.clear()
        for _ in range(3):
            await batcher.predict(["alone"])
        lone = list(threads)
        threads.clear()
        busy = asyncio.ensure_future(batcher.predict(["a batch", "runs on the worker"]))
        await asyncio.sleep(0.002)  # the worker has it: the model is busy, so the crowd queues behind it
        await asyncio.gather(busy, *(batcher.predict([f"crowd {i}"]) for i in range(6)))
        await batcher.aclose()
        return lone, list(threads)

    lone, crowd = run(scenario())
    assert lone == [threading.main_thread().name] * 3
    assert crowd and all(name.startswith("predict-") for name in crowd)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_several_workers_answer_every_request_with_its_own_rows(workers: int) -> None:
    model = FakeModel(delay_s=0.002)
    batcher = MicroBatcher(model, max_batch_size=4, workers=workers)
    texts = [f"text {'x' * i}" for i in range(40)]

    async def scenario():
        results = await asyncio.gather(*(batcher.predict([t]) for t in texts), batcher.predict(texts))
        await batcher.aclose()
        return results

    *singles, together = run(scenario())
    expected = np.array([(len(t) % 10) / 10 for t in texts], dtype=np.float32)
    np.testing.assert_allclose([s[0, 1] for s in singles], expected)
    np.testing.assert_allclose(together[:, 1], expected)
