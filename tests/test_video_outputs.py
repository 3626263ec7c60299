"""What ``detect --annotate`` and ``--crops`` write for videos: the annotated video (every frame, the source's
timestamps, size, rotation and audio packets, boxes where the faces are, atomic, marked as blazeconv's) and the face
crops with their index (names, lines, the size filter, one crop implementation, no foreign file overwritten).

The clips are the real ones of tests/data/videos; variants that no real clip shows (a display rotation, an odd
size, a variable frame rate, an AAC track beside H.264 in Matroska) are made here with PyAV from their frames."""

from __future__ import annotations

import hashlib
import json
import re
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from helpers import DATA
from PIL import Image

import blazeconv.detector
from blazeconv import FaceDetector
from blazeconv.backends import make_runner
from blazeconv.detection import Detection, annotate, cropping, load_image
from blazeconv.detection.cropping import CropWriter, crop_face, is_crop_of
from blazeconv.detection.drawing import _draw
from blazeconv.detection.video import Sampling, VideoStopped, frames_decoded, open_video, read_frames, stream_video
from blazeconv.detection.video_annotation import (
    _ENCODER_OPTIONS,
    VideoAnnotation,
    _turned_corner,
    annotation_suffix,
    is_video_annotation_of,
)
from blazeconv.errors import ImageError, OptionsError, OutputError
from blazeconv.io import PathUsageError

VIDEOS = DATA / "videos"
SERGEY = DATA / "images" / "sergey.png"


@pytest.fixture(scope="module")
def runner():
    return make_runner("auto", "short_range")


# ------------------------------------------------------------------------------------------ clips made here


def _frames_of(path: Path, count: int | None = None) -> tuple[list[np.ndarray], list[int], Fraction]:
    """The first ``count`` frames of ``path`` as stored, ``(H, W, 3)`` uint8 RGB, their pts and the time base."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames, stamps = [], []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            stamps.append(frame.pts)
            if len(frames) == count:
                break
        return frames, stamps, stream.time_base


def _encode(path: Path, frames, stamps, time_base, *, rotation: int = 0, pix_fmt: str = "yuv420p") -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264")
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt, stream.options = pix_fmt, {"crf": "18", "preset": "veryfast"}
        stream.time_base = stream.codec_context.time_base = time_base
        if rotation:
            stream.set_display_rotation(rotation)
        for rgb, pts in zip(frames, stamps):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = pts, time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    frames, stamps, time_base = _frames_of(VIDEOS / "asl_again.mkv", 30)
    # Stored turned clockwise (480x640) with a display matrix turning it back, as phones store portrait video.
    _encode(folder / "rotated.mkv", [np.ascontiguousarray(np.rot90(f, -1)) for f in frames], stamps, time_base,
            rotation=90)
    # 321x241: 4:2:0 cannot hold an odd size; the face (x 284..375, y 84..174 of 640x480) stays inside.
    _encode(folder / "odd.mkv", [np.ascontiguousarray(f[:241, 160:481]) for f in frames], stamps, time_base,
            pix_fmt="yuv444p")
    gaps = [33, 10, 80, 47, 21]  # milliseconds: no constant frame rate
    _encode(folder / "vfr.mp4", frames, [sum(gaps[i % 5] for i in range(k)) for k in range(30)], Fraction(1, 1000))
    # asl_again's H.264 packets (2.6 s) with nasa_13013's first AAC track over the same time, in Matroska.
    with av.open(str(VIDEOS / "asl_again.mkv")) as video, av.open(str(VIDEOS / "nasa_13013.mp4")) as sound, \
            av.open(str(folder / "audio.mkv"), "w") as out:
        pairs = [(video.streams.video[0], out.add_stream_from_template(video.streams.video[0])),
                 (sound.streams.audio[0], out.add_stream_from_template(sound.streams.audio[0]))]
        for source, copy in pairs:
            for packet in source.container.demux(source):
                if packet.size and 0 <= packet.pts * packet.time_base < 2.5:  # Matroska leaves some dts unset
                    packet.stream = copy
                    out.mux(packet)
    return {"asl_again": VIDEOS / "asl_again.mkv", "nasa": VIDEOS / "nasa_13013.mp4", "rotated": folder / "rotated.mkv",
            "odd": folder / "odd.mkv", "vfr": folder / "vfr.mp4", "audio": folder / "audio.mkv"}


def _annotate(runner, source: Path, target: Path, sampling: Sampling | None = None, results=None) -> list:
    """Annotate ``source`` into ``target`` from its sampled frames' results (detected here unless given)."""
    if results is None:
        results = list(stream_video(runner, source, sampling=sampling or Sampling(every=10)))
    with VideoAnnotation(source, target) as annotation:
        for result in results:
            annotation.add(result)
    return results


