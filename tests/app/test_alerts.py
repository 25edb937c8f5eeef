"""The misclassification alert: live rule from SQLite, and the KQL / ARM template shipped for Azure."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from app.alerts import KQL_FILE, TEMPLATE_FILE, AlertRule, evaluate
from app.settings import AppSettings
from app.telemetry import EVENT_NAME
from sentiment.feedback import FeedbackStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def rate(store: FeedbackStore, verdict: str) -> None:
    store.record_verdict(feedback_id=str(uuid.uuid4()), text="t", model_name="m", model_version="1",
                         predicted_label="positive", confidence=0.6, verdict=verdict)


def test_fires_above_three_thumbs_down_within_five_minutes(tmp_path: Path) -> None:
    clock = Clock()
    store = FeedbackStore(tmp_path / "f.db", clock=clock)
    rule = AlertRule()
    rate(store, "down")  # 10 minutes before the others: outside the window
    clock.now += 600
    for _ in range(3):
        rate(store, "down")
    rate(store, "up")
    now = datetime.fromtimestamp(clock.now, UTC)
    state = evaluate(store, rule, now)
    assert (state.firing, state.count) == (False, 3)
    assert state.message.startswith("OK: 3 misclassified")
    rate(store, "down")
    state = evaluate(store, rule, now)
    assert (state.firing, state.count) == (True, 4)
    assert "more than 3" in state.message
    assert not evaluate(store, rule, now + timedelta(minutes=6)).firing


def test_kql_file_and_arm_template_agree_with_the_app() -> None:
    query = KQL_FILE.read_text()
    template = json.loads(TEMPLATE_FILE.read_text())
    assert template["variables"]["query"] == query
    assert f'name == "{EVENT_NAME}"' in query
    for dimension in ("feedback_id", "revision", "verdict"):
        assert f"customDimensions.{dimension}" in query
    rule = template["resources"][0]
    assert rule["type"] == "Microsoft.Insights/scheduledQueryRules"
    criterion = rule["properties"]["criteria"]["allOf"][0]
    assert (criterion["operator"], criterion["timeAggregation"]) == ("GreaterThan", "Count")
    defaults = AppSettings()
    assert template["parameters"]["threshold"]["defaultValue"] == defaults.alert_threshold == AlertRule().threshold
    assert template["parameters"]["windowSize"]["defaultValue"] == f"PT{defaults.alert_window_minutes}M"
    assert AlertRule().window == timedelta(minutes=defaults.alert_window_minutes)
