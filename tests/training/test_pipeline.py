"""End to end on a few hundred made-up tweets: train (tiny BERT, TF-IDF, VADER) → MLflow → export → serve."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest

from sentiment.exports import read_metadata
from sentiment.predictor import discover, load_predictor
from tests.training.conftest import synthetic_tweets, write_kaggle_csv
from tests.training.test_evaluate import write_out_of_domain
from training import config, export, pipeline

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pipeline")
    patch = pytest.MonkeyPatch()
    patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    patch.setenv("HF_HUB_OFFLINE", "1")
    # Made-up out-of-domain sets (the real ones stay in ../shared): every model is scored on them too.
    patch.setenv("OUT_OF_DOMAIN_DIR", str(write_out_of_domain(root / "out_of_domain")))
    rows = synthetic_tweets(400)
    data = write_kaggle_csv(root / "train.csv", rows)
    held_out = write_kaggle_csv(root / "validation_random.csv", synthetic_tweets(120, seed=7))
    pipeline.main(["--data", str(data), "--validation-random", str(held_out), "--models", "vader,tfidf-lr,minilm",
                   "--tiny", "--work-dir", str(root / "work"), "--threads", "1", "--log-every", "2"])
    export.main(["--exports-dir", str(root / "exports")])
    yield {"root": root, "exports": root / "exports", "held_out": held_out, "texts": [t for t, _ in rows]}
    patch.undo()


def test_runs_are_logged_registered_and_champion_is_set(trained: dict) -> None:
    runs = mlflow.search_runs(experiment_names=[config.EXPERIMENT_NAME])
    assert set(runs["tags.model_name"]) == {"vader", "tfidf-lr", "minilm"}
    for column in ("metrics.test_accuracy", "metrics.validation_random_accuracy", "metrics.validation_random_ece",
                   "metrics.validation_random_latency_p50_ms", "metrics.validation_random_throughput_batch32",
                   "metrics.tweeteval_validation_accuracy", "metrics.airline_dev_f1_macro",
                   "tags.data_sha256.airline_dev_2000.csv", "tags.git_commit", "tags.preprocessing_version", "tags.data_sha256.train.csv"):
        assert runs[column].notna().all(), column
    client = mlflow.MlflowClient()
    aliases = client.get_registered_model(config.REGISTERED_MODEL).aliases
    assert {"tfidf-lr", "minilm", config.CHAMPION_ALIAS} <= set(aliases)
    minilm = runs[runs["tags.model_name"] == "minilm"].iloc[0]
    assert len(client.get_metric_history(minilm["run_id"], "train_loss")) >= 2


def test_exports_load_and_match_the_in_memory_models(trained: dict) -> None:
    folders = {p.name for p in discover(trained["exports"])}
    assert folders == {"tfidf-lr", "minilm"}
    for name in folders:
        meta = read_metadata(trained["exports"] / name)
        assert meta["mlflow"]["run_id"] and meta["version"] != "unregistered"
        assert meta["metrics"]["other"]["parity_max_abs_diff"] < 1e-3
        proba = load_predictor(trained["exports"] / name).predict_proba(["so happy today", "awful tired day"])
        assert proba.shape == (2, 2) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    minilm = read_metadata(trained["exports"] / "minilm")
    assert set(minilm["variants"]) == {"int8", "fp32"} and minilm["default_variant"] == "int8"
    assert minilm["fused_ops"]["Attention"] == 2
    # The classical model learns the synthetic signal; the tiny random BERT is only checked for plumbing.
    assert read_metadata(trained["exports"] / "tfidf-lr")["metrics"]["validation_random"]["accuracy"] > 0.9
    champions = [n for n in folders if "champion" in read_metadata(trained["exports"] / n)["aliases"]]
    assert len(champions) == 1


def test_run_records_hold_charts_but_no_tweet_text(trained: dict) -> None:
    records = list((trained["exports"] / "runs").glob("*.json"))
    assert len(records) == 3
    text = "\n".join(p.read_text() for p in records)
    assert not any(tweet in text for tweet in trained["texts"])
    record = json.loads(records[0].read_text())
    assert "eval/validation_random/roc_curve.json" in record["artifacts"]
    assert "eval/airline_dev/roc_curve.json" in record["artifacts"]
    assert {"validation_random_accuracy", "tweeteval_validation_accuracy", "airline_dev_accuracy"} <= set(
        record["metrics"])


def test_export_keeps_files_unless_the_model_improves(trained: dict) -> None:
    before = (trained["exports"] / "tfidf-lr" / "model.onnx").stat().st_mtime_ns
    export.main(["--exports-dir", str(trained["exports"]), "--models", "tfidf-lr"])
    assert (trained["exports"] / "tfidf-lr" / "model.onnx").stat().st_mtime_ns == before


def test_export_keeps_a_better_served_champion_the_registry_does_not_know(trained: dict, tmp_path: Path) -> None:
    """A fresh store beside committed exports (e.g. only a distilled student trained here) must not crown its
    model over a better served champion that it never saw."""
    import shutil

    from sentiment.exports import write_metadata
    from sentiment.manifest import ModelEntry, read_manifest
    from sentiment.publish import publish_state

    root = tmp_path / "exports"
    shutil.copytree(trained["exports"], root)
    shutil.copytree(root / "tfidf-lr", root / "elder")
    meta = read_metadata(root / "elder") | {"name": "elder", "version": "9", "aliases": ["elder", "champion"],
                                            "metrics": {"validation_random": {"accuracy": 1.0, "latency_p50_ms": 0.0}}}
    meta.pop("files", None)
    write_metadata(root / "elder", meta)
    for name in ("tfidf-lr", "minilm"):  # as committed beside the elder champion
        meta = read_metadata(root / name)
        meta["aliases"] = [name]
        meta.pop("files", None)
        write_metadata(root / name, meta)
    publish_state(root, "elder", {name: ModelEntry(name, str(read_metadata(root / name)["version"]))
                                  for name in ("elder", "tfidf-lr", "minilm")}, "export")

    export.main(["--exports-dir", str(root)])
    assert read_manifest(root).champion == "elder"
    assert [n for n in ("elder", "tfidf-lr", "minilm") if "champion" in read_metadata(root / n)["aliases"]] == ["elder"]

    # (tfidf-lr, the registry's champion, scores 1.0 on this synthetic set too: the elder wins on latency.)
    # Once the elder scores below the registry's champion, the registry's choice is exported.
    meta = read_metadata(root / "elder") | {"metrics": {"validation_random": {"accuracy": 0.1}}}
    meta.pop("files", None)
    write_metadata(root / "elder", meta)
    export.main(["--exports-dir", str(root)])
    assert read_manifest(root).champion != "elder" and "champion" not in read_metadata(root / "elder")["aliases"]


def test_evaluate_prints_the_json_contract(trained: dict) -> None:
    out = subprocess.run([sys.executable, "-m", "training.evaluate", "--model", str(trained["exports"] / "tfidf-lr"),
                          "--data", str(trained["held_out"])], capture_output=True, text=True, check=True,
                         cwd=config.PROJECT_ROOT)
    report = json.loads(out.stdout)
    assert report["rows"] == 120
    assert set(report["metrics"]) >= {"accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc", "log_loss",
                                      "ece", "latency_p50_ms", "latency_p95_ms", "throughput_batch32"}
    assert np.array(report["confusion_matrix"]["matrix"]).sum() == 120


def test_evaluate_accepts_an_mlflow_model_uri(trained: dict) -> None:
    out = subprocess.run([sys.executable, "-m", "training.evaluate", "--model",
                          f"models:/{config.REGISTERED_MODEL}@tfidf-lr", "--data", str(trained["held_out"]),
                          "--no-latency", "--log-to-mlflow"], capture_output=True, text=True, check=True,
                         cwd=config.PROJECT_ROOT)
    report = json.loads(out.stdout)
    assert report["metrics"]["accuracy"] > 0.9 and report["mlflow_run_id"]


def test_evaluate_explains_a_missing_model(tmp_path: Path, trained: dict) -> None:
    out = subprocess.run([sys.executable, "-m", "training.evaluate", "--model", str(tmp_path / "nothing"),
                          "--data", str(trained["held_out"])], capture_output=True, text=True, cwd=config.PROJECT_ROOT)
    assert out.returncode != 0 and "error" in out.stderr
