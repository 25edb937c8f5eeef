"""Retrain a model family from reviewed feedback, gate the new version, publish it if it passes (``make retrain``).

    python -m training.retrain                                        # RETRAIN_FAMILY (minilm) from FEEDBACK_DB
    python -m training.retrain --feedback-csv feedback-reviewed.csv --family tfidf-lr
    python -m training.retrain --quick                                # samples as in `make train-quick`

1. Feedback (``training.feedback``): thumbs up and reviewed thumbs down, deduplicated, texts already in the
   Sentiment140 data dropped, a stable held-out slice split off by text hash; the counts are printed.
2. Training: the train split plus the feedback, repeated ``RETRAIN_FEEDBACK_OVERSAMPLE`` times, through the same
   stages as ``make train`` (``training.pipeline``). A transformer continues from the fine-tuned weights of the
   version in force when this machine has them (``--base-model``, or the ``weights_dir`` a retraining records);
   without them (a fresh clone: the exports hold ONNX only) the torch model is rebuilt from the served export's
   graph (``training.from_export``). Its Sentiment140 sample is sized to fit ``RETRAIN_TIME_BUDGET_MIN`` at the
   family's measured step time. TF-IDF families refit (seconds).
3. Evaluation: the fixed sets as in ``make train`` (validation_random always whole) and the held-out slice,
   which the champion in force is scored on too. Feedback may hold the train fold of an out-of-domain set (a small
   human-labelled stage, ``training.folds``): that set is then scored on its held-out fold only, and rows of a
   held-out fold are never trained on.
4. Gate (``training.gate``): the version is registered and measured against its own family (the best version of
   it ever served, and the one served now on the feedback slice); the decision is an MLflow tag and printed as
   JSON. When it passes, the export is published (``sentiment.publish``) and the registry's family alias moves; the
   champion rule then decides the default among the served models, and the ``champion`` alias follows it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from sentiment import publish
from sentiment.exports import ExportError, read_metadata
from sentiment.predictor import load_predictor
from training import config, folds, pipeline
from training.data import DataFormatError, Dataset, Splits, load, load_splits, sample
from training.evaluate import evaluate, out_of_domain_sets
from training.export import nested_metrics
from training.feedback import Feedback, key, known_keys, oversampled, prepare, read_export, read_store
from training.gate import Scored, decide
from training.register import set_champion
from training.tracking import file_hashes, setup

logger = logging.getLogger(__name__)

FEEDBACK_SET = "feedback_holdout"
# Continuing a fine-tuned model: the lower peak rate of the README's second-epoch run (a fresh start uses 5e-5).
CONTINUE_LR = 2e-5
# The sample fills this share of the time budget: tokenising, loading and a slower hour fit in the rest before the
# budget's hard stop (a checkpoint, exit status 75) would cut the epoch short.
BUDGET_SHARE = 0.85
_TRANSFORMER_OPTIONS = ("epochs", "limit", "dir", "base_model", "lr", "time_budget_min", "freeze_embeddings",
                        "freeze_layers")


def read_feedback(args: argparse.Namespace, known: set[str], share: float) -> Feedback:
    """The feedback of ``--feedback-csv`` or of the store (``--feedback-db``, ``FEEDBACK_DB``)."""
    if args.feedback_csv:
        rows, dropped = read_export(args.feedback_csv)
    else:
        rows, dropped = read_store(args.feedback_db or config.feedback_db())
    return prepare(rows, known, share, dropped)


def _load_data(args: argparse.Namespace) -> tuple[Splits, Dataset, list[Path]]:
    data_path = Path(args.data) if args.data else config.data_dir()
    random_path = Path(args.validation_random) if args.validation_random else (
        config.data_dir() / config.VALIDATION_RANDOM_FILE)
    try:
        return load_splits(data_path), load(random_path), [data_path, random_path]
    except (FileNotFoundError, DataFormatError) as error:
        raise SystemExit(f"error: {error}") from error


def _without(data: Dataset, keys: set[str]) -> Dataset:
    keep = [i for i, text in enumerate(data.texts) if key(text) not in keys]
    return data.subset(keep) if len(keep) < len(data) else data


def _start(family: str, args: argparse.Namespace, exports_dir: Path, manifest: Any) -> tuple[str | None, str]:
    """The weights a transformer continues from, and the sentence the output gives about it."""
    if family not in pipeline.TRANSFORMER_FAMILIES:
        return None, f"{family}: TF-IDF families refit on the train split plus the feedback (seconds)"
    if args.tiny:
        return None, f"{family}: tiny randomly initialised model (--tiny, tests and smoke runs)"
    if args.base_model:
        return args.base_model, f"{family}: continuing from --base-model {args.base_model}"
    entry = manifest.models.get(family)
    if entry is None:
        return None, f"{family}: not served yet, so training starts from the pretrained base"
    weights = read_metadata(exports_dir / entry.path).get("weights_dir")
    if weights and (Path(weights) / "config.json").is_file():
        return weights, f"{family}: continuing from the fine-tuned weights of version {entry.version} ({weights})"
    # A fresh clone has the export only: its weights are rebuilt from the ONNX graph (checked against it).
    from training import from_export
    from training.train_transformer import FAMILIES

    target = (Path(args.work_dir) if args.work_dir else config.artifacts_dir()) / "from-export" / \
        f"{family}-v{entry.version}"
    if not (target / "config.json").is_file():
        from_export.rebuild(exports_dir / entry.path, target, FAMILIES[family].weights()[0])
    return str(target), (f"{family}: continuing from version {entry.version}, rebuilt from its export's ONNX graph "
                         f"({target}; the served int8 weights, dequantised)")


def _budget_rows(family: str, minutes: float, feedback_rows: int, available: int) -> int:
    """Sentiment140 rows that fit ``minutes`` of one-epoch training next to the feedback rows."""
    from training.train_transformer import FAMILIES

    steps = BUDGET_SHARE * minutes * 60 / FAMILIES[family].seconds_per_step
    return max(0, min(available, int(steps * 32) - feedback_rows))


def _transformer_args(family: str, args: argparse.Namespace, base: str | None, budget_min: float) -> argparse.Namespace:
    options = argparse.Namespace(tiny=args.tiny, threads=args.threads, log_every=20, precision="auto")
    for name in pipeline.TRANSFORMER_FAMILIES:
        for option in _TRANSFORMER_OPTIONS:
            setattr(options, f"{name}_{option}", None)
    setattr(options, f"{family}_base_model", base)
    setattr(options, f"{family}_lr", CONTINUE_LR if base else None)
    setattr(options, f"{family}_time_budget_min", budget_min or None)
    return options


def _work_dir(args: argparse.Namespace, family: str, feedback: Feedback, base: str | None) -> Path:
    # Keyed by what changes the model, so the same command after a pause resumes its checkpoint.
    digest = hashlib.sha256(json.dumps([family, args.quick, args.tiny, base, feedback.train.texts,
                                        feedback.train.labels.tolist()]).encode()).hexdigest()[:12]
    return (Path(args.work_dir) if args.work_dir else config.artifacts_dir()) / "retrain" / f"{family}-{digest}"


def _accuracy(model: Any, data: Dataset) -> float | None:
    return evaluate(model, data, latency=False)[0]["accuracy"] if len(data) else None


def _set_figures(metrics: dict[str, Any], slice_accuracy: float | None) -> dict[str, float | None]:
    figures = {name: (metrics.get(name) or {}).get("accuracy")
               for name in (config.TEST_SET, "validation", config.VALIDATION_RANDOM_SET)}
    return {**figures, FEEDBACK_SET: slice_accuracy}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--feedback-db", default=None, help="feedback store (default: FEEDBACK_DB or feedback.db)")
    source.add_argument("--feedback-csv", default=None, help="the Review page's export (feedback-reviewed.csv)")
    parser.add_argument("--family", default=None, help="model family to retrain (default: RETRAIN_FAMILY, minilm)")
    parser.add_argument("--data", default=None, help="training data (default: SENTIMENT140_DIR)")
    parser.add_argument("--validation-random", default=None, help="the honest set (default: in SENTIMENT140_DIR)")
    parser.add_argument("--exports-dir", default=None, help="the served exports (default: EXPORTS_DIR or exports/)")
    parser.add_argument("--work-dir", default=None, help="scratch folder (default: artifacts/)")
    parser.add_argument("--quick", action="store_true", help="samples as in `make train-quick`")
    parser.add_argument("--tiny", action="store_true", help="tiny randomly initialised transformer (tests)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--base-model", default=None, help="Hugging Face folder of the transformer to continue")
    parser.add_argument("--time-budget-min", type=float, default=None, help="default: RETRAIN_TIME_BUDGET_MIN")
    parser.add_argument("--oversample", type=int, default=None, help="default: RETRAIN_FEEDBACK_OVERSAMPLE")
    parser.add_argument("--remove-feedback-from-train", action="store_true",
                        help="take feedback texts out of the train split instead of dropping them from the feedback "
                             "(simulations whose feedback comes from the train split)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    overrides = {"family": args.family, "time_budget_min": args.time_budget_min, "feedback_oversample": args.oversample}
    settings = config.retrain_settings(**overrides)
    family = settings.family
    trainable = [m for m in pipeline.ALL_MODELS + pipeline.OPT_IN_MODELS if m != "vader"]
    if family not in trainable:
        raise SystemExit(f"error: cannot retrain {family!r}; choose from {trainable}")
    exports_dir = Path(args.exports_dir) if args.exports_dir else config.exports_dir()
    splits, validation_random, paths = _load_data(args)
    honest = [splits.validation, splits.test, validation_random]
    try:
        manifest = publish.current(exports_dir)
        feedback = read_feedback(args, known_keys(honest if args.remove_feedback_from_train else [splits.train, *honest]),
                                 settings.holdout_share)
    except (ExportError, FileNotFoundError, ValueError) as error:
        raise SystemExit(f"error: {error}") from error
    # A model trained on part of an out-of-domain set is reported on its held-out fold only (training.folds).
    out_of_domain = {} if args.tiny else out_of_domain_sets()
    feedback, out_of_domain, trained_on = folds.guard(feedback, out_of_domain)
    if args.remove_feedback_from_train:
        before = len(splits.train)
        splits.train = _without(splits.train, {key(t) for t in feedback.train.texts + feedback.holdout.texts})
        feedback.counts["removed_from_train_split"] = before - len(splits.train)
    logger.info("feedback: %s; dropped: %s", feedback.counts, feedback.dropped)
    if not feedback.counts["trained"] or not feedback.counts["held_out"]:
        raise SystemExit(f"error: not enough usable feedback to retrain and measure a gain ({feedback.counts}, dropped "
                         f"{feedback.dropped}); the slice holds {settings.holdout_share:.0%} of the texts")

    base, start = _start(family, args, exports_dir, manifest)
    logger.info("%s", start)
    work = _work_dir(args, family, feedback, base)
    train_split = splits.train
    if args.quick:
        train_split = sample(train_split, pipeline.QUICK_LIMITS.get(family, 20_000))
        splits = Splits(train_split, sample(splits.validation, 1_000), sample(splits.test, 1_000))
    elif family in pipeline.TRANSFORMER_FAMILIES and not args.tiny:
        train_split = sample(train_split, _budget_rows(family, settings.time_budget_min,
                                                       len(feedback.train) * settings.feedback_oversample,
                                                       len(train_split)))
    train_set = oversampled(train_split, feedback.train, settings.feedback_oversample)
    sets = {config.TEST_SET: splits.test, "validation": splits.validation,
            config.VALIDATION_RANDOM_SET: validation_random, FEEDBACK_SET: feedback.holdout, **out_of_domain}
    hashes = file_hashes(paths)
    run_splits = Splits(train_set, splits.validation, splits.test)
    if family in pipeline.TRANSFORMER_FAMILIES:
        budget = 0.0 if args.quick or args.tiny else settings.time_budget_min
        pipeline.run_transformer(family, run_splits, sets, hashes, work,
                                 _transformer_args(family, args, base, budget))
    else:
        pipeline.run_classical(family, run_splits, sets, hashes, work)
    return _gate_and_publish(family, settings, manifest, exports_dir, feedback, work, start, len(train_split),
                             out_of_domain, trained_on)


def _gate_and_publish(family: str, settings: config.RetrainSettings, manifest: Any, exports_dir: Path,
                      feedback: Feedback, work: Path, start: str, sentiment140_rows: int,
                      out_of_domain: dict[str, Dataset] | None = None,
                      trained_on: list[str] | None = None) -> dict[str, Any]:
    setup()
    client = MlflowClient()
    run = client.get_run(mlflow.last_active_run().info.run_id)
    run_id, metrics = run.info.run_id, run.data.metrics
    version = str(client.search_model_versions(f"run_id = '{run_id}'")[0].version)
    # The candidate is measured against its own family: the version of it served now on the feedback slice, and the
    # best version of it ever served on validation_random (a family not served yet: against the champion's).
    incumbent = family if family in manifest.models else manifest.champion
    champion_folder = exports_dir / manifest.models[incumbent].path
    champion_meta = read_metadata(champion_folder)
    served = load_predictor(champion_folder)
    champion_slice = _accuracy(served, feedback.holdout)
    champion_ood = {name: _accuracy(served, data) for name, data in (out_of_domain or {}).items()}
    candidate = Scored(family, version, metrics.get(f"{config.VALIDATION_RANDOM_SET}_accuracy"),
                       metrics.get(f"{FEEDBACK_SET}_accuracy"), run_id)
    champion = Scored(incumbent, str(champion_meta["version"]),
                      publish.champion_accuracy(exports_dir, incumbent, manifest.models), champion_slice,
                      champion_meta.get("mlflow", {}).get("run_id"))
    # A family never served has no figure of its own: it must reach the best earlier champion's, as before.
    best = publish.best_family_accuracy(exports_dir, manifest, family)
    decision = decide(candidate, champion, best if best is not None else publish.best_champion_accuracy(
        exports_dir, manifest), len(feedback.holdout), settings)
    report = {"family": family, "start": start, "feedback": {**feedback.counts, "dropped": feedback.dropped},
              "sentiment140_train_rows": sentiment140_rows, "oversample": settings.feedback_oversample,
              "accuracy_before": _set_figures(champion_meta.get("metrics", {}), champion_slice) | champion_ood,
              "accuracy_after": _set_figures(nested_metrics(metrics), candidate.feedback_slice_accuracy)
              | {name: metrics.get(f"{name}_accuracy") for name in champion_ood},
              "trained_on_out_of_domain": trained_on or [], "gate": decision.as_dict(), "published": None}
    client.log_metric(run_id, f"champion_{FEEDBACK_SET}_accuracy", champion_slice)
    client.set_tag(run_id, "run_kind", "retrain")
    client.set_tag(run_id, "gate_decision", decision.decision)
    client.set_tag(run_id, "gate", json.dumps(decision.as_dict(), sort_keys=True))
    client.set_tag(run_id, "retrain_feedback", json.dumps(report["feedback"], sort_keys=True))
    if trained_on:  # its figures on those sets are their held-out folds' (training.folds)
        client.set_tag(run_id, "trained_on_out_of_domain", ", ".join(f"{n} (train fold)" for n in trained_on))
    client.set_model_version_tag(config.REGISTERED_MODEL, version, "gate_decision", decision.decision)
    if decision.promoted:
        model_dir = work / family / "model"
        # The champion rule picks the default among the served models and the promoted one, as at export.
        becomes_champion = publish.champion_with(exports_dir, manifest, family, nested_metrics(metrics)) == family
        try:
            published = publish.publish_version(
                exports_dir, work / "bundles" / family, name=family, version=version, run_id=run_id,
                champion=becomes_champion,
                metadata={"metrics": nested_metrics(metrics),
                          "aliases": [family, *([config.CHAMPION_ALIAS] if becomes_champion else [])],
                          "mlflow": {"run_id": run_id, "registered_model": config.REGISTERED_MODEL,
                                     "model_version": version, "experiment": config.EXPERIMENT_NAME},
                          **({"trained_on_out_of_domain": trained_on} if trained_on else {}),
                          **({"weights_dir": str(model_dir.resolve())} if model_dir.is_dir() else {})})
        except ExportError as error:
            raise SystemExit(f"error: version {version} passed the gate but was not published ({error}); "
                             "the manifest in force is unchanged") from error
        # The registry follows what is served, so only once the manifest names the new version.
        if published.champion == family:
            set_champion(client, version, run_id)
        client.set_registered_model_alias(config.REGISTERED_MODEL, family, version)
        report["published"] = {"champion": published.champion, "version": published.models[family].version,
                               "registry_version": version,
                               "models": {n: m.path for n, m in published.models.items()}}
    json.dump(report, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    return report


if __name__ == "__main__":
    main()
