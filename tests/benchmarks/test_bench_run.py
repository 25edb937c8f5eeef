"""The serving benchmark's pieces: wrk output parsing, tweets, CPU shares, the ratios and the report.

The samples under ``wrk_samples/`` are wrk's real output, captured on loopback: against the lean API with
``benchmarks/bodies.lua``, against a deliberately slow stub (timeouts and 503s), and without the script.
No test here times anything; the end-to-end run is marked slow and checks shapes, never speeds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import wrk
from benchmarks.run import (
    BATCH,
    CONCURRENT,
    LATENCY,
    TARGETS,
    batch_windows,
    compute_ratios,
    configurations,
    summarize,
    summarize_configurations,
    to_markdown,
    write_bodies,
)
from benchmarks.servers import PROJECT_ROOT, CpuClock, cpu_shares
from benchmarks.tweets import load_tweets, make_tweets
from sentiment.budgets import available_cpus

SAMPLES = Path(__file__).with_name("wrk_samples")


def _sample(name: str) -> str:
    return (SAMPLES / name).read_text(encoding="utf-8")


def test_parse_reads_the_scripts_exact_line() -> None:
    result = wrk.parse(_sample("api_c16.txt"))
    assert result["requests"] == 670 and result["seconds"] == pytest.approx(2.017, abs=1e-3)
    assert result["requests_per_s"] == pytest.approx(670 / 2.016726, abs=0.01)
    assert result["latency_ms"] == {"p50": 44.572, "p90": 68.295, "p95": 78.851, "p99": 116.563, "max": 125.681,
                                    "mean": 47.333}
    assert not any(result["errors"].values())


def test_parse_counts_errors_and_agrees_with_wrks_text() -> None:
    output = _sample("errors.txt")
    exact = wrk.parse(output)
    assert exact["errors"] == {"connect": 0, "read": 0, "write": 0, "status": 4, "timeout": 4}
    text_only = wrk.parse("\n".join(line for line in output.splitlines() if not line.startswith("BENCH_JSON")))
    assert text_only["errors"] == exact["errors"] and text_only["requests"] == exact["requests"] == 11
    # wrk's table rounds to 10 µs; the script's line is exact.
    assert text_only["latency_ms"]["p50"] == pytest.approx(exact["latency_ms"]["p50"], abs=0.01)
    assert "p95" not in text_only["latency_ms"]


def test_parse_falls_back_on_wrks_text_with_every_unit() -> None:
    result = wrk.parse(_sample("without_script.txt"))
    assert result["requests"] == 1024 and result["seconds"] == 1.0 and result["requests_per_s"] == 1019.8
    assert result["latency_ms"] == {"p50": 0.807, "p90": 6.02, "p99": 8.08, "mean": 2.35, "max": 8.92}
    assert result["errors"]["status"] == 1024


def test_parse_refuses_what_is_not_wrk_output() -> None:
    with pytest.raises(wrk.WrkError):
        wrk.parse("unable to connect to 127.0.0.1:8799 Connection refused")


def test_summarize_counts_only_good_answers() -> None:
    result = wrk.parse(_sample("errors.txt"))
    summary = summarize(result, per_request=256, connections=4)
    assert summary["tweets_per_s"] == pytest.approx((11 - 4) * 256 / 3.004, abs=0.1)
    empty = summarize({"requests": 0, "seconds": 2.0, "requests_per_s": 0.0, "errors": dict.fromkeys(("status", "timeout"), 0),
                       "latency_ms": {"p50": 0.0}}, per_request=256, connections=1)
    assert empty["tweets_per_s"] is None and empty["latency_ms"] == {}


def test_cpu_shares_separate_the_measured_processes_from_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    before, after = CpuClock(wall=0.0, machine=100.0, own=1.0), CpuClock(wall=10.0, machine=116.0, own=1.5)
    # 20 core-seconds of capacity; 16 busy: 10 server, 1 wrk, 0.5 harness, 4.5 everyone else.
    assert cpu_shares(before, after, server=10.0, wrk=1.0) == {"server": 50.0, "wrk": 5.0, "others": 22.5}


def test_tweets_are_deterministic_and_varied() -> None:
    tweets = make_tweets(200, seed=1)
    assert tweets == make_tweets(200, seed=1) and tweets != make_tweets(200, seed=2)
    assert len(set(tweets)) > 150
    assert min(len(t.split()) for t in tweets) >= 5 and max(len(t.split()) for t in tweets) <= 60


def test_load_tweets_reads_the_validation_file_else_makes_tweets(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTIMENT140_DIR", str(tmp_path))
    tweets, source = load_tweets(50)
    assert source == "synthetic" and tweets == make_tweets(50)
    # A made-up file in the Kaggle format of validation_random_4683.csv.
    (tmp_path / "validation_random_4683.csv").write_text(
        '0,1,Mon May 11 03:17:40 UTC 2009,NO_QUERY,someone,"late again, thanks a lot"\n'
        "4,2,Mon May 11 03:18:03 UTC 2009,NO_QUERY,another,what a lovely crew\n", encoding="latin-1")
    tweets, source = load_tweets(50)
    assert tweets == ["late again, thanks a lot", "what a lovely crew"] and source.endswith("validation_random_4683.csv")


def test_bodies_are_one_json_per_line_and_batches_cover_the_tweets(tmp_path: Path) -> None:
    tweets = ["line\nbreak", "emoji 😀", *make_tweets(598)]
    path = write_bodies(tmp_path / "bodies.jsonl", ({"text": t} for t in tweets))
    assert [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()] == tweets
    windows = batch_windows(tweets, 256)
    assert len(windows) == 2 and all(len(w) == 256 for w in windows) and windows[1][0] == tweets[256]
    assert batch_windows(tweets[:10], 256)[0][:11] == tweets[:10] + tweets[:1]  # too few: wraps round


def _phases(tweets_per_s: float, p50: float) -> dict:
    phase = {"tweets_per_s": tweets_per_s, "latency_ms": {"p50": p50, "p95": p50, "p99": p50},
             "errors": {"status": 0}, "cpu_pct": {"server": 90.0, "wrk": 1.0, "others": 0.0}}
    return {LATENCY: phase, CONCURRENT: phase, BATCH: phase}


def _server(slug: str, model: str, tweets_per_s: float, p50: float) -> dict:
    return {"server": slug, "slug": slug, "model": model, "label": f"{slug} {model}", "ready_s": 1.0, "rss_mb": 300.0,
            "load_at_start": [0.1, 0.1, 0.1], "phases": _phases(tweets_per_s, p50)}


def _inprocess(best: float, p50: float) -> dict:
    return {"version": "4", "variant": "int8", "threads": 2, "batch1": {"p50_ms": p50, "p95_ms": p50, "p99_ms": p50},
            "rates": {"1": best / 2, "32": best}, "best_rate": best, "best_batch_size": 32,
            "cpu_pct": {"child": 99.0, "others": 0.5}}


def test_ratios_against_the_targets() -> None:
    inprocess = {"minilm": _inprocess(500.0, 2.0)}
    servers = [_server("service", "minilm", 450.0, 2.4), _server("seed", "", 50.0, 10.0),
               _server("mlflow", "", 200.0, 3.0), _server("single", "minilm", 300.0, 3.0)]
    ratios = compute_ratios(inprocess, servers)
    assert list(ratios) == list(TARGETS)
    assert {k: (r["value"], r["met"]) for k, r in ratios.items()} == {
        "throughput_c16_vs_inprocess": (0.9, True), "p50_c1_vs_inprocess": (1.2, True),
        "service_vs_seed_c16": (9.0, True), "service_vs_mlflow_c16": (2.25, None),
        "service_vs_single_c16": (1.5, None), "single_p50_c1_vs_inprocess": (1.5, None)}
    servers[0] = _server("service", "minilm", 400.0, 2.6)
    worse = compute_ratios(inprocess, servers[:1])
    assert [worse[k]["met"] for k in TARGETS] == [False, False, False, None, None, None]
    assert worse["service_vs_seed_c16"]["value"] is None  # no seed row: not met, never a division by zero


def _configuration(processes: int, threads: int, rates: dict[str, float], p50: float | None) -> dict:
    batch1 = {"p50_ms": p50, "p95_ms": p50, "p99_ms": p50} if p50 is not None else None
    best = max(rates, key=lambda size: rates[size])
    return {"processes": processes, "threads": threads, "model": "minilm", "version": "4", "variant": "int8",
            "batch1": batch1, "rates": rates, "best_rate": rates[best], "best_batch_size": int(best),
            "cpu_pct": {"child": 99.0, "others": 0.5}}


def test_the_limit_is_the_fastest_configuration_and_the_lowest_single_caller_latency() -> None:
    tried = [_configuration(1, 1, {"1": 480.0, "8": 470.0}, 2.1), _configuration(1, 2, {"1": 600.0, "8": 560.0}, 1.4),
             _configuration(2, 1, {"1": 950.0, "8": 900.0}, None), _configuration(2, 2, {"1": 700.0, "8": 820.0}, None)]
    limit = summarize_configurations(tried)
    assert (limit["processes"], limit["threads"], limit["best_rate"], limit["best_batch_size"]) == (2, 1, 950.0, 1)
    assert limit["batch1"]["p50_ms"] == 1.4 and limit["batch1_threads"] == 2
    assert configurations(2) == [(1, 1), (1, 2), (2, 1), (2, 2)] and configurations(1) == [(1, 1)]


def test_other_models_are_reported_not_judged() -> None:
    inprocess = {"minilm": _inprocess(500.0, 2.0), "tfidf-lr": _inprocess(2000.0, 0.5)}
    servers = [_server("service", "minilm", 450.0, 2.4), _server("service", "tfidf-lr", 800.0, 1.0)]
    ratios = compute_ratios(inprocess, servers, "tfidf-lr", targets=False)
    assert set(ratios) == {"throughput_c16_vs_inprocess", "p50_c1_vs_inprocess"}
    assert ratios["throughput_c16_vs_inprocess"]["value"] == 0.4 and ratios["p50_c1_vs_inprocess"]["met"] is None
    assert ratios["p50_c1_vs_inprocess"]["label"].startswith("tfidf-lr: ")


def test_markdown_report() -> None:
    inprocess = {"minilm": _inprocess(500.0, 2.0)}
    servers = [_server("service", "minilm", 450.0, 2.4)]
    report = {"quick": True, "started_at": "t0", "finished_at": "t1", "git_commit": "abc",
              "machine": {"cpus": 2, "platform": "x", "python": "3.11", "wrk": "wrk 4.1.0", "load_at_start": [1.0],
                          "load_at_end": [2.0]},
              "tweets": {"source": "synthetic", "count": 2000}, "ratios": compute_ratios(inprocess, servers),
              "also_ratios": {}, "inprocess": inprocess, "servers": servers,
              "skipped": [{"server": "mlflow models serve", "reason": "boom"}]}
    markdown = to_markdown(report)
    assert "figures are not measurements" in markdown
    assert "| 0.90 | 450 / 500 | >= 0.85 | **met** |" in markdown
    assert "| 1.20 | 2.40 / 2.00 | <= 1.25 | **met** |" in markdown
    assert "| – | 450 / – | >= 8.0 | **not met** |" in markdown
    assert "| minilm v4 (int8) | 1 x 2 (**limit**) | 2.00 / 2.00 / 2.00 | 250, 500 | 500 (32) | 99.0 | 0.5 |" in markdown
    assert "| 16 connections | 450 | 2.40 / 2.40 / 2.40 | 0 | 90.0 | 1.0 | 0.0 |" in markdown
    skipped = next(line for line in markdown.splitlines() if "skipped: boom" in line)
    header = next(line for line in markdown.splitlines() if line.startswith("| server |"))
    assert skipped.count("|") == header.count("|")


@pytest.mark.slow
def test_quick_benchmark_end_to_end(tmp_path: Path) -> None:
    """``python -m benchmarks.run --quick`` measures every server and writes the four ratios."""
    if shutil.which("wrk") is None:
        pytest.skip(f"wrk is not installed: {wrk.INSTALL_HINT}")
    done = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", "--output-dir", str(tmp_path)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "bench.json").read_text(encoding="utf-8"))
    assert report["quick"] is True and report["skipped"] == []
    assert set(report["ratios"]) == set(TARGETS)
    for key, ratio in report["ratios"].items():
        assert isinstance(ratio["value"], float) and ratio["value"] > 0, key
    assert {row["slug"] for row in report["servers"]} == {"service", "single", "seed", "mlflow"}
    assert len(report["inprocess"]["minilm"]["configurations"]) == len(configurations(available_cpus()))
    assert "## Targets" in (tmp_path / "bench.md").read_text(encoding="utf-8")
