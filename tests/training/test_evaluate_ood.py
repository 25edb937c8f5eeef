"""make evaluate-ood: every served export on validation_random and the out-of-domain sets, one table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.api.conftest import exports_dir  # noqa: F401,F811  (the tiny exports fixture)
from training import config, evaluate_ood


def _write(path: Path, rows: list[tuple[str, int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("text,label\n" + "".join(f'"{t}",{label}\n' for t, label in rows), encoding="utf-8")


def test_scores_each_served_export_on_each_set_present(exports_dir: Path, tmp_path: Path,  # noqa: F811
                                                       monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    served = tmp_path / "exports"
    shutil.copytree(exports_dir, served)
    ood = tmp_path / "ood"
    _write(ood / "airline_dev_2000.csv", [("love this great crew", 1), ("worst delay, lost my bag", 0)])
    monkeypatch.setenv("EXPORTS_DIR", str(served))
    monkeypatch.setenv("OUT_OF_DOMAIN_DIR", str(ood))
    monkeypatch.setenv("SENTIMENT140_DIR", str(tmp_path / "absent"))
    out = tmp_path / "results" / "out_of_domain.md"
    evaluate_ood.main(["--out", str(out)])
    text = out.read_text()
    assert "| model | version | airline_dev | airline_dev_heldout |" in text and "tiny-lr" in text
    assert "tiny-bert" in text
    rows = json.loads(out.with_suffix(".json").read_text())
    # Both made-up tweets fall in the held-out fold (training.folds), which is reported beside the whole set.
    assert {(r["model"], r["dataset"], r["rows"]) for r in rows} == {
        (model, dataset, 2) for model in ("tiny-lr", "tiny-bert") for dataset in ("airline_dev", "airline_dev_heldout")}
    assert all(0 <= r["accuracy"] <= 1 for r in rows)
    assert "tweeteval_val_posneg.csv is missing" in caplog.text  # absent sets are named, not fatal


def test_two_exports_of_the_same_model_and_version_get_a_row_each(exports_dir: Path, tmp_path: Path,  # noqa: F811
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Unregistered students of one name (two `make distill` runs, say) are compared side by side, not merged."""
    first, second = tmp_path / "student-a", tmp_path / "student-b"
    shutil.copytree(exports_dir / "tiny-lr", first)
    shutil.copytree(exports_dir / "tiny-lr", second)
    ood = tmp_path / "ood"
    _write(ood / "airline_dev_2000.csv", [("love this great crew", 1), ("worst delay, lost my bag", 0)])
    monkeypatch.setenv("OUT_OF_DOMAIN_DIR", str(ood))
    monkeypatch.setenv("SENTIMENT140_DIR", str(tmp_path / "absent"))
    out = tmp_path / "out.md"
    evaluate_ood.main(["--out", str(out), "--model", str(first), "--model", str(second)])
    table = [line for line in out.read_text().splitlines() if line.startswith("| tiny-lr")]
    assert len(table) == 2 and "student-a" in table[0] + table[1] and "student-b" in table[0] + table[1]
    assert {r["export"] for r in json.loads(out.with_suffix(".json").read_text())} == {str(first), str(second)}


def test_without_any_set_the_error_names_the_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUT_OF_DOMAIN_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("SENTIMENT140_DIR", str(tmp_path / "none"))
    with pytest.raises(SystemExit, match="OUT_OF_DOMAIN_DIR"):
        evaluate_ood.main(["--out", str(tmp_path / "x.md")])
    assert config.out_of_domain_dir() == tmp_path / "none"


def _served_with_a_run_record(exports_dir: Path, root: Path) -> tuple[Path, Path]:  # noqa: F811
    """The tiny exports, tiny-lr made by run ``r…r`` whose record holds its training figures only."""
    served = root / "exports"
    shutil.copytree(exports_dir, served)
    meta_path = served / "tiny-lr" / "metadata.json"
    meta = json.loads(meta_path.read_text())  # metadata.json is not among the hashed files: edited in place
    meta["mlflow"] = {"run_id": "r" * 32}
    meta_path.write_text(json.dumps(meta))
    record = {"run_id": "r" * 32, "run_name": "tiny-lr", "tags": {"model_name": "tiny-lr"}, "params": {},
              "metrics": {"validation_random_accuracy": 0.9}, "artifacts": {}, "metric_history": {}}
    (served / "runs").mkdir()
    (served / "runs" / f"{'r' * 32}.json").write_text(json.dumps(record))
    return served, served / "runs" / f"{'r' * 32}.json"


def test_update_runs_writes_the_measured_figures_into_the_exports_run_record(
        exports_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:  # noqa: F811
    served, record_path = _served_with_a_run_record(exports_dir, tmp_path)
    ood = tmp_path / "ood"
    _write(ood / "airline_dev_2000.csv", [("love this great crew", 1), ("worst delay, lost my bag", 0)])
    _write(ood / "tweeteval_val_posneg.csv", [("what a great game", 1), ("awful, hate it", 0), ("so sad", 0)])
    monkeypatch.setenv("EXPORTS_DIR", str(served))
    monkeypatch.setenv("OUT_OF_DOMAIN_DIR", str(ood))
    monkeypatch.setenv("SENTIMENT140_DIR", str(tmp_path / "absent"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    out = tmp_path / "out_of_domain.md"
    evaluate_ood.main(["--out", str(out), "--update-runs"])
    measured = {r["dataset"]: r["accuracy"] for r in json.loads(out.with_suffix(".json").read_text())
                if r["model"] == "tiny-lr"}
    record = json.loads(record_path.read_text())
    assert record["metrics"]["validation_random_accuracy"] == 0.9  # the training run's own figure stays
    for name, rows in (("airline_dev", 2), ("tweeteval_validation", 3)):
        assert record["metrics"][f"{name}_accuracy"] == measured[name]  # the table's figure, not typed in
        assert record["metrics"][f"{name}_rows"] == rows and f"{name}_f1_macro" in record["metrics"]
        assert f"{name}_latency_p50_ms" not in record["metrics"]
        assert {f"eval/{name}/{k}.json" for k in ("confusion_matrix", "roc_curve", "classification_report")} <= set(
            record["artifacts"])
        assert "--update-runs (export tiny-lr" in record["tags"][f"evaluated_by.{name}"]
    assert "tiny-bert" in caplog.text and "no run record" in caplog.text  # an export without a record is named
    assert not (tmp_path / "mlflow.db").exists()  # no store here: none is created


def test_a_model_trained_on_a_train_fold_is_reported_on_the_held_out_fold_only(
        exports_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    served = tmp_path / "exports"
    shutil.copytree(exports_dir, served)
    meta_path = next(p for p in served.glob("*/metadata.json") if json.loads(p.read_text())["name"] == "tiny-lr")
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "trained_on_out_of_domain": ["airline_dev"]}))  # as retrain publishes it
    ood = tmp_path / "ood"
    _write(ood / "airline_dev_2000.csv", [("love this great crew", 1), ("worst delay, lost my bag", 0)])
    monkeypatch.setenv("EXPORTS_DIR", str(served))
    monkeypatch.setenv("OUT_OF_DOMAIN_DIR", str(ood))
    monkeypatch.setenv("SENTIMENT140_DIR", str(tmp_path / "absent"))
    out = tmp_path / "out_of_domain.md"
    evaluate_ood.main(["--out", str(out)])
    rows = {(r["model"], r["dataset"]) for r in json.loads(out.with_suffix(".json").read_text())}
    assert rows == {("tiny-lr", "airline_dev_heldout"), ("tiny-bert", "airline_dev"), ("tiny-bert", "airline_dev_heldout")}
