"""Train every model family end to end: data → train → evaluate → log to MLflow → register → champion.

    python -m training.pipeline                 # full run on the shared data
    python -m training.pipeline --quick         # small samples, minutes
    python -m training.pipeline --models tfidf-lr,minilm
    python -m training.pipeline --models mpnet --mpnet-limit 30000 --mpnet-time-budget-min 120   # opt-in

A transformer whose training stops at its time budget leaves a checkpoint and exits with status 75; the same
command continues it (the pipeline always resumes).

Each model is scored by ``training.evaluate.evaluate`` through its ONNX bundle (what is served) on the
internal test split, the validation split, ``validation_random_4683.csv`` and the out-of-domain sets of
``OUT_OF_DOMAIN_DIR`` that are present (none, with one log line, when the folder is absent). ``make export``
then copies the registered bundles to ``exports/``.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sentiment.predictor import load_predictor
from training import config, register
from training.bundle import classical_bundle, max_abs_diff, transformer_bundle
from training.data import Dataset, Splits, load, load_splits, sample
from training.evaluate import evaluate, evaluate_sets, out_of_domain_files
from training.quantize import calibration_sample
from training.tracking import file_hashes, log_model_run

if TYPE_CHECKING:
    from training.train_transformer import TrainConfig

logger = logging.getLogger(__name__)

ALL_MODELS = ["vader", "tfidf-lr", "tfidf-cnb", "tfidf-svm", "minilm"]
# Trained only when named in --models: hours of CPU and a 440 MB download (`make install-mpnet`).
OPT_IN_MODELS = ["mpnet"]
TRANSFORMER_FAMILIES = ("minilm", "mpnet")  # the families of training.train_transformer (imported lazily: torch)
QUICK_LIMITS = {"minilm": 1_500, "mpnet": 320}
PARITY_SAMPLE = 512


def run_vader(sets: dict[str, Dataset], hashes: dict[str, str]) -> None:
    from training.train_lexicon import VaderModel

    log_model_run(name="vader", family="lexicon", params={"lexicon": "vaderSentiment 3.3.2",
                                                          "mapping": "p_positive = (compound + 1) / 2"},
                  evaluations=evaluate_sets(VaderModel(), sets), data_hashes=hashes)


def run_classical(name: str, splits: Splits, sets: dict[str, Dataset], hashes: dict[str, str], work: Path) -> None:
    from training import train_classical

    spec = train_classical.SPECS[name]
    result = train_classical.train(spec, splits.train, splits.validation)
    bundle = work / "bundles" / name
    classical_bundle(result.pipeline, bundle, name=name, display_name=spec.display_name)
    served = load_predictor(bundle)
    probe = sets[config.VALIDATION_RANDOM_SET].texts[:PARITY_SAMPLE]
    parity = max_abs_diff(served.predict_proba(probe), train_classical.PipelineModel(result.pipeline).predict_proba(probe))
    logger.info("%s: ONNX vs scikit-learn max |Δp| = %.2e", name, parity)
    log_model_run(name=name, family="classical",
                  params={**result.params, "train_rows": len(splits.train), "search": result.search},
                  evaluations=evaluate_sets(served, sets), data_hashes=hashes, bundle=bundle,
                  extra_metrics={"parity_max_abs_diff": parity, "fit_seconds": result.fit_seconds})


def transformer_config(family: str, work: Path, args: argparse.Namespace) -> TrainConfig:
    """The ``TrainConfig`` of ``family`` from the pipeline's ``--<family>-*`` options (unset: family defaults)."""
    from training import train_transformer as tt

    def option(name: str) -> Any:
        return getattr(args, f"{family}_{name}")

    given = {"base_model": option("base_model"), "learning_rate": option("lr"), "epochs": option("epochs"),
             "train_limit": option("limit"), "time_budget_min": option("time_budget_min"),
             "freeze_embeddings": option("freeze_embeddings"), "freeze_layers": option("freeze_layers")}
    return tt.config_for(family, str(option("dir") or work / family), tiny=args.tiny, threads=args.threads,
                         log_every=args.log_every, precision=args.precision,
                         **{k: v for k, v in given.items() if v is not None})


