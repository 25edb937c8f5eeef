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
    assert "| model | version | airline_dev |" in text and "tiny-lr" in text and "tiny-bert" in text
    rows = json.loads(out.with_suffix(".json").read_text())
    assert {(r["model"], r["dataset"], r["rows"]) for r in rows} == {("tiny-lr", "airline_dev", 2),
                                                                     ("tiny-bert", "airline_dev", 2)}
    assert all(0 <= r["accuracy"] <= 1 for r in rows)
    assert "tweeteval_val_posneg.csv is missing" in caplog.text  # absent sets are named, not fatal


def test_without_any_set_the_error_names_the_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUT_OF_DOMAIN_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("SENTIMENT140_DIR", str(tmp_path / "none"))
    with pytest.raises(SystemExit, match="OUT_OF_DOMAIN_DIR"):
        evaluate_ood.main(["--out", str(tmp_path / "x.md")])
    assert config.out_of_domain_dir() == tmp_path / "none"
