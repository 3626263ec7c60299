"""Faces hidden in photos and videos: ``blazeconv blur`` and ``blazeconv.blur``.

Detection is the photo and video pipeline (``FaceDetector``, ``stream_video``) with defaults chosen to protect:
a model that sees small faces, a threshold below MediaPipe's, tiles sized by the picture (``tiling_for``), and a
``hold`` that keeps a face masked a few frames before it is first found and after it is last found (docs/bench.md,
*Anonymise*, has the measurements behind them).
Each face's region (``masking``) is hidden in the pixels; the output says it is blazeconv's blurred copy of its
source (``BLUR_MARK`` in a JPEG/PNG comment or the video's ``comment`` tag), so a later run may replace it and
nothing else.

Photos keep their format (by the target's suffix; JPEG at quality 95) and, by default, no metadata at all: EXIF
(with GPS), XMP and comments can identify a person too. ``keep_metadata`` keeps the EXIF block without its GPS
part and the ICC profile; the pixels are stored upright, so the orientation tag says so. Videos keep every frame,
its timestamps, the size, the rotation and the audio streams (``video_annotation``), H.264 at ``crf``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, PngImagePlugin

from .detection.images import as_rgb, check_channels
from .detection.masking import DEFAULT_MASKING, Masking, hide_faces, hide_regions, mask_regions
from .detection.pipeline import detect_images
from .detection.records import Detection
from .detection.tiling import Tiling
from .detection.video import OpenedVideo, Sampling, VideoStopped, open_video, stream_video
from .detection.video_annotation import DEFAULT_CRF, VideoAnnotation
from .detector import FaceDetector
from .errors import ImageError, OptionsError
from .io import atomic_path

BLUR_MARK = "blazeconv blur of "
# The defaults of ``blur`` and ``blazeconv blur``, chosen from measurements (docs/bench.md, Anonymise).
DEFAULT_MODEL = "full_range_sparse"
DEFAULT_MIN_SCORE = 0.4
DEFAULT_HOLD = 5
DEFAULT_TILE = True
# Blur's tiles are a share of the picture, not of the model input: the side is the picture's shorter side over
# TILE_SHARE, at least MIN_TILE pixels (faces of a few per cent of a frame are found in any resolution).
TILE_SHARE = 2.25
MIN_TILE = 320
PHOTO_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF",
                 ".bmp": "BMP"}
_GPS_IFD = 0x8825
_ORIENTATION = 0x0112


@functools.lru_cache(maxsize=4)
def _detector(model: str, min_score: float | None, tile: bool, tile_size: int | None) -> FaceDetector:
    return FaceDetector(model, min_score=min_score, tile=tile, tile_size=tile_size)


def detector_for(model: str = DEFAULT_MODEL, min_score: float | None = DEFAULT_MIN_SCORE, tile: bool = DEFAULT_TILE,
                 tile_size: int | None = None) -> FaceDetector:
    """The ``FaceDetector`` ``blur`` uses for these settings (made once per process and settings). With ``tile`` and
    no ``tile_size``, each picture's tiles are sized by ``tiling_for`` when blurring."""
    return _detector(str(model), min_score, bool(tile), tile_size)


def tiling_for(detector: FaceDetector, width: int, height: int) -> Tiling | None:
    """The tiles blur runs on a ``width`` x ``height`` picture: the detector's own when it has a tile size, else
    ``max(MIN_TILE, shorter side / TILE_SHARE)`` pixels, with the detector's overlap; None without tiles."""
    tiling = detector.tiling
    if tiling is None or tiling.size is not None:
        return tiling
    return Tiling(max(MIN_TILE, round(min(width, height) / TILE_SHARE)), tiling.overlap)


def _faces(detector: FaceDetector, rgb: np.ndarray) -> list[Detection]:
    """``detector``'s faces on ``rgb`` with blur's tiles."""
    tiling = tiling_for(detector, rgb.shape[1], rgb.shape[0])
    return detect_images(detector.runner, [rgb], detector.variant, detector.min_score, detector.iou_threshold,
                         tiling=tiling)[0]


