"""Figure builders return the traces the pages rely on; the Pareto front is right; the charts are readable."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import pytest

from app import charts
from app.alerts import AlertRule
from sentiment.manifest import ModelEntry
from sentiment.publish import publish_state
from tests.app.conftest import write_metadata


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


# -- issue 17, item 6: the ageing chart's time axis ---------------------------------------------------------------
START = pd.Timestamp("2026-01-05T09:00:00Z")


def _verdicts(minutes: list[float]) -> list[dict]:
    return [{"updated_at": (START + pd.Timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "model_name": "m",
             "model_version": "1", "verdict": "down" if i % 2 else "up", "predicted_label": "positive",
             "true_label": "negative" if i % 2 else "positive", "review_state": "new"}
            for i, m in enumerate(minutes)]


def _publish_days_before(exports: Path, days: int) -> None:
    (exports / "m").mkdir(parents=True)
    (exports / "m" / "model.onnx").write_bytes(b"not read here")
    write_metadata(exports / "m", name="m", version="1", family="classical", variants={"onnx": "model.onnx"},
                   default_variant="onnx")
    publish_state(exports, "m", {"m": ModelEntry("m", "1")}, "export")
    manifest = json.loads((exports / "manifest.json").read_text())
    moment = (START - pd.Timedelta(days=days)).isoformat()
    manifest["published_at"] = manifest["history"][0]["published_at"] = moment
    (exports / "manifest.json").write_text(json.dumps(manifest))


def _x_range(figure: go.Figure) -> tuple[pd.Timestamp, pd.Timestamp]:
    low, high = figure.layout.xaxis.range
    return pd.Timestamp(low).tz_localize("UTC"), pd.Timestamp(high).tz_localize("UTC")


def test_the_ageing_axis_fits_the_feedback_not_a_publication_nine_days_before(tmp_path: Path) -> None:
    _publish_days_before(tmp_path, 9)
    figure, table = charts.feedback_ageing(_verdicts([0, 10, 25, 50]), tmp_path, AlertRule())
    low, high = _x_range(figure)
    assert START - pd.Timedelta(minutes=30) <= low <= START and START + pd.Timedelta(minutes=50) <= high
    assert high - low <= pd.Timedelta(hours=2)  # was 9 days, every point in one line at the right edge
    assert not figure.layout.shapes and not figure.layout.annotations  # the line 9 days before is not drawn...
    assert "export → m v1" in figure.layout.title.subtitle.text  # ...but named
    assert table["verdicts"].iloc[0] == 4


@pytest.mark.parametrize(("minutes", "longest"), [
    ([0], pd.Timedelta(hours=1.5)),  # one verdict
    ([0, 4, 9, 31, 55], pd.Timedelta(hours=1.5)),  # a few within an hour
    ([0, 60 * 24 * 7, 60 * 24 * 20, 60 * 24 * 27], pd.Timedelta(days=31)),  # over weeks
])
def test_the_ageing_axis_is_readable_for_one_point_an_hour_or_weeks(tmp_path: Path, minutes: list[float],
                                                                   longest: pd.Timedelta) -> None:
    figure, _ = charts.feedback_ageing(_verdicts(minutes), tmp_path, AlertRule())
    low, high = _x_range(figure)
    first, last = START + pd.Timedelta(minutes=min(minutes)), START + pd.Timedelta(minutes=max(minutes))
    assert low < first and last < high and high - low <= longest
    span = (high - low) / (last - first) if last > first else None
    assert span is None or span < 1.5  # the points use most of the width
    for bars in (t for t in figure.data if t.type == "bar"):  # drawn at their bucket's width, even alone
        assert bars.width and all(low <= pd.Timestamp(x) <= high for x in bars.x)
    assert [a.text for a in figure.layout.annotations] == ["first feedback on m v1"]


# -- issue 17, item 7: the Compare page's charts ------------------------------------------------------------------
TIGHT = pd.DataFrame({  # three TF-IDF models with nearly the same accuracy and latency, as trained
    "model": ["vader", "tfidf-cnb", "tfidf-lr", "tfidf-svm", "minilm", "mpnet"],
    "family": ["lexicon", "classical", "classical", "classical", "transformer", "transformer"],
    "latency_ms": [0.032, 0.358, 0.284, 0.305, 0.749, 10.3],
    "accuracy": [0.6533, 0.8015, 0.8057, 0.8055, 0.8331, 0.8446]})


def test_the_latency_axis_has_round_ms_ticks_and_no_minor_labels() -> None:
    axis = charts.accuracy_vs_latency(TIGHT, "mpnet", "test").layout.xaxis
    assert axis.type == "log" and axis.dtick is None  # "D2" labelled minor digits: "5, 0.1, 2, 5, 1, 2, 5, 10"
    assert list(axis.tickvals) == [0.03, 0.1, 0.3, 1, 3, 10, 30]
    assert list(axis.ticktext) == ["0.03 ms", "0.1 ms", "0.3 ms", "1 ms", "3 ms", "10 ms", "30 ms"]
    low, high = axis.range  # log10 units; the ticks bracket the data
    assert low <= math.log10(0.03) and math.log10(30) <= high
    assert charts.log_ticks(0.1, 5) == [0.1, 0.2, 0.5, 1, 2, 5]
    assert charts.log_ticks(0.4, 0.45) == [0.2, 0.5]
    assert charts.log_ticks(0.01, 1000) == [0.01, 0.1, 1, 10, 100, 1000]
    assert charts.log_ticks(1, 1) == [1, 2]  # one model: still a scale


def _label_boxes(figure: go.Figure, size: tuple[float, float] = (480, 300)) -> list[tuple[str, tuple]]:
    """Each point's name as a box in pixels of a ``size`` plot area, from text traces or arrow annotations."""
    frame = TIGHT
    x_range = figure.layout.xaxis.range or (math.log10(frame["latency_ms"].min()) - 0.1,
                                            math.log10(frame["latency_ms"].max()) + 0.1)
    y_range = figure.layout.yaxis.range or (frame["accuracy"].min() - 0.01, frame["accuracy"].max() + 0.01)

    def pixel(x: float, y: float) -> tuple[float, float]:  # x in log10 units
        return ((x - x_range[0]) / (x_range[1] - x_range[0]) * size[0],
                (y_range[1] - y) / (y_range[1] - y_range[0]) * size[1])

    def box(cx: float, cy: float, text: str) -> tuple[float, float, float, float]:
        width = 7 * len(text)
        return cx - width / 2, cy - 7, cx + width / 2, cy + 7

    boxes = []
    for trace in figure.data:
        if trace.mode and "text" in trace.mode:
            positions = trace.textposition
            for i, (x, y, text) in enumerate(zip(trace.x, trace.y, trace.text, strict=True)):
                px, py = pixel(math.log10(x), y)
                where = positions[i] if isinstance(positions, tuple | list) else positions or "middle center"
                dy = -14 if where.startswith("top") else 14 if where.startswith("bottom") else 0
                dx = 7 * len(text) / 2 + 8 if where.endswith("right") else -7 * len(text) / 2 - 8 if where.endswith(
                    "left") else 0
                boxes.append((text, box(px + dx, py + dy, text)))
    for note in figure.layout.annotations:
        px, py = pixel(note.x, note.y)
        boxes.append((note.text, box(px + (note.ax or 0), py + (note.ay or 0), note.text)))
    return boxes


