"""The one champion rule: best validation_random accuracy, ties broken by latency, then by name."""

from __future__ import annotations

from sentiment.champion import Candidate, from_metrics, pick_champion, rank
from sentiment.registry import choose_default


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


def test_resolve_champion_prefers_the_manifest_then_the_alias_then_the_rule() -> None:
    from sentiment.champion import resolve_champion

    metadata = {"a": {"metrics": {"validation_random": {"accuracy": 0.80}}},
                "b": {"metrics": {"validation_random": {"accuracy": 0.85}}},
                "c": {"aliases": ["c", "champion"], "metrics": {"validation_random": {"accuracy": 0.70}}}}
    assert resolve_champion(metadata, "a") == "a"  # the manifest's champion
    assert resolve_champion(metadata, "gone") == "c"  # not served: the export marked champion
    assert resolve_champion(metadata) == "c"
    assert resolve_champion({k: v for k, v in metadata.items() if k != "c"}, "gone") == "b"  # the rule
    assert resolve_champion({}) is None


def test_the_champion_module_runs_on_a_bare_python() -> None:
    """deploy/docker/test.sh imports it with the system python3, where no project dependency is installed."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    probe = ("import sys; before = set(sys.modules); import sentiment.champion; "
             "new = {m.split('.')[0] for m in set(sys.modules) - before} - {'sentiment'}; "
             "assert new <= set(sys.stdlib_module_names), new")
    done = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(root)!r}); {probe}"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
