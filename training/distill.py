"""Distil a stronger model (the teacher's ONNX export) into MiniLM-L6, and keep the student only if it earns it.

    python -m training.distill --teacher exports/mpnet [--limit 40000] [--time-budget-min 150] [--drop-below 0.1]

1. **Soft targets**: the teacher's P(positive) for each tweet of the *train split* (never the validation or test
   splits, never validation_random), scored through its export in resumable chunks and cached in the run folder,
   stamped with the teacher's name, version and file hashes. Only the export is needed: no teacher checkpoint.
2. **Student**: MiniLM-L6 fine-tuned by ``training.train_transformer`` on the labels and the soft targets
   (``distillation_loss``), with the same time budget, checkpoints and ``--resume`` as every transformer. With
   ``--drop-below P`` it learns cleaned labels instead: the tweets whose emoticon label the teacher gives less than
   P are left out, and the rest train on their labels alone.
3. **Gate**: the student is compared with the baseline export (default ``exports/minilm``) on validation_random:
   McNemar's exact test on the tweets the two classify differently, and the in-process batch-1 p50 latency of
   both, measured alternately in this run. The student is kept (registered as ``minilm-distilled``, so that
   ``make export`` writes it) only if it is more accurate with p < ``--max-p`` and its p50 is within
   ``--max-latency-ratio`` of the baseline's. Either way its run is logged to MLflow, and the decision is printed
   as JSON and logged as tags.

Exit status 75: the session's time budget ran out at a checkpoint (teacher scoring or training); run it again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.stats import binomtest
from tqdm import tqdm

from sentiment.predictor import Predictor, load_predictor
from training import config
from training.data import Dataset, load, load_splits, sample
from training.tracking import file_hashes, log_model_run

logger = logging.getLogger(__name__)

STUDENT = "minilm-distilled"
PROGRESS_LOG_S = 30.0  # seconds between two progress lines when no bar is drawn (stderr not a terminal)
TEACHER_CHUNK = 1024  # tweets scored between two saves of the cache (about 10 s for mpnet int8 on 2 cores)
LATENCY_ROUNDS = 5  # alternating rounds of single-tweet calls per model


@dataclass(frozen=True)
class Gate:
    student_accuracy: float
    baseline_accuracy: float
    student_only_right: int  # discordant tweets: the student right, the baseline wrong
    baseline_only_right: int
    mcnemar_p: float
    student_p50_ms: float
    baseline_p50_ms: float
    latency_ratio: float
    max_p: float
    max_latency_ratio: float
    kept: bool
    reason: str


def teacher_stamp(teacher: Predictor, texts: list[str]) -> str:
    """Identity of a set of soft targets: the teacher's name, version and file hashes, and the texts scored."""
    digest = hashlib.sha256(json.dumps([teacher.name, teacher.version, teacher.metadata["files"]]).encode())
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
    return f"{teacher.name}@{teacher.version}:{digest.hexdigest()[:16]}"


def teacher_targets(teacher: Predictor, texts: list[str], cache: Path, deadline: float = 0.0,
                    stamp: str | None = None) -> np.ndarray | None:
    """The teacher's P(positive) for ``texts``, resumed from and saved to ``cache`` (``.npy`` + ``.json``).

    Returns None when ``deadline`` (a ``time.monotonic()`` value; 0 = none) passes first, with the scored part saved.
    ``stamp``: :func:`teacher_stamp` of the same teacher and texts, when the caller has it already.
    """
    stamp = stamp or teacher_stamp(teacher, texts)
    meta_path, array_path = cache.with_suffix(".json"), cache.with_suffix(".npy")
    done, scores = 0, np.full(len(texts), np.nan, dtype=np.float32)
    if meta_path.exists() and array_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta["stamp"] == stamp:
            scores, done = np.load(array_path), int(meta["done"])
        else:
            logger.warning("%s holds targets of %s, not %s: scoring again", cache, meta["stamp"], stamp)
    # A bar on a terminal only (disable=None); a log file gets a line every PROGRESS_LOG_S instead.
    progress = tqdm(total=len(texts), initial=done, desc=f"teacher {teacher.name}", unit="tweet", mininterval=1.0,
                    disable=None)
    logged_at = time.monotonic()
    while done < len(texts):
        if deadline and time.monotonic() > deadline:
            progress.close()
            return None
        end = min(done + TEACHER_CHUNK, len(texts))
        scores[done:end] = teacher.predict_proba(texts[done:end])[:, 1]
        done = end
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(array_path.with_suffix(".tmp.npy"), scores)
        array_path.with_suffix(".tmp.npy").replace(array_path)
        meta_path.write_text(json.dumps({"stamp": stamp, "done": done, "rows": len(texts)}))
        progress.update(end - progress.n)
        if progress.disable and (time.monotonic() - logged_at >= PROGRESS_LOG_S or done == len(texts)):
            logger.info("teacher %s: %d/%d tweets scored", teacher.name, done, len(texts))
            logged_at = time.monotonic()
    progress.close()
    return scores


