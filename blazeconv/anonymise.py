"""Faces hidden in photos and videos: ``blazeconv blur`` and ``blazeconv.blur``.

Detection is the photo and video pipeline (``FaceDetector``, ``stream_video``) with the scales every run has
(``detection.scales``: the whole picture and tiles sized for the smallest face that matters), a threshold below
MediaPipe's, and a ``hold`` that keeps a face masked a few frames before it is first found and after it is last
found (docs/bench.md, *Anonymise* and *Every face*, has the measurements behind them).
Each face's region (``masking``) is hidden in the pixels; the output says it is a blazeconv blurred output
(``marks.BLURRED`` in a JPEG/PNG comment or the video's ``comment`` tag: the same words for every output, nothing
of its source), so a later run may replace it and nothing else.

Photos keep their format (by the target's suffix; JPEG at quality 95) and, by default, no metadata at all: EXIF
(with GPS), XMP, IPTC, comments, text chunks and the ICC profile can identify a person too; a JPEG holds its JFIF
segment and the mark, a PNG the mark, a WebP nothing. ``keep_metadata`` keeps the EXIF tags of ``KEPT_EXIF`` (how
the photo was taken: no GPS, owner, serial number, description or software) and the ICC profile; the pixels are
stored upright, so the orientation tag says so. Videos keep every frame, its timestamps, the size, the rotation and
the audio streams (``video_annotation``; ``audio=False`` drops them: voices identify people too), H.264 at
``crf``; of the source's metadata only each audio stream's language code is kept (no title, comment, creation
time, location, handler name, chapter, subtitle, data or attachment stream). What the muxer itself writes stays:
the brands, the ``encoder`` tag (FFmpeg's library and version, the same for every output), the default handler
names, Matroska's DURATION, and x264's settings in the H.264 stream (tests/test_private.py lists each).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .detection.images import as_rgb, check_channels
from .detection.masking import DEFAULT_MASKING, Masking, hide_faces, hide_regions, mask_regions
from .detection.pipeline import detect_images
from .detection.records import Detection
from .detection.settings import FINE_AUTO, DetectionSettings, Sampling
from .detection.video import OpenedVideo, VideoStopped, open_video, stream_video
from .detection.video_annotation import DEFAULT_CRF, VideoAnnotation
from .detector import FaceDetector
from .errors import ImageError, OptionsError
from .io import atomic_path
from .marks import BLURRED, has_mark, photo_save_options
from .variants import DEFAULT_MODEL

# The defaults of ``blur`` and ``blazeconv blur``, chosen from measurements (docs/bench.md, Anonymise): detect's model
# and scales, a lower threshold (a face left visible costs more than a patch of wall blurred), every face the whole
# picture finds kept whatever its size (``whole_any_size``: a small head from behind is hidden too), and on videos
# the tile levels on fine keyframes a few frames apart (``fine_every="auto"``; docs/tracks.md, *Fine scales on
# keyframes*).
DEFAULT_MIN_SCORE = 0.4
DEFAULT_HOLD = 5
PHOTO_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF",
                 ".bmp": "BMP"}
_ORIENTATION = 0x0112


# What ``blur`` detects with unless told otherwise (docs/bench.md, Anonymise).
BLUR_SETTINGS = DetectionSettings(model=DEFAULT_MODEL, min_score=DEFAULT_MIN_SCORE, whole_any_size=True,
                                  fine_every=FINE_AUTO)


@functools.lru_cache(maxsize=4)
def _detector(settings: DetectionSettings) -> FaceDetector:
    return FaceDetector(settings=settings)


def detector_for(settings: DetectionSettings | None = None, **options: Any) -> FaceDetector:
    """The ``FaceDetector`` ``blur`` uses: ``settings`` (default ``BLUR_SETTINGS``) with ``options`` (its fields as
    keywords) applied, made once per process and settings."""
    settings = DetectionSettings.of(settings or BLUR_SETTINGS, **options)
    try:
        return _detector(settings)
    except TypeError:  # a model that cannot be a key (unhashable): a detector of its own
        return FaceDetector(settings=settings)


def _faces(detector: FaceDetector, rgb: np.ndarray) -> list[Detection]:
    """``detector``'s faces on ``rgb`` (at its scales)."""
    return detect_images(detector.runner, [rgb], detector.settings.replace(variant=detector.variant))[0]


