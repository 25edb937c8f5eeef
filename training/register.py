"""Registry aliases: each model name points at its latest version; ``champion`` at the best one.

The champion is chosen by :func:`sentiment.champion.pick_champion`, the one rule that the API and the UI use too:
the highest accuracy on ``validation_random_4683.csv`` (the honest in-domain set: a random sample of the full
1.6M file, disjoint from the training data), ties broken by the lower one-tweet latency.
"""

from __future__ import annotations

import argparse
import logging

from mlflow.tracking import MlflowClient

from sentiment.champion import Candidate, pick_champion
from training import config
from training.tracking import setup

logger = logging.getLogger(__name__)

CHAMPION_METRIC = f"{config.VALIDATION_RANDOM_SET}_accuracy"
LATENCY_METRIC = f"{config.VALIDATION_RANDOM_SET}_latency_p50_ms"


def aliased_versions(client: MlflowClient) -> dict[str, object]:
    """Model name alias → model version, for every alias except ``champion``."""
    model = client.get_registered_model(config.REGISTERED_MODEL)
    return {alias: client.get_model_version(config.REGISTERED_MODEL, version)
            for alias, version in model.aliases.items() if alias != config.CHAMPION_ALIAS}


def run_candidate(client: MlflowClient, name: str, run_id: str) -> Candidate:
    """The champion rule's view of a run: its validation_random accuracy and p50 latency."""
    metrics = client.get_run(run_id).data.metrics
    return Candidate(name, metrics.get(CHAMPION_METRIC), metrics.get(LATENCY_METRIC))


def promote_champion() -> str | None:
    """Point ``champion`` at the best model among the versions that carry a model-name alias."""
    setup()
    client = MlflowClient()
    try:
        candidates = aliased_versions(client)
    except Exception as error:  # noqa: BLE001 - an empty registry has no registered model yet
        logger.warning("no registered model to promote (%s)", error)
        return None
    scored = (run_candidate(client, alias, version.run_id) for alias, version in candidates.items())
    best = pick_champion(candidate for candidate in scored if candidate.accuracy is not None)
    if best is None:
        return None
    version = candidates[best.name].version
    client.set_registered_model_alias(config.REGISTERED_MODEL, config.CHAMPION_ALIAS, version)
    logger.info("champion: %s version %s (%s = %.4f)", best.name, version, CHAMPION_METRIC, best.accuracy)
    return version


def set_champion(client: MlflowClient, version: str, run_id: str | None = None) -> None:
    """Point ``champion`` at ``version`` (a promotion or a rollback), after checking it is the run expected.

    Raises:
        MlflowException: this store has no such version.
        ValueError: the version exists but belongs to another run (exports from another store).
    """
    model_version = client.get_model_version(config.REGISTERED_MODEL, version)
    if run_id and model_version.run_id != run_id:
        raise ValueError(f"version {version} of {config.REGISTERED_MODEL} is run {model_version.run_id}, not {run_id}")
    client.set_registered_model_alias(config.REGISTERED_MODEL, config.CHAMPION_ALIAS, version)
    logger.info("champion: version %s", version)


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    promote_champion()


if __name__ == "__main__":
    main()
