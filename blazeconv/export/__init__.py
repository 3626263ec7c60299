"""Exporters of a converted BlazeFace: Core ML (``export.coreml``) and ONNX (``export.onnx``).

What both exports share is defined here, once, without importing torch (the ONNX backends read it):
the detection rows of the models with NMS inside and the names of the raw network's outputs.
"""

from __future__ import annotations

from ..variants import KEYPOINT_NAMES

# Rows of the 'detections' output of the models with NMS inside: the default and the most.
DEFAULT_MAX_FACES = 16
MAX_FACES_LIMIT = 100
# One row: xmin, ymin, xmax, ymax, 6 keypoints (x, y), score.
DETECTION_COLUMNS = 4 + 2 * len(KEYPOINT_NAMES) + 1
# The raw network's outputs, in TFLite's layout: (B, N, 16) box and keypoint offsets, (B, N, 1) logits.
RAW_OUTPUTS = ("regressors", "classificators")


def check_options(score_threshold: float, iou_threshold: float, max_faces: int) -> None:
    """Before any work: ``OptionsError`` unless both thresholds are in 0..1 and ``max_faces`` in 1..``MAX_FACES_LIMIT``."""
    from ..errors import OptionsError

    for name, value in (("score threshold", score_threshold), ("IoU threshold", iou_threshold)):
        if not 0.0 <= value <= 1.0:  # false for NaN too
            raise OptionsError(f"{name} must be within 0..1, got {value}")
    if not 1 <= max_faces <= MAX_FACES_LIMIT:
        raise OptionsError(f"max faces must be within 1..{MAX_FACES_LIMIT}, got {max_faces}")
