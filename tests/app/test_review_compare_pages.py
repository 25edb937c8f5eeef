"""Issue 17, items 6 and 7: the Review and Compare pages' charts and tables are readable (``AppTest``)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Block, Node

from app import charts
from app.settings import get_settings
from sentiment.feedback import FeedbackStore
from sentiment.manifest import MANIFEST_FILE, ModelEntry
from sentiment.publish import publish_state
from tests.app.test_pages import SECRET, fakes, open_page, unlock  # noqa: F401 - fakes is a fixture

# Written for these tests.
LONG_TWEET = ("Sat on the tarmac for two hours with no air conditioning and the crew kept smiling at us, "
              "which was somehow the worst part of the whole day")


def _seed(texts: list[str], verdict: str = "down") -> list[str]:
    store = FeedbackStore(get_settings().feedback_db)
    ids = []
    for text in texts:
        ids.append(str(uuid.uuid4()))
        store.record_verdict(feedback_id=ids[-1], text=text, model_name="fake-lexicon", model_version="7",
                             predicted_label="positive", confidence=0.8, verdict=verdict)
    return ids


def _publication_days_ago(exports: Path, days: int) -> None:
    """A manifest whose only publication is ``days`` old (the feedback is from now)."""
    publish_state(exports, "tiny-tfidf", {"tiny-tfidf": ModelEntry("tiny-tfidf", "1")}, "export")
    path = exports / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    moment = (datetime.now(UTC) - timedelta(days=days)).isoformat(timespec="seconds")
    manifest["published_at"] = moment
    for entry in manifest["history"]:
        entry["published_at"] = moment
    path.write_text(json.dumps(manifest))


def _walk(block: Block, ancestors: tuple[Node, ...] = ()) -> Iterator[tuple[Node, tuple[Node, ...]]]:
    for child in block.children.values():
        yield child, ancestors
        if isinstance(child, Block):
            yield from _walk(child, (*ancestors, child))


def _ancestors(at: AppTest, match: Callable[[Node], bool]) -> tuple[Node, ...]:
    return next(parents for node, parents in _walk(at.main) if match(node))


def _share_of_row(column: Node, parents: tuple[Node, ...]) -> float:
    """The width share of ``column`` among its sibling columns."""
    row = parents[parents.index(column) - 1]
    weights = [c.weight for c in row.children.values() if getattr(c, "type", "") == "column"]
    return column.weight / sum(weights)


def _figure(at: AppTest, title: str) -> dict:
    return next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if title in c.proto.spec)


def _x_range(figure: dict) -> tuple[pd.Timestamp, pd.Timestamp]:
    low, high = figure["layout"]["xaxis"]["range"]
    return pd.Timestamp(low), pd.Timestamp(high)


# -- Review ------------------------------------------------------------------------------------------------------
@pytest.fixture
def review(fakes: dict, monkeypatch: pytest.MonkeyPatch) -> AppTest:  # noqa: F811 - the fixture, imported
    monkeypatch.setenv("MAINTAINER_SECRET", SECRET)
    _seed([LONG_TWEET, "short one, lost my bag"])
    at = unlock(open_page("review.py"), SECRET)
    assert not at.exception, at.exception
    return at


def test_the_item_picker_shows_the_shortened_tweet_and_keeps_the_id_as_value(review: AppTest) -> None:
    picker = review.selectbox(key="review_item")
    ids = {row["id"] for row in FeedbackStore(get_settings().feedback_db).list()}
    assert picker.value in ids  # the value is the id, the label is not
    long_label = next(o for o in picker.options if "tarmac" in o)
    assert long_label.startswith("“Sat on the tarmac for two hours") and "…" in long_label
    assert len(long_label.split(" · ")[0]) <= 62 and " · fake-lexicon · " in long_label
    assert not any(i in option or i[:8] in option for option in picker.options for i in ids)
    assert any(o.startswith("“short one, lost my bag” · fake-lexicon · ") for o in picker.options)
    assert review.code[0].value in (LONG_TWEET, "short one, lost my bag")  # the whole tweet once picked


def test_the_table_shows_the_tweet_wide_and_the_true_label_early(review: AppTest) -> None:
    frame = review.dataframe[0]
    config = json.loads(frame.proto.columns)
    assert config["text"]["width"] == "large" and config["text"]["label"] == "tweet"
    assert config["true_label"]["label"] == "true label" and config["true_label"]["width"] == "small"
    columns = list(frame.value.columns)
    # Tweet, predicted and true label come first: they show without scrolling sideways.
    assert columns[:3] == ["text", "predicted_label", "true_label"]
    assert set(frame.value["text"]) == {LONG_TWEET, "short one, lost my bag"}


def test_the_date_filter_has_room_for_a_range(review: AppTest) -> None:
    dates = review.date_input(key="dates")
    parents = _ancestors(review, lambda node: node is dates)
    column = next(p for p in reversed(parents) if getattr(p, "type", "") == "column")
    # A fifth of the page clipped "2026/10/26 – 2026/11/25"; a half shows it whole.
    assert _share_of_row(column, parents) >= 0.4
    assert dates.label == "Dates (UTC)"


def test_setting_names_are_code_spans_on_full_width(review: AppTest) -> None:
    notice = next(i for i in review.info if "Telemetry is off" in i.value)
    assert "`APPLICATIONINSIGHTS_CONNECTION_STRING`" in notice.value
    parents = _ancestors(review, lambda node: node is notice)
    assert not any(getattr(p, "type", "") == "column" for p in parents)  # not squeezed into a column


def test_the_disabled_page_names_the_setting_as_code(fakes: dict) -> None:  # noqa: F811
    at = open_page("review.py")
    assert "`MAINTAINER_SECRET`" in at.warning[0].value


def test_the_ageing_chart_fits_the_feedback_not_an_old_publication(fakes: dict, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
                                                                   tmp_path: Path) -> None:
    from tests.app.conftest import build_classical_export

    exports = tmp_path / "review-exports"
    build_classical_export(exports / "tiny-tfidf")
    _publication_days_ago(exports, 9)
    monkeypatch.setenv("EXPORTS_DIR", str(exports))
    monkeypatch.setenv("MAINTAINER_SECRET", SECRET)
    get_settings.cache_clear()
    _seed(["one", "two", "three"])
    at = unlock(open_page("review.py"), SECRET)
    assert not at.exception, at.exception
    figure = _figure(at, "Feedback accuracy per model version")
    low, high = _x_range(figure)
    now = pd.Timestamp.now()  # the range is in UTC wall time
    assert now - pd.Timedelta(hours=2) < low < now and now < high < now + pd.Timedelta(hours=2)
    assert "export → tiny-tfidf v1" in figure["layout"]["title"]["subtitle"]["text"]


# -- Compare -----------------------------------------------------------------------------------------------------
def test_compare_gives_each_model_one_readable_colour_on_every_chart(compare_env: Path) -> None:
    at = open_page("compare.py")
    assert not at.exception
    roc = _figure(at, "ROC curves")
    tradeoff = _figure(at, "vs latency")
    roc_colors = {t["name"].split(" (")[0]: t["line"]["color"] for t in roc["data"] if t["name"] != "chance"}
    point_colors = {t["name"].split(" · ")[0]: t["marker"]["color"] for t in tradeoff["data"]
                    if t.get("mode") == "markers"}
    assert set(roc_colors) == {"tiny-tfidf", "tiny-minilm", "tiny-vader"} and roc_colors == point_colors
    assert len(set(roc_colors.values())) == 3
    assert all(charts.contrast_ratio(color) >= 3 for color in roc_colors.values())
    # Filtering a family away keeps the other models' colours.
    at.multiselect(key="families").set_value(["classical", "lexicon"]).run()
    roc = _figure(at, "ROC curves")
    assert {t["name"].split(" (")[0]: t["line"]["color"] for t in roc["data"] if t["name"] != "chance"} == {
        m: roc_colors[m] for m in ("tiny-tfidf", "tiny-vader")}


def test_compare_tradeoff_has_readable_ms_ticks_and_the_quality_axis_starts_at_zero(compare_env: Path) -> None:
    at = open_page("compare.py")
    tradeoff = _figure(at, "vs latency")
    axis = tradeoff["layout"]["xaxis"]
    assert axis["type"] == "log" and "dtick" not in axis
    assert all(text.endswith(" ms") for text in axis["ticktext"])
    assert axis["tickvals"] == sorted(axis["tickvals"]) and len(axis["tickvals"]) >= 2
    quality = _figure(at, "Quality per model")
    ranges = [v["range"] for k, v in quality["layout"].items() if k.startswith("yaxis") and "range" in v]
    assert ranges and all(r[0] == 0 for r in ranges)


def test_compare_ageing_chart_fits_the_feedback(compare_env: Path) -> None:
    _publication_days_ago(compare_env, 9)
    _seed(["one"], verdict="up")
    at = open_page("compare.py")
    assert not at.exception, at.exception
    low, high = _x_range(_figure(at, "Feedback accuracy per model version"))
    assert high - low <= pd.Timedelta(hours=2)
