"""Distillation: the loss, resumable teacher targets from the train split only, the McNemar/latency gate, end to end."""

from __future__ import annotations

import json
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from sentiment.predictor import load_predictor
from tests.api.conftest import build_transformer_export
from tests.training.conftest import synthetic_tweets, write_kaggle_csv
from training import config, distill
from training.data import Dataset, load, load_splits
from training.train_transformer import distillation_loss, drop_disagreeing


class FakeModel:
    """A predictor with fixed answers per text (and an optional delay per call), counting what it scored."""

    labels = ("negative", "positive")

    def __init__(self, answers: dict[str, float], delay_s: float = 0.0, name: str = "fake") -> None:
        self.answers, self.delay_s, self.name, self.version = answers, delay_s, name, "1"
        self.metadata = {"files": {"model.onnx": "0" * 64}}
        self.scored: list[str] = []

    def predict_proba(self, texts):
        time.sleep(self.delay_s)
        self.scored += list(texts)
        p = np.array([self.answers[t] for t in texts], dtype=np.float32)
        return np.stack([1 - p, p], axis=1)

    def predict(self, texts):
        return [self.labels[int(p >= 0.5)] for p in self.predict_proba(texts)[:, 1]]


def test_loss_is_cross_entropy_at_alpha_one_and_follows_the_teacher_otherwise() -> None:
    logits = torch.tensor([[0.2, -0.1], [1.0, 0.5]], requires_grad=True)
    labels = torch.tensor([0, 1])
    teacher = torch.tensor([0.9, 0.9])
    assert torch.isclose(distillation_loss(logits, labels, teacher, 1.0, 2.0),
                         torch.nn.functional.cross_entropy(logits, labels))
    # Soft targets only: the gradient raises the positive logit of both rows (the teacher says 0.9 positive).
    distillation_loss(logits, labels, teacher, 0.0, 2.0).backward()
    assert (logits.grad[:, 1] < 0).all() and (logits.grad[:, 0] > 0).all()
    # A student that already matches the teacher's tempered distribution has (almost) no soft loss.
    matching = torch.log(torch.tensor([[0.1, 0.9]]))
    assert distillation_loss(matching, torch.tensor([1]), torch.tensor([0.9]), 0.0, 1.0).item() < 1e-6


def test_cleaned_labels_drop_only_the_tweets_the_teacher_confidently_contradicts() -> None:
    texts = ["great day", "awful day", "sarcastic :)", "bad news :(", "meh"]
    labels = np.array([1, 0, 1, 0, 1])
    teacher = np.array([0.95, 0.02, 0.04, 0.97, 0.5], dtype=np.float32)  # rows 2 and 3 contradict their emoticon
    kept, targets = drop_disagreeing(Dataset(texts, labels), teacher, 0.1)
    assert kept.texts == ["great day", "awful day", "meh"]
    assert kept.labels.tolist() == [1, 0, 1] and np.allclose(targets, [0.95, 0.02, 0.5])
    # A lower threshold drops only the more confident contradiction (P(label) 0.03, not 0.04).
    assert drop_disagreeing(Dataset(texts, labels), teacher, 0.035)[0].texts == texts[:3] + texts[4:]


