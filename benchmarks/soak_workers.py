"""Part 1's last phase: SIGKILL one worker process of the lean API while ``wrk`` saturates it.

The server runs as ``python -m api.serve`` (one worker per core). uvicorn's supervisor replaces a dead worker;
the other keeps answering meanwhile. What a client can lose is the answers of the killed worker's own open
connections (reset), nothing else. The checks (:func:`worker_checks`):

- after the kill, every request of a fresh client is answered 200 (or 503 with ``Retry-After``);
- the dead worker is replaced and the server is ready again within :data:`REPLACED_WITHIN_S`;
- ``/metrics`` has the same series as before the kill (whichever worker answers the scrape), and its counters
  never go back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from benchmarks.servers import RunningServer, get, worker_pids
from benchmarks.soak_http import exchange, head
from benchmarks.soak_traffic import run_wrk

logger = logging.getLogger("benchmarks.soak")

KILL_AFTER_S = 1.5
REPLACED_WITHIN_S = 30.0
PROBES = 40
PHASE_S = 6


async def kill_a_worker(server: RunningServer, tweets: list[str], workdir: Path, scrape: Any,
                        timeout_s: float) -> dict[str, Any]:
    """Run the phase; ``scrape(port)`` reads ``/metrics`` as the rest of the soak does."""
    port = server.port
    workers = worker_pids(server.process.pid)
    if len(workers) < 2:
        return {"skipped": f"{len(workers)} worker process(es): nothing to kill without stopping the server"}
    before = scrape(port)
    victim = workers[0]

    async def kill_later() -> float:
        await asyncio.sleep(KILL_AFTER_S)
        os.kill(victim, signal.SIGKILL)
        logger.info("killed worker %d of %s", victim, workers)
        return time.perf_counter()

    loaded, killed_at = await asyncio.gather(
        run_wrk(port, tweets, workdir, seconds=PHASE_S, max_answers=10**7, timeout_s=timeout_s), kill_later())
    # A fresh client right after: the surviving worker, or the replacement, answers every request.
    statuses = []
    for text in tweets[:PROBES]:
        body = json.dumps({"text": text}).encode()
        reply = await exchange(port, head("POST", "/v1/predict", length=len(body)), (body,), timeout=timeout_s)
        statuses.append(reply.status if reply.status != 503 or reply.retry_after else -503)
    replaced_s = None
    while time.perf_counter() - killed_at < REPLACED_WITHIN_S:
        now = worker_pids(server.process.pid)
        if len(now) == len(workers) and victim not in now and get(port, "/readyz")[0] == 200:
            replaced_s = round(time.perf_counter() - killed_at, 2)
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.5)  # the replacement's first samples (queue depth, readiness) reach the shared files
    after = scrape(port)
    return {"workers": workers, "killed": victim, "replaced_s": replaced_s, "wrk": loaded,
            "probe_statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
            "series_before": before["series_count"], "series_after": after["series_count"],
            "series_gained": sorted(set(after["series"]) - set(before["series"]))[:20],
            "series_lost": sorted(set(before["series"]) - set(after["series"]))[:20],
            "http_counters_before": before["http_requests"], "http_counters_after": after["http_requests"]}


def worker_checks(phase: dict[str, Any], check: Any) -> list[dict[str, Any]]:
    """The pass/fail conditions of the phase (``check`` builds one row, as the soak's other checks)."""
    if "skipped" in phase:
        return [check("api: SIGKILL of one worker", False, "skipped", "2+ workers", phase["skipped"])]
    answered = sum(count for status, count in phase["probe_statuses"].items() if status in ("200", "503"))
    return [
        check("api: requests after a worker's SIGKILL answered", answered == PROBES, answered, f"== {PROBES}",
              f"statuses {phase['probe_statuses']} (-503: without Retry-After); under wrk: {phase['wrk']['ok']} "
              f"answered 200, socket errors {phase['wrk']['errors']} (the killed worker's open connections)"),
        check("api: the killed worker replaced (s)", phase["replaced_s"] is not None, phase["replaced_s"],
              f"<= {REPLACED_WITHIN_S:g}", f"worker {phase['killed']} of {phase['workers']}"),
        check("api: /metrics series and counters across the kill", not phase["series_gained"]
              and not phase["series_lost"] and phase["http_counters_after"] >= phase["http_counters_before"],
              phase["series_after"], f"== {phase['series_before']}, counters never lower",
              f"gained {phase['series_gained'][:3]}, lost {phase['series_lost'][:3]}; http_requests_total "
              f"{phase['http_counters_before']:g} → {phase['http_counters_after']:g}"),
    ]
