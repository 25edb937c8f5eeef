"""Publishing to ``EXPORTS_DIR``: the one module that changes what the services serve.

``EXPORTS_DIR/manifest.json`` (its format: ``sentiment.manifest``) names the served versions and the champion.
Every publication here holds one lock (:func:`publishing`), reads the manifest once under it and replaces it
once, appending an entry to its ``history``; each entry records the champion's ``validation_random`` accuracy,
which the promotion gate reads back (:func:`best_champion_accuracy`).

A folder is published in one order, whoever publishes it (:func:`adopt`, a bundle downloaded from MLflow;
:func:`publish_version`, a version a retraining promoted), by :func:`_publish_folder`:

1. stage: copy the bundle into ``EXPORTS_DIR/.<name>@<version>.partial``;
2. write the version (and the fields the publisher replaces) into its ``metadata.json``, keeping the sha256 the
   bundle recorded;
3. verify every file against that sha256 (a trained version must also load, as the service will load it);
4. rename the staged folder to ``<name>@<version>``;
5. write the manifest naming it.

A running service never reads a half-written folder (nothing names it before step 5) nor half a manifest (it is
replaced by a rename); a failure before step 5 leaves the manifest and the served folders as they were. When there
was no manifest yet, the state served without one becomes the first history entry, so the publication can be
rolled back. :func:`rollback` re-publishes the entry before the one in force, so successive rollbacks walk back
through the history.

Command line::

    python -m sentiment.publish select --exports-dir exports --keep minilm,tfidf-lr [--repick-champion] [--dry-run]
    python -m sentiment.publish adopt --exports-dir /exports --bundle /tmp/champion --version 7 --champion
    python -m sentiment.publish rollback [--exports-dir DIR]   # `make rollback` also moves the MLflow alias
    python -m sentiment.publish show [--exports-dir DIR]       # the manifest in force and its history
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import shutil
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from sentiment.champion import SELECTION_SET, from_metrics, pick_champion
from sentiment.exports import (
    FP32_FILE,
    METADATA_FILE,
    ExportError,
    discover,
    read_metadata,
    verify_file,
    write_metadata,
)
from sentiment.manifest import Manifest, ManifestError, ModelEntry, _now, from_folders, read_manifest, write_manifest

logger = logging.getLogger(__name__)

# The reasons a history entry records.
EXPORT, RETRAIN, ROLLBACK, SELECT, MLFLOW = "export", "retrain", "rollback", "select", "mlflow"
_LOCK_FILE = ".manifest.lock"


@contextlib.contextmanager
def publishing(exports_dir: str | Path) -> Iterator[None]:
    """Hold the publishers' lock of ``exports_dir``: two publishers never lose each other's history entry."""
    with open(Path(exports_dir) / _LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def current(exports_dir: str | Path) -> Manifest:
    """The manifest in force; without one, the folders as the services serve them (champion by their rule).

    Raises:
        ExportError: the manifest or a folder is invalid, or there is nothing to serve.
    """
    return read_manifest(exports_dir) or from_folders(exports_dir)


def champion_accuracy(exports_dir: str | Path, champion: str, models: Mapping[str, Any]) -> float | None:
    """validation_random accuracy of ``champion`` from its export's metadata (None when unknown or gone).

    ``models`` maps names to :class:`ModelEntry` or to a history entry's ``{"path", "version"}``.
    """
    model = models.get(champion)
    path = model and Path(exports_dir) / (model.path if isinstance(model, ModelEntry) else model["path"]) / METADATA_FILE
    if not path or not path.is_file():
        return None
    return json.loads(path.read_text()).get("metrics", {}).get(SELECTION_SET, {}).get("accuracy")


def best_champion_accuracy(exports_dir: str | Path, manifest: Manifest) -> float | None:
    """The best validation_random accuracy of any champion in the history (and of the champion in force)."""
    figures = [champion_accuracy(exports_dir, manifest.champion, manifest.models)]
    for entry in manifest.history:
        recorded = entry.get("champion_validation_random")
        figures.append(recorded if recorded is not None
                       else champion_accuracy(exports_dir, entry["champion"], entry.get("models", {})))
    figures = [f for f in figures if isinstance(f, int | float)]
    return max(figures) if figures else None


def best_family_accuracy(exports_dir: str | Path, manifest: Manifest, family: str) -> float | None:
    """The best validation_random accuracy of any version of ``family`` served now or in the history.

    A retraining of ``family`` is measured against it (``training.gate``): a MiniLM retraining is held to MiniLM's
    best, not to mpnet's, and the champion rule then picks the default among the served models.
    """
    figures = [champion_accuracy(exports_dir, family, manifest.models)]
    for entry in manifest.history:
        recorded = entry.get("validation_random", {}).get(family)
        figures.append(recorded if recorded is not None else champion_accuracy(exports_dir, family, entry.get("models", {})))
    figures = [f for f in figures if isinstance(f, int | float)]
    return max(figures) if figures else None


def champion_with(exports_dir: str | Path, manifest: Manifest, name: str, metrics: Mapping[str, Any]) -> str:
    """The champion the rule picks among the models of ``manifest`` with ``name`` served with ``metrics``."""
    figures = {n: read_metadata(Path(exports_dir) / m.path).get("metrics", {}) for n, m in manifest.models.items()}
    return pick_champion(from_metrics(n, m) for n, m in {**figures, name: metrics}.items()).name


def _entry(root: Path, champion: str, models: Mapping[str, ModelEntry], reason: str, run_id: str | None,
           extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A history entry; it records every served model's validation_random accuracy (what a retraining of that
    family is gated against, even once the folder is gone) and the champion's."""
    return {"champion": champion,
            "models": {name: {"path": e.path, "version": e.version} for name, e in models.items()},
            "published_at": _now(), "reason": reason, "run_id": run_id,
            "champion_validation_random": champion_accuracy(root, champion, models),
            "validation_random": {name: champion_accuracy(root, name, models) for name in models}, **(extra or {})}


