"""``detect --annotate`` for a video: the whole video again, H.264, with the detections drawn on every frame.

The annotation holds every frame of the source's first video stream, in presentation order, with the source's
timestamps (pts in the source stream's time base; a muxer may store them in another time base, the times stay),
its stored size and its display rotation. Each frame is decoded to ``(H, W, 3)`` uint8 RGB, turned upright (as
``video.read_frames`` shows it), drawn on with ``drawing._draw`` (coordinates in 0..1 of the upright frame), turned
back to the stored orientation and encoded with libx264 (``crf``, preset ``veryfast``, a 2-frame lookahead and one
B-frame: ``_ENCODER_OPTIONS``, for memory; 8-bit ``yuv420p``, or
``yuv444p`` when the width or the height is odd, which 4:2:0 cannot hold). Every audio stream is copied packet for
packet, not re-encoded (PyAV's ``examples/basics/remux.py``), with its language tag and no other (``audio=False``:
none is); no container tag, chapter or other stream tag of the source is copied; subtitle, data and attachment
streams are dropped, and so is an audio stream the target's container cannot hold (a notice says so).

Frames are paired with results by index: frame k is the k-th frame the decoder gives, counted from 0 as
``read_frames`` numbers them. Detection may sample (every 10th frame, a time range): a frame that was not sampled is
drawn with the detections of the latest sampled frame before it, a frame before the first sample with none. A frame
without a timestamp is left out, as ``read_frames`` leaves it out; a decoding error (a truncated file) ends the
annotation with the frames before it. Frames are drawn and encoded as the results come, a few at a time, so memory
stays bounded whatever the video's length. The frames waiting for later results (``hold``) wait converted to the
encoder's pixel format (4:2:0: half an RGB frame's bytes); when one is painted, its pixels are turned back to RGB
for ``paint`` and only the box around what it painted (the boxes ``paint`` returns, else where the pictures differ)
is converted again, so every other pixel is encoded from exactly the conversion the encoder made of the RGB frame.

Made from an ``OpenedVideo``, the annotation is written in the same pass as the detection: ``stream_video(video,
writer=annotation)`` hands it every decoded frame and audio packet, so each frame is decoded once. Made from a path,
it decodes the source itself as the results come (results computed elsewhere: a JSONL file, Ray).

The target's suffix says its container: ``.mp4`` / ``.m4v``, ``.mov`` or ``.mkv`` (``FORMATS``). MP4 and MOV keep
every time exactly (an edit list holds an audio stream that starts before 0, AAC's priming); Matroska cannot store
a time before 0, so there its muxer shifts all streams by that much (``annotation_suffix`` keeps an MP4 source's
suffix, which avoids it). The file is written under a hidden temporary name beside the target and renamed onto it
only when complete (``io.atomic_path``); it records that it annotates its source in the container's ``comment`` tag
(``marks``; ``is_video_annotation_of``), as ``drawing`` does for photos.
"""

from __future__ import annotations

import collections
import contextlib
import math
import queue
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from ..errors import ImageError, MissingDependencyError, OptionsError, notice
from ..io import atomic_path
from ..marks import ANNOTATION, has_mark, mark_container, source_mark
from .drawing import _draw
from .records import Detection
from .video import FrameResult, OpenedVideo, Sampling, VideoFrame, _walk, open_video, require_video

