"""``make bench-spark``: batch scoring on a local Spark beside ``api.cli score``, measured in one run.

The input is the 1.6M-row Sentiment140-format file that ``benchmarks.train_memory`` makes from the shared 100k
(the real file cannot be downloaded here), and slices of its first rows. Each phase runs alone, as a child
process (``python -m batch.spark`` with ``local[*]``, or ``python -m api.cli score``), timed from its start to its
exit (so Spark's JVM start is included; the first phase, a 1,000-row job, shows that fixed cost). The peak
memory is the largest sum of RSS over the child's process tree (driver, JVM, Python workers), sampled every
0.2 s. Beside each phase: the load average and the CPU share of every other process (a figure taken while
others' share is high says more about the machine than about the job), and whether a training job was up.

    python -m benchmarks.spark                 # the full run, into results/spark.json and results/spark.md
    python -m benchmarks.spark --quick         # 1/100 of the rows, into results/tmp/ (a smoke run)
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.run import git_commit
from benchmarks.servers import PROJECT_ROOT, machine_busy_seconds
from benchmarks.train_memory import make_file

logger = logging.getLogger(__name__)

SIZES = {"big": 1_600_000, "classical": 100_000, "transformer_slice": 100_000, "transformer": 10_000, "startup": 1_000}


@dataclass
class Phase:
    name: str
    tool: str
    model: str
    rows: int
    wall_s: float = 0.0
    tweets_per_s: float = 0.0
    peak_rss_mb: float = 0.0
    cpu_s: float = 0.0
    others_cpu_pct: float = 0.0
    load_before: float = 0.0
    training_running: bool = False
    summary: dict | None = None


def head(source: Path, target: Path, rows: int) -> Path:
    """The first ``rows`` CSV rows of ``source`` (latin-1, quoted like Sentiment140's file)."""
    with source.open(encoding="latin-1", newline="") as src, target.open("w", encoding="latin-1", newline="") as dst:
        writer = csv.writer(dst, quoting=csv.QUOTE_ALL)
        for index, row in enumerate(csv.reader(src)):
            if index == rows:
                break
            writer.writerow(row)
    return target


def count_rows(path: Path) -> int:
    with path.open(encoding="latin-1", newline="") as handle:
        return sum(1 for _ in csv.reader(handle))


def training_running() -> bool:
    """Whether any of the project's training jobs runs (pipeline, retrain, distill...): each fills the cores."""
    return subprocess.run(["pgrep", "-f", r"python.* -m training\."], capture_output=True).returncode == 0


def sample_tree(pid: int, cpu: dict[int, float]) -> float:
    """RSS of ``pid`` and its descendants in MB; records each one's CPU seconds so far in ``cpu`` (by pid).

    The CPU time is read from the live processes: the JVM and Spark's Python workers are not waited for by the
    measured child, so ``getrusage(RUSAGE_CHILDREN)`` would miss them.
    """
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
            times = process.cpu_times()
            cpu[process.pid] = times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total / 1e6


def run_phase(phase: Phase, command: list[str], log: Path) -> Phase:
    """Run ``command`` to its end, sampling its process tree's memory; fills the measured fields."""
    phase.load_before = round(os.getloadavg()[0], 2)
    phase.training_running = training_running()
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cpu: dict[int, float] = {}
    busy_before, started = machine_busy_seconds(), time.perf_counter()
    with log.open("w") as handle:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=handle, text=True, env=env,
                                   cwd=PROJECT_ROOT)
        peak = 0.0
        while process.poll() is None:
            peak = max(peak, sample_tree(process.pid, cpu))
            time.sleep(0.2)
        stdout = process.stdout.read() if process.stdout else ""
    wall = time.perf_counter() - started
    busy = machine_busy_seconds() - busy_before
    if process.returncode != 0:
        raise RuntimeError(f"{phase.name} exited with {process.returncode}; see {log}")
    used = sum(cpu.values())  # each process's last sample: up to 0.2 s of its end is missed
    phase.wall_s, phase.peak_rss_mb, phase.cpu_s = round(wall, 1), round(peak, 1), round(used, 1)
    phase.tweets_per_s = round(phase.rows / wall, 1)
    # Busy CPU of the whole machine, less this job's own: everything else that ran meanwhile (percent of it all).
    phase.others_cpu_pct = round(100 * max(busy - used, 0.0) / (wall * (os.cpu_count() or 1)), 1)
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    phase.summary = json.loads(lines[-1]) if lines else None
    logger.info("%s: %s", phase.name, asdict(phase))
    return phase