def p50_ms(model: Predictor, texts: list[str]) -> list[float]:
    timings = []
    for text in texts:
        start = time.perf_counter()
        model.predict_proba([text])
        timings.append((time.perf_counter() - start) * 1000)
    return timings


def compare(student: Predictor, baseline: Predictor, data: Dataset, *, max_p: float, max_latency_ratio: float,
            latency_sample: int = 200) -> Gate:
    """McNemar's exact test and batch-1 p50 latency, student against baseline, on the same tweets in one run."""
    truth = np.array(student.labels)[data.labels]
    right_student = np.array(student.predict(data.texts)) == truth
    right_baseline = np.array(baseline.predict(data.texts)) == truth
    b = int((right_student & ~right_baseline).sum())
    c = int((right_baseline & ~right_student).sum())
    p_value = float(binomtest(b, b + c, 0.5).pvalue) if b + c else 1.0
    probe = data.texts[:latency_sample]
    p50_ms(student, probe[:20]), p50_ms(baseline, probe[:20])  # warm-up
    student_times, baseline_times = [], []
    for _ in range(LATENCY_ROUNDS):  # alternating, so that a noisy minute hits both
        student_times += p50_ms(student, probe)
        baseline_times += p50_ms(baseline, probe)
    student_p50, baseline_p50 = statistics.median(student_times), statistics.median(baseline_times)
    ratio = student_p50 / baseline_p50
    better = b > c and p_value < max_p
    fast = ratio <= max_latency_ratio
    reason = ("kept: more accurate (McNemar) and as fast" if better and fast else
              "refused: " + "; ".join(r for r, failed in (
                  (f"not more accurate at p < {max_p} (p = {p_value:.3g}, {b} vs {c} discordant)", not better),
                  (f"p50 {ratio:.2f}× the baseline's (limit {max_latency_ratio:g}×)", not fast)) if failed))
    return Gate(float(right_student.mean()), float(right_baseline.mean()), b, c, p_value, student_p50, baseline_p50,
                ratio, max_p, max_latency_ratio, better and fast, reason)


