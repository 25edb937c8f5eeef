"""Every ``curl`` example of the README and the manual, typed as written against a started server.

The examples name the default addresses: 8501 for ``make run`` (the product, API under ``/api``) and 8000 for ``make
serve`` (the lean API). Each server is started here as those targets start it, with the committed exports, on a free
port; only ``host:port`` is rewritten, the rest of each command runs as printed. An example must answer JSON that is
not an error; where a ```json block follows it, the answer must match (labels, models and versions exactly, numbers
to 1e-3). Docker examples (``docs/deploy.md``) run in ``make docker-test`` instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SKIPPED = {"deploy.md"}  # the images' examples: deploy/docker/test.sh runs them against the built images
ADMIN_KEY = "documented-examples-admin-key"
_ADDRESS = re.compile(r"(?:https?://)?(?:127\.0\.0\.1|localhost):(8501|8000)")
pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Example:
    where: str
    command: str
    answer: str | None  # the ```json block printed right after it, if any


def examples() -> list[Example]:
    found = []
    for path in DOCUMENTS:
        if path.name in SKIPPED:
            continue
        text = path.read_text()
        blocks = list(re.finditer(r"```(\w*)\n(.*?)```", text, re.DOTALL))
        for index, block in enumerate(blocks):
            if block.group(1) != "bash":
                continue
            lines = block.group(2).replace("\\\n", " ").splitlines()
            commands = [line.split("  #")[0].strip() for line in lines if line.strip().startswith("curl ")]
            after = blocks[index + 1] if index + 1 < len(blocks) else None
            adjacent = after is not None and not text[block.end():after.start()].strip()
            answer = after.group(2) if adjacent and after.group(1) == "json" and len(commands) == 1 else None
            found += [Example(f"{path.relative_to(REPO)}: {command[:60]}", command, answer) for command in commands]
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _ready(url: str, process: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    """``{"8501": port, "8000": port}``: the product and the lean API, as make run and make serve start them."""
    tmp = tmp_path_factory.mktemp("examples")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "ADMIN_KEY": ADMIN_KEY,
           "FEEDBACK_DB": str(tmp / "feedback.db"), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}"}
    for name in ("EXPORTS_DIR", "ENABLED_MODELS", "DEFAULT_MODEL", "API_KEYS"):
        env.pop(name, None)
    ports = {"8501": _free_port(), "8000": _free_port()}
    commands = {"8501": ["app.server:app"], "8000": ["api.main:create_app", "--factory"]}
    ready = {"8501": "/api/readyz", "8000": "/readyz"}
    processes = {}
    try:
        for key, target in commands.items():
            log = (tmp / f"{key}.log").open("wb")
            processes[key] = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", *target, "--host", "127.0.0.1", "--port", str(ports[key])],
                cwd=REPO, env=env, stdout=log, stderr=log)
        for key, process in processes.items():
            _ready(f"http://127.0.0.1:{ports[key]}{ready[key]}", process, time.monotonic() + 180)
        yield ports
    finally:
        for process in processes.values():
            process.terminate()
            process.wait(timeout=30)


def _same(shown: object, got: object, path: str = "") -> list[str]:
    if isinstance(shown, dict) and isinstance(got, dict):
        return [d for key in shown for d in (_same(shown[key], got.get(key), f"{path}.{key}") if key in got
                                              else [f"{path}.{key} missing"])]
    if isinstance(shown, float) and isinstance(got, int | float):
        return [] if abs(shown - got) <= 1e-3 else [f"{path}: shown {shown}, got {got}"]
    return [] if shown == got else [f"{path}: shown {shown!r}, got {got!r}"]


def test_the_documents_have_examples() -> None:
    found = examples()
    assert len(found) >= 6 and any(e.answer for e in found)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("example", examples(), ids=lambda e: e.where)
def test_a_documented_example_answers_as_documented(servers: dict[str, int], example: Example) -> None:
    command = _ADDRESS.sub(lambda m: f"http://127.0.0.1:{servers[m.group(1)]}", example.command)
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "ADMIN_KEY": ADMIN_KEY})
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert not (isinstance(body, dict) and body.get("detail")), body  # the API's errors carry a detail
    if example.answer is not None:
        assert _same(json.loads(example.answer), body) == []
