"""``make bench-reload``: a new version swapped into the running lean API under load, timed.

The lean API (``uvicorn api.main:create_app --factory``) serves a copy of the committed ``minilm`` export,
published through a manifest in a throw-away EXPORTS_DIR. Eight keep-alive connections send single tweets
without pause (below the shedding threshold: at most 8 texts queued). After a steady phase a new version (the
same files under another version number, in a new folder) is published and ``POST /v1/admin/reload`` asked to
swap it in; the clients go on for a few seconds more. Repeated ``--swaps`` times.

Per swap it records what the service reports (load, verification and warm-up; the swap itself; the drain of
the old model) and what the clients saw: requests answered while the new version loaded, failures, latency
then against the steady phase, the versions answered before and after. Writes ``results/reload.json`` and
``results/reload.md`` (``--quick``: ``results/tmp/``), with the load average and the CPU share of every
other process, which slows everything down on a shared machine.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.servers import HOST, PROJECT_ROOT, CpuClock, RunningServer, ServerSpec, cpu_shares
from benchmarks.tweets import make_tweets
from sentiment.exports import METADATA_FILE
from sentiment.manifest import ModelEntry
from sentiment.publish import publish_state

logger = logging.getLogger("benchmarks")

MODEL = "minilm"
CONNECTIONS = 8


@dataclass(frozen=True)
class Answer:
    began: float
    ended: float
    status: int
    version: str | None


def _clients(port: int, stop: threading.Event, answers: list[Answer]) -> list[threading.Thread]:
    bodies = [json.dumps({"text": t}).encode() for t in make_tweets(500, seed=7)]

    def client(offset: int) -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=30)
        i = offset
        while not stop.is_set():
            began = time.monotonic()
            try:
                connection.request("POST", "/v1/predict", bodies[i % len(bodies)],
                                   {"Content-Type": "application/json"})
                response = connection.getresponse()
                payload = response.read()
                version = json.loads(payload).get("version") if response.status == 200 else None
                answers.append(Answer(began, time.monotonic(), response.status, version))
            except OSError:
                answers.append(Answer(began, time.monotonic(), 0, None))
                connection.close()
                connection = http.client.HTTPConnection(HOST, port, timeout=30)
            i += CONNECTIONS
        connection.close()

    return [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CONNECTIONS)]


def _post(port: int, path: str, key: str) -> tuple[int, dict[str, Any]]:
    connection = http.client.HTTPConnection(HOST, port, timeout=120)
    try:
        connection.request("POST", path, headers={"X-API-Key": key})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def _drain_seconds(port: int) -> float | None:
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    found = re.search(r'^model_reload_seconds\{phase="drain"\} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else None


def _ms(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000, 1)


def _new_version(root: Path, source: Path, version: str) -> str:
    folder = root / f"{MODEL}@{version}"
    shutil.copytree(source, folder)
    meta = json.loads((folder / METADATA_FILE).read_text())
    meta["version"] = version
    (folder / METADATA_FILE).write_text(json.dumps(meta))
    publish_state(root, MODEL, {MODEL: ModelEntry(folder.name, version)}, "retrain")
    return version


def measure(swaps: int, steady_s: float, after_s: float, log_dir: Path) -> dict[str, Any]:
    source = PROJECT_ROOT / "exports" / MODEL
    first = str(json.loads((source / METADATA_FILE).read_text())["version"])
    key = secrets.token_urlsafe(24)  # made per run: never written anywhere but this process's environment
    with tempfile.TemporaryDirectory(prefix="reload-bench-") as tmp:
        root = Path(tmp)
        shutil.copytree(source, root / MODEL)
        publish_state(root, MODEL, {MODEL: ModelEntry(MODEL, first)}, "export")
        spec = ServerSpec(
            name="lean API", slug="reload",
            command=["{python}", "-m", "uvicorn", "api.main:create_app", "--factory", "--host", HOST,
                     "--port", "{port}", "--no-access-log"],
            ready_path="/readyz", single=("/v1/predict", dict), batch=("/v1/predict/batch", dict),
            env={"EXPORTS_DIR": str(root), "ADMIN_KEY": key, "RELOAD_INTERVAL_S": "0", "ENABLED_MODELS": MODEL},
            unset=("API_KEYS", "DEFAULT_MODEL", "MAX_QUEUE_TEXTS", "REQUEST_TIMEOUT_S", "ONNX_THREADS"))
        rows = []
        with RunningServer(spec, log_dir, ready_timeout=120) as server:
            answers: list[Answer] = []
            stop = threading.Event()
            threads = _clients(server.port, stop, answers)
            clock = CpuClock.read()
            cpu = server.cpu_seconds()
            for thread in threads:
                thread.start()
            try:
                for n in range(swaps):
                    steady_from = time.monotonic()
                    time.sleep(steady_s)
                    steady_to = time.monotonic()
                    version = _new_version(root, source, f"{first}.{n + 1}")
                    began = time.monotonic()
                    status, report = _post(server.port, "/v1/admin/reload", key)
                    swapped = time.monotonic()
                    time.sleep(after_s)
                    drain = _drain_seconds(server.port)
                    window = [a for a in answers if began < a.ended < swapped]
                    steady = [a for a in answers if steady_from < a.began and a.ended < steady_to]
                    later = [a for a in answers if a.began > swapped]
                    rows.append({
                        "version": version, "route_status": status, "outcome": report.get("outcome"),
                        "load_seconds": report.get("load_seconds"), "swap_ms": round(report["swap_seconds"] * 1e3, 3)
                        if report.get("swap_seconds") is not None else None, "drain_seconds": round(drain, 3) if drain is not None else None,
                        "route_seconds": round(swapped - began, 3), "requests_during_load": len(window),
                        "failed_during_load": sum(a.status != 200 for a in window),
                        "p50_ms_during_load": _ms([a.ended - a.began for a in window], 0.5),
                        "max_ms_during_load": _ms([a.ended - a.began for a in window], 1.0),
                        "p50_ms_steady": _ms([a.ended - a.began for a in steady], 0.5),
                        "max_ms_steady": _ms([a.ended - a.began for a in steady], 1.0),
                        "versions_during_load": sorted({a.version for a in window if a.version}),
                        "versions_after": sorted({a.version for a in later if a.version}),
                    })
                    logger.info("swap %d: %s", n + 1, rows[-1])
            finally:
                stop.set()
                for thread in threads:
                    thread.join(35)
            shares = cpu_shares(clock, CpuClock.read(), server=server.cpu_seconds() - cpu)
            load_at_start = server.load_at_start
    return {"swaps": rows, "requests": len(answers), "failed": sum(a.status != 200 for a in answers),
            "connections": CONNECTIONS, "cpu_share_percent": shares, "load_average_at_start": load_at_start}


def _markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Live reload under load (`make bench-reload`)", "",
        f"Measured {result['measured_at']} on {result['cpus']} CPUs; load average at start "
        f"{result['load_average_at_start']}; CPU share of the whole machine: {result['cpu_share_percent']} "
        "(`others`: every other process). The lean API serves `minilm` (the committed int8 export) to "
        f"{result['connections']} keep-alive connections sending single tweets without pause; each swap publishes "
        "the same files under a new version and calls `POST /v1/admin/reload`.", "",
        f"Requests in all: {result['requests']}, failed: {result['failed']}.", "",
        "| swap | load + verify + warm-up (s) | swap (ms) | drain (s) | requests answered during the load | failed "
        "| p50 / max ms during the load | p50 / max ms steady | versions during → after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n, row in enumerate(result["swaps"], 1):
        lines.append(
            f"| {n} | {row['load_seconds']:.3f} | {row['swap_ms']} | {row['drain_seconds']} | "
            f"{row['requests_during_load']} | {row['failed_during_load']} | {row['p50_ms_during_load']} / "
            f"{row['max_ms_during_load']} | {row['p50_ms_steady']} / {row['max_ms_steady']} | "
            f"{','.join(row['versions_during_load'])} → {','.join(row['versions_after'])} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--swaps", type=int, default=3)
    parser.add_argument("--steady-s", type=float, default=5.0)
    parser.add_argument("--after-s", type=float, default=3.0)
    parser.add_argument("--quick", action="store_true", help="one short swap; results under results/tmp/")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = PROJECT_ROOT / "results" / ("tmp" if args.quick else "")
    swaps, steady, after = (1, 1.0, 1.0) if args.quick else (args.swaps, args.steady_s, args.after_s)
    result = measure(swaps, steady, after, PROJECT_ROOT / "results" / "tmp")
    result |= {"measured_at": datetime.now(UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "reload.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "reload.md").write_text(_markdown(result))
    logger.info("wrote %s", out / "reload.md")


if __name__ == "__main__":
    main()
