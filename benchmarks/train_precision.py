"""Seconds per fine-tuning step in fp32 and in bf16 autocast, for MiniLM-L6 and mpnet, in one run.

The same step as ``training.train_transformer.train``: a batch of 32 real train-split tweets padded to a multiple
of 16, forward and loss (under ``torch.autocast(bfloat16)`` for bf16), backward, gradient clipping and the fused
AdamW step. Each configuration runs a few warm-up steps, then timed steps on the same batches; the median is
reported. Run it on an idle machine: a training run beside it measures the contention.

    python -m benchmarks.train_precision [--steps 12] [--families minilm,mpnet] [--threads 2]

Writes ``results/train_precision.json`` and ``results/train_precision.md``. mpnet is measured when its weights
are installed (``make install-mpnet``), else reported as skipped.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from training import config
from training.train_transformer import (
    FAMILIES,
    TorchClassifier,
    bf16_supported,
    make_optimizer,
    pad_batch,
)

logger = logging.getLogger(__name__)
RESULTS = config.PROJECT_ROOT / "results"
WARMUP_STEPS = 3


def _batches(model, tokenizer, texts: list[str], steps: int, batch_size: int = 32) -> list[tuple[torch.Tensor, ...]]:
    rng = np.random.default_rng(config.SEED)
    encoded = TorchClassifier(model, tokenizer, 64).encode(texts)  # the training loop's own tokenisation
    labels = rng.integers(0, 2, len(texts))
    out = []
    for _ in range(steps + WARMUP_STEPS):
        index = rng.choice(len(texts), batch_size, replace=False)
        ids, mask = pad_batch([encoded[i] for i in index], tokenizer.pad_token_id, 16)
        out.append((ids, mask, torch.tensor(labels[index], dtype=torch.long)))
    return out


def measure(family: str, precision: str, texts: list[str], steps: int) -> dict[str, float]:
    """Median seconds of one optimiser step of ``family`` in ``precision`` (and of its parts)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base, _ = FAMILIES[family].weights()
    tokenizer = AutoTokenizer.from_pretrained(base)
    torch.manual_seed(config.SEED)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=2, attn_implementation="eager")
    batches = _batches(model, tokenizer, texts, steps)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer([{"params": params, "weight_decay": 0.01}], 5e-5)
    passes, updates, totals = [], [], []
    for number, (ids, mask, labels) in enumerate(batches):
        began = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = model(input_ids=ids, attention_mask=mask).logits
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        middle = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ended = time.perf_counter()
        if number >= WARMUP_STEPS:
            passes.append(middle - began)
            updates.append(ended - middle)
            totals.append(ended - began)
    return {"s_per_step": statistics.median(totals), "forward_backward_s": statistics.median(passes),
            "optimizer_s": statistics.median(updates), "steps": len(totals)}


def _report(run: dict) -> str:
    lines = ["# Fine-tuning step time: fp32 against bf16 autocast", "",
             f"Measured by `python -m benchmarks.train_precision` ({run['date']}, commit `{run['commit']}`, "
             f"{run['threads']} threads, load average {run['load_before']} before the run; bf16 native on this CPU: "
             f"{run['bf16_native']}).",
             "One step: a batch of 32 real train-split tweets padded to a multiple of 16, forward and loss, backward, "
             "gradient clipping, fused AdamW. Medians of the timed steps after "
             f"{WARMUP_STEPS} warm-up steps; the same batches for both precisions.", "",
             "| model | fp32 s/step | bf16 s/step | bf16 speed-up | bf16 forward+backward | bf16 AdamW |",
             "|---|---|---|---|---|---|"]
    for family, rows in run["families"].items():
        if "skipped" in rows:
            lines.append(f"| {family} | skipped: {rows['skipped']} | | | | |")
            continue
        fp32, bf16 = rows["fp32"], rows["bf16"]
        lines.append(f"| {family} | {fp32['s_per_step']:.3f} | {bf16['s_per_step']:.3f} | "
                     f"{fp32['s_per_step'] / bf16['s_per_step']:.2f}× | {bf16['forward_backward_s']:.3f} | "
                     f"{bf16['optimizer_s']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--families", default="minilm,mpnet")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    from training.data import load_splits

    try:
        splits = load_splits(config.data_dir(), seed=config.SEED)
    except FileNotFoundError as error:
        raise SystemExit(f"error: {error} (the Sentiment140 files: set SENTIMENT140_DIR)") from error
    texts = splits.train.texts[:4000]
    import subprocess

    commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                            cwd=config.PROJECT_ROOT).stdout.strip()
    run = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "commit": commit, "threads": args.threads,
           "load_before": round(os.getloadavg()[0], 2), "bf16_native": bf16_supported(), "families": {}}
    for family in [f.strip() for f in args.families.split(",") if f.strip()]:
        try:
            FAMILIES[family].weights()
        except SystemExit as missing:
            run["families"][family] = {"skipped": str(missing).split(":")[0]}
            continue
        run["families"][family] = {precision: measure(family, precision, texts, args.steps)
                                   for precision in ("fp32", "bf16")}
        logger.info("%s: %s", family, run["families"][family])
    run["load_after"] = round(os.getloadavg()[0], 2)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train_precision.json").write_text(json.dumps(run, indent=2) + "\n")
    (args.out / "train_precision.md").write_text(_report(run))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
