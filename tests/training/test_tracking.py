"""MLflow tracking: the embedded default store, and a real `mlflow server` reached through MLFLOW_TRACKING_URI."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from tests.training.conftest import synthetic_tweets, write_kaggle_csv
from training import config, tracking
from training.data import load
from training.evaluate import evaluate
from training.train_lexicon import VaderModel


def _log_baseline(tmp_path: Path) -> str:
    data = load(write_kaggle_csv(tmp_path / "d.csv", synthetic_tweets(40)))
    metrics, artifacts = evaluate(VaderModel(), data, latency=False)
    run_id, version = tracking.log_model_run(name="vader", family="lexicon", params={"p": 1},
                                             evaluations={"test": (metrics, artifacts, data)}, data_hashes={"d.csv": "x"})
    assert version is None
    return run_id


def test_default_store_is_the_project_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert config.tracking_uri() == f"sqlite:///{config.PROJECT_ROOT / 'mlflow.db'}"


def test_run_logs_metrics_tags_and_artifacts(mlflow_store: str, tmp_path: Path) -> None:
    run_id = _log_baseline(tmp_path)  # before the client: logging points MLflow at the store
    run = mlflow.MlflowClient().get_run(run_id)
    assert run.data.metrics["test_accuracy"] > 0.5
    assert run.data.tags["model_family"] == "lexicon" and run.data.tags["data_sha256.d.csv"] == "x"
    paths = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "eval/test")}
    assert "eval/test/misclassified_sample.csv" in paths and "eval/test/roc_curve.json" in paths
    experiment = mlflow.get_experiment_by_name(config.EXPERIMENT_NAME)
    assert experiment.artifact_location.endswith("mlartifacts")


@pytest.mark.slow
def test_tracking_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                               f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination", str(tmp_path / "art"),
                               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        uri = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.fail("mlflow server did not start")
                time.sleep(0.5)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        run_id = _log_baseline(tmp_path)
        assert mlflow.MlflowClient(uri).get_run(run_id).data.tags["model_name"] == "vader"
        assert any((tmp_path / "art").rglob("roc_curve.json"))
    finally:
        server.terminate()
        server.wait(timeout=30)