def _append(root: Path, history: Sequence[dict[str, Any]], champion: str, models: Mapping[str, ModelEntry],
            reason: str, run_id: str | None = None, extra: Mapping[str, Any] | None = None) -> Manifest:
    """Write the manifest of ``models`` and ``champion``, its history ``history`` plus this publication (lock held).

    Raises:
        ExportError: a folder it names is invalid or holds another model or version (nothing was written).
    """
    entry = _entry(root, champion, models, reason, run_id, extra)
    manifest = Manifest(champion, dict(models), entry["published_at"], (*history, entry))
    write_manifest(root, manifest)
    logger.info("published (%s): champion %s, models %s", reason, champion, {n: m.version for n, m in models.items()})
    return manifest


def publish_state(exports_dir: str | Path, champion: str, models: Mapping[str, ModelEntry], reason: str,
                  run_id: str | None = None, **extra: Any) -> Manifest:
    """Publish ``models`` (folders already complete in ``exports_dir``) with ``champion``; append the history.

    Args:
        exports_dir: the folder of exports.
        champion: the model requests get by default.
        models: model name → its folder and version.
        reason: why (``export``, ``retrain``, ``rollback``, ``select``, ``mlflow``).
        run_id: the MLflow run behind it, if any.
        extra: more fields for the history entry (readers ignore keys they do not know).

    Raises:
        ExportError: the manifest or a folder it names is invalid (the old manifest stays).
    """
    root = Path(exports_dir)
    with publishing(root):
        previous = read_manifest(root)
        return _append(root, previous.history if previous else (), champion, models, reason, run_id, extra)


def _verify(folder: Path, meta: dict[str, Any]) -> None:
    """Check every file of ``folder`` that ``meta`` lists against its sha256; what the default variant needs must
    be there (files left out, such as a fp32 graph that is not served, are checked when present only).

    Raises:
        ExportError: a needed file is missing, or a file does not match its sha256.
    """
    variant = meta["default_variant"]
    needed = {meta["variants"].get(variant), meta.get("tokenizer"), *meta.get("external_data", {}).get(variant, [])}
    for file in sorted((needed - {None}) | {f for f in meta["files"] if (folder / f).exists()}):
        verify_file(folder, meta, file)


def _load(folder: Path) -> None:
    """Refuse what the service could not load (ONNX Runtime's own errors become an :class:`ExportError`)."""
    from sentiment.predictor import load_predictor  # ONNX Runtime: not needed to adopt, select or roll back

    try:
        load_predictor(folder)
    except ExportError:
        raise
    except Exception as error:  # noqa: BLE001 - whatever ONNX Runtime raises, the service would fail the same way
        raise ExportError(f"{folder} cannot be loaded as the service loads it ({error})") from error