def _annotate_in_one_pass(runner, source: Path, target: Path, sampling: Sampling, paint=None) -> tuple[list, int]:
    """Annotate ``source`` into ``target`` in the pass that detects it; its results and the frames it decoded."""
    before = frames_decoded()
    with open_video(source, sampling) as video, VideoAnnotation(video, target, paint=paint) as annotation:
        results = list(stream_video(runner, video, sampling=sampling, writer=annotation))
    return results, frames_decoded() - before


def _recording(seen: list):
    """A ``paint`` that draws as the default does and records what it was given: each frame's index, time, a digest
    of its upright pixels and the boxes drawn on it."""

    def paint(picture, detections, index, time):
        seen.append((index, time, hashlib.sha256(picture.tobytes()).hexdigest(), [tuple(d.box) for d in detections]))
        _draw(picture, detections)

    return paint


# --------------------------------------------------------------------------------------------- video streams


def _video_stream(path: Path) -> dict:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        return {"times": [frame.pts * stream.time_base for frame in frames], "pts": [frame.pts for frame in frames],
                "time_base": stream.time_base, "size": (frames[0].width, frames[0].height),
                "rotation": frames[0].rotation, "pix_fmt": frames[0].format.name,
                "kinds": [s.type for s in container.streams]}


def _audio_packets(path: Path) -> list[tuple[int, list[float], str]]:
    """Each audio stream: its packet count, packet times (ms) and a digest of all its packets' bytes."""
    found = []
    with av.open(str(path)) as container:
        for stream in container.streams.audio:
            times, digest = [], hashlib.sha256()
            for packet in container.demux(stream):
                if packet.size:
                    times.append(round(float(packet.pts * packet.time_base) * 1000, 3))
                    digest.update(bytes(packet))
            found.append((len(times), times, digest.hexdigest()))
            container.seek(0)
    return found


@pytest.mark.parametrize(("clip", "suffix"), [("asl_again", ".mkv"), ("rotated", ".mkv"), *(
    pytest.param(clip, suffix, marks=pytest.mark.slow)
    for clip, suffix in [("nasa", ".mp4"), ("odd", ".mkv"), ("vfr", ".mp4"), ("audio", ".mkv"), ("asl_again", ".mp4")])])
def test_the_annotation_has_every_frame_at_its_time_size_and_rotation(runner, clips, clip, suffix, tmp_path):
    target = tmp_path / f"annotated{suffix}"
    _annotate(runner, clips[clip], target)
    source, annotation = _video_stream(clips[clip]), _video_stream(target)
    assert len(annotation["times"]) == len(source["times"])
    assert annotation["times"] == source["times"]  # exact fractions of a second
    if annotation["time_base"] == source["time_base"]:
        assert annotation["pts"] == source["pts"]
    assert annotation["size"] == source["size"]
    assert annotation["rotation"] == source["rotation"]
    assert annotation["pix_fmt"] == ("yuv444p" if clip == "odd" else "yuv420p")
    assert is_video_annotation_of(target, clips[clip])


# x264's name in its options string for each option of ``_ENCODER_OPTIONS`` (FFmpeg's names).
_X264_NAMES = {"rc-lookahead": "rc_lookahead", "bf": "bframes"}


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_the_encoder_options_chosen_for_memory_are_those_x264_wrote_with(runner, clips, tmp_path, suffix):
    """x264 writes the settings it encoded with into the stream (an SEI message: ``x264 - core ... options: ...``);
    those ``_ENCODER_OPTIONS`` set (a short lookahead, few B-frames: the memory they save is in docs/bench.md) and
    the CRF must be there, not lost on the way to the encoder."""
    assert set(_ENCODER_OPTIONS) == set(_X264_NAMES)
    target = tmp_path / f"annotated{suffix}"
    _annotate(runner, clips["asl_again"], target)
    found = re.search(rb"x264 - core [^\x00]*? options: ([^\x00]*)", target.read_bytes())
    assert found is not None, "no x264 options string in the stream"
    written = dict(item.split("=", 1) for item in found.group(1).decode().split() if "=" in item)
    for name, value in _ENCODER_OPTIONS.items():
        assert written[_X264_NAMES[name]] == value, name
    assert float(written["crf"]) == 20


