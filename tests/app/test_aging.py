"""The model-ageing chart: outcomes of verdicts, alert firings, version changes, and the pages that show it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from app import aging
from app.alerts import AlertRule
from app.settings import get_settings
from sentiment.feedback import FeedbackStore
from sentiment.manifest import ModelEntry
from sentiment.publish import publish_state
from tests.app.conftest import write_metadata
from tests.app.test_pages import SECRET, fakes, open_page, unlock  # noqa: F401 - fakes is a fixture

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _row(minutes: float, verdict: str, version: str = "1", predicted: str = "positive", true_label: str | None = None,
         reviewed: bool = False) -> dict:
    moment = (START + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    derived = predicted if verdict == "up" else {"positive": "negative", "negative": "positive"}[predicted]
    return {"updated_at": moment, "model_name": "m", "model_version": version, "verdict": verdict,
            "predicted_label": predicted, "true_label": true_label or derived,
            "review_state": "reviewed" if reviewed else "new"}


def test_outcomes_say_whether_the_model_was_right() -> None:
    frame = aging.verdict_frame([_row(0, "up"), _row(1, "down"), _row(2, "down", reviewed=True),
                                 _row(3, "down", true_label="positive", reviewed=True)])
    assert list(frame["outcome"]) == ["thumbs up", "thumbs down, unreviewed", "confirmed (model wrong)",
                                      "corrected (model right)"]
    assert list(frame["correct"]) == [True, False, False, True]
    assert set(frame["version"]) == {"m v1"} and "text" not in frame


def test_alert_firings_follow_the_rule_of_app_alerts() -> None:
    rule = AlertRule(threshold=3, window=timedelta(minutes=5))
    downs = pd.Series(pd.to_datetime([START + timedelta(minutes=m) for m in (0, 1, 2, 3, 4, 30, 31, 60, 61, 62, 63)],
                                     utc=True))
    fired = aging.alert_firings(downs, rule)
    # 4 within 5 minutes at 09:03 (more than 3), not at 09:31 (2), again at 10:03.
    assert fired == [pd.Timestamp(START + timedelta(minutes=3)), pd.Timestamp(START + timedelta(minutes=63))]
    assert aging.alert_firings(pd.Series([], dtype="datetime64[ns, UTC]"), rule) == []


def test_chart_draws_accuracy_per_version_alerts_and_publications(tmp_path: Path) -> None:
    for folder, version in (("m", "1"), ("m@2", "2")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "model.onnx").write_bytes(b"not read here")
        write_metadata(tmp_path / folder, name="m", version=version, family="classical",
                       variants={"onnx": "model.onnx"}, default_variant="onnx")
    publish_state(tmp_path, "m", {"m": ModelEntry("m", "1")}, "export")
    publish_state(tmp_path, "m", {"m": ModelEntry("m@2", "2")}, "retrain", run_id="abcdef1234567890")
    rows = [_row(m, "down") for m in range(5)] + [_row(m, "up", version="2") for m in range(60, 70)]
    figure, summary = aging.ageing_view(rows, tmp_path, AlertRule(threshold=3, window=timedelta(minutes=5)))

    names = {trace.name for trace in figure.data}
    assert {"m v1", "m v2", "thumbs up", "thumbs down, unreviewed"} <= names
    assert any(name.startswith("alert fired (> 3 thumbs down in 5 min)") for name in names)
    labels = [a.text for a in figure.layout.annotations]
    assert labels == ["export → m v1", "retrain → m v2, run abcdef12"] and len(figure.layout.shapes) == 2
    by_version = summary.set_index("version")
    assert by_version.loc["m v1", "accuracy"] == 0 and by_version.loc["m v2", "accuracy"] == 1
    assert by_version.loc["m v2", "verdicts"] == 10 and "text" not in summary


def test_without_a_manifest_version_changes_come_from_the_feedback(tmp_path: Path) -> None:
    rows = [_row(0, "up"), _row(90, "up", version="2")]
    figure, _ = aging.ageing_view(rows, tmp_path, AlertRule())
    assert [a.text for a in figure.layout.annotations] == ["first feedback on m v1", "first feedback on m v2"]
    empty, table = aging.ageing_view([], tmp_path, AlertRule())
    assert "no feedback yet" in empty.layout.title.text and table.empty


def _three_verdicts() -> None:
    store = FeedbackStore(get_settings().feedback_db)
    for verdict in ("up", "down", "down"):
        store.record_verdict(feedback_id=str(uuid.uuid4()), text="a private tweet", model_name="fake-lexicon",
                             model_version="7", predicted_label="positive", confidence=0.8, verdict=verdict)


def _ageing_charts(at) -> list:
    return [c for c in at.get("plotly_chart") if "Feedback accuracy per model version" in c.proto.spec]


@pytest.mark.usefixtures("fakes")
def test_review_page_shows_the_ageing_chart(monkeypatch: pytest.MonkeyPatch) -> None:
    _three_verdicts()
    monkeypatch.setenv("MAINTAINER_SECRET", SECRET)
    review = unlock(open_page("review.py"), SECRET)
    assert not review.exception and len(_ageing_charts(review)) == 1


def test_compare_page_shows_the_aggregate_without_tweet_text(compare_env: Path) -> None:
    _three_verdicts()
    compare = open_page("compare.py")
    assert len(_ageing_charts(compare)) == 1
    table = next(frame.value for frame in compare.dataframe if "verdicts" in frame.value.columns)
    assert list(table["version"]) == ["fake-lexicon v7"] and table["verdicts"].iloc[0] == 3
    assert "a private tweet" not in str(table.to_dict()) + "".join(c.proto.spec for c in compare.get("plotly_chart"))
