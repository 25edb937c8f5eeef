"""Tweets for the load tests: the real validation tweets when the shared data is there, else synthetic ones.

The real tweets are read at run time from ``validation_random_4683.csv`` in ``SENTIMENT140_DIR`` (the training
code's folder) and never copied into the repository. The synthetic ones are deterministic and made up here;
their lengths follow what the real data shows (about 22 tokens at the median, up to ~50): a few templates
filled with random words, mentions, URLs and emoji.
"""

from __future__ import annotations

import logging
import random

logger = logging.getLogger(__name__)

_OPENERS = ["@united", "@AmericanAir", "@delta", "Flight", "Just landed and", "Ugh,", "Wow", "Honestly", "So",
            "Today", "Third time this month:", "Shoutout to the crew,"]
_BODIES = [
    "my flight was delayed {n} hours and nobody told us anything",
    "the crew was amazing and the seats were so comfortable",
    "lost my bag again, customer service hung up on me",
    "upgraded to first class for free, best day ever",
    "stuck on the tarmac with no water and a crying baby",
    "great food, friendly staff and we landed early",
    "cancelled with no explanation, rebooked for {n} days later",
    "wifi worked the whole way, I got all my work done",
    "the gate agent was rude and the line took forever",
    "thanks for helping me find my lost phone",
    "not bad at all, better than last time",
    "I can't believe how bad the boarding process was",
]
_TAILS = ["", "", " :)", " :(", " 😀", " 😡", " #travel", " #fail", " http://t.co/abc{n}", " never again",
          " love it", " !!!", " lol", " smh"]


def make_tweets(count: int, seed: int = 0) -> list[str]:
    """``count`` varied tweets, the same for a given ``seed``."""
    rng = random.Random(seed)
    tweets = []
    for _ in range(count):
        parts = [rng.choice(_OPENERS), rng.choice(_BODIES).format(n=rng.randint(2, 9))]
        if rng.random() < 0.35:
            parts.append("and " + rng.choice(_BODIES).format(n=rng.randint(2, 9)))
        tweets.append(" ".join(parts) + rng.choice(_TAILS).format(n=rng.randint(1, 999)))
    return tweets


def load_tweets(synthetic_count: int = 2000) -> tuple[list[str], str]:
    """The tweets to send and where they come from.

    Args:
        synthetic_count: how many synthetic tweets to make when the real file is absent.

    Returns:
        ``(tweets, source)``: the texts of ``validation_random_4683.csv`` (as the training code reads them) and
        its path, else synthetic tweets and ``"synthetic"``.
    """
    from training import config, data

    path = config.data_dir() / config.VALIDATION_RANDOM_FILE
    if path.is_file():
        return data.load(path).texts, str(path)
    logger.info("%s not found (set SENTIMENT140_DIR): synthetic tweets instead", path)
    return make_tweets(synthetic_count), "synthetic"