@pytest.mark.parametrize("turns", [-3, -2, -1, 0, 1, 2, 3])
def test_a_painted_box_is_put_back_where_the_turned_picture_has_it(turns):
    """The writer repaints a held frame (stored orientation) only in the box that changed on the upright picture:
    ``_turned_corner`` must say where ``np.rot90`` puts that box."""
    picture = np.zeros((6, 10), np.uint8)  # height 6, width 10
    picture[2:4, 4:8] = 1  # the box (4, 2, 8, 4)
    turned = np.rot90(picture, turns)
    ys, xs = np.nonzero(turned)
    assert _turned_corner((4, 2, 8, 4), 10, 6, turns) == (xs.min(), ys.min())


@pytest.mark.parametrize(("clip", "suffix", "sampling"), [
    ("asl_again", ".mkv", Sampling()), ("rotated", ".mkv", Sampling(every=10)), ("audio", ".mkv", Sampling(every=7)),
    ("nasa", ".mp4", Sampling(fps=2)), ("vfr", ".mp4", Sampling(frames=4)),
    ("asl_again", ".mp4", Sampling(start=1.0, end=2.0))])
def test_one_pass_decodes_each_frame_once_and_writes_what_a_second_decoding_writes(runner, clips, clip, suffix,
                                                                                     sampling, tmp_path):
    """The annotation written in the detection's pass (``stream_video(writer=)``) paints what ``VideoAnnotation``
    paints afterwards from the same results by decoding the source again: the same upright pixels, times and boxes
    for every frame, those not sampled (before the start, after the end) included; and it holds the same frames,
    times, rotation and audio packets. (The H.264 bytes themselves may differ: x264's threads are not bit-exact.)"""
    painted_once, painted_twice = [], []
    results, decoded = _annotate_in_one_pass(runner, clips[clip], tmp_path / f"pass{suffix}", sampling,
                                             _recording(painted_once))
    source = _video_stream(clips[clip])
    assert decoded == len(source["times"])  # each frame once, the first (opened for its size) included
    assert results == list(stream_video(runner, clips[clip], sampling=sampling))  # the same detections as alone
    with VideoAnnotation(clips[clip], tmp_path / f"after{suffix}", paint=_recording(painted_twice)) as annotation:
        for result in results:
            annotation.add(result)
    assert [p[0] for p in painted_once] == list(range(len(source["times"])))
    assert painted_once == painted_twice
    once = _video_stream(tmp_path / f"pass{suffix}")
    assert once["times"] == source["times"] and once["rotation"] == source["rotation"]
    assert _audio_packets(tmp_path / f"pass{suffix}") == _audio_packets(clips[clip])


def test_a_pass_with_room_for_one_frame_at_a_time_holds_and_writes_every_frame(runner, clips, tmp_path, monkeypatch):
    """The pass's windows (``PASS_FRAME_BYTES``, ``FRAMES_AHEAD``, ``INPUTS_AHEAD_BYTES``) bound the frames decoded
    and the model inputs prepared ahead, not the writer's ``hold``: with room for one frame and its inputs, a hold of
    20 frames still paints what a second decoding paints."""
    import blazeconv.detection.video as video_module

    monkeypatch.setattr(video_module, "PASS_FRAME_BYTES", 1)
    monkeypatch.setattr(video_module, "FRAMES_AHEAD", 1)
    monkeypatch.setattr(video_module, "INPUTS_AHEAD_BYTES", 1)
    painted_once, painted_twice = [], []
    with open_video(clips["asl_again"]) as video, \
            VideoAnnotation(video, tmp_path / "pass.mkv", hold=20, paint=_recording(painted_once)) as annotation:
        results = list(stream_video(runner, video, batch_size=4, sampling=Sampling(every=3), writer=annotation))
    with VideoAnnotation(clips["asl_again"], tmp_path / "after.mkv", hold=20,
                         paint=_recording(painted_twice)) as annotation:
        for result in results:
            annotation.add(result)
    assert len(painted_once) == 77 and painted_once == painted_twice
    assert len(painted_once[40][3]) > len(results[13].detections)  # frame 40 gets the faces of 20 frames each side


