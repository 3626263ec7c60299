"""Core ML's ``NonMaximumSuppression`` model, as the evaluator computes it by its documented semantics.

``pick_top_nms`` is the ``pickTop`` suppression on arrays (boxes as ``(x_center, y_center, width, height)``);
``run_nms`` is the runner of a ``nonMaximumSuppression`` model: it reads the thresholds from the model or its
optional inputs and pads the kept rows with zero rows to the lower bound the outputs declare.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from .base import EvaluationError, UnsupportedOperationError


def pick_top_nms(
    confidence: np.ndarray,
    coordinates: np.ndarray,
    iou_threshold: float,
    confidence_threshold: float,
    per_class: bool = True,
    max_boxes: int | None = None,
) -> np.ndarray:
    """Indices of the boxes Core ML's NonMaximumSuppression model (``pickTop``) keeps, best first.

    ``confidence``: ``(N, C)``; ``coordinates``: ``(N, 4)`` ``(x_center, y_center, width, height)``. A box's label is
    the argmax of its row and its score that maximum; boxes scoring below ``confidence_threshold`` are dropped;
    the rest are visited by descending score (ties: lower index first) and one is kept unless a kept box (of the
    same label when ``per_class``) overlaps it with IoU > ``iou_threshold``. At most ``max_boxes`` are returned.
    """
    confidence = np.asarray(confidence, np.float64)
    boxes = np.asarray(coordinates, np.float64)
    labels = np.argmax(confidence, axis=1)
    scores = confidence[np.arange(len(confidence)), labels]
    corners = np.concatenate([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], axis=1)
    area = np.clip(corners[:, 2] - corners[:, 0], 0, None) * np.clip(corners[:, 3] - corners[:, 1], 0, None)
    order = [i for i in np.argsort(-scores, kind="stable") if scores[i] >= confidence_threshold]
    kept: list[int] = []
    for i in order:
        if max_boxes is not None and len(kept) >= max_boxes:
            break
        others = np.array([j for j in kept if not per_class or labels[j] == labels[i]], np.int64)
        if len(others):
            low = np.maximum(corners[others, :2], corners[i, :2])
            high = np.minimum(corners[others, 2:], corners[i, 2:])
            overlap = np.clip(high - low, 0, None)
            intersection = overlap[:, 0] * overlap[:, 1]
            union = area[others] + area[i] - intersection
            with np.errstate(divide="ignore", invalid="ignore"):
                iou = np.where(union > 0, intersection / union, 0.0)
            if np.any(iou > iou_threshold):
                continue
        kept.append(int(i))
    return np.asarray(kept, np.int64)


def run_nms(spec, inputs: dict, data_dir, counts: Counter) -> dict:
    """The outputs of a ``nonMaximumSuppression`` model: the kept rows of ``confidence (N, C)`` and
    ``coordinates (N, 4)``, best first, padded with zero rows to the outputs' lower bound."""
    nms = spec.nonMaximumSuppression
    if nms.WhichOneof("SuppressionMethod") != "pickTop":
        raise UnsupportedOperationError(f"NMS method {nms.WhichOneof('SuppressionMethod')} is not supported")
    confidence = inputs[nms.confidenceInputFeatureName]
    coordinates = inputs[nms.coordinatesInputFeatureName]
    if confidence.ndim != 2 or coordinates.shape != (len(confidence), 4):
        raise EvaluationError(f"NMS inputs of shapes {confidence.shape} and {coordinates.shape}, expected (N, C), (N, 4)")
    iou = inputs.get(nms.iouThresholdInputFeatureName) if nms.iouThresholdInputFeatureName else None
    threshold = inputs.get(nms.confidenceThresholdInputFeatureName) if nms.confidenceThresholdInputFeatureName else None
    iou = nms.iouThreshold if iou is None else iou
    threshold = nms.confidenceThreshold if threshold is None else threshold
    outputs = {d.name: d for d in spec.description.output}
    low, high = _row_bounds(outputs[nms.confidenceOutputFeatureName])
    low2, high2 = _row_bounds(outputs[nms.coordinatesOutputFeatureName])
    low, high = max(low, low2), min(high, high2)
    kept = pick_top_nms(confidence, coordinates, iou, threshold, nms.pickTop.perClass, high if high >= 0 else None)
    rows = max(len(kept), low)  # padded with zero rows up to a lower bound
    confidence_out = np.zeros((rows, confidence.shape[1]), confidence.dtype)
    coordinates_out = np.zeros((rows, 4), coordinates.dtype)
    confidence_out[: len(kept)] = confidence[kept]
    coordinates_out[: len(kept)] = coordinates[kept]
    return {nms.confidenceOutputFeatureName: confidence_out, nms.coordinatesOutputFeatureName: coordinates_out}


def _row_bounds(description) -> tuple[int, int]:
    """``(lower, upper)`` number of output rows a multi-array output allows; upper -1 is unbounded."""
    array = description.type.multiArrayType
    if array.WhichOneof("ShapeFlexibility") == "shapeRange" and array.shapeRange.sizeRanges:
        first = array.shapeRange.sizeRanges[0]
        return int(first.lowerBound), int(first.upperBound)
    if len(array.shape):
        return int(array.shape[0]), int(array.shape[0])
    return 0, -1