# Containers an annotation is written in, by the target's suffix: each holds H.264 and AAC with exact timestamps
# (AVI has no timestamps, WebM no H.264).
FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
DEFAULT_CRF = 20
_PRESET = "veryfast"
# libx264's own frame buffers, chosen by measurement (docs/bench.md, "Blur memory at 1080p and 4K"): each frame x264
# holds at 4K takes about 45 MB (the picture, its half-pixel planes, the lookahead's lowres copy), and veryfast's
# defaults (rc-lookahead 10, 3 B-frames) hold about a dozen: decoding and encoding a 30-frame 4K clip alone peaked at
# 694 MiB, with these at 414 MiB. A 2-frame lookahead keeps MB-tree on (0 turns it off: +79 % bytes at the same
# CRF). One B-frame, not 0: without B-frames the first video timestamp is not negative and the MP4 muxer drops an
# audio packet before 0 (AAC's priming; tests/test_video_outputs.py). Same CRF, same frames and times; on that clip
# 3.6 % fewer bytes and 1.8 dB less Y-PSNR against the source (52.8 instead of 54.5 dB). FFmpeg calls B-frames "bf".
_ENCODER_OPTIONS = {"rc-lookahead": "2", "bf": "1"}
_LANGUAGE = re.compile("[a-z]{3}")  # an ISO 639-2 code, the only stream tag an audio copy keeps
# Samples, frames and audio packets waiting for the writer thread, at most: each frame waits as RGB (24 MB at 4K);
# 4 instead of 2 held 25 MiB more at 4K for no speed (docs/bench.md, "Blur memory at 1080p and 4K").
_QUEUED = 2
# A painted frame's pixels replace the held ones in the box where they changed, this many pixels wider on each side
# (even, so that 4:2:0 chroma samples are recomputed whole).
_PATCH_MARGIN = 4
_BAND_ROWS = 128  # rows of a painted picture compared with the held one at a time


def annotation_suffix(source: str | Path) -> str:
    """The suffix of a video's annotation: the source's own when ``FORMATS`` has it, else ``.mkv``."""
    suffix = Path(source).suffix.lower()
    return suffix if suffix in FORMATS else ".mkv"


def is_video_annotation_of(path: str | Path, source: str | Path) -> bool:
    """True when the file at ``path`` is a video annotation blazeconv wrote of ``source`` (by its mark: ``marks``)."""
    return has_mark(path, source_mark(ANNOTATION, source))


# Tracked masks cover each face where its track is on the frame and this many frames before and after: a detector
# places the box of a small, fast face a few pixels behind it, and the neighbours' boxes cover where it really is.
# Measured on the one-by-one clip and its 384x216 copy (docs/tracks.md): 0 hides 24 of CenterFace's 30 faces, 1 to
# 3 hide 28 (5: 26, the ellipse of a long merged region misses its ends); on the small copy 3 hides 6 of 7,
# as the union does, 1 hides 5; with keyframes every 3 frames, 3 hides 28 of 30.
SPREAD = 3


def along_tracks(samples: list[tuple[int, list]], index: int, spread: int = SPREAD) -> list:
    """Frame ``index``'s masks from the ``(frame, detections)`` samples around it (in frame order), following the
    tracks: for each track with a detection in ``samples``, where it is on frames ``index - spread`` to ``index +
    spread`` (``tracking.track_at``: its detection, else interpolated between the samples that hold it, else held
    and moved on by its velocity beyond its ends); detections without a track are all kept, as without tracks. The
    caller chooses how far a track reaches by the samples it gives (``VideoAnnotation``: those within ``hold``)."""
    from .tracking import track_at

    found: dict[int, list] = {}
    loose = []
    for frame, detections in samples:
        for d in detections:
            if d.track is None:
                loose.append(d)
            else:
                found.setdefault(d.track, []).append((frame, d))
    chosen = list(loose)
    for track in sorted(found):
        for frame in range(index - spread, index + spread + 1):
            chosen += track_at(found[track], frame)
    return chosen


