"""training.evaluate: the sets every model is scored on, the out-of-domain ones included when present."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from tests.api.conftest import exports_dir  # noqa: F401  (the tiny exports fixture)
from tests.training.conftest import synthetic_tweets, write_kaggle_csv
from training import config, evaluate
from training.data import Dataset

POSITIVE_WORDS = ("love", "great", "thanks")


class KeywordModel:
    """P(positive) 0.9 for a tweet with a positive word, else 0.2."""

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        p = np.array([0.9 if any(w in t for w in POSITIVE_WORDS) else 0.2 for t in texts])
        return np.column_stack([1 - p, p])


def write_out_of_domain(folder: Path, files: Sequence[str] = tuple(config.OUT_OF_DOMAIN_SETS)) -> Path:
    """Made-up ``text,label`` files named as the out-of-domain sets (never rows of the real ones)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [("love the crew, thanks", 1), ("flight late again", 0), ("great seat", 1), ("lost my bag", 0),
            ("thanks for nothing, delayed", 0)]
    for file in files:
        (folder / file).write_text("text,label\n" + "".join(f'"{t}",{y}\n' for t, y in rows), encoding="utf-8")
    return folder


def test_an_absent_folder_is_one_log_line_and_no_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("OUT_OF_DOMAIN_DIR", str(tmp_path / "absent"))
    with caplog.at_level(logging.INFO, logger="training.evaluate"):
        assert evaluate.out_of_domain_sets() == {}
    assert [r.getMessage() for r in caplog.records] == [
        f"no out-of-domain folder at {tmp_path / 'absent'} (OUT_OF_DOMAIN_DIR): out-of-domain sets not scored"]


def test_each_file_present_is_a_set_and_a_missing_one_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("OUT_OF_DOMAIN_DIR", str(write_out_of_domain(tmp_path / "ood", ["airline_dev_2000.csv"])))
    found = evaluate.out_of_domain_sets()
    assert list(found) == ["airline_dev"] and len(found["airline_dev"]) == 5
    assert "tweeteval_val_posneg.csv is missing: tweeteval_validation not scored" in caplog.text


def test_evaluate_sets_scores_every_set_and_measures_latency_once() -> None:
    data = Dataset(["love it", "awful", "great day", "lost bag"] * 10, np.array([1, 0, 1, 0] * 10))
    scored = evaluate.evaluate_sets(KeywordModel(), {"test": data, config.VALIDATION_RANDOM_SET: data, "airline_dev": data})
    assert list(scored) == ["test", config.VALIDATION_RANDOM_SET, "airline_dev"]
    with_latency = [name for name, (metrics, _, _) in scored.items() if "latency_p50_ms" in metrics]
    assert with_latency == [config.VALIDATION_RANDOM_SET]
    metrics, artifacts, same = scored["airline_dev"]
    assert metrics["accuracy"] == 1.0 and metrics["f1_macro"] == 1.0 and same is data
    assert artifacts["confusion_matrix"]["matrix"] == [[20, 0], [0, 20]]


def test_the_command_reports_the_out_of_domain_sets_beside_the_data(
        exports_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OUT_OF_DOMAIN_DIR", str(write_out_of_domain(tmp_path / "ood")))
    data = write_kaggle_csv(tmp_path / "held_out.csv", synthetic_tweets(20))
    evaluate.main(["--model", str(exports_dir / "tiny-lr"), "--data", str(data), "--no-latency"])
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == 20 and set(report["out_of_domain"]) == {"tweeteval_validation", "airline_dev"}
    airline = report["out_of_domain"]["airline_dev"]
    assert airline["rows"] == 5 and {"accuracy", "f1_macro", "roc_auc"} <= set(airline["metrics"])
    assert "latency_p50_ms" not in airline["metrics"] and np.array(airline["confusion_matrix"]["matrix"]).sum() == 5

    evaluate.main(["--model", str(exports_dir / "tiny-lr"), "--data", str(data), "--no-latency",
                   "--no-out-of-domain"])
    assert json.loads(capsys.readouterr().out)["out_of_domain"] == {}
