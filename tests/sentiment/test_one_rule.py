"""Each rule lives in one engine function that every caller uses; a second copy outside the engine fails here.

- probabilities to a label: ``sentiment.scoring.to_labels`` / ``positive_mask`` (no ``argmax``, no 0.5 elsewhere);
- the text check: ``sentiment.scoring.check_text`` (no ``has_visible_character`` or text-length rule elsewhere);
- the champion: ``sentiment.champion.resolve_champion`` (no ``pick_champion`` outside the engine, except where
  training ranks the MLflow registry's versions);
- the verdict-to-label rule and the feedback rows: ``sentiment.feedback`` (no SQL on the feedback table elsewhere).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE_THE_ENGINE = ("api", "app", "training", "batch", "benchmarks")
# Training ranks registry versions (not served exports) with the rule itself: that is the rule, not a lookup.
RANKS_REGISTRY_VERSIONS = {"training/register.py", "training/export.py"}


def _modules() -> Iterator[tuple[str, ast.AST]]:
    for package in OUTSIDE_THE_ENGINE:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(encoding="utf-8"))


def _called(node: ast.AST) -> str | None:
    if isinstance(node, ast.Call):
        func = node.func
        return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    return None


def _copies(tree: ast.AST, relative: str) -> list[str]:
    found = []
    for node in ast.walk(tree):
        name = _called(node)
        if name == "argmax":
            found.append(f"{relative}:{node.lineno} argmax: use sentiment.scoring.to_labels")
        if name in {"pick_champion", "rank"} and relative not in RANKS_REGISTRY_VERSIONS:
            found.append(f"{relative}:{node.lineno} {name}: use sentiment.champion.resolve_champion")
        if name == "has_visible_character":
            found.append(f"{relative}:{node.lineno} has_visible_character: use sentiment.scoring.check_text")
        sides = (node.left, *node.comparators) if isinstance(node, ast.Compare) else ()
        coin_flip = any(_called(side) == "random" for side in sides)
        if not coin_flip and any(isinstance(side, ast.Constant) and side.value == 0.5 for side in sides):
            found.append(f"{relative}:{node.lineno} a comparison with 0.5: use sentiment.scoring.to_labels")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "FROM feedback" in node.value:
            found.append(f"{relative}:{node.lineno} SQL on the feedback table: use sentiment.feedback")
    return found


def test_no_rule_is_copied_outside_the_engine() -> None:
    copies = [copy for relative, tree in _modules() for copy in _copies(tree, relative)]
    assert copies == []


@pytest.mark.parametrize("source", [
    "label = LABELS[int(proba.argmax())]",
    "label = 'positive' if p >= 0.5 else 'negative'",
    "positive = proba[:, 1] > 0.5",
    "best = pick_champion(candidates)",
    "ok = has_visible_character(text)",
    "rows = conn.execute('SELECT text FROM feedback')",
])
def test_the_check_catches_a_copy(source: str) -> None:
    assert _copies(ast.parse(source), "app/example.py")