def test_detect_annotate_decodes_each_frame_once(run_cli, tmp_path):
    """``detect --annotate`` (and its --json figures) opens and decodes the video once: each frame once."""
    before = frames_decoded()
    code, _, err = run_cli("detect", VIDEOS / "asl_again.mkv", "--annotate", tmp_path / "annotated", "--every", "10",
                           "--json", tmp_path / "faces.json")
    assert code == 0, err
    assert frames_decoded() - before == 77
    assert len(_video_stream(tmp_path / "annotated" / "asl_again.mp4")["times"]) == 77
    assert json.loads((tmp_path / "faces.json").read_text())["videos"][0]["fps"] == 30


@pytest.mark.parametrize("case", ["truncated", "garbage", "nothing_sampled"])
def test_detect_annotate_writes_what_decoded_and_nothing_for_a_video_it_could_not_detect(case, run_cli, tmp_path):
    """A truncated clip: the frames that decoded are annotated, then exit 6. A file that is not a video, or one
    whose frames are all outside --start..--end: no annotation (exit 6), as before the pass wrote while it read."""
    source = tmp_path / "clip.mkv"
    data = (VIDEOS / "asl_again.mkv").read_bytes()
    source.write_bytes({"truncated": data[:120_000], "garbage": b"not a video" * 1000, "nothing_sampled": data}[case])
    options = ["--start", "100"] if case == "nothing_sampled" else []
    code, _, err = run_cli("detect", source, "--annotate", tmp_path / "annotated", "-q", *options)
    assert code == 6, err
    annotations = sorted(p.name for p in (tmp_path / "annotated").rglob("*"))
    if case == "truncated":
        assert annotations == ["clip.mp4"] and "stopped at frame" in err
        decoded = len(_video_stream(source)["times"])
        assert 10 < decoded < 77 and len(_video_stream(tmp_path / "annotated" / "clip.mp4")["times"]) == decoded
    else:
        assert annotations == []  # no half video, no temporary file


def test_a_writer_needs_the_opened_video(runner, clips, tmp_path):
    with open_video(clips["asl_again"]) as video, VideoAnnotation(video, tmp_path / "annotated.mkv") as annotation:
        with pytest.raises(OptionsError, match="OpenedVideo"):
            next(stream_video(runner, clips["asl_again"], writer=annotation))
    with VideoAnnotation(clips["asl_again"], tmp_path / "decoded_here.mkv") as annotation:
        with pytest.raises(ValueError, match="decodes its source itself"):
            annotation.write_frame(next(read_frames(clips["asl_again"])))


def test_the_test_clips_are_what_their_names_say(clips):
    assert _video_stream(clips["rotated"])["rotation"] == 90
    assert _video_stream(clips["odd"])["size"] == (321, 241)
    gaps = np.diff([float(t) for t in _video_stream(clips["vfr"])["times"]])
    assert gaps.min() < 0.02 and gaps.max() > 0.07
    assert _video_stream(clips["audio"])["kinds"] == ["video", "audio"]


@pytest.mark.parametrize(("clip", "suffix", "streams"), [("nasa", ".mp4", 2), ("audio", ".mkv", 1)])
def test_audio_packets_are_copied_and_subtitles_dropped(runner, clips, clip, suffix, streams, tmp_path):
    target = tmp_path / f"annotated{suffix}"
    _annotate(runner, clips[clip], target)
    copied = _audio_packets(target)
    assert len(copied) == streams
    assert copied == _audio_packets(clips[clip])  # same count, times and bytes: not re-encoded
    assert set(_video_stream(target)["kinds"]) == {"video", "audio"}  # nasa_13013's subtitles are left out
    with av.open(str(target)) as container:
        assert len(container.streams.video) == 1  # the source's first video stream only


def _drawn_error(annotated: np.ndarray, source: np.ndarray, detections) -> tuple[float, float, float]:
    """Where ``annotate`` draws ``detections`` on ``source``: how far ``annotated`` is from that drawing and from
    the undrawn source; elsewhere, how far it is from the source (all mean absolute differences, 0..255)."""
    expected = np.asarray(annotate(source, detections), np.int16)
    drawn = np.abs(expected - source).sum(axis=2) > 60
    assert drawn.sum() > 100, "nothing to see: the detections draw too few pixels"
    difference = np.abs(annotated.astype(np.int16) - expected)
    return (float(difference[drawn].mean()), float(np.abs(annotated.astype(np.int16) - source)[drawn].mean()),
            float(difference[~drawn].mean()))


