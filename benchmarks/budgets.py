"""A maximum-size batch to each model while 8 connections send single tweets to another: answered within budget?

The lean API serves ``minilm`` and ``mpnet`` from the committed exports with its shipped settings (each model's
queue bound and deadline measured at load: ``sentiment.budgets``). For each model in turn, wrk keeps 8 connections
of single tweets on the other model, and after a second this script POSTs one batch of ``MAX_BATCH_TEXTS`` tweets
to the first, several times. Reported: the batch's status and latency, the model's deadline (from ``/metrics``) and
the margin (deadline ÷ latency, the target is ≥ 2), and what the 8 connections got meanwhile (answers per second,
503s). Run it on an idle machine: the load is recorded.

    python -m benchmarks.budgets [--seconds 20] [--batches 3]     # make bench-budgets

Writes ``results/budgets.json`` and ``results/budgets.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from benchmarks import wrk
from benchmarks.run import service_spec, write_bodies
from benchmarks.servers import RunningServer
from benchmarks.tweets import load_tweets
from sentiment.settings import MAX_BATCH_TEXTS
from training import config

RESULTS = config.PROJECT_ROOT / "results"
PAIRS = (("mpnet", "minilm"), ("minilm", "mpnet"))  # (model sent the big batch, model under 8 connections)
CONNECTIONS = 8


def metric(text: str, name: str, model: str) -> float:
    match = re.search(rf'^{name}{{model="{re.escape(model)}"}} ([0-9.e+-]+)$', text, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"/metrics has no {name} for {model}")
    return float(match.group(1))


def one_pair(server: RunningServer, big: str, other: str, tweets: list[str], seconds: int, batches: int,
             tmp: Path) -> dict:
    base = f"http://127.0.0.1:{server.port}"
    scraped = httpx.get(f"{base}/metrics").text
    deadline = metric(scraped, "model_deadline_seconds", big)
    queue = metric(scraped, "model_queue_limit_texts", big)
    bodies = write_bodies(tmp / f"single-{other}.jsonl", ({"text": t, "model": other} for t in tweets))
    load: dict = {}
    runner = threading.Thread(target=lambda: load.update(run=wrk.run(
        f"{base}/v1/predict", bodies, connections=CONNECTIONS, seconds=seconds)))
    runner.start()
    time.sleep(1.0)
    answers = []
    with httpx.Client(timeout=deadline + 30) as client:
        for index in range(batches):
            texts = [tweets[(index * MAX_BATCH_TEXTS + i) % len(tweets)] for i in range(MAX_BATCH_TEXTS)]
            started = time.perf_counter()
            response = client.post(f"{base}/v1/predict/batch", json={"texts": texts, "model": big})
            answers.append({"status": response.status_code, "seconds": round(time.perf_counter() - started, 3),
                            "body": response.text[:200] if response.status_code != 200 else ""})
    runner.join()
    result = load["run"].result
    worst = max(a["seconds"] for a in answers)
    return {"batch_model": big, "loaded_model": other, "deadline_s": deadline, "queue_texts": queue,
            "batches": answers, "all_ok": all(a["status"] == 200 for a in answers),
            "median_s": statistics.median(a["seconds"] for a in answers), "worst_s": worst,
            "margin": round(deadline / worst, 2),
            "others": {"connections": CONNECTIONS, "requests_per_s": result["requests_per_s"],
                       "p50_ms": result["latency_ms"]["p50"], "errors": result["errors"]}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20, help="how long the 8 connections run per pair")
    parser.add_argument("--batches", type=int, default=3, help="maximum-size batches sent per pair, one after another")
    args = parser.parse_args(argv)
    tweets, source = load_tweets()
    spec = service_spec(None)
    spec.env["ENABLED_MODELS"] = "minilm,mpnet"
    report = {"created_at": datetime.now(UTC).isoformat(timespec="seconds"), "tweets": source,
              "load_before": [round(x, 2) for x in os.getloadavg()], "pairs": []}
    with tempfile.TemporaryDirectory() as tmp, RunningServer(spec, Path(tmp) / "logs", ready_timeout=180) as server:
        for big, other in PAIRS:
            report["pairs"].append(one_pair(server, big, other, tweets, args.seconds, args.batches, Path(tmp)))
    report["load_after"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "budgets.json").write_text(json.dumps(report, indent=1) + "\n")
    (RESULTS / "budgets.md").write_text(markdown(report))
    sys.stdout.write(markdown(report))


def markdown(report: dict) -> str:
    lines = ["# A maximum-size batch beside another model's traffic", "",
             f"`make bench-budgets`, {report['created_at']}: the lean API with its shipped settings serving minilm and "
             f"mpnet; {CONNECTIONS} connections of single tweets ({report['tweets']}) to one model while batches of "
             f"{MAX_BATCH_TEXTS} go to the other, one after another. Load {report['load_before']} before, "
             f"{report['load_after']} after.", "",
             "| batch to | queue bound (texts) | deadline | batches answered 200 | median | slowest | margin (deadline ÷ "
             "slowest) | 8 connections to | their answers/s | their p50 | their errors |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for pair in report["pairs"]:
        ok = sum(a["status"] == 200 for a in pair["batches"])
        lines.append(f"| {pair['batch_model']} | {pair['queue_texts']:.0f} | {pair['deadline_s']:.1f} s | "
                     f"{ok} of {len(pair['batches'])} | {pair['median_s']:.2f} s | {pair['worst_s']:.2f} s | "
                     f"**{pair['margin']:.1f}×** | {pair['loaded_model']} | {pair['others']['requests_per_s']:.0f} | "
                     f"{pair['others']['p50_ms']:.1f} ms | {sum(pair['others']['errors'].values())} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
