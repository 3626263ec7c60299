"""Videos: recognised by content, sampled by index and timestamp, recorded per frame, resumed, bad files reported.

Frames are checked against PyAV decoding the same clip in the test; detections against ``FaceDetector`` on those
frames (MediaPipe's VIDEO mode is compared in test_video_parity.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import DATA, assert_one_line_error, copy_audio, jsonl_records, pyav_frames, write_clip

av = pytest.importorskip("av")

from blazeconv import FaceDetector  # noqa: E402
from blazeconv.detection.video import Sampling, VideoStopped, is_video, probe, read_frames  # noqa: E402
from blazeconv.errors import ImageError, OptionsError  # noqa: E402

VIDEOS = DATA / "videos"
CLIP = VIDEOS / "asl_again.mkv"  # 640x480, 77 frames, a face in each


@pytest.fixture(scope="module")
def reference():
    return pyav_frames(CLIP)


@pytest.fixture(scope="module")
def detector():
    """MediaPipe's short range as it runs it: one model input per frame (these tests are about the frames)."""
    return FaceDetector("short_range", exact=True, backend="onnxruntime")


# ----------------------------------------------------------------------------------------------- inputs


def test_videos_are_recognised_by_content_and_misnamed_files_by_what_they_are(tmp_path):
    assert all(is_video(p) for p in VIDEOS.iterdir() if p.suffix in (".mkv", ".mp4"))
    assert not is_video(DATA / "images" / "1face.png")
    liar = tmp_path / "photo.mp4"
    liar.write_bytes((DATA / "images" / "1face.png").read_bytes())
    hidden = tmp_path / "clip.jpg"
    hidden.write_bytes(CLIP.read_bytes())
    assert not is_video(liar) and is_video(hidden)


def test_frames_are_pyavs_numbered_and_timed_by_their_pts(reference, detector):
    results = list(detector.video(CLIP, images=True))
    assert [r.frame for r in results] == list(range(len(reference))) == list(range(77))
    assert [r.time for r in results] == [t for t, _ in reference]
    assert all(np.array_equal(r.image, image) for r, (_, image) in zip(results, reference))
    assert [r.last for r in results] == [False] * 76 + [True]
    assert (results[0].width, results[0].height) == (640, 480)
    for r, (_, image) in zip(results[::19], reference[::19]):  # the photo pipeline on the same frame
        assert r.detections == detector(image)
    assert all(r.detections for r in results)


def test_sampling_by_index_rate_count_and_time(reference, detector):
    times = [t for t, _ in reference]

    def sampled(**options):
        return [r.frame for r in detector.video(CLIP, **options)]

    assert sampled(every=10) == list(range(0, 77, 10))
    assert sampled(frames=5) == [0, 19, 38, 57, 76]  # evenly spaced, first and last
    assert sampled(frames=1) == [0] and sampled(frames=500) == list(range(77))
    in_range = [i for i, t in enumerate(times) if 1.0 <= t < 2.0]
    assert sampled(start=1.0, end=2.0) == in_range
    assert sampled(frames=3, start=1.0, end=2.0) == [in_range[round(k * (len(in_range) - 1) / 2)] for k in range(3)]
    greedy = [0]  # at most 4 per second: each frame taken is the first at least 0.25 s after the one before
    for i, t in enumerate(times):
        if t >= times[greedy[-1]] + 0.25 - 1e-6:
            greedy.append(i)
    assert sampled(fps=4) == greedy and len(greedy) == 10
    with pytest.raises(OptionsError):
        list(detector.video(CLIP, frames=3, every=2))
    with pytest.raises(OptionsError):
        list(detector.video(CLIP, start=2, end=1))


def test_variable_frame_rate_times_come_from_each_frames_pts(tmp_path, reference):
    stamps = [0, 33, 50, 200, 210, 1000, 1033]  # ms: irregular gaps
    clip = tmp_path / "vfr.mp4"
    write_clip(clip, [image for _, image in reference[: len(stamps)]], stamps)
    frames = list(read_frames(clip))
    assert [round(f.time * 1000) for f in frames] == stamps
    assert [f.index for f in read_frames(clip, Sampling(fps=2))] == [0, 5]  # 0.033-0.21 s are within 0.5 s of 0


