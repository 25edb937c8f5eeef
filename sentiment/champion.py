"""The champion rule and the champion lookup, in one place: training, retraining, the API's default model, the UI
and ``deploy/docker/test.sh`` all use them.

The champion is the model with the best accuracy on ``validation_random`` (a random sample of the full
Sentiment140 file, disjoint from the training data: the honest in-domain number). Accuracies equal to four
decimals (one tweet in 4,683 is 0.0002) count as a tie, broken by the lower one-tweet p50 latency, then by name.
Models with no ``validation_random`` accuracy never win over one that has it.

:func:`resolve_champion` is the lookup around the rule: the manifest's champion, else the rule. This module
imports only the standard library, so a bare ``python3`` can use it (``deploy/docker/test.sh``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

SELECTION_SET = "validation_random"
# The MLflow alias, and the export metadata's mark, of the champion.
CHAMPION_ALIAS = "champion"
TIE_DECIMALS = 4


@dataclass(frozen=True)
class Candidate:
    """A model that may become champion, with the two figures the rule reads."""

    name: str
    accuracy: float | None
    latency_p50_ms: float | None = None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def from_metrics(name: str, metrics: Mapping[str, Any]) -> Candidate:
    """A candidate from an export's ``metrics`` (``{"validation_random": {"accuracy": …, "latency_p50_ms": …}}``)."""
    figures = metrics.get(SELECTION_SET) or {}
    return Candidate(name, _number(figures.get("accuracy")), _number(figures.get("latency_p50_ms")))


def _key(candidate: Candidate) -> tuple[int, float, float, str]:
    accuracy = candidate.accuracy
    latency = candidate.latency_p50_ms
    return (0 if accuracy is not None else 1,
            -round(accuracy, TIE_DECIMALS) if accuracy is not None else 0.0,
            latency if latency is not None else math.inf,
            candidate.name)


def rank(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Candidates from champion down."""
    return sorted(candidates, key=_key)


def pick_champion(candidates: Iterable[Candidate]) -> Candidate | None:
    """The champion among ``candidates`` (None when there is none)."""
    ranked = rank(candidates)
    return ranked[0] if ranked else None


def resolve_champion(metadata: Mapping[str, Mapping[str, Any]], manifest_champion: str | None = None) -> str | None:
    """The champion among the models of ``metadata``: the manifest's, else the rule.

    Args:
        metadata: model name → its export's ``metadata.json``.
        manifest_champion: ``manifest.json``'s champion, when there is a manifest.

    Returns:
        ``manifest_champion`` when it is among the models; else the rule among the exports marked with the
        ``champion`` alias (normally one), else among all of them; None when there is no model.
    """
    if manifest_champion is not None and manifest_champion in metadata:
        return manifest_champion
    aliased = [name for name, meta in metadata.items() if CHAMPION_ALIAS in meta.get("aliases", [])]
    best = pick_champion(from_metrics(name, metadata[name].get("metrics", {})) for name in aliased or metadata)
    return best.name if best else None
