"""``python -m api.serve`` with two worker processes: metrics across workers, a killed worker, a broadcast reload."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.serve import plan_workers
from benchmarks.servers import free_port, listeners, worker_pids
from sentiment.exports import METADATA_FILE
from sentiment.manifest import ModelEntry
from sentiment.publish import publish_state

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ADMIN = "an-admin-key-for-the-worker-tests"


def test_one_worker_per_cpu_with_one_thread_each(tmp_path: Path) -> None:
    environ: dict[str, str] = {}
    chosen = plan_workers(environ, cpus=4)
    assert chosen["WEB_CONCURRENCY"] == "4" and chosen["ONNX_THREADS"] == "1"
    assert Path(chosen["PROMETHEUS_MULTIPROC_DIR"]).is_dir()


def test_the_operator_s_choices_stay_and_a_stale_metrics_folder_is_emptied(tmp_path: Path) -> None:
    shared = tmp_path / "metrics"
    shared.mkdir()
    (shared / "counter_123.db").write_bytes(b"old run")
    environ = {"WEB_CONCURRENCY": "2", "PROMETHEUS_MULTIPROC_DIR": str(shared)}
    assert plan_workers(environ, cpus=4) == {"ONNX_THREADS": "2"}
    assert list(shared.iterdir()) == []


def test_one_worker_is_the_single_process_server_of_before() -> None:
    environ = {"WEB_CONCURRENCY": "1"}
    assert plan_workers(environ, cpus=2) == {"ONNX_THREADS": "2"}
    assert "PROMETHEUS_MULTIPROC_DIR" not in environ


def _copy_version(source: Path, target: Path, version: str) -> None:
    shutil.copytree(source, target)
    meta = json.loads((target / METADATA_FILE).read_text())
    meta["version"] = version
    (target / METADATA_FILE).write_text(json.dumps(meta))


def _call(url: str, body: dict | None = None, headers: dict | None = None) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _samples(text: str, name: str) -> list:
    return [s for family in text_string_to_metric_families(text) for s in family.samples if s.name == name]


@pytest.fixture
def two_workers(exports_dir: Path, tmp_path: Path) -> Iterator[tuple[str, Path, psutil.Process]]:
    """The lean API under ``python -m api.serve`` with 2 workers; the watcher off, so only requests reload."""
    root = tmp_path / "exports"
    root.mkdir()
    _copy_version(exports_dir / "tiny-lr", root / "tiny-lr@1", "1")
    publish_state(root, "tiny-lr", {"tiny-lr": ModelEntry("tiny-lr@1", "1")}, "export")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UVICORN_", "PROMETHEUS_"))}
    env |= {"EXPORTS_DIR": str(root), "WEB_CONCURRENCY": "2", "RELOAD_INTERVAL_S": "0", "ADMIN_KEY": ADMIN,
            "API_KEYS": "", "ENABLED_MODELS": "", "DEFAULT_MODEL": "", "LOG_FORMAT": "none",
            "PYTHONPATH": str(PROJECT_ROOT)}
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "api.serve", "--host", "127.0.0.1", "--port", str(port)],
                               cwd=PROJECT_ROOT, env=env, stdout=log, stderr=log, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        parent = psutil.Process(process.pid)
        while time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            try:
                # Both listening: a worker opens its socket once its startup is complete (api.serve).
                if len(_workers(parent)) == 2 and listeners(port) == 2 and _call(f"{url}/readyz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            pytest.fail("two workers not ready in 60 s: " + (tmp_path / "server.log").read_text()[-2000:])
        yield url, root, parent
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
        log.close()


def _workers(parent: psutil.Process) -> list[psutil.Process]:
    return [psutil.Process(pid) for pid in worker_pids(parent.pid)]


def test_a_killed_worker_is_replaced_the_other_keeps_answering_and_counters_never_go_back(two_workers) -> None:
    url, _root, parent = two_workers
    for _ in range(20):
        assert _call(f"{url}/v1/predict", {"text": "what a lovely crew"})[0] == 200
    before = sum(s.value for s in _samples(_call(f"{url}/metrics")[1], "predictions_total"))
    assert before == 20  # summed over both workers, whichever answers the scrape
    victim = _workers(parent)[0]
    victim.send_signal(signal.SIGKILL)
    # Each worker has its own listener (SO_REUSEPORT): until the kernel has closed the dead one's, a connection can
    # still be queued there and is reset (docs/api.md). Once it is closed, every request is answered.
    port = int(url.rsplit(":", 1)[1])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and listeners(port) > 1:
        time.sleep(0.001)
    statuses = [_call(f"{url}/v1/predict", {"text": "late again"})[0] for _ in range(20)]
    assert statuses == [200] * 20
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (len(_workers(parent)) < 2 or victim.pid in [w.pid for w in _workers(parent)]):
        time.sleep(0.2)
    assert len(_workers(parent)) == 2 and victim.pid not in [w.pid for w in _workers(parent)]
    while time.monotonic() < deadline and _call(f"{url}/readyz")[0] != 200:
        time.sleep(0.2)
    metrics = _call(f"{url}/metrics")[1]
    assert sum(s.value for s in _samples(metrics, "predictions_total")) == 40
    ready = _samples(metrics, "models_ready")
    assert len(ready) == 1 and ready[0].value in (0.0, 1.0)  # one series whatever the workers, the dead one gone
    assert [s.labels["version"] for s in _samples(metrics, "model_served_info")] == ["1"]


def test_an_admin_reload_reaches_every_worker(two_workers) -> None:
    url, root, _parent = two_workers
    _copy_version(root / "tiny-lr@1", root / "tiny-lr@2", "2")
    publish_state(root, "tiny-lr", {"tiny-lr": ModelEntry("tiny-lr@2", "2")}, "retrain")
    status, body = _call(f"{url}/v1/admin/reload", {}, {"X-API-Key": ADMIN})
    assert status == 200 and json.loads(body)["models"] == {"tiny-lr": "2"}, body
    # The watcher is off (RELOAD_INTERVAL_S=0): only the request left in the shared folder moves the other worker.
    # model_served_info lists what any live worker serves, so version 1 leaves it once both have swapped.
    deadline = time.monotonic() + 5
    versions: list[str] = []
    while time.monotonic() < deadline:
        versions = sorted(s.labels["version"] for s in _samples(_call(f"{url}/metrics")[1], "model_served_info"))
        if versions == ["2"]:
            break
        time.sleep(0.1)
    assert versions == ["2"]
    answers = {json.loads(_call(f"{url}/v1/predict", {"text": "fine"})[1])["version"] for _ in range(30)}
    assert answers == {"2"}


def _listening_inodes(worker: psutil.Process, port: int) -> set[str]:
    """The socket inodes behind the worker's listening descriptors on ``port``."""
    listening = {c.fd for c in worker.net_connections(kind="tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
    return {os.readlink(f"/proc/{worker.pid}/fd/{fd}") for fd in listening}


def _accepted(workers: list[psutil.Process], port: int) -> list[int]:
    return [sum(1 for c in w.net_connections(kind="tcp")
                if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port) for w in workers]


def test_each_worker_listens_on_its_own_socket_so_connections_spread_over_the_workers(two_workers) -> None:
    # With one socket shared by the workers, the first to wake accepted every pending connection: 16 wrk
    # connections all on one worker in 2 of 5 runs, and half the throughput.
    url, _root, parent = two_workers
    port = int(url.rsplit(":", 1)[1])
    workers = _workers(parent)
    inodes = [_listening_inodes(w, port) for w in workers]
    assert all(len(found) == 1 for found in inodes) and inodes[0] != inodes[1], inodes
    for _round in range(3):
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(16)]
        try:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and sum(_accepted(workers, port)) < 16:
                time.sleep(0.05)
            spread = _accepted(workers, port)
            # The kernel hashes each connection to a listener: all 16 on one of two has a chance of 2 in 65,536.
            assert sum(spread) == 16 and min(spread) >= 1, spread
        finally:
            for client in clients:
                client.close()
        while sum(_accepted(workers, port)):
            time.sleep(0.05)
