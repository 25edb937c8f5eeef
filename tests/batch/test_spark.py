"""Batch scoring on a real local Spark (a JVM, no mock), checked against the API's own answers.

One SparkSession for the module (a JVM start costs seconds). Skipped only where no Java runtime is found:
`make install-java` (and CI's .ci/run) installs Debian's openjdk-17-jre-headless.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from pyspark.errors import PySparkException

from api.main import create_app
from batch.scoring import MALFORMED, OUTPUT_COLUMNS
from batch.spark import choose_model, main, score, spark_session
from sentiment.exports import ExportError
from sentiment.scoring import EMPTY, MISSING, TOO_LONG
from tests.api.conftest import build_classical_export, build_transformer_export, make_settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
REAL_EXPORTS = PROJECT_ROOT / "exports"

if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip("no Java runtime (java on PATH or JAVA_HOME): Spark needs Java 17; run `make install-java`",
                allow_module_level=True)

# Made up here; never rows of the shared data.
_GOOD = ["love", "great", "thanks", "lovely", "happy", "smooth", "best", "amazing"]
_BAD = ["hate", "delayed", "lost", "awful", "rude", "worst", "cancelled", "stuck"]
_NOUNS = ["flight", "crew", "seat", "bag", "gate", "food", "pilot", "lounge"]
BAD_ROWS = {"900": ("", MISSING), "901": ("   ", EMPTY), "902": ("&nbsp;", EMPTY), "903": ("x" * 1001, TOO_LONG)}


def made_up_tweets(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    tweets = []
    for i in range(n):
        words = rng.sample(_GOOD if i % 2 else _BAD, 2) + rng.sample(_NOUNS, 2)
        rng.shuffle(words)
        extra = rng.choice(["", " @crew", " http://t.co/x", ", \"really\"", " 😀", " café", " :("])
        tweets.append(" ".join(words) + extra)
    return tweets


@pytest.fixture(scope="module")
def spark() -> Iterator:
    # Small Arrow batches: a 130-row file arrives in several batches, each cut again into predictor chunks.
    session = spark_session("local[2]", [("spark.ui.enabled", "false"), ("spark.sql.shuffle.partitions", "2"),
                                         ("spark.sql.execution.arrow.maxRecordsPerBatch", "50")])
    yield session
    session.stop()


@pytest.fixture(scope="module")
def tweets_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spark-in") / "tweets.csv"
    rows = [[str(i), text] for i, text in enumerate(made_up_tweets(130))]
    rows += [[key, text] for key, (text, _) in BAD_ROWS.items()]
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["id", "text"], *rows])
    return path


@pytest.fixture(scope="module")
def tiny_exports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("spark-exports")
    build_transformer_export(root / "tiny-bert", aliases=["champion"])
    build_classical_export(root / "tiny-lr")
    return root


@pytest.fixture(scope="module")
def tfidf_lr():
    return choose_model("tfidf-lr", REAL_EXPORTS)


@pytest.fixture(scope="module")
def api_clients(tiny_exports: Path) -> Iterator[dict[Path, TestClient]]:
    clients = {}
    # Only the committed models this module compares: every other export would load for nothing.
    for root, enabled in ((REAL_EXPORTS, ("minilm", "tfidf-lr")), (tiny_exports, ())):
        app = create_app(make_settings(root, enabled_models=enabled))
        client = TestClient(app).__enter__()
        app.state.registry.load()
        clients[root] = client
    yield clients
    for client in clients.values():
        client.__exit__(None, None, None)


def read_scored(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path).set_index("id").sort_index()


@pytest.mark.parametrize(("where", "model", "tolerance"), [
    # Static int8, classical and fp32: exact up to float32 rounding (1.2e-7 measured: float kernels differ by batch
    # size), now in chunks of 256 rows.
    ("real", "minilm", 1e-5),
    ("real", "tfidf-lr", 1e-6),
    ("tiny", "tiny-bert", 1e-6),
    ("tiny", "tiny-lr", 1e-6),
])
def test_predictions_match_the_api(spark, tweets_csv: Path, tiny_exports: Path, api_clients, tmp_path: Path,
                                   where: str, model: str, tolerance: float) -> None:
    exports = REAL_EXPORTS if where == "real" else tiny_exports
    summary = score(spark, str(tweets_csv), str(tmp_path / "out"), choose_model(model, exports))
    assert summary == {"model": model, "version": summary["version"], "rows": 134, "scored": 130,
                       EMPTY: 2, MISSING: 1, TOO_LONG: 1}
    out = read_scored(tmp_path / "out")
    assert list(out.columns) == ["text", "label", "confidence", "p_positive", "model", "version", "reason"]
    table = pq.read_table(tmp_path / "out")  # SQL nulls, not NaN, where there is no label
    assert [table.column(c).null_count for c in ("label", "confidence", "p_positive", "reason")] == [4, 4, 4, 130]
    good = out[out["reason"].isna()]
    # One request per tweet, one after another: each is answered alone, as any single request on an idle server.
    answers = [api_clients[exports].post("/v1/predict", json={"text": text, "model": model})
               for text in good["text"]]
    assert all(answer.status_code == 200 for answer in answers), answers[0].text
    predictions = [answer.json() for answer in answers]
    assert good["label"].tolist() == [p["label"] for p in predictions]
    api_positive = pd.Series([p["probabilities"]["positive"] for p in predictions], index=good.index)
    api_confidence = pd.Series([p["confidence"] for p in predictions], index=good.index)
    assert (good["p_positive"] - api_positive).abs().max() <= tolerance
    assert (good["confidence"] - api_confidence).abs().max() <= tolerance
    assert set(good["model"]) == {predictions[0]["model"]} and set(good["version"]) == {predictions[0]["version"]}
    # The rows left without a label are the ones the API refuses, and they are all still there.
    for key, (text, reason) in BAD_ROWS.items():
        row = out.loc[key]
        assert row["reason"] == reason and pd.isna(row["label"]) and pd.isna(row["p_positive"])
        if text:
            assert api_clients[exports].post("/v1/predict", json={"text": text, "model": model}).status_code == 422


def test_sentiment140_six_columns_in_latin1(spark, tfidf_lr, tmp_path: Path) -> None:
    source = tmp_path / "raw.csv"
    with source.open("w", newline="", encoding="latin-1") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL)
        writer.writerow(["0", "1", "Mon Apr 06 22:19:45 PDT 2009", "NO_QUERY", "ann", "the café lost my bag, awful"])
        writer.writerow(["4", "2", "Mon Apr 06 22:19:49 PDT 2009", "NO_QUERY", "bob", "loved the crème brûlée, thank you so much!"])
    summary = score(spark, str(source), str(tmp_path / "out"), tfidf_lr)
    assert summary["rows"] == 2 and summary["scored"] == 2
    out = pd.read_parquet(tmp_path / "out").sort_values("ids")
    assert list(out.columns[:6]) == ["target", "ids", "date", "flag", "user", "text"]
    assert out["text"].tolist() == ["the café lost my bag, awful", "loved the crème brûlée, thank you so much!"]
    assert out["label"].tolist() == ["negative", "positive"]


def test_parquet_in_keeps_an_input_label_column(spark, tfidf_lr, tmp_path: Path) -> None:
    source = tmp_path / "in.parquet"
    pd.DataFrame({"label": [4, 0], "text": ["lovely crew, thanks", None]}).to_parquet(source)
    summary = score(spark, str(source), str(tmp_path / "out"), tfidf_lr)
    assert summary["scored"] == 1 and summary[MISSING] == 1
    out = pd.read_parquet(tmp_path / "out").sort_values("input_label")
    assert out["input_label"].tolist() == [0, 4]
    assert pd.isna(out["label"].iloc[0]) and out["label"].iloc[1] == "positive"
    pd.DataFrame({"text": [1, 2]}).to_parquet(tmp_path / "numbers.parquet")
    with pytest.raises(ValueError, match="not text"):
        score(spark, str(tmp_path / "numbers.parquet"), str(tmp_path / "never"), tfidf_lr)


def test_failures_are_clear_and_write_nothing(spark, tfidf_lr, tweets_csv: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no model 'nope'"):
        choose_model("nope", REAL_EXPORTS)
    with pytest.raises(ValueError, match="no column 'tweet'"):
        score(spark, str(tweets_csv), str(tmp_path / "b"), tfidf_lr, text_column="tweet")
    with pytest.raises(PySparkException, match="PATH_NOT_FOUND"):
        score(spark, str(tmp_path / "absent.csv"), str(tmp_path / "c"), tfidf_lr)
    with pytest.raises(ValueError, match="chunk_rows"):
        score(spark, str(tweets_csv), str(tmp_path / "d"), tfidf_lr, chunk_rows=0)
    assert not any((tmp_path / name).exists() for name in "bcd")
    # A job that fails on the workers (the export vanished after the driver checked it) leaves no folder behind.
    shutil.copytree(REAL_EXPORTS / "tfidf-lr", tmp_path / "exports" / "tfidf-lr")
    vanishing = choose_model("tfidf-lr", tmp_path / "exports")
    shutil.rmtree(tmp_path / "exports")
    with pytest.raises(PySparkException, match="--archives"):
        score(spark, str(tweets_csv), str(tmp_path / "e"), vanishing)
    assert not (tmp_path / "e").exists()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(PySparkException, match="PATH_ALREADY_EXISTS"):
        score(spark, str(tweets_csv), str(tmp_path / "taken"), tfidf_lr)
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"


def test_command_line(tweets_csv: Path, tmp_path: Path) -> None:
    """`python -m batch.spark`, as `make score-spark` runs it: its own local Spark, in another process."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    env.pop("PYSPARK_PYTHON", None)
    command = [sys.executable, "-m", "batch.spark", str(tweets_csv), str(tmp_path / "out"), "--model", "tfidf-lr",
               "--master", "local[1]", "--conf", "spark.ui.enabled=false"]
    # The timeout only guards against a hang: a JVM start alone takes over a minute on a loaded 2-core machine.
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=PROJECT_ROOT, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary == {"model": "tfidf-lr", "version": summary["version"], "rows": 134, "scored": 130,
                       EMPTY: 2, MISSING: 1, TOO_LONG: 1}
    assert len(pd.read_parquet(tmp_path / "out")) == 134


