"""Retraining from feedback: reading the store and the CSV export, the stable slice, the gate, publishing, rollback.

The models are TF-IDF + logistic regression on made-up tweets: a fit takes well under a second and its ONNX export
is exact, so every test here runs the real stages (pipeline, MLflow registry, gate, manifest) in seconds. The
transformer path shares all of it but the fit (``training.pipeline.run_transformer``, tested in test_pipeline.py).
"""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path

import mlflow
import pytest

from sentiment.feedback import FeedbackStore
from sentiment.manifest import read_manifest
from sentiment.predictor import load_predictor
from tests.training.conftest import FILLER, NEGATIVE, POSITIVE, synthetic_tweets, write_kaggle_csv
from tests.training.test_evaluate import write_out_of_domain
from training import config, export, pipeline, publish, retrain
from training.config import RetrainSettings
from training.feedback import FeedbackRow, in_holdout, prepare, read_export, read_store
from training.gate import Scored, decide

# Words the training data never holds: the served model cannot know them, feedback teaches them.
NEW_POSITIVE = ["bussin", "goated", "slaps", "vibing", "blessed", "stoked"]
NEW_NEGATIVE = ["mid", "cringe", "yikes", "salty", "rekt", "meh"]


def slang_tweets(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "positive" if i % 2 else "negative"
        words = NEW_POSITIVE if i % 2 else NEW_NEGATIVE
        rows.append((f"{rng.choice(FILLER)} {rng.choice(words)} {rng.choice(words)} {rng.choice(FILLER)} fb{seed}x{i}",
                     label))
    return rows


def flipped_tweets(n: int, seed: int) -> list[tuple[str, str]]:
    """Tweets in the training data's own words with the opposite label: feedback that unlearns the task."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        positive_words = i % 2
        words = POSITIVE if positive_words else NEGATIVE
        rows.append((f"{rng.choice(words)} {rng.choice(FILLER)} {rng.choice(words)} flip{seed}x{i}",
                     "negative" if positive_words else "positive"))
    return rows


def record_reviewed(store: FeedbackStore, rows: list[tuple[str, str]], model_folder: Path) -> None:
    """What users and the maintainer do: a thumbs up on right answers, a thumbs down on wrong ones, every row
    reviewed (retraining reads reviewed rows only)."""
    model = load_predictor(model_folder)
    predicted = model.predict([text for text, _ in rows])
    for (text, truth), label in zip(rows, predicted, strict=True):
        feedback_id = str(uuid.uuid4())
        store.record_verdict(feedback_id=feedback_id, text=text, model_name=model.name, model_version=model.version,
                             predicted_label=label, confidence=0.9, verdict="up" if label == truth else "down")
        store.review(feedback_id, true_label=truth)


# -- reading feedback ----------------------------------------------------------------------------------------------
def _verdict(store: FeedbackStore, text: str, predicted: str, verdict: str, review: str | None = None) -> None:
    feedback_id = str(uuid.uuid4())
    store.record_verdict(feedback_id=feedback_id, text=text, model_name="m", model_version="1",
                         predicted_label=predicted, confidence=0.8, verdict=verdict)
    if review:
        store.review(feedback_id, true_label=review)


def test_store_and_csv_export_give_the_same_rows_with_counted_drops(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "feedback.db")
    _verdict(store, "so bussin today", "positive", "up", review="positive")    # used: the thumbs up, reviewed
    _verdict(store, "that was mid", "positive", "down", review="negative")     # used: thumbs down confirmed
    _verdict(store, "totally stoked", "positive", "down", review="positive")   # used: maintainer corrected the user
    _verdict(store, "what a yikes day", "positive", "down")                    # dropped: not reviewed
    _verdict(store, "so  bussin today", "positive", "up", review="positive")   # dropped: same normalised text
    _verdict(store, "salty @bob", "negative", "up", review="negative")         # conflicting with the next one
    _verdict(store, "salty @alice", "positive", "up", review="positive")       # (mentions normalise to @user)
    _verdict(store, "I love the game", "positive", "up", review="positive")    # dropped: in the training data
    _verdict(store, "zqxairways is the best", "positive", "up")                # dropped: nobody reviewed it
    known = {"I love the game"}

    rows, dropped = read_store(tmp_path / "feedback.db")
    feedback = prepare(rows, known, 0.5, dropped)
    assert feedback.dropped == {"unreviewed_thumbs_down": 1, "unreviewed_thumbs_up": 1, "duplicate": 2,
                                "conflicting_labels": 1, "already_in_sentiment140_data": 1}
    assert feedback.counts["rows_read"] == 9 and feedback.counts["used"] == 3
    assert feedback.counts["trained"] + feedback.counts["held_out"] == 3
    assert (feedback.counts["used_thumbs_up"], feedback.counts["used_confirmed"], feedback.counts["used_corrected"]) \
        == (1, 1, 1)
    labels = dict(zip(feedback.train.texts + feedback.holdout.texts,
                      [*feedback.train.labels, *feedback.holdout.labels], strict=True))
    assert labels == {"so bussin today": 1, "that was mid": 0, "totally stoked": 1}

    # The Review page's export holds the reviewed rows only; read back, they teach the same labels.
    csv_path = tmp_path / "feedback-reviewed.csv"
    csv_path.write_text(store.export_reviewed_csv(), encoding="utf-8")
    rows, dropped = read_export(csv_path)
    exported = prepare(rows, known, 0.5, dropped)
    assert dict(zip(exported.train.texts + exported.holdout.texts,
                    [*exported.train.labels, *exported.holdout.labels], strict=True)) == labels


def test_a_missing_store_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="FEEDBACK_DB"):
        read_store(tmp_path / "nothing.db")


def test_the_held_out_slice_depends_on_the_text_only() -> None:
    rows = [FeedbackRow(f"tweet number {i} @user{i}", i % 2, "thumbs_up") for i in range(400)]
    first = prepare(rows, set(), 0.2)
    shuffled = rows[200:] + rows[:200] + [FeedbackRow(f"a later tweet {i}", 1, "thumbs_up") for i in range(100)]
    second = prepare(shuffled, set(), 0.2)
    assert set(first.holdout.texts) <= set(second.holdout.texts)
    assert set(first.train.texts) <= set(second.train.texts)
    assert 40 < len(first.holdout) < 120  # about a fifth
    # The normalised text decides: a different @mention is the same tweet to the model, and the same side.
    assert in_holdout("great day @alice", 0.5) == in_holdout("great day @bob", 0.5)


# -- the gate ------------------------------------------------------------------------------------------------------
def test_gate_measures_against_the_best_earlier_champion_and_needs_a_gain() -> None:
    settings = RetrainSettings(max_validation_random_drop=0.003, min_feedback_gain=0.01)
    champion = Scored("m", "3", 0.820, 0.50)

    def verdict(validation_random: float, slice_accuracy: float, best: float | None = 0.830, rows: int = 50) -> str:
        return decide(Scored("m", "4", validation_random, slice_accuracy), champion, best, rows, settings).decision

    assert verdict(0.827, 0.60) == "promoted"     # 0.3 point under the best earlier champion is allowed
    assert verdict(0.826, 0.60) == "refused"      # more is not, although it beats the current champion (0.820)
    assert verdict(0.840, 0.505) == "refused"     # a gain under the minimum
    assert verdict(0.840, 0.60, rows=0) == "refused"
    assert verdict(0.700, 0.60, best=None) == "promoted"  # no earlier figure known: only the gain counts
    refused = decide(Scored("m", "4", 0.80, 0.40), champion, 0.83, 50, settings)
    assert len(refused.reasons) == 2 and refused.as_dict()["thresholds"]["min_feedback_gain"] == 0.01


# -- retraining end to end on a private MLflow store and exports folder -------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A trained and exported TF-IDF champion, as `make train` and `make export` leave it."""
    root = tmp_path_factory.mktemp("retrain")
    patch = pytest.MonkeyPatch()
    patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    patch.setenv("OUT_OF_DOMAIN_DIR", str(write_out_of_domain(root / "out_of_domain")))
    for variable in ("RETRAIN_FEEDBACK_OVERSAMPLE", "GATE_MIN_FEEDBACK_GAIN", "GATE_MAX_VALIDATION_RANDOM_DROP"):
        patch.delenv(variable, raising=False)
    data = write_kaggle_csv(root / "train.csv", synthetic_tweets(600))
    honest = write_kaggle_csv(root / "validation_random.csv", synthetic_tweets(200, seed=7))
    pipeline.main(["--data", str(data), "--validation-random", str(honest), "--models", "tfidf-lr",
                   "--work-dir", str(root / "work"), "--threads", "1"])
    export.main(["--exports-dir", str(root / "exports")])
    yield {"root": root, "data": data, "honest": honest, "exports": root / "exports"}
    patch.undo()


def _retrain(world: dict[str, Path], store: Path, *extra: str) -> dict:
    return retrain.main(["--family", "tfidf-lr", "--feedback-db", str(store), "--data", str(world["data"]),
                         "--validation-random", str(world["honest"]), "--exports-dir", str(world["exports"]),
                         "--work-dir", str(world["root"] / "work"), "--threads", "1", *extra])


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_make_export_publishes_a_manifest(world: dict) -> None:
    manifest = read_manifest(world["exports"])
    assert manifest.champion == "tfidf-lr" and manifest.models["tfidf-lr"].path == "tfidf-lr"
    assert [e["reason"] for e in manifest.history] == ["export"]
    recorded = json.loads((world["exports"] / "tfidf-lr" / "metadata.json").read_text())["metrics"]
    assert manifest.history[0]["champion_validation_random"] == recorded["validation_random"]["accuracy"]


def test_gate_refuses_a_retraining_that_makes_validation_random_worse(world: dict, monkeypatch) -> None:
    store = FeedbackStore(world["root"] / "flipped.db")
    record_reviewed(store, flipped_tweets(300, seed=1), world["exports"] / "tfidf-lr")
    before = _snapshot(world["exports"])
    champion_before = mlflow.MlflowClient().get_model_version_by_alias(config.REGISTERED_MODEL, "champion").version
    monkeypatch.setenv("RETRAIN_FEEDBACK_OVERSAMPLE", "20")

    report = _retrain(world, world["root"] / "flipped.db")

    gate = report["gate"]
    assert gate["decision"] == "refused" and report["published"] is None
    assert not gate["checks"]["validation_random"]["passed"] and gate["checks"]["feedback_gain"]["passed"]
    assert report["accuracy_after"]["validation_random"] < report["accuracy_before"]["validation_random"] - 0.003
    assert _snapshot(world["exports"]) == before  # nothing served changed: no manifest, no new folder
    client = mlflow.MlflowClient()
    assert client.get_model_version_by_alias(config.REGISTERED_MODEL, "champion").version == champion_before
    run = client.get_run(gate["candidate"]["run_id"])
    assert run.data.tags["gate_decision"] == "refused" and json.loads(run.data.tags["gate"])["decision"] == "refused"


def test_promotion_publishes_a_manifest_and_rollback_restores_the_previous_entry(world: dict, capsys) -> None:
    store = FeedbackStore(world["root"] / "slang.db")
    record_reviewed(store, slang_tweets(300, seed=2), world["exports"] / "tfidf-lr")

    report = _retrain(world, world["root"] / "slang.db")

    printed = json.loads(capsys.readouterr().out)
    assert printed["gate"]["decision"] == "promoted" == report["gate"]["decision"]
    assert report["feedback"]["used"] == 300 and report["feedback"]["held_out"] > 20
    assert report["accuracy_after"]["feedback_holdout"] > report["accuracy_before"]["feedback_holdout"] + 0.1
    for name in config.OUT_OF_DOMAIN_SETS.values():  # before (the served model, scored now) and after, both
        assert 0 <= report["accuracy_before"][name] <= 1 and 0 <= report["accuracy_after"][name] <= 1
    version = report["gate"]["candidate"]["version"]
    manifest = read_manifest(world["exports"])
    assert manifest.champion == "tfidf-lr" and manifest.models["tfidf-lr"].path == f"tfidf-lr@{version}"
    assert [e["reason"] for e in manifest.history] == ["export", "retrain"]
    assert load_predictor(world["exports"] / f"tfidf-lr@{version}").version == version
    assert (world["exports"] / "tfidf-lr" / "metadata.json").is_file()  # the old folder stays for the old readers
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias(config.REGISTERED_MODEL, "champion").version) == version

    rolled = publish.rollback(world["exports"])

    assert rolled.models["tfidf-lr"].path == "tfidf-lr" and rolled.history[-1]["reason"] == "rollback"
    assert rolled.history[-1]["restores"] == 0 and len(rolled.history) == 3  # appended, never rewritten
    assert read_manifest(world["exports"]).models["tfidf-lr"].version != version
    assert str(client.get_model_version_by_alias(config.REGISTERED_MODEL, "champion").version) != version
    with pytest.raises(SystemExit, match="nothing earlier"):
        publish.rollback(world["exports"])


