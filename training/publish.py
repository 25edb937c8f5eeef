"""Publishing to ``EXPORTS_DIR`` through its manifest: promotions, the history, rollback.

``EXPORTS_DIR/manifest.json`` names the served versions and the champion (``api.manifest`` reads, validates and
atomically replaces it). A promoted version goes into a new folder ``<name>@<version>``, fully written and
verified before the manifest names it, so a running service never reads a half-written model. Every publication
appends an entry to the manifest's ``history`` (append-only); a rollback re-publishes the entry before the one in
force, so successive rollbacks walk back through the history.

    python -m training.publish rollback        # make rollback
    python -m training.publish show            # the manifest in force and its history
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from api.exports import METADATA_FILE, ExportError
from api.manifest import Manifest, ModelEntry, from_folders, publish, read_manifest
from api.predictor import load_predictor
from training import config

logger = logging.getLogger(__name__)

RETRAIN, ROLLBACK, EXPORT = "retrain", "rollback", "export"


def current(exports_dir: Path) -> Manifest:
    """The manifest in force; without one, the folders as the services serve them (champion by their rule)."""
    return read_manifest(exports_dir) or from_folders(exports_dir)


def champion_accuracy(exports_dir: Path, champion: str, models: Mapping[str, Any]) -> float | None:
    """validation_random accuracy of ``champion`` from its export's metadata (None when unknown or gone)."""
    model = models.get(champion)
    path = model and exports_dir / (model.path if isinstance(model, ModelEntry) else model["path"]) / METADATA_FILE
    if not path or not path.is_file():
        return None
    return json.loads(path.read_text()).get("metrics", {}).get(config.VALIDATION_RANDOM_SET, {}).get("accuracy")


def best_champion_accuracy(exports_dir: Path, manifest: Manifest) -> float | None:
    """The best validation_random accuracy of any champion in the history (and of the champion in force)."""
    figures = [champion_accuracy(exports_dir, manifest.champion, manifest.models)]
    for entry in manifest.history:
        recorded = entry.get("champion_validation_random")
        figures.append(recorded if recorded is not None
                       else champion_accuracy(exports_dir, entry["champion"], entry.get("models", {})))
    figures = [f for f in figures if isinstance(f, int | float)]
    return max(figures) if figures else None


def publish_state(exports_dir: Path, champion: str, models: Mapping[str, ModelEntry], reason: str,
                  run_id: str | None = None, **extra: Any) -> Manifest:
    """Publish ``models`` and ``champion``; the history entry records the champion's validation_random accuracy."""
    manifest = publish(exports_dir, champion, models, reason, run_id,
                       extra={"champion_validation_random": champion_accuracy(exports_dir, champion, models), **extra})
    logger.info("published (%s): champion %s, models %s", reason, champion, {n: m.version for n, m in models.items()})
    return manifest


def publish_version(exports_dir: Path, bundle: Path, *, name: str, version: str, run_id: str | None,
                    metadata: dict[str, Any]) -> Manifest:
    """Copy a promoted bundle into ``<name>@<version>``, verify it loads, then make it the champion in the manifest.

    Args:
        exports_dir: the served folder.
        bundle: the new version's export bundle (its fp32 graph, which is not served, stays behind).
        name, version, run_id: the model name, its registry version and MLflow run.
        metadata: fields that replace the bundle's metadata (metrics, mlflow, aliases).

    Returns:
        The manifest now in force.
    """
    from training.bundle import FP32_FILE, write_metadata  # torch and onnx: not needed by a rollback

    manifest = current(exports_dir)
    folder = exports_dir / f"{name}@{version}"
    if folder.exists():
        if any(m.path == folder.name for m in manifest.models.values()):
            raise SystemExit(f"error: {folder} is served already; registry version {version} cannot be republished")
        shutil.rmtree(folder)  # left over by an interrupted publication that no manifest names
    staging = exports_dir / f".{folder.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(bundle, staging, ignore=shutil.ignore_patterns(FP32_FILE))
    meta = json.loads((staging / METADATA_FILE).read_text())
    files = meta.pop("files", {})
    write_metadata(staging, {**meta, **metadata, "version": str(version)})
    meta = json.loads((staging / METADATA_FILE).read_text())
    meta["files"] = {**{k: v for k, v in files.items() if k == FP32_FILE}, **meta["files"]}
    (staging / METADATA_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    staging.rename(folder)
    load_predictor(folder)  # refuse to publish what the service could not load
    if read_manifest(exports_dir) is None:
        # The state served without a manifest becomes the first history entry, so this promotion can be rolled back.
        publish_state(exports_dir, manifest.champion, manifest.models, EXPORT, None)
    models = {**manifest.models, name: ModelEntry(folder.name, str(version))}
    return publish_state(exports_dir, name, models, RETRAIN, run_id)


def rollback(exports_dir: Path) -> Manifest:
    """Re-publish the history entry before the one in force (reason ``rollback``)."""
    manifest = read_manifest(exports_dir)
    if manifest is None:
        raise SystemExit(f"error: {exports_dir} has no manifest.json: nothing was published to roll back")
    history = manifest.history
    in_force = history[-1].get("restores", len(history) - 1)
    if in_force < 1:
        raise SystemExit(f"error: the entry in force ({in_force}, {history[in_force]['reason']}) is the first of the "
                         "history; there is nothing earlier to roll back to")
    target = history[in_force - 1]
    missing = [m["path"] for m in target["models"].values() if not (exports_dir / m["path"] / METADATA_FILE).is_file()]
    if missing:
        raise SystemExit(f"error: cannot roll back to history entry {in_force - 1}: {missing} no longer exist in "
                         f"{exports_dir}")
    models = {name: ModelEntry(m["path"], str(m["version"])) for name, m in target["models"].items()}
    published = publish_state(exports_dir, target["champion"], models, ROLLBACK, target.get("run_id"),
                         restores=in_force - 1)
    _move_registry_champion(target)
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
