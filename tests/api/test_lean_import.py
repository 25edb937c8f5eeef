"""The lean runtime (api/) serves predictions with only its own dependencies installed.

A fresh interpreter makes unimportable every third-party package that requirements/api.txt does not lock, and
always torch, transformers, mlflow, streamlit, scikit-learn, training/ and app/; it then builds the app, loads a
transformer and a classical export and serves predictions (see lean_probe.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_api_serves_without_heavy_packages(exports_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("EXPORTS_DIR", "API_KEYS", "ENABLED_MODELS")}
    result = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("lean_probe.py")), str(exports_dir),
         str(PROJECT_ROOT / "requirements" / "api.txt")],
        capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT, env=env | {"PYTHONPATH": str(PROJECT_ROOT)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["statuses"] == {"readyz": 200, "tiny-bert": 200, "tiny-lr": 200, "compat": 200, "metrics": 200}
    assert report["heavy_modules"] == []
