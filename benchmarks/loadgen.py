"""A small HTTP/1.1 load generator on asyncio streams, with keep-alive connections.

Hand-written rather than httpx: the client shares the two cores with the server under test, and a full
client library costs several times more CPU per request, which would distort the comparison.
"""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field


class HttpError(RuntimeError):
    """A response other than 200."""


class Connection:
    """One keep-alive HTTP/1.1 connection to the server under test."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> Connection:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._writer is not None:
            self._writer.close()

    async def post_json(self, path: str, payload: object) -> object:
        """POST ``payload`` as JSON and return the decoded answer (raises :class:`HttpError` unless 200)."""
        assert self._reader is not None and self._writer is not None
        body = json.dumps(payload).encode()
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        self._writer.write(head + body)
        status_line, _, headers = (await self._reader.readuntil(b"\r\n\r\n")).partition(b"\r\n")
        length = 0
        for line in headers.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        data = await self._reader.readexactly(length)
        status = int(status_line.split()[1])
        if status != 200:
            raise HttpError(f"{status}: {data[:200]!r}")
        return json.loads(data)


@dataclass
class Run:
    """Outcome of one measured phase."""

    requests: int = 0
    tweets: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float | int]:
        lat = sorted(self.latencies_ms)
        result: dict[str, float | int] = {"requests": self.requests, "tweets": self.tweets, "errors": self.errors,
                                          "seconds": round(self.seconds, 2),
                                          "tweets_per_s": round(self.tweets / self.seconds, 1) if self.seconds else 0}
        if lat:
            result |= {"p50_ms": _pct(lat, 50), "p95_ms": _pct(lat, 95), "p99_ms": _pct(lat, 99),
                       "mean_ms": round(statistics.fmean(lat), 2)}
        return result


def _pct(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least q % of the values at or below it."""
    index = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return round(sorted_values[index], 2)


async def load(host: str, port: int, path: str, make_payload: Callable[[int], tuple[object, int]], *,
               concurrency: int, max_requests: int, max_seconds: float) -> Run:
    """Send requests from ``concurrency`` connections until ``max_requests`` or ``max_seconds`` is reached.

    Args:
        host, port, path: where to POST.
        make_payload: request number → (JSON payload, tweets in it).
        concurrency: connections, each with one request in flight (closed loop).
        max_requests: stop after this many requests in all.
        max_seconds: or after this long.
    """
    run = Run()
    counter = iter(range(max_requests))
    deadline = time.perf_counter() + max_seconds

    async def worker() -> None:
        async with Connection(host, port) as connection:
            for number in counter:
                if time.perf_counter() > deadline:
                    return
                payload, tweets = make_payload(number)
                started = time.perf_counter()
                try:
                    await connection.post_json(path, payload)
                except HttpError:
                    run.errors += 1
                    continue
                run.latencies_ms.append((time.perf_counter() - started) * 1000)
                run.requests += 1
                run.tweets += tweets

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    run.seconds = time.perf_counter() - began
    return run
