"""Detections drawn on a copy of the image (``detect --annotate``)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from .records import Detection

_BOX_COLOUR = (0, 220, 0)
# One colour per keypoint, in KEYPOINT_NAMES order.
_KEYPOINT_COLOURS = ((255, 60, 60), (60, 120, 255), (255, 220, 0), (255, 0, 255), (255, 140, 0), (0, 220, 255))


def annotate(image: np.ndarray | Image.Image, detections: Sequence[Detection]) -> Image.Image:
    """A copy of ``image`` (``(H, W, 3)`` uint8 RGB or a Pillow image) with each detection drawn on it.

    Box outline, the keypoints as dots (colours in ``KEYPOINT_NAMES`` order) and the score above the box;
    line width and font size scale with the image so they stay readable on small and large images.
    """
    canvas = image.convert("RGB") if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, np.uint8))
    width, height = canvas.size
    draw = ImageDraw.Draw(canvas)
    line = max(1, round(min(width, height) / 250))
    radius = max(1.5, line * 2)
    font = _font(max(9, round(min(width, height) / 32)))
    for detection in detections:
        xmin, ymin, xmax, ymax = detection.box
        rectangle = (xmin * width, ymin * height, xmax * width, ymax * height)
        draw.rectangle(rectangle, outline=_BOX_COLOUR, width=line)
        for (x, y), colour in zip(detection.keypoints, itertools.cycle(_KEYPOINT_COLOURS)):
            cx, cy = x * width, y * height
            draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour, outline=(0, 0, 0))
        label = f"{detection.score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        label_width, label_height = right - left + 2 * line, bottom - top + 2 * line
        # Above the box's top-left corner when there is room, else just inside it; always within the image.
        text_y = rectangle[1] - label_height - line if rectangle[1] - label_height - line >= 0 else rectangle[1] + line
        text_x = min(max(rectangle[0], 0), max(width - label_width, 0))
        text_y = min(max(text_y, 0), max(height - label_height, 0))
        draw.rectangle((text_x, text_y, text_x + label_width, text_y + label_height), fill=_BOX_COLOUR)
        draw.text((text_x + line - left, text_y + line - top), label, fill=(0, 0, 0), font=font)
    return canvas


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


# Annotations say whose they are, so that a later run replaces its own and never a user's file of the same name.
_MARK = "blazeconv annotation of "
JPEG_SUFFIXES = (".jpg", ".jpeg")


def annotation_suffix(source: str | Path) -> str:
    """``.jpg`` for a JPEG input (annotated as a JPEG), ``.png`` for any other."""
    return ".jpg" if Path(source).suffix.lower() in JPEG_SUFFIXES else ".png"


def save_annotation(image: np.ndarray, detections: Sequence[Detection], path: str | Path, source: str | Path, *,
                    jpeg: bool | None = None, quality: int = 90, max_side: int | None = None) -> None:
    """``annotate`` ``image`` ``(H, W, 3)`` uint8 RGB and save it at ``path`` (a file to write: the caller makes it
    atomic): JPEG at ``quality`` when ``jpeg`` (default: ``path`` ends in ``.jpg``), else PNG; scaled down first so
    its longer side is at most ``max_side``. The file records that it annotates ``source`` (``is_annotation_of``)."""
    picture = Image.fromarray(np.asarray(image, np.uint8))
    if max_side is not None and max(picture.size) > max_side:
        scale = max_side / max(picture.size)
        picture = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
                                 Image.Resampling.BILINEAR, reducing_gap=2.0)  # box-reduce first: fast, no aliasing
    drawn = annotate(picture, detections)
    mark = _MARK + os.path.realpath(source)
    if Path(path).suffix.lower() in JPEG_SUFFIXES if jpeg is None else jpeg:
        drawn.save(path, format="JPEG", quality=quality, comment=mark.encode())
    else:
        info = PngImagePlugin.PngInfo()
        info.add_text("Comment", mark)
        drawn.save(path, format="PNG", pnginfo=info)


def is_annotation_of(path: str | Path, source: str | Path) -> bool:
    """True when the file at ``path`` is an annotation blazeconv wrote of ``source`` (by the mark it records)."""
    try:
        with Image.open(path) as image:
            mark = image.info.get("comment", image.info.get("Comment"))
    except Exception:  # not an image at all: certainly not ours
        return False
    if isinstance(mark, bytes):
        mark = mark.decode("utf-8", "replace")
    return mark == _MARK + os.path.realpath(source)