def test_teacher_targets_resume_after_the_deadline_and_restart_for_another_teacher(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(distill, "TEACHER_CHUNK", 3)
    texts = [f"tweet {i}" for i in range(10)]
    teacher = FakeModel({t: i / 10 for i, t in enumerate(texts)})
    cache = tmp_path / "targets"

    assert distill.teacher_targets(teacher, texts, cache, deadline=time.monotonic() - 1) is None
    first = distill.teacher_targets(teacher, texts[:], cache, deadline=0.0)
    assert np.allclose(first, np.arange(10) / 10)
    assert teacher.scored == texts  # each text once: nothing scored twice across the two sessions
    assert json.loads(cache.with_suffix(".json").read_text())["done"] == 10

    other = FakeModel({t: 0.5 for t in texts}, name="other")
    assert np.allclose(distill.teacher_targets(other, texts, cache), 0.5)  # a stale cache is never reused


def test_gate_needs_significance_and_latency() -> None:
    texts = [f"t{i}" for i in range(60)]
    labels = np.array([i % 2 for i in range(60)])
    truth = {t: float(y) for t, y in zip(texts, labels, strict=True)}
    data = Dataset(texts, labels)
    baseline_answers = {t: (1 - p if i < 20 else p) for i, (t, p) in enumerate(truth.items())}  # 20 wrong
    baseline = FakeModel(baseline_answers)
    student = FakeModel(truth)  # right on all 60: 20 discordant, all for the student

    kept = distill.compare(student, baseline, data, max_p=0.05, max_latency_ratio=100.0, latency_sample=5)
    assert (kept.student_only_right, kept.baseline_only_right) == (20, 0)
    assert kept.mcnemar_p < 1e-5 and kept.kept and kept.reason.startswith("kept")

    weak = FakeModel({t: (1 - p if i < 18 else p) for i, (t, p) in enumerate(truth.items())})  # 2 better
    refused = distill.compare(weak, baseline, data, max_p=0.05, max_latency_ratio=100.0, latency_sample=5)
    assert not refused.kept and "not more accurate" in refused.reason and refused.mcnemar_p > 0.05

    slow = FakeModel(truth, delay_s=0.003)
    too_slow = distill.compare(slow, baseline, data, max_p=0.05, max_latency_ratio=1.1, latency_sample=3)
    assert not too_slow.kept and "p50" in too_slow.reason and too_slow.latency_ratio > 1.1


@pytest.mark.slow
def test_distillation_end_to_end_scores_only_the_train_split(
        tmp_path: Path, mlflow_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = write_kaggle_csv(tmp_path / "train.csv", synthetic_tweets(300))
    held_out = write_kaggle_csv(tmp_path / "validation_random.csv", synthetic_tweets(80, seed=7))
    teacher_dir = build_transformer_export(tmp_path / "teacher", name="tiny-teacher")
    baseline_dir = build_transformer_export(tmp_path / "baseline", name="tiny-baseline")
    seen: list[str] = []
    real_load = distill.load_predictor

    def recording_load(folder, *args, **kwargs):
        model = real_load(folder, *args, **kwargs)
        if Path(folder) == teacher_dir:
            inner = model.predict_proba
            model.predict_proba = lambda texts: (seen.extend(texts), inner(texts))[1]
        return model

    monkeypatch.setattr(distill, "load_predictor", recording_load)
    run_dir = tmp_path / "work" / distill.STUDENT

    distill.main(["--teacher", str(teacher_dir), "--baseline", str(baseline_dir), "--data", str(data),
                  "--validation-random", str(held_out), "--dir", str(run_dir), "--tiny", "--limit", "96"])

    splits = load_splits(data)
    assert len(seen) == 96 and set(seen) <= set(splits.train.texts)
    assert not set(seen) & (set(splits.validation.texts) | set(splits.test.texts) | set(load(held_out).texts))
    decision = json.loads((run_dir / "decision.json").read_text())
    assert decision["teacher"].startswith("tiny-teacher@") and decision["kept"] in (True, False)
    run = mlflow.search_runs(experiment_names=[config.EXPERIMENT_NAME]).iloc[0]
    assert run["tags.model_name"] == distill.STUDENT and run["tags.teacher"] == decision["teacher"]
    assert run["tags.distillation_decision"] == ("kept" if decision["kept"] else "refused")
    assert load_predictor(tmp_path / "work" / "bundles" / distill.STUDENT).predict_proba(["ok"]).shape == (1, 2)


@pytest.mark.slow
def test_a_cleaned_label_student_trains_on_the_rows_the_teacher_does_not_contradict(
        tmp_path: Path, mlflow_store: str) -> None:
    data = write_kaggle_csv(tmp_path / "train.csv", synthetic_tweets(300))
    held_out = write_kaggle_csv(tmp_path / "validation_random.csv", synthetic_tweets(80, seed=7))
    teacher_dir = build_transformer_export(tmp_path / "teacher", name="tiny-teacher")
    run_dir = tmp_path / "work" / distill.STUDENT

    distill.main(["--teacher", str(teacher_dir), "--baseline", str(build_transformer_export(tmp_path / "baseline")),
                  "--data", str(data), "--validation-random", str(held_out), "--dir", str(run_dir), "--tiny",
                  "--limit", "96", "--drop-below", "0.5"])

    targets = np.load(run_dir / "teacher_targets.npy")
    train = load_splits(data).train
    sampled = distill.sample(train, 96)
    p_label = np.where(sampled.labels == 1, targets, 1 - targets)
    decision = json.loads((run_dir / "decision.json").read_text())
    assert decision["alpha"] == 1.0 and decision["drop_below"] == 0.5
    assert decision["train_rows"] == int((p_label >= 0.5).sum())
    assert 0 < decision["train_rows"] < 96  # an untrained tiny teacher contradicts some labels, not all
    run = mlflow.search_runs(experiment_names=[config.EXPERIMENT_NAME]).iloc[0]
    assert float(run["params.teacher_drop_below"]) == 0.5
