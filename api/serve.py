"""``python -m api.serve``: the lean API with one worker process per core (the image's and ``make serve``'s command).

It takes uvicorn's command line and environment as they are (``--port``, ``UVICORN_HOST``...) and sets three
things before uvicorn starts, each only when the operator has not:

- ``WEB_CONCURRENCY`` (uvicorn's worker count): the CPUs this process may use, from the cgroup quota and the
  affinity (:func:`sentiment.budgets.available_cpus`), not ``os.cpu_count()``, which reports the host's;
- ``ONNX_THREADS``: the CPUs shared out among the workers (1 each when there is one per core), so that the workers'
  model calls together fill the cores without fighting over them;
- with more than one worker, ``PROMETHEUS_MULTIPROC_DIR``: a folder the workers share (metrics, reload requests),
  emptied at start. Under a read-only root it must be writable: the images and manifests give ``/tmp``.

With more than one worker, each worker listens on its own socket (``SO_REUSEPORT``) and the kernel spreads the
connections over them. uvicorn's own way, one socket that all workers accept from, let the first worker to wake
take every pending connection: in 2 of 5 runs of 16 ``wrk`` connections, one worker held all 16 and the server
answered half as many tweets (``tests/api/test_workers.py``).

Why processes: one Python process spends a core on HTTP, JSON and validation while the other waits for the GIL;
two processes with one ONNX thread each score more tweets together than one process with two (``make bench``,
``results/bench.md``). ``WEB_CONCURRENCY=1`` is the single-process server of before (Kubernetes scales by pods).

    python -m api.serve api.main:create_app --factory --host 0.0.0.0 --port 8000
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from sentiment.budgets import available_cpus
from sentiment.metrics import MULTIPROC_DIR_VARIABLE

logger = logging.getLogger(__name__)

WORKERS_VARIABLE = "WEB_CONCURRENCY"
THREADS_VARIABLE = "ONNX_THREADS"
DEFAULT_APP = ("api.main:create_app", "--factory")


def plan_workers(environ: MutableMapping[str, str], cpus: int | None = None) -> dict[str, str]:
    """Fill in the worker count, threads per worker and shared folder that ``environ`` leaves unset.

    Returns:
        The variables set (also written into ``environ``).
    """
    cpus = cpus or available_cpus()
    chosen: dict[str, str] = {}
    if not environ.get(WORKERS_VARIABLE):
        chosen[WORKERS_VARIABLE] = str(cpus)
    workers = int(environ.get(WORKERS_VARIABLE) or chosen[WORKERS_VARIABLE])
    if not environ.get(THREADS_VARIABLE):
        chosen[THREADS_VARIABLE] = str(max(1, cpus // max(1, workers)))
    if workers > 1:
        shared = environ.get(MULTIPROC_DIR_VARIABLE)
        if shared:
            _empty(Path(shared))  # the files of a previous run would be added to this one's
        else:
            chosen[MULTIPROC_DIR_VARIABLE] = tempfile.mkdtemp(prefix="tweet-sentiment-workers-")
            # Only this process runs it: uvicorn's workers are spawned, not forked.
            atexit.register(shutil.rmtree, chosen[MULTIPROC_DIR_VARIABLE], True)
    environ.update(chosen)
    return chosen


class _SpreadListener(socket.socket):
    """The supervisor's socket. It holds the address (bound with ``SO_REUSEPORT``, never listening, so that no
    connection waits on it) and, when uvicorn hands it to a worker, becomes that worker's own listener."""

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return _reuse_port_socket, (self.family, self.getsockname())


def _reuse_port_socket(family: int, address: Any, kind: type[socket.socket] = socket.socket) -> socket.socket:
    sock = kind(family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


def spread_connections() -> None:
    """Make uvicorn's supervisor give each worker its own listener on the address (see the module's docstring).

    uvicorn has no option for it, so this replaces how its supervisor binds a TCP address; a Unix socket or an
    inherited descriptor is bound as uvicorn does.
    """
    from uvicorn.config import STARTUP_FAILURE, Config

    original = Config.bind_socket
    if getattr(original, "spreads", False):
        return

    def bind_socket(config: Config) -> socket.socket:
        if config.uds is not None or config.fd is not None:
            return original(config)
        family = socket.AF_INET6 if config.host and ":" in config.host else socket.AF_INET
        try:
            sock = _reuse_port_socket(family, (config.host, config.port), _SpreadListener)
        except OSError as exc:
            logging.getLogger("uvicorn.error").error(exc)
            sys.exit(STARTUP_FAILURE)
        host = f"[{config.host}]" if family == socket.AF_INET6 else config.host
        logging.getLogger("uvicorn.error").info(
            "Uvicorn running on %s://%s:%d (Press CTRL+C to quit)", "https" if config.is_ssl else "http", host,
            sock.getsockname()[1])
        return sock

    bind_socket.spreads = True  # type: ignore[attr-defined]
    Config.bind_socket = bind_socket  # type: ignore[method-assign]


def _empty(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for entry in folder.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0].startswith("-"):
        args = [*DEFAULT_APP, *args]
    if "--host" in args[:-1]:
        # The settings refuse an open API on a public address: they must see the address uvicorn is given.
        os.environ["UVICORN_HOST"] = args[args.index("--host") + 1]
    chosen = plan_workers(os.environ)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logger.info("serving with %s worker(s), %s ONNX thread(s) each%s", os.environ[WORKERS_VARIABLE],
                os.environ[THREADS_VARIABLE], " (chosen from the CPUs)" if chosen else "")
    spread_connections()
    from uvicorn.main import main as uvicorn_main

    uvicorn_main.main(args=args, prog_name="python -m api.serve")


if __name__ == "__main__":
    main()