class VideoAnnotation:
    """The annotation of the video ``source``, written to ``target``: see the module docstring.

    A context manager. ``add(result)`` takes the ``FrameResult`` of each sampled frame, in frame order; frames are
    encoded as the results come, a few at a time (memory stays bounded whatever the video's length). On leaving the
    block normally, ``close()`` writes the remaining frames and renames the file onto ``target``; on any exception,
    an interrupt included, the temporary file is removed and ``target`` is left as it was.

    ``source``: an ``OpenedVideo`` whose pass feeds the annotation (``stream_video(video, writer=annotation)``: it
    calls ``add``, ``write_frame`` and ``write_packet``, a ``video.FrameWriter``), or the path of a video decoded
    here for the results given to ``add``.

    A source PyAV cannot read is an ``ImageError`` naming it (on entering); a decoding error later ends the frames
    there (those that decoded are written; ``read_frames`` reports the error). An ``OSError`` while writing becomes
    an ``OutputError`` naming ``target``; a target suffix not in ``FORMATS`` or a ``crf`` outside 0..51 is an
    ``OptionsError``.
    """

    def __init__(self, source: str | Path | OpenedVideo, target: str | Path, *, crf: float = DEFAULT_CRF, paint=None,
                 hold: int = 0, mark: str | None = None, audio: bool = True):
        """``paint(picture, detections, index, time)``: what is done to each upright frame (a Pillow RGB image,
        changed in place) with the detections it gets (default: drawn); it may return the pixel boxes ``(left, top,
        right, bottom)`` outside which it changed nothing (else the painted frame is compared with the held one).
        ``hold``: frame k gets the detections of every sampled frame within ``hold`` frames of it (before and after:
        the results are awaited that far ahead) instead of the latest sample's. ``mark``: what the container's
        ``comment`` tag says the file is (``marks``; default: the annotation of ``source``). ``audio``: copy the
        source's audio streams (False: none is written)."""
        self.video = source if isinstance(source, OpenedVideo) else None  # a pass's frames, or decoded here
        source = source.path if self.video is not None else source
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
        self.crf, self.audio = crf, audio
        self._stack: contextlib.ExitStack | None = None
        self._samples: list[tuple[int, list]] = []  # (frame, detections) of the sampled frames still needed
        self._pending: collections.deque[_Held] = collections.deque()  # frames come, not yet encoded
        self._own = None  # without a pass: the source's frames and audio packets, decoded here
        self._known = -1  # every sample up to this frame has come
        self._last = -1  # the last sampled frame given to ``add``
        self._last_frame = -1  # the last frame given to ``write_frame``
        self._worker: threading.Thread | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=_QUEUED)
        self._failure: BaseException | None = None
        self._stopping = threading.Event()

    def __enter__(self) -> VideoAnnotation:
        import av

        require_video()
        with contextlib.ExitStack() as stack:
            video = self.video
            if video is None:  # ImageError naming the source before anything is written
                video = stack.enter_context(open_video(self.source))
                self._own = _walk(video, Sampling(), None, everything=True)
            rotation, self._input, self._video = video.info.rotation, video.container, video.stream
            temporary = stack.enter_context(atomic_path(self.target))
            self._output = av.open(str(temporary), "w", format=FORMATS[self.target.suffix.lower()])
            stack.push(_closing(self._output))
            self._encoder, self._turns = self._add_video(rotation), rotation // 90
            self._audio = self._add_audio(video.audio if self.audio else ())
            mark_container(self._output, self.mark)
            self._stack = stack.pop_all()
        self._worker = threading.Thread(target=self._work, name="blazeconv-video-writer", daemon=True)
        self._worker.start()
        return self

    def _work(self) -> None:
        """The writer thread: paint and encode as the samples and frames come (``None``: the end, flush all)."""
        try:
            while not self._stopping.is_set():
                item = self._queue.get()
                if item is None:
                    self._encode_ready(final=True)
                    self._output.mux(self._encoder.encode(None))  # the encoder's delayed frames
                    return
                if self._stopping.is_set():
                    return
                if isinstance(item, FrameResult):
                    self._samples.append((item.frame, list(item.detections)))
                    self._known = max(self._known, item.frame)
                elif isinstance(item, VideoFrame):  # from a pass: no sample for it comes after it
                    self._pending.append(self._held(item))
                    self._known = max(self._known, item.index)
                    item = None  # its RGB image goes now
                else:
                    self._copy_audio(item)
                    continue
                self._encode_ready()
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
        stream.options = {"crf": f"{self.crf:g}", "preset": _PRESET, **_ENCODER_OPTIONS}
        if rotation:
            stream.set_display_rotation(rotation)
        return stream

    def _add_audio(self, streams: Sequence) -> dict:
        """Source audio stream index -> its copy in the annotation (not those the container cannot hold). A copy
        gets the codec parameters and, of the source stream's metadata, only its language when that is an ISO 639-2
        code (three letters): no title, handler name or other tag is copied."""
        copies = {}
        for audio in streams:
            try:
                copy = self._output.add_stream_from_template(audio)
            except ValueError as exc:  # "'mp4' format does not support 'pcm_s16le' codec"
                notice(f"{self.source}: audio stream {audio.index} left out of the annotation {self.target} ({exc})")
                continue
            if _LANGUAGE.fullmatch(audio.language or ""):
                copy.metadata["language"] = audio.language
            copies[audio.index] = copy
        return copies

    def _copy_audio(self, packet) -> None:
        """An audio packet of the source muxed as it is (not re-encoded), when its stream has a copy."""
        copy = self._audio.get(packet.stream.index)
        if copy is not None:
            packet.stream = copy
            self._output.mux(packet)

    def add(self, result: FrameResult) -> None:
        """The detections of sampled frame ``result.frame``, handed to the writer thread: it encodes the frames that
        can no longer get detections from a later sample (up to it, or with ``hold`` those ``hold`` frames before
        it) while the caller goes on."""
        if result.frame <= self._last:
            raise ValueError(f"{self.source}: frame {result.frame} given after frame {self._last}; "
                             "results must come in frame order")
        self._last = result.frame
        self._hand_over(result)

    def write_frame(self, frame: VideoFrame) -> None:
        """A frame of the pass (``stream_video``), in order, after ``add`` when it was sampled: painted and encoded
        once no later sample can change it."""
        if self.video is None:
            raise ValueError(f"{self.source}: this annotation decodes its source itself; make it from the OpenedVideo "
                             "of the pass to be given its frames")
        if frame.index <= self._last_frame:
            raise ValueError(f"{self.source}: frame {frame.index} given after frame {self._last_frame}")
        self._last_frame = frame.index
        self._hand_over(frame)

    def write_packet(self, packet) -> None:
        """An audio packet of the pass's video, where it comes in the file: copied as it is."""
        self._hand_over(packet)

    def _detections_for(self, index: int) -> list:
        """Frame ``index``'s detections: the latest sample's at or before it, or with ``hold`` those of every
        sample within ``hold`` frames of it (tracked detections: ``along_tracks``). Samples no later frame needs
        are let go."""
        if self.hold == 0:
            while len(self._samples) > 1 and self._samples[1][0] <= index:
                self._samples.pop(0)
            return self._samples[0][1] if self._samples and self._samples[0][0] <= index else []
        while self._samples and self._samples[0][0] < index - self.hold:
            self._samples.pop(0)
        near = [(frame, found) for frame, found in self._samples if frame <= index + self.hold]
        if any(d.track is not None for _, found in near for d in found):
            return along_tracks(near, index)
        return [d for _, found in near for d in found]

    def _encode_ready(self, final: bool = False) -> None:
        """Encode the frames no later sample can change: up to ``hold`` frames before the latest frame or sample
        known (every frame left with ``final``). Without a pass, the source's frames are decoded here as needed."""
        while not self._stopping.is_set():
            if not self._pending and self._own is not None:
                item = self._next_own()
                if item is None:
                    return
                if isinstance(item, VideoFrame):
                    self._pending.append(self._held(item))
                else:
                    self._copy_audio(item)
                continue
            if not self._pending or (not final and self._pending[0].index > self._known - self.hold):
                return
            frame = self._pending.popleft()
            self._output.mux(self._encoder.encode(self._painted(frame, self._detections_for(frame.index))))

    def _next_own(self):
        """The next frame or audio packet of the source decoded here, None at its end. A decoding error ends the
        frames: those before it are written (``read_frames`` reports it)."""
        try:
            return next(self._own, None)
        except ImageError:
            self._own = iter(())
            return None

    def _held(self, frame: VideoFrame) -> _Held:
        """``frame`` as it waits for its detections: turned back as stored and converted to the encoder's pixel
        format, as the encoder converts an RGB frame (same scaler, same defaults)."""
        import av

        rgb = np.ascontiguousarray(np.rot90(frame.image, -self._turns))  # (H, W, 3) as stored
        picture = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=self._encoder.pix_fmt)
        return _Held(frame.index, frame.time, frame.pts, picture)

    def _painted(self, held: _Held, detections):
        """``held`` painted (on its upright image) with ``detections``, as the frame to encode: the held picture
        with the box that holds every changed pixel converted again from the painted one (``_PATCH_MARGIN``
        wider). The box: around those ``paint`` says it painted, else found by comparing the pictures."""
        import av

        upright = np.rot90(held.picture.to_ndarray(format="rgb24"), self._turns)  # (H, W, 3) upright, a view
        canvas = Image.fromarray(np.ascontiguousarray(upright))  # a copy
        painted = self.paint(canvas, detections, held.index, held.time)
        if painted is None:
            box = _changed_box(upright, np.asarray(canvas), _PATCH_MARGIN)
        else:
            boxes = [b for b in painted if b[2] > b[0] and b[3] > b[1]]
            box = _box_around(min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
                              max(b[3] for b in boxes), _PATCH_MARGIN, canvas.width, canvas.height) if boxes else None
        picture = held.picture
        if box is not None:
            patch = np.ascontiguousarray(np.rot90(np.asarray(canvas.crop(box)), -self._turns))  # as stored
            x, y = _turned_corner(box, canvas.width, canvas.height, -self._turns)
            _paste(picture, av.VideoFrame.from_ndarray(patch, format="rgb24").reformat(format=picture.format.name),
                   x, y)
        picture.pts, picture.time_base = held.pts, self._video.time_base
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


