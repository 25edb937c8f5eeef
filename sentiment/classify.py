"""The one classify path: the HTTP routes and the Streamlit pages both call it.

Every prediction therefore goes through the model's bounded queue and deadline, shares batches with the
other clients, and is counted in the metrics. The model's batcher lives on the server's event loop; a caller
on another thread (a Streamlit script thread) hands its work to that loop with :func:`classify_from_thread`
instead of running the model beside the queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence

import numpy as np

from sentiment.metrics import Metrics
from sentiment.registry import ModelRegistry, ServedModel
from sentiment.scoring import LABELS, to_labels


async def classify(model: ServedModel, texts: Sequence[str], metrics: Metrics | None, *,
                   timeout: float | None, abandoned: Awaitable[object] | None = None,
                   counted: int | None = None) -> np.ndarray:
    """``(n, 2)`` probabilities of ``texts`` through ``model``'s queue, counted per label.

    ``counted``: only the first ``counted`` texts are predictions (the others explain them: ``sentiment.explain``).

    Raises:
        sentiment.batching.QueueFullError: the queue is full (nothing was queued).
        sentiment.batching.DeadlineError: no answer within ``timeout``; the queued texts were dropped.
        sentiment.batching.AbandonedError: ``abandoned`` completed first; the queued texts were dropped.
    """
    proba = await model.batcher.predict(texts, timeout=timeout, abandoned=abandoned)
    if metrics is not None and len(proba):
        labels, _ = to_labels(proba[:counted])
        for label in LABELS:
            count = labels.count(label)
            if count:
                metrics.count_predictions(model.name, label, count)
    return proba


def classify_from_thread(registry: ModelRegistry, model: ServedModel, texts: Sequence[str],
                         timeout: float | None = None, counted: int | None = None) -> np.ndarray:
    """:func:`classify` called from a thread that is not the server's event loop (blocking).

    The work is handed to the loop the registry was started on, so it queues behind (and batches with) the
    API's requests and is bounded by the same limits. Without a running server loop (a script, a page test)
    nobody else shares the model and it is called directly.
    """
    timeout = model.budget.deadline_s if timeout is None else timeout
    loop = registry.loop
    if loop is None or loop.is_closed() or not loop.is_running():
        return np.asarray(model.predictor.predict_proba(list(texts)))
    future = asyncio.run_coroutine_threadsafe(
        classify(model, texts, registry.metrics, timeout=timeout, counted=counted), loop)
    try:
        # A little past the deadline: the loop answers DeadlineError itself at `timeout`.
        return future.result(timeout + 5)
    except BaseException:
        future.cancel()
        raise