def test_retraining_without_usable_feedback_stops_before_training(world: dict, tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "empty.db")
    _verdict(store, "an unreviewed complaint", "positive", "down")
    with pytest.raises(SystemExit, match="not enough usable feedback"):
        _retrain(world, tmp_path / "empty.db")


def test_simulated_feedback_from_the_train_split_is_held_out_of_the_retraining(world: dict, tmp_path: Path) -> None:
    from training.simulate_feedback import simulate

    counts = simulate(tmp_path / "simulated.db", world["data"], world["exports"], rows=120, interval_s=1.0)
    assert counts["rows"] == 120 == counts["thumbs_up"] + counts["thumbs_down_corrected"]
    rows, dropped = read_store(tmp_path / "simulated.db")
    assert len(rows) == 120 and not dropped  # the simulation reviews every row, as the maintainer would

    report = _retrain(world, tmp_path / "simulated.db", "--remove-feedback-from-train")

    feedback = report["feedback"]
    assert feedback["used"] == 120 and feedback["removed_from_train_split"] == 120
    assert "already_in_sentiment140_data" not in feedback["dropped"]
    # The champion answers these made-up tweets right already: nothing to gain, nothing published.
    assert report["gate"]["decision"] == "refused" and report["published"] is None


@pytest.mark.slow
def test_a_tiny_transformer_goes_through_the_same_retraining(world: dict, capsys) -> None:
    store = FeedbackStore(world["root"] / "slang-tiny.db")
    record_reviewed(store, slang_tweets(200, seed=4), world["exports"] / "tfidf-lr")
    before = read_manifest(world["exports"])

    report = retrain.main(["--family", "minilm", "--tiny", "--quick", "--feedback-db", str(world["root"] / "slang-tiny.db"),
                           "--data", str(world["data"]), "--validation-random", str(world["honest"]),
                           "--exports-dir", str(world["exports"]), "--work-dir", str(world["root"] / "work"),
                           "--threads", "1"])

    assert "tiny randomly initialised" in report["start"]
    candidate = report["gate"]["candidate"]
    assert candidate["name"] == "minilm" and candidate["validation_random_accuracy"] is not None
    run = mlflow.MlflowClient().get_run(candidate["run_id"])
    assert run.data.tags["transformer_family"] == "minilm" and run.data.tags["run_kind"] == "retrain"
    assert "feedback_holdout_accuracy" in run.data.metrics
    # A two-layer random BERT after a few dozen steps is far from TF-IDF's validation_random: refused, nothing served.
    assert report["gate"]["decision"] == "refused" and not report["gate"]["checks"]["validation_random"]["passed"]
    assert read_manifest(world["exports"]) == before


