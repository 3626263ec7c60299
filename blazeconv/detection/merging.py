"""Every candidate of a picture's pieces merged into its faces: each piece keeps what it answers for, then one
MediaPipe weighted NMS over all of them (``postprocess.weighted_nms``), so one face is one detection.

The geometry (which pieces, their cores, mapping back) is ``tiling``'s; which scales, ``scales``'. A piece keeps a
candidate whose box centre lies in its core (a face cut by a tile's edge is whole in the neighbour that owns its
centre) and whose size is within its ``smallest``..``largest`` (a face too big for a tile is the coarser level's; one
too small for a level is a finer level's, which sees it better). The whole picture alone (no tiles) keeps everything:
MediaPipe's answers exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .postprocess import weighted_nms
from .tiling import Piece


def owned(boxes: np.ndarray, piece: Piece, width: int, height: int) -> np.ndarray:
    """``(M,)`` bool: which boxes ``(M, 4)`` (0..1 of the ``width`` x ``height`` image) ``piece`` answers for: centre
    in its core, longer side (pixels) from its ``smallest`` to its ``largest``."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    cx = (boxes[:, 0] + boxes[:, 2]) / 2 * width
    cy = (boxes[:, 1] + boxes[:, 3]) / 2 * height
    size = np.maximum((boxes[:, 2] - boxes[:, 0]) * width, (boxes[:, 3] - boxes[:, 1]) * height)
    x0, y0, x1, y1 = piece.core
    return (cx >= x0) & (cx <= x1) & (cy >= y0) & (cy <= y1) & (size >= piece.smallest) & (size <= piece.largest)


def merge(found: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], pieces: Sequence[Piece], width: int,
          height: int, iou_threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``found``: per piece, its candidates ``(boxes (M, 4), keypoints (M, K, 2), scores (M,))`` already in 0..1 of
    the whole ``width`` x ``height`` image (``tiling.to_picture``). Each piece's own (``owned``), then weighted NMS
    over all: ``(boxes (D, 4), keypoints (D, K, 2), scores (D,))``, best first."""
    kept = [(b[m], k[m], s[m]) for (b, k, s), piece in zip(found, pieces)
            for m in [owned(b, piece, width, height)]]
    boxes = np.concatenate([b for b, _, _ in kept]).reshape(-1, 4)
    keypoints = np.concatenate([k for _, k, _ in kept])
    scores = np.concatenate([s for _, _, s in kept])
    return weighted_nms(boxes, keypoints, scores, iou_threshold)


__all__ = ["merge", "owned"]
