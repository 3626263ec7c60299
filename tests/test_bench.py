"""``blazeconv bench``: it runs, its tables have every installed backend, and its measuring tools measure.

Speed itself is never asserted (README: Speed); these check the instruments: a child's peak memory is the
child's, MediaPipe's worker answers, and a missing LiteRT is a missing extra, not a crash.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from helpers import DATA, REPO, assert_one_line_error, model_path

from blazeconv.bench import DEFAULT_MEDIAPIPE_PYTHON, installed_onnx_backends, mediapipe_command, run_measured
from blazeconv.bench.contenders import _MediaPipeWorker
from blazeconv.errors import OptionsError

MEDIAPIPE = REPO / DEFAULT_MEDIAPIPE_PYTHON


def test_bench_without_litert_names_the_bench_extra(run_cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)  # as if not installed
    code, _, err = run_cli("bench", "--quick", "--model", "short_range")
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


@pytest.mark.slow
def test_bench_quick_has_every_backend_and_the_targets(run_cli, tmp_path):
    """A shipped name and a .tflite of the user's (here a renamed copy of front's) in one run: rows for each."""
    table = tmp_path / "bench.md"
    mine = tmp_path / "mine.tflite"
    mine.write_bytes(model_path("front").read_bytes())
    code, out, err = run_cli("bench", "--quick", "--model", "short_range", "--model", mine, "--rounds", "1",
                             "--warmup", "0", "--batch-size", "2", "--throughput-images", "3", "--one-photo-runs", "1",
                             "--mediapipe-python", tmp_path / "no-python", "-o", table)
    assert code == 0, err
    labels = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}
    for heading in ("LiteRT (XNNPACK)", "eager PyTorch", "| short_range | 2 × 1 |", "| mine.tflite | 2 × 1 |",
                    "× MediaPipe images/s", "peak MiB", "detect one.jpg", "Targets (this run)",
                    *(labels[b] for b in installed_onnx_backends())):
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
        # The worker reports a duration in seconds: positive, and within the wall time of asking for it (an order
        # between two clocks of one run, not a speed: it holds on any machine).
        asked = time.perf_counter()
        seconds = worker.time()
        assert 0 < seconds <= time.perf_counter() - asked
    finally:
        worker.close()
    assert worker.process.returncode == 0



def test_bench_video_option_reaches_the_video_table(run_cli, monkeypatch):
    """``--video`` (repeatable) reaches the options, and the video rows make their table (nothing is measured)."""
    import blazeconv.bench
    from blazeconv.bench import BenchReport, ProcessRow, machine_summary

    clips = (DATA / "videos" / "asl_again.mkv", DATA / "videos" / "asl_book.mkv")
    asked = []

    def measured(options, progress=None):
        asked.append(options)
        report = BenchReport(options, machine_summary(options.threads))
        if options.videos:
            report.videos = {"asl_again.mkv (77 frames, 640×480)": [
                ProcessRow("detect", 77, 0.77, 1.2, 310.4, 77), ProcessRow("annotate", 77, 1.54, 2.0, 420, 77),
                ProcessRow("mediapipe video", 77, 1.1, 0.9, 180)]}
        return report

    monkeypatch.setattr(blazeconv.bench, "run_bench", measured)
    code, out, err = run_cli("bench", "--model", "short_range", "--video", clips[0], "--video", clips[1])
    assert code == 0, err
    assert asked[0].videos == clips
    assert "| clip | process | seconds | frames/s | CPU s | peak MiB | decoded | × MediaPipe's time |" in out
    assert "| asl_again.mkv (77 frames, 640×480) | detect | 0.77 | 100 | 1.20 | 310 | 77 | 0.70× |" in out
    assert "| asl_again.mkv (77 frames, 640×480) | annotate | 1.54 | 50 | 2.00 | 420 | 77 | 1.40× |" in out
    assert "| MediaPipe FaceDetector, VIDEO mode | 1.10 | 70 | 0.90 | 180 | — | 1.00× |" in out

    asked.clear()
    code, out, _ = run_cli("bench", "--model", "short_range")
    assert code == 0 and asked[0].videos == () and "frames/s" not in out  # no clip, no video table


def test_bench_video_option_refuses_a_missing_clip(run_cli, tmp_path):
    code, _, err = run_cli("bench", "--video", tmp_path / "missing.mp4")
    assert code == 2 and "missing.mp4" in err and "does not exist" in err


def test_video_rows_count_the_frames_detect_reads(tmp_path):
    """``_measure_videos`` without MediaPipe: a row per mode that runs (its frames: what detect reads; the frames
    the process decoded: each once), a note for each that fails."""
    pytest.importorskip("av")
    from blazeconv.bench import VIDEO_MODES, default_options
    from blazeconv.bench.measure import _measure_videos

    clip = DATA / "videos" / "asl_again.mkv"
    notes = []
    options = default_options(["short_range"], videos=(clip,))
    results = _measure_videos(options.models[0], "onnxruntime", None, options, notes)
    rows = results["asl_again.mkv (77 frames, 640×480)"]
    assert [r.contender for r in rows] == ["detect", "exact", "annotate", "blur"] == list(VIDEO_MODES), notes
    assert all(r.images == 77 and r.seconds > 0 and r.peak_mib > 0 and r.decoded == 77 for r in rows)


@pytest.mark.skipif(not MEDIAPIPE.is_file(), reason=f"no MediaPipe environment at {MEDIAPIPE}")
def test_mediapipe_worker_video_mode_gives_the_golden_frames(tmp_path):
    """The worker's video mode is what made tests/data/mediapipe_video.json: the same frames and faces again."""
    from blazeconv.sources import shipped_model
    from blazeconv.variants import VARIANTS

    golden = json.loads((DATA / "mediapipe_video.json").read_text())["clips"]["asl_again.mkv"]["short_range"]
    out = tmp_path / "frames.jsonl"
    done = subprocess.run(mediapipe_command(MEDIAPIPE, shipped_model(VARIANTS["short_range"]), 0.5, "video",
                                            str(DATA / "videos" / "asl_again.mkv"), str(out)),
                          capture_output=True, text=True, check=True)
    assert done.stdout.split() == [str(len(golden)), str(sum(map(len, golden)))]
    frames = [json.loads(line) for line in out.read_text().splitlines()]
    assert [f["frame"] for f in frames] == list(range(len(golden)))
    assert all(f1["time"] < f2["time"] for f1, f2 in zip(frames, frames[1:]))
    for frame, expected in zip(frames, golden):
        assert [[round(v, 6) for v in d["box"]] for d in frame["detections"]] == [d["box"] for d in expected]


