"""Issue 19: the Compare page shows the out-of-domain sets beside validation_random, and — where a run lacks them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
from streamlit.testing.v1 import AppTest

from app import runs
from tests.app.test_pages import open_page

MINILM_RECORD = "b" * 32  # tiny-minilm's record in tests.app.conftest.write_run_records


def _score_minilm_out_of_domain(exports: Path) -> None:
    """tiny-minilm's record gains out-of-domain figures (made-up), as ``evaluate_ood --update-runs`` writes them."""
    path = exports / "runs" / f"{MINILM_RECORD}.json"
    record = json.loads(path.read_text())
    record["metrics"] |= {"tweeteval_validation_accuracy": 0.76, "tweeteval_validation_f1_macro": 0.74,
                          "airline_dev_accuracy": 0.79, "airline_dev_f1_macro": 0.78}
    record["artifacts"]["eval/airline_dev/roc_curve.json"] = {"fpr": [0.0, 0.3, 1.0], "tpr": [0.0, 0.8, 1.0],
                                                              "auc": 0.85}
    path.write_text(json.dumps(record))


def _shown(at: AppTest, column: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The data and the displayed text of the table that has ``column``."""
    element = next(frame for frame in at.dataframe if column in frame.value.columns)
    shown = pa.ipc.open_stream(element.proto.arrow_data.styler.display_values).read_all().to_pandas()
    return element.value, shown


def test_out_of_domain_sets_are_listed_charted_and_missing_ones_shown_as_a_dash(compare_env: Path) -> None:
    _score_minilm_out_of_domain(compare_env)
    at = open_page("compare.py")
    assert not at.exception, at.exception
    # The fake runs have no "validation" figures: the sets offered are those some run was scored on.
    assert at.multiselect(key="sets").options == ["test", "validation_random", "tweeteval_validation", "airline_dev"]
    quality = next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if "Quality per model" in c.proto.spec)
    assert {"tweeteval_validation", "airline_dev"} <= {trace["name"] for trace in quality["data"]}

    accuracy, shown = _shown(at, "airline_dev")
    assert list(accuracy.columns) == ["model", "family", "test", "validation_random", "tweeteval_validation",
                                      "airline_dev"]
    minilm = accuracy["model"] == "tiny-minilm"
    assert accuracy.loc[minilm, "airline_dev"].item() == 0.79
    assert accuracy.loc[~minilm, "airline_dev"].isna().all()  # the data stays numeric (sorting works)
    assert shown.loc[minilm.to_numpy(), "airline_dev"].item() == "0.7900"
    assert set(shown.loc[~minilm.to_numpy(), "tweeteval_validation"]) == {runs.MISSING}

    table, shown = _shown(at, "run_id")
    assert {"tweeteval_validation_accuracy", "airline_dev_accuracy", "airline_dev_f1_macro"} <= set(table.columns)
    tfidf = (table["model"] == "tiny-tfidf").to_numpy()
    assert shown.loc[tfidf, "airline_dev_accuracy"].item() == runs.MISSING

    at.selectbox(key="tradeoff").set_value("airline_dev").run()
    assert not at.exception, at.exception
    tradeoff = next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if "vs latency" in c.proto.spec)
    assert [t["name"] for t in tradeoff["data"] if t.get("mode") == "markers"] == ["tiny-minilm · transformer"]
    assert any("Not scored on airline_dev, so not drawn: tiny-tfidf, tiny-vader." in c.value for c in at.caption)
    roc = next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if "ROC curves" in c.proto.spec)
    assert [t["name"] for t in roc["data"] if t["name"] != "chance"] == ["tiny-minilm (AUC 0.850)"]
