"""The manual's MLflow sidecar, run as written: the registry's champion lands in EXPORTS_DIR and is served.

A tiny export is logged and registered by the training code into a throw-away sqlite store, aliased
``champion``; the shell loop of ``docs/api.md`` (one pass, ``ONCE=1``) downloads it with ``mlflow artifacts
download`` and publishes it with ``python -m sentiment.publish adopt``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sentiment.manifest import ModelEntry, read_manifest
from sentiment.registry import ModelRegistry

pytest.importorskip("mlflow")

ROOT = Path(__file__).resolve().parents[2]
MANUAL = ROOT / "docs" / "api.md"


def _sidecar_script() -> str:
    text = MANUAL.read_text(encoding="utf-8")
    section = text[text.index("### Optional source: MLflow"):]
    return re.search(r"```sh\n(.*?)```", section, re.DOTALL).group(1)


def test_the_readme_sidecar_serves_the_registry_champion(exports_dir: Path, tmp_path: Path, settings_factory,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    from training import config, tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    _, version = tracking.log_model_run(name="tiny-lr", family="classical", params={}, evaluations={},
                                        data_hashes={}, bundle=exports_dir / "tiny-lr")
    mlflow.MlflowClient().set_registered_model_alias(config.REGISTERED_MODEL, "champion", version)

    served = tmp_path / "exports"
    script = _sidecar_script().replace("/exports", str(served)).replace("/tmp/champion", str(tmp_path / "download"))
    bin_dir = Path(sys.executable).parent  # python and the mlflow command of this environment
    env = {**os.environ, "ONCE": "1", "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": uri}
    done = subprocess.run(["bash", "-eu", "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    manifest = read_manifest(served)
    assert manifest.champion == "tiny-lr"
    assert dict(manifest.models) == {"tiny-lr": ModelEntry(f"tiny-lr@{version}", version)}
    registry = ModelRegistry(settings_factory(served))
    registry.load()
    assert registry.get().version == version
