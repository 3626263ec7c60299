"""A video file opened once (``OpenedVideo``): its first video stream, its ``VideoInfo`` from the first frame
(size and rotation, the frame then not decoded again) and its decoded frames with the audio packets between them,
for one pass over the file (``video.stream_video``, ``video_annotation``); ``probe`` for the info alone.

Frames are decoded with PyAV (the ``video`` extra) with FFmpeg's frame threading; a frame is turned upright by the
rotation in the stream's display matrix. ``frames_decoded()`` counts the frames this process decoded.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ImageError, require

# FFmpeg's decoding threads, at most: each frame thread holds a frame of its own (12 MB at 4K), and FFmpeg's own
# choice is a thread more than the cores. On 2 cores, 2 instead of 3 held 24 MiB less while blurring a 4K clip in the
# same time (docs/bench.md, "Blur memory at 1080p and 4K"); 4 decode 4K far faster than the model detects it.
DECODER_THREADS = 4


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
    stream.thread_count = min(os.cpu_count() or 1, DECODER_THREADS)
    return container, stream


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())


class _Counter:
    """A count that threads add to."""

    def __init__(self):
        self._lock, self.value = threading.Lock(), 0

    def add(self, count: int = 1) -> None:
        with self._lock:
            self.value += count


_DECODED = _Counter()


def frames_decoded() -> int:
    """The video frames this process has decoded so far, every file and pass together (what ``bench`` reports and
    the tests check: a blurred or annotated video decodes each frame once, the first included)."""
    return _DECODED.value


class OpenedVideo:
    """A video file opened once (``open_video``): its ``info`` (``VideoInfo``: the first frame is decoded for its
    size and rotation) and the file's ``audio`` streams; ``stream_video`` and ``VideoAnnotation`` take it instead of
    a path so that a pass opens, probes and decodes the file once. A context manager: leaving it closes the file.

    Frames come from one decoder (``items``): the first ``items()`` goes on from the frame decoded when opening,
    with the audio packets read before it; a seek starts the decoder again. ``frame_times``: read every packet's
    time before that first frame (sampling a number of frames needs them), so that it is not decoded twice. One
    consumer at a time: a pass holds ``lock`` while it decodes, and ``close`` waits for it."""

    def __init__(self, path: str | Path, *, frame_times: bool = False):
        import av

        require_video()
        self.path = Path(path)
        self.container, self.stream = _open(self.path)
        self.lock = threading.Lock()
        self._times: tuple[list[float], list[float]] | None = None
        try:
            if frame_times:
                self._times = _frame_times(self.container, self.stream, self.path)
                self.container.seek(0, stream=self.stream)
            self.audio = tuple(self.container.streams.audio)
            self._live = _decoded(self.container, self.stream, self.path, self.audio)
            self._peeked: list = []
            for item in self._live:  # the audio packets before the first frame, and that frame
                self._peeked.append(item)
                if isinstance(item, av.VideoFrame):
                    break
            else:
                raise ImageError(f"{self.path}: the video stream holds no frame that decodes")
            first = self._peeked[-1]
            rotation = _rotation(first)
            width, height = (first.height, first.width) if rotation in (90, 270) else (first.width, first.height)
            self.info = _info(self.path, self.container, self.stream, width, height, rotation)
            _PROBED.remember(self.path, self.info)
        except BaseException:
            self.container.close()
            raise

    def items(self, start: float | None = None) -> Iterator:
        """The stream's frames (``av.VideoFrame``, those with a timestamp) and the audio packets (``av.Packet``)
        in the file's order: from the keyframe before ``start`` seconds, or from the beginning. A decoding error
        ends it with ``VideoStopped``."""
        if not start and self._live is not None:
            live, peeked, self._live, self._peeked = self._live, self._peeked, None, []
            return itertools.chain(peeked, live)
        self._live, self._peeked = None, []
        self.container.seek(round(start / self.stream.time_base) if start else 0, stream=self.stream, backward=True,
                            any_frame=False)
        return _decoded(self.container, self.stream, self.path, self.audio)

    def frame_times(self) -> tuple[list[float], list[float]]:
        """``_frame_times``: the frames' and keyframes' presentation times from the packets (read, not decoded);
        the next ``items`` starts the decoder again."""
        if self._times is None:
            self._live, self._peeked = None, []
            self.container.seek(0, stream=self.stream)  # opening read some packets already
            self._times = _frame_times(self.container, self.stream, self.path)
        return self._times

    def close(self) -> None:
        with self.lock:
            self.container.close()

    def __enter__(self) -> OpenedVideo:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def probe(path: str | Path) -> VideoInfo:
    """``VideoInfo`` of the file's first video stream (the first frame is decoded for its size and rotation). A file
    this process has opened already (the same size and modification time) is not opened again; a pass that also
    reads the frames takes its ``OpenedVideo``'s ``info`` (``video.open_video``)."""
    info = _PROBED.recall(path)
    if info is not None:
        return info
    with OpenedVideo(path) as video:
        return video.info


class _Probed:
    """The ``VideoInfo`` of the files opened lately, by real path, size and modification time: one probe per file
    in a process (a summary after the pass, a progress total) whoever asks."""

    def __init__(self, size: int = 64):
        self._lock, self._size, self._infos = threading.Lock(), size, {}

    @staticmethod
    def _key(path: str | Path):
        try:
            stat = os.stat(path)
        except OSError:
            return None
        return os.path.realpath(path), stat.st_size, stat.st_mtime_ns

    def remember(self, path: Path, info: VideoInfo) -> None:
        key = self._key(path)
        if key is not None:
            with self._lock:
                self._infos.pop(key, None)
                self._infos[key] = info
                while len(self._infos) > self._size:
                    del self._infos[next(iter(self._infos))]

    def recall(self, path: str | Path) -> VideoInfo | None:
        key = self._key(path)
        with self._lock:
            info = self._infos.get(key)
        return None if info is None else dataclasses.replace(info, path=Path(path))


_PROBED = _Probed()


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


def _decoded(container, stream, path: Path, audio: Sequence = ()) -> Iterator:
    """Every frame of ``stream`` with a timestamp from where the container is, and the packets of the ``audio``
    streams in the file's order between them; a decoding error ends it with ``VideoStopped`` (frames that decoded
    came first)."""
    import av

    delivered = 0
    try:
        for packet in container.demux(stream, *audio):
            if packet.stream is not stream:
                if packet.size:  # not the empty packet that ends a stream (Matroska leaves some dts unset)
                    yield packet
                continue
            for frame in packet.decode():
                _DECODED.add()
                if frame.pts is None:
                    continue  # a frame without a timestamp cannot be placed in time; FFmpeg rarely gives one
                delivered += 1
                yield frame
    except (av.FFmpegError, OSError, ValueError, MemoryError) as exc:
        raise VideoStopped(f"{path}: stopped at frame {delivered} ({_reason(exc)})", delivered) from None


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


__all__ = ["OpenedVideo", "VideoInfo", "VideoStopped", "frames_decoded", "probe", "require_video"]