def run_transformer(family: str, splits: Splits, sets: dict[str, Dataset], hashes: dict[str, str], work: Path,
                    args: argparse.Namespace) -> None:
    from training import train_transformer as tt

    cfg = transformer_config(family, work, args)
    train_set = sample(splits.train, cfg.train_limit, cfg.seed) if cfg.train_limit else splits.train
    model_dir = tt.train(cfg, train_set, resume=True)
    if model_dir is None:
        logger.warning("%s training paused at a checkpoint in %s; run the same command again to resume", family,
                       cfg.output_dir)
        raise SystemExit(tt.PAUSED_EXIT)
    trained = evaluate_transformer(family, tt.FAMILIES[family].display_name, Path(cfg.output_dir), sets, work,
                                   calibration_sample(splits.train))
    log_model_run(name=family, family="transformer", params=trained.params, evaluations=trained.evaluations,
                  data_hashes=hashes, bundle=trained.bundle, history=trained.history,
                  tags=trained.tags | {"transformer_family": family}, extra_metrics=trained.metrics)


@dataclass
class TrainedTransformer:
    """A finished fine-tune, bundled for serving and scored through its int8 export."""

    bundle: Path
    served: Any  # the int8 predictor
    evaluations: dict[str, Any]
    params: dict[str, Any]
    tags: dict[str, str]
    metrics: dict[str, float]
    history: list[dict[str, float]]


def evaluate_transformer(name: str, display_name: str, run_dir: Path, sets: dict[str, Dataset],
                         work: Path, calibration_texts: list[str]) -> TrainedTransformer:
    """Bundle ``run_dir/model`` as ``name`` (ONNX fp32 + static int8), check parity with torch, score it on ``sets``."""
    import json

    from training import train_transformer as tt

    summary = json.loads((run_dir / "summary.json").read_text())
    history = json.loads((run_dir / "history.json").read_text())
    model_dir = run_dir / "model"
    bundle = work / "bundles" / name
    transformer_bundle(model_dir, bundle, name=name, display_name=display_name,
                       max_length=summary["config"]["max_length"], calibration_texts=calibration_texts,
                       preprocessing_version=summary["preprocessing_version"])
    served = load_predictor(bundle, variant="int8")
    fp32 = load_predictor(bundle, variant="fp32")
    validation_random = sets[config.VALIDATION_RANDOM_SET]
    probe = validation_random.texts[:PARITY_SAMPLE]
    parity = max_abs_diff(fp32.predict_proba(probe), tt.TorchClassifier.from_path(model_dir).predict_proba(probe))
    fp32_metrics, _ = evaluate(fp32, validation_random, latency=True)
    evaluations = evaluate_sets(served, sets)
    int8_drop = fp32_metrics["accuracy"] - evaluations[config.VALIDATION_RANDOM_SET][0]["accuracy"]
    logger.info("%s: ONNX fp32 vs torch max |Δp| = %.2e; int8 accuracy drop %.4f", name, parity, int8_drop)
    params = {**{k: v for k, v in summary["config"].items() if k != "output_dir"}, "train_rows": summary["train_rows"],
              "steps": summary["steps"], "onnx_opset": 17, "quantization": "static int8 (fused graph)"}
    tags = {"preprocessing_version": summary["preprocessing_version"]}
    if summary.get("base_model_sha256"):
        tags["base_model_sha256"] = summary["base_model_sha256"]
    metrics = {"parity_max_abs_diff": parity, "train_seconds": summary["train_seconds"],
               "fp32_validation_random_accuracy": fp32_metrics["accuracy"],
               "fp32_validation_random_latency_p50_ms": fp32_metrics["latency_p50_ms"],
               "fp32_validation_random_throughput_batch32": fp32_metrics["throughput_batch32"],
               "int8_accuracy_drop": int8_drop}
    return TrainedTransformer(bundle, served, evaluations, params, tags, metrics, history)


def _check_weights(models: list[str], args: argparse.Namespace) -> None:
    """Fail before any training when an opt-in family's weights are not installed."""
    if "mpnet" in models and not args.tiny and not args.mpnet_base_model:
        from training.mpnet_weights import default_cache_dir, find_chunks

        if not (default_cache_dir() / "assembled.json").exists():
            find_chunks()