def test_close_models_get_labels_that_do_not_overprint() -> None:
    figure = charts.accuracy_vs_latency(TIGHT, "mpnet", "test")
    boxes = _label_boxes(figure)
    assert {name.removeprefix("★ ") for name, _ in boxes} == set(TIGHT["model"])  # every point is named
    for index, (name, a) in enumerate(boxes):
        for other, b in boxes[index + 1:]:
            apart = a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
            assert apart, f"{name} and {other} overprint"
    models = [t for t in figure.data if t.mode == "markers"]  # and each is its own legend entry
    assert sorted(t.name for t in models) == sorted(f"{m} · {f}" for m, f in zip(TIGHT["model"], TIGHT["family"],
                                                                                 strict=True))


def test_every_model_line_contrasts_with_white_and_keeps_its_colour() -> None:
    models = [f"model-{i}" for i in range(14)]
    colors = charts.model_colors(models)
    assert all(charts.contrast_ratio(c) >= 3 for c in colors.values()), colors
    assert len(set(colors.values())) == len(models)
    assert charts.model_colors(reversed(models)) == colors  # by name, not by the order they come in
    curves = {m: {"fpr": [0, 0.2, 1], "tpr": [0, 0.8, 1], "auc": 0.8} for m in ("tfidf-lr", "tfidf-svm", "vader")}
    roc = charts.roc_curves(curves, "test")  # without colours given, the chart still sets its own
    lines = [t for t in roc.data if t.name != "chance"]
    assert all(t.line.color and charts.contrast_ratio(t.line.color) >= 3 for t in lines)
    given = charts.model_colors([*curves, "minilm"])
    roc = charts.roc_curves(curves, "test", given)
    tradeoff = charts.accuracy_vs_latency(TIGHT[TIGHT["model"] != "tfidf-cnb"], None, "test", given)
    by_model = {t.name.split(" · ")[0]: t.marker.color for t in tradeoff.data if t.mode == "markers"}
    assert {t.name.split(" (")[0]: t.line.color for t in roc.data if t.name != "chance"} == {
        m: by_model[m] for m in curves}
    lr, svm = (next(t for t in roc.data if t.name.startswith(m)) for m in ("tfidf-lr", "tfidf-svm"))
    assert lr.line.dash != svm.line.dash  # the same curve: the one drawn over the other lets it show through
    assert charts.model_colors(["a", "b"], {"a": charts.MODEL_PALETTE[0]}) == {
        "a": charts.MODEL_PALETTE[0], "b": charts.MODEL_PALETTE[1]}
    assert charts.contrast_ratio("#FFFFFF") == 1 and round(charts.contrast_ratio("#000000")) == 21


