"""``make rollback``: the engine's rollback (``sentiment.publish``), then the MLflow registry's alias follows.

Publishing itself (adopt, a promoted version, select, rollback, the history) is ``sentiment.publish``; this entry
adds what needs MLflow: after a rollback, the registry's ``champion`` alias moves back to the restored version.

    python -m training.publish rollback        # make rollback
    python -m training.publish show            # the manifest in force and its history
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from sentiment.exports import ExportError
from sentiment.manifest import Manifest
from sentiment.publish import current
from sentiment.publish import rollback as publish_rollback
from training import config

logger = logging.getLogger(__name__)


def rollback(exports_dir: Path) -> Manifest:
    """Re-publish the history entry before the one in force (:func:`sentiment.publish.rollback`), then move the
    registry's ``champion`` alias to it.

    Raises:
        SystemExit: nothing to roll back to, or a folder of that entry is gone (the message says which).
    """
    try:
        published = publish_rollback(exports_dir)
    except ExportError as error:
        raise SystemExit(f"error: {error}") from error
    _move_registry_champion(published.history[-1])
    return published


def _move_registry_champion(entry: dict[str, Any]) -> None:
    """Point the registry's ``champion`` alias at the restored version, when this MLflow store knows it."""
    from mlflow.tracking import MlflowClient

    from training.register import set_champion

    model = entry["models"][entry["champion"]]
    try:
        set_champion(MlflowClient(), str(model["version"]), entry.get("run_id"))
    except Exception as error:  # noqa: BLE001 - exports may come from another store; serving is what counts
        logger.warning("registry alias %s not moved (%s); the manifest is in force", config.CHAMPION_ALIAS, error)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["rollback", "show"])
    parser.add_argument("--exports-dir", default=None, help="default: EXPORTS_DIR or exports/")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    exports_dir = Path(args.exports_dir) if args.exports_dir else config.exports_dir()
    try:
        manifest = rollback(exports_dir) if args.action == "rollback" else current(exports_dir)
    except ExportError as error:
        raise SystemExit(f"error: {error}") from error
    json.dump(manifest.to_dict(), sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
