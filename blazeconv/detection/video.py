"""Video files: recognised by content, decoded with PyAV (the ``video`` extra), sampled, and streamed through a runner.

A video's frames run through the same pipeline as photos (``pipeline.detect_prepared``): each sampled frame is
decoded to ``(H, W, 3)`` uint8 RGB, turned upright by the rotation in the stream's display matrix (as EXIF turns
photos), letterboxed and detected; records are in 0..1 of the displayed (upright) frame. MediaPipe's VIDEO running
mode runs the same graph on every frame without tracking, so frame k's detections are those of the photo pipeline on
frame k.

Frames are numbered from 0 in presentation order over the whole first video stream, whatever is sampled; a frame's
``time`` is its pts times the stream's time base, in seconds (never derived from a nominal frame rate, so variable
frame rates are safe). Decoding runs on a thread of its own (FFmpeg's frame threading beside it) while the model
runs in the caller's thread.

``Sampling`` chooses the frames: every frame by default; ``every`` N-th; at most ``fps`` per second (by timestamp);
``frames`` N evenly spaced by index over the chosen range, first and last included; within ``start`` and ``end``
seconds (``start <= time < end``).
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import math
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImageError, require
from ..tuning import torch_thread_count, torch_threads, with_video_switch_interval
from .files import VIDEO_SUFFIXES, is_video
from .pipeline import Model, _setup, detect_prepared, prepare_image
from .records import Detection
from .settings import DetectionSettings, Sampling

# A seek (and the decoding from the keyframe it lands on) costs about as much as decoding this many frames in turn.
_SEEK_FRAMES = 12
# Frames decoded ahead of the model, at most (a bound on memory whatever the frame size, with ``keep_images``).
FRAMES_AHEAD = 48
# Decoded frames kept ahead for annotations and crops take at most this many bytes (an 8K RGB frame: 100 MB).
KEPT_FRAME_BYTES = 192 * 1024 * 1024


def require_video() -> None:
    """``MissingDependencyError`` (exit 8) naming the extra unless PyAV is installed."""
    require("av", "blazeconv[video]", "reading videos")


@dataclass(frozen=True)
class VideoInfo:
    """A video's first video stream: the displayed (upright) ``width`` x ``height``, the ``rotation`` applied
    (degrees counter-clockwise: 0, 90, 180 or 270), the nominal ``fps`` and ``duration`` in seconds (None when the
    container does not say), the frame count the container records (None when it does not), and the codec."""

    path: Path
    width: int
    height: int
    rotation: int
    fps: float | None
    duration: float | None
    frame_count: int | None
    codec: str


@dataclass(frozen=True)
class VideoFrame:
    """One decoded frame: its ``index`` (from 0, presentation order), ``time`` in seconds and upright ``(H, W, 3)``
    uint8 RGB ``image``."""

    index: int
    time: float
    image: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class FrameResult:
    """One sampled frame of ``stream_video``: ``detections`` in 0..1 of the upright ``width`` x ``height`` frame,
    ``last`` when no sampled frame follows (the video ended after it), and with ``keep_images`` the frame itself
    (``(H, W, 3)`` uint8 RGB)."""

    path: Path
    frame: int
    time: float
    width: int
    height: int
    detections: list[Detection]
    image: np.ndarray | None = field(default=None, repr=False)
    last: bool = False


class VideoStopped(ImageError):
    """Decoding stopped before the end of the video: ``frames`` decoded frames were delivered before it."""

    def __init__(self, message: str, frames: int = 0):
        super().__init__(message)
        self.frames = frames

    def __reduce__(self):  # pickled whole (a Ray task's result), not as the message alone
        return type(self), (str(self), self.frames)


def _open(path: Path):
    """The PyAV container and its first video stream (frame threading on), or ``ImageError`` naming the file."""
    import av

    if not path.exists():
        raise ImageError(f"{path}: a broken symbolic link" if path.is_symlink() else f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a directory, not a video")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: empty file (0 bytes)")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except PermissionError:
        raise ImageError(f"{path}: permission denied") from None
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise ImageError(f"{path}: cannot read video: {_reason(exc)}") from None
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["no"]
        container.close()
        raise ImageError(f"{path}: no video stream (the file holds {', '.join(kinds)} streams)")
    stream = container.streams.video[0]
    if stream.codec_context is None or not stream.codec_context.name:
        container.close()
        raise ImageError(f"{path}: the video's codec is not one FFmpeg can decode")
    stream.thread_type = "AUTO"  # frame threading: several times faster than slice threading alone
    return container, stream


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())


def probe(path: str | Path) -> VideoInfo:
    """``VideoInfo`` of the file's first video stream (the first frame is decoded for its size and rotation)."""
    require_video()
    path = Path(path)
    container, stream = _open(path)
    with container:
        first = next(_decoded(container, stream, path, 0), None)
        if first is None:
            raise ImageError(f"{path}: the video stream holds no frame that decodes")
        height, width = _upright(first).shape[:2]
        return _info(path, container, stream, width, height, _rotation(first))


