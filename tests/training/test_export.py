"""training.export: metrics nested per evaluation set, as export metadata and run records carry them."""

from __future__ import annotations

from training.export import nested_metrics


def test_every_evaluation_set_gets_its_own_entry_including_out_of_domain_sets_and_their_held_out_folds() -> None:
    flat = {"validation_random_accuracy": 0.83, "validation_accuracy": 0.82, "test_f1_macro": 0.81,
            "tweeteval_validation_accuracy": 0.76, "tweeteval_validation_heldout_accuracy": 0.77,
            "airline_dev_roc_auc": 0.88, "airline_dev_heldout_rows": 1000.0, "train_seconds": 12.5}
    assert nested_metrics(flat) == {
        "validation_random": {"accuracy": 0.83},
        "validation": {"accuracy": 0.82},
        "test": {"f1_macro": 0.81},
        "tweeteval_validation": {"accuracy": 0.76},
        "tweeteval_validation_heldout": {"accuracy": 0.77},
        "airline_dev": {"roc_auc": 0.88},
        "airline_dev_heldout": {"rows": 1000.0},
        "other": {"train_seconds": 12.5},
    }