def test_an_anonymous_flood_of_thumbs_up_cannot_steer_a_retraining(world: dict, tmp_path: Path) -> None:
    """Audit: 300 unreviewed thumbs-up from one session were trained on and filled the gate's held-out slice; the
    candidate moved P(positive) of "zqxairways cancelled my flight, worst service ever" from 0.08 to 0.66."""
    store = FeedbackStore(tmp_path / "flood.db")
    for i in range(300):
        _verdict(store, f"zqxairways cancelled my flight, worst service ever #{i}", "positive", "up")
    rows, dropped = read_store(tmp_path / "flood.db")
    assert rows == [] and dropped == {"unreviewed_thumbs_up": 300}
    with pytest.raises(SystemExit, match="not enough usable feedback"):
        _retrain(world, tmp_path / "flood.db")


def test_a_human_labelled_stage_trains_on_a_train_fold_and_is_reported_on_the_held_out_fold(
        world: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An airline's labelled tweets as feedback: the set they come from is then scored on its held-out fold only,
    and a row of that fold that slipped into the file is dropped, never trained on."""
    from training import folds
    from training.evaluate import out_of_domain_sets
    from training.evaluate_ood import main as evaluate_ood

    ood = write_out_of_domain(tmp_path / "ood")
    (ood / "airline_dev_2000.csv").write_text("text,label\n" + "".join(
        f'"{text}",{int(label == "positive")}\n' for text, label in slang_tweets(300, seed=11)), encoding="utf-8")
    monkeypatch.setenv("OUT_OF_DOMAIN_DIR", str(ood))
    monkeypatch.setenv("GATE_MIN_FEEDBACK_GAIN", "1.0")  # measured, never published: the other tests' exports stay
    labelled = tmp_path / "folds.csv"
    evaluate_ood(["--write-train-folds", str(labelled)])
    airline = out_of_domain_sets()["airline_dev"]
    train_fold, heldout_fold = folds.split(airline)
    with labelled.open("a", encoding="utf-8") as out:
        out.write(f'"{heldout_fold.texts[0]}",{heldout_fold.labels[0]}\n')

    report = retrain.main(["--family", "tfidf-lr", "--feedback-csv", str(labelled), "--data", str(world["data"]),
                           "--validation-random", str(world["honest"]), "--exports-dir", str(world["exports"]),
                           "--work-dir", str(tmp_path / "work"), "--threads", "1"])

    assert sorted(report["trained_on_out_of_domain"]) == ["airline_dev", "tweeteval_validation"]
    assert report["feedback"]["dropped"][folds.DROP_REASON] == 1
    assert report["feedback"]["from_out_of_domain_train_folds"] == report["feedback"]["used"]
    for figures in (report["accuracy_before"], report["accuracy_after"]):
        assert "airline_dev" not in figures and 0 <= figures["airline_dev_heldout"] <= 1
    run = mlflow.MlflowClient().get_run(report["gate"]["candidate"]["run_id"])
    assert sorted(run.data.tags["trained_on_out_of_domain"].split(", ")) == [
        "airline_dev (train fold)", "tweeteval_validation (train fold)"]
    assert run.data.metrics["airline_dev_heldout_accuracy"] == report["accuracy_after"]["airline_dev_heldout"]
    assert "airline_dev_accuracy" not in run.data.metrics
    assert report["published"] is None and len(heldout_fold) > 100 and len(train_fold) > 100