def _add_transformer_options(parser: argparse.ArgumentParser, family: str) -> None:
    group = parser.add_argument_group(f"{family} options (unset: the family's defaults in training.train_transformer)")
    group.add_argument(f"--{family}-epochs", type=float, default=None, help="epochs (default 1)")
    group.add_argument(f"--{family}-limit", type=int, default=None,
                       help=f"train on a seeded sample of this many tweets (default: all; --quick: {QUICK_LIMITS[family]})")
    group.add_argument(f"--{family}-dir", default=None,
                       help=f"training folder (checkpoints; resumed when present; default: <work-dir>/{family})")
    group.add_argument(f"--{family}-base-model", default=None,
                       help="start from this Hugging Face folder instead of the family's pretrained weights, e.g. a "
                            "fine-tuned model folder to continue training it")
    group.add_argument(f"--{family}-lr", type=float, default=None, help="peak learning rate")
    group.add_argument(f"--{family}-time-budget-min", type=float, default=None,
                       help="stop at a checkpoint before this many minutes (exit status 75; run again to continue)")
    group.add_argument(f"--{family}-freeze-embeddings", action="store_true", default=None,
                       help="freeze the embeddings")
    group.add_argument(f"--{family}-freeze-layers", type=int, default=None, help="freeze the lowest N encoder layers")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="training data: a Kaggle CSV, generic CSV or 100k folder "
                                                     "(default: SENTIMENT140_DIR)")
    parser.add_argument("--validation-random", default=None, help="the random validation file (default: "
                                                                  f"{config.VALIDATION_RANDOM_FILE} in SENTIMENT140_DIR)")
    parser.add_argument("--models", default=",".join(ALL_MODELS),
                        help=f"comma-separated subset of {ALL_MODELS + OPT_IN_MODELS} (default: {ALL_MODELS})")
    parser.add_argument("--quick", action="store_true", help="small samples: every family in minutes")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny randomly initialised transformers (tests, smoke runs)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                        help="transformers: bf16 autocast where the CPU supports it (auto), or forced")
    parser.add_argument("--log-every", type=int, default=20, help="training-loss logging interval (steps)")
    parser.add_argument("--work-dir", default=None, help="scratch folder (default: artifacts/)")
    for family in TRANSFORMER_FAMILIES:
        _add_transformer_options(parser, family)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = set(models) - set(ALL_MODELS + OPT_IN_MODELS)
    if unknown:
        raise SystemExit(f"unknown model(s) {sorted(unknown)}; choose from {ALL_MODELS + OPT_IN_MODELS}")
    _check_weights(models, args)
    data_path = Path(args.data) if args.data else config.data_dir()
    random_path = Path(args.validation_random) if args.validation_random else (
        config.data_dir() / config.VALIDATION_RANDOM_FILE)
    try:
        splits = load_splits(data_path)
        validation_random = load(random_path)
    except FileNotFoundError as error:
        raise SystemExit(f"error: {error}") from error
    work = Path(args.work_dir) if args.work_dir else config.artifacts_dir()
    if args.quick:
        work = work / "quick"
        splits = Splits(sample(splits.train, 20_000), sample(splits.validation, 1_000), sample(splits.test, 1_000))
        validation_random = sample(validation_random, 1_000)
        for family in TRANSFORMER_FAMILIES:
            setattr(args, f"{family}_limit", getattr(args, f"{family}_limit") or QUICK_LIMITS[family])
    out_of_domain = out_of_domain_files()
    sets = {config.TEST_SET: splits.test, "validation": splits.validation,
            config.VALIDATION_RANDOM_SET: validation_random} | {n: load(p) for n, p in out_of_domain.items()}
    hashes = file_hashes([data_path, random_path, *out_of_domain.values()])
    for name in models:
        logger.info("=== %s ===", name)
        if name == "vader":
            run_vader(sets, hashes)
        elif name in TRANSFORMER_FAMILIES:
            run_transformer(name, splits, sets, hashes, work, args)
        else:
            run_classical(name, splits, sets, hashes, work)
    register.promote_champion()


if __name__ == "__main__":
    main()
