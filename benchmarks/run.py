"""``make bench``: this service beside a seed-style server (and ``mlflow models serve`` when available).

One run, one machine, loopback only, each server measured alone (the others stopped), every phase bounded
by a request count and a time limit:

1. ready time (process start → first 200 on the readiness route) and RSS after the load;
2. single-tweet latency p50/p95/p99 at concurrency 1;
3. single-tweet throughput (tweets/s) at concurrency 16;
4. batch-endpoint throughput (batches of 256 tweets, concurrency 1).

Writes ``results/bench.json`` and ``results/bench.md`` (server logs under ``results/tmp/``). The load
generator shares the machine's cores with the server, the same way for every server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.loadgen import Connection, load
from benchmarks.servers import HOST, PROJECT_ROOT, RunningServer, ServerSpec, get, machine_busy_seconds
from benchmarks.tweets import make_tweets

logger = logging.getLogger("benchmarks")

REGISTERED_MODEL = "tweet-sentiment"
CHAMPION_ALIAS = "champion"
TARGETS = {"p50_ms": 5.0, "tweets_per_s_c16": 500.0, "speedup_vs_seed": 5.0, "ready_s": 5.0, "rss_mb": 500.0}


@dataclass(frozen=True)
class Budget:
    """Bounds of each phase: (most requests, most seconds)."""

    warmup: int
    latency: tuple[int, float]
    concurrent: tuple[int, float]
    batch: tuple[int, float]


FULL = Budget(warmup=30, latency=(500, 15.0), concurrent=(5000, 12.0), batch=(20, 12.0))
QUICK = Budget(warmup=10, latency=(100, 4.0), concurrent=(600, 4.0), batch=(3, 4.0))


def service_spec(exports_dir: Path | None) -> ServerSpec:
    env = {"EXPORTS_DIR": str(exports_dir)} if exports_dir else {}
    return ServerSpec(
        name="this service",
        slug="service",
        command=["{python}", "-m", "uvicorn", "api.main:create_app", "--factory", "--host", HOST, "--port", "{port}",
                 "--no-access-log", "--log-level", "warning"],
        ready_path="/readyz",
        single=("/v1/predict", lambda text: {"text": text}),
        batch=("/v1/predict/batch", lambda texts: {"texts": texts}),
        env=env,
    )


def seed_spec() -> ServerSpec:
    return ServerSpec(
        name="seed-style server",
        slug="seed",
        command=["{python}", "-m", "uvicorn", "benchmarks.seed_server:app", "--host", HOST, "--port", "{port}",
                 "--no-access-log", "--log-level", "warning"],
        ready_path="/",
        single=("/predict", lambda text: {"text": text}),
        batch=("/predict_batch", lambda texts: {"texts": texts}),
    )


def _dataframe(texts: list[str]) -> dict:
    return {"dataframe_split": {"columns": ["text"], "data": [[t] for t in texts]}}


def mlflow_spec() -> tuple[ServerSpec | None, str]:
    """``mlflow models serve`` of the registered champion, or why it cannot run here."""
    executable = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
    if not Path(executable).exists():
        return None, "the mlflow CLI is not installed"
    uri = os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}")
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return None, f"no MLflow store at {uri}"
    try:
        import mlflow

        mlflow.MlflowClient(tracking_uri=uri).get_model_version_by_alias(REGISTERED_MODEL, CHAMPION_ALIAS)
    except Exception as error:  # any failure means: nothing to serve
        return None, f"no registered model {REGISTERED_MODEL}@{CHAMPION_ALIAS} ({type(error).__name__})"
    return ServerSpec(
        name="mlflow models serve",
        slug="mlflow",
        command=[executable, "models", "serve", "-m", f"models:/{REGISTERED_MODEL}@{CHAMPION_ALIAS}",
                 "--env-manager", "local", "-h", HOST, "-p", "{port}", "-w", "1"],
        ready_path="/ping",
        # A pyfunc with a text column signature takes a dataframe; "inputs" is the fallback (see bench_server).
        single=("/invocations", lambda text: _dataframe([text])),
        batch=("/invocations", _dataframe),
        # mlflow execs `uvicorn` by name: the interpreter's own bin folder must come first on PATH.
        env={"MLFLOW_TRACKING_URI": uri, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"},
    ), ""


async def measure(server: RunningServer, budget: Budget, tweets: list[str], batch_size: int, concurrency: int,
                  model: str | None = None) -> dict[str, Any]:
    """Run the phases against one started server (optionally naming a model in the body)."""
    single_path, single = server.spec.single
    batch_path, batch = server.spec.batch

    def one(number: int) -> tuple[object, int]:
        payload = single(tweets[number % len(tweets)])
        return (payload | {"model": model} if model else payload), 1

    def many(number: int) -> tuple[object, int]:
        start = (number * batch_size) % (len(tweets) - batch_size)
        payload = batch(tweets[start:start + batch_size])
        return (payload | {"model": model} if model else payload), batch_size

    async with Connection(HOST, server.port) as connection:
        for number in range(budget.warmup):
            await connection.post_json(single_path, one(number)[0])
    latency = await load(HOST, server.port, single_path, one, concurrency=1,
                         max_requests=budget.latency[0], max_seconds=budget.latency[1])
    concurrent = await load(HOST, server.port, single_path, one, concurrency=concurrency,
                            max_requests=budget.concurrent[0], max_seconds=budget.concurrent[1])
    batches = await load(HOST, server.port, batch_path, many, concurrency=1,
                         max_requests=budget.batch[0], max_seconds=budget.batch[1])
    return {"latency_c1": latency.summary(), f"single_c{concurrency}": concurrent.summary(),
            f"batch_{batch_size}": batches.summary()}


def bench_server(spec: ServerSpec, args: argparse.Namespace, budget: Budget, tweets: list[str]) -> list[dict]:
    """Start ``spec``, measure it (and, for this service, every other model it serves), stop it."""
    logger.info("starting %s", spec.name)
    with RunningServer(spec, args.output_dir / "tmp", args.ready_timeout) as server:
        rows = []
        models: list[tuple[str | None, str]] = [(None, "")]
        if spec.name == "this service":
            listing = json.loads(get(server.port, "/v1/models")[1])
            served = {m["name"] for m in listing["models"]}
            models = [(None, listing["default"])] + [(name, name) for name in args.also if name in served]
        elif spec.name.startswith("mlflow"):
            spec = _mlflow_payloads(server, spec)
            server.spec = spec
            models = [(None, f"{REGISTERED_MODEL}@{CHAMPION_ALIAS} (pyfunc)")]
        elif spec.name.startswith("seed"):
            info = json.loads(get(server.port, "/")[1])
            models = [(None, f"{info['model']}, {info['tokenizer']}")]
        for model, label in models:
            logger.info("measuring %s %s", spec.name, label)
            before = (time.perf_counter(), machine_busy_seconds(), server.cpu_seconds(), time.process_time())
            result = asyncio.run(measure(server, budget, tweets, args.batch_size, args.concurrency, model))
            rows.append({"server": spec.name, "model": label, "ready_s": round(server.ready_seconds, 2),
                         "rss_mb": server.rss_mb(), "others_cpu_pct": _others_cpu_pct(server, before), **result})
        return rows


def _others_cpu_pct(server: RunningServer, before: tuple[float, float, float, float]) -> float:
    """Share of the machine's CPU used by other processes during a measurement (they slow the server down)."""
    wall, busy, served, own = before
    others = (machine_busy_seconds() - busy) - (server.cpu_seconds() - served) - (time.process_time() - own)
    return round(max(others, 0.0) / ((time.perf_counter() - wall) * (os.cpu_count() or 1)) * 100, 1)


