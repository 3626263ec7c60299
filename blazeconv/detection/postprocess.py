"""Raw outputs to faces: SSD decoding (TensorsToDetectionsCalculator) and weighted NMS (NonMaxSuppressionCalculator)."""

from __future__ import annotations

import numpy as np

from ..errors import OptionsError
from ..variants import NMS_IOU_THRESHOLD, SCORE_CLIPPING


def decode(
    raw_boxes: np.ndarray, logits: np.ndarray, anchors: np.ndarray, input_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw model outputs to boxes, keypoints and scores, as ``TensorsToDetectionsCalculator`` decodes them.

    ``raw_boxes``: ``(N, 4 + 2K)`` float32, x before y (``reverse_output_order``), offsets in input pixels;
    ``logits``: ``(N,)`` or ``(N, 1)``; ``anchors``: ``(N, 4)`` ``(x_center, y_center, w, h)``; ``input_size``: the
    x/y/w/h scale. Returns ``boxes`` ``(N, 4)`` ``(xmin, ymin, xmax, ymax)``, ``keypoints`` ``(N, K, 2)`` ``(x, y)``,
    both in 0..1 of the model input, and ``scores`` ``(N,)`` = sigmoid(clip(logit, -100, 100)). Nothing is dropped.
    """
    raw = np.asarray(raw_boxes, np.float32)
    logits = np.asarray(logits, np.float32)
    anchors = np.asarray(anchors, np.float32)
    if raw.ndim != 2 or raw.shape[1] < 4 or raw.shape[1] % 2:
        raise OptionsError(f"raw boxes must be (N, 4 + 2K), got shape {raw.shape}")
    count = raw.shape[0]
    if anchors.shape != (count, 4) or logits.reshape(-1).shape != (count,):
        raise OptionsError(
            f"{count} raw boxes need (N, 4) anchors and N logits, got anchors {anchors.shape}, logits {logits.shape}"
        )
    boxes, keypoints = _decode_boxes(raw, anchors, input_size)
    return boxes, keypoints, _scores(logits.reshape(count))


def _decode_boxes(raw: np.ndarray, anchors: np.ndarray, input_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``decode``'s boxes ``(M, 4)`` and keypoints ``(M, K, 2)`` of float32 ``raw`` ``(M, 4 + 2K)`` and ``anchors``
    ``(M, 4)``: every value is ``raw / input_size * anchor size`` (x by width, y by height), plus the anchor centre
    for the centre and the keypoints; the box is the centre -/+ half the size."""
    count, width = raw.shape
    scaled = raw / np.float32(input_size) * anchors[:, [2, 3] * (width // 2)]  # (M, 4 + 2K)
    centres = scaled[:, 0:2] + anchors[:, 0:2]  # (M, 2)
    half = scaled[:, 2:4] / np.float32(2.0)
    boxes = np.concatenate([centres - half, centres + half], axis=1)  # (M, 4)
    keypoints = scaled[:, 4:].reshape(count, -1, 2) + anchors[:, None, 0:2]  # (M, K, 2)
    return boxes, keypoints


def _scores(logits: np.ndarray) -> np.ndarray:
    """``sigmoid(clip(logit, -100, 100))`` in float32, as TensorsToDetectionsCalculator scores."""
    clipped = np.minimum(np.maximum(logits, np.float32(-SCORE_CLIPPING)), np.float32(SCORE_CLIPPING))
    with np.errstate(over="ignore"):  # exp(100) overflows float32 to inf: the score is then exactly 0
        scores = np.float32(1.0) / (np.float32(1.0) + np.exp(-clipped))
    return scores.astype(np.float32, copy=False)


def decode_and_suppress(
    raw_boxes: np.ndarray,
    logits: np.ndarray,
    anchors: np.ndarray,
    input_size: int,
    min_score: float,
    iou_threshold: float = NMS_IOU_THRESHOLD,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's raw outputs to its detections in model-input coordinates: ``decode``, threshold, ``weighted_nms``.

    As TensorsToDetectionsCalculator, keeps score >= ``min_score`` and drops boxes with negative or NaN size; only
    the anchors that pass the score are decoded (the same numbers as decoding all). Arguments as ``decode``;
    returns ``weighted_nms``'s ``(boxes (D, 4), keypoints (D, K, 2), scores (D,))``.
    """
    boxes, keypoints, scores = candidates(raw_boxes, logits, anchors, input_size, min_score)
    if not len(scores):  # no face: most frames of a video, most anchors always
        return boxes, keypoints, scores
    return weighted_nms(boxes, keypoints, scores, iou_threshold)


def candidates(
    raw_boxes: np.ndarray, logits: np.ndarray, anchors: np.ndarray, input_size: int, min_score: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``decode_and_suppress`` before the NMS: the detections TensorsToDetectionsCalculator keeps (score >=
    ``min_score``, box of non-negative size), ``(boxes (M, 4), keypoints (M, K, 2), scores (M,))`` in anchor order."""
    raw = np.asarray(raw_boxes, np.float32)
    scores = _scores(np.asarray(logits, np.float32).reshape(-1))
    anchors = np.asarray(anchors, np.float32)
    if raw.ndim != 2 or raw.shape[1] < 4 or raw.shape[1] % 2 or anchors.shape != (len(raw), 4) or scores.shape != (len(raw),):
        decode(raw, logits, anchors, input_size)  # raises the OptionsError that names the shapes
    keep = np.flatnonzero(scores >= np.float32(min_score))
    if not len(keep):
        pairs = (raw.shape[1] - 4) // 2
        return np.zeros((0, 4), np.float32), np.zeros((0, pairs, 2), np.float32), np.zeros(0, np.float32)
    boxes, keypoints = _decode_boxes(raw[keep], anchors[keep], input_size)  # only the kept rows
    sized = np.flatnonzero((boxes[:, 2] - boxes[:, 0] >= 0) & (boxes[:, 3] - boxes[:, 1] >= 0))
    return boxes[sized], keypoints[sized], scores[keep][sized]


def iou_matrix(boxes: np.ndarray) -> np.ndarray:
    """``(M, M)`` float32 intersection over union of ``(M, 4)`` ``(xmin, ymin, xmax, ymax)`` boxes.

    As MediaPipe's ``OverlapSimilarity``: rectangle intersection over union, 0 when the union has no area.
    """
    x0, y0, x1, y1 = np.asarray(boxes, np.float32).reshape(-1, 4).T  # (M,) each
    zero = np.float32(0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # inf or NaN boxes: IoU NaN, never > t
        overlap_x = np.maximum(np.minimum(x1[:, None], x1[None, :]) - np.maximum(x0[:, None], x0[None, :]), zero)
        overlap_y = np.maximum(np.minimum(y1[:, None], y1[None, :]) - np.maximum(y0[:, None], y0[None, :]), zero)
        intersection = overlap_x * overlap_y  # (M, M)
        area = (x1 - x0) * (y1 - y0)
        union = area[:, None] + area[None, :] - intersection
        return np.where(union > 0, intersection / union, zero)


def weighted_nms(
    boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou_threshold: float = NMS_IOU_THRESHOLD
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's WEIGHTED non-maximum suppression (``NonMaxSuppressionCalculator``, overlap type IoU).

    ``boxes`` ``(M, 4)`` ``(xmin, ymin, xmax, ymax)``, ``keypoints`` ``(M, K, 2)``, ``scores`` ``(M,)``. Visit
    detections by descending score (ties: lower index first); the best remaining one's cluster is every remaining
    detection, itself included, whose IoU with it is above ``iou_threshold``. It is output with its own score
    and the cluster's score-weighted mean box corners and keypoints; the cluster is removed. As in MediaPipe, a
    round that removes nothing (a box without area) outputs the detection as is and ends the loop. A cluster whose
    scores are all 0 keeps the best one's box (MediaPipe would output NaN).
    Returns ``(boxes (D, 4), keypoints (D, K, 2), scores (D,))`` in output order.
    """
    scores = np.asarray(scores, np.float32).reshape(-1)
    count = len(scores)
    keypoints = np.asarray(keypoints, np.float32)
    num_keypoints = keypoints.shape[1] if keypoints.ndim == 3 else 0
    order = np.argsort(-scores, kind="stable")
    values = np.concatenate([np.asarray(boxes, np.float32).reshape(count, 4), keypoints.reshape(count, 2 * num_keypoints)],
                            axis=1)
    values, scores = values[order], scores[order]  # (M, 4 + 2K) box corners and keypoints, (M,), best first
    similar = iou_matrix(values[:, :4]) > np.float32(iou_threshold)  # (M, M)
    # The loop only finds the clusters, on Python integers as bit sets (bit i: detection i); their weighted means are
    # one matrix product afterwards.
    width = (count + 7) // 8
    row_bits = 8 * width
    packed = int.from_bytes(np.packbits(similar, axis=1, bitorder="little").tobytes(), "little")  # row i at row_bits*i
    row_mask = (1 << row_bits) - 1
    remaining = (1 << count) - 1
    best, clusters = [], []
    while remaining:
        first = (remaining & -remaining).bit_length() - 1  # the first remaining one has the highest score
        cluster = remaining & (packed >> (row_bits * first)) & row_mask
        best.append(first)
        clusters.append(cluster.to_bytes(width, "little"))
        if not cluster:
            break
        remaining &= ~cluster
    if not best:
        return np.zeros((0, 4), np.float32), np.zeros((0, num_keypoints, 2), np.float32), np.zeros(0, np.float32)
    members = np.frombuffer(b"".join(clusters), np.uint8).reshape(len(best), width)
    members = np.unpackbits(members, axis=1, count=count, bitorder="little").view(bool)  # (D, M)
    weights = members * scores  # (D, M) float32: each cluster's members' scores
    totals = weights.sum(axis=1)  # (D,)
    with np.errstate(divide="ignore", invalid="ignore"):
        if np.isfinite(values).all():
            merged = (weights @ values) / totals[:, None]  # (D, 4 + 2K)
        else:  # 0 * inf would leak a non-member's infinity into every cluster: sum each cluster's own rows
            merged = np.stack([w[c] @ values[c] for w, c in zip(weights, members)]) / totals[:, None]
    # An empty cluster, or all scores 0 (where MediaPipe would divide 0 by 0): the best one as it is.
    merged = np.where((totals > 0)[:, None], merged, values[best])
    return merged[:, :4], merged[:, 4:].reshape(-1, num_keypoints, 2), scores[best]
