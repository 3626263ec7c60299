"""models/SHA256SUMS: the shipped files match it, and a changed or missing file is caught (what `make all` runs)."""

from __future__ import annotations

import shutil

from helpers import MODELS

from blazeconv.checksums import verify
from blazeconv.variants import VARIANTS


def test_shipped_models_match_their_checksums():
    assert verify(MODELS / "SHA256SUMS") == []


def test_variant_checksums_agree_with_sha256sums():
    listed = dict(reversed(line.split("  ")) for line in (MODELS / "SHA256SUMS").read_text().splitlines())
    for variant in VARIANTS.values():
        assert listed[variant.tflite_file] == variant.sha256


def test_changed_and_missing_files_are_reported(tmp_path):
    shutil.copy(MODELS / "SHA256SUMS", tmp_path)
    shutil.copy(MODELS / "face_detection_front.tflite", tmp_path)
    data = bytearray((MODELS / "face_detection_back.tflite").read_bytes())
    data[-1] ^= 1
    (tmp_path / "face_detection_back.tflite").write_bytes(bytes(data))
    problems = verify(tmp_path / "SHA256SUMS")
    assert any("face_detection_back.tflite: SHA-256 differs" in p for p in problems)
    assert any("face_detection_short_range.tflite: missing" in p for p in problems)
    assert not any("face_detection_front.tflite" in p for p in problems)