def _numbers(versions: Iterable[Any]) -> list[int]:
    return [int(v) for v in map(str, versions) if v.isdigit()]


def new_version(manifest: Manifest | None, name: str, registry_version: str) -> str:
    """The version a model trained here is published as: its registry version, unless the manifest serves or
    names in its history a version of ``name`` as high; then one above the highest.

    A registry counts from 1 in each tracking store, so on a fresh clone (no ``mlflow.db``) a retraining of
    MiniLM got version 1 after the version 4 it continued from (decision 0011). Served versions never go down;
    the registry's own number stays in the metadata's ``mlflow.model_version``.
    """
    if manifest is None:
        return str(registry_version)
    known = [*(e.version for n, e in manifest.models.items() if n == name),
             *(m.get("version") for h in manifest.history for n, m in h.get("models", {}).items() if n == name)]
    highest = max(_numbers(known), default=0)
    mine = _numbers([registry_version])
    return str(registry_version) if mine and mine[0] > highest else str(highest + 1)


def _publish_folder(root: Path, bundle: Path, name: str, version: str, *, champion: bool, reason: str,
                    run_id: str | None, fields: Mapping[str, Any] | None = None, leave_out: Sequence[str] = (),
                    load: bool = False, again: bool = False, renumber: bool = False) -> Manifest:
    """Publish ``bundle`` as ``root/<name>@<version>``: stage, write the version, verify, rename, write the manifest.

    The one order of every folder published (module docstring); the manifest is read once, under the lock.

    Args:
        root: the served folder.
        bundle: the export folder to copy.
        name, version: the model and its registry version.
        champion: make it the champion (always, when nothing else is served).
        reason, run_id: what the history entry records.
        fields: metadata fields that replace the bundle's (the recorded sha256 of its files stay).
        leave_out: files of the bundle not copied (they stay listed in the metadata's ``files``).
        load: also check, before the rename, that the service can load the staged folder.
        again: the same version already served is no error: only the champion changes, if asked.
        renumber: a model trained here: published as :func:`new_version` (never below a version of ``name`` known
            to the manifest), and refused when its run is published already.

    Raises:
        ExportError: the bundle is invalid, a file does not match its sha256, the folder does not load, or (not
            ``again``) the version is served already. Nothing was published: manifest and folders are unchanged.
    """
    with publishing(root):
        previous = read_manifest(root)
        served = previous or (from_folders(root) if discover(root) else None)
        if renumber:
            published = [h for h in (served.history if served else ()) if run_id and h.get("run_id") == run_id
                         and h.get("reason") == reason]
            if published:
                raise ManifestError(f"run {run_id} is published already ({published[-1]['models'].get(name)}); "
                                    f"registry version {version} cannot be republished")
            version = new_version(served, name, version)
        entry = ModelEntry(f"{name}@{version}", str(version))
        target = root / entry.path
        wanted = name if champion or served is None else served.champion
        named = served is not None and any(m.path == entry.path for m in served.models.values())
        if named and not (again and served.models.get(name) == entry):
            raise ManifestError(f"{target} is served already; registry version {version} cannot be republished")
        if named and served.champion == wanted:
            return served  # published already, as asked
        if not named:
            staging = root / f".{entry.path}.partial"
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(bundle, staging, ignore=shutil.ignore_patterns(*leave_out) if leave_out else None)
            try:
                meta = read_metadata(staging)
                if meta["name"] != name:
                    raise ManifestError(f"{bundle / METADATA_FILE} holds {meta['name']}, not {name}")
                meta = write_metadata(staging, {**meta, **(fields or {}), "version": entry.version},
                                      files=meta["files"])
                _verify(staging, meta)
                if load:
                    _load(staging)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            shutil.rmtree(target, ignore_errors=True)  # an earlier, interrupted copy that nothing names
            staging.rename(target)
        history: tuple[dict[str, Any], ...] = ()
        if previous is not None:
            history = previous.history
        elif served is not None:  # the state served without a manifest: this publication can be rolled back to it
            history = (_entry(root, served.champion, served.models, EXPORT, None),)
        return _append(root, history, wanted, {**(served.models if served else {}), name: entry}, reason, run_id)


def _bundle_folder(path: Path) -> Path:
    """The export folder in ``path``: itself, or the one bundle of a downloaded MLflow model (``artifacts/<b>/``)."""
    if (path / METADATA_FILE).is_file():
        return path
    found = sorted(p.parent for p in path.glob(f"artifacts/*/{METADATA_FILE}"))
    if len(found) != 1:
        raise ManifestError(f"{path} holds no export bundle (a metadata.json in it or in artifacts/<bundle>/)")
    return found[0]


