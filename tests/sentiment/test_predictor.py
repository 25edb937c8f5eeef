"""The loader refuses an int8 graph that this CPU would answer wrongly, and says how to fix it."""

from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path

import pytest

from sentiment import predictor
from sentiment.exports import ExportError
from sentiment.predictor import int8_weights_overflow, load_predictor
from training import config

MINILM = config.PROJECT_ROOT / "exports" / "minilm"
x86 = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="reads x86 CPU flags")


def _cpuinfo(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: some CPU\nflags\t\t: fpu sse2 avx2 {flags}\n\n")
    return path


@x86
def test_an_x86_without_vnni_overflows_signed_int8_weights_and_one_with_it_does_not(tmp_path: Path) -> None:
    assert int8_weights_overflow(_cpuinfo(tmp_path, "fma bmi2"))
    for exact in ("avx512_vnni", "avx_vnni", "amx_int8"):
        assert not int8_weights_overflow(_cpuinfo(tmp_path, exact))
    assert not int8_weights_overflow(tmp_path / "absent")  # unknown CPU: not refused


def _copy_without_weights_entry(tmp_path: Path) -> Path:
    folder = tmp_path / "minilm"
    shutil.copytree(MINILM, folder, ignore=shutil.ignore_patterns("model.fp32.onnx"))
    meta = json.loads((folder / "metadata.json").read_text())
    meta["quantization"].pop("weights")
    (folder / "metadata.json").write_text(json.dumps(meta))
    return folder


def test_signed_int8_weights_are_refused_where_they_would_overflow_naming_the_fix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _copy_without_weights_entry(tmp_path)
    monkeypatch.setattr(predictor, "int8_weights_overflow", lambda: True)
    with pytest.raises(ExportError, match=r"--unsigned-weights-only .*minilm"):
        load_predictor(folder)
    assert load_predictor(MINILM).predict(["thanks, this is great"]) == ["positive"]  # unsigned: served anywhere
    monkeypatch.setattr(predictor, "int8_weights_overflow", lambda: False)
    assert load_predictor(folder).predict(["thanks, this is great"]) == ["positive"]