def _info(path, container, stream, width, height, rotation) -> VideoInfo:
    fps = float(stream.average_rate) if stream.average_rate else None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    else:
        duration = container.duration / 1e6 if container.duration else None
    return VideoInfo(path, width, height, rotation, fps, duration, stream.frames or None, stream.codec_context.name)


def _rotation(frame) -> int:
    """The counter-clockwise turn, in degrees, that shows ``frame`` upright (its display matrix), 0/90/180/270."""
    try:
        angle = frame.rotation
    except Exception:  # a PyAV without VideoFrame.rotation
        return 0
    return int(round((angle or 0) / 90)) % 4 * 90


def _upright(frame) -> np.ndarray:
    """``frame`` as upright ``(H, W, 3)`` uint8 RGB."""
    rgb = frame.to_ndarray(format="rgb24")
    turns = _rotation(frame) // 90
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def _decoded(container, stream, path: Path, skip_before: float | None) -> Iterator:
    """Every frame of ``stream`` (from the keyframe before ``skip_before`` seconds when given), with a frame time;
    a decoding error ends it with ``VideoStopped`` (frames that decoded came first)."""
    import av

    if skip_before:
        container.seek(round(skip_before / stream.time_base), stream=stream, backward=True, any_frame=False)
    delivered = 0
    try:
        for frame in container.decode(stream):
            if frame.pts is None:
                continue  # a frame without a timestamp cannot be placed in time; FFmpeg rarely gives one
            delivered += 1
            yield frame
    except (av.FFmpegError, OSError, ValueError, MemoryError) as exc:
        raise VideoStopped(f"{path}: stopped at frame {delivered} ({_reason(exc)})", delivered) from None


def read_frames(path: str | Path, sampling: Sampling | None = None, *, after: int | None = None) -> Iterator[VideoFrame]:
    """The sampled frames of a video file, upright RGB, in order. ``after``: skip the frames up to and including
    this index (a resumed run). A file that is not a video PyAV can read is an ``ImageError``; decoding that stops
    early (a truncated file) yields the frames that decoded, then raises ``VideoStopped``."""
    require_video()
    sampling = (sampling or Sampling()).check()
    path = Path(path)
    container, stream = _open(path)
    with container:
        if sampling.frames is not None:
            yield from _read_chosen(container, stream, path, sampling, after)
            return
        times = _frame_times(container, stream, path)[0] if sampling.start else None  # to number frames after a seek
        first = next((i for i, t in enumerate(times) if t >= sampling.start - 1e-6), None) if times else None
        if times is not None:
            container.seek(0, stream=stream)
        index, next_time, sampled, time = -1, None, 0, None
        for frame in _decoded(container, stream, path, times[first] if first else None):
            time = float(frame.pts * stream.time_base)
            index = _index_of(times, time, index) if times is not None else index + 1
            if sampling.end is not None and time >= sampling.end:
                break
            if not _in_range(time, sampling) or index % sampling.every:
                continue
            if sampling.fps is not None:
                if next_time is not None and time < next_time - 1e-6:
                    continue
                next_time = time + 1 / sampling.fps
            sampled += 1
            if after is None or index > after:
                yield VideoFrame(index, time, _upright(frame))
        else:  # the stream ended: early, when the container promised more
            if _ended_early(stream, index, time):
                raise VideoStopped(f"{path}: stopped at frame {index + 1} (the file ends before the "
                                   f"{_promised(stream)} its header announces: truncated or damaged)", index + 1)
        if not sampled:
            raise _nothing_sampled(path, sampling, index)


def _nothing_sampled(path: Path, sampling: Sampling, last_index: int) -> ImageError:
    if (sampling.start is not None or sampling.end is not None) and last_index >= 0:
        return ImageError(f"{path}: no frame between the start and end times asked for")
    return ImageError(f"{path}: the video stream holds no frame that decodes")


