"""The batch tab's figures and filter, on a small scored frame."""

from __future__ import annotations

import numpy as np
import pandas as pd

from app import batch_charts

RESULT = pd.DataFrame({"text": ["a", "b", "c", ""], "label": ["positive", "negative", "positive", None],
                       "confidence": [0.95, 0.6, 0.7, np.nan]})


def test_label_shares_count_every_row_with_its_share() -> None:
    bar = batch_charts.label_shares(RESULT).data[0]
    assert dict(zip(bar.y, bar.x, strict=True)) == {"positive": 2, "negative": 1, "not scored": 1}
    assert "2 (50%)" in bar.text


def test_the_confidence_histogram_has_one_trace_per_label_on_a_fixed_axis() -> None:
    figure = batch_charts.confidence_histogram(RESULT)
    assert sorted(t.name for t in figure.data) == ["negative", "positive"]
    assert tuple(figure.layout.xaxis.range) == (0.5, 1.0)


def test_the_filter_keeps_labels_and_a_least_confidence_and_unscored_rows_on_request() -> None:
    assert batch_charts.filtered(RESULT, ["positive"], 0.8)["text"].tolist() == ["a"]
    assert batch_charts.filtered(RESULT, ["positive", "not scored"], 0.5)["text"].tolist() == ["a", "c", ""]
