"""Tracks and keyframes in the bench: clips derived from a shared one, tracks found against the people in view,
``detect --track`` against MediaPipe's VIDEO mode, and ``blur`` with tracks or keyframes against deface.

* ``derived_clip``: a clip made from a real one with PyAV (a frame range, scaled: the 1080p and 4K upscales and a
  low-resolution copy whose faces are 12-20 px), written once into a cache folder and reused (by its name, which
  says the source, the range and the size).
* ``track_counts``: what ``FaceDetector.video(track=True)`` finds on a clip: tracks, fragments (tracks shorter than
  ``FRAGMENT`` frames: short false detections or a face the tracker lost and found again), frames with a face.
* ``measure_detect_track``: ``blazeconv detect CLIP --track`` and MediaPipe's ``FaceDetector`` in VIDEO mode over
  the same PyAV frames, whole process each, in turn: frames per second.
* ``deface_options``: deface's own advice for big frames (``--scale 640x360`` for HD and 4K), used by
  ``anonymise.measure_blur``.

Benchmarks are programs: nothing here asserts a time; ratios are measured side by side in one run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .timing import run_measured

# A track shorter than this many frames is counted as a fragment.
FRAGMENT = 5
# deface's advice for frames bigger than 720p: run CenterFace on a 640x360 copy (deface's README, --scale).
DEFACE_SCALE = "640x360"
DEFACE_SCALE_FROM_HEIGHT = 720


def deface_options(height: int) -> tuple[str, ...]:
    """deface's options for a clip of ``height`` pixels: ``--scale 640x360`` from HD up, none below."""
    return ("--scale", DEFACE_SCALE) if height >= DEFACE_SCALE_FROM_HEIGHT else ()


def derived_clip(source: Path, folder: Path, size: tuple[int, int], first: int = 0, count: int | None = None) -> Path:
    """``source``'s frames ``first`` to ``first + count - 1`` (decoding order, frames without a timestamp left out)
    scaled to ``size`` ``(width, height)`` (bicubic), as H.264 (crf 18, ``yuv420p``) in ``folder``, keeping each
    frame's timestamp (shifted so the first is 0); made once, then reused by name."""
    import av

    width, height = size
    name = f"{Path(source).stem}.f{first}-{'end' if count is None else first + count - 1}.{width}x{height}.mp4"
    target = Path(folder) / name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name("." + name + ".partial.mp4")
    with av.open(str(source)) as container, av.open(str(partial), "w") as out:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        encoder = out.add_stream("libx264", rate=stream.average_rate or 25)
        encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
        encoder.time_base = encoder.codec_context.time_base = stream.time_base
        encoder.options = {"crf": "18", "preset": "veryfast"}
        index, start = -1, None
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            index += 1
            if index < first:
                continue
            if count is not None and index >= first + count:
                break
            start = frame.pts if start is None else start
            scaled = frame.reformat(width=width, height=height, format="yuv420p", interpolation="BICUBIC")
            scaled.pts, scaled.time_base = frame.pts - start, stream.time_base
            out.mux(encoder.encode(scaled))
        out.mux(encoder.encode(None))
    partial.replace(target)
    return target


# ``signers_clip``'s cells on a 480x270 canvas: (left, top, scale of the 640x480 source), three at 1/4 and four at
# 3/16 (faces about 10 to 16 px wide, as tests/test_scales.py's frames).
SIGNER_CELLS = [(160 * i, 8, 0.25) for i in range(3)] + [(120 * i, 140, 0.1875) for i in range(4)]
SIGNING_CLIPS = ("asl_again.mkv", "asl_book.mkv", "asl_sister.mkv")


def signers_clip(videos: Path, folder: Path, frames: int = 75) -> Path:
    """A wide low-resolution clip of small faces that move as people do, at 30 fps: the three signing clips of
    ``videos`` (640x480, 30 fps) playing side by side in the seven ``SIGNER_CELLS`` of a grey 480x270 canvas (cell
    ``i`` plays clip ``i % 3``), ``frames`` frames, as H.264 (crf 18, ``yuv420p``) in ``folder``; made once, then
    reused by name."""
    import av
    import numpy as np
    from PIL import Image

    target = Path(folder) / f"signers.{frames}f.480x270.mp4"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    sources = []
    for name in SIGNING_CLIPS:
        with av.open(str(Path(videos) / name)) as container:
            sources.append([f.to_image() for f in container.decode(video=0)][:frames])
    partial = target.with_name("." + target.name + ".partial.mp4")
    with av.open(str(partial), "w") as out:
        encoder = out.add_stream("libx264", rate=30)
        encoder.width, encoder.height, encoder.pix_fmt = 480, 270, "yuv420p"
        encoder.options = {"crf": "18", "preset": "veryfast"}
        for index in range(min(frames, *(len(s) for s in sources))):
            canvas = Image.new("RGB", (480, 270), (96, 96, 96))
            for cell, (x, y, scale) in enumerate(SIGNER_CELLS):
                picture = sources[cell % len(sources)][index]
                size = (round(picture.width * scale), round(picture.height * scale))
                canvas.paste(picture.resize(size, Image.Resampling.LANCZOS), (x, y))
            out.mux(encoder.encode(av.VideoFrame.from_ndarray(np.asarray(canvas), format="rgb24")))
        out.mux(encoder.encode(None))
    partial.replace(target)
    return target