def _read_chosen(container, stream, path: Path, sampling: Sampling, after: int | None) -> Iterator[VideoFrame]:
    """``read_frames`` for ``sampling.frames``: the chosen frames (by the packets' timestamps), each reached by reading
    on, or by seeking to the keyframe before it when that keyframe is past the frames decoded so far."""
    times, keyframes = _frame_times(container, stream, path)
    chosen = _evenly_spaced([i for i, t in enumerate(times) if _in_range(t, sampling)], sampling.frames)
    if not chosen:
        raise _nothing_sampled(path, sampling, len(times) - 1)
    frames, position, decoded = None, -math.inf, -1  # the decoder, the time and index of the last frame it gave
    for index in chosen:
        target = times[index]
        keyframe = max((k for k in keyframes if k <= target + 1e-6), default=0.0)
        # Seeking costs about as much as decoding _SEEK_FRAMES frames: worth it when it skips more than that.
        if frames is None or bisect.bisect_left(times, keyframe - 1e-6) - decoded > _SEEK_FRAMES:
            frames = _decoded(container, stream, path, keyframe if keyframe > 0 else None)
            if keyframe == 0:
                container.seek(0, stream=stream)
        for frame in frames:
            position = float(frame.pts * stream.time_base)
            decoded = bisect.bisect_left(times, position - 1e-6)
            if position >= target - 1e-6:
                break
        else:
            raise VideoStopped(f"{path}: stopped before frame {index} (the file ends before the {_promised(stream)} its "
                               "header announces: truncated or damaged)", chosen.index(index))
        if after is None or index > after:
            yield VideoFrame(index, position, _upright(frame))


def _ended_early(stream, last_index: int, last_time) -> bool:
    """True when the stream's header announces clearly more frames, or time, than decoded (a truncated file). The
    container's duration (Matroska records no other) covers its audio too, often a little longer than the video:
    only a gap of a second and a tenth of it counts."""
    if last_index < 0 or last_time is None:
        return False
    if stream.frames:
        return last_index + 1 < stream.frames
    step = 1 / float(stream.average_rate) if stream.average_rate else 0.1
    if stream.duration and stream.time_base:
        return last_time < float(stream.duration * stream.time_base) - max(0.5, 3 * step)
    whole = stream.container.duration / 1e6 if stream.container.duration else None
    return whole is not None and last_time < whole - max(1.0, 0.1 * whole, 3 * step)


def _promised(stream) -> str:
    if stream.frames:
        return f"{stream.frames} frames"
    duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else (
        stream.container.duration / 1e6 if stream.container.duration else 0)
    return f"{duration:.1f} s"


def _in_range(time: float, sampling: Sampling) -> bool:
    return (sampling.start is None or time >= sampling.start - 1e-6) and (sampling.end is None or time < sampling.end)


def _evenly_spaced(indices: Sequence[int], count: int) -> list[int]:
    """``count`` of ``indices`` evenly spaced, the first and the last included (all when there are fewer)."""
    if len(indices) <= count:
        return list(indices)
    if count == 1:
        return [indices[0]]
    return sorted({indices[round(k * (len(indices) - 1) / (count - 1))] for k in range(count)})


def _frame_times(container, stream, path: Path) -> tuple[list[float], list[float]]:
    """The presentation times of the stream's frames in order, and those of its keyframes, from its packets
    (demuxed, not decoded); the container is left at its end."""
    import av

    stamps, keys = [], []
    try:
        for packet in container.demux(stream):
            if packet.size and packet.pts is not None:
                stamps.append(packet.pts)
                if packet.is_keyframe:
                    keys.append(packet.pts)
    except (av.FFmpegError, OSError, ValueError):
        pass  # a truncated file: the frames before the damage; decoding reports the rest
    return [float(p * stream.time_base) for p in sorted(stamps)], [float(p * stream.time_base) for p in sorted(keys)]


def _index_of(times: list[float], time: float, previous: int) -> int:
    """The index of the frame at ``time`` in the sorted ``times`` (the nearest one after ``previous``)."""
    at = bisect.bisect_left(times, time - 1e-6)
    if at < len(times) and abs(times[at] - time) < 1e-6:
        return max(at, previous + 1)
    return previous + 1


