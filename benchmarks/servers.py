"""Start, probe, measure and stop the servers under test (each a process group of its own, on loopback)."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sentiment.settings import PROJECT_ROOT

HOST = "127.0.0.1"


def machine_busy_seconds() -> float:
    """CPU seconds spent busy by the whole machine since boot (all cores), from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuClock:
    """Wall time, the machine's busy CPU time and this process's CPU time, read together."""

    wall: float
    machine: float
    own: float

    @classmethod
    def read(cls) -> CpuClock:
        return cls(time.perf_counter(), machine_busy_seconds(), time.process_time())


def cpu_shares(before: CpuClock, after: CpuClock, **used: float) -> dict[str, float]:
    """Percent of the whole machine (all cores) that each of ``used`` took between two readings.

    Args:
        before: reading at the start of the phase.
        after: reading at its end.
        used: CPU seconds of the processes under test (e.g. ``server=..., wrk=...``).

    Returns:
        The share of each of ``used``, and ``others``: what every other process took (this harness excluded),
        which slows the measured processes down.
    """
    capacity = max(after.wall - before.wall, 1e-9) * (os.cpu_count() or 1)
    others = (after.machine - before.machine) - sum(used.values()) - (after.own - before.own)
    shares = {name: round(seconds / capacity * 100, 1) for name, seconds in used.items()}
    return shares | {"others": round(max(others, 0.0) / capacity * 100, 1)}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def worker_pids(supervisor: int) -> list[int]:
    """The live uvicorn workers of the server whose supervisor is ``supervisor`` (spawned children; not the
    multiprocessing resource tracker, not a killed one not yet reaped)."""
    import psutil

    found = []
    for child in psutil.Process(supervisor).children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "spawn_main" in " ".join(child.cmdline()):
                found.append(child.pid)
        except psutil.Error:
            continue
    return found


def listeners(port: int) -> int:
    """Listening TCP sockets on ``port``, whoever holds them: one per worker of ``python -m api.serve``, each opened
    once that worker's startup is complete (a dying process's threads can also keep its socket open a little after
    its status reads "zombie")."""
    found = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            next(rows)
            found += sum(1 for row in rows if row.split()[1].endswith(f":{port:04X}") and row.split()[3] == "0A")
    return found


def get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """One GET on loopback; (0, b"") when nothing answers yet."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    except OSError:
        return 0, b""
    finally:
        connection.close()


@dataclass
class ServerSpec:
    """How to run and call one server.

    Attributes:
        name: row name in the results.
        slug: short name for its log and body files.
        command: the command line (its ``{port}`` and ``{python}`` are filled in).
        ready_path: GET path that answers 200 once the server can predict.
        single: (path, text → body) for single-tweet requests; ``benchmarks.run`` passes the model as a
            second argument (None when the server serves one model only).
        batch: (path, texts → body) for batch requests, likewise.
        env: extra environment variables.
        unset: environment variables removed, so that the server runs with its shipped defaults.
    """

    name: str
    slug: str
    command: list[str]
    ready_path: str
    single: tuple[str, Callable[..., object]]
    batch: tuple[str, Callable[..., object]]
    env: dict[str, str] = field(default_factory=dict)
    unset: tuple[str, ...] = ()


class RunningServer:
    """A started server: its port, process and log; use as a context manager to stop it."""

    def __init__(self, spec: ServerSpec, log_dir: Path, ready_timeout: float) -> None:
        self.spec = spec
        self.port = free_port()
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{spec.slug}-{self.port}.log"
        env = {k: v for k, v in os.environ.items() if k not in spec.unset}
        env |= {"PYTHONPATH": str(PROJECT_ROOT), "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"} | spec.env
        command = [part.format(port=self.port, python=sys.executable) for part in spec.command]
        self.load_at_start = [round(x, 2) for x in os.getloadavg()]
        started = time.perf_counter()
        with self.log_path.open("wb") as log:
            # A session of its own: stopping kills exactly this server and the workers it spawned.
            self.process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=log,
                                            start_new_session=True)
        self.ready_seconds = self._wait_ready(ready_timeout, started)

    def _wait_ready(self, timeout: float, started: float) -> float:
        deadline = started + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.spec.name} exited with {self.process.returncode}; see {self.log_path}")
            # Every worker listening: connections made while one is still starting would all stay on the other.
            if (get(self.port, self.spec.ready_path, timeout=1.0)[0] == 200
                    and listeners(self.port) >= max(1, len(worker_pids(self.process.pid)))):
                return time.perf_counter() - started
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"{self.spec.name} not ready after {timeout:.0f} s; see {self.log_path}")

    def rss_mb(self) -> float:
        """Resident memory of the server and its children, in MB."""
        import psutil

        root = psutil.Process(self.process.pid)
        processes = [root, *root.children(recursive=True)]
        return round(sum(p.memory_info().rss for p in processes if p.is_running()) / 1e6, 1)

    def cpu_seconds(self) -> float:
        """CPU time used so far by the server and its children."""
        import psutil

        root = psutil.Process(self.process.pid)
        total = 0.0
        for process in [root, *root.children(recursive=True)]:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:  # a worker that just ended takes its time with it
                continue
            total += times.user + times.system
        return total

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
