"""Tweet normalisation shared by training and serving.

Any change to the output of :func:`normalize_tweet` must bump ``PREPROCESSING_VERSION``: the version is
recorded with every model and checked when an export is loaded. A minor bump marks a change that models
trained with the previous minor version tolerate (a rare case normalised differently); a major bump
makes older exports refuse to load until they are re-trained.
"""

from __future__ import annotations

import html
import re

import emoji

PREPROCESSING_VERSION = "1.2.0"

MENTION_TOKEN = "@user"
URL_TOKEN = "http"

_URL_RE = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
# An e-mail address is not a mention (the "@" follows a word character). Old handles exceed 15 characters.
_MENTION_RE = re.compile(r"(?<![\w@])@\w+")
# Three or more of the same character become three: "loooove" and "looove" look alike, "love" stays.
_ELONGATION_RE = re.compile(r"(.)\1{3,}")
_WHITESPACE_RE = re.compile(r"\s+")
# Zero-width characters and BOMs split words invisibly; they carry no sentiment.
_INVISIBLE_RE = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")
# Emoji names use "_" between words ("smiling_face_with_heart-eyes"); the WordPiece vocabularies know the words.
_EMOJI_NAME_SEPARATORS = str.maketrans({"_": " "})


def normalize_tweet(text: str) -> str:
    """Normalise one tweet for every model.

    Mentions and URLs become placeholders, HTML entities are decoded (twice, because Sentiment140 holds
    some doubly escaped text), elongations are bounded to three repeats, invisible characters dropped and
    whitespace folded. Case, punctuation, emoticons, emoji and negations are kept: they carry sentiment.

    Args:
        text: the raw tweet.

    Returns:
        The normalised text (possibly empty).
    """
    return _normalize(text, emoji_words=False)


def normalize_for_transformer(text: str) -> str:
    """:func:`normalize_tweet` with emoji spelled as words: the input of every transformer family (since 1.2.0).

    The uncased BERT vocabularies map almost every emoji to ``[UNK]`` (a run of them to a single ``[UNK]``), so a
    transformer cannot tell 😍 from 😡; their English names are words it has seen. A minor bump: a transformer
    trained on 1.1.0 text scores named emoji better than the ``[UNK]`` it was trained with, and text without emoji
    is unchanged (README, "Emoji"). The classical families keep :func:`normalize_tweet`: their TF-IDF
    vocabularies were fitted on 2009 text, which has no emoji, so the names would only add unseen words.
    """
    return _normalize(text, emoji_words=True)


def emoji_to_words(text: str) -> str:
    """Spell each emoji as its CLDR name: ``"so tired 😩"`` becomes ``"so tired  weary face "``."""
    named = emoji.demojize(text, delimiters=(" ", " "))
    return named.translate(_EMOJI_NAME_SEPARATORS) if named != text else text


def _normalize(text: str, *, emoji_words: bool) -> str:
    text = html.unescape(html.unescape(text))
    if emoji_words:
        # Bound repeats first ("😂😂😂😂😂" would be five four-word names), and name before the zero-width joiners
        # go, so that a sequence such as 🏃‍♀️ is named as a whole ("woman running").
        text = emoji_to_words(_ELONGATION_RE.sub(r"\1\1\1", text))
    text = _INVISIBLE_RE.sub("", text)
    text = _URL_RE.sub(URL_TOKEN, text)
    text = _MENTION_RE.sub(MENTION_TOKEN, text)
    text = _ELONGATION_RE.sub(r"\1\1\1", text)
    return _WHITESPACE_RE.sub(" ", text).strip()
