"""Export registered models to ``exports/<name>/`` and the runs behind them to ``exports/runs/``.

    python -m training.export                     # every model alias, only where the model improved
    python -m training.export --models minilm --force

A model's files are replaced only when its ``validation_random`` accuracy beats the committed export's
(``--force`` overrides); the metadata of every export is refreshed (registry version, aliases, metrics), and
``manifest.json`` is published naming the exported folders (``sentiment.publish``).
Run records carry params, metrics, tags and the chart artifacts, never tweet text.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from sentiment.champion import from_metrics, pick_champion, resolve_champion
from sentiment.exports import METADATA_FILE, read_metadata, write_metadata
from sentiment.manifest import ModelEntry, from_folders, read_manifest
from sentiment.publish import publish_state
from training import config, folds
from training.register import CHAMPION_METRIC, aliased_versions, run_candidate
from training.tracking import setup

logger = logging.getLogger(__name__)

RUNS_DIR = "runs"
# Chart artifacts copied into run records; the misclassified samples (tweet text) are deliberately left out.
RECORD_ARTIFACTS = ("confusion_matrix.json", "roc_curve.json", "classification_report.json")


def nested_metrics(flat: dict[str, float]) -> dict[str, dict[str, float]]:
    """``{"test_accuracy": x}`` → ``{"test": {"accuracy": x}}`` for the known evaluation sets."""
    out: dict[str, dict[str, float]] = {}
    ood = config.OUT_OF_DOMAIN_SETS.values()
    names = (config.VALIDATION_RANDOM_SET, config.TEST_SET, "validation", *ood, *map(folds.heldout_name, ood))
    # Longest first: "validation_random_…" also starts with "validation_", "<set>_heldout_…" with "<set>_".
    names = sorted(names, key=len, reverse=True)
    for key, value in flat.items():
        for set_name in names:
            if key.startswith(set_name + "_"):
                out.setdefault(set_name, {})[key[len(set_name) + 1:]] = value
                break
        else:
            out.setdefault("other", {})[key] = value
    return out


def run_record(client: MlflowClient, run_id: str) -> dict[str, Any]:
    """Everything the model comparison page needs from one run, as plain JSON."""
    run = client.get_run(run_id)
    history = {}
    for key in run.data.metrics:
        points = client.get_metric_history(run_id, key)
        if len(points) > 1:
            history[key] = [[p.step, p.value, p.timestamp] for p in points]
    artifacts = {}
    with tempfile.TemporaryDirectory() as tmp:
        for entry in client.list_artifacts(run_id, "eval"):
            for item in client.list_artifacts(run_id, entry.path):
                if Path(item.path).name in RECORD_ARTIFACTS:
                    local = client.download_artifacts(run_id, item.path, tmp)
                    artifacts[item.path] = json.loads(Path(local).read_text())
    return {"run_id": run_id, "run_name": run.info.run_name, "experiment": config.EXPERIMENT_NAME,
            "start_time": run.info.start_time, "end_time": run.info.end_time, "status": run.info.status,
            "params": dict(run.data.params), "tags": {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")},
            "metrics": dict(run.data.metrics), "metric_history": history, "artifacts": artifacts}


def _current_accuracy(folder: Path) -> float | None:
    path = folder / METADATA_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text()).get("metrics", {}).get(config.VALIDATION_RANDOM_SET, {}).get("accuracy")


def export_version(client: MlflowClient, name: str, version: Any, root: Path, *, aliases: list[str],
                   force: bool) -> bool:
    """Copy one registered version's bundle to ``root/name`` (when improved) and refresh its metadata."""
    run = client.get_run(version.run_id)
    new_accuracy = run.data.metrics.get(CHAMPION_METRIC)
    target = root / name
    current = _current_accuracy(target)
    replace = force or current is None or (new_accuracy is not None and new_accuracy > current)
    if replace:
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{config.REGISTERED_MODEL}/{version.version}", dst_path=tmp))
            bundles = [p for p in (local / "artifacts").iterdir() if (p / METADATA_FILE).exists()]
            if len(bundles) != 1:
                raise SystemExit(f"version {version.version} of {config.REGISTERED_MODEL} holds no export bundle")
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(bundles[0], target)
        logger.info("%s: exported version %s (%s %.4f, was %s)", name, version.version, CHAMPION_METRIC,
                    new_accuracy or float("nan"), current)
    else:
        logger.info("%s: version %s (%.4f) does not beat the export (%.4f); files kept", name, version.version,
                    new_accuracy or float("nan"), current)
    meta = json.loads((target / METADATA_FILE).read_text())
    if replace:
        meta.update({"version": str(version.version), "metrics": nested_metrics(dict(run.data.metrics)),
                     "mlflow": {"run_id": version.run_id, "registered_model": config.REGISTERED_MODEL,
                                "model_version": str(version.version), "experiment": config.EXPERIMENT_NAME}})
    same_version = meta.get("version") == str(version.version)
    meta["aliases"] = aliases if same_version else [a for a in meta.get("aliases", []) if a != config.CHAMPION_ALIAS]
    meta.pop("files", None)
    write_metadata(target, meta)
    return replace


