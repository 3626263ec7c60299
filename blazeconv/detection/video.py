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

One pass per file: ``open_video`` opens a file once (``video_source.OpenedVideo``: its ``VideoInfo`` from the first
frame, which is not decoded again) and ``stream_video`` goes on from there. With a ``writer`` (``FrameWriter``: an
annotation, a blurred copy), every frame is decoded once and handed both to the model (the sampled ones) and to the
writer (all of them, with the file's audio packets); ``frames_decoded()`` counts the frames this process decoded.

``Sampling`` chooses the frames: every frame by default; ``every`` N-th; at most ``fps`` per second (by timestamp);
``frames`` N evenly spaced by index over the chosen range, first and last included; within ``start`` and ``end``
seconds (``start <= time < end``).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np

from ..errors import OptionsError
from ..tuning import torch_thread_count, torch_threads, with_video_switch_interval
from .files import VIDEO_SUFFIXES, is_video
from .pipeline import Model, Prepared, _setup, detect_prepared, prepare_image
from .records import Detection
from .settings import FINE_AUTO, DetectionSettings, Sampling
from .tracking import LOST_TRACK_BUFFER, Tracker, interpolated, is_cut, thumbnail
from .video_frames import VideoFrame, _walk, open_video, read_frames
from .video_source import OpenedVideo, VideoInfo, VideoStopped, frames_decoded, probe, require_video

# Frames decoded ahead of the model, at most (a bound on memory whatever the frame size, with ``keep_images``).
FRAMES_AHEAD = 48
# Decoded frames kept ahead for annotations and crops take at most this many bytes (an 8K RGB frame: 100 MB).
KEPT_FRAME_BYTES = 192 * 1024 * 1024
# With a writer: frames decoded and not yet handed to it take at most this many bytes, or this many frames when they
# are bigger (a 1080p RGB frame: 6.2 MB; so that decoding goes on while the model runs); the writer holds its own
# few more (``hold`` and a short queue).
PASS_FRAME_BYTES = 16 * 1024 * 1024
# Model inputs prepared ahead of the model take at most this many bytes (beside FRAMES_AHEAD): at the defaults' scales
# a 640x360 frame is 16 inputs of 192 px (7 MB), and 48 such frames ahead held 340 MB. 32 MiB is 75 inputs of 192 px,
# more than two batches of 32: the model never waits for them (docs/bench.md, Blur memory).
INPUTS_AHEAD_BYTES = 32 * 1024 * 1024
PASS_FRAMES = 2


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


class FrameWriter(Protocol):
    """What ``stream_video(..., writer=)`` feeds as the pass goes, in the video's order (``VideoAnnotation`` is one):
    for each sampled frame ``add(result)`` (its ``FrameResult``) and then, for every frame, sampled or not,
    ``write_frame(frame)`` (a ``VideoFrame`` with its upright image and pts); ``write_packet(packet)`` with each audio
    packet of the file where it comes. The writer keeps what it needs of a frame (the pass lets it go)."""

    def add(self, result: FrameResult) -> None: ...

    def write_frame(self, frame: VideoFrame) -> None: ...

    def write_packet(self, packet) -> None: ...


def stream_video(
    model: Model,
    path: str | Path | OpenedVideo,
    settings: DetectionSettings | None = None,
    *,
    model_threads: int | None = 1,
    keep_images: bool = False,
    after: int | None = None,
    writer: FrameWriter | None = None,
    first_track: int = 0,
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

    ``path``: a file, or an ``OpenedVideo`` (the caller's, left open). ``writer``: a ``FrameWriter`` given every
    frame of the video (``path`` an ``OpenedVideo``; the one the writer was made with) as the model's results come,
    so each frame is decoded once for both; the whole video is read whatever the sampling, and decoded frames not
    yet handed to it take at most ``PASS_FRAME_BYTES``.

    With ``settings.track``, each detection carries its ``track`` id (``detection.tracking.Tracker``, ids from
    ``first_track``; a cut between two sampled frames, ``tracking.is_cut`` on their thumbnails made in the decoding
    thread, ends every track), the writer's results too. With ``settings.detect_every`` N > 1 the model runs on every
    N-th frame (keyframes, counted from the first) and every frame gets a result: a frame between two keyframes holds
    the detections of the tracks found on both, interpolated (``tracking.interpolated``, marked ``filled``; no
    ``image``); frames after the last keyframe, or before the first one of a resumed run, hold none. No writer.
    With ``settings.fine_every`` K > 1 (``"auto"``: ``DetectionSettings.fine_every_at`` the video's frame rate),
    every sampled frame is looked at whole and every K-th (fine keyframes, from the first) at every level too.
    Without a writer (tracked, as ``track``) a frame between two fine keyframes also holds the detections of the
    tracks found on both and not on it, interpolated and marked ``filled`` (the frames are held back until the next
    fine keyframe); a writer gets each frame as it comes and holds the fine keyframes' faces itself (tracked only
    with ``track``). A small face that comes and goes between two fine keyframes is missed.
    """
    if writer is not None and not isinstance(path, OpenedVideo):
        raise OptionsError("stream_video: a writer takes the frames of an OpenedVideo (open_video), not a path")
    settings = DetectionSettings.of(settings, **options)
    if settings.detect_every > 1:
        if writer is not None:
            raise OptionsError("stream_video: detect_every does not take a writer (a blur of keyframes is not done)")
        return _keyframed(model, path, settings, model_threads, keep_images, after, first_track)
    runner, variant, settings = _setup(model, settings, {})
    threads = torch_thread_count(runner, model_threads)
    # The decoding thread gets the GIL back sooner while the video streams (tuning).
    tracker = None
    fine_every = settings.fine_every_at(_frame_rate(path) if settings.fine_every == FINE_AUTO else None)
    if settings.track or (fine_every > 1 and writer is None):
        # A small face is seen on fine keyframes only: its track must outlive the frames between two of them.
        tracker = Tracker(first_id=first_track,
                          lost_track_buffer=LOST_TRACK_BUFFER + (fine_every - 1) * settings.sampling.every)
    results = _detected(
        runner, path, settings.sampling, after, writer, variant, settings.score_for(variant), settings.iou_threshold,
        settings.batch_size, functools.partial(settings.scales_for, variant), keep_images, threads, tracker,
        fine_every)
    if fine_every > 1 and writer is None:  # a writer holds the fine keyframes' faces itself
        results = _fine_filled(results, fine_every)
    return with_video_switch_interval(results)


def _frame_rate(path) -> float | None:
    """The nominal frames per second of ``path`` (an ``OpenedVideo`` or a file), None when it does not say."""
    return (path.info if isinstance(path, OpenedVideo) else probe(path)).fps


def _fine_filled(results: Iterator[FrameResult], fine_every: int) -> Iterator[FrameResult]:
    """``stream_video`` with ``fine_every`` K > 1: the sampled frames between two fine keyframes (every K-th
    result, from the first) are held back until the next one is known, and each gets, for every track found on both
    fine keyframes around it and not on the frame itself, its detection interpolated (``tracking.interpolated``,
    marked ``filled``): the small faces only the tiles find. Frames after the last fine keyframe get nothing more
    (a stop of the decoder hands them over as they are, then raises)."""
    pending: list[FrameResult] = []
    before = None
    try:
        for count, result in enumerate(results):
            if count % fine_every:
                pending.append(result)
                continue
            for waiting in pending:
                yield _with_carried(waiting, before, result) if before is not None else waiting
            pending, before = [], result
            yield result
    except Exception:
        yield from pending
        raise
    yield from pending


def _with_carried(result: FrameResult, before: FrameResult, after: FrameResult) -> FrameResult:
    """``result`` with the tracks of the fine keyframes ``before`` and ``after`` that it lacks, interpolated."""
    present = {d.track for d in result.detections}
    weight = (result.frame - before.frame) / (after.frame - before.frame)
    carried = [d for d in interpolated(before.detections, after.detections, weight) if d.track not in present]
    return dataclasses.replace(result, detections=result.detections + carried) if carried else result


class _FrameTimes:
    """A ``FrameWriter`` that only notes each frame's ``(index, time)``: the frames between keyframes."""

    def __init__(self) -> None:
        self.frames: collections.deque[tuple[int, float]] = collections.deque()

    def add(self, result: FrameResult) -> None:
        pass

    def write_frame(self, frame: VideoFrame) -> None:
        self.frames.append((frame.index, frame.time))

    def write_packet(self, packet) -> None:
        pass


def _keyframed(model, path, settings, model_threads, keep_images, after, first_track):
    """``stream_video`` with ``detect_every``: the keyframes detected and tracked in one pass that sees every frame,
    the frames between filled from the tracks once the keyframe after them is known."""
    inner = settings.replace(sampling=dataclasses.replace(settings.sampling, every=settings.detect_every),
                             detect_every=1)
    with contextlib.ExitStack() as stack:
        video = path if isinstance(path, OpenedVideo) else stack.enter_context(open_video(path, inner.sampling))
        times = _FrameTimes()
        previous = None
        for result in stream_video(model, video, inner, model_threads=model_threads, keep_images=keep_images,
                                   after=after, writer=times, first_track=first_track):
            while times.frames and times.frames[0][0] < result.frame:
                index, time = times.frames.popleft()
                filled = [] if previous is None else interpolated(
                    previous.detections, result.detections, (index - previous.frame) / (result.frame - previous.frame))
                yield FrameResult(result.path, index, time, result.width, result.height, filled)
            if times.frames and times.frames[0][0] == result.frame:
                times.frames.popleft()
            previous = result
            if not result.last:
                yield result
                continue
            yield dataclasses.replace(result, last=not times.frames)
            while times.frames:
                index, time = times.frames.popleft()
                yield FrameResult(result.path, index, time, result.width, result.height, [], last=not times.frames)


class _Decoded(NamedTuple):
    """A frame from the decoding thread: the ``frame`` (its image only when kept: for the caller or a writer), its
    upright size, its model inputs (None: not sampled, for the writer only), the bytes it holds in the window and,
    when tracking, the sampled frame's thumbnail (``tracking.thumbnail``: for cuts)."""

    frame: VideoFrame
    width: int
    height: int
    prepared: Prepared | None
    kept: int
    thumb: np.ndarray | None = None
    inputs_bytes: int = 0


class _Ending(NamedTuple):
    """The end of the decoding thread's frames: ``error`` None at the end of the video, else what stopped it."""

    error: BaseException | None


class _Window:
    """Bytes held at once (decoded frames, or prepared model inputs): ``acquire`` waits while they would pass
    ``capacity`` (one item alone may), ``release`` gives them back."""

    def __init__(self, capacity: int):
        self.capacity, self.used = capacity, 0
        self._changed = threading.Condition()

    def acquire(self, size: int, stop: threading.Event) -> bool:
        """Hold ``size`` bytes; False when ``stop`` is set first."""
        with self._changed:
            while self.used and self.used + size > self.capacity:
                if stop.is_set():
                    return False
                self._changed.wait(0.1)
            self.used += size
            return True

    def release(self, size: int) -> None:
        if size:
            with self._changed:
                self.used -= size
                self._changed.notify_all()


def _detected(runner, source, sampling, after, writer, variant, min_score, iou_threshold, batch_size, scales,
              keep_images, threads, tracker=None, fine_every=1):
    """``stream_video``'s loop: a decoding thread fills ``ready`` with frames (``_Decoded``: the model inputs of the
    sampled ones), audio packets for the writer and an ``_Ending``; here the model runs on the sampled frames that
    are ready, and everything goes on, in order, to the writer and the caller. An exception of the decoder comes
    after the frames before it. ``fine_every`` K: every level of ``scales`` on every K-th sampled frame (from the
    first), the coarsest level alone on the others."""
    import av

    video = source if isinstance(source, OpenedVideo) else open_video(source, sampling)  # ImageError before any result
    owned, path = video is not source, video.path
    frames = _walk(video, sampling, after, everything=writer is not None)
    ready: queue.Queue = queue.Queue()
    room = threading.Semaphore(FRAMES_AHEAD)
    frame_bytes = video.info.width * video.info.height * 3
    window = _Window(max(PASS_FRAME_BYTES, PASS_FRAMES * frame_bytes) if writer is not None else KEPT_FRAME_BYTES)
    inputs = _Window(INPUTS_AHEAD_BYTES)
    stop = threading.Event()

    def acquire(semaphore: threading.Semaphore) -> bool:
        while not semaphore.acquire(timeout=0.1):
            if stop.is_set():
                return False
        return True

    def decode() -> None:
        sampled_count = 0
        try:
            while True:
                with video.lock:
                    frame = next(frames, _END)
                if frame is _END:
                    break
                if not isinstance(frame, VideoFrame):  # an audio packet, for the writer
                    ready.put(frame)
                    continue
                kept = frame.image.nbytes if keep_images or writer is not None else 0
                if not acquire(room) or not window.acquire(kept, stop):
                    return
                height, width = frame.image.shape[:2]
                prepared = None
                if frame.sampled:
                    levels = scales(width, height)
                    prepared = prepare_image(frame.image, variant.input_size,
                                             levels[:1] if sampled_count % fine_every else levels)
                    sampled_count += 1
                thumb = thumbnail(frame.image) if tracker is not None and frame.sampled else None
                inputs_bytes = sum(t.nbytes for t in prepared.tensors) if prepared is not None else 0
                if not inputs.acquire(inputs_bytes, stop):
                    return
                # Only the model inputs wait in the queue unless the frames are kept: a 4K frame is 25 MB.
                ready.put(_Decoded(frame if kept else dataclasses.replace(frame, image=None), width, height, prepared,
                                   kept, thumb, inputs_bytes))
                del frame
            ready.put(_Ending(None))
        except BaseException as exc:  # raised by the consumer, after the frames before it
            ready.put(_Ending(exc))
        finally:
            with video.lock:
                frames.close()
            if owned:
                video.close()

    worker = threading.Thread(target=decode, name="blazeconv-video", daemon=True)
    worker.start()
    held = previous_thumb = None
    try:
        while True:
            batch = [ready.get()]
            used = _inputs(batch[0])
            while not isinstance(batch[-1], _Ending) and used < batch_size:  # what else is ready, without waiting
                try:
                    batch.append(ready.get_nowait())
                except queue.Empty:
                    break
                used += _inputs(batch[-1])
            ending = batch.pop() if isinstance(batch[-1], _Ending) else None
            sampled = [item.prepared for item in batch if isinstance(item, _Decoded) and item.prepared is not None]
            found = iter(())
            if sampled:
                with torch_threads(threads):
                    found = iter(detect_prepared(runner, sampled, variant, min_score, iou_threshold, batch_size))
            for item in batch:
                if isinstance(item, av.Packet):
                    writer.write_packet(item)
                    continue
                room.release()
                inputs.release(item.inputs_bytes)
                frame, kept = item.frame, item.kept
                result = None
                if item.prepared is not None:
                    detections = next(found)
                    if tracker is not None:
                        cut = is_cut(previous_thumb, item.thumb)
                        detections, previous_thumb = tracker.update(detections, frame.index, cut=cut), item.thumb
                    result = FrameResult(path, frame.index, frame.time, item.width, item.height, detections,
                                         frame.image if keep_images else None)
                if writer is not None:  # handed over: the writer holds the frame now
                    if result is not None:
                        writer.add(result)
                    writer.write_frame(frame)
                    window.release(kept)
                    kept = 0
                if result is None:
                    continue
                if held is not None:  # one frame held back, to know whether it is the last
                    yield held[0]
                    window.release(held[1])
                held = (result, kept)
            batch = sampled = item = None  # let the frames go
            if ending is not None and held is not None:
                yield dataclasses.replace(held[0], last=True) if ending.error is None else held[0]
                held = None
            if ending is not None and ending.error is None:
                return
            if ending is not None:
                raise ending.error
    finally:
        stop.set()
        # Waited for whatever it takes: the decoder stops within a frame once ``stop`` is set, and the caller may
        # close its ``OpenedVideo`` next, which must not happen under a thread still decoding from it.
        worker.join()


def _inputs(item) -> int:
    """The model inputs a ``ready`` item brings to a batch."""
    return len(item.prepared.tensors) if isinstance(item, _Decoded) and item.prepared is not None else 0


_END = object()


__all__ = ["FRAMES_AHEAD", "INPUTS_AHEAD_BYTES", "PASS_FRAME_BYTES", "PASS_FRAMES", "VIDEO_SUFFIXES", "FrameResult", "FrameWriter",
           "OpenedVideo", "Sampling", "VideoFrame", "VideoInfo", "VideoStopped", "frames_decoded", "is_video",
           "open_video", "probe", "read_frames", "require_video", "stream_video"]
