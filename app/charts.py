"""Plotly figure builders: each takes plain data and returns a figure; pages only render them.

Also the short labels the pages show for items (a tweet shortened for a picker) and the per-model colours.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from app import aging
from app.alerts import AlertRule
from sentiment.explain import Explanation

LABEL_COLORS = {"negative": "#d62728", "positive": "#2ca02c"}
_LAYOUT = {"margin": {"l": 10, "r": 10, "t": 40, "b": 10}}
# Qualitative colours for models, every one at least 3:1 against white (WCAG 1.4.11), in the order they are given
# out; after these, Plotly's Dark24 (all above 3:1). Set explicitly on each trace: Streamlit's own theme would
# otherwise recolour the traces with its palette, whose light blue and pink are hard to see on white.
MODEL_PALETTE = ("#1F77B4", "#D95F02", "#2CA02C", "#7570B3", "#C2185B", "#8C564B", "#008695", "#B68100",
                 "#222A2A", "#6C7C32")
# The evaluation sets of the quality chart: Sentiment140's in navy, mid blue and grey; the out-of-domain sets in
# warm hues, so the two kinds of data read apart at a glance (each at least 3:1 against white).
SET_COLORS = {"test": "#1F4E8C", "validation_random": "#4C86C6", "validation": "#6B6B6B",
              "tweeteval_validation": "#B35806", "airline_dev": "#8E2C6B"}
_FAMILY_SYMBOLS = ("circle", "diamond", "square", "triangle-up", "cross", "x", "star")


# -- labels and colours ------------------------------------------------------------------------------------------
def shorten(text: str, limit: int = 60) -> str:
    """``text`` on one line, cut to at most ``limit`` characters at a word boundary with an ellipsis."""
    flat = " ".join(str(text).split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit * 2 // 3:  # a word boundary not too far back
        cut = cut[:space]
    return cut.rstrip(" ,.;:-") + "…"


def _utc(value: Any) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def review_item_label(row: Mapping[str, Any], limit: int = 60) -> str:
    """A feedback row as the review picker shows it: the shortened tweet, the model and a short UTC time."""
    return f"“{shorten(row['text'], limit)}” · {row['model_name']} · {_utc(row['updated_at']):%b %d %H:%M}"


def contrast_ratio(color: str, background: str = "#FFFFFF") -> float:
    """WCAG contrast ratio of two ``#rrggbb`` colours (1 to 21)."""
    def luminance(value: str) -> float:
        channels = [int(value.lstrip("#")[i:i + 2], 16) / 255 for i in (0, 2, 4)]
        linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    light, dark = sorted((luminance(color), luminance(background)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def model_colors(models: Iterable[str], given: Mapping[str, str] | None = None) -> dict[str, str]:
    """One colour per model, given out in sorted order, so a model keeps its colour on every chart of a page
    (pass every model the page may show, not only the filtered ones).

    Args:
        models: the models to colour.
        given: colours already given out (kept); the models without one get colours none of them uses.
    """
    colors = dict(given or {})
    palette = [*MODEL_PALETTE, *(c for c in px.colors.qualitative.Dark24 if c not in MODEL_PALETTE)]
    free = [c for c in palette if c not in colors.values()] or palette
    for index, model in enumerate(sorted(set(models) - set(colors))):
        colors[model] = free[index % len(free)]
    return colors


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
    sets = list(dict.fromkeys(frame["set"]))
    figure = px.bar(frame, x="model", y="value", color="set", barmode="group", facet_col="metric",
                    color_discrete_map={s: SET_COLORS.get(s, "#555555") for s in sets},
                    text_auto=False if crowded else ".3f", title="Quality per model and evaluation set")
    figure.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
    # Bars start at 0: a bar cut at 0.6 makes a 0.80 look twice a 0.70. The values are printed on the bars (on
    # hover when crowded), and the trade-off chart below shows accuracy on a zoomed axis.
    figure.update_yaxes(range=[0, 1.0], dtick=0.2, matches="y", title_text="")
    figure.update_layout(height=420, yaxis_title="score (axis from 0 to 1)", **_LAYOUT)
    return figure


def pareto_front(points: pd.DataFrame, x: str = "latency_ms", y: str = "accuracy") -> pd.Series:
    """True for the points no other point beats (lower or equal ``x`` and higher or equal ``y``, one strictly)."""
    flags = []
    for _, point in points.iterrows():
        dominated = ((points[x] <= point[x]) & (points[y] >= point[y]) &
                     ((points[x] < point[x]) | (points[y] > point[y]))).any()
        flags.append(not dominated)
    return pd.Series(flags, index=points.index, dtype=bool)


def log_ticks(low: float, high: float) -> list[float]:
    """Round values from the one at or below ``low`` to the one at or above ``high``, for a readable log axis: 1, 2
    and 5 of each decade over up to 2 decades, 1 and 3 (evenly spaced) up to 4.5, then powers of ten."""
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    decades = math.log10(high) - math.log10(low)
    mantissas = (1, 2, 5) if decades <= 2 else (1, 3) if decades <= 4.5 else (1,)
    values = sorted(float(f"{m * 10.0 ** e:.12g}") for e in range(first - 1, last + 2) for m in mantissas)
    below = max(v for v in values if v <= low * (1 + 1e-9))
    above = min(v for v in values if v >= high * (1 - 1e-9) and v > below)  # two ticks at least
    return [v for v in values if below <= v <= above]


def _ms(value: float) -> str:
    return f"{value:,.12g} ms"


# Label placement on the trade-off chart, in pixels of the plot area at the narrowest width the page gives it (a
# wider chart only moves the points apart). Each label goes to the first offset from its point where it covers
# no other label and no marker; an arrow joins it to its point.
_PLOT_PX = (480.0, 300.0)
_CHAR_PX, _LABEL_H_PX = 7.0, 16.0


def _box(cx: float, cy: float, width: float, height: float) -> tuple[float, float, float, float]:
    return cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def label_offsets(xs: Sequence[float], ys: Sequence[float], texts: Sequence[str], radii: Sequence[float],
                  size: tuple[float, float] = _PLOT_PX) -> list[tuple[float, float]]:
    """Pixel offsets ``(ax, ay)`` (``ay`` down) of each label from its point so that no two labels overlap
    and no label covers a marker, where the plot area allows.

    Args:
        xs, ys: the points in pixels of the plot area (``y`` down).
        texts: the labels (their width is estimated from their length).
        radii: the markers' radii in pixels.
        size: the plot area's width and height in pixels.
    """
    width, height = size
    markers = [_box(x, y, 2 * r, 2 * r) for x, y, r in zip(xs, ys, radii, strict=True)]
    placed: list[tuple[float, float, float, float]] = []
    offsets = []
    for index, (x, y, text) in enumerate(zip(xs, ys, texts, strict=True)):
        w, h = _CHAR_PX * len(text) + 6, _LABEL_H_PX
        side = w / 2 + radii[index] + 10
        candidates = [(0, -24), (0, 24), (side, 0), (-side, 0), (side, -26), (-side, -26), (side, 26),
                      (-side, 26), (0, -48), (0, 48), (side, -50), (-side, -50), (side, 50), (-side, 50),
                      (0, -72), (0, 72)]
        best, best_cost = candidates[0], math.inf
        for ax, ay in candidates:
            box = _box(x + ax, y + ay, w, h)
            cost = sum(_overlap(box, other) for other in placed) + sum(_overlap(box, m) for m in markers)
            outside = (max(0.0, -box[0]) + max(0.0, box[2] - width)) * h + (
                max(0.0, -box[1]) + max(0.0, box[3] - height)) * w
            cost += 0.5 * outside  # a label past the plot area's edge still shows, over the margin
            if cost < best_cost:
                best, best_cost = (ax, ay), cost
            if cost == 0:
                break
        placed.append(_box(x + best[0], y + best[1], w, h))
        offsets.append((float(best[0]), float(best[1])))
    return offsets


def accuracy_vs_latency(points: pd.DataFrame, champion: str | None = None, set_name: str = "",
                        colors: Mapping[str, str] | None = None) -> go.Figure:
    """Accuracy against single-tweet latency; the Pareto front is drawn as a line.

    Each model is its own trace (colour per model, symbol per family, in the legend); its name is written beside
    it with an arrow, placed so that close models' names do not overprint each other.

    Args:
        points: ``model``, ``family``, ``latency_ms`` and ``accuracy`` per model.
        champion: the champion's name, drawn larger and starred.
        set_name: the evaluation set the accuracy comes from (for the title).
        colors: colour per model (``model_colors``); by default given out here.
    """
    frame = points.dropna(subset=["latency_ms", "accuracy"])
    frame = frame[frame["latency_ms"] > 0].sort_values(["latency_ms", "accuracy"]).reset_index(drop=True)
    frame["pareto"] = pareto_front(frame)
    colors = model_colors(frame["model"], colors)
    symbols = {f: _FAMILY_SYMBOLS[i % len(_FAMILY_SYMBOLS)] for i, f in enumerate(sorted(set(frame["family"])))}
    title = f"Accuracy ({set_name}) vs latency p50 — Pareto front dashed".replace(" ()", "")
    figure = go.Figure()
    if frame.empty:
        figure.update_layout(title=title, height=460, **_LAYOUT)
        return figure

    ticks = log_ticks(float(frame["latency_ms"].min()), float(frame["latency_ms"].max()))
    low, high = math.log10(frame["latency_ms"].min()), math.log10(frame["latency_ms"].max())
    pad = 0.12 * max(high - low, 1.0)
    x_range = [min(math.log10(ticks[0]), low - pad), max(math.log10(ticks[-1]), high + pad)]
    bottom, top = float(frame["accuracy"].min()), float(frame["accuracy"].max())
    y_pad = 0.2 * max(top - bottom, 0.02)
    y_range = [bottom - y_pad, top + y_pad]

    sizes = [18 if m == champion else 11 for m in frame["model"]]
    for (_, point), size in zip(frame.iterrows(), sizes, strict=True):
        color = colors[point["model"]]
        figure.add_trace(go.Scatter(
            x=[point["latency_ms"]], y=[point["accuracy"]], mode="markers", name=f"{point['model']} · {point['family']}",
            marker={"size": size, "color": color, "symbol": symbols[point["family"]],
                    "line": {"width": 1, "color": "white"}},
            hovertemplate=(f"<b>{html.escape(str(point['model']))}</b> ({html.escape(str(point['family']))})"
                           "<br>latency p50 %{x:.3g} ms<br>accuracy %{y:.4f}"
                           f"{'<br>on the Pareto front' if point['pareto'] else ''}<extra></extra>")))
    front = frame[frame["pareto"]]
    figure.add_trace(go.Scatter(x=front["latency_ms"], y=front["accuracy"], mode="lines", name="Pareto front",
                                line={"dash": "dash", "color": "black"}, hoverinfo="skip"))

    width, height = _PLOT_PX
    xs = [(math.log10(v) - x_range[0]) / (x_range[1] - x_range[0]) * width for v in frame["latency_ms"]]
    ys = [(y_range[1] - v) / (y_range[1] - y_range[0]) * height for v in frame["accuracy"]]
    texts = [f"★ {m}" if m == champion else str(m) for m in frame["model"]]
    offsets = label_offsets(xs, ys, texts, [s / 2 for s in sizes])
    for (_, point), text, (ax, ay) in zip(frame.iterrows(), texts, offsets, strict=True):
        figure.add_annotation(x=math.log10(point["latency_ms"]), y=point["accuracy"], text=html.escape(text),
                              ax=ax, ay=ay, showarrow=True, arrowhead=0, arrowwidth=1, arrowcolor="#888888",
                              standoff=4, font={"size": 12, "color": colors[point["model"]]},
                              bgcolor="rgba(255,255,255,0.8)")
    figure.update_xaxes(type="log", range=x_range, tickmode="array", tickvals=ticks, ticktext=[_ms(v) for v in ticks],
                        minor={"ticks": "", "showgrid": False}, title_text="latency p50 (log scale)")
    figure.update_yaxes(range=y_range, title_text=f"accuracy ({set_name})".replace(" ()", ""))
    figure.update_layout(title=title, height=460, legend={"orientation": "h", "y": -0.2, "title": ""}, **_LAYOUT)
    return figure


def roc_curves(curves: Mapping[str, Mapping[str, Any]], set_name: str = "",
               colors: Mapping[str, str] | None = None) -> go.Figure:
    """ROC curve of each model (``{"fpr": [...], "tpr": [...], "auc": float}``) with the chance diagonal.

    Args:
        curves: the curve of each model.
        set_name: the evaluation set (for the title).
        colors: colour per model (``model_colors``), the same as on the page's other charts.
    """
    colors = model_colors(curves, colors)
    # Neighbours in name order (tfidf-lr, tfidf-svm) often have the same curve: each gets another dash, and the
    # dashed ones are drawn over the solid ones, so both colours show where they coincide.
    dashes = {model: ("solid", "dash", "dot")[i % 3] for i, model in enumerate(sorted(curves))}
    order = sorted(curves, key=lambda m: (("solid", "dash", "dot").index(dashes[m]), m))
    figure = go.Figure()
    for model in order:
        curve, auc = curves[model], curves[model].get("auc")
        name = f"{model} (AUC {auc:.3f})" if isinstance(auc, int | float) else model
        figure.add_trace(go.Scatter(x=list(curve["fpr"]), y=list(curve["tpr"]), mode="lines", name=name,
                                    legendrank=1 + sorted(curves).index(model),
                                    line={"color": colors[model], "width": 2.5, "dash": dashes[model]}))
    figure.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", legendrank=1000,
                                line={"dash": "dot", "color": "grey", "width": 1.5}))
    figure.update_layout(title=f"ROC curves {set_name}".strip(), xaxis_title="false positive rate",
                         yaxis_title="true positive rate", height=420, **_LAYOUT)
    return figure