def blur(image: Any, *, detector: FaceDetector | None = None, style: str = "blur", shape: str = "ellipse",
         mask_scale: float | None = None, channels: str = "rgb", model: str = DEFAULT_MODEL,
         min_score: float | None = DEFAULT_MIN_SCORE, tile: bool = DEFAULT_TILE) -> np.ndarray:
    """``image`` with its faces hidden: an ``(H, W, 3)`` uint8 array in the channel order of the input (``channels``
    ``"bgr"`` for OpenCV frames), a new array (the input is not changed).

    ``image``: anything ``FaceDetector`` takes (a path, an array, a Pillow image). ``detector``: the one to use
    (default: ``detector_for(model, min_score, tile)``). ``style`` ``blur`` / ``pixelate`` / ``fill``, ``shape``
    ``ellipse`` / ``box``, ``mask_scale``: the region's side over the box's (``masking``).
    """
    check_channels(channels)
    masking = _masking(style, shape, mask_scale)
    detector = detector or detector_for(model, min_score, tile)
    rgb = as_rgb(image, channels)
    out = hide_faces(rgb, _faces(detector, rgb), masking)
    return np.ascontiguousarray(out[:, :, ::-1]) if channels == "bgr" else out


def _masking(style: str, shape: str, mask_scale: float | None) -> Masking:
    return Masking(style, shape, *(() if mask_scale is None else (mask_scale,))).check()


@dataclass(frozen=True)
class Blurred:
    """What ``blur_photo`` or ``blur_video`` did: the ``target`` written, the ``frames`` (1 for a photo), the frames with a face
    hidden, the regions hidden in all, and the ``error`` that stopped a video early (the frames before it were
    written), else None."""

    target: Path
    frames: int
    with_faces: int
    regions: int
    error: ImageError | None = None


def blur_photo(source: str | Path, target: str | Path, *, detector: FaceDetector, masking: Masking = DEFAULT_MASKING,
               keep_metadata: bool = False, on_regions: Callable | None = None) -> Blurred:
    """Write ``source`` with its faces hidden to ``target`` (format by its suffix: ``PHOTO_FORMATS``), atomically.
    ``on_regions(record)``: called with ``{"path", "width", "height", "regions": [[left, top, right, bottom]]}``
    (pixels of the upright photo)."""
    source, target = Path(source), Path(target)
    if target.suffix.lower() not in PHOTO_FORMATS:
        raise OptionsError(f"{target}: a blurred photo is written as {', '.join(PHOTO_FORMATS)}, "
                           f"not {target.suffix or 'a file without a suffix'}")
    exif, icc = _metadata(source) if keep_metadata else (None, None)
    rgb = as_rgb(source)
    picture = Image.fromarray(rgb)
    regions = mask_regions(_faces(detector, rgb), picture.width, picture.height, masking.scale)
    hide_regions(picture, regions, masking)
    if on_regions is not None:
        on_regions({"path": str(source), "width": picture.width, "height": picture.height,
                    "regions": [list(r) for r in regions]})
    _save_photo(picture, target, source, exif, icc)
    return Blurred(target, 1, int(bool(regions)), len(regions))


def _metadata(source: Path) -> tuple[bytes | None, bytes | None]:
    """The EXIF block of ``source`` without GPS and with the orientation upright, and its ICC profile."""
    try:
        with Image.open(source) as image:
            exif = image.getexif()
            icc = image.info.get("icc_profile")
    except Exception:  # the photo itself is read (and its error reported) by as_rgb
        return None, None
    if not exif:
        return None, icc
    exif.pop(_GPS_IFD, None)
    if _ORIENTATION in exif:
        exif[_ORIENTATION] = 1  # the pixels are written upright
    return exif.tobytes(), icc


