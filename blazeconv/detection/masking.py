"""Faces hidden in a picture (``blazeconv blur``): each detection's region blurred, pixelated or filled.

A region is the detection's box scaled about its centre by ``Masking.scale`` (1.0: the box itself; the default is
larger, since BlazeFace's box stops at the brows and the chin), widened to cover each keypoint (eyes, nose, mouth,
ear tragions) with ``KEYPOINT_MARGIN`` of the box's size around it (a head turned sideways puts an ear, and the head
behind it, outside the frontal-style box), clipped to the picture; ``shape`` ``ellipse`` masks
the ellipse inscribed in that rectangle, ``box`` the rectangle. ``blur`` is a Gaussian blur whose radius grows with
the region (a quarter of its shorter side), after the region is first reduced to ``_BLUR_CELLS`` cells across its
longer side, so that no feature of the face survives whatever its size; ``pixelate`` shows the region as ``_PIXEL_CELLS`` coarse cells
across; ``fill`` paints it one colour. Pictures are ``(H, W, 3)`` uint8 RGB arrays; coordinates of detections are
0..1 of the picture's width and height.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..errors import OptionsError
from .records import Detection

STYLES = ("blur", "pixelate", "fill")
SHAPES = ("ellipse", "box")
DEFAULT_SCALE = 1.5
_BLUR_CELLS = 12  # a blurred face is first reduced to at most this many pixels across
_PIXEL_CELLS = 10  # a pixelated face shows this many cells across its longer side
_MERGE_SHARE = 0.3  # regions overlapping by this share of the smaller one are hidden as one
# Around each keypoint, this share of the box's width (x) and height (y) is masked too: a turned head's ear lies at
# or beyond the box's side, and the head goes on behind it.
KEYPOINT_MARGIN = 0.5


@dataclass(frozen=True)
class Masking:
    """How faces are hidden: ``style`` (blur, pixelate, fill), ``shape`` (ellipse, box), ``scale`` (the region's side
    over the box's, >= 1), ``colour`` (RGB of ``fill``)."""

    style: str = "blur"
    shape: str = "ellipse"
    scale: float = DEFAULT_SCALE
    colour: tuple[int, int, int] = (0, 0, 0)

    def check(self) -> Masking:
        if self.style not in STYLES:
            raise OptionsError(f"style must be one of {', '.join(STYLES)}, got {self.style!r}")
        if self.shape not in SHAPES:
            raise OptionsError(f"shape must be one of {', '.join(SHAPES)}, got {self.shape!r}")
        if not (isinstance(self.scale, (int, float)) and math.isfinite(self.scale) and 1 <= self.scale <= 10):
            raise OptionsError(f"mask scale must be a number from 1 to 10, got {self.scale!r}")
        if len(self.colour) != 3 or not all(isinstance(c, int) and 0 <= c <= 255 for c in self.colour):
            raise OptionsError(f"fill colour must be three whole numbers 0..255, got {self.colour!r}")
        return self


DEFAULT_MASKING = Masking()


def mask_regions(detections: Sequence[Detection], width: int, height: int, scale: float = DEFAULT_SCALE
                 ) -> list[tuple[int, int, int, int]]:
    """Each detection's region in pixels, ``(left, top, right, bottom)`` (right and bottom exclusive): the box scaled
    about its centre by ``scale``, widened to hold every keypoint with ``KEYPOINT_MARGIN`` of the box's width and
    height around it, clipped to the ``width`` x ``height`` picture; empty regions are left out, overlapping ones
    merged (``merge_regions``)."""
    regions: list[tuple[int, int, int, int]] = []
    for detection in detections:
        xmin, ymin, xmax, ymax = detection.box
        cx, cy = (xmin + xmax) / 2 * width, (ymin + ymax) / 2 * height
        box_w, box_h = (xmax - xmin) * width, (ymax - ymin) * height
        xs = [x * width for x, _ in detection.keypoints]
        ys = [y * height for _, y in detection.keypoints]
        reach_x, reach_y = KEYPOINT_MARGIN * box_w, KEYPOINT_MARGIN * box_h
        left = min(cx - box_w * scale / 2, min(xs) - reach_x)
        right = max(cx + box_w * scale / 2, max(xs) + reach_x)
        top = min(cy - box_h * scale / 2, min(ys) - reach_y)
        bottom = max(cy + box_h * scale / 2, max(ys) + reach_y)
        left, top = max(0, math.floor(left)), max(0, math.floor(top))
        right, bottom = min(width, math.ceil(right)), min(height, math.ceil(bottom))
        if right > left and bottom > top:
            regions.append((left, top, right, bottom))
    return merge_regions(regions)


def merge_regions(regions: Sequence[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """``regions`` with each group of overlapping ones (sharing at least ``_MERGE_SHARE`` of the smaller's area, and
    so on transitively) replaced by the rectangle around them, until none overlap so: one face seen in several
    frames (``hold``) or by overlapping tiles is hidden once, over all its positions. In the order of each group's
    first region."""
    boxes = np.array(regions, np.int64).reshape(-1, 4)
    while len(boxes) > 1:
        width = np.minimum(boxes[:, None, 2], boxes[None, :, 2]) - np.maximum(boxes[:, None, 0], boxes[None, :, 0])
        height = np.minimum(boxes[:, None, 3], boxes[None, :, 3]) - np.maximum(boxes[:, None, 1], boxes[None, :, 1])
        overlap = np.clip(width, 0, None) * np.clip(height, 0, None)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        linked = overlap >= _MERGE_SHARE * np.minimum(area[:, None], area[None, :])
        group = np.full(len(boxes), -1)
        for first in range(len(boxes)):  # connected components, numbered by their first region
            if group[first] >= 0:
                continue
            group[first], frontier = first, [first]
            while frontier:
                found = np.flatnonzero(linked[frontier].any(axis=0) & (group < 0))
                group[found] = first
                frontier = list(found)
        firsts = np.unique(group)
        if len(firsts) == len(boxes):
            break
        boxes = np.array([[boxes[group == g, 0].min(), boxes[group == g, 1].min(), boxes[group == g, 2].max(),
                           boxes[group == g, 3].max()] for g in firsts])
    return [tuple(int(v) for v in box) for box in boxes]


def hide_faces(image: np.ndarray, detections: Sequence[Detection], masking: Masking | None = None) -> np.ndarray:
    """A copy of ``image`` ``(H, W, 3)`` uint8 RGB with every detection's region hidden as ``masking`` says."""
    masking = masking or DEFAULT_MASKING
    picture = Image.fromarray(np.asarray(image, np.uint8))
    hide_regions(picture, mask_regions(detections, picture.width, picture.height, masking.scale), masking)
    return np.array(picture)  # writable, the caller's own


def hide_regions(picture: Image.Image, regions: Sequence[tuple[int, int, int, int]], masking: Masking) -> None:
    """Hide each pixel region of the RGB Pillow ``picture`` in place (``mask_regions`` gives them)."""
    for box in regions:
        size = (box[2] - box[0], box[3] - box[1])
        if masking.style == "fill":
            hidden = Image.new("RGB", size, masking.colour)
        else:
            cells = _BLUR_CELLS if masking.style == "blur" else _PIXEL_CELLS
            coarse = (max(1, round(size[0] * cells / max(size))), max(1, round(size[1] * cells / max(size))))
            small = picture.crop(box).resize(coarse, Image.Resampling.BOX)  # the mean of each cell
            if masking.style == "pixelate":
                hidden = small.resize(size, Image.Resampling.NEAREST)
            else:
                hidden = small.resize(size, Image.Resampling.BILINEAR).filter(
                    ImageFilter.GaussianBlur(max(1.0, min(size) / 4)))
        if masking.shape == "box":
            picture.paste(hidden, box[:2])
        else:
            mask = Image.new("L", size, 0)
            ImageDraw.Draw(mask).ellipse((0, 0, size[0] - 1, size[1] - 1), fill=255)
            picture.paste(hidden, box[:2], mask)


__all__ = ["DEFAULT_MASKING", "DEFAULT_SCALE", "SHAPES", "STYLES", "Masking", "hide_faces", "hide_regions",
           "mask_regions", "merge_regions"]
