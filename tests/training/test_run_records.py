"""Figures measured after training go into the run record and, when this machine has it, into the MLflow run."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow

from training import run_records

EVALUATION = ({"accuracy": 0.75, "f1_macro": 0.7, "rows": 4.0},
              {"confusion_matrix": {"labels": ["negative", "positive"], "matrix": [[1, 1], [0, 2]]},
               "roc_curve": {"fpr": [0, 1], "tpr": [0, 1], "auc": 0.5}, "classification_report": {"accuracy": 0.75},
               "misclassified": [{"index": 0, "label": "negative", "p_positive": 0.6}]})


def _record(folder: Path, run_id: str) -> Path:
    path = folder / f"{run_id}.json"
    path.write_text(json.dumps({"run_id": run_id, "metrics": {"validation_random_accuracy": 0.8}, "tags": {},
                                "artifacts": {}}))
    return path


def test_record_path_follows_the_exports_run_id(tmp_path: Path) -> None:
    path = _record(tmp_path, "a" * 32)
    assert run_records.record_path({"mlflow": {"run_id": "a" * 32}}, tmp_path) == path
    assert run_records.record_path({"mlflow": {"run_id": "b" * 32}}, tmp_path) is None
    assert run_records.record_path({"mlflow": {}}, tmp_path) is None


def test_the_record_and_the_run_in_the_store_get_the_figures(tmp_path: Path, mlflow_store: str) -> None:
    client = mlflow.MlflowClient(tracking_uri=mlflow_store)
    run = client.create_run(client.create_experiment("x"))
    client.log_metric(run.info.run_id, "validation_random_accuracy", 0.8)
    path = _record(tmp_path, run.info.run_id)
    run_records.add_evaluations(path, {"airline_dev": EVALUATION}, "a test")
    record = json.loads(path.read_text())
    assert record["metrics"] == {"validation_random_accuracy": 0.8, "airline_dev_accuracy": 0.75,
                                 "airline_dev_f1_macro": 0.7, "airline_dev_rows": 4.0}
    assert sorted(record["artifacts"]) == ["eval/airline_dev/classification_report.json",
                                           "eval/airline_dev/confusion_matrix.json", "eval/airline_dev/roc_curve.json"]
    assert record["tags"] == {"evaluated_by.airline_dev": "a test"}
    assert path.read_text() == json.dumps(record, indent=1, sort_keys=True) + "\n"  # as training.export writes them
    logged = client.get_run(run.info.run_id).data
    assert logged.metrics["airline_dev_accuracy"] == 0.75 and logged.tags["evaluated_by.airline_dev"] == "a test"
    # Through this store's client: an earlier test may have set another tracking URI for the whole process.
    roc = client.download_artifacts(run.info.run_id, "eval/airline_dev/roc_curve.json", str(tmp_path))
    assert json.loads(Path(roc).read_text())["auc"] == 0.5