def blur(image: Any, *, detector: FaceDetector | None = None, style: str = "blur", shape: str = "ellipse",
         mask_scale: float | None = None, channels: str = "rgb", settings: DetectionSettings | None = None,
         **options: Any) -> np.ndarray:
    """``image`` with its faces hidden: an ``(H, W, 3)`` uint8 array in the channel order of the input (``channels``
    ``"bgr"`` for OpenCV frames), a new array (the input is not changed).

    ``image``: anything ``FaceDetector`` takes (a path, an array, a Pillow image). ``detector``: the one to use
    (default: ``detector_for(settings, **options)``: blur's own settings, with ``model``, ``min_score``, ``tile``
    and any other detection setting given as keywords). ``style`` ``blur`` / ``pixelate`` / ``fill``, ``shape``
    ``ellipse`` / ``box``, ``mask_scale``: the region's side over the box's (``masking``).
    """
    check_channels(channels)
    masking = _masking(style, shape, mask_scale)
    detector = detector or detector_for(settings, **options)
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
    _save_photo(picture, target, exif, icc)
    return Blurred(target, 1, int(bool(regions)), len(regions))


# What ``keep_metadata`` keeps of a photo's EXIF, by IFD: how it was taken, never who took it, whom it shows or
# which device exactly (owner, artist, copyright, descriptions, comments, maker notes, serial numbers, unique ids,
# the host computer and software, GPS, thumbnails all go). Tag numbers from the EXIF 2.32 / TIFF 6.0 tables.
KEPT_EXIF = {
    "IFD0": {0x010F: "Make", 0x0110: "Model", 0x0112: "Orientation", 0x011A: "XResolution", 0x011B: "YResolution",
             0x0128: "ResolutionUnit", 0x0132: "DateTime", 0x0213: "YCbCrPositioning"},
    "Exif": {0x829A: "ExposureTime", 0x829D: "FNumber", 0x8822: "ExposureProgram", 0x8827: "ISOSpeedRatings",
             0x9000: "ExifVersion", 0x9003: "DateTimeOriginal", 0x9004: "DateTimeDigitized", 0x9010: "OffsetTime",
             0x9011: "OffsetTimeOriginal", 0x9012: "OffsetTimeDigitized", 0x9201: "ShutterSpeedValue",
             0x9202: "ApertureValue", 0x9203: "BrightnessValue", 0x9204: "ExposureBiasValue",
             0x9205: "MaxApertureValue", 0x9207: "MeteringMode", 0x9208: "LightSource", 0x9209: "Flash",
             0x920A: "FocalLength", 0xA001: "ColorSpace", 0xA402: "ExposureMode", 0xA403: "WhiteBalance",
             0xA404: "DigitalZoomRatio", 0xA405: "FocalLengthIn35mmFilm", 0xA406: "SceneCaptureType",
             0xA433: "LensMake", 0xA434: "LensModel"},
}
_EXIF_IFD = 0x8769


def _metadata(source: Path) -> tuple[bytes | None, bytes | None]:
    """What ``keep_metadata`` keeps of ``source``: the EXIF tags of ``KEPT_EXIF`` (the orientation upright), and the
    ICC profile."""
    try:
        with Image.open(source) as image:
            exif = image.getexif()
            icc = image.info.get("icc_profile")
            taken = exif.get_ifd(_EXIF_IFD) if exif else {}
    except Exception:  # the photo itself is read (and its error reported) by as_rgb
        return None, None
    kept = Image.Exif()
    for tag, value in exif.items():
        if tag in KEPT_EXIF["IFD0"]:
            kept[tag] = 1 if tag == _ORIENTATION else value  # the pixels are written upright
    details = {tag: value for tag, value in taken.items() if tag in KEPT_EXIF["Exif"]}
    if details:
        kept.get_ifd(_EXIF_IFD).update(details)
    return (kept.tobytes() if len(kept) or details else None), icc


def _save_photo(picture: Image.Image, target: Path, exif: bytes | None, icc: bytes | None) -> None:
    kind = PHOTO_FORMATS[target.suffix.lower()]
    options: dict[str, Any] = photo_save_options(kind, BLURRED)
    if exif:
        options["exif"] = exif
    if icc:
        options["icc_profile"] = icc
    if kind == "JPEG":
        options["quality"] = 95
    with atomic_path(target) as temporary:
        picture.save(temporary, format=kind, **options)


def is_blurred_output(path: str | Path) -> bool:
    """True when ``path`` is a photo or video blazeconv's blur wrote (by its mark, which names no source)."""
    return has_mark(path, BLURRED)