def confusion_matrix(matrix: Sequence[Sequence[float]], labels: Sequence[str], title: str,
                     color: str | None = None) -> go.Figure:
    """Heatmap of ``[[tn, fp], [fn, tp]]`` with counts and row shares; ``color``: the title's (the model's)."""
    totals = [sum(row) or 1 for row in matrix]
    text = [[f"{value:,.0f}<br>{value / totals[i]:.1%}" for value in row] for i, row in enumerate(matrix)]
    figure = go.Figure(go.Heatmap(z=matrix, x=[f"predicted {lbl}" for lbl in labels],
                                  y=[f"true {lbl}" for lbl in labels], text=text, texttemplate="%{text}",
                                  colorscale="Blues", showscale=False))
    figure.update_layout(title={"text": title, **({"font": {"color": color}} if color else {})},
                         yaxis_autorange="reversed", height=300, **_LAYOUT)
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


def fit_time_axis(figure: go.Figure, bucket: pd.Timedelta, min_buckets: int = 12) -> go.Figure:
    """Fit a time axis to the figure's data: from its first to its last point, padded by a bucket.

    Marks that are not data (the version changes' lines and labels) no longer stretch the axis: one weeks before
    the first verdict squeezed every point into a line at the right edge. Those outside the range are dropped
    and named in the subtitle instead. Bars get the bucket's width, so a lone bar still shows as one.

    Args:
        figure: a figure whose traces have times on ``x`` (``app.aging.accuracy_over_time``).
        bucket: the time bucket the bars count over.
        min_buckets: the narrowest range, in buckets (one verdict shows an hour of 5-minute buckets).
    """
    stamps = [pd.to_datetime(pd.Series(list(t.x)), utc=True) for t in figure.data if t.x is not None and len(t.x)]
    if not stamps:
        return figure
    times = pd.concat(stamps)
    first, last = times.min(), times.max()
    pad = max(bucket, (last - first) * 0.04)
    low, high = first - pad, last + pad
    if high - low < bucket * min_buckets:
        middle = first + (last - first) / 2
        low, high = middle - bucket * min_buckets / 2, middle + bucket * min_buckets / 2

    changes = [(i, _utc(a.x)) for i, a in enumerate(figure.layout.annotations)
               if a.xref in (None, "x") and a.x is not None]
    before = [i for i, moment in changes if moment < low]
    after = [i for i, moment in changes if moment > high]
    figure.layout.shapes = [s for s in figure.layout.shapes
                            if s.xref not in (None, "x") or s.x0 is None or low <= _utc(s.x0) <= high]
    notes = []
    for indices, where, pick in ((before, "before", -1), (after, "after", 0)):
        if indices:
            shown = figure.layout.annotations[indices[pick]]
            more = f" (and {len(indices) - 1} more)" if len(indices) > 1 else ""
            notes.append(f"{where} this range: {shown.text}, {_utc(shown.x):%Y-%m-%d %H:%M} UTC{more}")
    figure.layout.annotations = [a for i, a in enumerate(figure.layout.annotations) if i not in {*before, *after}]
    if notes:
        figure.update_layout(title_subtitle_text="Version changes " + "; ".join(notes), margin_t=70)
    width_ms = bucket.total_seconds() * 1000 * 0.8
    figure.for_each_trace(lambda t: t.update(width=width_ms), selector={"type": "bar"})
    figure.update_xaxes(range=[low.tz_convert(None), high.tz_convert(None)], autorange=False, type="date")
    return figure


