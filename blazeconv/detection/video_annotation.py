"""``detect --annotate`` for a video: the whole video again, H.264, with the detections drawn on every frame.

The annotation holds every frame of the source's first video stream, in presentation order, with the source's
timestamps (pts in the source stream's time base; a muxer may store them in another time base, the times stay),
its stored size and its display rotation. Each frame is decoded to ``(H, W, 3)`` uint8 RGB, turned upright (as
``video.read_frames`` shows it), drawn on with ``drawing._draw`` (coordinates in 0..1 of the upright frame), turned
back to the stored orientation and encoded with libx264 (``crf``, preset ``veryfast``; 8-bit ``yuv420p``, or
``yuv444p`` when the width or the height is odd, which 4:2:0 cannot hold). Every audio stream is copied packet for
packet, not re-encoded (PyAV's ``examples/basics/remux.py``); subtitle, data and attachment streams are dropped, and
so is an audio stream the target's container cannot hold (a notice says so).

Frames are paired with results by index: frame k is the k-th frame the decoder gives, counted from 0 as
``read_frames`` numbers them. Detection may sample (every 10th frame, a time range): a frame that was not sampled is
drawn with the detections of the latest sampled frame before it, a frame before the first sample with none. A frame
without a timestamp is left out, as ``read_frames`` leaves it out; a decoding error (a truncated file) ends the
annotation with the frames before it. Frames are decoded, drawn and encoded one at a time as the results come, so
memory stays bounded whatever the video's length.

The target's suffix says its container: ``.mp4`` / ``.m4v``, ``.mov`` or ``.mkv`` (``FORMATS``). MP4 and MOV keep
every time exactly (an edit list holds an audio stream that starts before 0, AAC's priming); Matroska cannot store
a time before 0, so there its muxer shifts all streams by that much (``annotation_suffix`` keeps an MP4 source's
suffix, which avoids it). The file is written under a hidden temporary name beside the target and renamed onto it
only when complete (``io.atomic_path``); it records that it annotates its source in the container's ``comment`` tag
(``marks``; ``is_video_annotation_of``), as ``drawing`` does for photos.
"""

from __future__ import annotations

import contextlib
import math
import queue
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import MissingDependencyError, OptionsError, notice
from ..io import atomic_path
from ..marks import ANNOTATION, has_mark, mark_container, source_mark
from .drawing import _draw
from .video import FrameResult, _open, probe, require_video

# Containers an annotation is written in, by the target's suffix: each holds H.264 and AAC with exact timestamps
# (AVI has no timestamps, WebM no H.264).
FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
DEFAULT_CRF = 20
_PRESET = "veryfast"
_QUEUED = 16  # samples waiting for the writer thread, at most


def annotation_suffix(source: str | Path) -> str:
    """The suffix of a video's annotation: the source's own when ``FORMATS`` has it, else ``.mkv``."""
    suffix = Path(source).suffix.lower()
    return suffix if suffix in FORMATS else ".mkv"


def is_video_annotation_of(path: str | Path, source: str | Path) -> bool:
    """True when the file at ``path`` is a video annotation blazeconv wrote of ``source`` (by its mark: ``marks``)."""
    return has_mark(path, source_mark(ANNOTATION, source))