def stream_video(
    model: Model,
    path: str | Path,
    settings: DetectionSettings | None = None,
    *,
    model_threads: int | None = 1,
    keep_images: bool = False,
    after: int | None = None,
    **options: Any,
) -> Iterator[FrameResult]:
    """Detect faces on the sampled frames (``settings.sampling``) of one video file: a ``FrameResult`` per frame,
    in order.

    Frames are decoded and letterboxed on a thread of their own, at most ``FRAMES_AHEAD`` ahead (with
    ``keep_images``, at most ``KEPT_FRAME_BYTES`` of frames), while the model runs here on the frames that are
    ready, up to ``batch_size`` model inputs per call. A file that cannot be opened as a video raises ``ImageError``
    before the first result; a decoding error after some frames raises ``VideoStopped`` after their results.
    ``settings``, ``options`` and ``model_threads`` as ``stream_files``; ``after``: skip the frames up to this index
    (``read_frames``).
    """
    runner, variant, settings = _setup(model, settings, options)
    frames = read_frames(path, settings.sampling, after=after)
    threads = torch_thread_count(runner, model_threads)
    # The decoding thread gets the GIL back sooner while the video streams (tuning).
    return with_video_switch_interval(_detected(runner, Path(path), frames, variant, settings.score_for(variant),
                                                settings.iou_threshold, settings.batch_size,
                                                functools.partial(settings.scales_for, variant), keep_images, threads))


_END = object()


def _detected(runner, path, frames, variant, min_score, iou_threshold, batch_size, scales, keep_images, threads):
    """``stream_video``'s loop: a decoding thread fills ``ready`` with (frame, model inputs, kept shares); here the
    model runs on what is ready. An exception of the decoder comes through ``ready`` after the frames before it."""
    ready: queue.Queue = queue.Queue()
    room = threading.Semaphore(FRAMES_AHEAD)
    shares = max(1, KEPT_FRAME_BYTES // _SHARE)
    kept = threading.Semaphore(shares)
    stop = threading.Event()

    def acquire(semaphore: threading.Semaphore) -> bool:
        while not semaphore.acquire(timeout=0.1):
            if stop.is_set():
                return False
        return True

    def decode() -> None:
        try:
            for frame in frames:
                share = min(shares, -(-frame.image.nbytes // _SHARE)) if keep_images else 0
                if not acquire(room) or not all(acquire(kept) for _ in range(share)):
                    return
                height, width = frame.image.shape[:2]
                prepared = prepare_image(frame.image, variant.input_size, scales(width, height))
                # Only the model inputs wait in the queue unless the frames are kept: a 4K frame is 25 MB.
                ready.put(((frame.index, frame.time, width, height, frame.image if keep_images else None), prepared,
                           share))
                del frame
            ready.put((_END, None, 0))
        except BaseException as exc:  # raised by the consumer, after the frames before it
            ready.put((exc, None, 0))
        finally:
            frames.close()

    worker = threading.Thread(target=decode, name="blazeconv-video", daemon=True)
    worker.start()
    held = None
    try:
        while True:
            batch = [ready.get()]
            used = len(batch[0][1].tensors) if batch[0][1] is not None else 0
            while batch[-1][1] is not None and used < batch_size:  # what else is ready, without waiting for it
                try:
                    batch.append(ready.get_nowait())
                except queue.Empty:
                    break
                used += len(batch[-1][1].tensors) if batch[-1][1] is not None else 0
            ending = batch.pop()[0] if batch[-1][1] is None else None
            if batch:
                with torch_threads(threads):
                    found = detect_prepared(runner, [p for _, p, _ in batch], variant, min_score, iou_threshold,
                                            batch_size)
                for ((index, time, width, height, image), _, share), detections in zip(batch, found):
                    room.release()
                    if held is not None:  # one frame held back, to know whether it is the last
                        yield held[0]
                        for _ in range(held[1]):
                            kept.release()
                    held = (FrameResult(path, index, time, width, height, detections, image), share)
                del batch
            if ending is not None and held is not None:
                yield dataclasses.replace(held[0], last=True) if ending is _END else held[0]
                held = None
            if ending is _END:
                return
            if ending is not None:
                raise ending
    finally:
        stop.set()
        worker.join(timeout=5)


_SHARE = 16 * 1024 * 1024  # kept frames are counted in shares of this many bytes


__all__ = ["FRAMES_AHEAD", "VIDEO_SUFFIXES", "FrameResult", "Sampling", "VideoFrame", "VideoInfo", "VideoStopped",
           "is_video", "probe", "read_frames", "require_video", "stream_video"]