def feedback_ageing(rows: Sequence[Mapping[str, Any]], exports_dir: Path, rule: AlertRule,
                    colors: Mapping[str, str] | None = None) -> tuple[go.Figure, pd.DataFrame]:
    """``app.aging.ageing_view`` (the ageing chart and the per-version table) with the time axis fitted to the
    feedback (``fit_time_axis``) and each version's accuracy line in its model's colour (``colors``, by default
    given out here), dashed differently per version of the same model."""
    frame = aging.verdict_frame(rows)
    freq = aging.bucket_for(frame)
    figure = aging.accuracy_over_time(frame, rule, aging.publications(exports_dir) or None, freq)
    if not frame.empty:
        fit_time_axis(figure, pd.Timedelta(freq))
        colors = model_colors(frame["model_name"], colors)
        versions = frame.drop_duplicates("version").sort_values("time")
        dashes = ("solid", "dash", "dot", "dashdot")
        for model, group in versions.groupby("model_name", sort=False):
            for index, version in enumerate(group["version"]):
                figure.update_traces(line={"color": colors[model], "width": 2.5,
                                           "dash": dashes[index % len(dashes)]},
                                     marker={"color": colors[model]},
                                     selector={"type": "scatter", "name": version})
    return figure, aging.version_summary(frame)


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