def test_blur_rows_are_reported_against_deface_on_the_same_clip():
    from blazeconv.bench.anonymise import BlurRow, blur_table

    rows = [BlurRow("a.mp4", "default", 100, 2.0, 300, 50, 0.96), BlurRow("a.mp4", "deface 1.5.0 (its defaults)", 100,
                                                                         8.0, 160, 50, 0.5),
            BlurRow("b.mp4", "default", 10, 1.0, 200, 0, None, "3 frames in the output, 10 in the source")]
    lines = blur_table(rows)
    assert lines[2] == "| a.mp4 | default | 100 | 2.00 | 50 | 4.0× | 300 | 50 | 96 % |"
    assert lines[3].endswith("| 1.0× | 160 | 50 | 50 % |")
    assert lines[4] == "| b.mp4 | default | 10 | 1.00 | 10 | — | 200 | 0 | — (3 frames in the output, 10 in the source) |"


@pytest.mark.parametrize(("kind", "accepted"), [("shipped", True), ("tflite", True), ("pth", False), ("onnx", False)])
def test_bench_takes_a_shipped_name_or_a_tflite(kind, accepted, run_cli, monkeypatch, tmp_path, converted):
    """What reaches the options (nothing is measured): the model's label, its .tflite and its variant; a .pth or an
    .onnx has no .tflite for LiteRT, the reference: one options error naming it (exit 7), before any work."""
    import blazeconv.bench
    from blazeconv.bench import BenchReport, machine_summary
    from blazeconv.convert import save_state_dict

    argument = {"shipped": "back", "tflite": tmp_path / "mine.tflite", "pth": tmp_path / "mine.pth",
                "onnx": tmp_path / "mine.onnx"}[kind]
    if kind == "tflite":
        argument.write_bytes(model_path("back").read_bytes())
    elif kind == "pth":
        save_state_dict(converted("back").state_dict, argument)
    elif kind == "onnx":
        argument.write_bytes(b"not read: refused by its kind")
    asked = []
    monkeypatch.setattr(blazeconv.bench, "run_bench",
                        lambda options, progress=None: asked.append(options) or BenchReport(options, machine_summary(1)))
    code, _, err = run_cli("bench", "--model", argument, "--batch", "3")
    if not accepted:
        assert_one_line_error(code, err, argument, 7)
        assert "blazeconv bench takes a shipped model name or a .tflite (LiteRT, the reference, runs TFLite files)" in err
        assert not asked
        return
    assert code == 0, err
    (model,) = asked[0].models
    assert model.variant.name == "back" and model.name == ("back" if kind == "shipped" else "mine.tflite")
    assert model.path.read_bytes() == model_path("back").read_bytes()
    assert asked[0].batch_size == 3 and "blazeconv: --batch is deprecated and will go: use --batch-size" in err
