"""The "more than 3 misclassified tweets within 5 minutes" rule, evaluated live from the feedback store.

The same rule runs in Azure as a scheduled-query alert over the ``TweetFeedback`` customEvents: the KQL
query is ``deploy/alerts/misclassified.kql`` and the rule is ``deploy/alerts/misclassified-alert.json``
(see ``deploy/alerts/README.md``). A misclassified tweet is a prediction whose latest verdict is thumbs down.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sentiment.feedback import FeedbackStore

ALERT_DIR = Path(__file__).resolve().parent.parent / "deploy" / "alerts"
KQL_FILE = ALERT_DIR / "misclassified.kql"
TEMPLATE_FILE = ALERT_DIR / "misclassified-alert.json"


@dataclass(frozen=True)
class AlertRule:
    """Fire when more than ``threshold`` thumbs-down verdicts fall within ``window``."""

    threshold: int = 3
    window: timedelta = timedelta(minutes=5)


@dataclass(frozen=True)
class AlertState:
    """The rule's evaluation at ``evaluated_at``."""

    firing: bool
    count: int
    rule: AlertRule
    evaluated_at: datetime

    @property
    def message(self) -> str:
        minutes = int(self.rule.window.total_seconds() // 60)
        if self.firing:
            return (f"ALERT: {self.count} tweets marked misclassified in the last {minutes} minutes "
                    f"(more than {self.rule.threshold}).")
        return f"OK: {self.count} misclassified in the last {minutes} minutes (alert above {self.rule.threshold})."


def evaluate(store: FeedbackStore, rule: AlertRule, now: datetime | None = None) -> AlertState:
    """Count the thumbs-down verdicts of the last ``rule.window`` and compare them with the threshold."""
    now = now or datetime.now(UTC)
    count = store.count_verdicts_since("down", now - rule.window)
    return AlertState(firing=count > rule.threshold, count=count, rule=rule, evaluated_at=now)
