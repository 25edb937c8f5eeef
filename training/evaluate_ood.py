"""Accuracy of every served export on the out-of-domain sets, beside validation_random: ``results/out_of_domain.md``.

Sentiment140's labels come from 2009 emoticons; the product's users send recent tweets, often to a company. The two
human-labelled sets in ``OUT_OF_DOMAIN_DIR`` (TweetEval validation, positive and negative; 2,000 airline tweets)
say how the models hold up there::

    python -m training.evaluate_ood [--model exports/mpnet ...] [--out results/out_of_domain.md] [--update-runs]
    python -m training.evaluate_ood --write-train-folds /tmp/ood-train-folds.csv   # a human-labelled stage's rows

Each set is scored by ``training.evaluate.evaluate`` through the export's own predictor (what the API serves) in
batches of 32, with the engine's one label rule. A set whose file is absent is skipped with a warning naming the
path. ``--update-runs`` also writes the out-of-domain metrics and charts into the run record of each export's
training run (``exports/runs/``, what the Compare page shows), so exports trained before these sets existed carry
measured figures too.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from sentiment.manifest import read_manifest
from sentiment.predictor import discover, load_predictor
from training import config, folds
from training.data import Dataset, load
from training.evaluate import evaluate, out_of_domain_sets
from training.export import RUNS_DIR
from training.run_records import Evaluation, add_evaluations, record_path

logger = logging.getLogger(__name__)
BATCH = 32


@dataclass(frozen=True)
class Score:
    model: str
    version: str
    dataset: str
    rows: int
    accuracy: float
    export: str = ""  # the folder scored: two exports may carry one name and version (unregistered students)


def sets() -> dict[str, Dataset]:
    """validation_random, the out-of-domain sets that are present (each absent one is named in a warning), and
    their held-out folds (``<set>_heldout``: the figures of a model trained on a train fold, ``training.folds``)."""
    found: dict[str, Dataset] = {}
    path = config.data_dir() / config.VALIDATION_RANDOM_FILE
    if path.exists():
        found[config.VALIDATION_RANDOM_SET] = load(path)
    else:
        logger.warning("%s is missing: %s not scored (set SENTIMENT140_DIR)", path, config.VALIDATION_RANDOM_SET)
    ood = out_of_domain_sets()
    return found | ood | folds.heldout_sets(ood)


def served_exports(exports_dir: Path) -> list[Path]:
    """The folders the services serve: the manifest's, else every export folder."""
    manifest = read_manifest(exports_dir)
    if manifest is None:
        return discover(exports_dir)
    return [manifest.folder(exports_dir, name) for name in sorted(manifest.models)]


def report(rows: list[Score]) -> str:
    names = list(dict.fromkeys(r.dataset for r in rows))
    table: dict[str, dict[str, Score]] = {r.export: {} for r in rows}
    for r in rows:
        table[r.export][r.dataset] = r
    shared = Counter((r.model, r.version) for r in {r.export: r for r in rows}.values())
    lines = ["# Out-of-domain accuracy", "",
             "Written by `make evaluate-ood` (`python -m training.evaluate_ood`): each export's own predictor, batches "
             f"of {BATCH}, P(positive) ≥ 0.5 is positive. Rows per set: "
             + ", ".join(f"{n} {next(r.rows for r in rows if r.dataset == n):,}" for n in names) + ".", "",
             "| model | version | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for export, scores in sorted(table.items(), key=lambda kv: -max(s.accuracy for s in kv[1].values())):
        first = next(iter(scores.values()))
        model = first.model + (f" (`{export}`)" if shared[(first.model, first.version)] > 1 else "")
        cells = [f"{scores[n].accuracy:.4f}" if n in scores else "–" for n in names]
        lines.append(f"| {model} | {first.version} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def update_run_record(metadata: dict, scored: dict[str, Evaluation]) -> None:
    """Write the out-of-domain sets of ``scored`` into the run record behind the export (``metadata``)."""
    ood = {name: scored[name] for name in config.OUT_OF_DOMAIN_SETS.values() if name in scored}
    runs_dir = config.exports_dir() / RUNS_DIR
    path = record_path(metadata, runs_dir)
    if path is None or not ood:
        logger.warning("%s v%s: no run record in %s or no out-of-domain set; none updated", metadata["name"],
                       metadata.get("version"), runs_dir)
        return
    add_evaluations(path, ood, f"python -m training.evaluate_ood --update-runs (export {metadata['name']} "
                               f"v{metadata.get('version')}, batches of {BATCH})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", type=Path, help="export folder (repeatable; default: served)")
    parser.add_argument("--out", type=Path, default=config.PROJECT_ROOT / "results" / "out_of_domain.md")
    parser.add_argument("--update-runs", action="store_true",
                        help="also write the out-of-domain figures into each export's run record (exports/runs/)")
    parser.add_argument("--write-train-folds", type=Path, default=None, metavar="FILE",
                        help="write the out-of-domain sets' train folds as a text,label CSV (for retrain's "
                             "--feedback-csv) and score nothing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.write_train_folds:
        ood = out_of_domain_sets()
        if not ood:
            raise SystemExit(f"error: no out-of-domain set in {config.out_of_domain_dir()} (set OUT_OF_DOMAIN_DIR)")
        written = folds.write_train_folds(ood, args.write_train_folds)
        json.dump({"file": str(args.write_train_folds), "rows": written}, sys.stdout)
        sys.stdout.write("\n")
        return
    data = sets()
    if not data:
        raise SystemExit("error: no evaluation set found: set SENTIMENT140_DIR and OUT_OF_DOMAIN_DIR")
    rows = []
    for folder in args.model or served_exports(config.exports_dir()):
        model = load_predictor(folder)
        # A model trained on a set's train fold is reported on its held-out fold only (training.folds).
        seen = set(model.metadata.get("trained_on_out_of_domain", []))
        scored = {name: evaluate(model, dataset, latency=False, batch_size=BATCH) for name, dataset in data.items()
                  if name not in seen}
        rows += [Score(model.name, model.version, name, len(data[name]), metrics["accuracy"], str(folder))
                 for name, (metrics, _) in scored.items()]
        if args.update_runs:
            update_run_record(model.metadata, scored)
        logger.info("%s (%s): %s", model.name, folder,
                    {r.dataset: round(r.accuracy, 4) for r in rows if r.export == str(folder)})
    sys.stdout.write("".join(json.dumps(asdict(row)) + "\n" for row in rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report(rows), encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    logger.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
