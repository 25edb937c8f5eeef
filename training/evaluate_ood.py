"""Accuracy of every served export on the out-of-domain sets, beside validation_random: ``results/out_of_domain.md``.

Sentiment140's labels come from 2009 emoticons; the product's users send recent tweets, often to a company. The two
human-labelled sets in ``OUT_OF_DOMAIN_DIR`` (TweetEval validation, positive and negative; 2,000 airline tweets)
say how the models hold up there::

    python -m training.evaluate_ood [--model exports/mpnet ...] [--out results/out_of_domain.md]

Each set is scored by the export's own predictor (what the API serves) in batches of 32, with the engine's one
label rule. A set whose file is absent is skipped with a warning naming the path.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sentiment.manifest import read_manifest
from sentiment.predictor import Predictor, discover, load_predictor
from sentiment.scoring import positive_mask
from training import config
from training.data import Dataset, load

logger = logging.getLogger(__name__)
BATCH = 32


@dataclass(frozen=True)
class Score:
    model: str
    version: str
    dataset: str
    rows: int
    accuracy: float


def sets() -> dict[str, Dataset]:
    """validation_random and the out-of-domain sets that are present (each absent one is named in a warning)."""
    found: dict[str, Dataset] = {}
    paths = {config.VALIDATION_RANDOM_SET: config.data_dir() / config.VALIDATION_RANDOM_FILE}
    paths |= {name: config.out_of_domain_dir() / file for file, name in config.OUT_OF_DOMAIN_SETS.items()}
    for name, path in paths.items():
        if path.exists():
            found[name] = load(path)
        else:
            logger.warning("%s is missing: %s not scored (set SENTIMENT140_DIR / OUT_OF_DOMAIN_DIR)", path, name)
    return found


def accuracy(model: Predictor, data: Dataset) -> float:
    p_positive = np.concatenate([model.predict_proba(data.texts[i : i + BATCH])[:, 1]
                                 for i in range(0, len(data), BATCH)])
    return float((positive_mask(p_positive) == data.labels).mean())


def served_exports(exports_dir: Path) -> list[Path]:
    """The folders the services serve: the manifest's, else every export folder."""
    manifest = read_manifest(exports_dir)
    if manifest is None:
        return discover(exports_dir)
    return [manifest.folder(exports_dir, name) for name in sorted(manifest.models)]


def report(rows: list[Score]) -> str:
    names = list(dict.fromkeys(r.dataset for r in rows))
    table = {(r.model, r.version): {} for r in rows}
    for r in rows:
        table[(r.model, r.version)][r.dataset] = r
    lines = ["# Out-of-domain accuracy", "",
             "Written by `make evaluate-ood` (`python -m training.evaluate_ood`): each export's own predictor, batches "
             f"of {BATCH}, P(positive) ≥ 0.5 is positive. Rows per set: "
             + ", ".join(f"{n} {next(r.rows for r in rows if r.dataset == n):,}" for n in names) + ".", "",
             "| model | version | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for (model, version), scores in sorted(table.items(), key=lambda kv: -max(s.accuracy for s in kv[1].values())):
        cells = [f"{scores[n].accuracy:.4f}" if n in scores else "–" for n in names]
        lines.append(f"| {model} | {version} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", type=Path, help="export folder (repeatable; default: served)")
    parser.add_argument("--out", type=Path, default=config.PROJECT_ROOT / "results" / "out_of_domain.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data = sets()
    if not data:
        raise SystemExit("error: no evaluation set found: set SENTIMENT140_DIR and OUT_OF_DOMAIN_DIR")
    rows = []
    for folder in args.model or served_exports(config.exports_dir()):
        model = load_predictor(folder)
        rows += [Score(model.name, model.version, name, len(dataset), accuracy(model, dataset))
                 for name, dataset in data.items()]
        logger.info("%s: %s", model.name, {r.dataset: round(r.accuracy, 4) for r in rows if r.model == model.name})
    sys.stdout.write("".join(json.dumps(asdict(row)) + "\n" for row in rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report(rows), encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    logger.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