def _mlflow_payloads(server: RunningServer, spec: ServerSpec) -> ServerSpec:
    """Keep the dataframe payload if the served model accepts it, else switch to ``{"inputs": [...]}``."""

    async def accepts(payload: object) -> bool:
        async with Connection(HOST, server.port) as connection:
            try:
                await connection.post_json("/invocations", payload)
            except Exception:
                return False
            return True

    if asyncio.run(accepts(_dataframe(["hello"]))):
        return spec
    if asyncio.run(accepts({"inputs": ["hello"]})):
        return replace(spec, single=("/invocations", lambda text: {"inputs": [text]}),
                       batch=("/invocations", lambda texts: {"inputs": texts}))
    raise RuntimeError("the served MLflow model accepted neither a text dataframe nor {'inputs': [...]}")


def check_targets(rows: list[dict], concurrency: int) -> list[dict]:
    """The issue's targets, each with the measured value and whether it was met."""
    ours = next((r for r in rows if r["server"] == "this service"), None)
    seed = next((r for r in rows if r["server"].startswith("seed")), None)
    if ours is None:
        return []
    key = f"single_c{concurrency}"
    checks = [
        ("p50 single-tweet latency, concurrency 1 (ms)", ours["latency_c1"].get("p50_ms"), TARGETS["p50_ms"], "<="),
        (f"tweets/s at concurrency {concurrency}", ours[key]["tweets_per_s"], TARGETS["tweets_per_s_c16"], ">="),
        ("ready after start (s)", ours["ready_s"], TARGETS["ready_s"], "<="),
        ("RSS (MB)", ours["rss_mb"], TARGETS["rss_mb"], "<="),
    ]
    if seed is not None and seed[key]["tweets_per_s"]:
        speedup = round(ours[key]["tweets_per_s"] / seed[key]["tweets_per_s"], 1)
        checks.append((f"throughput vs seed-style server at concurrency {concurrency} (×)", speedup,
                       TARGETS["speedup_vs_seed"], ">="))
    return [{"target": name, "value": value, "bound": f"{op} {bound}",
             "met": value is not None and (value <= bound if op == "<=" else value >= bound)}
            for name, value, bound, op in checks]


