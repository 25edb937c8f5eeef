"""The soak's pass/fail logic on fabricated results (each condition must be able to fail), its readers and
its raw HTTP client; and, marked slow, a real ``--quick`` run."""

from __future__ import annotations

import asyncio
import copy
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from benchmarks.soak import (
    QUICK,
    SHEDDING_FAMILIES,
    BudgetExceeded,
    bench_baseline,
    budget,
    evaluate,
    parse_metrics,
    to_markdown,
    unexpected_series,
)
from benchmarks.soak_feedback import Verdict, judge
from benchmarks.soak_http import exchange, head
from benchmarks.soak_traffic import CATEGORIES, CategoryStats, Planned, fuzz_corpus

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _category(sent: int = 10, **extra: Any) -> dict[str, Any]:
    return {"sent": sent, "statuses": {"200": sent}, "errors": {}, "503": 0, "503_retry_after": 0, "bad_5xx": 0,
            "max_latency_s": 0.2, "examples": [], "skipped": 0} | extra


def _metrics(http_503: float = 0.0, shed: float = 0.0, series: int = 100) -> dict[str, Any]:
    return {"series_count": series, "families": [*SHEDDING_FAMILIES, "http_requests"], "http_503": http_503,
            "http_5xx_other": 0.0, "shed": shed, "timed_out": 0.0, "cancelled": 3.0}


