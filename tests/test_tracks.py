"""Tracks: ``detection.tracking.Tracker`` alone on synthetic boxes (two faces crossing, a miss, a cut), cuts told
apart on thumbnails, and ``FaceDetector.video(track=True)`` / ``detect --track`` on real clips (tests/data/videos,
licensed; the shared clips when /work/shared/videos is there)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helpers import DATA, jsonl_records, pyav_frames, write_clip

pytest.importorskip("scipy")

from blazeconv import FaceDetector  # noqa: E402
from blazeconv.detection import Detection  # noqa: E402
from blazeconv.detection.tracking import (  # noqa: E402
    LOST_TRACK_BUFFER,
    Tracker,
    interpolated,
    iou_matrix,
    is_cut,
    thumbnail,
)

VIDEOS = DATA / "videos"
SHARED = Path("/work/shared/videos")
POINTS = [(0.0, 0.0)] * 6


def face(x: float, y: float, side: float = 0.1) -> Detection:
    return Detection(0.9, (x, y, x + side, y + side), POINTS)


def test_iou_matrix():
    boxes = np.array([[0, 0, 1, 1], [0.5, 0, 1.5, 1], [3, 3, 3, 3]], float)
    got = iou_matrix(boxes, boxes)
    assert got[0, 0] == pytest.approx(1.0, abs=1e-12)
    assert got[0, 1] == pytest.approx(0.5 / 1.5, abs=1e-12)
    assert got[2, 2] == 0.0  # no area


def test_two_faces_crossing_keep_their_ids():
    tracker = Tracker()
    ids = []
    for k in range(31):  # A goes right, B left; their boxes overlap for several frames around k = 15
        a, b = face(0.1 + 0.02 * k, 0.40), face(0.7 - 0.02 * k, 0.42)
        found = tracker.update([b, a] if k % 2 else [a, b], k)
        by_place = {(round(d.box.xmin, 6), round(d.box.ymin, 6)): d.track for d in found}
        ids.append(tuple(by_place[round(d.box.xmin, 6), round(d.box.ymin, 6)] for d in (a, b)))
    assert set(ids) == {(0, 1)}, ids


def test_a_miss_of_three_frames_keeps_the_id_and_a_long_one_ends_it():
    tracker = Tracker()
    seen = [tracker.update([face(0.3 + 0.01 * k, 0.3)], k)[0].track for k in range(5)]
    for k in range(5, 8):  # missed for 3 frames
        assert tracker.update([], k) == []
    seen += [tracker.update([face(0.3 + 0.01 * k, 0.3)], k)[0].track for k in range(8, 12)]
    assert set(seen) == {0}
    last = 11
    for k in range(last + 1, last + 2 + LOST_TRACK_BUFFER):  # missed one frame more than the buffer
        tracker.update([], k)
    again = tracker.update([face(0.3 + 0.01 * (last + 2 + LOST_TRACK_BUFFER), 0.3)], last + 2 + LOST_TRACK_BUFFER)
    assert again[0].track == 1


def test_a_cut_ends_every_track_and_reset_starts_over():
    tracker = Tracker()
    assert [d.track for d in tracker.update([face(0.1, 0.1), face(0.5, 0.5)], 0)] == [0, 1]
    assert [d.track for d in tracker.update([face(0.1, 0.1), face(0.5, 0.5)], 1)] == [0, 1]
    assert [d.track for d in tracker.update([face(0.1, 0.1), face(0.5, 0.5)], 2, cut=True)] == [2, 3]
    tracker.reset()
    assert [d.track for d in tracker.update([face(0.5, 0.5)], 0)] == [0]
    with pytest.raises(ValueError, match="in order"):
        tracker.update([], 0)


def test_untracked_records_have_no_track_key():
    plain = face(0.1, 0.1)
    assert set(plain.to_dict()) == {"score", "box", "keypoints"}
    tracked = Tracker().update([plain], 0)[0]
    assert tracked.to_dict()["track"] == 0 and "filled" not in tracked.to_dict()
    assert tracked.to_pixels(640, 480).track == 0


def test_cuts_between_real_clips_and_none_within():
    """Within each clip no cut; from the last frame of one signing clip to the first of another (alike people and
    rooms), a cut (the thresholds were measured on these: within <= 0.049, across >= 0.085)."""
    thumbs = {}
    for name in ("asl_again.mkv", "asl_book.mkv"):
        frames = [thumbnail(image) for _, image in pyav_frames(VIDEOS / name)]
        assert not any(is_cut(a, b) for a, b in zip(frames, frames[1:])), name
        thumbs[name] = frames
    assert is_cut(thumbs["asl_again.mkv"][-1], thumbs["asl_book.mkv"][0])
    assert is_cut(thumbs["asl_book.mkv"][-1], thumbs["asl_again.mkv"][0])
    assert not is_cut(None, thumbs["asl_book.mkv"][0])


def _tracks(results) -> dict[int, list[int]]:
    frames: dict[int, list[int]] = {}
    for result in results:
        for d in result.detections:
            frames.setdefault(d.track, []).append(result.frame)
    return frames


@pytest.fixture(scope="module")
def detector():
    pytest.importorskip("av")
    return FaceDetector()


@pytest.mark.parametrize("name", ["asl_again.mkv", "asl_book.mkv"])
def test_one_person_in_view_is_one_long_track(detector, name):
    """One person signs in every frame: one track holds every frame with a face of that person (tracks of other,
    short false detections may come beside it, never a second long one)."""
    results = list(detector.video(VIDEOS / name, track=True))
    tracks = _tracks(results)
    faced = sum(1 for r in results if r.detections)
    longest = max(tracks.values(), key=len)
    assert len(longest) >= 0.95 * faced, {k: len(v) for k, v in tracks.items()}
    assert sorted(len(v) for v in tracks.values())[-2:-1] < [len(results) // 2]
    untracked = list(detector.video(VIDEOS / name))
    assert [[d.box for d in r.detections] for r in untracked] == [[d.box for d in r.detections] for r in results]
    assert all(d.track is None for r in untracked for d in r.detections)


def test_a_cut_in_a_clip_ends_the_tracks(detector, tmp_path):
    """Two signing clips joined into one: no track holds frames from both sides of the join."""
    first, second = pyav_frames(VIDEOS / "asl_again.mkv"), pyav_frames(VIDEOS / "asl_book.mkv")
    frames = [image for _, image in first + second]
    clip = tmp_path / "joined.mp4"
    write_clip(clip, frames, [round(k * 1000 / 30) for k in range(len(frames))])
    tracks = _tracks(detector.video(clip, track=True))
    join = len(first)
    assert all(max(v) < join or min(v) >= join for v in tracks.values()), tracks
    assert any(min(v) >= join for v in tracks.values()) and any(max(v) < join for v in tracks.values())


def test_detect_track_cli(run_cli, tmp_path):
    pytest.importorskip("av")
    clip = VIDEOS / "asl_book.mkv"
    code, out, err = run_cli("detect", clip, "--track", "--jsonl", tmp_path / "t.jsonl")
    assert code == 0, err
    assert "1 track" in out
    records = jsonl_records(tmp_path / "t.jsonl")
    assert all("track" in d for r in records for d in r["detections"])
    assert Counter(d["track"] for r in records for d in r["detections"]).most_common(1)[0][0] == 0
    settings = json.loads((tmp_path / "t.jsonl").read_text().splitlines()[0])["blazeconv_settings"]
    assert settings["video_tracking"]["lost_track_buffer"] == LOST_TRACK_BUFFER
    code, out, err = run_cli("detect", clip, "--jsonl", tmp_path / "u.jsonl", "-q")
    assert code == 0, err
    assert not any("track" in d for r in jsonl_records(tmp_path / "u.jsonl") for d in r["detections"])
    assert "video_tracking" not in (tmp_path / "u.jsonl").read_text().splitlines()[0]


def test_track_refused_without_a_video(run_cli):
    code, out, err = run_cli("detect", DATA / "images", "--track")
    assert code == 2
    assert "--track" in err and "Traceback" not in err


@pytest.mark.skipif(not SHARED.is_dir(), reason="the shared clips (/work/shared/videos) are not on this machine")
def test_shared_clip_one_person(detector):
    tracks = _tracks(detector.video(SHARED / "asl_sister.mkv", track=True))
    assert sorted(len(v) for v in tracks.values())[-1] >= 80, {k: len(v) for k, v in tracks.items()}


def test_interpolated_fills_only_tracks_on_both_keyframes():
    before = Tracker().update([face(0.1, 0.2), face(0.6, 0.6)], 0)
    after = [Detection(0.5, (0.3, 0.2, 0.4, 0.3), [(1.0, 1.0)] * 6, track=0)]  # track 1 ended between
    (mid,) = interpolated(before, after, 0.25)
    assert mid.track == 0 and mid.filled and mid.to_dict()["filled"] is True
    assert list(mid.box) == pytest.approx([0.15, 0.2, 0.25, 0.3], abs=1e-12)
    assert mid.keypoints[0] == pytest.approx((0.25, 0.25), abs=1e-12)
    assert mid.score == pytest.approx(0.8, abs=1e-12)


def test_detect_every_fills_every_frame_and_keeps_keyframes(detector):
    full = list(detector.video(VIDEOS / "asl_again.mkv", track=True))
    keyed = list(detector.video(VIDEOS / "asl_again.mkv", track=True, detect_every=4))
    assert [r.frame for r in keyed] == [r.frame for r in full]
    assert [r.time for r in keyed] == [r.time for r in full]
    assert keyed[-1].last and not any(r.last for r in keyed[:-1])
    for r, f in zip(keyed, full):
        if r.frame % 4 == 0:  # a keyframe: the same detections as detecting every frame, none filled
            assert [d.box for d in r.detections] == [d.box for d in f.detections]
            assert not any(d.filled for d in r.detections)
        else:
            assert all(d.filled for d in r.detections)
    assert sum(1 for r in keyed if r.detections) >= 0.9 * len(keyed)


@pytest.mark.parametrize("extra", [["--every", "2"], ["--fps", "5"], ["--frames", "3"], ["--crops", "c"]])
def test_detect_every_refused_combinations(run_cli, tmp_path, extra):
    extra = [str(tmp_path / e) if e == "c" else e for e in extra]
    code, out, err = run_cli("detect", VIDEOS / "asl_again.mkv", "--detect-every", "3", *extra)
    assert code == 2
    assert "--detect-every" in err and "Traceback" not in err


def test_detect_every_needs_track():
    from blazeconv.detection.settings import DetectionSettings, Sampling
    from blazeconv.errors import OptionsError

    with pytest.raises(OptionsError, match="track=True"):
        DetectionSettings(detect_every=2)
    with pytest.raises(OptionsError, match="cannot be combined"):
        DetectionSettings(track=True, detect_every=2, sampling=Sampling(every=2))
    assert DetectionSettings(track=True, detect_every=2).detect_every == 2


def test_crops_per_track_and_best(run_cli, tmp_path):
    pytest.importorskip("av")
    crops = tmp_path / "crops"
    for _ in range(2):  # a second run replaces its own crops, track folders included
        code, out, err = run_cli("detect", VIDEOS / "asl_book.mkv", "--track", "--crops", crops, "--best", "3", "-q")
        assert code == 0, err
    index = [json.loads(line) for line in (crops / "index.jsonl").read_text().splitlines()]
    last_run = index[len(index) // 2:]
    tracks = Counter(line["track"] for line in last_run)
    assert all(count <= 3 for count in tracks.values()) and tracks[0] == 3
    for line in last_run:
        assert (crops / line["crop"]).is_file()
        assert line["crop"].startswith(f"asl_book/track_{line['track']:04d}/f{line['frame']:06d}")
    # the 3 kept crops of track 0 are its largest boxes times score among all of its detections
    records = list(FaceDetector().video(VIDEOS / "asl_book.mkv", track=True))
    ranks = sorted(((d.box.xmax - d.box.xmin) * 640 * (d.box.ymax - d.box.ymin) * 480 * d.score, r.frame)
                   for r in records for d in r.detections if d.track == 0)
    assert sorted(line["frame"] for line in last_run if line["track"] == 0) == sorted(f for _, f in ranks[-3:])


def test_best_needs_crops_and_track(run_cli, tmp_path):
    code, out, err = run_cli("detect", VIDEOS / "asl_book.mkv", "--crops", tmp_path / "c", "--best", "2")
    assert code == 2 and "--best" in err


def tracked(d: Detection, track: int) -> Detection:
    return Detection(d.score, d.box, d.keypoints, track=track)


def test_track_at_detected_interpolated_and_moved_on_past_the_ends():
    from blazeconv.detection.tracking import track_at

    found = [(2, tracked(face(0.10, 0.1), 0)), (4, tracked(face(0.14, 0.1), 0)), (8, tracked(face(0.30, 0.1), 0))]
    assert track_at(found, 4) == [found[1][1]]  # its own frame: the detection itself
    (mid,) = track_at(found, 6)  # between two detections: interpolated
    assert mid.filled and list(mid.box) == pytest.approx([0.22, 0.1, 0.32, 0.2], abs=1e-12)
    held, moved = track_at(found, 10)  # after the last: held there, and moved on at 0.04 per frame
    assert held.filled and list(held.box) == list(found[2][1].box)
    assert list(moved.box) == pytest.approx([0.38, 0.1, 0.48, 0.2], abs=1e-12)
    assert moved.keypoints[0] == pytest.approx((0.08, 0.0), abs=1e-12)
    held, moved = track_at(found, 0)  # before the first: moved back at 0.02 per frame
    assert list(moved.box) == pytest.approx([0.06, 0.1, 0.16, 0.2], abs=1e-12)
    assert track_at(found[:1], 5) == [replace(found[0][1], filled=True)]  # one detection: held only


def test_masks_follow_tracks_across_a_miss_and_beyond_the_ends():
    from blazeconv.detection.video_annotation import SPREAD, along_tracks

    a0, a4 = tracked(face(0.1, 0.1), 0), tracked(face(0.3, 0.1), 0)
    loose = face(0.7, 0.7)  # untracked: kept as without tracks
    samples = [(0, [a0, loose]), (4, [a4])]  # track 0 missed on frames 1..3
    got = along_tracks(samples, 2, spread=0)
    assert got[0] is loose and len(got) == 2
    assert got[1].filled and list(got[1].box) == pytest.approx([0.2, 0.1, 0.3, 0.2], abs=1e-12)
    assert along_tracks(samples, 4, spread=0) == [loose, a4]  # its own frame: the detection itself
    # with a spread, the frames next to it too: frame 4's mask covers frame 3's and frame 5's places of the face
    boxes = sorted(round(d.box.xmin, 6) for d in along_tracks(samples, 4, spread=1)[1:])
    assert boxes == [0.25, 0.3, 0.3, 0.35]  # frame 3 interpolated, 4 detected, 5 held and moved on
    assert len(along_tracks(samples, 4)) == 1 + 2 * SPREAD + 1 + SPREAD  # by default SPREAD frames each side
    assert [list(d.box) for d in along_tracks([(4, [a4])], 6, spread=0)] == [list(a4.box)]  # one sample: held


def test_blur_along_tracks_hides_as_the_union_does(tmp_path):
    """On a real clip the tracked blur masks a face on every frame where the union of neighbours does."""
    pytest.importorskip("av")
    from blazeconv.anonymise import blur_video, detector_for

    counts = {}
    for track in (False, True):
        regions = []
        blur_video(VIDEOS / "asl_again.mkv", tmp_path / f"{track}.mp4", detector=detector_for(), track=track,
                   on_regions=regions.append)
        counts[track] = [bool(r["regions"]) for r in regions]
    assert len(counts[True]) == 77 and counts[True] == counts[False]


def test_resumed_video_continues_track_ids(run_cli, tmp_path):
    """A tracked video resumed after frame 39: every frame recorded once, the new tracks numbered after the
    recorded ones (a track cannot be followed across the interruption, so its ids are new, never reused)."""
    pytest.importorskip("av")
    whole = tmp_path / "whole.jsonl"
    code, _, err = run_cli("detect", VIDEOS / "asl_book.mkv", "--track", "--jsonl", whole, "-q")
    assert code == 0, err
    lines = whole.read_text().splitlines()
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join(lines[:41]) + "\n")  # the settings line and frames 0..39
    code, _, err = run_cli("detect", VIDEOS / "asl_book.mkv", "--track", "--jsonl", cut, "--resume", "-q")
    assert code == 0, err
    records = jsonl_records(cut)
    assert [r["frame"] for r in records] == list(range(109))
    early = {d["track"] for r in records[:40] for d in r["detections"]}
    late = {d["track"] for r in records[40:] for d in r["detections"]}
    assert late and min(late) > max(early)


# ------------------------------------------------------------------------------------ blur --track / --detect-every


def _boxes_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@pytest.mark.parametrize("options", [["--track"], ["--detect-every", "3"]])
def test_blur_track_and_keyframes_cli(run_cli, tmp_path, options):
    """Every frame of a clip with a face in each is written with a mask; the summary says how it was masked."""
    pytest.importorskip("av")
    out, boxes = tmp_path / "b.mp4", tmp_path / "b.jsonl"
    code, stdout, err = run_cli("blur", VIDEOS / "asl_again.mkv", "-o", out, "--boxes-jsonl", boxes, *options)
    assert code == 0, err
    records = _boxes_jsonl(boxes)
    assert [r["frame"] for r in records] == list(range(77))
    assert all(r["regions"] for r in records)
    assert "masks along tracks" in err + stdout
    if "--detect-every" in options:
        assert "detected every 3 frames" in err + stdout


@pytest.mark.parametrize(("options", "message"), [
    (["--track"], "--track applies to videos"),
    (["--detect-every", "2"], "--detect-every applies to videos"),
    (["--detect-every", "0"], "--detect-every"),
])
def test_blur_track_refused(run_cli, tmp_path, options, message):
    code, out, err = run_cli("blur", DATA / "images" / "1face.png", "-o", tmp_path / "x.png", *options)
    assert code == 2, err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "x.png").exists()


def test_blur_detect_every_needs_a_whole_number():
    from blazeconv.anonymise import blur_video, detector_for
    from blazeconv.errors import OptionsError

    with pytest.raises(OptionsError, match="detect_every"):
        blur_video(VIDEOS / "asl_again.mkv", "/nonexistent/x.mp4", detector=detector_for(), detect_every=0)


def _face_between_keyframes(tmp_path) -> Path:
    """9 frames: a face on frames 1 and 2 only, a plain grey picture on the others (keyframes 0, 4, 8 of N = 4)."""
    frames = pyav_frames(VIDEOS / "asl_again.mkv")
    face_frame = frames[0][1]
    grey = np.full_like(face_frame, 128)
    clip = tmp_path / "between.mp4"
    write_clip(clip, [face_frame if k in (1, 2) else grey for k in range(9)], [round(k * 1000 / 30) for k in range(9)])
    return clip


def test_a_face_between_two_keyframes_is_hidden_only_when_every_frame_is_looked_at(run_cli, tmp_path):
    """The privacy meaning of --detect-every (docs/tracks.md): a face that appears and leaves between two keyframes
    is never seen, so not hidden; --detect-every 1 (the default) hides it."""
    pytest.importorskip("av")
    clip = _face_between_keyframes(tmp_path)
    masked = {}
    for every in (1, 4):
        boxes = tmp_path / f"{every}.jsonl"
        code, _, err = run_cli("blur", clip, "-o", tmp_path / f"{every}.mp4", "--detect-every", str(every),
                               "--boxes-jsonl", boxes, "-q")
        assert code == 0, err
        masked[every] = [bool(r["regions"]) for r in _boxes_jsonl(boxes)]
    assert masked[1][1] and masked[1][2]
    assert not any(masked[4])


# ------------------------------------------------------------------------------------------------ bad input


def test_variable_frame_rate_keyframes_keep_each_frames_time(detector, tmp_path):
    """Irregular timestamps: every frame gets its record with its own time; frames between keyframes are filled
    (interpolated by frame index, not by time)."""
    stamps = [0, 33, 50, 200, 210, 1000, 1033]  # ms
    frames = [image for _, image in pyav_frames(VIDEOS / "asl_again.mkv")[: len(stamps)]]
    clip = tmp_path / "vfr.mp4"
    write_clip(clip, frames, stamps)
    results = list(detector.video(clip, track=True, detect_every=3))
    assert [round(r.time * 1000) for r in results] == stamps
    assert [r.frame for r in results] == list(range(7))
    for r in results:
        assert all(d.filled == (r.frame % 3 != 0) for d in r.detections)
    assert all(r.detections for r in results)


def test_rotated_clip_is_tracked_upright(detector, tmp_path):
    """A clip stored sideways with a display rotation: one long track, its boxes those of the upright frames."""
    import av

    frames = [image for _, image in pyav_frames(VIDEOS / "asl_again.mkv")[:20]]
    clip = tmp_path / "rotated.mp4"
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[0], frames[0].shape[1], "yuv420p"
        stream.set_display_rotation(90)
        for image in frames:  # stored turned clockwise: a 90-degree display rotation turns it back
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(np.rot90(image, -1)), format="rgb24")))
        out.mux(stream.encode(None))
    results = list(detector.video(clip, track=True))
    assert (results[0].width, results[0].height) == (640, 480)
    tracks = _tracks(results)
    assert max(len(v) for v in tracks.values()) >= 19, tracks


def _truncated(tmp_path) -> Path:
    data = (VIDEOS / "asl_again.mkv").read_bytes()
    path = tmp_path / "cut.mkv"
    path.write_bytes(data[: len(data) // 2])
    return path


def test_truncated_clip_tracks_what_decoded(run_cli, tmp_path):
    """detect --track and --detect-every on a truncated clip: exit 6, the frames that decoded recorded with their
    tracks; blur --track writes them masked."""
    pytest.importorskip("av")
    clip = _truncated(tmp_path)
    for options in (["--track"], ["--detect-every", "4"]):
        jsonl = tmp_path / f"t{len(options)}.jsonl"
        code, _, err = run_cli("detect", clip, "--jsonl", jsonl, "-q", *options)
        assert code == 6 and "stopped at frame" in err
        frames = [r for r in jsonl_records(jsonl) if "frame" in r]
        assert [r["frame"] for r in frames] == list(range(len(frames))) and 10 < len(frames) < 77
        assert sum(1 for r in frames if any(d["track"] == 0 for d in r["detections"])) >= 0.8 * len(frames)
    boxes = tmp_path / "b.jsonl"
    code, _, err = run_cli("blur", clip, "-o", tmp_path / "cut.mp4", "--track", "--boxes-jsonl", boxes, "-q")
    assert code == 6 and "stopped at frame" in err
    records = _boxes_jsonl(boxes)
    assert 10 < len(records) < 77 and all(r["regions"] for r in records)
    assert len(pyav_frames(tmp_path / "cut.mp4")) == len(records)


def test_one_frame_video(run_cli, detector, tmp_path):
    """A video of one frame: one record, a keyframe, tracked; blurred with its face hidden."""
    pytest.importorskip("av")
    clip = tmp_path / "one.mp4"
    write_clip(clip, [pyav_frames(VIDEOS / "asl_again.mkv")[0][1]], [0])
    (result,) = list(detector.video(clip, track=True, detect_every=4))
    assert result.last and result.frame == 0 and [d.track for d in result.detections] == [0]
    assert not result.detections[0].filled
    boxes = tmp_path / "b.jsonl"
    code, _, err = run_cli("blur", clip, "-o", tmp_path / "b.mp4", "--detect-every", "4", "--boxes-jsonl", boxes)
    assert code == 0, err
    (record,) = _boxes_jsonl(boxes)
    assert record["regions"]


GIF = SHARED / "head-pose-face-detection-female-and-male.gif"


@pytest.mark.skipif(not GIF.is_file(), reason="the shared GIF (/work/shared/videos) is not on this machine")
def test_gif_is_a_photo_for_the_commands_and_a_video_for_python(run_cli, detector, tmp_path):
    """An animated GIF is read as a photo (its first frame) by detect and blur, so --track is refused there;
    ``FaceDetector.video`` reads its frames, and its two people are two long tracks."""
    for command in ("detect", "blur"):
        extra = ["-o", tmp_path / "g.png"] if command == "blur" else []
        code, _, err = run_cli(command, GIF, "--track", *extra)
        assert code == 2 and "--track" in err and "Traceback" not in err
    tracks = _tracks(detector.video(GIF, track=True))
    assert sorted(len(v) for v in tracks.values())[-2] >= 40, {k: len(v) for k, v in tracks.items()}


def test_a_small_fast_face_keeps_its_track_when_its_boxes_do_not_overlap():
    """Sampled every 4th frame, a 0.04-wide face moving 0.015 per frame jumps 1.5 times its size between samples: the
    IoU pairs nothing, the second pairing (centres within max_shift box sides per frame) keeps one track; with
    max_shift 0 every sample starts a new one. A second face far away keeps its own."""
    moving = [face(0.1 + 0.06 * k, 0.3, side=0.04) for k in range(6)]
    still = [face(0.7, 0.8, side=0.04)] * 6
    for shift, expected in ((0.5, {0}), (0.0, {0, 2, 3, 4, 5, 6})):
        tracker = Tracker(max_shift=shift)
        ids = [tracker.update([m, s], 4 * k) for k, (m, s) in enumerate(zip(moving, still))]
        assert {found[0].track for found in ids} == expected
        assert len({found[1].track for found in ids}) == 1


def test_max_shift_is_checked():
    from blazeconv.errors import OptionsError

    with pytest.raises(OptionsError, match="max_shift"):
        Tracker(max_shift=-1)
