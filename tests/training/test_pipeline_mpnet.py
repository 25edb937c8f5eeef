"""The opt-in mpnet family through the pipeline on made-up tweets: budget pause → resume → MLflow → export → serve."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from sentiment.exports import read_metadata
from sentiment.predictor import load_predictor
from tests.training.conftest import synthetic_tweets, write_kaggle_csv
from training import config, export, mpnet_weights, pipeline
from training.tracking import setup
from training.train_transformer import PAUSED_EXIT


def test_mpnet_is_opt_in_and_missing_parts_stop_the_pipeline_before_training(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_store: str) -> None:
    assert "mpnet" not in pipeline.ALL_MODELS and "mpnet" in pipeline.OPT_IN_MODELS
    monkeypatch.setenv("ARTIFACTS_DIR", str(tmp_path / "artifacts"))  # nothing assembled there

    def missing() -> list[Path]:
        raise mpnet_weights._missing_parts_error(list(mpnet_weights.PART_PACKAGES))

    monkeypatch.setattr(mpnet_weights, "find_chunks", missing)
    with pytest.raises(SystemExit, match="make install-mpnet"):
        pipeline.main(["--models", "tfidf-lr,mpnet", "--data", str(tmp_path / "absent.csv")])
    setup()  # point MLflow at this test's store (an earlier test may have pointed it elsewhere)
    assert mlflow.search_runs(search_all_experiments=True).empty


@pytest.mark.slow
def test_mpnet_pauses_resumes_and_is_logged_registered_and_exported(tmp_path: Path, mlflow_store: str) -> None:
    data = write_kaggle_csv(tmp_path / "train.csv", synthetic_tweets(240))
    held_out = write_kaggle_csv(tmp_path / "validation_random.csv", synthetic_tweets(60, seed=7))
    args = ["--data", str(data), "--validation-random", str(held_out), "--models", "mpnet", "--tiny",
            "--work-dir", str(tmp_path / "work"), "--threads", "1", "--log-every", "1"]
    with pytest.raises(SystemExit) as paused:
        pipeline.main([*args, "--mpnet-time-budget-min", "1e-6"])
    assert paused.value.code == PAUSED_EXIT
    assert (tmp_path / "work" / "mpnet" / "checkpoint.pt").exists()
    setup()
    assert mlflow.search_runs(search_all_experiments=True).empty

    pipeline.main(args)  # the same command without a budget resumes and finishes
    export.main(["--exports-dir", str(tmp_path / "exports")])

    runs = mlflow.search_runs(experiment_names=[config.EXPERIMENT_NAME])
    run = runs.iloc[0]
    assert len(runs) == 1 and run["tags.model_name"] == "mpnet"
    # model_family stays "transformer": the Compare page groups by it and draws transformer loss curves.
    assert run["tags.model_family"] == "transformer" and run["tags.transformer_family"] == "mpnet"
    assert run["params.family"] == "mpnet" and float(run["params.learning_rate"]) == 3e-5
    assert run["metrics.parity_max_abs_diff"] < 1e-4 and "metrics.int8_accuracy_drop" in runs
    client = mlflow.MlflowClient()
    aliases = client.get_registered_model(config.REGISTERED_MODEL).aliases
    assert {"mpnet", config.CHAMPION_ALIAS} <= set(aliases)
    assert len(client.get_metric_history(run["run_id"], "train_loss")) >= 2

    folder = tmp_path / "exports" / "mpnet"
    meta = read_metadata(folder)
    assert meta["architecture"] == "mpnet" and meta["mlflow"]["run_id"] == run["run_id"]
    assert meta["aliases"] == ["mpnet", config.CHAMPION_ALIAS]
    proba = load_predictor(folder).predict_proba(["so happy today", "awful tired day"])
    assert proba.shape == (2, 2)
