"""``FaceDetector``: MediaPipe's face detection in one line, on whatever image the caller holds.

    import blazeconv
    detector = blazeconv.FaceDetector()              # full_range_sparse on ONNX Runtime, at the picture's scales
    faces = detector("photo.jpg")                    # list[Detection], coordinates in 0..1 of the image
    crop = detector.crop("photo.jpg", faces[0])      # (112, 112, 3) uint8 RGB, eyes level

Built once (model loaded, anchors made), called many times; the numbers are those of ``blazeconv detect --json``.
The model runs through a runner (``backends.runner.Runner``) that ``backends.make_runner`` builds for the backend.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .detection import Detection, as_rgb, detect_images, resolve_variant, stream_files
from .detection.cropping import check_crop_options, crop_face, crop_transform
from .detection.images import check_channels
from .detection.settings import DetectionSettings, Sampling
from .detection.video import FrameResult
from .variants import Variant


class FaceDetector:
    """A BlazeFace detector with MediaPipe's pre- and post-processing.

    Made from a ``DetectionSettings`` (``settings``) or from its fields as keywords (applied to ``settings`` when
    both are given): ``model``, a shipped variant name (``full_range_sparse``, the default; ``full_range``,
    ``short_range``, ``front``, ``back``), a path to a ``.tflite``, a ``.pth`` state_dict (variant: the shipped model
    with identical weights, else the architecture's default) or a network ``.onnx`` blazeconv exported (files
    recognised by their content, ``blazeconv.sources``), a torch module, or a runner. ``variant``: which model the
    weights are (anchors, input size, default threshold, face band), overriding what was inferred; it must be of the
    weights' architecture. ``min_score``: keep faces scoring at least this (None: MediaPipe's for the variant);
    ``iou_threshold``: weighted NMS overlap (MediaPipe's 0.3); both in [0, 1]. ``device``: where the model runs
    (``"cpu"``; torch and ONNX Runtime ``"cuda"``, OpenVINO ``"gpu"``). ``backend``: ``"torch"``, ``"torch-fast"``
    (the module compiled for the CPU by ``blazeconv.fast``), ``"onnxruntime"`` or ``"openvino"`` (a shipped model's
    packaged ONNX network, another model's export made once into the cache, or the ``.onnx`` given), or ``"auto"``
    (the default, as for ``detect``): the first of the ONNX runtimes that is installed and can run on ``device``, else
    torch. ``batch_size``: model inputs per forward pass for a list (tiles included).

    Scales (``detection.scales``): each picture is looked at whole and, where faces down to ``min_face`` pixels
    (default: a share of the picture's shorter side) are too small for the model there, on overlapping tiles sized
    for them; every candidate is merged by weighted NMS. ``tile=False``: the whole picture only; ``tile_size`` and
    ``tile_overlap``: the expert's fixed tiles. ``exact=True``: the model on the whole picture decoded in full, as
    MediaPipe runs it (its answers exactly). ``fast_decode``: JPEG files and bytes decoded with DCT scaling to twice
    the finest level's model resolution (default: unless ``exact``). ``sampling``: the frames of a video ``video``
    detects. ``channels``: the default channel order of arrays and tensors, ``"rgb"`` or ``"bgr"`` (OpenCV frames).
    """

    def __init__(
        self,
        model: str | Path | Any = None,
        *,
        settings: DetectionSettings | None = None,
        channels: str = "rgb",
        **options: Any,
    ):
        self.settings = DetectionSettings.of(settings, model=model, **options)
        self.channels = check_channels(channels)
        self.runner = self.settings.make_runner()
        self.variant: Variant = resolve_variant(self.runner, self.settings.variant)
        self.min_score = self.settings.score_for(self.variant)
        self.backend = getattr(self.runner, "backend", self.settings.backend)

    # The settings' fields a caller reads most, as attributes.
    iou_threshold = property(lambda self: self.settings.iou_threshold)
    batch_size = property(lambda self: self.settings.batch_size)
    device = property(lambda self: self.settings.device)
    fast_decode = property(lambda self: self.settings.decodes_reduced)
    exact = property(lambda self: self.settings.exact)

    def scales(self, width: int, height: int):
        """The levels a ``width`` x ``height`` picture is looked at (``DetectionSettings.scales_for``)."""
        return self.settings.scales_for(self.variant, width, height)

    def __repr__(self) -> str:
        settings = self.settings
        if settings.exact:
            extras = ", exact=True"
        elif not settings.tile:
            extras = ", tile=False"
        else:
            extras = "".join(f", {name}={getattr(settings, name)!r}" for name in ("min_face", "tile_size", "tile_overlap")
                             if getattr(settings, name) is not None)
        extras += "" if settings.fast_decode is None else f", fast_decode={settings.fast_decode}"
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
        settings = self.settings.replace(variant=self.variant)
        if len(images) > 1 and all(isinstance(i, (str, Path)) for i in images):
            results = []  # streamed: the decoded images are not kept
            for result in stream_files(self.runner, images, settings):
                if result.error is not None:
                    raise result.error  # the ImageError naming the file
                results.append(result.detections)
            return results
        return detect_images(self.runner, images, settings, channels=channels)

    def video(
        self,
        path: str | Path,
        *,
        sampling: Sampling | None = None,
        images: bool = False,
        every: int | None = None,
        fps: float | None = None,
        frames: int | None = None,
        start: float | None = None,
        end: float | None = None,
        track: bool | None = None,
        detect_every: int | None = None,
    ) -> Iterator[FrameResult]:
        """Faces in the frames of a video file (needs ``blazeconv[video]``): a ``FrameResult`` per sampled frame, in
        order, with ``frame`` (its index from 0 over the whole video), ``time`` (seconds, from its timestamp),
        ``width`` and ``height`` of the upright frame, ``detections`` (0..1 of that frame), ``last`` on the final one,
        and with ``images`` the upright ``(H, W, 3)`` uint8 RGB frame as ``image``.

        Sampling (``sampling``, default the detector's settings', or its fields as keywords): every frame by
        default; ``every`` N-th; at most ``fps`` per second (by timestamp); ``frames`` N evenly spaced, first and
        last included; within ``start`` <= time < ``end`` seconds. Frames are decoded on a thread of their own and
        run ``batch_size`` at a time. A file that is not a readable video: ``ImageError``; one that stops early
        raises ``VideoStopped`` (an ``ImageError``) after the frames that decoded.

        ``track`` (default the detector's settings'): each detection carries a ``track`` id, stable while the face
        stays in view (``detection.tracking``; needs ``blazeconv[track]``). ``detect_every`` N (with ``track``):
        the model runs on every N-th frame only and the frames between get the tracks' detections interpolated
        (``filled``); a face that comes and goes between two keyframes is missed (``stream_video``).
        """
        from .detection.video import stream_video

        sampling = sampling or self.settings.sampling
        changes = {k: v for k, v in dict(every=every, fps=fps, frames=frames, start=start, end=end).items()
                   if v is not None}
        if changes:
            sampling = dataclasses.replace(sampling, **changes)
        settings = self.settings.replace(variant=self.variant, sampling=sampling)
        if track is not None:
            settings = settings.replace(track=track)
        if detect_every is not None:
            settings = settings.replace(detect_every=detect_every)
        return stream_video(self.runner, path, settings, keep_images=images)

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