def test_the_ageing_lines_take_their_models_colour(tmp_path: Path) -> None:
    rows = _verdicts([0, 5, 10])
    rows[2] |= {"model_name": "other", "model_version": "3"}
    rows.append(rows[0] | {"model_version": "2", "updated_at": rows[1]["updated_at"]})
    colors = charts.model_colors(["m", "other"])
    figure, _ = charts.feedback_ageing(rows, tmp_path, AlertRule(), colors)
    lines = {t.name: t.line for t in figure.data if t.type == "scatter" and t.name.startswith(("m v", "other v"))}
    assert {name: line.color for name, line in lines.items()} == {
        "m v1": colors["m"], "m v2": colors["m"], "other v3": colors["other"]}
    assert lines["m v1"].dash != lines["m v2"].dash  # two versions of one model


def test_the_quality_bars_start_at_zero() -> None:
    tidy = pd.DataFrame({"model": ["a", "a", "b", "b"], "set": ["test", "validation"] * 2,
                         "metric": ["accuracy"] * 4, "value": [0.80, 0.79, 0.66, 0.65]})
    figure = charts.metrics_by_model(tidy)
    axes = [figure.layout[name] for name in figure.layout if name.startswith("yaxis")]
    assert axes and all(axis.range[0] == 0 for axis in axes)  # was 0.6, unsaid
    colors = {t.name: t.marker.color for t in figure.data}
    assert colors == {"test": charts.SET_COLORS["test"], "validation": charts.SET_COLORS["validation"]}
    assert all(charts.contrast_ratio(c) >= 3 for c in charts.SET_COLORS.values())


def test_review_item_label_shortens_the_tweet() -> None:
    row = {"text": "word " * 30, "model_name": "minilm", "updated_at": "2026-11-25T16:46:28.123456Z"}
    label = charts.review_item_label(row)
    tweet, model, moment = label.split(" · ")
    assert tweet.startswith("“word word") and tweet.endswith("…”") and len(tweet) <= 62
    assert (model, moment) == ("minilm", "Nov 25 16:46")
    assert charts.shorten("line one\nline two") == "line one line two"
    assert charts.shorten("x" * 80, 60) == "x" * 59 + "…"