def spark_command(source: Path, target: Path, model: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "batch.spark", str(source), str(target), "--model", model, "--master", "local[*]",
            "--overwrite", "--conf", "spark.ui.enabled=false", *extra]


def cli_command(source: Path, target: Path, model: str) -> list[str]:
    return [sys.executable, "-m", "api.cli", "score", str(source), str(target), "--model", model, "--no-header",
            "--text-column", "5", "--encoding", "latin-1", "--no-progress"]


def write_report(results: dict, path: Path) -> None:
    lines = [
        "# Batch scoring on a local Spark beside `api.cli score`",
        "",
        f"Measured by `python -m benchmarks.spark{' --quick' if results['quick'] else ''}` on "
        f"{results['date']} (commit `{results['commit']}`): {results['cores']} cores, pyspark "
        f"{results['pyspark']}, {results['java']}. Input: the Sentiment140-format file of "
        "`benchmarks.train_memory` (resampled from the 100k; its labels mean nothing here) and slices of its first "
        "rows. Times run from the command's start to its exit (Spark's JVM start included); peak RSS is the "
        "whole process tree (driver, JVM, Python workers).",
        "",
        "| phase | tool | model | rows | wall s | tweets/s | peak RSS MB | CPU s | others' CPU % | load at start |"
        " training job up |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in results["phases"]:
        lines.append(f"| {p['name']} | {p['tool']} | {p['model']} | {p['rows']:,} | {p['wall_s']} | "
                     f"{p['tweets_per_s']:,} | {p['peak_rss_mb']:,} | {p['cpu_s']} | {p['others_cpu_pct']} | "
                     f"{p['load_before']} | {'yes' if p['training_running'] else 'no'} |")
    lines += ["", "Rows by outcome (Spark's own counts):", ""]
    for p in results["phases"]:
        if p["summary"]:
            lines.append(f"- {p['name']}: {json.dumps(p['summary'])}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1/100 of the rows, results into results/tmp/")
    parser.add_argument("--file", type=Path, help="an existing Sentiment140-format file instead of making one")
    parser.add_argument("--keep", action="store_true", help="keep the generated files and outputs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sizes = {key: max(value // 100, 100) if args.quick else value for key, value in SIZES.items()}
    results_dir = PROJECT_ROOT / "results" / ("tmp" if args.quick else "")
    work = PROJECT_ROOT / "results" / "tmp" / "spark"
    work.mkdir(parents=True, exist_ok=True)
    try:
        big = args.file or make_file(work / "big.csv", sizes["big"])
        files = {key: head(big, work / f"{key}.csv", rows) for key, rows in sizes.items() if key != "big"}
        files["big"] = big
        plan = [
            ("spark startup", "spark", "tfidf-lr", "startup"),
            ("classical, cli", "api.cli score", "tfidf-lr", "classical"),
            ("classical, spark", "spark", "tfidf-lr", "classical"),
            ("MiniLM int8, cli", "api.cli score", "minilm", "transformer"),
            ("MiniLM int8, spark", "spark", "minilm", "transformer"),
            # The default calls an int8 graph one tweet at a time (batch-invariant answers): what batches would gain.
            ("MiniLM int8, spark, 32 per call", "spark", "minilm", "transformer", "--chunk-rows", "32"),
            ("1.6M file, spark", "spark", "tfidf-lr", "big"),
            ("MiniLM int8 100k slice, spark", "spark", "minilm", "transformer_slice"),
        ]
        phases = []
        for index, (name, tool, model, key, *extra) in enumerate(plan):
            rows = sizes[key] if key != "big" or not args.file else count_rows(big)
            target = work / f"out-{index}{'.csv' if tool != 'spark' else ''}"
            command = (spark_command(files[key], target, model, *extra) if tool == "spark"
                       else cli_command(files[key], target, model))
            phases.append(asdict(run_phase(Phase(name, tool, model, rows), command, work / f"phase-{index}.log")))
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
    finally:
        if not args.keep:
            for path in work.glob("*.csv"):
                path.unlink()
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0]
    import pyspark

    results = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "commit": git_commit(),
               "cores": os.cpu_count(), "machine": platform.platform(), "pyspark": pyspark.__version__,
               "java": java, "quick": args.quick, "sizes": sizes, "phases": phases}
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "spark.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    write_report(results, results_dir / "spark.md")
    logger.info("wrote %s", results_dir / "spark.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