def write_run_records(client: MlflowClient, root: Path) -> None:
    """Rewrite ``exports/runs/`` with the runs of the current exports and the latest lexicon baseline."""
    runs_dir = root / RUNS_DIR
    runs_dir.mkdir(parents=True, exist_ok=True)
    wanted = {json.loads(m.read_text()).get("mlflow", {}).get("run_id") for m in root.glob(f"*/{METADATA_FILE}")}
    baseline = mlflow.search_runs(experiment_names=[config.EXPERIMENT_NAME], output_format="list", max_results=1,
                                  filter_string="tags.model_family = 'lexicon'", order_by=["start_time DESC"])
    wanted |= {r.info.run_id for r in baseline}
    if not baseline:  # a store without a lexicon run (e.g. one that trained only mpnet) keeps the committed one
        wanted |= {path.stem for path in runs_dir.glob("*.json")
                   if json.loads(path.read_text()).get("tags", {}).get("model_family") == "lexicon"}
    wanted.discard(None)
    for run_id in sorted(wanted):
        try:
            record = run_record(client, run_id)
        except mlflow.exceptions.MlflowException:
            logger.info("run %s is not in this store; its record is kept as committed", run_id)
            continue
        (runs_dir / f"{run_id}.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    for stale in runs_dir.glob("*.json"):
        if stale.stem not in wanted:
            stale.unlink()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="comma-separated model names (default: every alias)")
    parser.add_argument("--force", action="store_true", help="replace files even when the model did not improve")
    parser.add_argument("--exports-dir", default=None, help="default: EXPORTS_DIR or exports/")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    setup()
    client = MlflowClient()
    root = Path(args.exports_dir) if args.exports_dir else config.exports_dir()
    root.mkdir(parents=True, exist_ok=True)
    try:
        versions = aliased_versions(client)
    except mlflow.exceptions.MlflowException as error:
        raise SystemExit(f"error: nothing registered in {config.tracking_uri()} ({error}); run `make train` first") from error
    champion = client.get_registered_model(config.REGISTERED_MODEL).aliases.get(config.CHAMPION_ALIAS)
    names = [m.strip() for m in args.models.split(",")] if args.models else sorted(versions)
    unknown = [name for name in names if name not in versions]
    if unknown:
        raise SystemExit(f"error: no registered version has the alias {unknown[0]!r}; known: {sorted(versions)}")
    if not served_champion_stands(client, root, versions, champion):
        champion = None
    for name in names:
        version = versions[name]
        aliases = [name] + ([config.CHAMPION_ALIAS] if str(version.version) == str(champion) else [])
        export_version(client, name, version, root, aliases=aliases, force=args.force)
    if any(str(versions[name].version) == str(champion) for name in names):
        drop_stale_champion_aliases(root, {name for name in names if str(versions[name].version) == str(champion)})
    write_run_records(client, root)
    publish_exports(root, names)


def served_champion_stands(client: MlflowClient, root: Path, versions: dict[str, Any], champion: Any) -> bool:
    """False when the champion of ``root`` is a model this registry does not know and beats the registry's champion.

    A registry that never saw the served champion (a fresh store beside committed exports: e.g. only a distilled
    student was trained here) cannot have weighed it, so the champion rule over both decides. A served champion the
    registry knows was weighed there (or demoted by a gated retraining): the registry's alias stands.
    """
    if champion is None or not any(root.glob(f"*/{METADATA_FILE}")):
        return True
    served = read_manifest(root) or from_folders(root)
    if served.champion in versions:
        return True
    registry_name = next((name for name, version in versions.items() if str(version.version) == str(champion)), None)
    if registry_name is None:
        return True
    theirs = run_candidate(client, registry_name, versions[registry_name].run_id)
    ours = from_metrics(served.champion, read_metadata(served.folder(root, served.champion)).get("metrics", {}))
    if pick_champion([theirs, ours]) == theirs:
        return True
    logger.warning("the registry's champion %s (%s %s) does not beat %s (%s), the champion of %s that this registry "
                   "does not know: %s stays the champion of %s", registry_name, CHAMPION_METRIC,
                   theirs.accuracy, served.champion, ours.accuracy, root, served.champion, root)
    return False


def drop_stale_champion_aliases(root: Path, champions: set[str]) -> None:
    """Take the ``champion`` alias off every other export: a new champion was exported beside them."""
    for path in sorted(root.glob(f"*/{METADATA_FILE}")):
        meta = json.loads(path.read_text())
        if meta.get("name") not in champions and config.CHAMPION_ALIAS in meta.get("aliases", []):
            meta["aliases"] = [a for a in meta["aliases"] if a != config.CHAMPION_ALIAS]
            meta.pop("files", None)
            write_metadata(path.parent, meta)
            logger.info("%s: no longer the champion", meta.get("name"))


def publish_exports(root: Path, names: list[str]) -> None:
    """Name the exported folders in ``manifest.json`` (reason ``export``), keeping the other models it serves.

    The champion is the export aliased ``champion`` (the registry's), else the champion rule, as the services pick it.
    """
    manifest = read_manifest(root) or from_folders(root)
    models = {**manifest.models, **{name: ModelEntry(name, str(read_metadata(root / name)["version"])) for name in names}}
    metadata = {name: read_metadata(root / entry.path) for name, entry in models.items()}
    # Not the manifest's champion: the champion aliases this export just wrote decide (served_champion_stands).
    publish_state(root, resolve_champion(metadata, None), models, "export")


if __name__ == "__main__":
    main()