def _save_photo(picture: Image.Image, target: Path, source: Path, exif: bytes | None, icc: bytes | None) -> None:
    kind = PHOTO_FORMATS[target.suffix.lower()]
    mark = BLUR_MARK + os.path.realpath(source)
    options: dict[str, Any] = {}
    if exif:
        options["exif"] = exif
    if icc:
        options["icc_profile"] = icc
    if kind == "JPEG":
        options.update(quality=95, comment=mark.encode())
    elif kind == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_text("Comment", mark)
        options["pnginfo"] = info
    with atomic_path(target) as temporary:
        picture.save(temporary, format=kind, **options)


def is_blurred_copy_of(path: str | Path, source: str | Path) -> bool:
    """True when ``path`` is a blurred copy blazeconv wrote of ``source`` (photo or video), by the mark it records."""
    from .detection.video_annotation import is_video_annotation_of

    try:
        with Image.open(path) as image:
            mark = image.info.get("comment", image.info.get("Comment"))
    except Exception:
        return is_video_annotation_of(path, source, BLUR_MARK)
    if isinstance(mark, bytes):
        mark = mark.decode("utf-8", "replace")
    return mark == BLUR_MARK + os.path.realpath(source)


def blur_video(source: str | Path | OpenedVideo, target: str | Path, *, detector: FaceDetector,
               masking: Masking = DEFAULT_MASKING, hold: int = DEFAULT_HOLD, crf: float = DEFAULT_CRF,
               on_regions: Callable | None = None, batch_size: int = 32) -> Blurred:
    """Write the video ``source`` with its faces hidden to ``target`` (``.mp4``, ``.m4v``, ``.mov`` or ``.mkv``),
    atomically: every frame detected, each frame masked with the detections of the frames within ``hold`` of it.
    ``on_regions(record)``: per frame, ``{"path", "frame", "time", "width", "height", "regions"}`` (pixels of the
    upright frame). A video that stops early is written with the frames that decoded and the ``VideoStopped`` is in
    the result's ``error``; one that cannot be read at all raises ``ImageError`` and writes nothing.

    One pass: the file is opened once (``source`` may be the caller's ``OpenedVideo``, left open) and each frame,
    decoded once, goes to the detector and to the writer."""
    if not isinstance(source, OpenedVideo):
        with open_video(source) as video:  # ImageError for a file that is not a readable video: nothing is written
            return blur_video(video, target, detector=detector, masking=masking, hold=hold, crf=crf,
                              on_regions=on_regions, batch_size=batch_size)
    video, source = source, source.path
    counts = {"frames": 0, "with_faces": 0, "regions": 0}

    def paint(picture: Image.Image, found: list[Detection], index: int, time: float) -> None:
        regions = mask_regions(found, picture.width, picture.height, masking.scale)
        hide_regions(picture, regions, masking)
        counts["frames"] += 1
        counts["with_faces"] += bool(regions)
        counts["regions"] += len(regions)
        if on_regions is not None:
            on_regions({"path": str(source), "frame": index, "time": round(time, 6), "width": picture.width,
                        "height": picture.height, "regions": [list(r) for r in regions]})

    error = None
    with VideoAnnotation(video, target, crf=crf, paint=paint, hold=hold, mark=BLUR_MARK) as writer:
        try:
            for _ in stream_video(detector.runner, video, detector.variant, detector.min_score,
                                  detector.iou_threshold, batch_size, sampling=Sampling(), writer=writer,
                                  tiling=tiling_for(detector, video.info.width, video.info.height)):
                pass  # the pass hands each frame and its detections to the writer
        except VideoStopped as exc:  # what decoded is written, the error reported
            error = exc
    return Blurred(Path(target), counts["frames"], counts["with_faces"], counts["regions"], error)


__all__ = ["BLUR_MARK", "DEFAULT_HOLD", "DEFAULT_MIN_SCORE", "DEFAULT_MODEL", "DEFAULT_TILE", "PHOTO_FORMATS",
           "Blurred", "blur", "blur_photo", "blur_video", "detector_for", "is_blurred_copy_of", "tiling_for"]
