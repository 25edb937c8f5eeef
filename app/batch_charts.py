"""Figures of a scored file (the Predict page's batch tab): label shares and the confidence of each label."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from app.charts import LABEL_COLORS

NOT_SCORED = "not scored"
_LAYOUT = {"margin": {"l": 10, "r": 10, "t": 40, "b": 10}}


def label_shares(result: pd.DataFrame) -> go.Figure:
    """One horizontal bar per label (rows not scored included), with its count and share."""
    counts = result["label"].fillna(NOT_SCORED).value_counts()
    shares = counts / counts.sum()
    figure = go.Figure(go.Bar(
        x=counts.to_numpy(), y=counts.index.tolist(), orientation="h",
        text=[f"{n:,} ({s:.0%})" for n, s in zip(counts, shares, strict=True)], textposition="auto",
        marker_color=[LABEL_COLORS.get(label, "#7f7f7f") for label in counts.index]))
    figure.update_layout(title="Tweets per label", height=110 + 40 * len(counts), xaxis_title="tweets", **_LAYOUT)
    return figure


def confidence_histogram(result: pd.DataFrame) -> go.Figure:
    """How sure the model was: the confidence of the scored rows, one overlaid histogram per label."""
    scored = result.dropna(subset=["label"])
    figure = go.Figure()
    for label, rows in scored.groupby("label"):
        figure.add_trace(go.Histogram(x=rows["confidence"], name=str(label), opacity=0.75,
                                      xbins={"start": 0.5, "end": 1.0, "size": 0.025},
                                      marker_color=LABEL_COLORS.get(str(label), "#7f7f7f")))
    figure.update_layout(title="Confidence of each label", barmode="overlay", height=260,
                         xaxis={"title": "confidence", "tickformat": ".0%", "range": [0.5, 1.0]},
                         yaxis_title="tweets", **_LAYOUT)
    return figure


def filtered(result: pd.DataFrame, labels: list[str], min_confidence: float) -> pd.DataFrame:
    """The rows whose label is one of ``labels`` (``"not scored"`` for rows without one) and, when scored, whose
    confidence is at least ``min_confidence``."""
    label = result["label"].fillna(NOT_SCORED)
    keep = label.isin(labels) & (result["label"].isna() | (result["confidence"] >= min_confidence))
    return result[keep]
