"""Run by test_lean_import.py in a fresh interpreter: serve predictions as if only the ``api`` dependencies were
installed.

Every third-party package outside ``requirements/api.txt`` (and the test client) is made unimportable, and the
training, product and heavy stacks always are; optional imports that libraries guard with ``try`` then fail
as they would in the lean image. Prints a JSON report. Not a test module (no ``test_`` prefix).
"""

from __future__ import annotations

import importlib.abc
import json
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

ALWAYS_BLOCKED = {"torch", "transformers", "mlflow", "streamlit", "sklearn", "skl2onnx", "onnx", "onnxscript",
                  "pandas", "scipy", "safetensors", "vaderSentiment", "plotly", "training", "app", "batch",
                  "benchmarks"}
# Used by the probe to call the app in-process; the service itself does not need them.
TEST_CLIENT = {"httpx", "httpx2", "httpcore", "httpcore2", "h11", "certifi", "idna", "sniffio", "anyio"}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_distributions(requirements: Path) -> set[str]:
    """Names pinned (``name==version``) in a uv/pip-compile lock file."""
    return {_normalise(m.group(1)) for line in requirements.read_text().splitlines()
            if (m := re.match(r"^([A-Za-z0-9._-]+)==", line))}


class LeanEnvironment(importlib.abc.MetaPathFinder):
    """Fail imports of top-level packages that belong to no allowed distribution, as if not installed."""

    def __init__(self, allowed: set[str]) -> None:
        self.blocked = set(ALWAYS_BLOCKED)
        for module, dists in packages_distributions().items():
            if not {_normalise(d) for d in dists} & allowed:
                self.blocked.add(module)
        self.blocked -= {"api", "sentiment", "tests"}
        self.attempts: set[str] = set()

    def find_spec(self, name, path, target=None):
        top = name.split(".")[0]
        if top in self.blocked:
            self.attempts.add(top)
            raise ModuleNotFoundError(f"not installed in the lean runtime: {name}", name=name)
        return None


def main(exports_dir: str, requirements: str) -> None:
    finder = LeanEnvironment(locked_distributions(Path(requirements)) | TEST_CLIENT)
    preloaded = [name for name in sys.modules if name.split(".")[0] in ALWAYS_BLOCKED]
    assert not preloaded, f"imported before the probe started: {preloaded}"
    sys.meta_path.insert(0, finder)

    from fastapi.testclient import TestClient

    import api.cli  # noqa: F401  (the CLI ships in the lean image too)
    from api.main import create_app
    from api.settings import Settings

    app = create_app(Settings(exports_dir=exports_dir, log_format="none"))
    statuses = {}
    with TestClient(app) as client:
        app.state.registry.load()
        statuses["readyz"] = client.get("/readyz").status_code
        for model in ("tiny-bert", "tiny-lr"):
            response = client.post("/v1/predict/batch", json={"texts": ["I love it", "I hate it"], "model": model})
            statuses[model] = response.status_code
        statuses["compat"] = client.post("/predict", json={"text": "ok"}).status_code
        statuses["metrics"] = client.get("/metrics").status_code
    heavy = sorted(name for name in sys.modules if name.split(".")[0] in ALWAYS_BLOCKED)
    report = {"statuses": statuses, "heavy_modules": heavy, "refused_optional_imports": sorted(finder.attempts)}
    sys.stdout.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
