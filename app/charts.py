"""Plotly figure builders: each takes plain data and returns a figure; pages only render them."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from sentiment.explain import Explanation

LABEL_COLORS = {"negative": "#d62728", "positive": "#2ca02c"}
_LAYOUT = {"margin": {"l": 10, "r": 10, "t": 40, "b": 10}}


def probability_bar(probabilities: Mapping[str, float], title: str = "Class probabilities") -> go.Figure:
    """Horizontal bars of P(label) for one prediction."""
    labels = list(probabilities)
    values = [float(probabilities[label]) for label in labels]
    figure = go.Figure(go.Bar(x=values, y=labels, orientation="h", text=[f"{v:.1%}" for v in values],
                              textposition="auto", marker_color=[LABEL_COLORS.get(lbl, "#1f77b4") for lbl in labels]))
    axis = {"range": [0, 1.02], "tickformat": ".0%", "tickvals": [0, 0.25, 0.5, 0.75, 1]}
    figure.update_layout(title=title, xaxis=axis, height=180, **_LAYOUT)
    return figure


def all_models_bar(verdicts: pd.DataFrame) -> go.Figure:
    """P(positive) of every model for the same tweet (columns ``model``, ``p_positive``, ``label``)."""
    figure = px.bar(verdicts, x="p_positive", y="model", orientation="h", color="label",
                    color_discrete_map=LABEL_COLORS, range_x=[0, 1], title="P(positive) by model")
    figure.add_vline(x=0.5, line_dash="dash", line_color="grey")
    figure.update_layout(height=120 + 40 * len(verdicts), xaxis_tickformat=".0%", **_LAYOUT)
    return figure


def metrics_by_model(tidy: pd.DataFrame, champion: str | None = None) -> go.Figure:
    """Grouped bars: one panel per metric, one bar per model and evaluation set.

    Args:
        tidy: long frame with ``model``, ``set``, ``metric`` and ``value`` (``app.runs.tidy_metrics``).
        champion: the champion's name, marked with a star.
    """
    frame = tidy.copy()
    frame["model"] = [f"★ {m}" if m == champion else m for m in frame["model"]]
    crowded = not frame.empty and frame.groupby("metric").size().max() > 8  # values only on hover then
    figure = px.bar(frame, x="model", y="value", color="set", barmode="group", facet_col="metric",
                    text_auto=False if crowded else ".3f", title="Quality per model and evaluation set")
    figure.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
    low = max(0.0, float(frame["value"].min()) - 0.05) if not frame.empty else 0.0
    figure.update_yaxes(range=[low, 1.0], matches="y")
    figure.update_layout(height=420, **_LAYOUT)
    return figure


def pareto_front(points: pd.DataFrame, x: str = "latency_ms", y: str = "accuracy") -> pd.Series:
    """True for the points no other point beats (lower or equal ``x`` and higher or equal ``y``, one strictly)."""
    flags = []
    for _, point in points.iterrows():
        dominated = ((points[x] <= point[x]) & (points[y] >= point[y]) &
                     ((points[x] < point[x]) | (points[y] > point[y]))).any()
        flags.append(not dominated)
    return pd.Series(flags, index=points.index, dtype=bool)


def accuracy_vs_latency(points: pd.DataFrame, champion: str | None = None, set_name: str = "") -> go.Figure:
    """Accuracy against single-tweet latency; the Pareto front is drawn as a line.

    Args:
        points: ``model``, ``family``, ``latency_ms`` and ``accuracy`` per model.
        champion: the champion's name, drawn larger.
        set_name: the evaluation set the accuracy comes from (for the title).
    """
    frame = points.dropna(subset=["latency_ms", "accuracy"]).copy()
    frame["pareto"] = pareto_front(frame)
    frame["size"] = [18 if m == champion else 11 for m in frame["model"]]
    figure = px.scatter(frame, x="latency_ms", y="accuracy", color="family", text="model", size="size",
                        size_max=18, log_x=True, hover_data={"size": False, "pareto": True},
                        title=f"Accuracy ({set_name}) vs latency p50 — Pareto front dashed".replace(" ()", ""))
    front = frame[frame["pareto"]].sort_values("latency_ms")
    figure.add_trace(go.Scatter(x=front["latency_ms"], y=front["accuracy"], mode="lines", name="Pareto front",
                                line={"dash": "dash", "color": "black"}))
    positions = ("top center", "bottom center", "middle right")  # neighbours' names do not overprint
    figure.for_each_trace(lambda t: t.update(textposition=[positions[i % 3] for i in range(len(t.x))]),
                          selector={"mode": "markers+text"})
    figure.update_xaxes(dtick="D2")  # label 1, 2 and 5 of each decade, not every digit
    figure.update_layout(xaxis_title="latency p50 (ms, log scale)", height=420, **_LAYOUT)
    return figure


def roc_curves(curves: Mapping[str, Mapping[str, Any]], set_name: str = "") -> go.Figure:
    """ROC curve of each model (``{"fpr": [...], "tpr": [...], "auc": float}``) with the chance diagonal."""
    figure = go.Figure()
    for model, curve in curves.items():
        auc = curve.get("auc")
        name = f"{model} (AUC {auc:.3f})" if isinstance(auc, int | float) else model
        figure.add_trace(go.Scatter(x=list(curve["fpr"]), y=list(curve["tpr"]), mode="lines", name=name))
    figure.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance",
                                line={"dash": "dot", "color": "grey"}))
    figure.update_layout(title=f"ROC curves {set_name}".strip(), xaxis_title="false positive rate",
                         yaxis_title="true positive rate", height=420, **_LAYOUT)
    return figure


def confusion_matrix(matrix: Sequence[Sequence[float]], labels: Sequence[str], title: str) -> go.Figure:
    """Heatmap of ``[[tn, fp], [fn, tp]]`` with counts and row shares."""
    totals = [sum(row) or 1 for row in matrix]
    text = [[f"{value:,.0f}<br>{value / totals[i]:.1%}" for value in row] for i, row in enumerate(matrix)]
    figure = go.Figure(go.Heatmap(z=matrix, x=[f"predicted {lbl}" for lbl in labels],
                                  y=[f"true {lbl}" for lbl in labels], text=text, texttemplate="%{text}",
                                  colorscale="Blues", showscale=False))
    figure.update_layout(title=title, yaxis_autorange="reversed", height=300, **_LAYOUT)
    return figure


def loss_history(history: pd.DataFrame, title: str = "Training loss", window: int = 10) -> go.Figure:
    """Training loss per step (``step``, ``value``) with a rolling mean."""
    frame = history.sort_values("step")
    figure = go.Figure(go.Scatter(x=frame["step"], y=frame["value"], mode="lines", name="loss",
                                  line={"color": "lightsteelblue"}))
    if len(frame) >= window:
        figure.add_trace(go.Scatter(x=frame["step"], y=frame["value"].rolling(window).mean(), mode="lines",
                                    name=f"rolling mean ({window})", line={"color": "navy"}))
    figure.update_layout(title=title, xaxis_title="step", yaxis_title="loss", height=320, **_LAYOUT)
    return figure


def misclassified_timeline(times: pd.Series, threshold: int, window_minutes: int, hours: int = 6,
                           now: pd.Timestamp | None = None) -> go.Figure:
    """Thumbs-down verdicts per ``window_minutes`` bucket over the last ``hours``, with the alert threshold."""
    freq = f"{window_minutes}min"
    end = (now or pd.Timestamp.now(tz="UTC")).ceil(freq)
    buckets = pd.date_range(end - pd.Timedelta(hours=hours), end, freq=freq)
    stamps = pd.to_datetime(times, utc=True)
    counts = pd.Series(1, index=stamps[stamps >= buckets[0]]).resample(freq).sum() if len(stamps) else pd.Series()
    counts = counts.reindex(buckets, fill_value=0)
    figure = go.Figure(go.Bar(x=counts.index, y=counts.values, name="thumbs down"))
    figure.add_hline(y=threshold + 0.5, line_dash="dash", line_color="red",
                     annotation_text=f"alert above {threshold} per {window_minutes} min")
    figure.update_layout(title=f"Misclassified tweets, last {hours} h", height=260, **_LAYOUT)
    return figure


def explanation_bar(explanation: Explanation, n: int = 8) -> go.Figure:
    """The ``n`` words that moved P(positive) most, each with how much it added (towards positive is right)."""
    position = {id(w): i + 1 for i, w in enumerate(explanation.words)}
    words = list(reversed(explanation.strongest(n)))  # strongest at the top
    values = [w.contribution for w in words]
    figure = go.Figure(go.Bar(
        x=values, y=[f"{w.text} (word {position[id(w)]})" for w in words], orientation="h",
        text=[f"{v:+.1%}" for v in values], textposition="auto",
        marker_color=[LABEL_COLORS["positive"] if v > 0 else LABEL_COLORS["negative"] for v in values]))
    figure.update_layout(title="What each word added to P(positive)", height=120 + 28 * len(words),
                         xaxis={"tickformat": "+.0%", "zeroline": True}, **_LAYOUT)
    return figure


def highlighted_words(text: str, explanation: Explanation) -> str:
    """The tweet as HTML, each explained word on a background whose hue says which way it pushed (green:
    positive, red: negative) and whose strength says how much; the change is in each word's tooltip. Escaped."""
    strongest = max((abs(w.contribution) for w in explanation.words), default=0.0) or 1.0
    parts, at = [], 0
    for word in explanation.words:
        parts.append(html.escape(text[at:word.start]))
        # Light backgrounds only (at most 40 % of the colour over white), so the dark text keeps its contrast.
        alpha = 0.4 * abs(word.contribution) / strongest
        rgb = "44,160,44" if word.contribution > 0 else "214,39,40"
        direction = "towards positive" if word.contribution > 0 else "towards negative"
        parts.append(f'<span style="background:rgba({rgb},{alpha:.2f});color:#111;border-radius:3px;padding:0 2px" '
                     f'title="{word.contribution:+.1%} {direction}">{html.escape(word.text)}</span>')
        at = word.end
    parts.append(html.escape(text[at:]))
    return '<p style="font-size:1.05rem;line-height:1.9;white-space:pre-wrap">' + "".join(parts) + "</p>"
