"""``EXPORTS_DIR/manifest.json``: the one file that says which exports are served and which is the champion.

Publishing is atomic: a new version is written into a new folder first, then the manifest is replaced by a
rename (:func:`write_manifest`), so a reader sees the whole old manifest or the whole new one, never half a
change. Format (schema version 1)::

    {"schema_version": 1, "champion": "minilm",
     "models": {"minilm": {"path": "minilm@5", "version": "5"}, "tfidf-lr": {"path": "tfidf-lr", "version": "3"}},
     "published_at": "2026-11-26T04:00:00+00:00",
     "history": [{"champion", "models", "published_at", "reason", "run_id"}, ...]}

``path`` is relative to ``EXPORTS_DIR`` and ``version`` equals the ``version`` of that folder's ``metadata.json``.
``history`` is append-only; its last entry describes the current publication, so a rollback publishes the entry
before it again. Without a manifest the services serve every sub-folder holding a ``metadata.json``.

Command line: ship only some models (image builds), or publish a bundle downloaded from MLflow (a sidecar)::

    python -m api.manifest select --exports-dir exports --keep minilm,tfidf-lr
    python -m api.manifest adopt --exports-dir /exports --bundle /tmp/champion --version 7 --champion
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from api.champion import from_metrics, pick_champion
from api.exports import METADATA_FILE, ExportError, inside, read_metadata, verify_file

logger = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
SCHEMA_VERSION = 1
_LOCK_FILE = ".manifest.lock"


class ManifestError(ExportError):
    """A manifest that cannot be read or written; the message names the file and the problem."""


@dataclass(frozen=True)
class ModelEntry:
    """Where one model's export lives (relative to ``EXPORTS_DIR``) and its version."""

    path: str
    version: str


@dataclass(frozen=True)
class Manifest:
    """The served exports and the champion; ``history`` lists every publication, oldest first."""

    champion: str
    models: Mapping[str, ModelEntry]
    published_at: str = ""
    history: tuple[dict[str, Any], ...] = ()
    schema_version: int = SCHEMA_VERSION

    def folder(self, exports_dir: Path, name: str) -> Path:
        """The export folder of model ``name``."""
        return Path(exports_dir) / self.models[name].path

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": self.schema_version, "champion": self.champion,
                "models": {name: {"path": e.path, "version": e.version} for name, e in self.models.items()},
                "published_at": self.published_at, "history": list(self.history)}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def parse_manifest(data: Any, source: Path) -> Manifest:
    """Validate decoded JSON as a manifest.

    Raises:
        ManifestError: a field is missing or wrong; the message names ``source`` and the field.
    """
    if not isinstance(data, dict):
        raise ManifestError(f"{source} must hold a JSON object")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ManifestError(f"{source} has schema version {data.get('schema_version')!r}, expected {SCHEMA_VERSION}")
    models = data.get("models")
    if not isinstance(models, dict) or not models:
        raise ManifestError(f"{source}: 'models' must map at least one model name to its path and version")
    entries = {}
    for name, entry in models.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) or "version" not in entry:
            raise ManifestError(f"{source}: models[{name!r}] needs a 'path' (string) and a 'version'")
        if not Path(entry["path"]).parts:
            raise ManifestError(f"{source}: models[{name!r}] has an empty path")
        try:
            inside(source.parent, entry["path"], source, "exports folder")
        except ExportError as error:
            raise ManifestError(str(error)) from error
        entries[str(name)] = ModelEntry(entry["path"], str(entry["version"]))
    champion = data.get("champion")
    if champion not in entries:
        raise ManifestError(f"{source}: champion {champion!r} is not among the models {sorted(entries)}")
    history = data.get("history", [])
    if not isinstance(history, list) or not all(isinstance(item, dict) for item in history):
        raise ManifestError(f"{source}: 'history' must be a list of objects")
    return Manifest(champion, entries, str(data.get("published_at", "")), tuple(history))


def read_manifest(exports_dir: str | Path) -> Manifest | None:
    """The manifest of ``exports_dir``, or None when it has none (every export folder is then served).

    Raises:
        ManifestError: the file exists but is not a valid manifest.
    """
    path = Path(exports_dir) / MANIFEST_FILE
    try:
        raw = path.read_bytes()  # one read: a rename between two reads cannot mix two versions
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ManifestError(f"{path} is not valid JSON ({error})") from error
    return parse_manifest(data, path)


