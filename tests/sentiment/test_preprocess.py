"""The shared tweet normalisation: placeholders, entities, elongations, whitespace; what must survive."""

from __future__ import annotations

import re

import pytest

from sentiment.preprocess import (
    MENTION_TOKEN,
    PREPROCESSING_VERSION,
    URL_TOKEN,
    normalize_for_transformer,
    normalize_tweet,
)
from training import config
from training.data import load


@pytest.mark.parametrize("raw, expected", [
    ("@jetblue thanks for the upgrade!", f"{MENTION_TOKEN} thanks for the upgrade!"),
    ("look https://t.co/abc123 and www.example.org/x now", f"look {URL_TOKEN} and {URL_TOKEN} now"),
    ("fish &amp; chips &quot;yum&quot; &lt;3", 'fish & chips "yum" <3'),
    ("double escaped &amp;amp; here", "double escaped & here"),
    ("I loooooove this sooooo much", "I looove this sooo much"),
    ("cool  \t spaces\n\nhere ", "cool spaces here"),
    ("zero\u200bwidth\ufeff", "zerowidth"),
])
def test_normalisation(raw: str, expected: str) -> None:
    assert normalize_tweet(raw) == expected


@pytest.mark.parametrize("kept", [":)", ":-(", ";D", "<3", "😀", "🙁", "don't", "can't", "not", "never", "NO WAY",
                                  "e-mail me at a@b.com", "שלום", "all good!!!"])
def test_sentiment_bearing_text_is_kept(kept: str) -> None:
    assert kept in normalize_tweet(f"so {kept} ok")


def test_idempotent_and_versioned() -> None:
    text = "@a @b loooool &amp; http://x.y/z   :("
    assert normalize_tweet(normalize_tweet(text)) == normalize_tweet(text)
    assert re.fullmatch(r"\d+\.\d+\.\d+", PREPROCESSING_VERSION)


def test_empty_and_whitespace() -> None:
    assert normalize_tweet("") == ""
    assert normalize_tweet(" \n\t ") == ""


@pytest.mark.data
def test_real_tweets_are_cleaned() -> None:
    path = config.data_dir() / "training_head_tail_20k.csv"
    if not path.exists():
        pytest.skip(f"{path} not found (set SENTIMENT140_DIR)")
    for text in load(path).texts:
        out = normalize_tweet(text)
        assert "http://" not in out and "&amp;" not in out and "&quot;" not in out
        assert not re.search(r"(?<![\w@])@(?!user\b)\w", out), out
        assert "  " not in out and out == out.strip()
        assert not re.search(r"(.)\1{3,}", out)


@pytest.mark.parametrize("raw, expected", [
    ("love this 😍🔥 but 😡", "love this smiling face with heart-eyes fire but enraged face"),
    ("ran 10k 🏃\u200d♀️", "ran 10k woman running"),  # a zero-width-joiner sequence is named as a whole
    ("😂😂😂😂😂 lol", "face with tears of joy face with tears of joy face with tears of joy lol"),
    ("&#128525; yes @bob", f"smiling face with heart-eyes yes {MENTION_TOKEN}"),  # an emoji written as an entity
])
def test_transformers_read_emoji_as_words(raw: str, expected: str) -> None:
    assert normalize_for_transformer(raw) == expected


@pytest.mark.parametrize("text", ["@a @b loooool &amp; http://x.y/z   :(", "no emoji here <3 :-)", "שלום", ""])
def test_text_without_emoji_is_the_same_for_every_family(text: str) -> None:
    assert normalize_for_transformer(text) == normalize_tweet(text)
    assert normalize_for_transformer(normalize_for_transformer(text)) == normalize_for_transformer(text)
