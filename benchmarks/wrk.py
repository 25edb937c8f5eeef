"""Drive Debian's ``wrk`` (a C load generator, light on CPU) with ``bodies.lua`` and read its results.

Each run POSTs the JSON bodies of a JSON-lines file in turn over keep-alive connections for a fixed time.
``bodies.lua`` ends with a ``BENCH_JSON {...}`` line holding exact counts and percentiles; :func:`parse`
reads it, and falls back on wrk's own text (``--latency`` table, ``Requests/sec``) for what it lacks.
"""

from __future__ import annotations

import json
import re
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LUA_SCRIPT = Path(__file__).with_name("bodies.lua")
INSTALL_HINT = "install it with `sudo apt-get install wrk` (Debian/Ubuntu); `make bench` does so when run as root"

_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_DURATION = re.compile(r"^([\d.]+)(us|ms|s|m|h)$")


class WrkError(RuntimeError):
    """wrk is missing, failed, or printed something this module cannot read."""


@dataclass(frozen=True)
class WrkRun:
    """One wrk run, read back.

    Attributes:
        result: what :func:`parse` read (requests, seconds, errors, latency in ms).
        cpu_seconds: CPU time wrk itself used (user + system).
        wall_seconds: wall time of the whole wrk process.
        output: wrk's own text, kept for the logs.
    """

    result: dict[str, Any]
    cpu_seconds: float
    wall_seconds: float
    output: str


def executable() -> str:
    """The path of ``wrk``, or :class:`WrkError` saying how to install it."""
    path = shutil.which("wrk")
    if path is None:
        raise WrkError(f"wrk is not installed: {INSTALL_HINT}")
    return path


def version() -> str:
    # `wrk -v` prints "wrk <version> [epoll] Copyright ...", then the usage, and exits 1.
    output = subprocess.run([executable(), "-v"], capture_output=True, text=True, check=False).stdout
    return output.splitlines()[0].split(" Copyright")[0].strip() if output else "unknown"


def _to_ms(text: str) -> float:
    match = _DURATION.match(text.strip())
    if match is None:
        raise WrkError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse(output: str) -> dict[str, Any]:
    """Read one run's results from wrk's standard output.

    Args:
        output: what ``wrk --latency -s bodies.lua`` printed.

    Returns:
        ``requests``, ``seconds``, ``requests_per_s``, ``errors`` (``connect``, ``read``, ``write``, ``timeout``
        and ``status``: answers that were not 2xx/3xx) and ``latency_ms`` (``p50``, ``p90``, ``p95``, ``p99``,
        ``max``, ``mean``; ``p95`` only from the ``BENCH_JSON`` line).

    Raises:
        WrkError: neither the ``BENCH_JSON`` line nor wrk's summary is there.
    """
    for line in output.splitlines():
        if line.startswith("BENCH_JSON "):
            raw = json.loads(line.removeprefix("BENCH_JSON "))
            seconds = raw["duration_us"] / 1e6
            return {
                "requests": raw["requests"],
                "seconds": round(seconds, 3),
                "requests_per_s": round(raw["requests"] / seconds, 2) if seconds else 0.0,
                "errors": raw["errors"],
                "latency_ms": {k: round(v / 1e3, 3) for k, v in raw["latency_us"].items()},
            }
    return _parse_text(output)


def _parse_text(output: str) -> dict[str, Any]:
    """wrk's human-readable summary, for a run without the ``BENCH_JSON`` line (another script, or none)."""
    done = re.search(r"^\s*(\d+) requests in ([\d.]+\w+),", output, re.MULTILINE)
    if done is None:
        raise WrkError(f"no wrk summary in the output: {output[-500:]!r}")
    requests, seconds = int(done.group(1)), _to_ms(done.group(2)) / 1e3
    latency = {f"p{int(p)}": _to_ms(value)
               for p, value in re.findall(r"^\s*(50|90|99)(?:\.0+)?%\s+(\S+)\s*$", output, re.MULTILINE)}
    stats = re.search(r"^\s*Latency\s+(\S+)\s+\S+\s+(\S+)", output, re.MULTILINE)
    if stats:
        latency |= {"mean": _to_ms(stats.group(1)), "max": _to_ms(stats.group(2))}
    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0, "status": 0}
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socket:
        errors |= dict(zip(("connect", "read", "write", "timeout"), map(int, socket.groups()), strict=True))
    status = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if status:
        errors["status"] = int(status.group(1))
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    return {"requests": requests, "seconds": round(seconds, 3),
            "requests_per_s": float(rate.group(1)) if rate else round(requests / seconds, 2),
            "errors": errors, "latency_ms": {k: round(v, 3) for k, v in latency.items()}}


def run(url: str, bodies: Path, *, connections: int, seconds: int, timeout_s: int = 30, threads: int = 1) -> WrkRun:
    """Load ``url`` with the bodies of a JSON-lines file for ``seconds``.

    Args:
        url: the route to POST to, e.g. ``http://127.0.0.1:8000/v1/predict``.
        bodies: a file of JSON request bodies, one per line.
        connections: open keep-alive connections, each with one request in flight.
        seconds: how long to run (wrk takes whole seconds only).
        timeout_s: a request slower than this counts as a timeout error (whole seconds too).
        threads: wrk threads (one is plenty on loopback, and leaves the cores to the server).

    Raises:
        WrkError: wrk is missing, failed, or printed no result.
    """
    command = [executable(), f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", f"{timeout_s}s",
               "--latency", "-s", str(LUA_SCRIPT), url, "--", str(bodies)]
    # The servers under test stay alive (never waited for) during the run, so the children's CPU counter
    # moves by wrk's time alone.
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=seconds + timeout_s + 30)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise WrkError(f"wrk exited with {done.returncode}: {(done.stderr or done.stdout)[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return WrkRun(parse(done.stdout), cpu, wall, done.stdout)