class VideoAnnotation:
    """The annotation of the video ``source``, written to ``target``: see the module docstring.

    A context manager. ``add(result)`` takes the ``FrameResult`` of each sampled frame, in frame order; frames are
    decoded and encoded as the results come, a few at a time (memory stays bounded whatever the video's length).
    On leaving the block normally, ``close()`` writes the remaining frames and renames the file onto ``target``; on
    any exception, an interrupt included, the temporary file is removed and ``target`` is left as it was.

    A source PyAV cannot read is an ``ImageError`` naming it (on entering); a decoding error later ends the frames
    there (those that decoded are written; ``read_frames`` reports the error). An ``OSError`` while writing becomes
    an ``OutputError`` naming ``target``; a target suffix not in ``FORMATS`` or a ``crf`` outside 0..51 is an
    ``OptionsError``.
    """

    def __init__(self, source: str | Path, target: str | Path, *, crf: float = DEFAULT_CRF, paint=None, hold: int = 0,
                 mark: str | None = None):
        """``paint(picture, detections, index, time)``: what is done to each upright frame (a Pillow RGB image,
        changed in place) with the detections it gets (default: drawn). ``hold``: frame k gets the detections of
        every sampled frame within ``hold`` frames of it (before and after: the results are awaited that far ahead)
        instead of the latest sample's. ``mark``: what the container's ``comment`` tag says the file is (``marks``;
        default: the annotation of ``source``)."""
        self.source, self.target = Path(source), Path(target)
        self.paint, self.hold = paint or (lambda picture, found, index, time: _draw(picture, found)), hold
        self.mark = source_mark(ANNOTATION, source) if mark is None else mark
        if not isinstance(hold, int) or hold < 0:
            raise OptionsError(f"hold must be a whole number of frames >= 0, got {hold!r}")
        if self.target.suffix.lower() not in FORMATS:
            raise OptionsError(f"{self.target}: a video annotation is written as {', '.join(FORMATS)}; "
                               f"not {self.target.suffix or 'a file without a suffix'}")
        if not (isinstance(crf, (int, float)) and 0 <= crf <= 51 and math.isfinite(crf)):
            raise OptionsError(f"crf must be a number in 0..51, got {crf!r}")
        self.crf = crf
        self._stack: contextlib.ExitStack | None = None
        self._samples: list[tuple[int, list]] = []  # (frame, detections) of the sampled frames still needed
        self._next = 0  # the index of the next frame to encode
        self._last = -1  # the last sampled frame given to ``add``
        self._worker: threading.Thread | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=_QUEUED)
        self._failure: BaseException | None = None
        self._stopping = threading.Event()

    def __enter__(self) -> VideoAnnotation:
        import av

        require_video()
        rotation = probe(self.source).rotation  # ImageError naming the source before anything is written
        with contextlib.ExitStack() as stack:
            self._input, self._video = _open(self.source)
            stack.callback(self._input.close)
            temporary = stack.enter_context(atomic_path(self.target))
            self._output = av.open(str(temporary), "w", format=FORMATS[self.target.suffix.lower()])
            stack.push(_closing(self._output))
            self._encoder, self._turns = self._add_video(rotation), rotation // 90
            self._audio = self._add_audio()
            mark_container(self._output, self.mark)
            self._frames = self._source_frames()
            self._stack = stack.pop_all()
        self._worker = threading.Thread(target=self._work, name="blazeconv-video-writer", daemon=True)
        self._worker.start()
        return self

    def _work(self) -> None:
        """The writer thread: decode, paint and encode as the samples come (``None``: the end, flush all)."""
        try:
            while not self._stopping.is_set():
                result = self._queue.get()
                if result is None:
                    self._encode_until(None)
                    self._output.mux(self._encoder.encode(None))  # the encoder's delayed frames
                    return
                if self._stopping.is_set():
                    return
                self._encode_until(result.frame - self.hold)
                self._samples.append((result.frame, list(result.detections)))
        except BaseException as exc:  # raised in the caller's thread by the next add or close
            self._failure = exc

    def _hand_over(self, item) -> None:
        """Queue ``item`` for the writer thread, waiting while it is busy; its failure is raised here."""
        while True:
            if self._failure is not None:
                raise self._failure
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                if not self._worker.is_alive():
                    raise RuntimeError(f"{self.target}: the video writer stopped") from self._failure

    def _add_video(self, rotation: int):
        """The H.264 stream: the source's stored size, time base and display rotation."""
        source = self._video
        width, height = source.codec_context.width, source.codec_context.height
        try:
            stream = self._output.add_stream("libx264")
        except ValueError:  # av.codec.codec.UnknownCodecError
            raise MissingDependencyError("annotating videos needs FFmpeg's libx264 encoder, which this PyAV lacks "
                                         "(PyAV's wheels on PyPI include it)") from None
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        stream.time_base = stream.codec_context.time_base = source.time_base
        if source.average_rate:
            stream.codec_context.framerate = source.average_rate  # a hint for rate control; times come from pts
        stream.options = {"crf": f"{self.crf:g}", "preset": _PRESET}
        if rotation:
            stream.set_display_rotation(rotation)
        return stream

    def _add_audio(self) -> dict:
        """Source audio stream index -> its copy in the annotation (not those the container cannot hold)."""
        copies = {}
        for audio in self._input.streams.audio:
            try:
                copy = self._output.add_stream_from_template(audio)
            except ValueError as exc:  # "'mp4' format does not support 'pcm_s16le' codec"
                notice(f"{self.source}: audio stream {audio.index} left out of the annotation {self.target} ({exc})")
                continue
            if audio.language:
                copy.metadata["language"] = audio.language
            copies[audio.index] = copy
        return copies

    def _source_frames(self):
        """The source's video frames in presentation order; its audio packets are muxed on the way, so the
        annotation's streams interleave as the source's do. A decoding error ends the frames."""
        import av

        packets = self._input.demux(self._video, *(self._input.streams[index] for index in self._audio))
        while True:
            try:
                packet = next(packets, None)
                frames = packet.decode() if packet is not None and packet.stream is self._video else ()
            except (av.FFmpegError, ValueError, MemoryError):
                return  # a truncated or damaged file: the frames before it (read_frames raises VideoStopped)
            if packet is None:
                return
            if packet.stream is not self._video:
                if packet.size:  # not the empty packet that ends a stream (Matroska leaves some dts unset)
                    packet.stream = self._audio[packet.stream.index]
                    self._output.mux(packet)
                continue
            yield from (frame for frame in frames if frame.pts is not None)  # as read_frames: no time, no frame

    def add(self, result: FrameResult) -> None:
        """The detections of sampled frame ``result.frame``, handed to the writer thread: it encodes the frames that
        can no longer get detections from a later sample (those before it, or with ``hold`` those more than
        ``hold`` frames before it) while the caller goes on."""
        if result.frame <= self._last:
            raise ValueError(f"{self.source}: frame {result.frame} given after frame {self._last}; "
                             "results must come in frame order")
        self._last = result.frame
        self._hand_over(result)

    def _detections_for(self, index: int) -> list:
        """Frame ``index``'s detections: the latest sample's at or before it, or with ``hold`` those of every
        sample within ``hold`` frames of it. Samples no later frame needs are let go."""
        if self.hold == 0:
            while len(self._samples) > 1 and self._samples[1][0] <= index:
                self._samples.pop(0)
            return self._samples[0][1] if self._samples and self._samples[0][0] <= index else []
        while self._samples and self._samples[0][0] < index - self.hold:
            self._samples.pop(0)
        return [d for frame, found in self._samples if frame <= index + self.hold for d in found]

    def _encode_until(self, stop: int | None) -> None:
        """Encode the frames before index ``stop`` (every frame left when None)."""
        while (stop is None or self._next < stop) and not self._stopping.is_set():
            frame = next(self._frames, None)
            if frame is None:
                return
            self._output.mux(self._encoder.encode(self._painted(frame, self._detections_for(self._next))))
            self._next += 1

    def _painted(self, frame, detections):
        """``frame`` painted (on its upright view) with ``detections``, as a new frame to encode."""
        import av

        rgb = frame.to_ndarray(format="rgb24")  # (H, W, 3) as stored
        turns = self._turns
        canvas = Image.fromarray(np.ascontiguousarray(np.rot90(rgb, turns)))  # upright, as the detector saw it
        self.paint(canvas, detections, self._next, float(frame.pts * self._video.time_base))
        rgb = np.ascontiguousarray(np.rot90(np.asarray(canvas), -turns))  # back as stored
        picture = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        picture.pts, picture.time_base = frame.pts, self._video.time_base
        return picture

    def close(self) -> None:
        """Encode the frames left, copy the audio left, and rename the file onto ``target``."""
        stack, self._stack = self._stack, None
        if stack is None:
            return
        with stack:  # an exception here removes the temporary file
            self._hand_over(None)
            self._worker.join()
            if self._failure is not None:
                raise self._failure

    def __exit__(self, kind, value, traceback) -> bool:
        if kind is None:
            self.close()
            return False
        stack, self._stack = self._stack, None
        self._stop_worker()
        return bool(stack is not None and stack.__exit__(kind, value, traceback))

    def _stop_worker(self) -> None:
        """Stop the writer thread after the frame it is encoding (the file is removed after)."""
        if self._worker is None:
            return
        self._stopping.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._worker.join()


def _closing(container):
    """An exit callback closing a PyAV output container: on success it writes the trailer; after an exception
    whatever goes wrong closing is ignored, as the file is removed anyway and the exception is what matters."""

    def close(kind, value, traceback) -> bool:
        if kind is None:
            container.close()
        else:
            with contextlib.suppress(Exception):
                container.close()
        return False

    return close


__all__ = ["DEFAULT_CRF", "FORMATS", "VideoAnnotation", "annotation_suffix", "is_video_annotation_of"]
