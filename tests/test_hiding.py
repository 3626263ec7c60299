"""``blazeconv.bench.hiding``: the share of reference faces an anonymised video or photo no longer shows.

Real clip, real face: ``asl_again.mkv`` (77 frames, 640x480, one person facing the camera in every frame). The
outputs are made here with PyAV (H.264) and Pillow, so the measure is checked without deface (CI has no deface venv).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import DATA, REPO, pyav_frames

av = pytest.importorskip("av")

from PIL import Image, ImageFilter  # noqa: E402 (after the skip)

from blazeconv.bench.hiding import FrameCountMismatch, hidden_share, read_reference  # noqa: E402

CLIP = DATA / "videos" / "asl_again.mkv"
FRAMES = 77
# The face box shared by every frame of asl_again.mkv: the intersection, in pixels of the 640x480 frame, of the
# face's box in each of its 77 frames as FaceDetector("short_range") found them once (xmin 270..290, ymin 76..91,
# xmax 356..378, ymax 165..177 over the clip; its other boxes, on the signing hands, are left out). Inside the face
# in every frame, so the reference needs no detector here.
FACE = (290, 91, 356, 165)
REFERENCE = [[[*FACE, 1.0]] for _ in range(FRAMES)]


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """The clip's frames, (480, 640, 3) uint8 RGB each (no display rotation)."""
    decoded = [image for _, image in pyav_frames(CLIP)]
    assert len(decoded) == FRAMES
    return decoded


