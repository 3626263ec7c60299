"""Detections drawn on a copy of the image (``detect --annotate``)."""

from __future__ import annotations

import collections
import functools
import io
import itertools
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..marks import ANNOTATION, has_mark, photo_save_options, source_mark
from .records import Detection, clip_box

_BOX_COLOUR = (0, 220, 0)
# One colour per keypoint, in KEYPOINT_NAMES order (the README's legend lists them: keep the two together).
KEYPOINT_COLOURS = ((255, 60, 60), (60, 120, 255), (255, 220, 0), (255, 0, 255), (255, 140, 0), (0, 220, 255))
KEYPOINT_COLOUR_NAMES = ("red", "blue", "yellow", "magenta", "orange", "cyan")
# Markers are sized by the face (its box's longer side, pixels): lines 1/40 of it, keypoint dots of radius 1/30, the
# score's text 1/5 (at least 9 px, so a small face's score stays readable; at most 48).
_LINE_SHARE, _DOT_SHARE, _TEXT_SHARE = 1 / 40, 1 / 30, 1 / 5


def annotate(image: np.ndarray | Image.Image, detections: Sequence[Detection]) -> Image.Image:
    """A copy of ``image`` (``(H, W, 3)`` uint8 RGB or a Pillow image) with each detection drawn on it.

    Box outline (clipped to the image), the keypoints as dots (``KEYPOINT_COLOURS`` in ``KEYPOINT_NAMES`` order) and
    the score above the box; line width, dot size and text size follow each face's size, so a small face is not
    buried under its markers and a big one's stay visible.
    """
    canvas = image.convert("RGB") if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, np.uint8))
    _draw(canvas, detections)
    return canvas


def _draw(canvas: Image.Image, detections: Sequence[Detection]) -> None:
    """``annotate``'s drawing, on ``canvas`` (an RGB Pillow image) itself."""
    width, height = canvas.size
    draw = ImageDraw.Draw(canvas)
    for detection in detections:
        xmin, ymin, xmax, ymax = detection.box
        face = max((xmax - xmin) * width, (ymax - ymin) * height)
        line = max(1, round(face * _LINE_SHARE))
        radius = max(1.0, face * _DOT_SHARE)
        font = _font(min(48, max(9, round(face * _TEXT_SHARE))))
        rectangle = clip_box((xmin * width, ymin * height, xmax * width, ymax * height), width - 1, height - 1)
        draw.rectangle(rectangle, outline=_BOX_COLOUR, width=line)
        for (x, y), colour in zip(detection.keypoints, itertools.cycle(KEYPOINT_COLOURS)):
            cx, cy = x * width, y * height
            draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour,
                         outline=(0, 0, 0) if radius >= 2 else None)
        label = f"{detection.score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        pad = max(1, line)
        label_width, label_height = right - left + 2 * pad, bottom - top + 2 * pad
        # Above the box's top-left corner when there is room, else just inside it; always within the image.
        text_y = rectangle[1] - label_height if rectangle[1] - label_height >= 0 else rectangle[1] + line
        text_x = min(max(rectangle[0], 0), max(width - label_width, 0))
        text_y = min(max(text_y, 0), max(height - label_height, 0))
        draw.rectangle((text_x, text_y, text_x + label_width, text_y + label_height), fill=_BOX_COLOUR)
        draw.text((text_x + pad - left, text_y + pad - top), label, fill=(0, 0, 0), font=font)


@functools.lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


JPEG_SUFFIXES = (".jpg", ".jpeg")


def annotation_suffix(source: str | Path) -> str:
    """``.jpg`` for a JPEG input (annotated as a JPEG), ``.png`` for any other."""
    return ".jpg" if Path(source).suffix.lower() in JPEG_SUFFIXES else ".png"


