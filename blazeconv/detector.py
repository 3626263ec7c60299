"""``FaceDetector``: MediaPipe's face detection in one line, on whatever image the caller holds.

    import blazeconv
    detector = blazeconv.FaceDetector()              # short_range, converted and cached on first use
    faces = detector("photo.jpg")                    # list[Detection], coordinates in 0..1 of the image
    crop = detector.crop("photo.jpg", faces[0])      # (112, 112, 3) uint8 RGB, eyes level

Built once (model loaded, anchors made), called many times; the numbers are those of ``blazeconv detect --json``.
The model runs through a runner (``backends.runner.Runner``) that ``backends.make_runner`` builds for the backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .backends import make_runner
from .detection import Detection, Tiling, as_rgb, check_thresholds, detect_images, resolve_variant, stream_files
from .detection.cropping import check_crop_options, crop_face, crop_transform
from .detection.images import check_channels
from .detection.pipeline import check_batch_size
from .detection.tiling import DEFAULT_OVERLAP
from .detection.video import FrameResult
from .errors import OptionsError
from .variants import NMS_IOU_THRESHOLD, Variant


class FaceDetector:
    """A BlazeFace detector with MediaPipe's pre- and post-processing.

    ``model``: a shipped variant name (``short_range``, ``front``, ``back``, ``full_range``, ``full_range_sparse``;
    weights converted once into the cache), a path to a ``.tflite`` (converted in memory; its variant recognised) or
    to a ``.pth`` state_dict (variant: the shipped model with identical weights, else the architecture's default), a
    network ``.onnx`` blazeconv exported (ONNX backends), a torch module, or a runner; files are recognised by their
    content (``blazeconv.sources``). ``variant``: which model the weights are (anchors, input size, default threshold),
    overriding what was inferred; it must be of the weights' architecture. ``min_score``: keep faces scoring at least
    this (None: MediaPipe's for the variant); ``iou_threshold``: weighted NMS overlap (MediaPipe's 0.3); both in
    [0, 1]. ``device``: where the model runs (``"cpu"``; torch and ONNX Runtime ``"cuda"``, OpenVINO ``"gpu"``).
    ``backend``: ``"torch"``, ``"torch-fast"`` (the module compiled for the CPU by ``blazeconv.fast``),
    ``"onnxruntime"`` or ``"openvino"`` (the model's ONNX export, made once into the cache, or the ``.onnx`` given;
    OpenVINO: extra ``blazeconv[openvino]``), or ``"auto"`` (the default, as for ``detect``): the first of the ONNX
    runtimes that is installed and can run on ``device``, else torch.
    ``batch_size``: images per forward pass for a list (model inputs, with tiles). ``channels``: the default channel
    order of arrays and tensors, ``"rgb"`` or ``"bgr"`` (OpenCV frames). ``fast_decode``: JPEG files and bytes are
    decoded with DCT scaling to twice the model's input resolution (much faster on big photos; not bit-exact with
    MediaPipe). ``tile``: also run the model on overlapping square tiles of ``tile_size`` pixels (default: about
    3.3 times the model input) sharing ``tile_overlap`` of their side, and merge everything with weighted NMS:
    small faces in big pictures (``detection.tiling``).
    """

    def __init__(
        self,
        model: str | Path | Any = "short_range",
        *,
        variant: Variant | str | None = None,
        min_score: float | None = None,
        iou_threshold: float = NMS_IOU_THRESHOLD,
        device: str = "cpu",
        backend: str = "auto",
        batch_size: int = 32,
        channels: str = "rgb",
        fast_decode: bool = False,
        tile: bool = False,
        tile_size: int | None = None,
        tile_overlap: float = DEFAULT_OVERLAP,
    ):
        check_thresholds(min_score, iou_threshold)
        check_batch_size(batch_size)
        check_channels(channels)
        if not tile and (tile_size is not None or tile_overlap != DEFAULT_OVERLAP):
            raise OptionsError("tile_size and tile_overlap apply with tile=True")
        self.tiling = Tiling(tile_size, tile_overlap) if tile else None
        self.fast_decode = bool(fast_decode)
        self.runner = make_runner(backend, model, variant, device)
        self.variant: Variant = resolve_variant(self.runner, variant)
        self.min_score = self.variant.min_score if min_score is None else float(min_score)
        self.iou_threshold = float(iou_threshold)
        self.batch_size = batch_size
        self.channels = channels
        self.backend, self.device = getattr(self.runner, "backend", backend), device

    def __repr__(self) -> str:
        extras = (", fast_decode=True" if self.fast_decode else "") + (
            f", tile=True, tile_size={self.tiling.side(self.variant.input_size)}, tile_overlap={self.tiling.overlap:g}"
            if self.tiling else "")
        return (f"FaceDetector(variant={self.variant.name!r}, backend={self.backend!r}, device={self.device!r}, "
                f"min_score={self.min_score:g}, iou_threshold={self.iou_threshold:g}{extras})")

    def __call__(self, images: Any, *, channels: str | None = None) -> list[Detection] | list[list[Detection]]:
        """Faces in one image (a list of ``Detection``, best first) or in a list/tuple of images (a list of lists).

        An image is a path (str or ``Path``), bytes or a binary file, a ``PIL.Image`` of any mode (EXIF orientation
        applied as for files), a uint8 numpy array ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)``, or a uint8 torch
        tensor ``(H, W, 3)`` or ``(3, H, W)``; ``channels`` (default: the detector's) is the order of arrays and
        tensors. Lists run ``batch_size`` images per forward pass; a list of paths is decoded on every core while
        the model runs. Anything else, or a file that cannot be read: ``ImageError``.
        """
        channels = self.channels if channels is None else check_channels(channels)
        if isinstance(images, (list, tuple)):
            return self._detect(list(images), channels)
        return self._detect([images], channels)[0]

    def _detect(self, images: list, channels: str) -> list[list[Detection]]:
        options = (self.variant, self.min_score, self.iou_threshold, self.batch_size)
        if len(images) > 1 and all(isinstance(i, (str, Path)) for i in images):
            results = []  # streamed: the decoded images are not kept
            for result in stream_files(self.runner, images, *options, fast_decode=self.fast_decode, tiling=self.tiling):
                if result.error is not None:
                    raise result.error  # the ImageError naming the file
                results.append(result.detections)
            return results
        return detect_images(self.runner, images, *options, channels=channels, tiling=self.tiling,
                             fast_decode=self.fast_decode)

    def video(
        self,
        path: str | Path,
        *,
        every: int = 1,
        fps: float | None = None,
        frames: int | None = None,
        start: float | None = None,
        end: float | None = None,
        images: bool = False,
    ) -> Iterator[FrameResult]:
        """Faces in the frames of a video file (needs ``blazeconv[video]``): a ``FrameResult`` per sampled frame, in
        order, with ``frame`` (its index from 0 over the whole video), ``time`` (seconds, from its timestamp),
        ``width`` and ``height`` of the upright frame, ``detections`` (0..1 of that frame), ``last`` on the final one,
        and with ``images`` the upright ``(H, W, 3)`` uint8 RGB frame as ``image``.

        Sampling: every frame by default; ``every`` N-th; at most ``fps`` per second (by timestamp); ``frames`` N
        evenly spaced, first and last included; within ``start`` <= time < ``end`` seconds. Frames are decoded on a
        thread of their own and run ``batch_size`` at a time. A file that is not a readable video: ``ImageError``;
        one that stops early raises ``VideoStopped`` (an ``ImageError``) after the frames that decoded.
        """
        from .detection.video import Sampling, stream_video

        sampling = Sampling(every, fps, frames, start, end).check()
        return stream_video(self.runner, path, self.variant, self.min_score, self.iou_threshold, self.batch_size,
                            sampling=sampling, tiling=self.tiling, keep_images=images)

    def crop(
        self,
        image: Any,
        detection: Detection,
        size: int = 112,
        *,
        align: bool = True,
        margin: float = 0.25,
        channels: str | None = None,
    ) -> np.ndarray:
        """A square ``(size, size, 3)`` uint8 crop of one face, in the channel order of the input (RGB, or BGR for
        ``channels="bgr"``): the usual input of a face-recognition model.

        ``detection``: one this detector found in ``image`` (coordinates in 0..1). The crop's side is the box's longer
        side plus ``margin`` of it on each side (``1 + 2 * margin`` times the box). With ``align`` the crop is rotated
        so the eyes are level (right eye on the left, as in the photo) and placed so they are symmetric about the
        crop's vertical centre line, at the box centre's height along the face; without it the crop is axis-aligned
        and centred on the box. Bilinear sampling; parts outside the image are black (``detection.cropping``).
        """
        channels = self.channels if channels is None else check_channels(channels)
        check_crop_options(size, margin)
        out = crop_face(as_rgb(image, channels), detection, size, align, margin)  # detection.cropping
        return np.ascontiguousarray(out[:, :, ::-1]) if channels == "bgr" else out


__all__ = ["FaceDetector", "crop_transform"]
