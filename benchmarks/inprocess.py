"""The in-process limit: how fast the project's own predictor scores tweets with no HTTP in between.

``benchmarks.run`` starts this module as a child process, so that it shares no GIL and no threads with
anything, and reads one JSON object from its standard output. The export is opened as the API's model
registry opens it with the shipped settings (``load_predictor`` with ``ONNX_THREADS`` threads for a
transformer, the backend's default for a classical model), then measured two ways:

- batch-1 latency: one ``predict_proba([tweet])`` call after another, over the tweets in turn;
- the best rate: tweets/s for each batch size (consecutive slices of the tweets), and the fastest of them.

``--threads`` overrides the service's thread count, and ``--barrier DIR --copies N`` holds the measuring back
until N copies have loaded, so that ``benchmarks.run`` can run copies side by side as one worker per core would:

    python -m benchmarks.inprocess exports/minilm results/tmp/tweets.json --latency-seconds 10
    python -m benchmarks.inprocess exports/minilm results/tmp/tweets.json --threads 1 --latency-seconds 0 \
        --barrier results/tmp/barrier --copies 2
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from api.settings import Settings
from sentiment.predictor import Predictor, load_predictor

logger = logging.getLogger(__name__)

BATCH_SIZES = (1, 2, 4, 8, 16, 32)
WARMUP_CALLS = 20


def open_like_the_service(folder: Path, threads: int | None = None) -> Predictor:
    """Open an export with the threads the service's registry gives it (``ModelRegistry._open``), or ``threads``."""
    from sentiment.exports import read_metadata

    family = read_metadata(folder)["family"]
    if family != "transformer":
        threads = None
    elif threads is None:
        threads = Settings().onnx_threads
    return load_predictor(folder, threads=threads)


def batch1_latency(predictor: Predictor, tweets: list[str], seconds: float) -> dict[str, float]:
    """Percentiles (ms) of single-tweet calls made one after another for ``seconds``."""
    for text in tweets[:WARMUP_CALLS]:
        predictor.predict_proba([text])
    times = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        text = tweets[len(times) % len(tweets)]
        began = time.perf_counter()
        predictor.predict_proba([text])
        times.append(time.perf_counter() - began)
    values = np.array(times) * 1e3
    return {"calls": len(times), **{f"p{p}_ms": round(float(np.percentile(values, p)), 3) for p in (50, 95, 99)}}


def rate(predictor: Predictor, tweets: list[str], batch_size: int, seconds: float) -> float:
    """Tweets per second when scoring consecutive slices of ``batch_size`` tweets for ``seconds``."""
    predictor.predict_proba(tweets[:batch_size])
    scored, start = 0, 0
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        if start + batch_size > len(tweets):
            start = 0
        predictor.predict_proba(tweets[start:start + batch_size])
        start += batch_size
        scored += batch_size
    return round(scored / (time.perf_counter() - began), 1)


def measure(predictor: Predictor, tweets: list[str], *, latency_seconds: float, rate_seconds: float,
            batch_sizes: tuple[int, ...] = BATCH_SIZES) -> dict[str, Any]:
    """Batch-1 latency (None when ``latency_seconds`` is 0) and the rate at each batch size; ``best_rate`` is this
    caller's limit."""
    latency = batch1_latency(predictor, tweets, latency_seconds) if latency_seconds > 0 else None
    rates = {str(size): rate(predictor, tweets, size, rate_seconds) for size in batch_sizes}
    best = max(rates, key=lambda size: rates[size])
    return {"model": predictor.name, "version": predictor.version, "variant": predictor.variant,
            "threads": _threads(predictor), "batch1": latency, "rates": rates,
            "best_rate": rates[best], "best_batch_size": int(best)}


def _threads(predictor: Predictor) -> int | None:
    session = getattr(predictor, "session", None)
    if session is None:
        return None
    return int(session.get_session_options().intra_op_num_threads)


def wait_for_copies(barrier: Path, copies: int, timeout_s: float = 300.0) -> None:
    """Say this copy has loaded, then wait until ``copies`` have: loading must not overlap the measuring."""
    barrier.mkdir(parents=True, exist_ok=True)
    (barrier / f"loaded-{os.getpid()}").touch()
    deadline = time.monotonic() + timeout_s
    while len(list(barrier.glob("loaded-*"))) < copies:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(list(barrier.glob('loaded-*')))} of {copies} copies loaded in {timeout_s} s")
        time.sleep(0.005)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.inprocess", description=__doc__.split("\n\n")[0])
    parser.add_argument("export", type=Path, help="an exports/<model> folder")
    parser.add_argument("tweets", type=Path, help="a JSON list of tweet texts")
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--rate-seconds", type=float, default=5.0, help="for each batch size")
    parser.add_argument("--threads", type=int, help="ONNX Runtime threads (default: the service's ONNX_THREADS)")
    parser.add_argument("--barrier", type=Path, help="a folder shared by copies started together")
    parser.add_argument("--copies", type=int, default=1, help="copies to wait for in --barrier before measuring")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tweets = json.loads(args.tweets.read_text(encoding="utf-8"))
    began = time.perf_counter()
    predictor = open_like_the_service(args.export, args.threads)
    load_seconds = time.perf_counter() - began
    if args.barrier is not None:
        wait_for_copies(args.barrier, args.copies)
    result = measure(predictor, tweets, latency_seconds=args.latency_seconds, rate_seconds=args.rate_seconds)
    sys.stdout.write(json.dumps(result | {"load_s": round(load_seconds, 2)}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