def test_a_clip_with_audio_and_several_video_streams_reads_the_first_video_stream(tmp_path, reference):
    clip = tmp_path / "with_audio.mp4"
    write_clip(clip, [image for _, image in reference[:30]], [round(t * 1000) for t, _ in reference[:30]],
               audio_from=VIDEOS / "nasa_13013.mp4")
    with av.open(str(clip)) as container:
        assert len(container.streams.audio) == 1
    assert len(list(read_frames(clip))) == 30
    info = probe(VIDEOS / "nasa_13013.mp4")  # two video streams: the first, 320x180
    assert (info.width, info.height, info.codec) == (320, 180, "h264")


# ----------------------------------------------------------------------------------------------- CLI


def test_cli_writes_one_line_per_sampled_frame_and_one_entry_per_video(run_cli, tmp_path, reference, detector):
    jsonl, document = tmp_path / "v.jsonl", tmp_path / "v.json"
    photo = DATA / "images" / "1face.png"
    code, out, err = run_cli("detect", CLIP, photo, "--every", "4", "--jsonl", jsonl, "--json", document,
                             "--model", "short_range", "--exact")
    assert code == 0, err
    lines = jsonl_records(jsonl)
    frames = [r for r in lines if "frame" in r]
    assert [r["frame"] for r in frames] == list(range(0, 77, 4))
    assert set(frames[0]) == {"path", "frame", "time", "width", "height", "detections"}
    assert frames[-1]["last"] is True and not any(r.get("last") for r in frames[:-1])
    assert [r["time"] for r in frames] == [round(reference[i][0], 6) for i in range(0, 77, 4)]
    first = detector(reference[0][1])
    assert frames[0]["detections"] == [d.to_dict() for d in first]
    assert lines[-1]["path"] == str(photo)
    entry = json.loads(document.read_text())["videos"][0]
    assert entry["fps"] == 30 and entry["width"] == 640 and [f["frame"] for f in entry["frames"]] == list(range(0, 77, 4))
    assert f"{CLIP}: 20 frames, faces in 20, at most" in out


def test_resume_continues_a_video_after_its_last_complete_frame_line(run_cli, tmp_path):
    whole, cut = tmp_path / "whole.jsonl", tmp_path / "cut.jsonl"
    assert run_cli("detect", CLIP, "--jsonl", whole, "-q")[0] == 0
    text = whole.read_text().splitlines(keepends=True)
    cut.write_text("".join(text[:41]) + text[41][:30])  # settings, 40 frames and a torn line: a kill mid-write
    code, _, err = run_cli("detect", CLIP, "--jsonl", cut, "--resume", "-q")
    assert code == 0, err
    assert cut.read_text() == whole.read_text()  # exactly one line per frame, the same lines
    code, _, err = run_cli("detect", CLIP, "--jsonl", cut, "--resume", "-q")
    assert code == 0 and "1 of 1 inputs already done" in err
    code, _, err = run_cli("detect", CLIP, "--jsonl", cut, "--resume", "--every", "2")
    assert code == 2 and "video_sampling" in err  # other sampling, other results: refused


def test_options_for_videos_need_a_video(run_cli):
    code, _, err = run_cli("detect", DATA / "images" / "1face.png", "--fps", "2")
    assert code == 2 and "none of the inputs is a video" in err
    code, _, err = run_cli("detect", CLIP, "--frames", "3", "--every", "2")
    assert code == 2 and "--frames" in err


@pytest.mark.parametrize("case", ["empty", "garbage", "audio_only", "truncated"])
def test_bad_videos_are_one_error_line_and_keep_what_decoded(case, run_cli, tmp_path):
    path = tmp_path / f"{case}.mkv"
    if case == "empty":
        path.write_bytes(b"")
        expected = "empty file"
    elif case == "garbage":
        path.write_bytes(b"this is not a video" * 100)
        expected = "cannot read video"
    elif case == "audio_only":
        path = tmp_path / "audio.m4a"
        with av.open(str(VIDEOS / "nasa_13013.mp4")) as source, av.open(str(path), "w") as out:
            copy_audio(source, out, out.add_stream_from_template(source.streams.audio[0]))
        expected = "no video stream"
    else:
        data = CLIP.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        expected = "stopped at frame"
    jsonl = tmp_path / "out.jsonl"
    code, _, err = run_cli("detect", path, "--jsonl", jsonl, "-q")
    if case == "truncated":  # the frames that decoded were detected: the run's closing line says so
        err = "\n".join(line for line in err.splitlines() if not line.startswith("1 video(s), model"))
    assert_one_line_error(code, err, path, 6)
    assert expected in err
    records = jsonl_records(jsonl)
    assert records[-1] == {"path": str(path), "error": err.strip().splitlines()[-1].removeprefix("Error: ")}
    if case == "truncated":  # the frames that decoded are kept, numbered as in the whole clip
        frames = [r["frame"] for r in records if "frame" in r]
        assert frames == list(range(len(frames))) and 10 < len(frames) < 77
        stopped = read_frames(path)
        with pytest.raises(VideoStopped) as info:
            for _ in stopped:
                pass
        assert info.value.frames == len(frames)
    else:
        assert len(records) == 1
        with pytest.raises(ImageError):
            list(read_frames(path))


