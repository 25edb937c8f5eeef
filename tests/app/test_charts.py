"""Figure builders return the traces the pages rely on; the Pareto front is right."""

from __future__ import annotations

import pandas as pd

from app import charts


def test_pareto_front_keeps_only_undominated_models() -> None:
    points = pd.DataFrame({"model": ["vader", "lr", "slow-bad", "minilm", "tie"],
                           "latency_ms": [0.1, 0.4, 8.0, 6.0, 6.0],
                           "accuracy": [0.70, 0.80, 0.79, 0.86, 0.86]})
    front = charts.pareto_front(points)
    assert dict(zip(points["model"], front, strict=True)) == {
        "vader": True, "lr": True, "slow-bad": False, "minilm": True, "tie": True}


def test_accuracy_vs_latency_draws_the_front_and_marks_the_champion() -> None:
    points = pd.DataFrame({"model": ["lr", "minilm", "bad"], "family": ["classical", "transformer", "classical"],
                           "latency_ms": [0.4, 6.0, 9.0], "accuracy": [0.8, 0.86, 0.7]})
    figure = charts.accuracy_vs_latency(points, champion="minilm", set_name="test")
    front = [t for t in figure.data if t.name == "Pareto front"][0]
    assert list(front.x) == [0.4, 6.0]
    assert "test" in figure.layout.title.text


def test_metrics_by_model_has_one_panel_per_metric() -> None:
    tidy = pd.DataFrame({"model": ["a", "a", "b", "b"], "set": ["test"] * 4,
                         "metric": ["accuracy", "f1_macro"] * 2, "value": [0.8, 0.79, 0.86, 0.85]})
    figure = charts.metrics_by_model(tidy, champion="b")
    assert {a.text for a in figure.layout.annotations} == {"accuracy", "f1_macro"}
    assert "★ b" in set(figure.data[0].x)


def test_other_builders() -> None:
    assert list(charts.probability_bar({"negative": 0.2, "positive": 0.8}).data[0].x) == [0.2, 0.8]
    roc = charts.roc_curves({"m": {"fpr": [0, 1], "tpr": [0, 1], "auc": 0.5}})
    assert [t.name for t in roc.data] == ["m (AUC 0.500)", "chance"]
    heat = charts.confusion_matrix([[40, 10], [8, 42]], ["negative", "positive"], "m")
    assert heat.data[0].text[0][0] == "40<br>80.0%"
    loss = charts.loss_history(pd.DataFrame({"step": range(20), "value": [1 / (s + 1) for s in range(20)]}))
    assert len(loss.data) == 2
    verdicts = pd.DataFrame({"model": ["a", "b"], "p_positive": [0.2, 0.9], "label": ["negative", "positive"]})
    assert len(charts.all_models_bar(verdicts).data) == 2
    times = pd.Series(["2025-01-01T10:00:00.000000Z", "2025-01-01T10:01:00.000000Z", "2024-12-31T10:00:00.000000Z"])
    timeline = charts.misclassified_timeline(times, 3, 5, now=pd.Timestamp("2025-01-01T10:02:00Z"))
    assert sum(timeline.data[0].y) == 2 and len(timeline.data[0].x) == 6 * 12 + 1  # last 6 h in 5-min buckets
    assert sum(charts.misclassified_timeline(pd.Series([], dtype=str), 3, 5).data[0].y) == 0