def adopt(exports_dir: str | Path, bundle: str | Path, version: str, *, champion: bool = False,
          reason: str = MLFLOW, run_id: str | None = None) -> Manifest:
    """Publish an export bundle as ``EXPORTS_DIR/<name>@<version>`` (every file checked against its sha256).

    Used by a sidecar that follows an MLflow alias (``mlflow artifacts download``) and by the product's alias
    follower; needs nothing but this package. Idempotent: a version already published as asked changes nothing.

    Args:
        exports_dir: the served folder (created when missing).
        bundle: the export folder, or a downloaded MLflow model holding one under ``artifacts/``.
        version: the registry version; written into the copy's ``metadata.json``.
        champion: make it the champion (always, when nothing else is published).
        reason, run_id: what the history entry records.

    Raises:
        ExportError: the bundle is invalid or a file does not match its sha256 (nothing was published).
    """
    root = Path(exports_dir)
    root.mkdir(parents=True, exist_ok=True)
    source = _bundle_folder(Path(bundle))
    return _publish_folder(root, source, read_metadata(source)["name"], str(version), champion=champion,
                           reason=reason, run_id=run_id, again=True)


def publish_version(exports_dir: str | Path, bundle: str | Path, *, name: str, version: str, run_id: str | None,
                    metadata: Mapping[str, Any], champion: bool = True) -> Manifest:
    """Publish a promoted bundle as ``<name>@<v>`` once it verifies and loads (``v``: :func:`new_version`).

    Args:
        exports_dir: the served folder.
        bundle: the new version's export bundle (its fp32 graph, which is not served, stays behind but stays listed
            in the metadata's ``files``).
        name, version, run_id: the model name, its registry version and MLflow run.
        metadata: fields that replace the bundle's metadata (metrics, mlflow, aliases).
        champion: make it the champion; else the champion stays (a retraining asks ``champion_with`` first).

    Returns:
        The manifest now in force.

    Raises:
        ExportError: the run is published already, a file does not match its sha256, or the service could not
            load it (nothing was published).
    """
    return _publish_folder(Path(exports_dir), Path(bundle), name, str(version), champion=champion, reason=RETRAIN,
                           run_id=run_id, fields=metadata, leave_out=(FP32_FILE,), load=True, renumber=True)


def rollback(exports_dir: str | Path) -> Manifest:
    """Re-publish the history entry before the one in force (reason ``rollback``, ``restores``: its index).

    Raises:
        ExportError: there is no manifest, nothing earlier in its history, or a folder of that entry is gone.
    """
    root = Path(exports_dir)
    with publishing(root):
        manifest = read_manifest(root)
        if manifest is None or not manifest.history:
            raise ManifestError(f"{root} has no manifest.json with a history: nothing was published to roll back")
        history = manifest.history
        in_force = history[-1].get("restores", len(history) - 1)
        if in_force < 1:
            raise ManifestError(f"the entry in force ({in_force}, {history[in_force]['reason']}) is the first of the "
                                "history; there is nothing earlier to roll back to")
        target = history[in_force - 1]
        missing = [m["path"] for m in target["models"].values() if not (root / m["path"] / METADATA_FILE).is_file()]
        if missing:
            raise ManifestError(f"cannot roll back to history entry {in_force - 1}: {missing} no longer exist in {root}")
        models = {name: ModelEntry(m["path"], str(m["version"])) for name, m in target["models"].items()}
        return _append(root, history, target["champion"], models, ROLLBACK, target.get("run_id"),
                       {"restores": in_force - 1})


def _selection(root: Path, served: Manifest, keep: Sequence[str],
               repick_champion: bool) -> tuple[str, dict[str, ModelEntry]]:
    """The champion and the models that ``select`` keeps (see there), without writing anything."""
    unknown = sorted(set(keep) - set(served.models))
    if unknown:
        raise ManifestError(f"{root}: no model {unknown}; available: {sorted(served.models)}")
    models = {name: entry for name, entry in served.models.items() if name in keep}
    champion = served.champion
    if champion not in keep:
        if not repick_champion:
            raise ManifestError(f"the champion {champion!r} must be kept (--keep {','.join(keep)}); "
                                "publish another champion first, or pass --repick-champion")
        best = pick_champion(from_metrics(name, read_metadata(root / entry.path).get("metrics", {}))
                             for name, entry in models.items())
        if best is None:
            raise ManifestError(f"--keep {','.join(keep)} keeps no model")
        champion = best.name
        logger.info("the champion %s is not kept: %s is, by the champion rule", served.champion, champion)
    return champion, models


