"""Which scales a picture is looked at, from its size and the smallest face that matters: the policy alone.

Each BlazeFace model finds faces within a band of sizes relative to its input (``Variant.face_band``: from ``low``
to ``high`` times the input side, measured in docs/bench.md, *Every face*). The whole picture letterboxed into the
input finds faces of ``low * L`` to ``high * L`` pixels (``L``: the picture's longer side); a square tile of side
``T`` letterboxed into the input finds them from ``low * T`` up. So, as MTCNN's image pyramid steps down from its
``min_face_size`` by a fixed factor, the levels here step down from the whole picture to tiles of side
``min_face / low`` (where the smallest face that matters sits at the band's low edge), evenly in log scale with as
few levels as the band allows, so that every face from ``min_face`` up is inside some level's band and, being smaller
than the coarser level can see, lies whole in one of this level's tiles (neighbours share enough of a side). Tiles
may be smaller than the model's input (upscaled): that is what reaches faces below the band of the whole input, as
on a wide low-resolution video.

Each level also says which faces it answers for (``Scale.smallest`` / ``largest``), which the merge uses. The rest
is elsewhere and testable alone: cutting the tiles and mapping candidates back (``tiling``,
``pipeline.prepare_image``), keeping each piece's own and merging them all with weighted NMS (``merging``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import OptionsError

# The default smallest face: this share of the picture's shorter side, but at least MIN_FACE_FLOOR pixels (faces of
# a few per cent of a frame: 11 px at 480x270, 15 px at 640x360, 125 px on a 4000x3000 photo). docs/bench.md,
# *Every face*, has the recall and time behind the numbers.
MIN_FACE_SHARE = 1 / 24
MIN_FACE_FLOOR = 10.0
# The smallest ``min_face`` accepted: below it a face has no features left to find.
MIN_FACE_LIMIT = 4.0
# Tiles' overlap: what a level needs (the coarser level's smallest face, over the tile side), within these bounds;
# DEFAULT_OVERLAP with an expert's --tile-size.
MIN_OVERLAP = 0.15
MAX_OVERLAP = 0.5
DEFAULT_OVERLAP = 0.25
# The decoded picture keeps at least this many pixels per model-input pixel at the finest level (JPEG draft).
DECODE_MARGIN = 2.0
# A level answers for faces from KEEP_BELOW x its band's low edge (the finest level: from min_face x KEEP_BELOW) up
# to KEEP_ABOVE x its high edge (the whole picture: any size); the slack lets the levels' ranges overlap.
KEEP_BELOW = 0.8
KEEP_ABOVE = 1.25


@dataclass(frozen=True)
class Scale:
    """One level: square tiles of ``side`` pixels of the picture as stored, neighbours sharing ``overlap`` of a
    side; a side at least the picture's longer side is the whole picture (letterboxed, as MediaPipe runs it).
    ``smallest`` and ``largest``: the faces (box's longer side, pixels of the picture as stored) this level answers
    for; the merge leaves out its candidates of other sizes, which other levels see better."""

    side: int
    overlap: float = 0.0
    smallest: float = 0.0
    largest: float = math.inf


def default_min_face(width: int, height: int) -> float:
    """The smallest face that matters on a ``width`` x ``height`` picture when none is given: ``MIN_FACE_SHARE``
    of the shorter side, at least ``MIN_FACE_FLOOR`` pixels."""
    return max(MIN_FACE_FLOOR, MIN_FACE_SHARE * min(width, height))


def check_min_face(min_face: float | None) -> None:
    """``OptionsError`` unless ``min_face`` is None or a number of pixels >= ``MIN_FACE_LIMIT``."""
    if min_face is None:
        return
    if isinstance(min_face, bool) or not isinstance(min_face, (int, float)) or not math.isfinite(min_face) \
            or min_face < MIN_FACE_LIMIT:
        raise OptionsError(f"min_face must be a number of pixels >= {MIN_FACE_LIMIT:g}, got {min_face!r}")


def check_overlap(overlap: float) -> None:
    """``OptionsError`` unless ``overlap`` is a share of a tile's side in [0, 0.9]."""
    if isinstance(overlap, bool) or not isinstance(overlap, (int, float)) or not 0.0 <= overlap <= 0.9:
        raise OptionsError(f"tile overlap must be a number from 0 to 0.9, got {overlap!r}")


def plan_scales(width: int, height: int, band: tuple[float, float], min_face: float | None = None, *,
                overlap: float | None = None, tile_size: int | None = None, whole_any_size: bool = False
                ) -> tuple[Scale, ...]:
    """The levels a ``width`` x ``height`` picture is looked at, coarsest (the whole picture) first.

    ``band``: ``(low, high)``, the face sizes the model finds as shares of its input side; ``min_face``: the
    smallest face that matters, pixels of the picture (None: ``default_min_face``). ``tile_size``: the expert's
    override, one level of tiles of that side (the whole picture still first). ``overlap``: the tiles' shared
    share of a side (None: what each level needs, at least ``MIN_OVERLAP``). ``whole_any_size``: the whole
    picture answers for faces of any size from the finest level's smallest (what MediaPipe's one run of it finds),
    not only from its band's low edge (``_levels``).

    The finest level's tiles have side ``min_face / low``. As few levels as the band allows lie between it and the
    whole picture (fewest is cheapest: the finest level's tiles are most of the work): each level is at least
    ``step = max(low / high, low / MAX_OVERLAP)`` times the coarser one's side, so a face the coarser level is too
    small for fits this level's band, and the level's overlap, ``low`` over that ratio, keeps such a face whole in
    one of its tiles.
    """
    longest = max(width, height)
    low, high = band
    if tile_size is not None:
        if tile_size >= longest:
            return (Scale(longest),)
        shared = DEFAULT_OVERLAP if overlap is None else overlap
        return _levels(longest, [tile_size], shared, band, tile_size * low * KEEP_BELOW, whole_any_size)
    min_face = default_min_face(width, height) if min_face is None else min_face
    finest = min_face / low
    if finest >= longest:
        return (Scale(longest),)
    step = max(low / high, low / MAX_OVERLAP)
    levels = max(1, math.ceil(math.log(longest / finest) / math.log(1 / step) - 1e-9))
    ratio = (finest / longest) ** (1 / levels)
    shared = min(MAX_OVERLAP, max(MIN_OVERLAP, low / ratio)) if overlap is None else overlap
    sides = [max(1, math.floor(longest * ratio ** i)) for i in range(1, levels)] + [max(1, math.floor(finest))]
    return _levels(longest, sides, shared, band, min_face * KEEP_BELOW, whole_any_size)


def _levels(longest: int, sides: list[int], overlap: float, band: tuple[float, float], smallest: float,
            whole_any_size: bool = False) -> tuple[Scale, ...]:
    """The whole picture and tile levels of ``sides`` (coarse to fine), each answering for the faces of its band
    (with ``KEEP_BELOW`` / ``KEEP_ABOVE`` slack), the finest one from ``smallest``, the whole picture up to any
    size (and with ``whole_any_size`` from ``smallest`` too: below its band it also finds heads from behind and
    false faces, which the tiles do not)."""
    low, high = band
    all_sides = [longest, *sides]
    return tuple(
        Scale(side, 0.0 if index == 0 else overlap,
              smallest if index == len(sides) or (index == 0 and whole_any_size) else side * low * KEEP_BELOW,
              math.inf if index == 0 else side * high * KEEP_ABOVE)
        for index, side in enumerate(all_sides))


def decode_side(scales: tuple[Scale, ...], input_size: int, width: int, height: int) -> int:
    """The longer side a ``width`` x ``height`` picture must keep when decoded for ``scales``: ``DECODE_MARGIN``
    pixels per model-input pixel at the finest level (a JPEG may then be decoded smaller, ``images.load_reduced``);
    the full size when the finest tiles are upscaled."""
    longest = max(width, height)
    finest = min(scale.side for scale in scales)
    return min(longest, math.ceil(DECODE_MARGIN * input_size * longest / min(finest, longest)))


__all__ = ["DECODE_MARGIN", "DEFAULT_OVERLAP", "KEEP_ABOVE", "KEEP_BELOW", "MAX_OVERLAP", "MIN_FACE_FLOOR",
           "MIN_FACE_LIMIT", "MIN_FACE_SHARE", "MIN_OVERLAP", "Scale", "check_min_face", "check_overlap", "decode_side",
           "default_min_face", "plan_scales"]
