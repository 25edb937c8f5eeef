"""The one champion rule: best validation_random accuracy, ties broken by latency, then by name."""

from __future__ import annotations

from api.champion import Candidate, from_metrics, pick_champion, rank
from api.registry import choose_default


def test_the_most_accurate_model_wins_whatever_its_latency() -> None:
    best = pick_champion([Candidate("fast", 0.80, 0.3), Candidate("accurate", 0.85, 9.0), Candidate("none", None, 0.1)])
    assert best is not None and best.name == "accurate"


def test_a_tie_to_four_decimals_goes_to_the_faster_model_then_by_name() -> None:
    ranked = rank([Candidate("slow", 0.83171, 2.0), Candidate("quick", 0.83168, 0.7), Candidate("a", 0.83170, None)])
    assert [c.name for c in ranked] == ["quick", "slow", "a"]
    assert pick_champion([Candidate("b", 0.8, 1.0), Candidate("a", 0.8, 1.0)]).name == "a"


def test_models_without_the_selection_accuracy_never_win_and_an_empty_field_has_no_champion() -> None:
    assert pick_champion([Candidate("unscored", None, 0.1), Candidate("scored", 0.5, 5.0)]).name == "scored"
    assert pick_champion([]) is None
    assert from_metrics("x", {"validation_random": {"accuracy": float("nan")}}).accuracy is None


def test_the_api_default_follows_the_alias_then_the_rule() -> None:
    meta = {
        "a": {"metrics": {"validation_random": {"accuracy": 0.81, "latency_p50_ms": 2.0}}, "aliases": []},
        "b": {"metrics": {"validation_random": {"accuracy": 0.81, "latency_p50_ms": 0.5}}, "aliases": []},
        "c": {"metrics": {"validation_random": {"accuracy": 0.70}}, "aliases": []},
    }
    assert choose_default(meta, None) == "b"
    meta["c"]["aliases"] = ["champion"]
    assert choose_default(meta, None) == "c"
    assert choose_default(meta, "a") == "a"