def encode(path: Path, frames: list[np.ndarray]) -> Path:
    """``frames`` as an H.264 MP4 at 30 fps, libx264's defaults (CRF 23): a plain re-encode."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())
    return path


def black(rgb: np.ndarray) -> np.ndarray:
    out = rgb.copy()
    x1, y1, x2, y2 = FACE
    out[y1:y2, x1:x2] = 0
    return out


def blurred(rgb: np.ndarray, margin: int = 16) -> np.ndarray:
    """The face box and a margin round it blurred with a Gaussian of radius 12 px (the box is 66 x 74 px)."""
    image = Image.fromarray(rgb)
    x1, y1, x2, y2 = FACE
    area = (x1 - margin, y1 - margin, x2 + margin, y2 + margin)
    image.paste(image.crop(area).filter(ImageFilter.GaussianBlur(12)), area[:2])
    return np.asarray(image)


def test_a_plain_reencode_hides_no_face(tmp_path, frames):
    result = hidden_share(CLIP, encode(tmp_path / "plain.mp4", frames), REFERENCE)
    assert (result["frames"], result["boxes"], result["hidden"], result["share"]) == (FRAMES, FRAMES, 0, 0.0)
    ratios = [r for frame in result["per_frame"] for r in frame["ratios"]]
    # Detail kept (0.4 is hidden_share's keep_ratio), not invented: measured 0.96-1.01.
    assert min(ratios) > 0.4 and max(ratios) < 1.5, (min(ratios), max(ratios))
    assert result["source_size"] == result["output_size"] == [640, 480]


@pytest.mark.parametrize("hide", [black, pytest.param(blurred, marks=pytest.mark.slow)], ids=["black", "blur"])
def test_a_filled_or_blurred_face_is_hidden_in_every_frame(tmp_path, frames, hide):
    result = hidden_share(CLIP, encode(tmp_path / "hidden.mp4", [hide(rgb) for rgb in frames]), REFERENCE)
    assert (result["boxes"], result["hidden"], result["share"]) == (FRAMES, FRAMES, 1.0)


@pytest.mark.slow
def test_frames_are_compared_in_step(tmp_path, frames):
    """Only the even frames blurred: exactly those count as hidden, so frame k is measured against frame k."""
    output = encode(tmp_path / "even.mp4", [blurred(rgb) if k % 2 == 0 else rgb for k, rgb in enumerate(frames)])
    result = hidden_share(CLIP, output, REFERENCE)
    assert [frame["hidden"] for frame in result["per_frame"]] == [int(k % 2 == 0) for k in range(FRAMES)]
    assert (result["boxes"], result["hidden"]) == (FRAMES, 39)


@pytest.mark.slow
def test_boxes_under_min_score_are_ignored(tmp_path, frames):
    reference = [[[*FACE, 0.3 if k < 7 else 0.9]] for k in range(FRAMES)]
    result = hidden_share(CLIP, encode(tmp_path / "black.mp4", [black(rgb) for rgb in frames]), reference)
    assert (result["boxes"], result["hidden"]) == (FRAMES - 7, FRAMES - 7)
    assert [frame["ratios"] for frame in result["per_frame"][:7]] == [[]] * 7
    assert hidden_share(CLIP, CLIP, reference, min_score=0.95)["boxes"] == 0


@pytest.mark.slow
def test_a_missing_frame_is_reported_not_matched(tmp_path, frames):
    shorter = encode(tmp_path / "shorter.mp4", [blurred(rgb) for rgb in frames[:-1]])
    with pytest.raises(FrameCountMismatch, match="77 in the source .* 76 in the output .* 77 in the reference") as error:
        hidden_share(CLIP, shorter, REFERENCE)
    assert (error.value.source_frames, error.value.output_frames, error.value.reference_frames) == (77, 76, 77)
    with pytest.raises(FrameCountMismatch) as error:  # the longer one on the output side
        hidden_share(shorter, CLIP, REFERENCE[:-1])
    assert (error.value.source_frames, error.value.output_frames, error.value.reference_frames) == (76, 77, 76)
    with pytest.raises(FrameCountMismatch, match="76 in the reference"):
        hidden_share(CLIP, CLIP, REFERENCE[:-1])


def test_photos_and_a_resized_output(tmp_path, frames):
    """A photo is one frame; an output at another size is measured per source pixel, in the scaled box."""
    source, plain, hidden = tmp_path / "source.png", tmp_path / "double.png", tmp_path / "double_blurred.png"
    Image.fromarray(frames[40]).save(source)
    Image.fromarray(frames[40]).resize((1280, 960), Image.BILINEAR).save(plain)
    Image.fromarray(blurred(frames[40])).resize((1280, 960), Image.BILINEAR).save(hidden)
    reference = [[[*FACE, 1.0]]]
    same = hidden_share(source, source, reference)
    assert (same["boxes"], same["hidden"], same["per_frame"][0]["ratios"]) == (1, 0, [1.0])
    kept = hidden_share(source, plain, reference)
    assert kept["output_size"] == [1280, 960] and kept["hidden"] == 0
    assert 0.7 < kept["per_frame"][0]["ratios"][0] < 1.1, kept["per_frame"][0]["ratios"]
    assert hidden_share(source, hidden, reference)["hidden"] == 1


def test_boxes_too_small_or_flat_are_skipped(tmp_path, frames):
    source = tmp_path / "source.png"
    image = frames[0].copy()
    image[:40, :40] = 128  # a flat corner
    Image.fromarray(image).save(source)
    result = hidden_share(source, source, [[[0, 0, 40, 40, 1.0], [300, 100, 301, 300, 1.0], [*FACE, 1.0]]])
    assert (result["boxes"], result["skipped"], result["per_frame"][0]["ratios"]) == (1, 2, [None, None, 1.0])


def test_read_reference_reads_the_worker_files(tmp_path):
    lines = tmp_path / "clip.jsonl"
    lines.write_text("".join(json.dumps({"frame": k, "time": k / 30, "boxes": boxes}) + "\n"
                             for k, boxes in enumerate([[[1, 2, 30, 40, 0.9], [5, 6, 7, 8, 0.25]], [], [[0, 0, 9, 9, 0.5]]])))
    frames = read_reference(lines)
    assert [f.shape for f in frames] == [(2, 5), (0, 5), (1, 5)]
    np.testing.assert_array_equal(frames[0], [[1, 2, 30, 40, 0.9], [5, 6, 7, 8, 0.25]])
    photo = tmp_path / "photo.json"
    photo.write_text(json.dumps({"image": "p.jpg", "width": 64, "height": 48, "frame": 0, "boxes": [[1, 2, 3, 4, 0.7]]}))
    np.testing.assert_array_equal(read_reference(photo)[0], [[1, 2, 3, 4, 0.7]])
    shuffled = tmp_path / "shuffled.jsonl"
    shuffled.write_text('{"frame": 0, "boxes": []}\n{"frame": 2, "boxes": []}\n')
    with pytest.raises(ValueError, match="shuffled.jsonl: line 2 is not frame 1"):
        read_reference(shuffled)
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text('{"frame": 0, "boxes": [[1, 2, 3, 4]]}\n{"frame": 1, "boxes": []}\n')
    with pytest.raises(ValueError, match=r"wrong.jsonl: line 1: .*shape \(1, 4\)"):
        read_reference(wrong)


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            modules.add("." if node.level else node.module.split(".")[0])
    return modules


@pytest.mark.parametrize(("name", "allowed"), [
    ("hiding.py", {"numpy", "PIL", "av"}),
    ("deface_worker.py", {"numpy", "PIL", "av", "deface"}),  # run in deface's venv: never blazeconv
])
def test_the_measure_and_the_worker_import_nothing_of_blazeconv(name, allowed):
    outside = _imported_modules(REPO / "blazeconv" / "bench" / name) - set(sys.stdlib_module_names) - allowed
    assert outside == set(), outside


def test_the_worker_without_arguments_prints_its_usage():
    done = subprocess.run([sys.executable, str(REPO / "blazeconv" / "bench" / "deface_worker.py")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "deface_worker.py detect CLIP OUT.jsonl" in done.stderr
