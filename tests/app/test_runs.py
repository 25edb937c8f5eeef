"""Seeding an MLflow store from run records, reading it back, and shaping the runs for the charts."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from app import runs
from tests.app.conftest import run_record, write_run_records


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, list[str]]:
    root = tmp_path_factory.mktemp("mlflow")
    runs_dir = root / "runs"
    write_run_records(runs_dir)
    (runs_dir / "broken.json").write_text("{not json")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    created = runs.seed_from_records(runs_dir, uri)
    return uri, runs_dir, created


def test_seeding_creates_one_run_per_record_then_nothing(seeded: tuple[str, Path, list[str]]) -> None:
    uri, runs_dir, created = seeded
    assert len(created) == 3
    assert runs.seed_from_records(runs_dir, uri) == []  # idempotent


def test_new_records_are_added_beside_seeded_and_trained_runs(seeded: tuple[str, Path, list[str]],
                                                              tmp_path: Path) -> None:
    uri, runs_dir, _ = seeded
    extra = tmp_path / "more"
    extra.mkdir()
    for path in runs_dir.glob("*.json"):
        (extra / path.name).write_bytes(path.read_bytes())
    record = run_record("d" * 32, "tiny-new", "classical", 0.81, 0.3)
    (extra / f"{record['run_id']}.json").write_text(json.dumps(record))
    assert len(runs.seed_from_records(extra, uri)) == 1
    frame = runs.search_runs(uri)
    assert set(frame["tags.model_name"]) >= {"tiny-tfidf", "tiny-minilm", "tiny-vader", "tiny-new"}


def test_search_runs_gives_metrics_params_tags_and_times(seeded: tuple[str, Path, list[str]]) -> None:
    uri, _, _ = seeded
    frame = runs.search_runs(uri)
    row = frame[frame["tags.model_name"] == "tiny-minilm"].iloc[0]
    assert row["metrics.test_accuracy"] == pytest.approx(0.86)
    assert row["params.max_length"] == "64"
    assert row["tags.seeded_from"] == "b" * 32
    assert row["status"] == "FINISHED"
    assert row["start_time"] == pd.Timestamp(1_760_000_000_000, unit="ms", tz="UTC")


def test_artifacts_and_metric_history_survive_seeding(seeded: tuple[str, Path, list[str]]) -> None:
    uri, _, _ = seeded
    frame = runs.search_runs(uri)
    run_id = frame[frame["tags.model_name"] == "tiny-minilm"]["run_id"].iloc[0]
    matrix = runs.load_artifact(uri, run_id, "eval/test/confusion_matrix.json")
    assert matrix == {"labels": ["negative", "positive"], "matrix": [[40, 10], [8, 42]]}
    assert runs.load_artifact(uri, run_id, "eval/validation/nothing.json") is None
    history = runs.metric_history(uri, run_id, "train_loss")
    assert list(history["step"]) == list(range(0, 40, 2))
    assert history["value"].iloc[0] == pytest.approx(0.7)


def test_load_records_without_folder() -> None:
    assert runs.load_records("/nonexistent/runs") == []
    assert runs.seed_from_records("/nonexistent/runs", "sqlite:///unused.db") == []


def _frame() -> pd.DataFrame:
    return pd.DataFrame({
        "run_id": ["r1", "r2", "r3", "r4"],
        "status": ["FINISHED", "FINISHED", "FINISHED", "FINISHED"],
        "start_time": pd.to_datetime([1, 2, 3, 4], unit="D"),
        "tags.model_name": ["lr", "lr", "minilm", None],
        "tags.model_family": ["classical", "classical", "transformer", None],
        "metrics.test_accuracy": [0.78, 0.80, 0.86, 0.5],
        "metrics.test_f1_macro": [0.77, 0.79, 0.85, None],
        "metrics.validation_accuracy": [None, None, 0.84, None],
        "metrics.test_latency_p50_ms": [0.5, 0.4, 6.0, None],
        "params.C": ["1", "2", None, None],
    })


def test_latest_per_model_keeps_the_newest_model_run() -> None:
    latest = runs.latest_per_model(_frame())
    assert list(latest["model"]) == ["lr", "minilm"] and list(latest["run_id"]) == ["r2", "r3"]


def test_tidy_metrics_and_available_sets() -> None:
    latest = runs.latest_per_model(_frame())
    tidy = runs.tidy_metrics(latest)
    assert set(tidy["set"]) == {"test", "validation"}
    assert tidy[(tidy["model"] == "minilm") & (tidy["metric"] == "accuracy") & (tidy["set"] == "test")][
        "value"].item() == 0.86
    assert runs.available_sets(latest) == ["test", "validation"]


def test_tradeoff_points_take_latency_from_the_set_where_it_was_measured() -> None:
    points = runs.tradeoff_points(runs.latest_per_model(_frame()), "validation")
    assert points.set_index("model")["latency_ms"].to_dict() == {"lr": 0.4, "minilm": 6.0}
    assert points.set_index("model")["accuracy"].isna().to_dict() == {"lr": True, "minilm": False}


def test_runs_table_puts_the_champion_first() -> None:
    table = runs.runs_table(_frame(), champion="minilm")
    assert table["model"].iloc[0] == "minilm" and bool(table["champion"].iloc[0])
    assert {"test_accuracy", "C"} <= set(table.columns)
    assert len(table) == 3  # runs without a model name are left out


def test_a_parameter_never_collides_with_a_column_the_table_builds() -> None:
    """The mpnet run record has a parameter named ``family``: the Compare page crashed on the duplicate column."""
    frame = _frame().assign(**{"params.family": ["minilm", "x", "mpnet", None], "params.model": ["m", "m", "m", None],
                               "params.test_accuracy": ["p", "p", "p", None]})
    table = runs.runs_table(frame, champion="minilm")
    assert table.columns.is_unique
    assert table["family"].tolist() == ["transformer", "classical", "classical"]  # the built column, not the param
    assert {"param family", "param model", "param test_accuracy", "test_accuracy", "C"} <= set(table.columns)
    assert table[table["family"].isin(["classical"])]["model"].tolist() == ["lr", "lr"]  # the page's filter


def test_seeding_is_importable_without_streamlit() -> None:
    """Training code calls ``app.runs.seed_from_records``: importing it must not pull Streamlit or MLflow."""
    import subprocess
    import sys

    code = "import sys, app.runs; print('streamlit' in sys.modules, 'mlflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(runs.__file__).parents[1]).stdout
    assert out.split() == ["False", "False"]


def test_command_line_seeds_ahead_of_time(seeded: tuple[str, Path, list[str]]) -> None:
    uri, runs_dir, _ = seeded
    assert runs.main(["--runs-dir", str(runs_dir), "--tracking-uri", uri]) == 0
    assert len(runs.search_runs(uri)) >= 3


# -- issue 19: the out-of-domain sets ------------------------------------------------------------------------------
def test_a_seeded_run_is_topped_up_with_what_its_record_gained(tmp_path: Path) -> None:
    """Records of older runs gain measured out-of-domain figures; a store seeded before gets them, once."""
    runs_dir, uri = tmp_path / "runs", f"sqlite:///{tmp_path / 'mlflow.db'}"
    write_run_records(runs_dir)
    assert len(runs.seed_from_records(runs_dir, uri)) == 3
    path = runs_dir / f"{'b' * 32}.json"
    record = json.loads(path.read_text())
    record["metrics"] |= {"airline_dev_accuracy": 0.79, "test_accuracy": 0.1}  # a changed value is not rewritten
    record["tags"] |= {"evaluated_by.airline_dev": "a test", "model_family": "changed"}
    record["artifacts"]["eval/airline_dev/roc_curve.json"] = {"fpr": [0, 1], "tpr": [0, 1], "auc": 0.5}
    path.write_text(json.dumps(record))
    assert runs.seed_from_records(runs_dir, uri) == []  # no new run
    frame = runs.search_runs(uri)
    assert len(frame) == 3
    row = frame[frame["tags.model_name"] == "tiny-minilm"].iloc[0]
    assert row["metrics.airline_dev_accuracy"] == pytest.approx(0.79)
    assert row["metrics.test_accuracy"] == pytest.approx(0.86) and row["tags.model_family"] == "transformer"
    assert row["tags.evaluated_by.airline_dev"] == "a test"
    assert runs.load_artifact(uri, row["run_id"], "eval/airline_dev/roc_curve.json")["auc"] == 0.5
    assert runs.load_artifact(uri, row["run_id"], "eval/test/confusion_matrix.json") is not None
    assert frame[frame["tags.model_name"] != "tiny-minilm"]["metrics.airline_dev_accuracy"].isna().all()
    assert runs.seed_from_records(runs_dir, uri) == []


def test_accuracy_by_set_and_the_models_a_set_lacks() -> None:
    latest = runs.latest_per_model(_frame().assign(**{"metrics.airline_dev_accuracy": [None, 0.74, 0.8, None]}))
    table = runs.accuracy_by_set(latest, ["test", "airline_dev", "tweeteval_validation"])
    assert list(table.columns) == ["model", "family", "test", "airline_dev", "tweeteval_validation"]
    assert table["airline_dev"].tolist() == [0.74, 0.8] and table["tweeteval_validation"].isna().all()
    assert runs.unscored(latest, "airline_dev") == [] and runs.unscored(latest, "validation") == ["lr"]
    assert runs.unscored(latest, "tweeteval_validation") == ["lr", "minilm"]


def test_the_runs_table_always_has_each_sets_accuracy_and_shows_a_missing_one_as_a_dash() -> None:
    table = runs.runs_table(_frame(), champion="minilm")
    accuracy = [c for c in table.columns if c.endswith("_accuracy")]
    assert accuracy == [f"{s}_accuracy" for s in runs.EVAL_SETS]  # in the sets' order, present or not
    html = runs.styled(table, highlight="champion").to_html()
    assert runs.MISSING in html and "0.8600" in html and "#fff3b0" in html
    assert table["airline_dev_accuracy"].isna().all()  # the data underneath stays numeric