def preview_select(exports_dir: str | Path, keep: Sequence[str], *, repick_champion: bool = False) -> Manifest:
    """What :func:`select` would publish, written nowhere (``select --dry-run``: e.g. an image's default model)."""
    root = Path(exports_dir)
    served = current(root)
    champion, models = _selection(root, served, keep, repick_champion)
    return Manifest(champion=champion, models=models, published_at=served.published_at, history=served.history)


def select(exports_dir: str | Path, keep: Sequence[str], *, repick_champion: bool = False) -> Manifest:
    """Keep only the models ``keep``: rewrite the manifest, then delete every other export folder.

    Without a manifest, one is made from the folders first (champion by the service's rule).

    Args:
        repick_champion: when the champion is not kept, crown the best kept model by the champion rule instead
            of refusing (an image built without the champion, e.g. without mpnet: README, "Docker").

    Raises:
        ManifestError: a name in ``keep`` is unknown, or the champion is not kept (and not ``repick_champion``).
    """
    root = Path(exports_dir)
    with publishing(root):
        previous = read_manifest(root)
        served = previous or from_folders(root)
        champion, models = _selection(root, served, keep, repick_champion)
        selected = _append(root, served.history, champion, models, SELECT)
        kept = {(root / e.path).resolve() for e in models.values()}
        for folder in sorted(p.parent for p in root.glob(f"**/{METADATA_FILE}")):
            if folder.resolve() not in kept and not any(k.is_relative_to(folder.resolve()) for k in kept):
                shutil.rmtree(folder)
    return selected


def _summary(manifest: Manifest) -> dict[str, Any]:
    return {"champion": manifest.champion,
            "models": {name: entry.version for name, entry in sorted(manifest.models.items())}}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sentiment.publish", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    chooser = commands.add_parser("select", help="keep only some models: rewrite the manifest, delete the others")
    chooser.add_argument("--exports-dir", type=Path, required=True)
    chooser.add_argument("--keep", required=True, help="comma-separated model names; the champion must be one")
    chooser.add_argument("--repick-champion", action="store_true",
                         help="if the champion is not kept, crown the best kept model by the champion rule")
    chooser.add_argument("--dry-run", action="store_true", help="print what would be kept; change nothing")
    adopter = commands.add_parser("adopt", help="copy a bundle (e.g. from `mlflow artifacts download`) into "
                                  "<name>@<version>, check its sha256, publish it")
    adopter.add_argument("--exports-dir", type=Path, required=True)
    adopter.add_argument("--bundle", type=Path, required=True, help="export folder or downloaded MLflow model")
    adopter.add_argument("--version", required=True, help="the registry version")
    adopter.add_argument("--champion", action="store_true", help="make it the champion")
    adopter.add_argument("--reason", default=MLFLOW)
    for command, text in (("rollback", "publish the history entry before the one in force again (the MLflow "
                                       "registry's alias stays: `make rollback` moves it too)"),
                          ("show", "print the manifest in force and its history")):
        commands.add_parser(command, help=text).add_argument("--exports-dir", type=Path, default=None,
                                                             help="default: EXPORTS_DIR or exports/")
    args = parser.parse_args(argv)
    if args.exports_dir is None:
        from sentiment.settings import ProjectSettings

        args.exports_dir = ProjectSettings().exports_dir
    try:
        if args.command == "adopt":
            manifest = adopt(args.exports_dir, args.bundle, args.version, champion=args.champion, reason=args.reason)
        elif args.command == "select":
            keep = [name.strip() for name in args.keep.replace(" ", ",").split(",") if name.strip()]
            manifest = (preview_select if args.dry_run else select)(args.exports_dir, keep,
                                                                     repick_champion=args.repick_champion)
        else:
            manifest = rollback(args.exports_dir) if args.command == "rollback" else current(args.exports_dir)
            print(json.dumps(manifest.to_dict(), indent=2))  # noqa: T201
            return 0
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)  # noqa: T201
        return 2
    print(json.dumps(_summary(manifest)))  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
