"""The emoji comparison: which inputs change, that each arm feeds what it says, and the report it writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sentiment.predictor import TransformerPredictor, load_predictor
from sentiment.preprocess import normalize_for_transformer
from tests.api.conftest import build_classical_export, build_transformer_export
from training import evaluate_emoji
from training.data import Dataset


class RecordingTokenizer:
    """Delegates to the real tokenizer and keeps every text it was asked to encode."""

    def __init__(self, inner) -> None:
        self.inner, self.seen = inner, []

    def encode_batch(self, texts):
        self.seen += list(texts)
        return self.inner.encode_batch(texts)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_transformer_export(tmp_path_factory.mktemp("emoji") / "tiny-bert")


def test_only_emoji_texts_are_scored_again_and_with_their_names(tiny: Path) -> None:
    model = load_predictor(tiny)
    model.tokenizer = RecordingTokenizer(model.tokenizer)
    data = Dataset(["great day 😍", "plain text here", "awful 😡😡", "no emoji at all"], np.array([1, 1, 0, 0]))

    row = evaluate_emoji.compare(model, data, "made-up")

    assert (row.rows, row.changed_inputs) == (4, 2)
    raw_pass, words_pass = model.tokenizer.seen[:4], model.tokenizer.seen[4:]
    assert "great day 😍" in raw_pass
    assert words_pass == [normalize_for_transformer("great day 😍"), normalize_for_transformer("awful 😡😡")]
    assert "smiling face with heart-eyes" in words_pass[0] and "enraged face" in words_pass[1]
    # Unchanged texts keep their raw scores, so only the two changed ones can move the accuracy.
    assert row.fixed + row.broken <= 2
    assert abs(row.accuracy_words - row.accuracy_raw) <= 2 / 4 + 1e-9
    # The swap is undone: the model serves with the class default again.
    assert model.normalize is TransformerPredictor.normalize


def test_main_writes_the_report_and_refuses_classical_exports(
        tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("SENTIMENT140_DIR", str(tmp_path / "absent"))
    out = tmp_path / "emoji.md"

    evaluate_emoji.main(["--model", str(tiny), "--out", str(out)])

    table = out.read_text(encoding="utf-8")
    assert "| tiny-bert | emoji (hand-written) | 120 | 120 |" in table
    assert "validation_random" not in table  # absent here, and said so
    assert "scoring the emoji set only" in caplog.text
    classical = build_classical_export(tmp_path / "tiny-lr")
    with pytest.raises(SystemExit):
        evaluate_emoji.main(["--model", str(classical), "--out", str(out)])


def test_the_hand_written_set_is_balanced_and_every_tweet_has_an_emoji() -> None:
    from training.data import load

    data = load(evaluate_emoji.EMOJI_SET)
    assert len(data) == 120 and data.labels.sum() == 60
    assert all(normalize_for_transformer(t) != t for t in data.texts)
