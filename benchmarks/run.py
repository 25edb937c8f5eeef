"""``make bench``: the serving targets, measured as ratios within one run on one machine.

Absolute figures on a shared 2-core machine swing by 2× from hour to hour, so every target compares two
things measured minutes apart in the same run:

1. the in-process limit: the ``minilm`` export opened by the project's own predictor as the service opens it,
   in child processes (no HTTP, nothing else sharing their GIL): the best tweets/s over every configuration of
   (one process or one per core) x (one thread or one per core) x batch sizes 1–32, the processes measuring
   side by side, and the lowest batch-1 p50 of a single caller (``benchmarks/inprocess.py``);
2. the lean API as ``make serve`` and ``deploy/docker/Dockerfile.cpu`` run it (``python -m api.serve``: one worker
   process per CPU, access log off, shipped settings: the API's environment variables removed), requests naming
   ``minilm``; then the same service in one process with ``ONNX_THREADS`` = the CPUs, the layout of before;
3. the seed-style server (``benchmarks/seed_server.py``);
4. ``mlflow models serve`` of the same export, logged by the training code into a throw-away sqlite store.

Each server runs alone on 127.0.0.1 and is loaded by Debian's ``wrk`` (``benchmarks/wrk.py``, one thread,
keep-alive connections) cycling over JSON bodies made from many tweets: single tweets at 1 and at 16
connections, then the batch route with 256 tweets per request. Every phase records the CPU share of the
server, of wrk and of all other processes (which slow the measurement down), beside the ready time, RSS and
load average of each server.

Writes ``results/bench.json`` and ``results/bench.md`` (``--quick``: ``results/tmp/``, so that a smoke run
never replaces measured figures); server logs go to ``results/tmp/``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import wrk
from benchmarks.servers import HOST, PROJECT_ROOT, CpuClock, RunningServer, ServerSpec, cpu_shares, get
from benchmarks.tweets import load_tweets
from sentiment.budgets import available_cpus

logger = logging.getLogger("benchmarks")

MODEL = "minilm"
CONNECTIONS = 16
BATCH_SIZE = 256
SERVICE, SINGLE, SEED, MLFLOW = "service", "single", "seed", "mlflow"
# Phase names, as keys of each server's results.
LATENCY, CONCURRENT, BATCH = "single_c1", f"single_c{CONNECTIONS}", f"batch{BATCH_SIZE}_c1"

# The hardening issue's serving targets: key → (what is divided, comparison, bound); None: report only.
TARGETS: dict[str, tuple[str, str | None, float | None]] = {
    "throughput_c16_vs_inprocess": (
        f"single-tweet tweets/s at {CONNECTIONS} connections / best in-process configuration", ">=", 0.85),
    "p50_c1_vs_inprocess": ("p50 at concurrency 1 / in-process batch-1 p50", "<=", 1.25),
    "service_vs_seed_c16": (f"service / seed-style server, tweets/s at {CONNECTIONS} connections", ">=", 8.0),
    "service_vs_mlflow_c16": (f"service / mlflow models serve, tweets/s at {CONNECTIONS} connections", None, None),
    "service_vs_single_c16": (f"service / the same service in one process, tweets/s at {CONNECTIONS} connections",
                              None, None),
    "single_p50_c1_vs_inprocess": ("one process: p50 at concurrency 1 / in-process batch-1 p50", None, None),
}


@dataclass(frozen=True)
class Budget:
    """Seconds given to each phase."""

    warmup: int
    latency: int
    concurrent: int
    batch: int
    inprocess_latency: float
    inprocess_rate: float  # for each batch size


FULL = Budget(warmup=3, latency=15, concurrent=15, batch=10, inprocess_latency=10.0, inprocess_rate=5.0)
QUICK = Budget(warmup=1, latency=2, concurrent=2, batch=2, inprocess_latency=2.0, inprocess_rate=0.5)


def _api_settings_variables() -> tuple[str, ...]:
    """The environment variables the API and its launcher read (``ENABLED_MODELS``, ``ONNX_THREADS``...)."""
    from api.serve import WORKERS_VARIABLE
    from api.settings import Settings
    from sentiment.metrics import MULTIPROC_DIR_VARIABLE

    return (*(name.upper() for name in Settings.model_fields), WORKERS_VARIABLE, MULTIPROC_DIR_VARIABLE)


def service_spec(exports_dir: Path | None, single_process: bool = False) -> ServerSpec:
    """The lean API with deploy/docker/Dockerfile.cpu's command and the shipped settings (only ``EXPORTS_DIR`` if
    given); ``single_process``: one worker with ``ONNX_THREADS`` = the CPUs, the server of before, for comparison."""

    def single(text: str, model: str | None) -> dict:
        return {"text": text} | ({"model": model} if model else {})

    def batch(texts: list[str], model: str | None) -> dict:
        return {"texts": texts} | ({"model": model} if model else {})

    env = {"EXPORTS_DIR": str(exports_dir)} if exports_dir else {}
    if single_process:
        env |= {"WEB_CONCURRENCY": "1", "ONNX_THREADS": str(available_cpus())}
    return ServerSpec(
        name="this service, one process" if single_process else "this service",
        slug=SINGLE if single_process else SERVICE,
        # deploy/docker/Dockerfile.cpu: `python -m api.serve api.main:create_app --factory`, UVICORN_ACCESS_LOG=false.
        command=["{python}", "-m", "api.serve", "api.main:create_app", "--factory", "--host", HOST, "--port", "{port}",
                 "--no-access-log"],
        ready_path="/readyz",
        single=("/v1/predict", single),
        batch=("/v1/predict/batch", batch),
        env=env,
        unset=_api_settings_variables(),
    )


def seed_spec() -> ServerSpec:
    return ServerSpec(
        name="seed-style server",
        slug=SEED,
        command=["{python}", "-m", "uvicorn", "benchmarks.seed_server:app", "--host", HOST, "--port", "{port}",
                 "--no-access-log", "--log-level", "warning"],
        ready_path="/",
        single=("/predict", lambda text, _model: {"text": text}),
        batch=("/predict_batch", lambda texts, _model: {"texts": texts}),
    )


def _dataframe(texts: list[str]) -> dict:
    return {"dataframe_split": {"columns": ["text"], "data": [[t] for t in texts]}}


def mlflow_spec(store: dict[str, str]) -> ServerSpec:
    """``mlflow models serve`` of the model logged by :mod:`benchmarks.mlflow_store`."""
    executable = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
    return ServerSpec(
        name="mlflow models serve",
        slug=MLFLOW,
        command=[executable, "models", "serve", "-m", store["model_uri"], "--env-manager", "local",
                 "-h", HOST, "-p", "{port}", "-w", "1"],
        ready_path="/ping",
        single=("/invocations", lambda text, _model: _dataframe([text])),
        batch=("/invocations", lambda texts, _model: _dataframe(texts)),
        # mlflow execs `uvicorn` by name: the interpreter's own bin folder must come first on PATH.
        env={"MLFLOW_TRACKING_URI": store["tracking_uri"],
             "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"},
    )


def _child(module: str, *args: str, timeout: float) -> tuple[dict, float, dict[str, float]]:
    """Run ``python -m module args`` alone; return its JSON answer, wall time and CPU shares."""
    before, children = CpuClock.read(), resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False, env=_child_env())
    after, children_after = CpuClock.read(), resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{module} exited with {done.returncode}: {done.stderr[-800:]}")
    used = (children_after.ru_utime - children.ru_utime) + (children_after.ru_stime - children.ru_stime)
    return json.loads(done.stdout.strip().splitlines()[-1]), after.wall - before.wall, cpu_shares(
        before, after, child=used)


def _child_env() -> dict[str, str]:
    # The same shipped settings as the served API, so that the predictor gets the same threads.
    env = {k: v for k, v in os.environ.items() if k not in _api_settings_variables()}
    return env | {"PYTHONPATH": str(PROJECT_ROOT), "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}


def export_folder(exports_dir: Path, name: str) -> Path:
    """The folder of the export whose metadata names ``name``."""
    from sentiment.exports import read_metadata
    from sentiment.predictor import discover

    for folder in discover(exports_dir):
        if read_metadata(folder)["name"] == name:
            return folder
    raise FileNotFoundError(f"no export named {name!r} in {exports_dir}")


def configurations(cpus: int) -> list[tuple[int, int]]:
    """(processes, threads each) tried for the in-process limit: one caller or one per core, each with one thread
    or one per core."""
    counts = sorted({1, max(1, cpus)})
    return [(processes, threads) for processes in counts for threads in counts]


def bench_configuration(folder: Path, tweets_file: Path, budget: Budget, processes: int, threads: int,
                        tmp: Path) -> dict[str, Any]:
    """``processes`` copies of ``benchmarks.inprocess`` measuring at once; their rates add up.

    Only a single caller measures batch-1 latency: with two, each would slow the other's down.
    """
    logger.info("in-process: %s, %d process(es) x %d thread(s)", folder.name, processes, threads)
    barrier = Path(tempfile.mkdtemp(prefix="barrier-", dir=tmp))
    latency = budget.inprocess_latency if processes == 1 else 0.0
    command = [sys.executable, "-m", "benchmarks.inprocess", str(folder), str(tweets_file), "--threads", str(threads),
               "--latency-seconds", str(latency), "--rate-seconds", str(budget.inprocess_rate),
               "--barrier", str(barrier), "--copies", str(processes)]
    before, children = CpuClock.read(), resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        copies = [subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env=_child_env()) for _ in range(processes)]
        answers = []
        for copy in copies:
            out, err = copy.communicate(timeout=900)
            if copy.returncode != 0:
                raise RuntimeError(f"benchmarks.inprocess exited with {copy.returncode}: {err[-800:]}")
            answers.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        shutil.rmtree(barrier, ignore_errors=True)
    after, children_after = CpuClock.read(), resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (children_after.ru_utime - children.ru_utime) + (children_after.ru_stime - children.ru_stime)
    rates = {size: round(sum(a["rates"][size] for a in answers), 1) for size in answers[0]["rates"]}
    best = max(rates, key=lambda size: rates[size])
    first = answers[0]
    return {"processes": processes, "threads": threads, "model": first["model"], "version": first["version"],
            "variant": first["variant"], "batch1": first["batch1"], "rates": rates, "best_rate": rates[best],
            "best_batch_size": int(best), "load_s": max(a["load_s"] for a in answers),
            "wall_s": round(after.wall - before.wall, 1), "cpu_pct": cpu_shares(before, after, child=used)}


def bench_inprocess(folder: Path, tweets_file: Path, budget: Budget, tmp: Path,
                    cpus: int | None = None) -> dict[str, Any]:
    """The in-process limit of an export: the best of (processes x threads x batch size) on this machine.

    ``best_rate`` is the fastest configuration's total; ``batch1`` is the lowest batch-1 p50 of a single caller
    (over its thread counts), the latency no server of this machine can beat.
    """
    tried = [bench_configuration(folder, tweets_file, budget, processes, threads, tmp)
             for processes, threads in configurations(cpus or available_cpus())]
    return summarize_configurations(tried) | {"export": str(folder)}


def summarize_configurations(tried: list[dict[str, Any]]) -> dict[str, Any]:
    """The limit over measured configurations (see :func:`bench_inprocess`)."""
    best = max(tried, key=lambda c: c["best_rate"])
    fastest = min((c for c in tried if c["batch1"]), key=lambda c: c["batch1"]["p50_ms"])
    return {"model": best["model"], "version": best["version"], "variant": best["variant"],
            "processes": best["processes"], "threads": best["threads"], "rates": best["rates"],
            "best_rate": best["best_rate"], "best_batch_size": best["best_batch_size"],
            "batch1": fastest["batch1"], "batch1_threads": fastest["threads"], "cpu_pct": best["cpu_pct"],
            "configurations": tried}


def write_bodies(path: Path, bodies: Iterable[object]) -> Path:
    """A JSON-lines file of request bodies for ``bodies.lua`` (JSON escapes newlines, so one body per line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for body in bodies:
            handle.write(json.dumps(body, ensure_ascii=False) + "\n")
    return path


def batch_windows(tweets: list[str], size: int, most: int = 40) -> list[list[str]]:
    """Consecutive windows of ``size`` tweets (wrapping round), each tweet in one window when there are enough."""
    count = max(1, min(most, len(tweets) // size))
    return [[tweets[(start * size + i) % len(tweets)] for i in range(size)] for start in range(count)]


def phase(server: RunningServer, route: str, bodies: Path, *, per_request: int, connections: int, seconds: int,
          timeout_s: int) -> dict[str, Any]:
    """One wrk run against a started server, with the CPU shares during it."""
    before, served = CpuClock.read(), server.cpu_seconds()
    run = wrk.run(f"http://{HOST}:{server.port}{route}", bodies, connections=connections, seconds=seconds,
                  timeout_s=timeout_s)
    shares = cpu_shares(before, CpuClock.read(), server=server.cpu_seconds() - served, wrk=run.cpu_seconds)
    return summarize(run.result, per_request=per_request, connections=connections) | {"route": route,
                                                                                    "cpu_pct": shares}


def summarize(result: dict[str, Any], *, per_request: int, connections: int) -> dict[str, Any]:
    """Add tweets/s to a parsed wrk result; answers that were not 2xx count as no tweets.

    A run in which no request completed (a slow batch in a short ``--quick`` phase) has no rate and no
    latency: None, not a misleading 0.
    """
    errors = result["errors"]
    good = result["requests"] - errors["status"]
    if any(errors.values()):
        logger.warning("wrk saw errors: %s", errors)
    if result["requests"] == 0:
        return result | {"connections": connections, "tweets_per_request": per_request, "tweets_per_s": None,
                         "latency_ms": {}}
    return result | {"connections": connections, "tweets_per_request": per_request,
                     "tweets_per_s": round(good * per_request / result["seconds"], 1)}


def bench_server(spec: ServerSpec, models: list[str | None], tweets: list[str], budget: Budget,
                 tmp: Path, ready_timeout: float, describe: Callable[[RunningServer, str | None], str]) -> list[dict]:
    """Start ``spec``, run the three phases for each model (None: the server's only one), stop it."""
    logger.info("starting %s", spec.name)
    rows = []
    with RunningServer(spec, tmp, ready_timeout) as server:
        single_route, single = spec.single
        batch_route, batch = spec.batch
        for model in models:
            tag = f"{spec.slug}-{model or 'default'}"
            singles = write_bodies(tmp / f"bodies-{tag}-single.jsonl", (single(t, model) for t in tweets))
            batches = write_bodies(tmp / f"bodies-{tag}-batch.jsonl",
                                   (batch(w, model) for w in batch_windows(tweets, BATCH_SIZE)))
            label = describe(server, model)
            logger.info("measuring %s, %s", spec.name, label)
            # Warm-up at full concurrency (discarded): first requests pay for lazy imports and allocations.
            wrk.run(f"http://{HOST}:{server.port}{single_route}", singles, connections=CONNECTIONS,
                    seconds=budget.warmup, timeout_s=30)
            phases = {
                LATENCY: phase(server, single_route, singles, per_request=1, connections=1,
                               seconds=budget.latency, timeout_s=10),
                CONCURRENT: phase(server, single_route, singles, per_request=1, connections=CONNECTIONS,
                                  seconds=budget.concurrent, timeout_s=10),
                BATCH: phase(server, batch_route, batches, per_request=BATCH_SIZE, connections=1,
                             seconds=budget.batch, timeout_s=60),
            }
            rows.append({"server": spec.name, "slug": spec.slug, "model": model or "", "label": label,
                         "ready_s": round(server.ready_seconds, 2), "load_at_start": server.load_at_start,
                         "phases": phases})
        rss = server.rss_mb()  # after the load: what the server grew to while serving
        for row in rows:
            row["rss_mb"] = rss
    return rows


def _describe_service(server: RunningServer, model: str | None) -> str:
    listing = json.loads(get(server.port, "/v1/models")[1])
    info = next((m for m in listing["models"] if m["name"] == model), None)
    if info is None:
        raise RuntimeError(f"the service does not serve {model!r}: {[m['name'] for m in listing['models']]}")
    return f"{model} v{info['version']} ({info['variant']}), {len(listing['models'])} models loaded"


def _describe_seed(server: RunningServer, _model: str | None) -> str:
    info = json.loads(get(server.port, "/")[1])
    return f"{info['model']}, {info['tokenizer']}, torch fp32"


def _ratio(label: str, numerator: float | None, denominator: float | None, op: str | None,
           bound: float | None) -> dict[str, Any]:
    value = round(numerator / denominator, 3) if numerator is not None and denominator else None
    met = None if op is None else value is not None and (value >= bound if op == ">=" else value <= bound)
    return {"label": label, "value": value, "numerator": numerator, "denominator": denominator,
            "target": f"{op} {bound}" if op else "report only", "met": met}


def _row(servers: list[dict], slug: str, model: str | None = None) -> dict | None:
    return next((r for r in servers if r["slug"] == slug and (model is None or r["model"] == model)), None)


def _phase_value(row: dict | None, name: str, key: str) -> float | None:
    if row is None:
        return None
    value = row["phases"][name]
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def compute_ratios(inprocess: dict[str, dict], servers: list[dict], model: str = MODEL,
                   targets: bool = True) -> dict[str, dict]:
    """The four ratios of the issue for ``model`` (the seed and MLflow ones only for the main model).

    Args:
        inprocess: model → result of ``benchmarks.inprocess``.
        servers: the rows of :func:`bench_server`.
        model: the model the service was asked for.
        targets: False for another model (``--also``): its ratios are reported, not judged.

    Returns:
        key of :data:`TARGETS` → ``label``, ``value``, ``numerator``, ``denominator``, ``target``, ``met``
        (None for report only; False when a side is missing).
    """
    limit = inprocess.get(model, {})
    ours = _row(servers, SERVICE, model)
    ours_c16 = _phase_value(ours, CONCURRENT, "tweets_per_s")
    values = {
        "throughput_c16_vs_inprocess": (ours_c16, limit.get("best_rate")),
        "p50_c1_vs_inprocess": (_phase_value(ours, LATENCY, "latency_ms.p50"), limit.get("batch1", {}).get("p50_ms")),
    }
    if model == MODEL:
        values["service_vs_seed_c16"] = (ours_c16, _phase_value(_row(servers, SEED), CONCURRENT, "tweets_per_s"))
        values["service_vs_mlflow_c16"] = (ours_c16, _phase_value(_row(servers, MLFLOW), CONCURRENT, "tweets_per_s"))
        single = _row(servers, SINGLE, model)
        values["service_vs_single_c16"] = (ours_c16, _phase_value(single, CONCURRENT, "tweets_per_s"))
        values["single_p50_c1_vs_inprocess"] = (_phase_value(single, LATENCY, "latency_ms.p50"),
                                                limit.get("batch1", {}).get("p50_ms"))
    ratios = {}
    for key, (numerator, denominator) in values.items():
        label, op, bound = TARGETS[key]
        label = label if model == MODEL else f"{model}: {label}"
        ratios[key] = _ratio(label, numerator, denominator, op if targets else None, bound)
    return ratios


def git_commit() -> str:
    """HEAD, with ``-dirty`` when tracked files differ from it (read-only git calls)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def _met(met: bool | None) -> str:
    return "report only" if met is None else ("**met**" if met else "**not met**")


def to_markdown(report: dict) -> str:
    """The targets, the in-process limit and the HTTP phases, as markdown."""
    machine = report["machine"]
    lines = ["# `make bench`: serving ratios within one run", ""]
    if report["quick"]:
        lines += ["**Quick smoke run (seconds per phase): the figures are not measurements.**", ""]
    lines += [f"{report['started_at']} → {report['finished_at']}, commit `{report['git_commit']}`; "
              f"{machine['cpus']} CPUs, {machine['platform']}, Python {machine['python']}, {machine['wrk']}; "
              f"load average {machine['load_at_start']} at start, {machine['load_at_end']} at end. "
              f"Tweets: {report['tweets']['count']} from {report['tweets']['source']}.", "",
              "## Targets", "", "| ratio | value | = numerator / denominator | target | |", "|---|---|---|---|---|"]
    for ratios in [report["ratios"], *report["also_ratios"].values()]:
        for ratio in ratios.values():
            lines.append(f"| {ratio['label']} | {_fmt(ratio['value'])} | {_fmt(ratio['numerator'])} / "
                         f"{_fmt(ratio['denominator'])} | {ratio['target']} | {_met(ratio['met'])} |")
    sizes = list(next(iter(report["inprocess"].values()), {}).get("rates", {}))
    lines += ["", "## In-process limit: the best of processes x threads x batch size (the project's predictor in "
              "child processes, no HTTP)", "",
              f"| model | processes x threads | batch-1 p50 / p95 / p99 ms | tweets/s at batch {', '.join(sizes)} "
              "| best tweets/s (batch) | their CPU % | others' CPU % |", "|---|---|---|---|---|---|---|"]
    for name, limit in report["inprocess"].items():
        for r in limit.get("configurations", [limit]):
            b1 = r["batch1"] or {}
            chosen = (r.get("processes", 1), r["threads"]) == (limit.get("processes", 1), limit["threads"])
            lines.append(f"| {name} v{r['version']} ({r['variant']}) | {r.get('processes', 1)} x {r['threads']}"
                         f"{' (**limit**)' if chosen else ''} | {_fmt(b1.get('p50_ms'))} / {_fmt(b1.get('p95_ms'))} / "
                         f"{_fmt(b1.get('p99_ms'))} | {', '.join(_fmt(v, 0) for v in r['rates'].values())} "
                         f"| {_fmt(r['best_rate'], 0)} ({r['best_batch_size']}) | {r['cpu_pct']['child']} "
                         f"| {r['cpu_pct']['others']} |")
    lines += ["", "The ratios divide by the fastest configuration's tweets/s and by the lowest batch-1 p50 of a single "
              "caller (batch-1 latency is measured only where one caller runs alone)."]
    lines += ["", "## Over HTTP (wrk on 127.0.0.1, one server at a time)", "",
              "| server | model | ready (s) | RSS (MB) | load avg at start | phase | tweets/s | p50 / p95 / p99 ms "
              "| errors | server CPU % | wrk CPU % | others' CPU % |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    names = {LATENCY: "1 connection", CONCURRENT: f"{CONNECTIONS} connections",
             BATCH: f"batch of {BATCH_SIZE}, 1 connection"}
    for row in report["servers"]:
        for key, p in row["phases"].items():
            lat, cpu = p["latency_ms"], p["cpu_pct"]
            errors = sum(p["errors"].values())
            lines.append(f"| {row['server']} | {row['label']} | {row['ready_s']} | {row['rss_mb']} "
                         f"| {row['load_at_start'][0]} | {names[key]} | {_fmt(p['tweets_per_s'], 1)} "
                         f"| {_fmt(lat.get('p50'))} / {_fmt(lat.get('p95'))} / {_fmt(lat.get('p99'))} | {errors} "
                         f"| {cpu['server']} | {cpu['wrk']} | {cpu['others']} |")
    for skipped in report["skipped"]:
        lines.append(f"| {skipped['server']} | skipped: {skipped['reason']} | | | | | | | | | | |")
    lines += ["", f"CPU %: share of the whole machine ({machine['cpus']} cores) during the phase; others' = every "
                  "process except the one measured, wrk and this harness (it slows the measurement down). "
                  "The in-process limit is the best rate over batch sizes; the ratios compare figures "
                  "taken minutes apart in this run, since absolute figures on shared machines drift by the hour."]
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="seconds per phase (smoke run), written to results/tmp/")
    parser.add_argument("--exports-dir", type=Path, help="exports served by this service (default: the project's)")
    parser.add_argument("--output-dir", type=Path, help="default: results/ (results/tmp/ with --quick)")
    parser.add_argument("--ready-timeout", type=float, default=180.0)
    parser.add_argument("--also", action="append", default=[], metavar="MODEL",
                        help="also measure another served model in process and through the service, e.g. tfidf-lr")
    parser.add_argument("--skip", action="append", default=[], choices=[SINGLE, SEED, MLFLOW])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        wrk_version = wrk.version()
    except wrk.WrkError as error:
        logger.error("%s", error)
        return 2
    budget = QUICK if args.quick else FULL
    output_dir = args.output_dir or PROJECT_ROOT / "results" / ("tmp" if args.quick else "")
    tmp = PROJECT_ROOT / "results" / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    exports_dir = args.exports_dir or PROJECT_ROOT / "exports"
    models = [MODEL, *[m for m in args.also if m != MODEL]]
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    load_at_start = [round(x, 2) for x in os.getloadavg()]

    tweets, source = load_tweets()
    # Real tweets stay in the git-ignored results/tmp/ for the length of the run only.
    tweets_file = tmp / "tweets.json"
    tweets_file.write_text(json.dumps(tweets, ensure_ascii=False), encoding="utf-8")
    skipped: list[dict] = []
    inprocess: dict[str, dict] = {}
    servers: list[dict] = []
    try:
        for model in models:
            inprocess[model] = bench_inprocess(export_folder(exports_dir, model), tweets_file, budget, tmp)
        servers += bench_server(service_spec(args.exports_dir), models, tweets, budget, tmp, args.ready_timeout,
                                _describe_service)
        if SINGLE not in args.skip:
            _guarded(skipped, "this service, one process", lambda: servers.extend(
                bench_server(service_spec(args.exports_dir, single_process=True), [MODEL], tweets, budget, tmp,
                             args.ready_timeout, _describe_service)))
        if SEED not in args.skip:
            _guarded(skipped, "seed-style server", lambda: servers.extend(
                bench_server(seed_spec(), [None], tweets, budget, tmp, args.ready_timeout, _describe_seed)))
        if MLFLOW not in args.skip:
            _guarded(skipped, "mlflow models serve", lambda: servers.extend(
                _bench_mlflow(export_folder(exports_dir, MODEL), tweets, budget, tmp, args.ready_timeout)))
    finally:
        for path in [tweets_file, *tmp.glob("bodies-*.jsonl")]:
            path.unlink(missing_ok=True)

    report = {
        "started_at": started_at, "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(), "quick": args.quick,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "wrk": wrk_version, "load_at_start": load_at_start,
                    "load_at_end": [round(x, 2) for x in os.getloadavg()]},
        "tweets": {"source": source, "count": len(tweets)},
        "settings": {"connections": CONNECTIONS, "batch_size": BATCH_SIZE, "model": MODEL, "budget": asdict(budget)},
        "ratios": compute_ratios(inprocess, servers),
        "also_ratios": {m: compute_ratios(inprocess, servers, m, targets=False) for m in models[1:]},
        "inprocess": inprocess, "servers": servers, "skipped": skipped,
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "bench.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    markdown = to_markdown(report)
    (output_dir / "bench.md").write_text(markdown, encoding="utf-8")
    sys.stdout.write(markdown)
    logger.info("wrote %s and %s", output_dir / "bench.json", output_dir / "bench.md")
    return 0


def _guarded(skipped: list[dict], name: str, measure: Callable[[], None]) -> None:
    """Run one comparison server; its failure is reported and must not lose the other figures."""
    try:
        measure()
    except Exception as error:  # noqa: BLE001 - any failure of a comparison server becomes a "skipped" row
        logger.exception("%s failed", name)
        skipped.append({"server": name, "reason": f"{type(error).__name__}: {error}"[:300]})


def _bench_mlflow(export: Path, tweets: list[str], budget: Budget, tmp: Path, ready_timeout: float) -> list[dict]:
    """Log the export into a throw-away store, then serve and measure it."""
    with tempfile.TemporaryDirectory(prefix="bench-mlflow-") as store_dir:
        logger.info("logging %s into a throw-away MLflow store", export)
        store, _, _ = _child("benchmarks.mlflow_store", str(export), store_dir, timeout=600)
        spec = mlflow_spec(store)
        return bench_server(spec, [None], tweets, budget, tmp, ready_timeout,
                            lambda _server, _model: f"{store['model_uri']} (pyfunc over the {export.name} export)")


if __name__ == "__main__":
    began = time.perf_counter()
    code = main()
    logger.info("benchmark done in %.0f s", time.perf_counter() - began)
    sys.exit(code)