def encode_annotation(image: np.ndarray, detections: Sequence[Detection], source: str | Path, *, jpeg: bool,
                      quality: int = 90, max_side: int | None = None) -> bytes:
    """An annotation file's bytes: ``image`` ``(H, W, 3)`` uint8 RGB with ``detections`` drawn, scaled
    to at most ``max_side``, as a JPEG at ``quality`` (``jpeg``) or a PNG, marked as the annotation of ``source``."""
    picture = Image.fromarray(np.asarray(image, np.uint8))
    if max_side is not None and max(picture.size) > max_side:
        scale = max_side / max(picture.size)
        picture = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
                                 Image.Resampling.BILINEAR, reducing_gap=2.0)  # box-reduce first: fast, no aliasing
    _draw(picture, detections)  # the picture is this function's own: drawn on in place
    # Annotations say whose they are, so that a later run replaces its own and never a user's file of the same name.
    mark = source_mark(ANNOTATION, source)
    buffer = io.BytesIO()
    if jpeg:
        picture.save(buffer, format="JPEG", quality=quality, **photo_save_options("JPEG", mark))
    else:
        picture.save(buffer, format="PNG", compress_level=_PNG_LEVEL, **photo_save_options("PNG", mark))
    return buffer.getvalue()


# zlib level of annotation PNGs: 1 writes bigger files than Pillow's default 6, in less than half the time (docs/bench.md).
_PNG_LEVEL = 1


def is_annotation_of(path: str | Path, source: str | Path) -> bool:
    """True when the file at ``path`` is an annotation blazeconv wrote of ``source`` (by its mark: ``marks``)."""
    return has_mark(path, source_mark(ANNOTATION, source))


class AnnotationWriter:
    """Annotations drawn and encoded on a background thread while the caller goes on; written by the caller.

    ``submit`` hands over one image and returns at once (it waits only while ``ahead`` annotations are already
    being encoded, which bounds the images held); each finished annotation is written to its path with ``write``
    (``write(path, data)``, the caller's atomic writer) in the caller's thread, in the order submitted, during a
    later ``submit`` or ``close``, and its ``then`` callback runs right after (``then`` alone, without an image:
    after the annotations submitted before it). So what the caller records in ``then`` (a JSONL line) is never
    ahead of the annotations on disk. Files are only ever written by the caller, so an interrupt in the caller
    leaves no file half written; annotations not yet written are dropped. Use as a context manager: ``close`` on
    success writes the rest, any exception drops them.
    """

    def __init__(self, write, *, jpeg_quality: int = 90, max_side: int | None = None, ahead: int = 2):
        self._write, self._quality, self._max_side, self._ahead = write, jpeg_quality, max_side, ahead
        self._pool: ThreadPoolExecutor | None = None
        self._pending: collections.deque[tuple[Path | None, Future | None, object]] = collections.deque()
        self._encoding = 0

    def submit(self, image: np.ndarray | None, detections: Sequence[Detection], path: Path | None,
               source: str | Path, then=None) -> None:
        """Annotate ``image`` (``None``: nothing to draw) into ``path``, then call ``then()`` (if given)."""
        future = None
        if image is not None:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="blazeconv-annotate")
            jpeg = Path(path).suffix.lower() in JPEG_SUFFIXES
            future = self._pool.submit(encode_annotation, image, detections, source, jpeg=jpeg, quality=self._quality,
                                       max_side=self._max_side)
            self._encoding += 1
        self._pending.append((path, future, then))
        while self._pending and (self._pending[0][1] is None or self._pending[0][1].done()
                                 or self._encoding > self._ahead):
            self._finish_oldest()

    def then(self, callback) -> None:
        """Call ``callback()`` once the annotations submitted so far are written."""
        self.submit(None, (), None, "", then=callback)

    def _finish_oldest(self) -> None:
        path, future, then = self._pending.popleft()
        if future is not None:
            self._encoding -= 1
            self._write(path, future.result())
        if then is not None:
            then()

    def close(self) -> None:
        """Write every annotation still pending (in order, with its callback) and stop the thread."""
        while self._pending:
            self._finish_oldest()
        if self._pool is not None:
            self._pool.shutdown()

    def __enter__(self) -> AnnotationWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
            return
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
