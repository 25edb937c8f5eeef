"""Seeing the model age: feedback accuracy over time per served model version, from the feedback store.

A verdict says the model was right (a thumbs up, or a thumbs down the maintainer corrected back to the predicted
label) or wrong (a thumbs down, confirmed by review or not yet reviewed). The chart draws that accuracy per time
bucket and model version over the verdict counts, marks where the alert rule (``app.alerts``) fired, and draws a
vertical line where the served version changed: from the manifest's publications (``retrain``, ``rollback``,
``export``, with the MLflow run) when there is a manifest, else where a new version first got feedback. Nothing here
reads or shows tweet text, so the same figures serve the analysts' Compare page.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from app.alerts import AlertRule
from sentiment.exports import ExportError
from sentiment.manifest import read_manifest

logger = logging.getLogger(__name__)

OUTCOMES = ("thumbs up", "corrected (model right)", "confirmed (model wrong)", "thumbs down, unreviewed")
_OUTCOME_COLORS = dict(zip(OUTCOMES, ("#2ca02c", "#98df8a", "#d62728", "#ff9896"), strict=True))
_LAYOUT = {"margin": {"l": 10, "r": 10, "t": 40, "b": 10}}
_BUCKETS = ("5min", "15min", "1h", "6h", "1D", "7D")


def _outcome(row: pd.Series) -> str:
    if row["verdict"] == "up":
        return OUTCOMES[0]
    if row["review_state"] != "reviewed":
        return OUTCOMES[3]
    return OUTCOMES[1] if row["true_label"] == row["predicted_label"] else OUTCOMES[2]


def verdict_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Verdicts (``FeedbackStore.verdict_history``) with ``time``, ``version`` (``name vN``), ``outcome``, ``correct``."""
    frame = pd.DataFrame(list(rows), columns=["updated_at", "model_name", "model_version", "verdict",
                                              "predicted_label", "true_label", "review_state"])
    frame["time"] = pd.to_datetime(frame["updated_at"], utc=True)
    frame["version"] = frame["model_name"] + " v" + frame["model_version"].astype(str)
    frame["outcome"] = frame.apply(_outcome, axis=1) if len(frame) else pd.Series(dtype=str)
    frame["correct"] = frame["outcome"].isin(OUTCOMES[:2])
    return frame.drop(columns=["updated_at"])


def alert_firings(times: pd.Series, rule: AlertRule) -> list[pd.Timestamp]:
    """Where the rule started firing: thumbs downs after which more than ``threshold`` fell within ``window``.

    The count at each thumbs down is the one ``app.alerts.evaluate`` would have made at that moment.
    """
    stamps = pd.DatetimeIndex(pd.to_datetime(times, utc=True)).sort_values()
    if not len(stamps):
        return []
    in_window = np.arange(1, len(stamps) + 1) - stamps.searchsorted(stamps - rule.window, side="left")
    firing = in_window > rule.threshold
    starts = firing & ~np.concatenate([[False], firing[:-1]])
    return list(stamps[starts])


def publications(exports_dir: Path) -> list[dict[str, Any]]:
    """The manifest's history as changes of the served champion: time, label and reason (empty without one)."""
    try:
        manifest = read_manifest(exports_dir)
    except ExportError as error:
        logger.warning("manifest not readable for the ageing chart: %s", error)
        return []
    changes, served = [], None
    for entry in manifest.history if manifest else ():
        model = entry.get("models", {}).get(entry.get("champion"), {})
        now_served = f"{entry.get('champion')} v{model.get('version')}"
        if now_served != served and entry.get("published_at"):
            run = f", run {str(entry['run_id'])[:8]}" if entry.get("run_id") else ""
            changes.append({"time": pd.Timestamp(entry["published_at"]).tz_convert("UTC"), "version": now_served,
                            "label": f"{entry.get('reason')} → {now_served}{run}"})
        served = now_served
    return changes


