"""Where the model looks, in pixels: the whole picture and the overlapping square tiles of each level (geometry only).

A 4K picture letterboxed to 192 px shrinks a 110 px face to 5 px; the same face in a 640 px tile keeps 33 px. Which
levels a picture gets is the policy's (``scales.plan_scales``); here each level becomes pixel regions of the image
as decoded, and ``pipeline`` letterboxes each region, runs the model, maps every candidate back to the whole image
and merges them all with MediaPipe's weighted NMS (``postprocess``), so one face is one detection. As the
face-extraction code around BlazeFace in the Deepfake Detection Challenge did, and SAHI's slicing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .scales import DEFAULT_OVERLAP, Scale

Region = tuple[int, int, int, int]
"""``(x0, y0, w, h)`` in pixels of an image."""


def tile_regions(width: int, height: int, side: int, overlap: float) -> list[Region]:
    """Tiles covering a ``width`` x ``height`` image: ``(x0, y0, w, h)`` in pixels, row by row.

    Tiles are ``side`` x ``side`` (cut to the image where it is smaller), spread evenly so that neighbours share at
    least ``overlap * side`` pixels and the last one ends at the image's edge. None when the image fits one tile.
    """
    if width <= side and height <= side:
        return []
    xs, ys = _starts(width, side, overlap), _starts(height, side, overlap)
    return [(x, y, min(side, width - x), min(side, height - y)) for y in ys for x in xs]


def _starts(length: int, side: int, overlap: float) -> list[int]:
    if length <= side:
        return [0]
    stride = side * (1.0 - overlap)
    count = math.ceil((length - side) / stride) + 1
    return [round(i * (length - side) / (count - 1)) for i in range(count)]


@dataclass(frozen=True)
class Piece:
    """One model input of a picture: ``region`` ``(x0, y0, w, h)`` (what is letterboxed), ``core`` ``(x0, y0, x1,
    y1)`` (the part this piece owns: the region less half of each overlap with a neighbour, so that the cores of a
    level's tiles partition the picture), and the face sizes it answers for, ``smallest`` to ``largest`` (longer
    side); all in pixels of the image as decoded."""

    region: Region
    core: tuple[float, float, float, float]
    smallest: float = 0.0
    largest: float = math.inf


def scale_pieces(width: int, height: int, scales: Sequence[Scale], full_width: int | None = None) -> list[Piece]:
    """The pieces the model sees of a ``width`` x ``height`` image for ``scales``: the whole image first, then each
    tile level's tiles (a level whose tile holds the whole image adds nothing). ``full_width``: the width of the
    picture as stored when the image was decoded smaller (scales are in stored pixels).

    A face no larger than a level's overlap lies whole in the tile whose core holds its centre: the merge keeps a
    tile's candidates centred in its core, so a face cut by a tile's edge is answered for by its neighbour."""
    factor = width / (full_width or width)
    whole = scales[0].smallest * factor if scales else 0.0  # the plan puts the whole picture first
    pieces = [Piece((0, 0, width, height), (0.0, 0.0, float(width), float(height)), whole)]
    for scale in scales:
        side = max(1, round(scale.side * factor))  # in decoded pixels
        tiles = tile_regions(width, height, side, scale.overlap)
        xs = sorted({x for x, _, _, _ in tiles})
        ys = sorted({y for _, y, _, _ in tiles})
        for x0, y0, w, h in tiles:
            core = (*_core(xs, side, x0, width), *_core(ys, side, y0, height))
            pieces.append(Piece((x0, y0, w, h), (core[0], core[2], core[1], core[3]), scale.smallest * factor,
                                scale.largest * factor))
    return pieces


def _core(starts: list[int], side: int, start: int, length: int) -> tuple[float, float]:
    """The part of the tile at ``start`` (one axis) it owns: from the middle of its overlap with the one before to
    the middle of its overlap with the one after (the image's edges at the ends)."""
    index = starts.index(start)
    low = 0.0 if index == 0 else (start + min(starts[index - 1] + side, length)) / 2
    high = float(length) if index == len(starts) - 1 else (min(start + side, length) + starts[index + 1]) / 2
    return low, high


def to_picture(boxes: np.ndarray, keypoints: np.ndarray, region: Region, width: int, height: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``(M, 4)`` and keypoints ``(M, K, 2)`` in 0..1 of ``region`` mapped to 0..1 of the whole ``width``
    x ``height`` image (IoU does not change when x and y are scaled apart, so the merge works in these units)."""
    x0, y0, w, h = region
    origin = np.array([x0 / width, y0 / height], np.float32)
    scale = np.array([w / width, h / height], np.float32)
    return (boxes.reshape(-1, 2, 2) * scale + origin).reshape(-1, 4), keypoints * scale + origin


__all__ = ["DEFAULT_OVERLAP", "Piece", "Region", "scale_pieces", "tile_regions", "to_picture"]
