"""The whole loop, end to end: reviewed verdicts → `make retrain` → the running lean API serves the new version under
load without a restart → `make rollback` → the old version again, the same way; no request fails.

Everything is made here: made-up tweets, a TF-IDF champion trained and exported by the real pipeline, a private
MLflow store, a feedback store filled from the API's own answers. TF-IDF keeps the whole loop within a minute on two
cores; the transformer family goes through the same retrain, gate and publish code (test_retrain.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sentiment.feedback import FeedbackStore
from tests.http_load import Load, free_port, wait_ready
from tests.training.conftest import synthetic_tweets, write_kaggle_csv
from tests.training.test_retrain import slang_tweets
from training import export, pipeline

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ADMIN = "an-admin-key-for-the-loop-test"
CONNECTIONS = 8


@pytest.fixture
def loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    """A champion exported by `make train`'s stages and a lean API serving it (uvicorn, its own process)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    env = dict(os.environ)
    data = write_kaggle_csv(tmp_path / "train.csv", synthetic_tweets(600))
    honest = write_kaggle_csv(tmp_path / "validation_random.csv", synthetic_tweets(200, seed=7))
    pipeline.main(["--data", str(data), "--validation-random", str(honest), "--models", "tfidf-lr",
                   "--work-dir", str(tmp_path / "work"), "--threads", "1"])
    export.main(["--exports-dir", str(tmp_path / "exports")])
    port = free_port()
    api_env = {**env, "EXPORTS_DIR": str(tmp_path / "exports"), "ADMIN_KEY": ADMIN, "RELOAD_INTERVAL_S": "0",
               "LOG_FORMAT": "none"}
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory", "--host",
                               "127.0.0.1", "--port", str(port), "--log-level", "warning"], cwd=REPO, env=api_env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base)
        yield {"root": tmp_path, "base": base, "env": env, "data": data, "honest": honest,
               "exports": tmp_path / "exports"}
    finally:
        server.terminate()
        server.wait(20)


def _make(target: str, variable: str, arguments: list[str], env: dict[str, str]) -> dict:
    """`make <target>` as a user runs it, without reinstalling (-o install-train); its JSON output."""
    done = subprocess.run(["make", "-s", "-o", "install-train", target, f"{variable}={' '.join(arguments)}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def _reload(base: str) -> dict:
    answer = httpx.post(f"{base}/v1/admin/reload", headers={"X-API-Key": ADMIN}, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_reviewed_feedback_retrains_promotes_serves_and_rolls_back_without_a_failed_request(loop: dict) -> None:
    base = loop["base"]
    old = httpx.get(f"{base}/v1/models").json()["models"][0]["version"]

    # 1. A few hundred verdicts on the API's own answers; the maintainer reviews every thumbs down.
    store = FeedbackStore(loop["root"] / "feedback.db")
    with httpx.Client(base_url=base, timeout=30) as http:
        for text, truth in slang_tweets(300, seed=3):
            answer = http.post("/v1/predict", json={"text": text}).json()
            feedback_id = str(uuid.uuid4())
            store.record_verdict(feedback_id=feedback_id, text=text, model_name=answer["model"],
                                 model_version=answer["version"], predicted_label=answer["label"],
                                 confidence=answer["confidence"], verdict="up" if answer["label"] == truth else "down")
            if answer["label"] != truth:
                store.review(feedback_id, true_label=truth)
    store.close()

    # 2. `make retrain` in quick mode promotes a new version.
    report = _make("retrain", "RETRAIN_ARGS", [
        "--quick", "--family", "tfidf-lr", "--feedback-db", str(loop["root"] / "feedback.db"),
        "--data", str(loop["data"]), "--validation-random", str(loop["honest"]),
        "--exports-dir", str(loop["exports"]), "--work-dir", str(loop["root"] / "work"), "--threads", "1"], loop["env"])
    assert report["gate"]["decision"] == "promoted", report["gate"]
    new = report["gate"]["candidate"]["version"]
    assert new != old

    # 3. and 4. Under load from 8 connections: reload → new version; `make rollback`, reload → old version.
    with Load(base, CONNECTIONS, "so happy with the game today") as load:
        load.wait_for(50)
        first = _reload(base)
        promoted_at = time.monotonic()
        rolled = _make("rollback", "ROLLBACK_ARGS", ["--exports-dir", str(loop["exports"])], loop["env"])
        rollback_began = time.monotonic()
        second = _reload(base)
        rolled_back_at = time.monotonic()
        load.wait_for(50)
    records = load.records

    assert first["outcome"] == "swapped" and second["outcome"] == "swapped", (first, second)
    assert rolled["models"]["tfidf-lr"]["version"] == old and rolled["history"][-1]["reason"] == "rollback"
    assert [r for r in records if r[2] != 200] == []  # zero failed requests
    # Requests running at a swap may finish on the model they started with; those begun after it may not.
    assert {r[3] for r in records if r[0] > promoted_at and r[1] < rollback_began} == {new}
    assert {r[3] for r in records if r[0] > rolled_back_at} == {old}
    served = httpx.get(f"{base}/v1/models").json()["models"][0]
    assert served["version"] == old
    print(f"\nloop: {len(records)} requests over {CONNECTIONS} connections, 0 failed; "
          f"promotion swap {first.get('swap_seconds', float('nan')) * 1e3:.3f} ms, "
          f"rollback swap {second.get('swap_seconds', float('nan')) * 1e3:.3f} ms")
