"""Adaptive micro-batching: concurrent predictions for one model share one model call.

A transformer on two cores computes 16 tweets in one call several times faster than in 16 calls, so the
service queues each request's texts and one worker per model sends them to ONNX Runtime together, the way
BentoML's adaptive batching and Ray Serve's ``@serve.batch`` do:

- the worker takes everything queued (up to ``max_batch_size`` texts) as soon as the previous call ends,
  so under load batches form on their own while the model is busy;
- it waits for more (at most ``max_wait_ms``) only when the last batch was bigger than what is queued: a
  lone client (batches of 1) is never delayed, a crowd of clients fills its batches; a wait that times out
  lowers the expectation to what actually came, so when the crowd leaves only one request pays the wait;
- a batch request is cut into chunks of at most ``max_batch_size`` texts of similar length (sorted, then
  answered in the original order), queued like any other request;
- the model call runs in a thread (ONNX Runtime releases the GIL), so the event loop keeps serving; only a
  lone tweet on an idle model is scored on the event loop itself, which spares it two thread hand-offs;
- the queue is bounded in texts (``max_queue_texts``): a request that does not fit is refused at once with
  :class:`QueueFullError` (load shedding, a 503 over HTTP) instead of waiting minutes behind the others;
- a request that misses its deadline, or whose client went away, leaves the queue before the model sees it:
  its texts are skipped by the worker and no longer count against the bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from sentiment.budgets import ComputeSlots

logger = logging.getLogger(__name__)

PredictFn = Callable[[Sequence[str]], np.ndarray]
BatchObserver = Callable[[int, float], None]
# Called with the reason ("shed", "timed_out" or "cancelled") each time a request is refused or dropped.
DropObserver = Callable[[str], None]
SHED, TIMED_OUT, CANCELLED = "shed", "timed_out", "cancelled"


class QueueFullError(RuntimeError):
    """The model's queue cannot take these texts now; ``retry_after`` is a fair guess in seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeadlineError(TimeoutError):
    """The request's deadline passed before the model answered; its queued texts were dropped."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AbandonedError(RuntimeError):
    """The caller stopped waiting (the HTTP client disconnected); its queued texts were dropped."""


def length_chunks(lengths: Sequence[int], size: int) -> list[np.ndarray]:
    """Row indices cut into chunks of at most ``size`` after a stable sort by ``lengths``.

    A transformer's cost grows with the padded width, so each chunk holding texts of similar length pads little.
    The one place that orders and cuts a large input: the micro-batcher's chunks of a request, and the
    predictor's chunks of a direct call (Spark, the CLI, evaluation).
    """
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[start : start + size] for start in range(0, len(order), size)]


def _fail(future: asyncio.Future[np.ndarray], error: Exception) -> None:
    if not future.done():
        future.set_exception(error)


@dataclass(slots=True)
class _Pending:
    texts: list[str]
    future: asyncio.Future[np.ndarray]
    # True once the worker took it off the queue (its texts no longer count against the bound).
    taken: bool = False


class MicroBatcher:
    """Queue of texts for one model, drained by one worker task into batched ``predict_proba`` calls.

    The worker (a task and one thread) starts on the first :meth:`predict` in the running event loop, and
    again after :meth:`aclose` or in a new loop (a host may run the app's lifespan more than once), so no
    lifespan hook is needed.
    """

    def __init__(
        self,
        predict_proba: PredictFn,
        *,
        max_batch_size: int = 32,
        max_wait_ms: float = 5.0,
        name: str = "model",
        on_batch: BatchObserver | None = None,
        max_queue_texts: int | None = None,
        on_drop: DropObserver | None = None,
        workers: int = 1,
        slots: ComputeSlots | None = None,
    ) -> None:
        """Args:
        predict_proba: the model call, ``texts -> (n, 2)`` probabilities; run in a worker thread.
        max_batch_size: most texts in one call.
        max_wait_ms: longest wait for a batch to fill once the worker has texts to run.
        name: model name, for logs and the thread name.
        on_batch: called with (texts in the call, seconds) after each successful call.
        max_queue_texts: most texts waiting for the model (None: no bound); a request arriving at an empty
            queue is always taken, however large.
        on_drop: called with the reason each time a request is shed, times out or is abandoned.
        workers: model calls that may run at once, each in its own thread (ONNX Runtime sessions accept
            concurrent calls).
        slots: the process's compute slots, shared by every model's batcher (None: calls are not limited).
        """
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.workers = workers
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if max_queue_texts is not None and max_queue_texts < 1:
            raise ValueError("max_queue_texts must be at least 1")
        self.max_queue_texts = max_queue_texts
        self._on_drop = on_drop
        self._queued_texts = 0
        # Model calls running now (worker threads, or inline on the loop).
        self._in_flight = 0
        # Queued chunks whose answer is not set yet, including those a worker took and is still batching.
        self._unanswered = 0
        # Texts per second of recent model calls, to tell a shed client when to come back.
        self._rate: float | None = None
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000
        self.name = name
        self._predict_proba = predict_proba
        self._slots = slots
        self._on_batch = on_batch
        self._executor: ThreadPoolExecutor | None = None
        self._queue: deque[_Pending] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._workers: list[asyncio.Task[None]] = []
        # Texts expected in the next batch: how many clients seem to be sending at once.
        self._expected = 1

    @property
    def queued_texts(self) -> int:
        """Texts waiting for the model (not counting the call in progress)."""
        return self._queued_texts

    @property
    def busy(self) -> bool:
        """A request is unanswered (queued, collected into a batch, or in a model call): closing would fail it."""
        return self._unanswered > 0 or self._in_flight > 0

    def retry_after(self) -> int:
        """Seconds until the queue has likely drained, from the recent model rate (1 to 60)."""
        rate = self._rate or 100.0
        return min(60, max(1, math.ceil(self._queued_texts / rate)))

    async def predict(
        self,
        texts: Sequence[str],
        *,
        timeout: float | None = None,
        abandoned: Awaitable[object] | None = None,
    ) -> np.ndarray:
        """Probabilities for ``texts`` (any number), in order, computed in shared batches.

        Args:
            texts: the texts.
            timeout: seconds to wait for the answer (queue and model call), None for no deadline.
            abandoned: completes when the caller no longer wants the answer (a client disconnect watcher).

        Raises:
            QueueFullError: the queue is full (nothing was queued).
            DeadlineError: ``timeout`` passed; the texts still queued were dropped.
            AbandonedError: ``abandoned`` completed first; the texts still queued were dropped.
            Exception: whatever the model call raised for a batch holding these texts.
        """
        limit = self.max_queue_texts
        shed = limit is not None and self._queued_texts and self._queued_texts + len(texts) > limit
        if (not texts or shed) and inspect.iscoroutine(abandoned):
            abandoned.close()  # never awaited: close it rather than leave a warning behind
        if not texts:
            return np.empty((0, 2), dtype=np.float32)
        if (len(texts) == 1 and self._expected == 1 and self._in_flight == 0 and self._queued_texts == 0
                and self._loop is not None and (self._slots is None or self._slots.try_acquire())):
            # A lone client (batches of 1 lately) on an idle model runs here, on the event loop: it saves two
            # thread hand-offs, which `make bench` measured at about a quarter of the latency over HTTP and, at 16
            # connections, more throughput too. The loop pauses for one batch-1 call; requests arriving
            # meanwhile find the model busy and take the queue.
            if inspect.iscoroutine(abandoned):
                abandoned.close()
            return self._call_inline(texts)
        if shed:
            self._dropped(SHED)
            raise QueueFullError(
                f"model {self.name} is busy: {self._queued_texts} texts queued (limit {limit}); retry later",
                self.retry_after())
        loop, wakeup = self._ensure_worker()
        # A request larger than one call is cut into length-sorted chunks; answers are put back in order.
        chunks = (length_chunks([len(t) for t in texts], self.max_batch_size) if len(texts) > self.max_batch_size
                  else [np.arange(len(texts))])
        pendings = []
        for part in chunks:
            pending = _Pending([texts[i] for i in part], loop.create_future())
            self._unanswered += 1
            pending.future.add_done_callback(self._answered)
            self._queue.append(pending)
            pendings.append(pending)
        self._queued_texts += len(texts)
        wakeup.set()
        parts = await self._wait(pendings, timeout, abandoned)
        if len(chunks) == 1:
            return parts[0]
        proba = np.empty((len(texts), 2), dtype=np.float32)
        proba[np.concatenate(chunks)] = np.concatenate(parts)
        return proba

    def _answered(self, _: asyncio.Future[np.ndarray]) -> None:
        self._unanswered -= 1

    def _call_inline(self, texts: Sequence[str]) -> np.ndarray:
        """One call on the event loop; its compute slot was taken without waiting (``predict``) and is freed here."""
        self._in_flight += 1
        started = time.perf_counter()
        try:
            proba = self._call(texts)
        finally:
            self._in_flight -= 1
            if self._slots is not None:
                self._slots.release()
        self._observe(len(texts), time.perf_counter() - started)
        return proba

    async def _wait(self, pendings: list[_Pending], timeout: float | None,
                    abandoned: Awaitable[object] | None) -> list[np.ndarray]:
        """The answers of ``pendings``, or drop them when the deadline passes or the caller goes away."""
        answer: asyncio.Future = pendings[0].future if len(pendings) == 1 else asyncio.gather(
            *(p.future for p in pendings))
        if timeout is None and abandoned is None:
            try:
                result = await answer
            except asyncio.CancelledError:
                self._drop(pendings, CANCELLED)
                raise
            return [result] if len(pendings) == 1 else result
        watcher = asyncio.ensure_future(abandoned) if abandoned is not None else None
        try:
            waiting = {answer} if watcher is None else {answer, watcher}
            done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            self._drop(pendings, CANCELLED)
            raise
        finally:
            if watcher is not None and not watcher.done():
                watcher.cancel()
        if answer in done:
            result = answer.result()
            return [result] if len(pendings) == 1 else result
        if watcher is not None and watcher in done:
            self._drop(pendings, CANCELLED)
            raise AbandonedError(f"the caller of model {self.name} went away")
        self._drop(pendings, TIMED_OUT)
        raise DeadlineError(f"model {self.name} did not answer within {timeout:g} s; retry later",
                            self.retry_after())

    def _drop(self, pendings: list[_Pending], reason: str) -> None:
        """Take the texts of an abandoned request out of the queue's count; the worker skips them."""
        for pending in pendings:
            if not pending.taken:
                self._queued_texts -= len(pending.texts)
                pending.taken = True
            if not pending.future.done():
                pending.future.cancel()
        self._dropped(reason)

    def _dropped(self, reason: str) -> None:
        if self._on_drop is not None:
            try:
                self._on_drop(reason)
            except Exception:  # metrics must never break a request
                logger.exception("drop observer failed")

    async def aclose(self) -> None:
        """Stop the workers, fail what is still queued and release the threads (a later predict restarts them)."""
        workers, self._workers = self._workers, []
        for worker in workers:
            if worker.done():
                continue
            if worker.get_loop() is asyncio.get_running_loop():
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
            elif not worker.get_loop().is_closed():
                # Started in another event loop (another test client, another host thread): cancel it there.
                worker.get_loop().call_soon_threadsafe(worker.cancel)
        self._fail_queued(RuntimeError(f"model {self.name} is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    def _ensure_worker(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Event]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or len(self._workers) < self.workers or any(w.done() for w in self._workers):
            if self._loop is not loop:
                # Futures of another (finished) loop can never be awaited again.
                self._fail_queued(RuntimeError("event loop changed"))
                self._workers = []
                self._wakeup = asyncio.Event()
            self._loop = loop
            self._executor = self._executor or ThreadPoolExecutor(self.workers,
                                                                  thread_name_prefix=f"predict-{self.name}")
            self._wakeup = self._wakeup or asyncio.Event()
            self._workers = [w for w in self._workers if not w.done()]
            while len(self._workers) < self.workers:
                name = f"batcher-{self.name}-{len(self._workers)}"
                self._workers.append(loop.create_task(self._run(), name=name))
        assert self._wakeup is not None
        return loop, self._wakeup

    def _fail_queued(self, error: Exception) -> None:
        while self._queue:
            pending = self._queue.popleft()
            if not pending.taken:
                pending.taken = True
                self._queued_texts -= len(pending.texts)
            future = pending.future
            loop = future.get_loop()
            if future.done() or loop.is_closed():
                continue
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if loop is running:
                future.set_exception(error)
            else:  # futures belong to their loop's thread
                loop.call_soon_threadsafe(_fail, future, error)

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = await self._collect()
            if batch:
                await self._execute(batch)

    async def _collect(self) -> list[_Pending]:
        """Take queued requests into one batch, waiting briefly for more when traffic suggests they come."""
        assert self._wakeup is not None
        # One loop turn lets handlers already running in this turn queue their texts too.
        await asyncio.sleep(0)
        batch: list[_Pending] = []
        size = self._take(batch, 0)
        target = min(self.max_batch_size, self._expected)
        timed_out = False
        if size < target and self.max_wait_s > 0:
            deadline = time.monotonic() + self.max_wait_s
            while size < target and not timed_out:
                self._wakeup.clear()
                try:
                    async with asyncio.timeout(max(deadline - time.monotonic(), 0)):
                        await self._wakeup.wait()
                except TimeoutError:
                    timed_out = True
                size = self._take(batch, size)
        if size:
            # Grow the expectation to any bigger crowd at once; shrink it to what came when waiting failed.
            self._expected = size if timed_out else max(self._expected, size)
        return batch

    def _take(self, batch: list[_Pending], size: int) -> int:
        """Move queued requests into ``batch`` while they fit; return the batch's text count."""
        queue = self._queue
        while queue:
            head = queue[0]
            if head.taken or head.future.done():  # dropped (deadline, client gone): skip its texts
                queue.popleft()
                if not head.taken:
                    head.taken = True
                    self._queued_texts -= len(head.texts)
                continue
            if size + len(head.texts) > self.max_batch_size:
                break
            queue.popleft()
            head.taken = True
            self._queued_texts -= len(head.texts)
            batch.append(head)
            size += len(head.texts)
        return size

    async def _execute(self, batch: list[_Pending]) -> None:
        texts = [text for pending in batch for text in pending.texts]
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        self._in_flight += 1
        try:
            proba = await loop.run_in_executor(self._executor, self._checked_call, texts)
        except asyncio.CancelledError:
            # Shutting down mid-call: these requests were already taken off the queue, fail them here.
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(RuntimeError(f"model {self.name} is shutting down"))
            raise
        except Exception as error:
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(error)
            return
        finally:
            self._in_flight -= 1
        offset = 0
        for pending in batch:
            end = offset + len(pending.texts)
            if not pending.future.done():
                pending.future.set_result(proba[offset:end])
            offset = end
        self._observe(len(texts), time.perf_counter() - started)

    def _checked_call(self, texts: Sequence[str]) -> np.ndarray:
        """One call from a worker thread: waits its turn for a compute slot."""
        if self._slots is None:
            return self._call(texts)
        with self._slots.held():
            return self._call(texts)

    def _call(self, texts: Sequence[str]) -> np.ndarray:
        try:
            proba = self._predict_proba(texts)
            if proba.shape != (len(texts), 2):
                raise RuntimeError(f"model {self.name} returned shape {proba.shape} for {len(texts)} texts")
        except Exception:
            logger.exception("model call failed", extra={"model": self.name, "batch_size": len(texts)})
            raise
        return proba

    def _observe(self, size: int, elapsed: float) -> None:
        rate = size / max(elapsed, 1e-6)
        self._rate = rate if self._rate is None else 0.8 * self._rate + 0.2 * rate
        if self._on_batch is not None:
            try:
                self._on_batch(size, elapsed)
            except Exception:  # a metrics hiccup must not stop the worker that every request waits on
                logger.exception("batch observer failed")
