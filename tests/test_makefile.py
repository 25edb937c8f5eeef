"""`make run` and `make serve` as a user meets them: no reinstall on every start, a busy port refused in one line."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent


def _make(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    return subprocess.run(["make", "--no-print-directory", f"VENV={VENV}", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_installed_groups_are_not_reinstalled() -> None:
    """`make run` ran pip at every start (11.8 s on a complete venv): an install is now done once, by stamp."""
    if not (VENV / ".installed-dev").exists():
        pytest.skip(f"{VENV} was not installed by `make install-dev` (no stamp)")
    for target in ("install-api", "install-app", "install-train", "install-spark", "install-dev"):
        question = _make("-q", target)
        assert question.returncode == 0, f"make {target} would run again: {_make('-n', target).stdout}"


@pytest.mark.parametrize(("target", "variable"), [("run", "PORT"), ("serve", "API_PORT")])
def test_a_busy_port_is_refused_in_one_line(target: str, variable: str) -> None:
    """A second `make run` printed "address already in use" among the models' log lines, then make's error."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = _make(target, "HOST=127.0.0.1", f"{variable}={port}", timeout=300)
    assert done.returncode != 0
    ours = [line for line in done.stderr.splitlines() if "already in use" in line]
    assert ours == [f"127.0.0.1:{port} is already in use: stop what listens there, or choose another port "
                    f"({variable}=...)"]
    assert "uvicorn" not in done.stdout.split("already in use")[-1]  # nothing was started


def test_every_variable_make_help_advertises_is_read() -> None:
    """Audit: `make help` advertised FULL=1 for `make train`, and nothing read it."""
    makefile = (ROOT / "Makefile").read_text()
    helped = [line for line in makefile.splitlines() if re.match(r"^[a-z-]+:.*## ", line)]
    advertised = {name for line in helped for name in re.findall(r"\b([A-Z][A-Z0-9_]*)=", line.split("## ", 1)[1])}
    assert advertised
    unread = sorted(name for name in advertised if f"$({name})" not in makefile and f"${{{name}}}" not in makefile)
    assert unread == [], f"make help names variables the Makefile never reads: {unread}"