def blur_video(source: str | Path | OpenedVideo, target: str | Path, *, detector: FaceDetector,
               masking: Masking = DEFAULT_MASKING, hold: int = DEFAULT_HOLD, crf: float = DEFAULT_CRF,
               on_regions: Callable | None = None, batch_size: int = 32, audio: bool = True,
               track: bool = False, detect_every: int = 1) -> Blurred:
    """Write the video ``source`` with its faces hidden to ``target`` (``.mp4``, ``.m4v``, ``.mov`` or ``.mkv``),
    atomically: every frame detected, each frame masked with the detections of the frames within ``hold`` of it.
    ``on_regions(record)``: per frame, ``{"path", "frame", "time", "width", "height", "regions"}`` (pixels of the
    upright frame). ``audio``: copy the audio streams (False: the output has none; voices identify people too).
    ``track``: the detections are tracked (``detection.tracking``) and each frame's masks follow the tracks
    (``video_annotation.along_tracks``: each face where its track is on the frame and the frames next to it,
    interpolated across a miss within ``hold``, held and moved on by its velocity ``hold`` frames beyond a track's
    ends) instead of the union of every box within ``hold``. ``detect_every`` N > 1 (implies ``track``): the model
    runs on every N-th frame only (keyframes, from the first) and the frames between are masked along the tracks,
    which then reach ``hold + N - 1`` frames beyond a track's ends; a face that comes and goes between two
    keyframes is not hidden (docs/tracks.md). The detector's ``settings.fine_every`` K > 1 (``"auto"``, blur's
    default: ``DetectionSettings.fine_every_at`` the video's frame rate): every frame is looked at whole and every
    K-th at every level too, and every mask reaches ``hold + K - 1`` frames (along the tracks with ``track``), so the
    faces only the tiles find stay hidden between fine keyframes. A video that stops early is written with the frames
    that decoded and the ``VideoStopped`` is in the result's ``error``; one that cannot be read at all raises
    ``ImageError`` and writes nothing.

    One pass: the file is opened once (``source`` may be the caller's ``OpenedVideo``, left open) and each frame,
    decoded once, goes to the detector and to the writer."""
    if not isinstance(source, OpenedVideo):
        with open_video(source) as video:  # ImageError for a file that is not a readable video: nothing is written
            return blur_video(video, target, detector=detector, masking=masking, hold=hold, crf=crf,
                              on_regions=on_regions, batch_size=batch_size, audio=audio, track=track,
                              detect_every=detect_every)
    if not isinstance(detect_every, int) or isinstance(detect_every, bool) or detect_every < 1:
        raise OptionsError(f"detect_every must be a whole number >= 1, got {detect_every!r}")
    video, source = source, source.path
    counts = {"frames": 0, "with_faces": 0, "regions": 0}
    fine_every = 1 if detect_every > 1 else detector.settings.fine_every_at(video.info.fps)
    track = track or detect_every > 1
    reach = hold + detect_every * fine_every - 1  # frames a mask reaches beyond the samples that found its face

    def paint(picture: Image.Image, found: list[Detection], index: int, time: float) -> list:
        regions = mask_regions(found, picture.width, picture.height, masking.scale)
        hide_regions(picture, regions, masking)
        counts["frames"] += 1
        counts["with_faces"] += bool(regions)
        counts["regions"] += len(regions)
        if on_regions is not None:
            on_regions({"path": str(source), "frame": index, "time": round(time, 6), "width": picture.width,
                        "height": picture.height, "regions": [list(r) for r in regions]})
        return regions  # the only pixels changed: the writer converts these again, not the whole frame

    error = None
    with VideoAnnotation(video, target, crf=crf, paint=paint, hold=reach, mark=BLURRED, audio=audio) as writer:
        try:
            settings = detector.settings.replace(variant=detector.variant, batch_size=batch_size,
                                                 sampling=Sampling(every=detect_every), track=track,
                                                 fine_every=fine_every)
            for _ in stream_video(detector.runner, video, settings, writer=writer):
                pass  # the pass hands each frame and its detections to the writer
        except VideoStopped as exc:  # what decoded is written, the error reported
            error = exc
    return Blurred(Path(target), counts["frames"], counts["with_faces"], counts["regions"], error)


__all__ = ["DEFAULT_HOLD", "DEFAULT_MIN_SCORE", "DEFAULT_MODEL", "PHOTO_FORMATS", "Blurred", "blur", "blur_photo",
           "blur_video", "detector_for", "is_blurred_output"]