def main(argv: list[str] | None = None) -> None:
    from training import train_transformer as tt
    from training.pipeline import evaluate_transformer
    from training.quantize import calibration_sample

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, required=True, help="the teacher's export folder (e.g. exports/mpnet)")
    parser.add_argument("--baseline", type=Path, default=config.exports_dir() / "minilm",
                        help="the export the student must beat (default: exports/minilm)")
    parser.add_argument("--data", default=None, help="training data (default: SENTIMENT140_DIR)")
    parser.add_argument("--validation-random", default=None, help="the honest set (default: SENTIMENT140_DIR's)")
    parser.add_argument("--limit", type=int, default=0, help="a seeded sample of N train-split tweets (0: all)")
    parser.add_argument("--dir", type=Path, default=None, help=f"run folder (default: artifacts/{STUDENT})")
    parser.add_argument("--time-budget-min", type=float, default=0.0, help="stop at a checkpoint before M minutes")
    parser.add_argument("--alpha", type=float, default=None, help="weight of the hard-label loss (default 0.5)")
    parser.add_argument("--temperature", type=float, default=None, help="distillation temperature (default 2)")
    parser.add_argument("--epochs", type=float, default=None)
    parser.add_argument("--drop-below", type=float, default=None,
                        help="cleaned labels: drop the train tweets whose label the teacher gives a probability below "
                             "P, and train on the labels of the rest (alpha 1 unless --alpha is given)")
    parser.add_argument("--max-p", type=float, default=0.05, help="McNemar p-value the student must beat")
    parser.add_argument("--max-latency-ratio", type=float, default=1.10, help="student p50 / baseline p50 limit")
    parser.add_argument("--tiny", action="store_true", help="a tiny student (tests)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.monotonic()
    deadline = started + args.time_budget_min * 60 if args.time_budget_min else 0.0
    run_dir = args.dir or config.artifacts_dir() / STUDENT

    data_path = Path(args.data) if args.data else config.data_dir()
    random_path = Path(args.validation_random) if args.validation_random else (
        config.data_dir() / config.VALIDATION_RANDOM_FILE)
    for path in (args.teacher, args.baseline):
        if not (path / "metadata.json").exists():
            raise SystemExit(f"error: {path} is not an export folder (no metadata.json); run `make export` first")
    try:
        splits = load_splits(data_path)
        validation_random = load(random_path)
    except FileNotFoundError as error:
        raise SystemExit(f"error: {error}") from error
    train_set = sample(splits.train, args.limit) if args.limit else splits.train
    teacher = load_predictor(args.teacher)
    logger.info("teacher %s@%s scores %d train-split tweets (never validation or test)", teacher.name,
                teacher.version, len(train_set))
    stamp = teacher_stamp(teacher, train_set.texts)
    targets = teacher_targets(teacher, train_set.texts, run_dir / "teacher_targets", deadline, stamp)
    if targets is None:
        logger.warning("time budget spent while scoring with the teacher; the scored part is saved: run again")
        raise SystemExit(tt.PAUSED_EXIT)
    del teacher  # the teacher's session (≈ 110 MB of weights, more in arenas) is not needed for training
    alpha = 1.0 if args.drop_below is not None and args.alpha is None else args.alpha
    overrides = {k: v for k, v in {"distill_alpha": alpha, "distill_temperature": args.temperature,
                                   "epochs": args.epochs, "teacher_drop_below": args.drop_below}.items()
                 if v is not None}
    remaining = (deadline - time.monotonic()) / 60 if deadline else 0.0
    cfg = tt.config_for("minilm", str(run_dir), teacher=stamp, tiny=args.tiny,
                        time_budget_min=max(remaining, 0.01) if deadline else 0.0, train_limit=args.limit,
                        **overrides)
    if tt.train(cfg, train_set, resume=True, teacher_positive=targets) is None:
        raise SystemExit(tt.PAUSED_EXIT)

    sets = {config.TEST_SET: splits.test, "validation": splits.validation,
            config.VALIDATION_RANDOM_SET: validation_random}
    work = run_dir.parent
    trained = evaluate_transformer(STUDENT, "MiniLM-L6 distilled (ONNX int8)", run_dir, sets, work,
                                   calibration_sample(splits.train))
    gate = compare(trained.served, load_predictor(args.baseline), validation_random, max_p=args.max_p,
                   max_latency_ratio=args.max_latency_ratio)
    decision = {"student": STUDENT, "teacher": cfg.teacher, "baseline": str(args.baseline),
                "alpha": cfg.distill_alpha, "drop_below": cfg.teacher_drop_below,
                "train_rows": json.loads((run_dir / "summary.json").read_text())["train_rows"], **asdict(gate)}
    sys.stdout.write(json.dumps(decision, indent=2) + "\n")
    tags = trained.tags | {"transformer_family": "minilm", "teacher": cfg.teacher,
                           "distillation_decision": "kept" if gate.kept else "refused",
                           "distillation_reason": gate.reason[:500]}
    metrics = trained.metrics | {"mcnemar_p": gate.mcnemar_p, "baseline_validation_random_accuracy":
                                 gate.baseline_accuracy, "p50_ratio_to_baseline": gate.latency_ratio}
    log_model_run(name=STUDENT, family="transformer", params=trained.params, evaluations=trained.evaluations,
                  data_hashes=file_hashes([data_path, random_path]), bundle=trained.bundle if gate.kept else None,
                  history=trained.history, tags=tags, extra_metrics=metrics)
    if gate.kept:
        from training import register

        register.promote_champion()
    (run_dir / "decision.json").write_text(json.dumps(decision, indent=2))


if __name__ == "__main__":
    main()