@pytest.mark.parametrize("clip", ["asl_again", "rotated"])
def test_boxes_are_drawn_where_the_faces_are_on_sampled_frames_and_the_frames_between(runner, clips, clip, tmp_path):
    target = tmp_path / "annotated.mkv"
    results = _annotate(runner, clips[clip], target, Sampling(every=10))
    sampled = {r.frame: r for r in results}
    assert sum(map(len, (r.detections for r in results))) >= 2
    source, annotated = list(read_frames(clips[clip])), list(read_frames(target))  # upright, both
    assert annotated[0].image.shape == source[0].image.shape
    for index in (0, 3, 10, 19):  # sampled frames and the frames after them, drawn with the sample's faces
        detections = sampled[index - index % 10].detections
        if not detections:
            continue
        to_drawing, to_source, elsewhere = _drawn_error(annotated[index].image, source[index].image, detections)
        assert to_drawing < to_source / 2, (index, to_drawing, to_source)  # thin lines blur in H.264
        assert elsewhere < 4, (index, elsewhere)  # the rest of the picture is the source's, re-encoded


@pytest.mark.slow
def test_frames_before_the_first_sample_are_not_drawn_on(runner, clips, tmp_path):
    target = tmp_path / "annotated.mkv"
    results = [r for r in stream_video(runner, clips["asl_again"]) if r.frame >= 20 and r.frame % 5 == 0]
    _annotate(runner, clips["asl_again"], target, results=results)
    source, annotated = list(read_frames(clips["asl_again"])), list(read_frames(target))
    assert len(annotated) == len(source) == 77
    faces = results[0].detections
    for index in (0, 19):
        to_drawing, to_source, _ = _drawn_error(annotated[index].image, source[index].image, faces)
        assert to_source < to_drawing / 3, (index, to_source, to_drawing)
    to_drawing, to_source, _ = _drawn_error(annotated[20].image, source[20].image, faces)
    assert to_drawing < to_source / 2


def test_results_out_of_order_are_refused(runner, clips, tmp_path):
    results = list(stream_video(runner, clips["asl_again"], sampling=Sampling(every=10)))
    with pytest.raises(ValueError, match="frame order"):
        with VideoAnnotation(clips["asl_again"], tmp_path / "annotated.mkv") as annotation:
            annotation.add(results[2])
            annotation.add(results[1])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kept", [False, True])
def test_an_interrupt_leaves_no_target_and_no_temporary_file(runner, clips, tmp_path, kept):
    target = tmp_path / "annotated.mkv"
    if kept:
        target.write_bytes(b"a file that was there before")
    results = list(stream_video(runner, clips["asl_again"], sampling=Sampling(every=10)))
    with pytest.raises(KeyboardInterrupt):
        with VideoAnnotation(clips["asl_again"], target) as annotation:
            for result in results[:4]:
                annotation.add(result)
            assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".annotated.mkv.")]  # being written
            raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == (["annotated.mkv"] if kept else [])
    if kept:
        assert target.read_bytes() == b"a file that was there before"


@pytest.mark.slow
def test_a_later_run_recognises_its_own_annotation_and_nothing_else(runner, clips, tmp_path):
    target = tmp_path / "annotated.mp4"
    _annotate(runner, clips["nasa"], target)
    assert is_video_annotation_of(target, clips["nasa"])
    assert not is_video_annotation_of(target, clips["asl_again"])  # an annotation, but of another video
    assert not is_video_annotation_of(clips["nasa"], clips["nasa"])  # the user's video
    (tmp_path / "notes.mp4").write_text("not a video")
    assert not is_video_annotation_of(tmp_path / "notes.mp4", clips["nasa"])
    assert not is_video_annotation_of(tmp_path / "missing.mp4", clips["nasa"])


def test_a_truncated_source_is_annotated_up_to_where_it_stops(runner, tmp_path):
    source = tmp_path / "truncated.mkv"
    source.write_bytes((VIDEOS / "asl_again.mkv").read_bytes()[:120_000])
    target = tmp_path / "annotated.mkv"
    with VideoAnnotation(source, target) as annotation:
        with pytest.raises(VideoStopped):  # what the caller of stream_video sees; the annotation goes on
            for result in stream_video(runner, source, sampling=Sampling(every=10)):
                annotation.add(result)
    decoded = len(_video_stream(source)["times"])
    assert 10 < decoded < 77 and len(_video_stream(target)["times"]) == decoded


