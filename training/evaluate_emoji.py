"""Does spelling emoji as words help the transformers? Scores exports both ways and writes ``results/emoji.md``.

Sentiment140 (2009) holds almost no emoji, so its sets cannot judge this. The judge is a hand-written set,
``training/eval_sets/emoji_tweets.csv`` (120 tweets written for the project, 60 per class), and
validation_random checks that the change costs nothing on ordinary text::

    python -m training.evaluate_emoji --model exports/minilm [--model artifacts/…] [--out results/emoji.md]

"Raw" feeds the transformer :func:`sentiment.preprocess.normalize_tweet` (emoji left in: mostly ``[UNK]``), "words" feeds
:func:`sentiment.preprocess.normalize_for_transformer`, the serving default since preprocessing 1.2.0. On validation_random
only the texts whose input changes are scored again: a tweet's int8 probabilities depend slightly on its batch-mates,
so re-scoring all 4,682 would mix that noise into a comparison of two or so changed tweets.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sentiment.predictor import TransformerPredictor, load_predictor
from sentiment.preprocess import PREPROCESSING_VERSION, normalize_for_transformer, normalize_tweet
from sentiment.scoring import positive_mask
from training import config
from training.data import Dataset, load

logger = logging.getLogger(__name__)

EMOJI_SET = Path(__file__).resolve().parent / "eval_sets" / "emoji_tweets.csv"


@dataclass(frozen=True)
class Comparison:
    model: str
    dataset: str
    rows: int
    changed_inputs: int
    accuracy_raw: float
    accuracy_words: float
    fixed: int  # wrong with emoji kept, right with words
    broken: int  # the reverse


def _scores(model: TransformerPredictor, texts: list[str], normalize: Callable[[str], str]) -> np.ndarray:
    model.normalize = normalize  # an instance attribute shadows the class's default for this run only
    try:
        return model.predict_proba(texts)[:, 1]
    finally:
        del model.normalize


def compare(model: TransformerPredictor, data: Dataset, dataset: str) -> Comparison:
    """Accuracy of ``model`` on ``data`` with emoji left in and with emoji spelled as words."""
    raw = _scores(model, data.texts, normalize_tweet)
    changed = [i for i, t in enumerate(data.texts) if normalize_tweet(t) != normalize_for_transformer(t)]
    words = raw.copy()
    if changed:
        words[changed] = _scores(model, [data.texts[i] for i in changed], normalize_for_transformer)
    right_raw = positive_mask(raw) == data.labels
    right_words = positive_mask(words) == data.labels
    return Comparison(model.name, dataset, len(data), len(changed), float(right_raw.mean()), float(right_words.mean()),
                      int((right_words & ~right_raw).sum()), int((right_raw & ~right_words).sum()))


def report(rows: list[Comparison]) -> str:
    lines = [f"# Emoji as words (preprocessing {PREPROCESSING_VERSION})", "",
             "Written by `make evaluate-emoji` (`python -m training.evaluate_emoji`).", "",
             "| model | set | rows | inputs changed | accuracy, emoji kept | accuracy, emoji as words | Δ (points) "
             "| fixed / broken |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r.model} | {r.dataset} | {r.rows} | {r.changed_inputs} | {r.accuracy_raw:.4f} | "
              f"{r.accuracy_words:.4f} | {100 * (r.accuracy_words - r.accuracy_raw):+.2f} | {r.fixed} / {r.broken} |"
              for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", type=Path, help="transformer export folder (repeatable)")
    parser.add_argument("--out", type=Path, default=config.PROJECT_ROOT / "results" / "emoji.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sets = {"emoji (hand-written)": load(EMOJI_SET)}
    validation = config.data_dir() / config.VALIDATION_RANDOM_FILE
    if validation.exists():
        sets[config.VALIDATION_RANDOM_SET] = load(validation)
    else:
        logger.warning("%s is missing: scoring the emoji set only (set SENTIMENT140_DIR to add validation_random)",
                       validation)
    rows = []
    for folder in args.model or [config.exports_dir() / "minilm"]:
        model = load_predictor(folder)
        if not isinstance(model, TransformerPredictor):
            parser.error(f"{folder} is a {model.family} export: emoji words apply to the transformer families only")
        rows += [compare(model, data, name) for name, data in sets.items()]
    sys.stdout.write("".join(json.dumps(asdict(row)) + "\n" for row in rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report(rows), encoding="utf-8")
    logger.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
