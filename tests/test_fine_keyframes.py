"""Fine scales on keyframes (``DetectionSettings.fine_every``, ``--fine-every K|auto``): every frame looked at whole,
the tile levels every K-th frame only, the small faces the tiles find carried along their tracks between (detect)
or their masks held until the next fine keyframe (blur, whose default is ``auto``: K from the frame rate).

The clip: 9 frames of the licensed signing clip (tests/data/videos/asl_again.mkv) on a 1280x720 grey canvas twice,
at full size (a face of about 82 px, which the whole picture finds) and shrunk to 240x180 in a corner (a face of
about 27 px, below the whole picture's band at 1280 px: only the tiles find it)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import DATA, jsonl_records, pyav_frames, write_clip

pytest.importorskip("scipy")
pytest.importorskip("av")

from blazeconv import FaceDetector  # noqa: E402
from blazeconv.detection.settings import MAX_FINE_EVERY, DetectionSettings, Sampling  # noqa: E402
from blazeconv.detection.tracking import iou_matrix  # noqa: E402
from blazeconv.errors import OptionsError  # noqa: E402

VIDEOS = DATA / "videos"
FRAMES = 9
K = 4
# A face's longer side (pixels of the 1280-px frame) under which it is the small one (the large is about 82 px).
SMALL = 50


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from PIL import Image

    frames = []
    for _, image in pyav_frames(VIDEOS / "asl_again.mkv")[:FRAMES]:
        canvas = np.full((720, 1280, 3), 128, np.uint8)
        canvas[120:600, 0:640] = image
        canvas[500:680, 1000:1240] = np.asarray(Image.fromarray(image).resize((240, 180), Image.BILINEAR))
        frames.append(canvas)
    path = tmp_path_factory.mktemp("fine") / "two_faces.mp4"
    write_clip(path, frames, [round(k * 1000 / 30) for k in range(FRAMES)])
    return path


@pytest.fixture(scope="module")
def every_level(clip):
    return list(FaceDetector().video(clip, track=True))


def _small(detections):
    return [d for d in detections if (d.box.xmax - d.box.xmin) * 1280 < SMALL]


def _large(detections):
    return [d for d in detections if (d.box.xmax - d.box.xmin) * 1280 >= SMALL]


def test_the_clip_has_a_face_only_the_tiles_find(clip, every_level):
    whole = list(FaceDetector(tile=False).video(clip))
    assert all(len(_small(r.detections)) == 1 and len(_large(r.detections)) == 1 for r in every_level)
    assert not any(_small(r.detections) for r in whole)


def test_small_face_found_on_fine_keyframes_is_carried_between(clip, every_level):
    fine = list(FaceDetector(fine_every=K).video(clip))
    assert [r.frame for r in fine] == list(range(FRAMES))
    assert fine[-1].last and not any(r.last for r in fine[:-1])
    for r, reference in zip(fine, every_level):
        small, large = _small(r.detections), _large(r.detections)
        assert len(small) == 1 and len(large) == 1, r
        assert not large[0].filled  # the whole picture finds the large face on every frame
        assert small[0].filled == (r.frame % K != 0)  # the small one: detected on fine keyframes, carried between
        if r.frame % K == 0:  # a fine keyframe: every level, today's answer
            assert [d.box for d in r.detections] == [d.box for d in reference.detections]
        expected = np.asarray([list(_small(reference.detections)[0].box)])
        assert iou_matrix(np.asarray([list(small[0].box)]), expected)[0, 0] >= 0.5


def test_fine_every_1_is_todays_output(clip, every_level):
    again = list(FaceDetector(fine_every=1).video(clip, track=True))
    assert [(r.frame, r.detections) for r in again] == [(r.frame, r.detections) for r in every_level]


def test_fine_every_1_cli_writes_todays_jsonl(run_cli, clip, tmp_path):
    for name, options in (("today", ()), ("one", ("--fine-every", "1"))):
        code, _, err = run_cli("detect", clip, "--jsonl", tmp_path / f"{name}.jsonl", "-q", *options)
        assert code == 0, err
    assert (tmp_path / "one.jsonl").read_text() == (tmp_path / "today.jsonl").read_text()


def test_detect_fine_every_cli_marks_carried_faces(run_cli, clip, tmp_path):
    out = tmp_path / "fine.jsonl"
    code, _, err = run_cli("detect", clip, "--fine-every", str(K), "--jsonl", out, "-q")
    assert code == 0, err
    settings = json.loads(out.read_text().splitlines()[0])["blazeconv_settings"]
    assert settings["video_tracking"]["fine_every"] == K
    records = jsonl_records(out)
    assert [r["frame"] for r in records] == list(range(FRAMES))
    for record in records:
        assert len(record["detections"]) == 2 and all("track" in d for d in record["detections"])
        filled = [d for d in record["detections"] if d.get("filled")]
        assert len(filled) == (0 if record["frame"] % K == 0 else 1), record


def _blur_regions(run_cli, clip, folder, *options) -> list:
    boxes = folder / "b.jsonl"
    code, _, err = run_cli("blur", clip, "-o", folder / "b.mp4", "--boxes-jsonl", boxes, "-q", *options)
    assert code == 0, err
    records = [json.loads(line) for line in boxes.read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(FRAMES))
    return [r["regions"] for r in records]


@pytest.mark.parametrize("options", [("--fine-every", str(K)), ("--fine-every", str(K), "--track"), ()],
                         ids=["K", "K-tracked", "default"])
def test_blur_fine_every_masks_both_faces_on_every_frame(run_cli, clip, tmp_path, options):
    for regions in _blur_regions(run_cli, clip, tmp_path, *options):
        sides = sorted(max(r[2] - r[0], r[3] - r[1]) for r in regions)
        assert len(sides) == 2 and sides[0] < 0.5 * sides[1], regions  # masks enlarge the boxes alike


def test_blur_default_is_fine_every_auto(run_cli, clip, tmp_path):
    """The clip runs at 30 fps: auto is K = 4, the frames of 0.15 s; masks are those of --fine-every 4."""
    assert DetectionSettings(fine_every="auto").fine_every_at(30.0) == K
    (tmp_path / "auto").mkdir()
    (tmp_path / "k").mkdir()
    assert _blur_regions(run_cli, clip, tmp_path / "auto") == _blur_regions(run_cli, clip, tmp_path / "k",
                                                                             "--fine-every", str(K))


def test_blur_default_needs_no_tracker(clip, tmp_path):
    """blur's default (fine keyframes, masks held) runs on the plain install: no scipy, no tracker."""
    out = tmp_path / "b.mp4"
    code = ("import sys; sys.modules['scipy'] = None; "
            f"sys.argv = ['blazeconv', 'blur', {str(clip)!r}, '-o', {str(out)!r}, '-q']; "
            "from blazeconv.__main__ import main; main()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 0


@pytest.mark.parametrize(("fps", "changes", "expected"), [
    (30.0, {}, 4), (29.97, {}, 4), (25.0, {}, 3), (24.0, {}, 3), (15.0, {}, 2), (60.0, {}, MAX_FINE_EVERY),
    (240.0, {}, MAX_FINE_EVERY), (10.0, {}, 1), (1.0, {}, 1), (None, {}, 1), (0.0, {}, 1),
    (30.0, {"exact": True}, 1), (30.0, {"tile": False}, 1), (30.0, {"sampling": Sampling(every=2)}, 1),
    (30.0, {"sampling": Sampling(fps=5)}, 1), (30.0, {"track": True, "detect_every": 2}, 1),
    (30.0, {"sampling": Sampling(start=1.0, end=2.0)}, 4),
])
def test_fine_every_auto_follows_the_frame_rate(fps, changes, expected):
    """auto: the frames of FINE_INTERVAL (0.15) seconds, 1 to MAX_FINE_EVERY (8); 1 where the tiles are not run or
    not every frame is detected; a number given is kept."""
    assert DetectionSettings(fine_every="auto", **changes).fine_every_at(fps) == expected
    assert DetectionSettings(fine_every=3).fine_every_at(fps) == 3


@pytest.mark.parametrize("options", [["--exact"], ["--no-tile"], ["--detect-every", "2"], ["--annotate", "a"],
                                     ["--crops", "c"]])
def test_detect_fine_every_refused_combinations(run_cli, tmp_path, options):
    options = [str(tmp_path / o) if o in ("a", "c") else o for o in options]
    code, _, err = run_cli("detect", VIDEOS / "asl_again.mkv", "--fine-every", "2", *options)
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "--fine-every" in errors[0] and "Traceback" not in err


@pytest.mark.parametrize("options", [["--exact"], ["--no-tile"], ["--detect-every", "2"]])
def test_blur_fine_every_refused_combinations(run_cli, tmp_path, options):
    code, _, err = run_cli("blur", VIDEOS / "asl_again.mkv", "-o", tmp_path / "x.mp4", "--fine-every", "2", *options)
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "--fine-every" in errors[0] and "Traceback" not in err
    assert not (tmp_path / "x.mp4").exists()


def test_blur_fine_every_refused_without_a_video(run_cli, tmp_path):
    code, _, err = run_cli("blur", DATA / "images" / "1face.png", "-o", tmp_path / "x.png", "--fine-every", "2")
    assert code == 2
    assert "--fine-every applies to videos" in err and "Traceback" not in err


@pytest.mark.parametrize(("changes", "message"), [
    ({"fine_every": 0}, "fine_every must be a whole number"),
    ({"fine_every": True}, "fine_every must be a whole number"),
    ({"fine_every": "sometimes"}, "fine_every must be a whole number >= 1 or 'auto'"),
    ({"fine_every": 2, "exact": True}, "not with exact or tile=False"),
    ({"fine_every": 2, "tile": False}, "not with exact or tile=False"),
    ({"fine_every": 2, "track": True, "detect_every": 2}, "give one of them"),
])
def test_settings_refuse(changes, message):
    with pytest.raises(OptionsError, match=message):
        DetectionSettings(**changes)


def test_fine_every_implies_tracking():
    assert DetectionSettings(fine_every=2).tracked and not DetectionSettings().tracked
