"""The "why" of a label: leave-one-word-out occlusion, measured with the committed models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sentiment.explain import explain, occlusions
from sentiment.predictor import load_predictor

EXPORTS = Path(__file__).resolve().parents[2] / "exports"


def test_each_occlusion_leaves_out_one_word_and_offsets_point_into_the_tweet() -> None:
    text = "Lost my  bag\nagain :("
    words, texts = occlusions(text, max_words=64)
    assert [w.group() for w in words] == ["Lost", "my", "bag", "again", ":("]
    assert texts[0] == " ".join(text.split()[1:])
    for word in words:
        assert text[word.start():word.end()] == word.group()


def test_contribution_is_the_drop_of_p_positive_without_the_word() -> None:
    text = "great crew awful food"
    words, _ = occlusions(text, 64)
    why = explain(text, words, np.array([0.6, 0.4, 0.5, 0.9, 0.6]))
    assert [(w.text, w.contribution) for w in why.words] == [
        ("great", 0.2), ("crew", 0.1), ("awful", -0.3), ("food", 0.0)]
    assert why.strongest(1)[0].text == "awful" and not why.truncated


def test_only_the_first_max_words_are_explained_and_that_is_said() -> None:
    text = " ".join(f"w{i}" for i in range(10))
    words, texts = occlusions(text, max_words=3)
    assert len(texts) == 3 and len(words) == 10
    why = explain(text, words, np.linspace(0.5, 0.1, 4))
    assert len(why.words) == 3 and why.words_total == 10 and why.truncated


@pytest.mark.parametrize("name", ["minilm", "mpnet"])
def test_removing_the_top_word_moves_the_probability_the_way_its_sign_says(name: str) -> None:
    model = load_predictor(EXPORTS / name)
    for text, word, sign in (("the crew was lovely and the seats were great", "lovely", 1),
                             ("three hours late and they lost my bag, terrible", "terrible", -1)):
        words, texts = occlusions(text, 64)
        proba = model.predict_proba([text, *texts])[:, 1]  # one call, as the API makes it
        why = explain(text, words, proba)
        top = why.strongest(1)[0]
        assert np.sign(top.contribution) == sign, (name, text, why.strongest(3))
        alone = model.predict_proba([text, " ".join(w for w in text.split() if w != top.text)])[:, 1]
        assert np.sign(alone[0] - alone[1]) == np.sign(top.contribution)
        assert abs((alone[0] - alone[1]) - top.contribution) <= 1e-3  # the same answers as in the batch
        assert word in {w.text.strip(",.") for w in why.strongest(3)}
