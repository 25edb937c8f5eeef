"""``EXPORTS_DIR/manifest.json``: the one file that says which exports are served and which is the champion.

This module is the format: read, validate, describe the folders served without a manifest, and replace the file
atomically (:func:`write_manifest`: a temporary file, then a rename, so a reader sees the whole old manifest or the
whole new one, never half a change). Publishing (the lock, the history, adopt, select, rollback) is
``sentiment.publish``. Format (schema version 1)::

    {"schema_version": 1, "champion": "minilm",
     "models": {"minilm": {"path": "minilm@5", "version": "5"}, "tfidf-lr": {"path": "tfidf-lr", "version": "3"}},
     "published_at": "2026-11-26T04:00:00+00:00",
     "history": [{"champion", "models", "published_at", "reason", "run_id"}, ...]}

``path`` is relative to ``EXPORTS_DIR`` and ``version`` equals the ``version`` of that folder's ``metadata.json``.
``history`` is append-only; its last entry describes the current publication, so a rollback publishes the entry
before it again. Without a manifest the services serve every sub-folder holding a ``metadata.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sentiment.champion import resolve_champion
from sentiment.exports import METADATA_FILE, ExportError, discover, inside, read_metadata

MANIFEST_FILE = "manifest.json"
SCHEMA_VERSION = 1


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


def from_folders(exports_dir: str | Path) -> Manifest:
    """A manifest describing the export folders as the services serve them without one (not written).

    Raises:
        ExportError: a folder is invalid, or two hold the same model.
    """
    exports_dir = Path(exports_dir)
    metadata: dict[str, dict[str, Any]] = {}
    entries: dict[str, ModelEntry] = {}
    for folder in discover(exports_dir):
        meta = read_metadata(folder)
        if meta["name"] in entries:
            raise ManifestError(f"{folder}: a model named {meta['name']!r} is also in {entries[meta['name']].path}")
        metadata[meta["name"]] = meta
        entries[meta["name"]] = ModelEntry(folder.name, str(meta["version"]))
    champion = resolve_champion(metadata)
    if champion is None:
        raise ExportError(f"{exports_dir}: no export to serve: run `make export`")
    return Manifest(champion, entries, _now())