def check_folders(exports_dir: Path, manifest: Manifest) -> None:
    """Check that every model's folder holds a valid ``metadata.json`` of that name and version.

    Raises:
        ExportError: a folder is missing, invalid, or holds another model or version.
    """
    for name, entry in manifest.models.items():
        folder = manifest.folder(exports_dir, name)
        meta = read_metadata(folder)
        if meta["name"] != name or str(meta["version"]) != entry.version:
            raise ManifestError(f"{folder / METADATA_FILE} holds {meta['name']} version {meta['version']}, "
                                f"the manifest says {name} version {entry.version}")


def write_manifest(exports_dir: str | Path, manifest: Manifest, *, verify: bool = True) -> Path:
    """Replace ``exports_dir/manifest.json`` atomically (temporary file, fsync, rename).

    Args:
        exports_dir: the folder of exports.
        manifest: what to publish.
        verify: check first that every folder it names holds that model and version.

    Raises:
        ExportError: ``verify`` found a folder that does not match (nothing was written).
    """
    root = Path(exports_dir)
    path = root / MANIFEST_FILE
    parse_manifest(manifest.to_dict(), path)
    if verify:
        check_folders(root, manifest)
    descriptor, temporary = tempfile.mkstemp(dir=root, prefix=".manifest.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(manifest.to_dict(), handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it private; the services may run as another user
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    directory = os.open(root, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)
    return path


@contextlib.contextmanager
def publishing(exports_dir: str | Path) -> Iterator[None]:
    """Hold the publishers' lock of ``exports_dir``: two publishers never lose each other's history entry."""
    with open(Path(exports_dir) / _LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def publish(exports_dir: str | Path, champion: str, models: Mapping[str, ModelEntry], reason: str,
            run_id: str | None = None, *, extra: Mapping[str, Any] | None = None) -> Manifest:
    """Publish ``models`` with ``champion`` and append the publication to the history.

    Args:
        exports_dir: the folder of exports; every folder named must already be complete.
        champion: the model requests get by default.
        models: model name → its folder and version.
        reason: why (``export``, ``retrain``, ``rollback``, ``select``).
        run_id: the MLflow run behind it, if any.
        extra: more fields for the history entry (readers ignore keys they do not know).

    Raises:
        ExportError: the manifest or a folder it names is invalid (the old manifest stays).
    """
    with publishing(exports_dir):
        return _append(Path(exports_dir), read_manifest(exports_dir), champion, models, reason, run_id, extra)


def _append(root: Path, previous: Manifest | None, champion: str, models: Mapping[str, ModelEntry], reason: str,
            run_id: str | None = None, extra: Mapping[str, Any] | None = None) -> Manifest:
    """Write the manifest ``previous`` becomes (the publishers' lock held)."""
    published_at = _now()
    entry = {"champion": champion,
             "models": {name: {"path": e.path, "version": e.version} for name, e in models.items()},
             "published_at": published_at, "reason": reason, "run_id": run_id, **(extra or {})}
    manifest = Manifest(champion, dict(models), published_at, (previous.history if previous else ()) + (entry,))
    write_manifest(root, manifest)
    return manifest


def from_folders(exports_dir: str | Path) -> Manifest:
    """A manifest describing the export folders as the services serve them without one (not written).

    Raises:
        ExportError: a folder is invalid, or two hold the same model.
    """
    # Imported here: they pull in ONNX Runtime, which reading and writing a manifest never needs.
    from api.predictor import discover
    from api.registry import choose_default

    exports_dir = Path(exports_dir)
    metadata: dict[str, dict[str, Any]] = {}
    entries: dict[str, ModelEntry] = {}
    for folder in discover(exports_dir):
        meta = read_metadata(folder)
        if meta["name"] in entries:
            raise ManifestError(f"{folder}: a model named {meta['name']!r} is also in {entries[meta['name']].path}")
        metadata[meta["name"]] = meta
        entries[meta["name"]] = ModelEntry(folder.name, str(meta["version"]))
    return Manifest(choose_default(metadata, None), entries, _now())


def _selection(root: Path, current: Manifest, keep: Sequence[str],
               repick_champion: bool) -> tuple[str, dict[str, ModelEntry]]:
    """The champion and the models that ``select`` keeps (see there), without writing anything."""
    unknown = sorted(set(keep) - set(current.models))
    if unknown:
        raise ManifestError(f"{root}: no model {unknown}; available: {sorted(current.models)}")
    models = {name: entry for name, entry in current.models.items() if name in keep}
    champion = current.champion
    if champion not in keep:
        if not repick_champion:
            raise ManifestError(f"the champion {champion!r} must be kept (--keep {','.join(keep)}); "
                                "publish another champion first, or pass --repick-champion")
        best = pick_champion(from_metrics(name, read_metadata(root / entry.path).get("metrics", {}))
                             for name, entry in models.items())
        if best is None:
            raise ManifestError(f"--keep {','.join(keep)} keeps no model")
        champion = best.name
        logger.info("the champion %s is not kept: %s is, by the champion rule", current.champion, champion)
    return champion, models


def preview_select(exports_dir: str | Path, keep: Sequence[str], *, repick_champion: bool = False) -> Manifest:
    """What :func:`select` would publish, written nowhere (``select --dry-run``: e.g. an image's default model)."""
    root = Path(exports_dir)
    current = read_manifest(root) or from_folders(root)
    champion, models = _selection(root, current, keep, repick_champion)
    return Manifest(champion=champion, models=models, published_at=current.published_at, history=current.history)


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
        current = read_manifest(root) or from_folders(root)
        champion, models = _selection(root, current, keep, repick_champion)
        selected = _append(root, current, champion, models, "select")
    kept = {(root / e.path).resolve() for e in models.values()}
    for folder in sorted(p.parent for p in root.glob(f"**/{METADATA_FILE}")):
        if folder.resolve() not in kept and not any(k.is_relative_to(folder.resolve()) for k in kept):
            shutil.rmtree(folder)
    return selected


def _bundle_folder(path: Path) -> Path:
    """The export folder in ``path``: itself, or the one bundle of a downloaded MLflow model (``artifacts/<b>/``)."""
    if (path / METADATA_FILE).is_file():
        return path
    found = sorted(p.parent for p in path.glob(f"artifacts/*/{METADATA_FILE}"))
    if len(found) != 1:
        raise ManifestError(f"{path} holds no export bundle (a metadata.json in it or in artifacts/<bundle>/)")
    return found[0]


def adopt(exports_dir: str | Path, bundle: str | Path, version: str, *, champion: bool = False,
          reason: str = "mlflow", run_id: str | None = None) -> Manifest:
    """Copy an export bundle into ``EXPORTS_DIR/<name>@<version>``, check its files, then publish it.

    Used by a sidecar that follows an MLflow alias (``mlflow artifacts download``); needs nothing but this package.
    Idempotent: a version already published as asked changes nothing.

    Args:
        exports_dir: the served folder (created when missing).
        bundle: the export folder, or a downloaded MLflow model holding one under ``artifacts/``.
        version: the registry version; written into the copy's ``metadata.json``.
        champion: make it the champion (always, when nothing else is published).

    Raises:
        ExportError: the bundle is invalid or a file does not match its sha256 (nothing was published).
    """
    root = Path(exports_dir)
    root.mkdir(parents=True, exist_ok=True)
    source = _bundle_folder(Path(bundle))
    name = read_metadata(source)["name"]
    entry = ModelEntry(f"{name}@{version}", str(version))
    with publishing(root):
        current = read_manifest(root) or (from_folders(root) if any(root.glob(f"*/{METADATA_FILE}")) else None)
        wanted = name if champion or current is None else current.champion
        if current is not None and current.models.get(name) == entry and current.champion == wanted:
            return current
        staging = root / f".{entry.path}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(source, staging)
        meta = read_metadata(staging)
        meta["version"] = entry.version  # metadata.json is not among the hashed files
        (staging / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        variant = meta["default_variant"]
        needed = {meta["variants"].get(variant), meta.get("tokenizer"), *meta.get("external_data", {}).get(variant, [])}
        try:
            for file in sorted((needed - {None}) | {f for f in meta["files"] if (staging / f).exists()}):
                verify_file(staging, meta, file)
        except ExportError:
            shutil.rmtree(staging)
            raise
        shutil.rmtree(root / entry.path, ignore_errors=True)  # an earlier, interrupted copy that nothing names
        staging.rename(root / entry.path)
        models = {**(current.models if current else {}), name: entry}
        return _append(root, current, wanted, models, reason, run_id)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.manifest", description=__doc__.split("\n\n")[0])
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
    adopter.add_argument("--reason", default="mlflow")
    args = parser.parse_args(argv)
    try:
        if args.command == "adopt":
            manifest = adopt(args.exports_dir, args.bundle, args.version, champion=args.champion, reason=args.reason)
        else:
            keep = [name.strip() for name in args.keep.replace(" ", ",").split(",") if name.strip()]
            manifest = (preview_select if args.dry_run else select)(args.exports_dir, keep,
                                                                     repick_champion=args.repick_champion)
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)  # noqa: T201
        return 2
    print(json.dumps({"champion": manifest.champion,  # noqa: T201
                      "models": {name: entry.version for name, entry in sorted(manifest.models.items())}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