def test_command_line_refuses_an_unknown_model_before_starting_spark(tweets_csv: Path, tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    assert main([str(tweets_csv), str(tmp_path / "out"), "--model", "nope", "--exports-dir", str(REAL_EXPORTS)]) == 1
    assert "no model 'nope'" in caplog.text
    assert not (tmp_path / "out").exists()


def test_odd_column_names_and_a_header_that_is_not_sentiment140(spark, tfidf_lr, tmp_path: Path) -> None:
    """Audit: a backtick in a column name raised ParseException; `label` beside `input_label` raised
    AnalysisException; a six-column CSV with a header but no `text` column was read as Sentiment140 (its header
    row scored, column 6 taken as the text)."""
    quoted = tmp_path / "quoted.parquet"
    pd.DataFrame({"we`ird": ["a"], "text": ["lovely crew, thanks"]}).to_parquet(quoted)
    with pytest.raises(ValueError, match=r"backtick \['we`ird'\].*rename them"):
        score(spark, str(quoted), str(tmp_path / "never"), tfidf_lr)
    assert not (tmp_path / "never").exists()

    source = tmp_path / "in.parquet"
    pd.DataFrame({"id": ["a", "b"], "label": [4, 0], "input_label": [1, 0],
                  "text": ["lovely crew, thanks", "lost my bag, awful"]}).to_parquet(source)
    summary = score(spark, str(source), str(tmp_path / "out"), tfidf_lr)
    assert summary["scored"] == 2
    out = pd.read_parquet(tmp_path / "out").sort_values("id")
    assert out["input_input_label"].tolist() == [4, 0] and out["input_label"].tolist() == [1, 0]
    assert out["label"].tolist() == ["positive", "negative"]

    headed = tmp_path / "six.csv"
    headed.write_text("a,b,c,d,e,f\n1,2,3,4,5,great crew\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no column 'text'"):
        score(spark, str(headed), str(tmp_path / "never2"), tfidf_lr)


def test_a_row_with_more_or_fewer_fields_than_its_layout_is_flagged_not_scored(spark, tfidf_lr,
                                                                                tmp_path: Path) -> None:
    """Audit: a row with extra fields was scored on its second field with no flag. Spark keeps as many fields as the
    header has and drops the rest, so an unquoted comma cut the tweet; a row with a field too few moved the next
    field into `text`. Such rows are flagged `malformed`, never scored; the others are, in both layouts."""
    headed = tmp_path / "tweets.csv"
    headed.write_text("id,text,lang\n"
                      "1,lovely crew thanks,en\n"
                      "2,worst airline, lost my bag,en\n"  # four fields: read as text "worst airline"
                      "3,en\n"  # two fields: read as text "en"
                      '4,"quoted, so fine: lost my bag, awful",en\n', encoding="utf-8")
    summary = score(spark, str(headed), str(tmp_path / "out"), tfidf_lr)
    assert summary == {"model": "tfidf-lr", "version": summary["version"], "rows": 4, "scored": 2, MALFORMED: 2}
    out = read_scored(tmp_path / "out")
    assert list(out.columns) == ["text", "lang", *OUTPUT_COLUMNS]  # the raw line is not written
    assert out["reason"].fillna("-").tolist() == ["-", MALFORMED, MALFORMED, "-"]  # pandas reads a null as NaN
    assert out["label"].fillna("-").tolist() == ["positive", "-", "-", "negative"]
    assert out.loc[["2", "3"], ["confidence", "p_positive"]].isna().all().all()

    raw = tmp_path / "raw.csv"  # Sentiment140's six header-less columns, recognised by themselves
    raw.write_text('"0","1","Mon Apr 06 22:19:45 PDT 2009","NO_QUERY","ann","lost my bag, awful"\n'
                   "0,2,Mon Apr 06 22:19:49 PDT 2009,NO_QUERY,bob,lost my bag, awful\n"  # seven: "lost my bag"
                   '"4","3","Mon Apr 06 22:19:53 PDT 2009","NO_QUERY","loved the crème brûlée"\n',  # five
                   encoding="latin-1")
    summary = score(spark, str(raw), str(tmp_path / "out140"), tfidf_lr)
    assert summary == {"model": "tfidf-lr", "version": summary["version"], "rows": 3, "scored": 1, MALFORMED: 2}
    out = pd.read_parquet(tmp_path / "out140").sort_values("ids")
    assert list(out.columns) == [*("target", "ids", "date", "flag", "user", "text"), *OUTPUT_COLUMNS]
    assert out["reason"].fillna("-").tolist() == ["-", MALFORMED, MALFORMED]
    assert out["label"].fillna("-").tolist() == ["negative", "-", "-"]