def test_a_video_without_pyav_names_the_extra(run_cli, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "av" else real(name, *a))
    code, _, err = run_cli("detect", CLIP)
    assert_one_line_error(code, err, "blazeconv[video]", 8)



def test_annotate_and_crops_of_videos_and_photos_in_one_run(run_cli, tmp_path, reference):
    annotated, crops, jsonl = tmp_path / "annotated", tmp_path / "faces", tmp_path / "v.jsonl"
    photo = DATA / "images" / "3faces.png"
    args = ["detect", CLIP, photo, "--frames", "4", "--annotate", annotated, "--crops", crops, "--jsonl", jsonl, "-q"]
    code, _, err = run_cli(*args)
    assert code == 0, err
    video = annotated / "videos" / "asl_again.mp4"
    assert pyav_frames(video)[0][1].shape == (480, 640, 3)
    assert [round(t, 3) for t, _ in pyav_frames(video)] == [round(t, 3) for t, _ in reference]  # every frame, same times
    assert (annotated / "images" / "3faces.png").is_file()
    index = [json.loads(line) for line in (crops / "index.jsonl").read_text().splitlines()]
    assert [i["crop"] for i in index] == ["videos/asl_again/f000000_0.png", "videos/asl_again/f000025_0.png",
                                          "videos/asl_again/f000051_0.png", "videos/asl_again/f000076_0.png",
                                          "images/3faces/0.png", "images/3faces/1.png", "images/3faces/2.png"]
    frames = [r for r in jsonl_records(jsonl) if "frame" in r]
    assert [i["box"] for i in index[:4]] == [r["detections"][0]["box"] for r in frames]
    from PIL import Image

    assert Image.open(crops / index[0]["crop"]).size == (112, 112)
    code, _, err = run_cli(*args[:-3], "--jsonl", tmp_path / "again.jsonl", "-q")  # a rerun replaces its own outputs
    assert code == 0, err
    (crops / "videos" / "asl_again" / "notes.txt").write_text("mine")
    code, _, err = run_cli(*args[:-3], "-q")
    assert_one_line_error(code, err, "notes.txt", 2)
    assert (crops / "videos" / "asl_again" / "notes.txt").read_text() == "mine"


def test_a_video_given_to_the_photo_api_says_what_reads_it(detector):
    with pytest.raises(ImageError, match="a video, not an image .FaceDetector.video reads videos"):
        detector(CLIP)


@pytest.mark.parametrize(("codec", "pixels", "suffix", "rotation"), [
    ("libx265", "yuv420p10le", ".mp4", -90),  # a phone's portrait clip: 10-bit HEVC stored sideways
    ("libvpx-vp9", "yuv420p", ".webm", 0), ("mpeg4", "yuv420p", ".avi", 0), ("libx264", "yuv420p", ".mov", 180)])
def test_codecs_containers_and_rotations_read_as_their_upright_frames(codec, pixels, suffix, rotation, tmp_path,
                                                                      reference, detector):
    if codec not in av.codecs_available:
        pytest.skip(f"this PyAV has no {codec}")
    upright = [image for _, image in reference[:8]]
    turns = round(rotation / 90) % 4  # the counter-clockwise turns that show a stored frame upright
    clip = tmp_path / f"clip{suffix}"
    with av.open(str(clip), "w") as out:
        stream = out.add_stream(codec, rate=30)
        height, width = np.rot90(upright[0], -turns).shape[:2]
        stream.width, stream.height, stream.pix_fmt = width, height, pixels
        if rotation:
            stream.set_display_rotation(rotation)
        for image in upright:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(np.rot90(image, -turns)),
                                                             format="rgb24")))
        out.mux(stream.encode())
    stored = [image for _, image in pyav_frames(clip)]
    results = list(detector.video(clip))
    assert [(r.width, r.height) for r in results] == [(640, 480)] * 8
    assert [r.detections for r in results] == [detector(np.ascontiguousarray(np.rot90(s, turns))) for s in stored]
    assert all(r.detections for r in results)