def test_a_truncated_source_is_annotated_in_one_pass_up_to_where_it_stops(runner, tmp_path):
    source = tmp_path / "truncated.mkv"
    source.write_bytes((VIDEOS / "asl_again.mkv").read_bytes()[:120_000])
    target = tmp_path / "annotated.mkv"
    with open_video(source) as video, VideoAnnotation(video, target) as annotation:
        with pytest.raises(VideoStopped):  # what the caller of stream_video sees; the annotation goes on
            for _ in stream_video(runner, video, sampling=Sampling(every=10), writer=annotation):
                pass
    decoded = len(_video_stream(source)["times"])
    assert 10 < decoded < 77 and len(_video_stream(target)["times"]) == decoded


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_is_an_output_error_naming_the_target(runner, clips, tmp_path):
    target = tmp_path / "annotated.mkv"
    target.symlink_to("/dev/full")  # followed, and written through: every write fails with ENOSPC
    with pytest.raises(OutputError, match=r"annotated\.mkv: cannot write: No space left"):
        _annotate(runner, clips["asl_again"], target)


@pytest.mark.parametrize(("source", "suffix"), [("a.mp4", ".mp4"), ("a.MOV", ".mov"), ("a.m4v", ".m4v"),
                                                ("a.mkv", ".mkv"), ("a.webm", ".mkv"), ("a.avi", ".mkv")])
def test_the_annotation_suffix_keeps_the_source_s_where_it_can(source, suffix):
    assert annotation_suffix(source) == suffix


def test_errors_name_the_file(clips, tmp_path):
    fake = tmp_path / "fake.mkv"
    fake.write_text("not a video")
    with pytest.raises(ImageError, match="fake.mkv"):
        VideoAnnotation(fake, tmp_path / "annotated.mkv").__enter__()
    with pytest.raises(OutputError, match="missing"):
        VideoAnnotation(clips["asl_again"], tmp_path / "missing" / "annotated.mkv").__enter__()
    with pytest.raises(OptionsError, match=r"annotated\.avi"):
        VideoAnnotation(clips["asl_again"], tmp_path / "annotated.avi")
    with pytest.raises(OptionsError, match="crf"):
        VideoAnnotation(clips["asl_again"], tmp_path / "annotated.mkv", crf=60)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake.mkv"]


# ------------------------------------------------------------------------------------------------- crops


@pytest.fixture(scope="module")
def sampled(runner) -> list:
    """asl_again.mkv's 4 evenly spaced frames, with their images."""
    return list(stream_video(runner, VIDEOS / "asl_again.mkv", sampling=Sampling(frames=4), keep_images=True))


def _index(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "index.jsonl").read_text().splitlines()]


def _write_crops(root: Path, results, **options) -> list[Path]:
    written = []
    with CropWriter(root, names={VIDEOS / "asl_again.mkv": "clips/asl_again"}, **options) as writer:
        for result in results:
            written += writer.add(result.path, result.image, result.detections, result.frame, result.time)
    return written


def test_video_crops_are_named_by_frame_and_face_and_indexed(sampled, tmp_path):
    root = tmp_path / "crops"
    written = _write_crops(root, sampled)
    assert [r.frame for r in sampled] == [0, 25, 51, 76]
    expected = [(r, i, d) for r in sampled for i, d in enumerate(r.detections)]
    assert len(expected) >= 3
    names = [f"clips/asl_again/f{r.frame:06d}_{i}.png" for r, i, _ in expected]
    assert [p.relative_to(root).as_posix() for p in written] == names
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png")) == sorted(names)
    assert _index(root) == [{"crop": name, "source": str(VIDEOS / "asl_again.mkv"), "frame": r.frame,
                             "time": r.time, "box": list(d.box), "score": d.score}
                            for name, (r, _, d) in zip(names, expected)]
    for path, (result, _, detection) in zip(written, expected):
        with Image.open(path) as png:
            assert png.size == (112, 112)
            np.testing.assert_array_equal(np.asarray(png), crop_face(result.image, detection, 112))  # lossless
        assert is_crop_of(path, VIDEOS / "asl_again.mkv") and not is_crop_of(path, SERGEY)
    assert not any(p.name.endswith(".tmp") for p in root.rglob("*"))


