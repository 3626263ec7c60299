"""``blazeconv bench``: it runs, its tables have every installed backend, and its measuring tools measure.

Speed itself is never asserted (README: Speed); these check the instruments: a child's peak memory is the
child's, MediaPipe's worker answers, and a missing LiteRT is a missing extra, not a crash.
"""

from __future__ import annotations

import sys

import pytest
from helpers import REPO

from blazeconv.bench import DEFAULT_MEDIAPIPE_PYTHON, installed_onnx_backends, run_measured
from blazeconv.bench.contenders import _MediaPipeWorker
from blazeconv.errors import OptionsError

MEDIAPIPE = REPO / DEFAULT_MEDIAPIPE_PYTHON


def test_bench_without_litert_names_the_bench_extra(run_cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)  # as if not installed
    code, _, err = run_cli("bench", "--quick", "--variant", "short_range")
    assert code == 8, err
    assert "pip install 'blazeconv[bench]'" in err and len(err.strip().splitlines()) == 1


def test_a_child_peak_memory_is_its_own():
    """The launcher isolates the child from this (large, torch-holding) process's resident size."""
    import torch  # noqa: F401  (this process is now far above the small child below)

    small = run_measured([sys.executable, "-c", "pass"])
    large = run_measured([sys.executable, "-c", "b = bytearray(200 << 20); b[::4096] = b'x' * len(b[::4096])"])
    assert small.peak_mib < 60, small
    assert 200 <= large.peak_mib < 300, large
    assert large.seconds > 0 and large.cpu_seconds > 0


def test_a_failing_command_says_why():
    with pytest.raises(OptionsError, match="failed \\(3\\): no luck"):
        run_measured([sys.executable, "-c", "import sys; print('no luck', file=sys.stderr); sys.exit(3)"])


def test_bench_quick_has_every_backend_and_the_targets(run_cli, tmp_path):
    table = tmp_path / "bench.md"
    code, out, err = run_cli("bench", "--quick", "--variant", "short_range", "--rounds", "1", "--warmup", "0",
                             "--batch", "2", "--throughput-images", "3", "--one-photo-runs", "1",
                             "--mediapipe-python", tmp_path / "no-python", "-o", table)
    assert code == 0, err
    labels = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}
    for heading in ("LiteRT (XNNPACK)", "eager PyTorch", "| short_range | 2 × 1 |", "× MediaPipe images/s",
                    "peak MiB", "detect one.jpg", "Targets (this run)", *(labels[b] for b in installed_onnx_backends())):
        assert heading in out, heading
    assert f"MediaPipe not measured: {tmp_path / 'no-python'} does not exist" in out
    assert table.read_text().strip() == out.strip()


@pytest.mark.skipif(not MEDIAPIPE.is_file(), reason=f"no MediaPipe environment at {MEDIAPIPE}")
def test_mediapipe_worker_answers(tmp_path):
    import numpy as np

    from blazeconv.detection import load_image
    from blazeconv.resources import shipped_photos
    from blazeconv.sources import shipped_model
    from blazeconv.variants import VARIANTS

    photo = next(p for p in shipped_photos() if p.name == "astronaut.png")
    array = tmp_path / "photo.npy"
    np.save(array, load_image(photo))
    worker = _MediaPipeWorker(MEDIAPIPE, shipped_model(VARIANTS["short_range"]), 0.5, array)
    try:
        assert worker.faces == 1 and worker.version.startswith("1.")
        assert 0 < worker.time() < 1
    finally:
        worker.close()
    assert worker.process.returncode == 0

