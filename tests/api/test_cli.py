"""The command line: list models, predict texts, score a CSV into another CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from api.cli import main, score_csv


def test_models(exports_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--exports-dir", str(exports_dir), "models"]) == 0
    names = [json.loads(line)["name"] for line in capsys.readouterr().out.splitlines()]
    assert names == ["tiny-bert", "tiny-lr"]


def test_predict_uses_the_default_or_the_named_model(exports_dir: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEFAULT_MODEL", raising=False)
    assert main(["--exports-dir", str(exports_dir), "predict", "love great happy", "worst awful angry 😠"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["model"] for line in lines] == ["tiny-bert", "tiny-bert"]  # the champion
    assert main(["--exports-dir", str(exports_dir), "predict", "--model", "tiny-lr", "love great happy",
                 "worst awful angry 😠"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["label"] for line in lines] == ["positive", "negative"]
    assert lines[1]["text"] == "worst awful angry 😠"
    assert sum(lines[0]["probabilities"].values()) == pytest.approx(1, abs=1e-5)


def test_unknown_model_is_an_error_not_a_traceback(exports_dir: Path) -> None:
    assert main(["--exports-dir", str(exports_dir), "predict", "--model", "nope", "hi"]) == 1
    assert main(["--exports-dir", str(exports_dir / "missing"), "predict", "hi"]) == 1


def test_score_csv_with_header(exports_dir: Path, tmp_path: Path, predictors) -> None:
    source, target = tmp_path / "in.csv", tmp_path / "out.csv"
    rows = [["id", "text"], ["1", "love great happy"], ["2", "worst, awful \"angry\"\nday"], ["3", "   "],
            ["4", "😀 émoji"]]
    with source.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    code = main(["--exports-dir", str(exports_dir), "score", str(source), str(target), "--model", "tiny-lr",
                 "--batch-size", "2", "--no-progress"])
    assert code == 0
    with target.open(newline="", encoding="utf-8") as handle:
        out = list(csv.reader(handle))
    # Spark's layout: the input columns, then the engine's OUTPUT_COLUMNS.
    assert out[0] == ["id", "text", "label", "confidence", "p_positive", "model", "version", "reason"]
    assert [row[:2] for row in out[1:]] == [row for row in rows[1:]]
    assert out[1][2] == "positive" and out[2][2] == "negative"
    assert out[3][2:5] == ["", "", ""] and out[3][7] == "empty"  # no text, no prediction, a reason
    assert out[1][5:8] == ["tiny-lr", predictors["tiny-lr"].version, ""]
    expected = predictors["tiny-lr"].predict_proba(["love great happy"])[0, 1]
    assert float(out[1][4]) == pytest.approx(float(expected), abs=1e-5)
    assert float(out[1][3]) == pytest.approx(float(expected), abs=1e-5)  # positive: confidence is P(positive)
    assert not (tmp_path / "out.csv.partial").exists()


def test_score_csv_without_header_by_index(predictors, tmp_path: Path) -> None:
    """Sentiment140's raw layout: no header, text in column 5, latin-1."""
    source, target = tmp_path / "raw.csv", tmp_path / "scored.csv"
    source.write_bytes('"0","1","date","NO_QUERY","user","caf\xe9 was awful"\n'.encode("latin-1")
                       + b'"4","2","date","NO_QUERY","user2","great crew"\n')
    counts = score_csv(predictors["tiny-lr"], source, target, text_column="5", header=False, encoding="latin-1",
                       progress=False)
    assert counts == {"rows": 2, "scored": 2, "empty": 0, "malformed": 0}
    with target.open(newline="", encoding="utf-8") as handle:
        out = list(csv.reader(handle))
    assert out[0][:6] == [f"column_{i}" for i in range(6)]
    assert out[0][6:] == ["label", "confidence", "p_positive", "model", "version", "reason"]
    assert out[1][5] == "café was awful"


def test_a_row_with_more_or_fewer_fields_than_the_header_is_flagged_not_scored(predictors, tmp_path: Path) -> None:
    """An unquoted comma splits a tweet; a short row puts another field under "text": neither is scored."""
    source, target = tmp_path / "in.csv", tmp_path / "out.csv"
    source.write_text('id,text,lang\n1,great crew,en\n2,worst airline, lost my bag,en\n3,en\n'
                      '4,"late, again",en\n', encoding="utf-8")
    counts = score_csv(predictors["tiny-lr"], source, target, progress=False)
    assert counts == {"rows": 4, "scored": 2, "empty": 0, "malformed": 2}
    with target.open(newline="", encoding="utf-8") as handle:
        out = list(csv.reader(handle))
    assert all(len(row) == len(out[0]) for row in out)  # every row under the header's columns
    by_id = {row[0]: dict(zip(out[0], row, strict=True)) for row in out[1:]}
    assert by_id["2"]["reason"] == by_id["3"]["reason"] == "malformed"
    assert by_id["2"]["label"] == by_id["3"]["label"] == ""
    assert by_id["1"]["label"] and by_id["4"]["label"] and by_id["4"]["text"] == "late, again"


def test_score_csv_missing_column(exports_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("id,body\n1,hello\n")
    assert main(["--exports-dir", str(exports_dir), "score", str(source), str(tmp_path / "o.csv"),
                 "--no-progress"]) == 1


def test_score_csv_reads_a_byte_order_mark_before_the_encoding_asked(predictors, tmp_path: Path) -> None:
    """A UTF-16 file (Excel's "Unicode text") was read as UTF-8 or latin-1: its mark and NULs became a tweet."""
    source, target = tmp_path / "in.csv", tmp_path / "out.csv"
    source.write_bytes("text,id\ncafé was awful,1\ngreat crew,2\n".encode("utf-16"))
    counts = score_csv(predictors["tiny-lr"], source, target, encoding="latin-1", progress=False)
    assert counts == {"rows": 2, "scored": 2, "empty": 0, "malformed": 0}
    with target.open(newline="", encoding="utf-8") as handle:
        out = list(csv.reader(handle))
    assert out[0][:2] == ["text", "id"] and [row[0] for row in out[1:]] == ["café was awful", "great crew"]