def frame_count(clip: Path) -> int:
    """Frames of the clip's first video stream that have a timestamp (what blazeconv and the workers read), from
    its packets."""
    import av

    with av.open(str(clip)) as container:
        return sum(1 for packet in container.demux(container.streams.video[0]) if packet.size and packet.pts is not None)


@dataclass(frozen=True)
class TrackCount:
    """What tracking found on one clip: ``frames``, ``with_faces`` (frames with a detection), ``tracks``, of them
    ``fragments`` (shorter than ``FRAGMENT`` frames), and the lengths of the longest tracks (frames), longest first;
    ``people``: those in view, when known (None: not counted)."""

    clip: str
    frames: int
    with_faces: int
    tracks: int
    fragments: int
    longest: tuple[int, ...]
    people: int | None = None


def track_counts(clip: Path, people: int | None = None, detector=None, **options) -> TrackCount:
    """``FaceDetector.video(clip, track=True, **options)`` counted (``detector``: default ``FaceDetector()``)."""
    from ..detector import FaceDetector

    detector = detector or FaceDetector()
    lengths: dict[int, int] = {}
    frames = with_faces = 0
    for result in detector.video(clip, track=True, **options):
        frames += 1
        with_faces += bool(result.detections)
        for d in result.detections:
            lengths[d.track] = lengths.get(d.track, 0) + 1
    longest = tuple(sorted(lengths.values(), reverse=True)[:4])
    return TrackCount(Path(clip).name, frames, with_faces, len(lengths),
                      sum(1 for n in lengths.values() if n < FRAGMENT), longest, people)


def tracks_table(rows: Sequence[TrackCount]) -> list[str]:
    """The Markdown table of ``track_counts`` rows."""
    lines = [f"| clip | frames | with a face | people in view | tracks | fragments (< {FRAGMENT} frames) | longest |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        people = "—" if r.people is None else str(r.people)
        lines.append(f"| {r.clip} | {r.frames} | {r.with_faces} | {people} | {r.tracks} | {r.fragments} | "
                     f"{', '.join(map(str, r.longest))} |")
    return lines


@dataclass(frozen=True)
class TrackSpeedRow:
    """``detect --track`` and MediaPipe's VIDEO mode on one clip: whole-process seconds and peak MiB each."""

    clip: str
    frames: int
    track_seconds: float
    track_peak_mib: float
    mediapipe_seconds: float | None
    mediapipe_peak_mib: float | None

    @property
    def ratio(self) -> float | None:
        """``detect --track``'s frames per second over MediaPipe's (the target is >= 2)."""
        return None if not self.mediapipe_seconds else self.mediapipe_seconds / self.track_seconds


def measure_detect_track(clips: Sequence[Path], mediapipe_python: Path | None, model_path: Path,
                         min_score: float, detect_options: Sequence[str] = (), python: str | None = None
                         ) -> list[TrackSpeedRow]:
    """Per clip, in turn: ``blazeconv detect CLIP --track -q [detect_options]`` and MediaPipe's worker in VIDEO
    mode with ``model_path`` at ``min_score`` (skipped without ``mediapipe_python``)."""
    import sys

    from .contenders import mediapipe_command

    rows = []
    for clip in clips:
        ours = run_measured([python or sys.executable, "-m", "blazeconv", "detect", str(clip), "--track", "-q",
                             *detect_options])
        theirs = None
        if mediapipe_python is not None:
            theirs = run_measured(mediapipe_command(mediapipe_python, model_path, min_score, "video", str(clip)))
        rows.append(TrackSpeedRow(Path(clip).name, frame_count(clip), ours.seconds, ours.peak_mib,
                                  None if theirs is None else theirs.seconds,
                                  None if theirs is None else theirs.peak_mib))
    return rows


def track_speed_table(rows: Sequence[TrackSpeedRow]) -> list[str]:
    """The Markdown table of ``measure_detect_track``'s rows."""
    lines = ["| clip | frames | detect --track s | frames/s | peak MiB | MediaPipe VIDEO s | frames/s | peak MiB | "
             "× MediaPipe's frames/s |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        theirs = ("— | — | —" if r.mediapipe_seconds is None else
                  f"{r.mediapipe_seconds:.2f} | {r.frames / r.mediapipe_seconds:.0f} | {r.mediapipe_peak_mib:.0f}")
        ratio = "—" if r.ratio is None else f"{r.ratio:.2f}×"
        lines.append(f"| {r.clip} | {r.frames} | {r.track_seconds:.2f} | {r.frames / r.track_seconds:.0f} | "
                     f"{r.track_peak_mib:.0f} | {theirs} | {ratio} |")
    return lines


__all__ = ["DEFACE_SCALE", "FRAGMENT", "SIGNER_CELLS", "SIGNING_CLIPS", "TrackCount", "TrackSpeedRow", "deface_options",
           "derived_clip", "frame_count", "measure_detect_track", "signers_clip", "track_counts", "track_speed_table",
           "tracks_table"]
