"""``make soak``: the reliability suite. Bad traffic under saturation, and feedback delivery through crashes.

Part 1, the lean API on 127.0.0.1 as the image runs it (``python -m api.serve``, one worker process per core)
with a bounded queue and a request deadline (:data:`API_ENV`). ``wrk`` saturates ``POST /v1/predict`` with valid tweets from 16
connections while a Python client sends the rest of the mix (valid batches and single tweets, bodies drawn
by hypothesis, abandoned connections, odd methods and unknown paths, bodies over ``MAX_BODY_BYTES``). A
warm-up of the same mix (every category, every route, a forced load-shedding burst) comes first; memory and
the ``/metrics`` series are read after it and at the end. It passes when:

- the only 5xx are 503s carrying ``Retry-After``, and ``/metrics`` counts every 503 the clients saw;
- the service's shedding counters (``requests_shed_total``, ``requests_timed_out_total``) account for them;
- valid single tweets still succeed at ≥ 0.7× the benchmark's 16-connection rate (``results/bench.json``,
  else measured here first with the same ``wrk`` script);
- RSS grows by less than 50 MB, and ``/metrics`` gains no series after the warm-up (but a predict route's first
  503: shedding a single tweet cannot be forced);
- no valid request waits longer than ``REQUEST_TIMEOUT_S`` + 1 s;
- last, one worker is killed with SIGKILL under load: the server keeps answering, replaces it, and keeps its
  ``/metrics`` series and counters (:mod:`benchmarks.soak_workers`).

Part 2, the product's feedback path (:mod:`benchmarks.soak_feedback`): verdicts are recorded and flushed to a
fake Application Insights endpoint while the process is killed with SIGKILL and restarted several times.

Writes ``results/soak.json`` and ``results/soak.md``; exits 1 when a check fails. Every phase is bounded in
requests and seconds, the whole run by :data:`BUDGET_S`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import random
import re
import resource
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.servers import PROJECT_ROOT, RunningServer, ServerSpec, get, machine_busy_seconds
from benchmarks.soak_http import abandon, exchange, head
from benchmarks.soak_traffic import (
    BATCH,
    BIG_BATCH,
    CATEGORIES,
    PREDICT_ROUTES,
    TIMED,
    coverage_plan,
    fuzz_corpus,
    mixed_plan,
    run_plan,
    run_wrk,
)
from benchmarks.soak_workers import PHASE_S, kill_a_worker, worker_checks
from benchmarks.tweets import make_tweets

logger = logging.getLogger("benchmarks.soak")

BUDGET_S = 300
THROUGHPUT_RATIO = 0.7
RSS_GROWTH_MB = 50.0
DEADLINE_SLACK_S = 1.0
# Small but realistic: a queue of two full batches per model, a 2 s deadline, 256 KiB bodies (256 tweets of
# 1000 characters fit).
API_ENV = {
    "MAX_QUEUE_TEXTS": "512",
    "REQUEST_TIMEOUT_S": "2",
    "MAX_BODY_BYTES": str(256 * 1024),
    "MAX_BATCH_SIZE": "32",
    "MAX_BATCH_WAIT_MS": "5",
}
# Families the service gains with load shedding; a check fails while they are missing.
SHEDDING_FAMILIES = ("model_queue_texts", "requests_shed", "requests_cancelled", "requests_timed_out")


@dataclass(frozen=True)
class Mode:
    """Sizes and time bounds of one run."""

    name: str
    python_requests: int  # the Python client's mixed requests in the main phase
    wrk_answers: int  # most valid single tweets wrk sends in the main phase
    wrk_seconds: int  # longest main phase
    warmup_python: int
    warmup_wrk_seconds: int
    baseline_seconds: int
    fuzz_examples: int
    verdicts: int  # part 2
    kills: int

    @property
    def target_requests(self) -> int:
        return self.python_requests + self.wrk_answers


FULL = Mode("full", python_requests=2000, wrk_answers=8000, wrk_seconds=60, warmup_python=200,
            warmup_wrk_seconds=4, baseline_seconds=6, fuzz_examples=600, verdicts=300, kills=5)
QUICK = Mode("quick", python_requests=300, wrk_answers=900, wrk_seconds=10, warmup_python=60,
             warmup_wrk_seconds=2, baseline_seconds=3, fuzz_examples=120, verdicts=60, kills=3)


class BudgetExceeded(BaseException):
    """The whole run took longer than its budget (a BaseException: the parts' own error handling lets it by)."""


# -- reading results/bench.json ----------------------------------------------------------------------------
_RATE_KEY = re.compile(r"tweets?_per_s|per_s(ec)?$|rps|throughput", re.IGNORECASE)


def _is_c16(key: str) -> bool:
    key = key.lower()
    return "16" in key.replace("256", "") and "batch" not in key and "latency" not in key


def _rate_in(key: str, value: Any, depth: int = 0) -> tuple[str, float] | None:
    """``(key path, rate)`` of the first 16-connection rate under ``key``/``value`` (nested dicts, depth ≤ 3)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (key, float(value)) if _RATE_KEY.search(key) and _is_c16(key) and value > 0 else None
    if isinstance(value, dict) and depth < 3:
        for inner_key, inner in value.items():
            # A key naming the 16-connection phase carries that context to the rate inside it.
            name = f"{key}.{inner_key}" if key else str(inner_key)
            found = _rate_in(name, inner, depth + 1)
            if found is not None:
                return found
    return None


def bench_baseline(path: Path, model: str | None) -> dict[str, Any] | None:
    """The benchmark's single-tweet tweets/s at 16 connections for this service, tolerant of renamed keys.

    Looks through the rows of ``results`` or ``servers`` that are this service (``server`` or ``slug`` says
    "service", not the seed-style or MLflow one) serving ``model``, for a rate (``tweets_per_s``,
    ``…per_s``, ``rps``, ``throughput``) under a key mentioning 16 (``single_c16``, ``phases.single_c16``,
    ``tweets_per_s_c16``…), never a batch or latency key.

    Returns:
        ``{"source", "key", "model", "tweets_per_s", …}``, or None when nothing fits.
    """
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict):
        return None
    rows = [r for key in ("results", "servers") if isinstance(report.get(key), list) for r in report[key]]

    def ours(row: object) -> bool:
        names = f"{row.get('server', '')} {row.get('slug', '')}" if isinstance(row, dict) else ""
        return "service" in names.lower() and not re.search(r"seed|mlflow", names, re.IGNORECASE)

    # The row of the model the soak serves by default; a row naming no model only when none names it.
    candidates = [r for r in rows if ours(r) and r.get("model") == model] \
        or [r for r in rows if ours(r) and not r.get("model")]
    for row in candidates:
        found = _rate_in("", {k: v for k, v in row.items() if k not in ("server", "slug", "model", "label")})
        if found is None:
            continue
        settings = report["settings"] if isinstance(report.get("settings"), dict) else {}
        machine = report["machine"] if isinstance(report.get("machine"), dict) else {}
        source = str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else str(path)
        return {"source": source, "key": found[0], "model": row.get("model"), "tweets_per_s": found[1],
                "bench_started_at": report.get("started_at"), "bench_quick": report.get("quick", settings.get("quick")),
                "load_generator": machine.get("wrk") or settings.get("load_generator") or "benchmarks.loadgen"}
    return None


# -- /metrics -----------------------------------------------------------------------------------------------
def parse_metrics(text: str) -> dict[str, Any]:
    """Series and the sums the checks need from one ``/metrics`` page."""
    from prometheus_client.parser import text_string_to_metric_families

    series: list[str] = []
    families: set[str] = set()
    sums = {"http_requests": 0.0, "http_503": 0.0, "http_5xx_other": 0.0}
    model_counters = {"requests_shed_total": "shed", "requests_timed_out_total": "timed_out",
                      "requests_cancelled_total": "cancelled"}
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            series.append(f"{sample.name}{{{labels}}}")
            if sample.name == "http_requests_total":
                sums["http_requests"] += sample.value
                status = sample.labels.get("status", "")
                if status == "503":
                    sums["http_503"] += sample.value
                elif status.startswith("5"):
                    sums["http_5xx_other"] += sample.value
            elif sample.name in model_counters:
                sums[model_counters[sample.name]] = sums.get(model_counters[sample.name], 0.0) + sample.value
    for family_name, key in (("requests_shed", "shed"), ("requests_timed_out", "timed_out"),
                             ("requests_cancelled", "cancelled")):
        if family_name in families:
            sums.setdefault(key, 0.0)
    return {"series": sorted(series), "series_count": len(series), "families": sorted(families), **sums}


def scrape(port: int) -> dict[str, Any]:
    status, body = get(port, "/metrics", timeout=10.0)
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    return parse_metrics(body.decode())


# -- part 1 ---------------------------------------------------------------------------------------------------
def api_spec() -> ServerSpec:
    return ServerSpec(
        name="this service (soak)",
        slug="soak-api",
        command=["{python}", "-m", "api.serve", "api.main:create_app", "--factory", "--host", "127.0.0.1", "--port",
                 "{port}", "--no-access-log", "--log-level", "warning"],
        ready_path="/readyz",
        single=("/v1/predict", lambda text: {"text": text}),
        batch=(BATCH, lambda texts: {"texts": texts}),
        env=dict(API_ENV) | {"ENABLED_MODELS": image_exports()},
    )


def image_exports() -> str:
    """The models the images serve (``deploy/docker/Dockerfile.cpu``'s ``EXPORTS`` build argument): the soak checks that service,
    not one whose champion is the opt-in mpnet (7× slower: its request counts would say nothing about shedding)."""
    match = re.search(r'^ARG EXPORTS="([^"]*)"', (PROJECT_ROOT / "deploy" / "docker" / "Dockerfile.cpu").read_text(), re.MULTILINE)
    if match is None:
        raise SystemExit("deploy/docker/Dockerfile.cpu has no ARG EXPORTS=\"…\" line: the soak cannot tell which models to serve")
    return ",".join(match.group(1).split())


async def shed_probe(port: int, tweets: list[str], attempts: int = 4) -> dict[str, int]:
    """Fill the queue with big batches, then call each predict route (and drop a call to each): the 503s and
    the dropped requests' answers create their series now, not in the middle of the soak.

    Returns:
        503s seen per route (the flood's own included under the batch route).
    """
    big = json.dumps({"texts": tweets[:BIG_BATCH]}).encode()
    seen = dict.fromkeys(PREDICT_ROUTES, 0)
    for attempt in range(attempts):
        missing = [route for route, count in seen.items() if not count]
        if not missing:
            break
        flood = [asyncio.create_task(exchange(port, head("POST", BATCH, length=len(big)), (big,), timeout=10))
                 for _ in range(4)]
        await asyncio.sleep(0.02 * (attempt + 1))
        probes = []
        for route in missing:
            body = json.dumps({"texts": tweets[:2]} if route.endswith("batch") else {"text": tweets[0]}).encode()
            probes.append(exchange(port, head("POST", route, length=len(body)), (body,), timeout=10))
        for route, reply in zip(missing, await asyncio.gather(*probes), strict=True):
            seen[route] += reply.status == 503
        # Requests dropped while queued behind the flood: each route's "client closed" answer exists from now on.
        for route in PREDICT_ROUTES:
            body = json.dumps({"texts": tweets[:2]} if route.endswith("batch") else {"text": tweets[0]}).encode()
            await abandon(port, head("POST", route, length=len(body)), body)
        seen[BATCH] += sum(reply.status == 503 for reply in await asyncio.gather(*flood))
    return seen


def _cpu_clock(server: RunningServer) -> tuple[float, ...]:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (time.perf_counter(), machine_busy_seconds(), server.cpu_seconds(), time.process_time(),
            children.ru_utime + children.ru_stime)


def _cpu_shares(server: RunningServer, before: tuple[float, ...]) -> dict[str, Any]:
    """Wall time of a phase and the share of the machine (all cores, %) taken by each party during it."""
    after = _cpu_clock(server)
    wall = after[0] - before[0]
    used = {name: after[i] - before[i] for i, name in ((2, "server"), (3, "client"), (4, "wrk"))}
    machine = after[1] - before[1]
    capacity = max(wall, 1e-9) * (os.cpu_count() or 1)
    shares = {name: round(seconds / capacity * 100, 1) for name, seconds in used.items()}
    shares["others"] = round(max(machine - sum(used.values()), 0.0) / capacity * 100, 1)
    return {"seconds": round(wall, 1), "cpu_pct": shares}


def _client_total(client: dict[str, dict[str, Any]], key: str) -> int:
    return sum(int(stats.get(key, 0)) for stats in client.values())


async def _api_phases(server: RunningServer, mode: Mode, args: argparse.Namespace, result: dict[str, Any]) -> None:
    port = server.port
    rng = random.Random(args.seed)
    tweets = make_tweets(2000, seed=args.seed)
    deadline_s = float(API_ENV["REQUEST_TIMEOUT_S"])
    valid_timeout = deadline_s + DEADLINE_SLACK_S + 2
    workdir = args.work_dir
    listing = json.loads(get(port, "/v1/models")[1])
    default_model = listing["default"]
    result["default_model"] = default_model

    baseline = None if args.baseline == "measure" else bench_baseline(args.bench_json, default_model)
    if baseline is None:
        logger.info("measuring the baseline: wrk, 16 connections, %d s, valid single tweets only",
                    mode.baseline_seconds)
        measured = await run_wrk(port, tweets, workdir, seconds=mode.baseline_seconds, max_answers=10**7,
                                 timeout_s=valid_timeout)
        baseline = {"source": "measured", "tweets_per_s": measured["ok_per_s"], "model": default_model,
                    "load_generator": "wrk (same script)", "wrk": measured}
    result["baseline"] = baseline
    logger.info("baseline: %.1f tweets/s (%s)", baseline["tweets_per_s"], baseline["source"])

    corpus_started = time.perf_counter()
    corpus = fuzz_corpus(mode.fuzz_examples, args.seed)
    result["fuzz_corpus"] = {"examples": len(corpus), "distinct": len(set(corpus)),
                             "seconds": round(time.perf_counter() - corpus_started, 2)}

    logger.info("warm-up: every category on every route, a shedding burst, then %d s of the mix",
                mode.warmup_wrk_seconds)
    max_body = int(API_ENV["MAX_BODY_BYTES"])
    timeouts = {"valid_timeout_s": valid_timeout, "other_timeout_s": 10.0}
    coverage = await run_plan(port, coverage_plan(tweets, default_model, max_body), spread_s=0, workers=4,
                              stop_after_s=60, **timeouts)
    probe = await shed_probe(port, tweets)
    warm_plan = mixed_plan(mode.warmup_python, tweets, corpus, max_body, rng)
    warm_wrk, warm_client = await asyncio.gather(
        run_wrk(port, tweets, workdir, seconds=mode.warmup_wrk_seconds, max_answers=10**7, timeout_s=valid_timeout),
        run_plan(port, warm_plan, spread_s=mode.warmup_wrk_seconds, workers=6, stop_after_s=30, **timeouts))
    result["warmup"] = {"coverage": coverage, "shed_probe": probe, "wrk": warm_wrk, "client": warm_client}
    await asyncio.sleep(1.0)
    before = scrape(port)
    result["rss_mb"] = {"after_warmup": server.rss_mb()}

    # Spread the Python mix over the time wrk should need at the rate it just had under the mix, so that all of
    # it meets the saturation.
    spread = min(max(mode.wrk_answers / max(warm_wrk["ok_per_s"], 1.0), 3.0), float(mode.wrk_seconds))
    plan = mixed_plan(mode.python_requests, tweets, corpus, max_body, rng)
    logger.info("main phase: wrk (16 connections, up to %d tweets or %d s) and %d mixed requests over %.0f s",
                mode.wrk_answers, mode.wrk_seconds, len(plan), spread)
    clock = _cpu_clock(server)
    main_wrk, main_client = await asyncio.gather(
        run_wrk(port, tweets, workdir, seconds=mode.wrk_seconds, max_answers=mode.wrk_answers,
                timeout_s=valid_timeout),
        run_plan(port, plan, spread_s=spread, workers=8, stop_after_s=mode.wrk_seconds + 10, **timeouts))
    result["main"] = {
        "wrk": main_wrk, "client": main_client, "spread_s": round(spread, 1),
        "requests": main_wrk["answers"] + _client_total(main_client, "sent"), **_cpu_shares(server, clock),
    }
    await asyncio.sleep(1.0)
    after = scrape(port)
    result["rss_mb"]["end"] = server.rss_mb()
    new = sorted(set(after["series"]) - set(before["series"]))
    unexpected = unexpected_series(new)
    result["metrics"] = {
        "after_warmup": {k: v for k, v in before.items() if k != "series"},
        "end": {k: v for k, v in after.items() if k != "series"},
        "new_series": new[:40], "new_series_count": len(new),
        "unexpected_series": unexpected[:40], "unexpected_series_count": len(unexpected),
    }
    logger.info("SIGKILL of one worker under wrk (%d s)", PHASE_S)
    result["worker_kill"] = await kill_a_worker(server, tweets, workdir, scrape, valid_timeout)
    result["alive_at_end"] = server.process.poll() is None and get(port, "/readyz")[0] == 200


_ROUTE_STATUS = re.compile(r'route="(?P<route>[^"]*)".*status="(?P<status>[^"]*)"')


def unexpected_series(new: list[str]) -> list[str]:
    """The new series that say the label sets are not bounded.

    A predict route's first 503 is bounded (one status per route) but cannot be forced in the warm-up: a queue
    that sheds a 256-tweet flood still has room for one tweet, so whether a single tweet is ever shed is timing.
    """
    def bounded(series: str) -> bool:
        match = _ROUTE_STATUS.search(series)
        return bool(match) and match["status"] == "503" and match["route"] in PREDICT_ROUTES

    return [series for series in new if not bounded(series)]


def run_api_soak(mode: Mode, args: argparse.Namespace) -> dict[str, Any]:
    """Part 1; an ``error`` key says why it stopped early."""
    result: dict[str, Any] = {"settings": dict(API_ENV), "deadline_s": float(API_ENV["REQUEST_TIMEOUT_S"])}
    started = time.perf_counter()
    try:
        with RunningServer(api_spec(), args.work_dir, ready_timeout=120) as server:
            result["ready_s"] = round(server.ready_seconds, 2)
            result["server_log"] = str(server.log_path.relative_to(PROJECT_ROOT)) \
                if server.log_path.is_relative_to(PROJECT_ROOT) else str(server.log_path)
            asyncio.run(_api_phases(server, mode, args, result))
    except Exception as error:  # recorded and failed by the checks; the other part still runs
        logger.exception("API soak stopped")
        result["error"] = f"{type(error).__name__}: {error}"[:500]
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


# -- checks ---------------------------------------------------------------------------------------------------
def _check(name: str, passed: bool, value: Any, bound: str, detail: str = "", feature: str = "") -> dict[str, Any]:
    check = {"check": name, "passed": bool(passed), "value": value, "bound": bound, "detail": detail}
    if feature:
        check["needs_service_feature"] = feature
    return check


def api_checks(api: dict[str, Any], mode: Mode) -> list[dict[str, Any]]:
    """Part 1's pass/fail conditions, from the recorded results alone."""
    if "error" in api or "main" not in api:
        return [_check("api: soak ran to the end", False, api.get("error", "no main phase"), "no error")]
    wrk, client = api["main"]["wrk"], api["main"]["client"]
    warm, end = api["metrics"]["after_warmup"], api["metrics"]["end"]
    checks = []

    server_bad = end["http_5xx_other"] - warm["http_5xx_other"]
    client_bad = _client_total(client, "bad_5xx")
    wrk_bad = wrk["other_5xx"] + (wrk["503"] - wrk["503_retry_after"])
    bad = wrk_bad + client_bad + server_bad
    examples = [e for stats in client.values() for e in stats.get("examples", [])][:3]
    checks.append(_check("api: the only 5xx are 503 with Retry-After", bad == 0, bad, "== 0",
                         f"wrk {wrk_bad}, client {client_bad}, /metrics 5xx other than 503: {server_bad:g}"
                         + (f"; e.g. {examples}" if examples else "")))

    seen = wrk["503"] + _client_total(client, "503")
    counted = end["http_503"] - warm["http_503"]
    # Answers nobody read: abandoned requests, wrk's in-flight ones when it stopped, unanswered client requests.
    unread = (client["abandoned"]["sent"] + wrk["connections"]
              + sum(sum(stats["errors"].values()) for name, stats in client.items() if name != "abandoned"))
    checks.append(_check("api: /metrics counts every 503", seen <= counted <= seen + unread, counted,
                         f"between {seen} and {seen + unread}",
                         f"503s seen by clients {seen} (wrk {wrk['503']}); http_requests_total 503 delta {counted:g}; "
                         f"answers not read {unread}"))

    missing = [f for f in SHEDDING_FAMILIES if f not in end.get("families", [])]
    if missing:
        checks.append(_check("api: shed + timed-out counters match the 503s", False, "missing",
                             f"between {seen} and {counted:g}", f"/metrics lacks {', '.join(missing)}",
                             feature="MAX_QUEUE_TEXTS / REQUEST_TIMEOUT_S load shedding and its counters"))
    else:
        shed = (end["shed"] - warm["shed"]) + (end["timed_out"] - warm["timed_out"])
        checks.append(_check("api: shed + timed-out counters match the 503s", seen <= shed <= counted, shed,
                             f"between {seen} and {counted:g}",
                             f"shed {end['shed'] - warm['shed']:g}, timed out {end['timed_out'] - warm['timed_out']:g}, "
                             f"cancelled {end['cancelled'] - warm['cancelled']:g}"))

    baseline = api["baseline"]["tweets_per_s"]
    client_tweets = sum(client[name].get("ok_tweets", 0) for name in TIMED)
    rate = round((wrk["ok"] + client_tweets) / wrk["duration_s"], 1) if wrk["duration_s"] else 0.0
    checks.append(_check("api: valid tweets/s under saturation", rate >= THROUGHPUT_RATIO * baseline, rate,
                         f">= {THROUGHPUT_RATIO} × {baseline:g} = {THROUGHPUT_RATIO * baseline:.1f}",
                         f"baseline from {api['baseline']['source']}; wrk {wrk['ok']} of {wrk['answers']} answers 200 "
                         f"({wrk['ok_per_s']}/s) and the client's valid requests {client_tweets} tweets, in "
                         f"{wrk['duration_s']} s; CPU shares % {api['main'].get('cpu_pct')}"))

    growth = round(api["rss_mb"]["end"] - api["rss_mb"]["after_warmup"], 1)
    checks.append(_check("api: RSS growth (MB)", growth < RSS_GROWTH_MB, growth, f"< {RSS_GROWTH_MB:g}",
                         f"{api['rss_mb']['after_warmup']} MB after the warm-up, {api['rss_mb']['end']} MB at the end"))

    metrics = api["metrics"]
    unexpected = metrics.get("unexpected_series_count", metrics["new_series_count"])
    allowed = metrics["new_series_count"] - unexpected
    checks.append(_check("api: /metrics series", unexpected == 0, end["series_count"],
                         f"== {warm['series_count']} (after the warm-up) + a first 503 per predict route",
                         (f"unexpected: {metrics.get('unexpected_series', metrics['new_series'])[:5]}; " if unexpected
                          else "") + (f"{allowed} for a first 503 on a predict route" if allowed else "")))

    bound = api["deadline_s"] + DEADLINE_SLACK_S
    slowest = max([wrk["latency_max_s"], *(client[name]["max_latency_s"] for name in TIMED)])
    unanswered = wrk["errors"]["timeout"] + sum(sum(client[name]["errors"].values()) for name in TIMED)
    checks.append(_check("api: longest wait of a valid request (s)", slowest <= bound and unanswered == 0,
                         round(slowest, 3), f"<= {bound:g} (REQUEST_TIMEOUT_S + 1)",
                         f"wrk max {wrk['latency_max_s']} s, client max "
                         f"{max(client[name]['max_latency_s'] for name in TIMED)} s; unanswered {unanswered}"))

    categories = {name: client[name]["sent"] for name in CATEGORIES}
    coverage = {name: api["warmup"]["coverage"][name]["sent"] for name in CATEGORIES}
    total = api["main"]["requests"]
    complete = all(categories.values()) and all(coverage.values()) and total >= mode.target_requests
    checks.append(_check("api: mixed requests sent", complete, total, f">= {mode.target_requests}, every category",
                         f"main {categories} + wrk {wrk['answers']}; warm-up {coverage}"))
    checks += worker_checks(api.get("worker_kill", {"skipped": "the phase did not run"}), _check)
    checks.append(_check("api: server alive and ready at the end", api.get("alive_at_end", False),
                         api.get("alive_at_end", False), "true"))
    return checks


def feedback_checks(feedback: dict[str, Any], mode: Mode) -> list[dict[str, Any]]:
    """Part 2's pass/fail conditions."""
    if "error" in feedback or "rows" not in feedback:
        return [_check("feedback: soak ran to the end", False, feedback.get("error", "no result"), "no error")]
    rows, fake = feedback["rows"], feedback["endpoint"]
    checks = [
        _check("feedback: every verdict in SQLite exactly once", rows["problems"] == 0, rows["problems"], "== 0",
               f"{rows['verdicts']} verdicts, {rows['rows']} rows; {rows['problem_examples'][:3]}"),
        _check("feedback: rows marked sent were accepted by the endpoint", fake["sent_not_accepted"] == 0,
               fake["sent_not_accepted"], "== 0", f"{fake['accepted_items']} items accepted, "
               f"{fake['received_items']} received; {fake['sent_not_accepted_examples'][:3]}"),
        _check("feedback: everything delivered after the last restart", rows["undelivered"] == 0, rows["undelivered"],
               "== 0", f"drained in {feedback.get('drain_s')} s; {rows['undelivered_examples'][:3]}"),
        _check("feedback: SIGKILLs and restarts", feedback["kills"] >= mode.kills, feedback["kills"],
               f">= {mode.kills}", f"{feedback['restarts']} restarts, {feedback['resubmitted']} verdicts re-submitted"),
    ]
    return checks


# An upload may not grow the product's process by more than this (the wide CSV once took 1.6 GB).
ABUSE_MEMORY_MB = 100


def abuse_checks(abuse: dict[str, Any]) -> list[dict[str, Any]]:
    """Part 3's pass/fail conditions."""
    if "error" in abuse or "flood" not in abuse:
        return [_check("abuse: ran to the end", False, abuse.get("error", "no result"), "no error")]
    flood, uploads = abuse["flood"], abuse["uploads"]
    outcomes = "; ".join(f"{name}: {u['outcome'][:60]}" for name, u in uploads.items())
    return [
        _check("abuse: hostile uploads keep memory bounded (MB)", abuse["peak_mb_growth"] < ABUSE_MEMORY_MB,
               abuse["peak_mb_growth"], f"< {ABUSE_MEMORY_MB}", outcomes),
        _check("abuse: the wide CSV is refused", uploads["wide header (65,000 columns)"]["outcome"].startswith("refused"),
               uploads["wide header (65,000 columns)"]["outcome"][:80], "refused"),
        _check("abuse: one address's flood is limited", flood["accepted"] <= flood["limit"], flood["accepted"],
               f"<= {flood['limit']} (FEEDBACK_PER_CLIENT_PER_HOUR)",
               f"{flood['sent']} sent, {flood['limited']} refused in {flood['seconds']} s"),
        _check("abuse: no unreviewed verdict reaches a retraining", flood["training_rows"] == 0,
               flood["training_rows"], "== 0", f"dropped by make retrain's reader: {flood['dropped']}"),
    ]


def evaluate(report: dict[str, Any], mode: Mode) -> list[dict[str, Any]]:
    """Every check of the run (only for the parts that ran), then the time budget."""
    checks: list[dict[str, Any]] = []
    if "api" in report:
        checks += api_checks(report["api"], mode)
    if "feedback" in report:
        checks += feedback_checks(report["feedback"], mode)
    if "abuse" in report:
        checks += abuse_checks(report["abuse"])
    seconds = report.get("seconds", 0)
    checks.append(_check("whole run within the budget (s)", seconds <= BUDGET_S, seconds, f"<= {BUDGET_S}"))
    return checks


# -- report ---------------------------------------------------------------------------------------------------
def to_markdown(report: dict[str, Any]) -> str:
    lines = [f"Soak ({report['mode']}), {report['started_at']}: **{'PASSED' if report['passed'] else 'FAILED'}** "
             f"in {report['seconds']} s.", "", "| check | value | bound | passed | detail |", "|---|---|---|---|---|"]
    for c in report["checks"]:
        detail = str(c["detail"]).replace("|", "\\|")
        if c.get("needs_service_feature"):
            detail += f" (needs: {c['needs_service_feature']})"
        lines.append(f"| {c['check']} | {c['value']} | {c['bound']} | {'yes' if c['passed'] else '**no**'} "
                     f"| {detail} |")
    api = report.get("api", {})
    if "main" in api:
        lines += ["", "Main phase of the API soak, by category (Python client; wrk sends the valid single tweets):",
                  "", "| category | sent | statuses | no answer | 503 (with Retry-After) | bad 5xx | max s |",
                  "|---|---|---|---|---|---|---|"]
        wrk = api["main"]["wrk"]
        lines.append(f"| wrk: valid single (16 connections) | {wrk['answers']} | 200: {wrk['ok']}, other: {wrk['other']} "
                     f"| {sum(wrk['errors'].values())} | {wrk['503']} ({wrk['503_retry_after']}) | {wrk['other_5xx']} "
                     f"| {wrk['latency_max_s']} |")
        for name, s in api["main"]["client"].items():
            statuses = ", ".join(f"{k}: {v}" for k, v in s["statuses"].items())
            lines.append(f"| {name} | {s['sent']} | {statuses} | {sum(s['errors'].values())} "
                         f"| {s['503']} ({s['503_retry_after']}) | {s['bad_5xx']} "
                         f"| {s['max_latency_s'] if name in TIMED else ''} |")
        lines += ["", f"Settings: {api['settings']}; baseline {api['baseline']['tweets_per_s']} tweets/s from "
                      f"{api['baseline']['source']}; wrk {wrk['ok_per_s']} valid tweets/s (p50 {wrk['latency_p50_s']} s, "
                      f"p99 {wrk['latency_p99_s']} s); share of the machine's CPU during the main phase (%): "
                      f"{api['main']['cpu_pct']}."]
    feedback = report.get("feedback", {})
    if "rows" in feedback:
        lines += ["", f"Feedback: {feedback['rows']['verdicts']} verdicts, {feedback['kills']} SIGKILLs, "
                      f"{feedback['resubmitted']} re-submitted, {feedback['endpoint']['accepted_items']} items accepted "
                      f"by the fake endpoint ({feedback['endpoint']['duplicate_deliveries']} duplicate deliveries), "
                      f"drained {feedback.get('drain_s')} s after the last restart."]
    abuse = report.get("abuse", {})
    if "flood" in abuse:
        uploads = "; ".join(f"{name} ({u['bytes']:,} bytes): {u['outcome']}" for name, u in abuse["uploads"].items())
        flood = abuse["flood"]
        lines += ["", f"Abuse, beside part 1: uploads to the Predict page's reader: {uploads}; peak memory growth "
                      f"{abuse['peak_mb_growth']} MB. One address sent {flood['sent']} thumbs: {flood['accepted']} "
                      f"accepted, {flood['limited']} refused; rows make retrain would read: {flood['training_rows']} "
                      f"(dropped: {flood['dropped']})."]
    machine = report["machine"]
    lines += ["", f"{machine['cpus']} CPUs, {machine['platform']}, Python {machine['python']}; load average "
                  f"{machine['load_before']} before, {machine['load_after']} after."]
    return "\n".join(lines) + "\n"


@contextmanager
def budget(seconds: int) -> Iterator[None]:
    """Raise :class:`BudgetExceeded` in the main thread after ``seconds`` (a safety net over the phases)."""

    def expire(*_: object) -> None:
        raise BudgetExceeded(f"the soak ran past its budget of {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run of every phase (development, tests)")
    parser.add_argument("--output-dir", type=Path,
                        help="where soak.json and soak.md go (default: results/, with --quick results/tmp/)")
    parser.add_argument("--bench-json", type=Path, default=PROJECT_ROOT / "results" / "bench.json",
                        help="benchmark results holding the 16-connection baseline")
    parser.add_argument("--baseline", choices=["auto", "measure"], default="auto",
                        help="auto: from --bench-json when it has the figure, else measured; measure: always measure")
    parser.add_argument("--part", choices=["all", "api", "feedback", "abuse"], default="all")
    parser.add_argument("--seed", type=int, default=20251125)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    mode = QUICK if args.quick else FULL
    # A smoke run must not replace the committed results.
    args.work_dir = args.output_dir / "tmp" if args.output_dir else PROJECT_ROOT / "results" / "tmp"
    args.output_dir = args.output_dir or PROJECT_ROOT / "results" / ("tmp" if args.quick else "")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    report: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"), "mode": mode.name, "sizes": asdict(mode),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_before": [round(x, 2) for x in os.getloadavg()]},
    }
    abuse = None
    try:
        with budget(BUDGET_S - 10):
            if args.part in ("all", "abuse"):
                from benchmarks import soak_abuse

                abuse = soak_abuse.start(args.work_dir)  # beside part 1: the API is saturated meanwhile
            if args.part in ("all", "api"):
                report["api"] = run_api_soak(mode, args)
            if abuse is not None:
                report["abuse"] = soak_abuse.finish(abuse)
            if args.part in ("all", "feedback"):
                from benchmarks.soak_feedback import run_feedback_soak

                report["feedback"] = run_feedback_soak(mode.verdicts, mode.kills, args.work_dir,
                                                       seed=args.seed)
    except BudgetExceeded as error:
        report["budget_error"] = str(error)
        if abuse is not None and abuse.poll() is None:
            abuse.kill()
        for part in ("api", "feedback", "abuse"):
            if args.part in ("all", part) and part not in report:
                report[part] = {"error": str(error)}
    report["machine"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["checks"] = evaluate(report, mode)
    report["passed"] = all(c["passed"] for c in report["checks"])
    (args.output_dir / "soak.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    markdown = to_markdown(report)
    (args.output_dir / "soak.md").write_text(markdown, encoding="utf-8")
    sys.stdout.write(markdown)
    failed = [f"{c['check']}: {c['value']} (bound {c['bound']}) {c['detail']}" for c in report["checks"]
              if not c["passed"]]
    # Last, where a CI log's tail shows it.
    sys.stderr.write("".join(f"soak FAILED: {line}\n" for line in failed) or "soak passed\n")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