def version_changes(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Where each version first got feedback (used when no manifest records the publications)."""
    first = frame.sort_values("time").groupby("version", sort=False)["time"].min().sort_values()
    return [{"time": moment, "version": version, "label": f"first feedback on {version}"}
            for version, moment in first.items()]


def bucket_for(frame: pd.DataFrame, buckets: int = 40) -> str:
    """The smallest bucket of ``_BUCKETS`` giving at most about ``buckets`` buckets over the frame's span."""
    span = frame["time"].max() - frame["time"].min() if len(frame) else pd.Timedelta(0)
    for freq in _BUCKETS:
        if span / pd.Timedelta(freq) <= buckets:
            return freq
    return _BUCKETS[-1]


def accuracy_over_time(frame: pd.DataFrame, rule: AlertRule, changes: list[dict[str, Any]] | None = None,
                       freq: str | None = None) -> go.Figure:
    """Verdict counts per outcome (bars), feedback accuracy per version (lines), alert firings, version changes.

    Args:
        frame: ``verdict_frame`` output.
        rule: the alert rule whose firings are marked.
        changes: served-version changes (``publications``); None: where each version first got feedback.
        freq: time bucket (pandas frequency); None picks one from the span.
    """
    freq = freq or bucket_for(frame)
    figure = go.Figure()
    if frame.empty:
        figure.update_layout(title="Feedback accuracy per model version: no feedback yet", height=360, **_LAYOUT)
        return figure
    # Each bucket is drawn at its middle, so a version change inside it shows inside its bar.
    binned = frame.assign(bucket=frame["time"].dt.floor(freq) + pd.Timedelta(freq) / 2)
    counts = binned.groupby(["bucket", "outcome"]).size().unstack(fill_value=0)
    for outcome in OUTCOMES:
        if outcome in counts:
            figure.add_trace(go.Bar(x=counts.index, y=counts[outcome], name=outcome, yaxis="y2", opacity=0.45,
                                    marker_color=_OUTCOME_COLORS[outcome]))
    accuracy = binned.groupby(["version", "bucket"])["correct"].agg(["mean", "size"]).reset_index()
    for version, points in accuracy.groupby("version", sort=False):
        figure.add_trace(go.Scatter(x=points["bucket"], y=points["mean"], mode="lines+markers", name=version,
                                    customdata=points["size"],
                                    hovertemplate="%{x}<br>accuracy %{y:.0%} of %{customdata} verdicts"))
    fired = alert_firings(frame.loc[frame["verdict"] == "down", "time"], rule)
    if fired:
        minutes = int(rule.window.total_seconds() // 60)
        figure.add_trace(go.Scatter(x=fired, y=[1.04] * len(fired), mode="markers", name=(
            f"alert fired (> {rule.threshold} thumbs down in {minutes} min)"),
            marker={"symbol": "triangle-down", "size": 12, "color": "red"}))
    for change in version_changes(frame) if changes is None else changes:
        figure.add_shape(type="line", x0=change["time"], x1=change["time"], y0=0, y1=1, yref="paper",
                         line={"dash": "dot", "color": "grey"})
        figure.add_annotation(x=change["time"], y=1, yref="paper", text=change["label"], showarrow=False,
                              textangle=-90, xanchor="right", yanchor="top", font={"size": 10})
    figure.update_layout(title="Feedback accuracy per model version", barmode="stack", height=420,
                         yaxis={"title": "accuracy (verdicts)", "range": [0, 1.08], "tickformat": ".0%"},
                         yaxis2={"title": "verdicts", "overlaying": "y", "side": "right", "showgrid": False,
                                 "tickmode": "auto", "rangemode": "tozero"},
                         legend={"orientation": "h", "y": -0.15}, **_LAYOUT)
    return figure


def version_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per model version: verdict counts by outcome, feedback accuracy, first and last verdict (no text)."""
    if frame.empty:
        return pd.DataFrame(columns=["version", "verdicts", *OUTCOMES, "accuracy", "first", "last"])
    counts = frame.groupby(["version", "outcome"]).size().unstack(fill_value=0).reindex(columns=list(OUTCOMES),
                                                                                        fill_value=0)
    grouped = frame.groupby("version")
    summary = counts.assign(verdicts=grouped.size(), accuracy=grouped["correct"].mean(), first=grouped["time"].min(),
                            last=grouped["time"].max())
    return summary.reset_index()[["version", "verdicts", *OUTCOMES, "accuracy", "first", "last"]].sort_values("first")


def ageing_view(rows: Sequence[dict[str, Any]], exports_dir: Path, rule: AlertRule) -> tuple[go.Figure, pd.DataFrame]:
    """The chart and the per-version table of the pages, from ``FeedbackStore.verdict_history`` rows."""
    frame = verdict_frame(rows)
    return accuracy_over_time(frame, rule, publications(exports_dir) or None), version_summary(frame)