def to_markdown(report: dict) -> str:
    """The results table and the targets, as markdown."""
    c, b = report["settings"]["concurrency"], report["settings"]["batch_size"]
    lines = [f"| server | model | ready (s) | RSS (MB) | p50 / p95 / p99 ms (c=1) | tweets/s (c={c}) "
             f"| p50 / p99 ms (c={c}) | batch-{b} tweets/s | others' CPU % |", "|---|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        lat, con, bat = r["latency_c1"], r[f"single_c{c}"], r[f"batch_{b}"]
        lines.append(f"| {r['server']} | {r['model']} | {r['ready_s']} | {r['rss_mb']} "
                     f"| {lat.get('p50_ms')} / {lat.get('p95_ms')} / {lat.get('p99_ms')} | {con['tweets_per_s']} "
                     f"| {con.get('p50_ms')} / {con.get('p99_ms')} | {bat['tweets_per_s']} "
                     f"| {r.get('others_cpu_pct', '')} |")
    for skipped in report["skipped"]:
        lines.append(f"| {skipped['server']} | skipped: {skipped['reason']} | | | | | | | |")
    lines += ["", "| target | measured | bound | met |", "|---|---|---|---|"]
    lines += [f"| {t['target']} | {t['value']} | {t['bound']} | {'yes' if t['met'] else 'no'} |"
              for t in report["targets"]]
    machine = report["machine"]
    lines += ["", f"{machine['cpus']} CPUs, {machine['platform']}, Python {machine['python']}; load average "
                  f"{machine['load_before']} before, {machine['load_after']} after; {report['started_at']}. "
                  "Others' CPU %: share of the machine used by other processes during the measurement (the load "
                  "generator runs on the same cores and is not counted)."]
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds per phase (smoke run)")
    parser.add_argument("--exports-dir", type=Path, help="exports served by this service (default: EXPORTS_DIR)")
    parser.add_argument("--output-dir", type=Path, default=PROJECT_ROOT / "results")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--ready-timeout", type=float, default=180.0)
    parser.add_argument("--also", action="append", default=[], metavar="MODEL",
                        help="also measure this service with another served model (repeatable), e.g. tfidf-lr")
    parser.add_argument("--skip", action="append", default=[], choices=["seed", "mlflow"])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    budget = QUICK if args.quick else FULL
    tweets = make_tweets(2000)
    specs: list[ServerSpec] = [service_spec(args.exports_dir)]
    skipped: list[dict] = []
    if "seed" not in args.skip:
        specs.append(seed_spec())
    if "mlflow" not in args.skip:
        spec, reason = mlflow_spec()
        if spec is None:
            logger.info("skipping mlflow models serve: %s", reason)
            skipped.append({"server": "mlflow models serve", "reason": reason})
        else:
            specs.append(spec)
    load_before = [round(x, 2) for x in os.getloadavg()]
    results: list[dict] = []
    for spec in specs:
        try:
            results.extend(bench_server(spec, args, budget, tweets))
        except Exception as error:  # one server failing must not lose the others' figures
            logger.exception("%s failed", spec.name)
            skipped.append({"server": spec.name, "reason": f"{type(error).__name__}: {error}"[:200]})
    report = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_before": load_before, "load_after": [round(x, 2) for x in os.getloadavg()]},
        "settings": {"quick": args.quick, "concurrency": args.concurrency, "batch_size": args.batch_size,
                     "budget": budget.__dict__},
        "results": results, "skipped": skipped, "targets": check_targets(results, args.concurrency),
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "bench.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    markdown = to_markdown(report)
    (args.output_dir / "bench.md").write_text(markdown, encoding="utf-8")
    sys.stdout.write(markdown)
    return 0 if results else 1


if __name__ == "__main__":
    started = time.perf_counter()
    code = main()
    logger.info("benchmark done in %.0f s", time.perf_counter() - started)
    sys.exit(code)