def passing_report() -> dict[str, Any]:
    """Results of a run that meets every condition: 5 shed requests, each seen and counted."""
    client = {name: _category() for name in CATEGORIES}
    client["valid_batch"] |= {"statuses": {"200": 8, "503": 2}, "503": 2, "503_retry_after": 2}
    wrk = {"answers": 1000, "ok": 997, "503": 3, "503_retry_after": 3, "other_5xx": 0, "other": 0,
           "duration_s": 2.0, "ok_per_s": 498.5, "latency_max_s": 0.5, "latency_p50_s": 0.03, "latency_p99_s": 0.2,
           "errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0}, "connections": 16}
    api = {
        "settings": {}, "deadline_s": 2.0, "baseline": {"source": "results/bench.json", "tweets_per_s": 600.0},
        "warmup": {"coverage": {name: _category(1) for name in CATEGORIES}},
        "main": {"wrk": wrk, "client": client, "requests": QUICK.target_requests, "cpu_pct": {}},
        "metrics": {"after_warmup": _metrics(10, 10), "end": _metrics(15, 15), "new_series": [],
                    "new_series_count": 0, "unexpected_series": [], "unexpected_series_count": 0},
        "rss_mb": {"after_warmup": 300.0, "end": 310.0}, "alive_at_end": True,
        "worker_kill": {"workers": [11, 12], "killed": 11, "replaced_s": 2.5, "wrk": {"ok": 900, "errors": {"read": 4}},
                        "probe_statuses": {"200": 40}, "series_before": 120, "series_after": 120,
                        "series_gained": [], "series_lost": [], "http_counters_before": 5000.0,
                        "http_counters_after": 5900.0},
    }
    feedback = {"kills": QUICK.kills, "restarts": QUICK.kills, "resubmitted": 4, "drain_s": 1.0,
                "rows": {"verdicts": 60, "rows": 60, "problems": 0, "problem_examples": [], "undelivered": 0,
                         "undelivered_examples": []},
                "endpoint": {"accepted_items": 70, "received_items": 90, "duplicate_deliveries": 1,
                             "sent_not_accepted": 0, "sent_not_accepted_examples": []}}
    abuse = {"uploads": {"wide header (65,000 columns)": {"bytes": 132_000,
                                                          "outcome": "refused: The first row has 65,000 columns"}},
             "peak_mb_growth": 15.0,
             "flood": {"sent": 1000, "accepted": 120, "limited": 880, "limit": 120, "seconds": 0.1,
                       "training_rows": 0, "dropped": {"unreviewed_thumbs_up": 60}}}
    return {"api": api, "feedback": feedback, "abuse": abuse, "seconds": 120.0}


def _failed(report: dict[str, Any]) -> list[str]:
    return [c["check"] for c in evaluate(report, QUICK) if not c["passed"]]


def test_a_run_meeting_every_condition_passes() -> None:
    checks = evaluate(passing_report(), QUICK)
    assert [c["check"] for c in checks if not c["passed"]] == []
    assert len(checks) == 21


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(report: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = report
        for key in parents:
            node = node[key]
        node[last] = value(node[last]) if callable(value) else value

    return mutate


FAILURES = [
    ("a 500 seen by wrk", "api.main.wrk.other_5xx", 1, "the only 5xx"),
    ("a 503 without Retry-After (wrk)", "api.main.wrk.503_retry_after", 2, "the only 5xx"),
    ("a 502 seen by the client", "api.main.client.fuzz.bad_5xx", 1, "the only 5xx"),
    ("a 500 only /metrics saw", "api.metrics.end.http_5xx_other", 1.0, "the only 5xx"),
    # Counting fewer 503s than were seen also puts the shed counter above them: both checks fail.
    ("a 503 seen but not counted", "api.metrics.end.http_503", 14.0, "counts every 503|shed + timed-out"),
    ("503s counted that nobody could have seen", "api.metrics.end.http_503", 200.0, "counts every 503"),
    ("shed counter below the 503s seen", "api.metrics.end.shed", 12.0, "shed + timed-out"),
    ("no shedding counters", "api.metrics.end.families", ["http_requests"], "shed + timed-out"),
    ("throughput under 0.7× the baseline", "api.main.wrk.ok", 830, "tweets/s under saturation"),
    ("RSS grew by 50 MB", "api.rss_mb.end", 350.0, "RSS growth"),
    ("a new series", "api.metrics.unexpected_series_count", 1, "/metrics series"),
    ("wrk waited past the deadline + 1 s", "api.main.wrk.latency_max_s", 3.01, "longest wait"),
    ("a client batch waited past it", "api.main.client.valid_batch.max_latency_s", 3.5, "longest wait"),
    ("a wrk request timed out", "api.main.wrk.errors.timeout", 1, "longest wait"),
    ("a valid client request unanswered", "api.main.client.valid_single.errors", {"timeout": 1}, "longest wait"),
    ("a category never sent", "api.main.client.oversized.sent", 0, "mixed requests"),
    ("a category missing from the warm-up", "api.warmup.coverage.abandoned.sent", 0, "mixed requests"),
    ("fewer requests than planned", "api.main.requests", QUICK.target_requests - 1, "mixed requests"),
    ("server gone at the end", "api.alive_at_end", False, "alive"),
    ("one worker only: nothing killed", "api.worker_kill", {"skipped": "1 worker process(es)"}, "SIGKILL of one"),
    ("a request failed after the kill", "api.worker_kill.probe_statuses", {"200": 39, "None": 1}, "after a worker"),
    ("a 503 without Retry-After after the kill", "api.worker_kill.probe_statuses", {"200": 39, "-503": 1},
     "after a worker"),
    ("the killed worker never replaced", "api.worker_kill.replaced_s", None, "replaced"),
    ("a series lost with the worker", "api.worker_kill.series_lost", ['models_ready{}'], "across the kill"),
    ("counters went back", "api.worker_kill.http_counters_after", 4000.0, "across the kill"),
    ("the API soak crashed", "api", {"error": "RuntimeError: boom"}, "api: soak ran"),
    ("a verdict twice or lost", "feedback.rows.problems", 1, "exactly once"),
    ("a sent row never accepted", "feedback.endpoint.sent_not_accepted", 1, "were accepted"),
    ("a row still pending", "feedback.rows.undelivered", 2, "everything delivered"),
    ("too few SIGKILLs", "feedback.kills", QUICK.kills - 1, "SIGKILLs"),
    ("the feedback soak crashed", "feedback", {"error": "RuntimeError: boom"}, "feedback: soak ran"),
    ("an upload took 200 MB", "abuse.peak_mb_growth", 200.0, "memory bounded"),
    ("the wide CSV read", "abuse.uploads.wide header (65,000 columns).outcome", "read 1 rows", "wide CSV"),
    ("a flood over the limit", "abuse.flood.accepted", 121, "flood is limited"),
    ("a flooded verdict in training", "abuse.flood.training_rows", 1, "reaches a retraining"),
    ("the abuse child crashed", "abuse", {"error": "boom"}, "abuse: ran"),
    ("over the budget", "seconds", 301.0, "budget"),
]


@pytest.mark.parametrize(("what", "path", "value", "check"), FAILURES, ids=[f[0] for f in FAILURES])
def test_each_condition_can_fail(what: str, path: str, value: Any, check: str) -> None:
    report = copy.deepcopy(passing_report())
    _set(path, value)(report)
    failed = _failed(report)
    expected = check.split("|")
    assert failed and len(failed) == len(expected), (what, failed)
    assert all(any(part in name for name in failed) for part in expected), (what, failed)


def test_throughput_counts_the_tweets_of_every_valid_request() -> None:
    report = passing_report()
    report["api"]["main"]["wrk"]["ok"] = 830  # 415 tweets/s from wrk alone: under 0.7 × 600
    report["api"]["main"]["client"]["valid_batch"]["ok_tweets"] = 20  # the client's batches: 425 in all
    check = next(c for c in evaluate(report, QUICK) if "tweets/s" in c["check"])
    assert check["passed"] and check["value"] == 425.0


def test_missing_shedding_counters_name_the_feature() -> None:
    report = passing_report()
    report["api"]["metrics"]["end"]["families"] = ["http_requests"]
    check = next(c for c in evaluate(report, QUICK) if not c["passed"])
    assert "requests_shed" in check["detail"] and "MAX_QUEUE_TEXTS" in check["needs_service_feature"]


def test_markdown_lists_every_check() -> None:
    report = passing_report() | {"mode": "quick", "started_at": "now", "passed": True,
                                 "machine": {"cpus": 2, "platform": "x", "python": "3.11", "load_before": [1],
                                             "load_after": [1]}}
    report["api"]["settings"] = {"MAX_QUEUE_TEXTS": "512"}
    report["checks"] = evaluate(report, QUICK)
    markdown = to_markdown(report)
    assert markdown.count("| yes |") == len(report["checks"])
    assert "| valid_batch | 10 | 200: 8, 503: 2 |" in markdown


def test_bench_baseline_reads_old_and_new_layouts(tmp_path: Path) -> None:
    old = {"results": [{"server": "seed-style server", "model": "", "single_c16": {"tweets_per_s": 80.0}},
                       {"server": "this service", "model": "tfidf-lr", "single_c16": {"tweets_per_s": 970.0}},
                       {"server": "this service", "model": "minilm", "batch_256": {"tweets_per_s": 1340.0},
                        "single_c16": {"requests": 5000, "tweets_per_s": 611.6}}]}
    new = {"quick": False, "machine": {"wrk": "wrk 4.1.0"},
           "servers": [{"server": "this service", "slug": "service", "model": "minilm",
                        "phases": {"single_c1": {"tweets_per_s": 400.0}, "batch256_c1": {"tweets_per_s": 1300.0},
                                   "single_c16": {"cpu_pct": {"server": 90.0}, "tweets_per_s": 650.5}}}]}
    renamed = {"servers": [{"slug": "service", "model": "minilm", "wrk_16_connections": {"rps": 700.0}}]}
    for name, report, rate in (("old", old, 611.6), ("new", new, 650.5), ("renamed", renamed, 700.0)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(report))
        found = bench_baseline(path, "minilm")
        assert found is not None and found["tweets_per_s"] == rate, (name, found)
    assert bench_baseline(tmp_path / "old.json", "bert") is None  # another model's figure is no baseline
    (tmp_path / "broken.json").write_text("{")
    assert bench_baseline(tmp_path / "broken.json", "minilm") is None
    assert bench_baseline(tmp_path / "absent.json", "minilm") is None


def test_parse_metrics_counts_series_and_sums() -> None:
    text = "\n".join([
        "# HELP http_requests_total x", "# TYPE http_requests_total counter",
        'http_requests_total{method="POST",route="/v1/predict",status="200"} 5.0',
        'http_requests_total{method="POST",route="/v1/predict",status="503"} 2.0',
        'http_requests_total{method="POST",route="/predict",status="503"} 1.0',
        'http_requests_total{method="GET",route="unmatched",status="500"} 1.0',
        "# HELP requests_shed_total x", "# TYPE requests_shed_total counter",
        'requests_shed_total{model="minilm"} 3.0',
        "# HELP requests_timed_out_total x", "# TYPE requests_timed_out_total counter", ""])
    parsed = parse_metrics(text)
    assert parsed["series_count"] == 5 and parsed["http_503"] == 3.0 and parsed["http_5xx_other"] == 1.0
    assert parsed["shed"] == 3.0 and parsed["timed_out"] == 0.0 and "cancelled" not in parsed
    assert "requests_timed_out" in parsed["families"]


def test_a_predict_routes_first_503_is_the_only_new_series_allowed() -> None:
    first_503 = ['http_requests_total{method="POST",route="/v1/predict",status="503"}',
                 'http_requests_created{method="POST",route="/v1/predict",status="503"}',
                 'http_errors_total{route="/predict_batch",status="503"}']
    unbounded = ['http_requests_total{method="GET",route="/nope/1",status="404"}',
                 'http_requests_total{method="POST",route="/v1/predict",status="500"}',
                 'predictions_total{label="neutral",model="minilm"}']
    assert unexpected_series(first_503 + unbounded) == unbounded

    report = passing_report()
    report["api"]["metrics"] |= {"new_series": first_503, "new_series_count": 3}
    check = next(c for c in evaluate(report, QUICK) if "series" in c["check"])
    assert check["passed"] and "3 for a first 503" in check["detail"]


def test_category_stats_flag_bad_5xx() -> None:
    stats = CategoryStats()
    item = Planned("fuzz", "POST", "/v1/predict", b"")
    stats.record(item, 503, "1", 0.1, None, b"")
    stats.record(item, 503, None, 0.1, None, b"")
    stats.record(item, 500, None, 0.1, None, b"boom")
    stats.record(item, None, None, 5.0, "timeout", b"")
    summary = stats.summary()
    assert (summary["503"], summary["503_retry_after"], summary["bad_5xx"]) == (2, 1, 2)
    assert summary["errors"] == {"timeout": 1} and summary["max_latency_s"] == 0.0  # fuzz is not timed
    assert "-> 500" in summary["examples"][1]


def _verdict(feedback_id: str, *steps: str) -> Verdict:
    return Verdict(feedback_id, list(steps), "positive", "t", 0.9, issued=len(steps), confirmed=len(steps))


def _row(feedback_id: str, verdict: str, revision: int, state: str = "sent", sent: int | None = None) -> dict:
    return {"id": feedback_id, "verdict": verdict, "revision": revision, "telemetry_state": state,
            "sent_revision": revision if sent is None and state == "sent" else sent, "attempts": 0}


def test_judge_finds_every_delivery_problem() -> None:
    verdicts = [_verdict("a", "up"), _verdict("b", "up", "down")]
    accepted = [("a", 1), ("b", 1), ("b", 2), ("a", 1)]
    good = judge(verdicts, [_row("a", "up", 1), _row("b", "down", 2)], accepted, 6)
    assert good["rows"]["problems"] == good["rows"]["undelivered"] == good["endpoint"]["sent_not_accepted"] == 0
    assert good["endpoint"]["duplicate_deliveries"] == 1
    assert judge(verdicts, [_row("a", "up", 1)], accepted, 6)["rows"]["problems"] == 1  # b lost
    assert judge(verdicts, [_row("a", "up", 1), _row("b", "down", 2), _row("c", "up", 1)], accepted,
                 6)["rows"]["problems"] == 1  # a row nobody recorded
    assert judge(verdicts, [_row("a", "up", 1), _row("b", "up", 3)], accepted, 6)["rows"]["problems"] == 1
    pending = judge(verdicts, [_row("a", "up", 1), _row("b", "down", 2, "pending", 1)], accepted, 6)
    assert pending["rows"]["undelivered"] == 1
    unaccepted = judge(verdicts, [_row("a", "up", 1), _row("b", "down", 2)], [("a", 1), ("b", 1)], 6)
    assert unaccepted["endpoint"]["sent_not_accepted"] == 1 and unaccepted["rows"]["undelivered"] == 1


def test_budget_interrupts_a_run_past_it() -> None:
    with pytest.raises(BudgetExceeded), budget(1):
        time.sleep(3)
    with budget(5):
        pass  # and leaves no alarm behind


def test_fuzz_corpus_is_deterministic_bytes() -> None:
    corpus = fuzz_corpus(25, seed=3)
    assert corpus == fuzz_corpus(25, seed=3) and len(corpus) == 25
    assert all(isinstance(body, bytes) and path.startswith("/") for path, _, body in corpus)
    assert len({body for _, _, body in corpus}) > 5


def test_exchange_reads_an_early_answer_and_reports_silence() -> None:
    """A 413 sent before the body is read still reaches the client; a server that never answers is a timeout."""

    async def scenario() -> tuple[Any, Any]:
        async def early(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 413 Payload Too Large\r\nRetry-After: 3\r\nContent-Length: 2\r\n\r\nno")
            await writer.drain()
            writer.close()

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(5)

        servers = [await asyncio.start_server(handler, "127.0.0.1", 0) for handler in (early, silent)]
        ports = [s.sockets[0].getsockname()[1] for s in servers]
        body = b"x" * 4_000_000
        first = await exchange(ports[0], head("POST", "/", length=len(body)), [body], timeout=5)
        second = await exchange(ports[1], head("GET", "/"), method="GET", timeout=0.3)
        for server in servers:
            server.close()
        return first, second

    first, second = asyncio.run(scenario())
    assert (first.status, first.retry_after, first.body) == (413, "3", b"no")
    assert second.status is None and second.error == "timeout"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("wrk") is None, reason="needs Debian's wrk (apt-get install wrk)")
def test_quick_soak_runs_end_to_end(tmp_path: Path) -> None:
    """``--quick``: every phase runs and the checks that do not depend on the machine's load pass."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.soak", "--quick", "--output-dir", str(tmp_path)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    report = json.loads((tmp_path / "soak.json").read_text())
    assert (tmp_path / "soak.md").read_text().startswith("Soak (quick)")
    assert done.returncode == (0 if report["passed"] else 1), done.stderr[-2000:]
    checks = {c["check"]: c for c in report["checks"]}
    # Throughput, the longest wait and how much of its time-bounded plan the client sent (every category, below)
    # depend on what else the machine runs; everything else must hold.
    load_dependent = ("tweets/s under saturation", "longest wait", "budget", "mixed requests sent")
    failed = [c for name, c in checks.items() if not c["passed"] and not any(k in name for k in load_dependent)]
    assert failed == [], failed
    assert all(report["api"]["main"]["client"][name]["sent"] > 0 for name in CATEGORIES)
