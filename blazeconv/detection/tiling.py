"""Overlapping square tiles, for faces too small to survive the letterbox of a whole big picture.

A 4K picture letterboxed to 192 px shrinks a 110 px face to 5 px; the same face in a 640 px tile keeps 33 px. With
``Tiling`` the pipeline also runs the model on tiles of the image (each with MediaPipe's own letterbox and
decoding), maps every candidate back to the whole image, and merges them all with MediaPipe's weighted NMS, so one
face is one detection. As the face-extraction code around BlazeFace in the Deepfake Detection Challenge did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import OptionsError

# A tile is this many times the model's input side by default: 640 px for the 192 px full-range models, 427 px for
# 128 px ones, 853 px for back (256 px).
TILE_FACTOR = 10 / 3
DEFAULT_OVERLAP = 0.25


@dataclass(frozen=True)
class Tiling:
    """How to tile: ``size``, the tile's side in pixels of the original image (None: ``TILE_FACTOR`` times the
    model input); ``overlap``, the fraction of a tile shared with its neighbour (a face up to ``overlap * size``
    wide lies whole in some tile), in [0, 0.9]."""

    size: int | None = None
    overlap: float = DEFAULT_OVERLAP

    def __post_init__(self) -> None:
        if self.size is not None and (not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 16):
            raise OptionsError(f"tile size must be an integer of at least 16 pixels, got {self.size!r}")
        if not (isinstance(self.overlap, (int, float)) and 0.0 <= self.overlap <= 0.9):
            raise OptionsError(f"tile overlap must be a number from 0 to 0.9, got {self.overlap!r}")

    def side(self, input_size: int) -> int:
        """The tile side in original pixels for a model of ``input_size``."""
        return self.size if self.size is not None else round(input_size * TILE_FACTOR)


def tile_regions(width: int, height: int, side: int, overlap: float) -> list[tuple[int, int, int, int]]:
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


__all__ = ["DEFAULT_OVERLAP", "TILE_FACTOR", "Tiling", "tile_regions"]
