"""Fixtures for training tests: small synthetic tweets (never dataset rows) and an isolated MLflow store."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

from training import config

POSITIVE = ["love", "great", "awesome", "happy", "best", "amazing", "fun", "thanks", "excited", "beautiful"]
NEGATIVE = ["hate", "awful", "sad", "worst", "terrible", "tired", "sick", "boring", "angry", "miss"]
FILLER = ["today", "the game", "my phone", "this movie", "work", "the weather", "lunch", "the trip", "class", "music"]


def synthetic_tweets(n: int, seed: int = 0) -> list[tuple[str, int]]:
    """``n`` made-up tweets with a learnable signal, as (text, label 0/4) pairs, half of each class."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = 4 if i % 2 else 0
        words = POSITIVE if label else NEGATIVE
        text = f"{rng.choice(['I', 'so', 'really', '@friend'])} {rng.choice(words)} {rng.choice(FILLER)} " \
               f"{rng.choice(words)} #{i}"
        rows.append((text, label))
    return rows


def write_kaggle_csv(path: Path, rows: list[tuple[str, int]], quote_all: bool = True) -> Path:
    with path.open("w", encoding="latin-1", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL)
        for i, (text, label) in enumerate(rows):
            writer.writerow([label, 1_000_000 + i, "Mon Apr 06 22:19:45 PDT 2009", "NO_QUERY", f"user{i}", text])
    return path


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A private sqlite MLflow store, so tests never touch the project's mlflow.db."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return uri


@pytest.fixture
def shared_data() -> Path:
    """The real Sentiment140 files; tests using them skip on machines that lack them."""
    folder = config.data_dir()
    if not (folder / config.VALIDATION_RANDOM_FILE).exists():
        pytest.skip(f"Sentiment140 data not found in {folder} (set SENTIMENT140_DIR)")
    return folder
