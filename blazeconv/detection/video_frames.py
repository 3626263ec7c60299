"""Which frames of a video are read: ``open_video`` (the file opened once), ``read_frames`` (the sampled frames,
seeking where that skips more than it costs) and the walk a pass makes over every frame. Frames are numbered from 0
in presentation order over the whole first video stream; a frame's ``time`` is its pts times the stream's time base.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ImageError
from .settings import Sampling
from .video_source import OpenedVideo, VideoStopped, _upright

# A seek (and the decoding from the keyframe it lands on) costs about as much as decoding this many frames in turn.
_SEEK_FRAMES = 12


@dataclass(frozen=True)
class VideoFrame:
    """One decoded frame: its ``index`` (from 0, presentation order), ``time`` in seconds and upright ``(H, W, 3)``
    uint8 RGB ``image``; its ``pts`` (in the stream's time base) and, in a pass that gives a writer every frame,
    whether it is ``sampled`` (detected) or only passes through."""

    index: int
    time: float
    image: np.ndarray = field(repr=False)
    pts: int | None = None
    sampled: bool = True


def open_video(path: str | Path, sampling: Sampling | None = None) -> OpenedVideo:
    """The video file at ``path`` opened for one pass (``OpenedVideo``) that reads the frames ``sampling`` chooses;
    ``ImageError`` naming the file when it is not a video PyAV can read or holds no frame that decodes."""
    return OpenedVideo(path, frame_times=sampling is not None and sampling.frames is not None)


def read_frames(path: str | Path, sampling: Sampling | None = None, *, after: int | None = None) -> Iterator[VideoFrame]:
    """The sampled frames of a video file, upright RGB, in order. ``after``: skip the frames up to and including
    this index (a resumed run). A file that is not a video PyAV can read is an ``ImageError``; decoding that stops
    early (a truncated file) yields the frames that decoded, then raises ``VideoStopped``."""
    sampling = (sampling or Sampling()).check()
    with open_video(path, sampling) as video:
        yield from _walk(video, sampling, after, everything=False)


def _walk(video: OpenedVideo, sampling: Sampling, after: int | None, everything: bool) -> Iterator:
    """``read_frames`` of an opened video. With ``everything``, a writer's pass: every frame in order (upright RGB,
    ``sampled`` saying whether it is one of ``sampling``'s after ``after``) and the audio packets between them, from
    the start to the end whatever the sampling (no seeking, nothing cut at ``end``). ``_nothing_sampled`` comes after
    the frames."""
    import av

    stream, path = video.stream, video.path
    if sampling.frames is not None and not everything:
        yield from _read_chosen(video, sampling, after)
        return
    chosen = None
    if sampling.frames is not None:  # marked on the way: the chosen indices from the packets' times
        times = video.frame_times()[0]
        chosen = set(_evenly_spaced([i for i, t in enumerate(times) if _in_range(t, sampling)], sampling.frames))
    times = video.frame_times()[0] if sampling.start and not everything else None  # to number frames after a seek
    first = next((i for i, t in enumerate(times) if t >= sampling.start - 1e-6), None) if times else None
    index, next_time, sampled, time = -1, None, 0, None
    for frame in video.items(times[first] if first else None):
        if not isinstance(frame, av.VideoFrame):  # an audio packet
            if everything:
                yield frame
            continue
        time = float(frame.pts * stream.time_base)
        index = _index_of(times, time, index) if times is not None else index + 1
        if sampling.end is not None and time >= sampling.end and not everything:
            break
        if chosen is not None:
            take = index in chosen
        else:
            take = _in_range(time, sampling) and not index % sampling.every
            if take and sampling.fps is not None:
                if next_time is not None and time < next_time - 1e-6:
                    take = False
                else:
                    next_time = time + 1 / sampling.fps
        sampled += take
        take = take and (after is None or index > after)
        if take or everything:
            yield VideoFrame(index, time, _upright(frame), frame.pts, take)
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


def _read_chosen(video: OpenedVideo, sampling: Sampling, after: int | None) -> Iterator[VideoFrame]:
    """``read_frames`` for ``sampling.frames``: the chosen frames (by the packets' timestamps), each reached by reading
    on, or by seeking to the keyframe before it when that keyframe is past the frames decoded so far."""
    import av

    stream, path = video.stream, video.path
    times, keyframes = video.frame_times()
    chosen = _evenly_spaced([i for i, t in enumerate(times) if _in_range(t, sampling)], sampling.frames)
    if not chosen:
        raise _nothing_sampled(path, sampling, len(times) - 1)
    frames, position, decoded = None, -math.inf, -1  # the decoder, the time and index of the last frame it gave
    for index in chosen:
        target = times[index]
        keyframe = max((k for k in keyframes if k <= target + 1e-6), default=0.0)
        # Seeking costs about as much as decoding _SEEK_FRAMES frames: worth it when it skips more than that.
        if frames is None or bisect.bisect_left(times, keyframe - 1e-6) - decoded > _SEEK_FRAMES:
            frames = (item for item in video.items(keyframe) if isinstance(item, av.VideoFrame))
        for frame in frames:
            position = float(frame.pts * stream.time_base)
            decoded = bisect.bisect_left(times, position - 1e-6)
            if position >= target - 1e-6:
                break
        else:
            raise VideoStopped(f"{path}: stopped before frame {index} (the file ends before the {_promised(stream)} its "
                               "header announces: truncated or damaged)", chosen.index(index))
        if after is None or index > after:
            yield VideoFrame(index, position, _upright(frame), frame.pts)


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


def _index_of(times: list[float], time: float, previous: int) -> int:
    """The index of the frame at ``time`` in the sorted ``times`` (the nearest one after ``previous``)."""
    at = bisect.bisect_left(times, time - 1e-6)
    if at < len(times) and abs(times[at] - time) < 1e-6:
        return max(at, previous + 1)
    return previous + 1
