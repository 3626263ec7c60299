"""Which anchor learns which face, and the raw values it should output: SSD matching in the decoder's own offsets.

``encode`` is the exact inverse of ``detection.postprocess.decode`` (MediaPipe's TensorsToDetectionsCalculator):
for an anchor ``(ax, ay, aw, ah)`` and input size ``S`` the decoder reads ``x = r0 / S * aw + ax``,
``w = r2 / S * aw`` (y and h with ``ah``), keypoint ``k`` ``(r[4+2k] / S * aw + ax, r[5+2k] / S * ah + ay)``; so the
target is ``r0 = (x - ax) / aw * S``, ``r2 = w / aw * S``, and so on. Every shipped face model has fixed-size anchors
(``aw = ah = 1``), so the anchors carry no size: which anchors a face is given to is decided here.

Matching (``match``) follows how the shipped models behave. Measured on the test photos and the labelled group photos
(full_range_sparse and short_range, faces of 11 to 131 px): the anchors scoring above 0.5 on a face are 1 to 3 (full
range) or up to 18 (short range, several anchors per cell), all within 1.35 cells of the face's centre whatever the
face's size, all on one grid: the 16 px grid for faces of 17-24 px, the 8 px grid for a 72 px face (short range).
So each face is given the anchors of one grid (the one whose SsdAnchorsCalculator scale, with ``fixed_anchor_size``
off, is nearest the face's longer side on a log scale) whose centres lie within ``radius`` cells of its centre (at
least the nearest anchors); an anchor near two faces goes to the nearer. Anchors within ``ignore_radius`` cells of a
face's centre that are not its positives, and anchors near or inside an ignore region, are neither positive nor
negative; every other anchor is a negative.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np

from ..anchors import generate_anchors
from ..variants import Variant


def encode(boxes: np.ndarray, keypoints: np.ndarray, anchors: np.ndarray, input_size: int) -> np.ndarray:
    """Raw regressor values that ``decode`` turns into ``boxes`` and ``keypoints`` on ``anchors``.

    ``boxes`` ``(N, 4)`` ``(xmin, ymin, xmax, ymax)`` and ``keypoints`` ``(N, K, 2)`` in 0..1 of the model input,
    ``anchors`` ``(N, 4)`` ``(x_center, y_center, w, h)``. Returns ``(N, 4 + 2K)`` float32, x before y, in input
    pixels (the regressors' layout).
    """
    boxes = np.asarray(boxes, np.float64)
    keypoints = np.asarray(keypoints, np.float64)
    anchors = np.asarray(anchors, np.float64)
    size = np.concatenate([anchors[:, 2:4], anchors[:, 2:4]], axis=1)  # (N, 4): w h w h
    centre = (boxes[:, 0:2] + boxes[:, 2:4]) / 2
    extent = boxes[:, 2:4] - boxes[:, 0:2]
    raw_box = np.concatenate([centre - anchors[:, 0:2], extent], axis=1) / size * input_size  # (N, 4)
    raw_points = (keypoints - anchors[:, None, 0:2]) / anchors[:, None, 2:4] * input_size  # (N, K, 2)
    return np.concatenate([raw_box, raw_points.reshape(len(boxes), -1)], axis=1).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _anchor_layout(variant: Variant) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each anchor: its grid (index of the merged layer), its scale (SsdAnchorsCalculator's, the size it would
    have without ``fixed_anchor_size``) and its cell's side, all ``(N,)``, in 0..1 of the input."""
    options = variant.anchor_options
    sized = generate_anchors(dataclasses.replace(options, fixed_anchor_size=False))  # (N, 4)
    grid_of, cell = [], []
    for grid, (stride, per_cell) in enumerate(_grids(options)):
        cells = -(-options.input_size_height // stride) * -(-options.input_size_width // stride)
        grid_of.append(np.full(cells * per_cell, grid, np.int64))
        cell.append(np.full(cells * per_cell, stride / options.input_size_width, np.float32))
    grid_of, cell = np.concatenate(grid_of), np.concatenate(cell)
    if len(grid_of) != len(sized):
        raise AssertionError(f"{variant.name}: {len(grid_of)} anchors laid out, {len(sized)} generated")
    return grid_of, np.sqrt(sized[:, 2] * sized[:, 3]).astype(np.float32), cell


def _grids(options) -> list[tuple[int, int]]:
    """``(stride, anchors per cell)`` of each merged grid, as ``generate_anchors`` collects them."""
    strides = list(options.strides)
    result, index = [], 0
    while index < len(strides):
        count, last = 0, index
        while last < len(strides) and strides[last] == strides[index]:
            if last == 0 and options.reduce_boxes_in_lowest_layer:
                count += 3
            else:
                count += len(options.aspect_ratios) + (options.interpolated_scale_aspect_ratio > 0)
            last += 1
        result.append((strides[index], count))
        index = last
    return result


@dataclass(frozen=True)
class Matching:
    """Anchor matching rules (``match``): ``radius`` and ``ignore_radius`` in cells of the face's grid."""

    radius: float = 1.0
    ignore_radius: float = 2.0


@dataclass(frozen=True)
class Assignment:
    """One model input's anchors: ``face`` ``(N,)`` int64, the face each positive anchor learns (-1: none);
    ``negative`` ``(N,)`` bool, anchors trained towards "no face" (the rest are ignored)."""

    face: np.ndarray
    negative: np.ndarray

    @property
    def positive(self) -> np.ndarray:
        return self.face >= 0


def match(variant: Variant, anchors: np.ndarray, boxes: np.ndarray, ignore: np.ndarray,
          rules: Matching = Matching()) -> Assignment:
    """Assign ``anchors`` ``(N, 4)`` (``variant``'s) to faces ``boxes`` ``(M, 4)`` (0..1 of the input, corners);
    ``ignore`` ``(M,)``: ignore regions, whose anchors are neither positive nor negative (module docstring)."""
    count = len(anchors)
    face = np.full(count, -1, np.int64)
    negative = np.ones(count, bool)
    if not len(boxes):
        return Assignment(face, negative)
    grid_of, scale, cell = _anchor_layout(variant)
    centres = anchors[:, :2]  # (N, 2)
    box_centres = (boxes[:, :2] + boxes[:, 2:]) / 2  # (M, 2)
    sides = np.maximum(boxes[:, 2:] - boxes[:, :2], 1e-6).max(axis=1)  # (M,)
    gap = centres[:, None, :] - box_centres[None, :, :]  # (N, M, 2)
    distance = np.hypot(gap[..., 0], gap[..., 1]) / cell[:, None]  # (N, M) in cells of each anchor's grid
    best = np.full(count, np.inf)
    for m in range(len(boxes)):
        if ignore[m]:
            inside = ((centres[:, 0] >= boxes[m, 0]) & (centres[:, 0] <= boxes[m, 2])
                      & (centres[:, 1] >= boxes[m, 1]) & (centres[:, 1] <= boxes[m, 3]))
            negative &= ~(inside | (distance[:, m] <= rules.ignore_radius))
            continue
        grid = grid_of[np.argmin(np.abs(np.log(scale / sides[m])))]
        on_grid = grid_of == grid
        nearest = np.min(distance[on_grid, m])  # the cell holding the centre, or the nearest for a centre outside
        chosen = on_grid & (distance[:, m] <= max(rules.radius, nearest + 1e-6))
        take = chosen & (distance[:, m] < best)
        face[take] = m
        best[take] = distance[take, m]
        negative &= distance[:, m] > max(rules.ignore_radius, nearest + 1e-6)
    negative &= face < 0
    return Assignment(face, negative)


__all__ = ["Assignment", "Matching", "encode", "match"]