def test_photo_crops_and_a_second_run_appending_to_the_index(tmp_path):
    image = load_image(SERGEY)
    detections = FaceDetector("short_range")(image)
    root = tmp_path / "crops"
    for _ in range(2):  # the second run replaces its own crops and adds its lines
        with CropWriter(root, names={SERGEY: "sergey"}, size=64, margin=0.5, align=False) as writer:
            assert writer.add(SERGEY, image, detections) == [root / "sergey" / "0.png"]
    lines = _index(root)
    assert len(lines) == 2 and lines[0] == lines[1]
    assert lines[0]["crop"] == "sergey/0.png" and lines[0]["frame"] is None and lines[0]["time"] is None
    with Image.open(root / "sergey" / "0.png") as png:
        np.testing.assert_array_equal(np.asarray(png), crop_face(image, detections[0], 64, align=False, margin=0.5))


def test_min_face_skips_faces_smaller_than_it_in_source_pixels(sampled, tmp_path):
    sides = sorted({max((d.box.xmax - d.box.xmin) * r.width, (d.box.ymax - d.box.ymin) * r.height)
                    for r in sampled for d in r.detections})
    limit = (sides[0] + sides[-1]) / 2
    written = _write_crops(tmp_path / "some", sampled, min_face=limit)
    assert 0 < len(written) < len(sides)
    for line in _index(tmp_path / "some"):
        result = next(r for r in sampled if r.frame == line["frame"])
        xmin, ymin, xmax, ymax = line["box"]
        assert max((xmax - xmin) * result.width, (ymax - ymin) * result.height) >= limit
    assert _write_crops(tmp_path / "none", sampled, min_face=sides[-1] + 1) == []
    assert _index(tmp_path / "none") == []
    assert len(_write_crops(tmp_path / "all", sampled, min_face=sides[0])) == sum(len(r.detections) for r in sampled)


@pytest.mark.parametrize(("size", "align", "margin"), [(112, True, 0.25), (160, False, 0.25), (96, True, 0.6),
                                                        (57, False, 0.0)])
def test_crop_face_is_face_detector_crop(size, align, margin):
    detector = FaceDetector("short_range")
    image = load_image(SERGEY)
    (face,) = detector(image)
    np.testing.assert_array_equal(crop_face(image, face, size, align, margin),
                                  detector.crop(image, face, size, align=align, margin=margin))
    assert blazeconv.detector.crop_transform is cropping.crop_transform


def test_a_file_blazeconv_did_not_write_is_not_overwritten(sampled, tmp_path):
    root = tmp_path / "crops"
    foreign = root / "clips" / "asl_again" / "f000000_0.png"
    foreign.parent.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(foreign)
    before = foreign.read_bytes()
    with pytest.raises(PathUsageError, match="f000000_0.png"):
        _write_crops(root, sampled)
    assert foreign.read_bytes() == before
    assert _index(root) == []
    _write_crops(root, sampled, overwrite=True)
    assert is_crop_of(foreign, VIDEOS / "asl_again.mkv")


def test_crop_options_are_checked(tmp_path):
    face = Detection(0.9, (0.4, 0.4, 0.6, 0.6), [(0.45, 0.45), (0.55, 0.45), (0.5, 0.5), (0.5, 0.55),
                                                 (0.4, 0.45), (0.6, 0.45)])
    for bad in ({"size": 0}, {"margin": -1.0}, {"min_face": -5}):
        with pytest.raises(OptionsError):
            CropWriter(tmp_path, names={}, **bad)
    with pytest.raises(OptionsError):
        crop_face(np.zeros((10, 10, 3), np.uint8), face, size=0)
    with CropWriter(tmp_path / "crops", names={Path("a.png"): "../outside"}) as writer:
        with pytest.raises(ValueError, match="outside"):
            writer.add("a.png", np.zeros((10, 10, 3), np.uint8), [face])
        with pytest.raises(ValueError, match="b.png"):
            writer.add("b.png", np.zeros((10, 10, 3), np.uint8), [face])
    with pytest.raises(OutputError, match="missing"):
        CropWriter(tmp_path / "missing" / "crops", names={}).__enter__()