class _Held(NamedTuple):
    """A frame waiting in the writer: its ``index``, ``time`` and ``pts`` and its ``picture`` (a PyAV frame as
    stored, in the encoder's pixel format)."""

    index: int
    time: float
    pts: int | None
    picture: object


def _changed_box(before: np.ndarray, after: np.ndarray, margin: int) -> tuple[int, int, int, int] | None:
    """The box around every pixel where the ``(H, W, 3)`` arrays differ (``_box_around``), None where none does;
    compared a band of rows at a time, so that no frame-sized mask is made."""
    height, width = before.shape[:2]
    rows, columns = np.zeros(height, bool), np.zeros(width, bool)
    for y in range(0, height, _BAND_ROWS):
        changed = before[y : y + _BAND_ROWS] != after[y : y + _BAND_ROWS]  # (rows, W, 3)
        rows[y : y + _BAND_ROWS] = changed.reshape(len(changed), -1).any(axis=1)
        if rows[y : y + _BAND_ROWS].any():
            columns |= changed.reshape(-1, width * 3).any(axis=0).reshape(width, 3).any(axis=1)
    if not rows.any():
        return None
    ys, xs = np.flatnonzero(rows), np.flatnonzero(columns)
    return _box_around(int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1, margin, width, height)


def _box_around(left: int, top: int, right: int, bottom: int, margin: int, width: int,
                height: int) -> tuple[int, int, int, int]:
    """The box ``(x0, y0, x1, y1)`` (pixels, end exclusive) around ``left..right`` x ``top..bottom`` (end
    exclusive), ``margin`` wider on each side with its corners on even pixels, within the ``width`` x ``height``
    picture."""
    x0, y0 = max(0, left - margin) // 2 * 2, max(0, top - margin) // 2 * 2
    x1, y1 = min(width, (right + margin + 1) // 2 * 2), min(height, (bottom + margin + 1) // 2 * 2)
    return x0, y0, x1, y1


def _turned_corner(box: tuple[int, int, int, int], width: int, height: int, turns: int) -> tuple[int, int]:
    """The top-left corner that ``box`` (pixels of a ``width`` x ``height`` picture) has once the picture is turned
    as ``np.rot90(picture, turns)`` turns it (a quarter turn counter-clockwise each; negative: clockwise). Even
    corners of a picture of even size stay even."""
    x0, y0, x1, y1 = box
    for _ in range(turns % 4):  # a quarter turn counter-clockwise: (x, y) -> (y, width - 1 - x)
        x0, y0, x1, y1 = y0, width - x1, y1, width - x0
        width, height = height, width
    return x0, y0


def _paste(picture, patch, x: int, y: int) -> None:
    """Copy the PyAV frame ``patch`` into ``picture`` (the same planar pixel format) at pixel ``(x, y)`` (even)."""
    for plane, source in zip(picture.planes, patch.planes):
        step_x, step_y = picture.width // plane.width, picture.height // plane.height  # 2 for 4:2:0 chroma, else 1
        into = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
        part = np.frombuffer(source, np.uint8).reshape(-1, source.line_size)[: source.height, : source.width]
        into[y // step_y : y // step_y + part.shape[0], x // step_x : x // step_x + part.shape[1]] = part


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


class VideoAnnotations:
    """``detect --annotate`` for the videos of a run: one ``VideoAnnotation`` open at a time, made when the run's
    pass opens a video (``writer_for``, which ``inputs.stream_inputs`` calls) and fed by that pass, and closed
    (written, renamed into place) after the video's last frame or its error, as ``add`` sees the run's results go by.
    ``annotations``: each input's annotation path (empty: nothing annotated); ``earlier``: per video, the frame
    records a resumed run read from its JSONL; they are drawn too, so a resumed video's annotation is whole.
    A context manager: an exception leaving it removes the annotation being written."""

    def __init__(self, annotations: Sequence[Path], videos: set[int], earlier: dict[int, list[dict]]):
        self.annotations, self.videos, self.earlier = annotations, videos, earlier
        self.open = None  # [index, VideoAnnotation, frames detected in this run]

    def writer_for(self, index: int, video: OpenedVideo) -> VideoAnnotation | None:
        """The annotation of input ``index``, opened on its ``video`` for the pass to feed (None: not annotated)."""
        if not self.annotations:
            return None
        self._close()
        self.annotations[index].parent.mkdir(parents=True, exist_ok=True)  # inside --annotate DIR only
        annotation = VideoAnnotation(video, self.annotations[index]).__enter__()
        self.open = [index, annotation, 0]
        for record in self.earlier.get(index, []):
            annotation.add(_frame_of(video.path, record))
        return annotation

    def add(self, index: int, result) -> None:
        """Each result of the run, in order (``stream_inputs``' ``(index, result)``): an annotation is closed after
        its video's last frame, or after its error with the frames that decoded (removed when no frame was
        detected: the video was not read, as without a pass)."""
        if self.open is not None and self.open[0] != index:
            self._close()
        if self.open is None:
            return
        if not isinstance(result, FrameResult):  # the video failed or stopped early: what decoded is written
            if self.open[2]:
                self._close()
            else:  # nothing detected: no annotation, as when the file could not be read
                self._close((type(result.error), result.error, None))
            return
        self.open[2] += 1
        if result.last:
            self._close()

    def _close(self, exc_info=(None, None, None)) -> None:
        if self.open is not None:
            annotation, self.open = self.open[1], None
            annotation.__exit__(*exc_info)

    def __enter__(self) -> VideoAnnotations:
        return self

    def __exit__(self, *exc_info) -> None:
        self._close(exc_info)


def _frame_of(path: Path, record: dict) -> FrameResult:
    """The ``FrameResult`` a video frame's JSONL record says."""
    found = [Detection(d["score"], d["box"], d["keypoints"]) for d in record["detections"]]
    return FrameResult(path, record["frame"], record["time"], record["width"], record["height"], found)


__all__ = ["DEFAULT_CRF", "FORMATS", "VideoAnnotation", "VideoAnnotations", "annotation_suffix",
           "is_video_annotation_of"]
