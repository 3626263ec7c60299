"""The detection pipeline, step for step as MediaPipe's face graphs run it (``pipeline``'s docstring), by stage:

``files`` (which files a run reads), ``images`` (anything a user holds as RGB), ``letterboxing``
(ImageToTensorCalculator and its removal), ``postprocess`` (SSD decoding and weighted NMS), ``scales`` (which scales
a picture is looked at, from its size and the smallest face: the policy), ``tiling`` (the whole picture and the
overlapping tiles of each scale, in pixels), ``records`` (``Detection`` and its JSON form), ``drawing`` (annotations), ``cropping``
(aligned face crops), ``masking`` (faces hidden), ``pipeline`` (batches of images and streams of files through a
runner), ``video_source`` (a video file opened once, its frames decoded), ``video`` (videos sampled and streamed
through a runner in one pass), ``video_annotation`` (annotated videos), ``settings`` (every option of a run in one
value), ``inputs`` (photos and videos in one run) and ``results`` (JSONL results of a run, resumable).
"""

from .drawing import annotate
from .images import ImageSource, as_rgb, load_image
from .letterboxing import Letterbox, letterbox, remove_letterbox
from .pipeline import (
    FileResult,
    Model,
    as_runner,
    detect_files,
    detect_image,
    detect_images,
    resolve_variant,
    stream_files,
)
from .postprocess import decode, decode_and_suppress, iou_matrix, weighted_nms
from .records import Box, Detection, Keypoints, Point, detections_to_json
from .scales import Scale, plan_scales
from .settings import DetectionSettings, Sampling, check_thresholds

__all__ = [
    "Box", "Detection", "DetectionSettings", "FileResult",
    "ImageSource", "Keypoints", "Letterbox", "Model", "Point", "Sampling", "Scale",
    "annotate", "as_rgb", "as_runner", "check_thresholds", "decode", "decode_and_suppress", "detect_files",
    "detect_image", "detect_images", "detections_to_json", "iou_matrix", "letterbox", "load_image",
    "plan_scales", "remove_letterbox", "resolve_variant", "stream_files", "weighted_nms",
]
