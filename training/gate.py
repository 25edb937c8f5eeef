"""The promotion gate of a retraining: may the new version become ``champion``?

Both checks must hold, each threshold a setting (``training.config.RetrainSettings``):

- its ``validation_random`` accuracy is not more than ``max_validation_random_drop`` below the best
  ``validation_random`` accuracy of any earlier version of its own family (``training.retrain`` passes it; a family
  never served is held to the best earlier champion's). Measuring against that fixed best, not against the version
  in force, stops the score from slipping a little at every retraining; measuring within the family lets the fast
  model improve although a slower family holds the best figure;
- its accuracy on the held-out feedback slice beats the version in force of its family (else the champion) on the
  same rows by at least ``min_feedback_gain``. An empty slice measures nothing, so it refuses.

The champion rule, not the gate, then decides which served model is the default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from training.config import RetrainSettings

PROMOTED = "promoted"
REFUSED = "refused"


@dataclass(frozen=True)
class Scored:
    """A model version with the two figures the gate reads."""

    name: str
    version: str
    validation_random_accuracy: float | None
    feedback_slice_accuracy: float | None
    run_id: str | None = None


@dataclass(frozen=True)
class GateDecision:
    """The decision with everything it was made from (printed as JSON and logged as an MLflow tag)."""

    decision: str
    candidate: Scored
    champion: Scored
    best_earlier_validation_random: float | None
    feedback_slice_rows: int
    thresholds: dict[str, float]
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    @property
    def promoted(self) -> bool:
        return self.decision == PROMOTED

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(candidate: Scored, champion: Scored, best_earlier: float | None, slice_rows: int,
           settings: RetrainSettings) -> GateDecision:
    """Apply both checks; ``best_earlier`` is the best earlier validation_random to hold to (None: none known)."""
    reasons = []
    floor = None if best_earlier is None else best_earlier - settings.max_validation_random_drop
    accuracy = candidate.validation_random_accuracy
    validation_ok = accuracy is not None and (floor is None or accuracy >= floor - 1e-12)
    if accuracy is None:
        reasons.append("the new version has no validation_random accuracy")
    elif not validation_ok:
        reasons.append(f"validation_random {accuracy:.4f} is below {floor:.4f} (best earlier version "
                       f"{best_earlier:.4f} minus {settings.max_validation_random_drop:g})")
    gain = None
    if slice_rows and candidate.feedback_slice_accuracy is not None and champion.feedback_slice_accuracy is not None:
        gain = candidate.feedback_slice_accuracy - champion.feedback_slice_accuracy
    gain_ok = gain is not None and gain >= settings.min_feedback_gain - 1e-12
    if not slice_rows:
        reasons.append("the held-out feedback slice is empty: no gain can be measured (give more feedback)")
    elif not gain_ok:
        reasons.append(f"feedback-slice accuracy gain {gain:+.4f} is below the minimum {settings.min_feedback_gain:g}")
    checks = {
        "validation_random": {"passed": validation_ok, "value": accuracy, "floor": floor},
        "feedback_gain": {"passed": gain_ok, "gain": gain, "minimum": settings.min_feedback_gain},
    }
    return GateDecision(PROMOTED if validation_ok and gain_ok else REFUSED, candidate, champion, best_earlier,
                        slice_rows, {"max_validation_random_drop": settings.max_validation_random_drop,
                                     "min_feedback_gain": settings.min_feedback_gain}, checks, reasons)
