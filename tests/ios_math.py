"""The iOS guide's geometry, in Python, step for step as ``ios/BlazeFaceCamera/Sources/BlazeFaceCamera/Geometry.swift``.

Nothing Apple runs here, so the Swift functions cannot be executed; these twins keep their names (snake_case for
Swift's camelCase, listed in ``SWIFT_NAMES``) and their steps, line for line, so ``tests/test_ios_math.py`` can check
the arithmetic on hand-worked cases and against blazeconv's own letterbox removal.

Conventions (as in the Swift file):

* normalised coordinates are 0..1 of an image's width and height;
* "top-left" rectangles are ``(x, y, width, height)`` with y downwards (UIKit, SwiftUI, the models' outputs);
  Vision's ``boundingBox`` has its origin at the bottom left, y upwards;
* the "upright" frame is the camera buffer turned by its ``CGImagePropertyOrientation`` (what the preview shows);
* keypoints are in MediaPipe's order: right eye, left eye, nose tip, mouth centre, right ear tragion,
  left ear tragion (the subject's right and left).
"""

from __future__ import annotations

from dataclasses import dataclass

# Swift name -> Python twin. test_ios_math.py checks each Swift name is a function in Geometry.swift.
SWIFT_NAMES = {
    "exifOrientation": "exif_orientation",
    "uprightSize": "upright_size",
    "letterboxPadding": "letterbox_padding",
    "removeLetterbox": "remove_letterbox",
    "visionRectToTopLeft": "vision_rect_to_top_left",
    "aspectFillRect": "aspect_fill_rect",
    "aspectFillPoint": "aspect_fill_point",
    "swapLeftRight": "swap_left_right",
    "isMirrored": "is_mirrored",
    "uprightPoint": "upright_point",
    "sensorPoint": "sensor_point",
    "reorientPoint": "reorient_point",
    "reorientRect": "reorient_rect",
}

# Indices of the keypoints that trade places in a mirrored picture (right eye <-> left eye, right ear <-> left ear).
LEFT_RIGHT_PAIRS = ((0, 1), (4, 5))


@dataclass(frozen=True)
class Rect:
    """A CGRect: origin ``(x, y)`` and size ``(width, height)``."""

    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Padding:
    """``LetterboxPadding``: the fraction of the square model input padded on EACH side, horizontally and vertically."""

    x: float
    y: float


def exif_orientation(device_orientation: str, camera_position: str) -> str:
    """``exifOrientation(deviceOrientation:cameraPosition:)``: the CGImagePropertyOrientation of a camera buffer.

    The back camera's buffer is upright when the device is held in ``landscapeLeft`` (home button / USB port on the
    right); portrait needs a quarter turn clockwise (``right``). The front camera's buffer is also mirrored for a
    selfie-like picture (the preview layer mirrors it by default), hence the ``...Mirrored`` cases. Unknown, face up
    and face down are treated as portrait. The same table as Apple's Vision camera samples.
    """
    if camera_position == "front":
        return {
            "portraitUpsideDown": "rightMirrored",
            "landscapeLeft": "downMirrored",
            "landscapeRight": "upMirrored",
        }.get(device_orientation, "leftMirrored")
    return {
        "portraitUpsideDown": "left",
        "landscapeLeft": "up",
        "landscapeRight": "down",
    }.get(device_orientation, "right")


def upright_size(width: float, height: float, orientation: str) -> tuple[float, float]:
    """``uprightSize(width:height:orientation:)``: the buffer's size once turned (a quarter turn swaps the sides)."""
    if orientation in ("left", "right", "leftMirrored", "rightMirrored"):
        return height, width
    return width, height


def letterbox_padding(width: float, height: float) -> Padding:
    """``letterboxPadding(width:height:)``: MediaPipe's padding of an upright ``width x height`` picture.

    The picture is centred in a square of side ``max(width, height)``; a tall picture is padded left and right.
    """
    side = max(width, height)
    return Padding(x=(1 - width / side) / 2, y=(1 - height / side) / 2)


def remove_letterbox(rect: Rect, padding: Padding) -> Rect:
    """``removeLetterbox(_:padding:)``: a top-left rect normalised to the square -> normalised to the picture."""
    scale_x = 1 - 2 * padding.x
    scale_y = 1 - 2 * padding.y
    return Rect(
        x=(rect.x - padding.x) / scale_x,
        y=(rect.y - padding.y) / scale_y,
        width=rect.width / scale_x,
        height=rect.height / scale_y,
    )


def remove_letterbox_point(point: tuple[float, float], padding: Padding) -> tuple[float, float]:
    """``removeLetterbox(_:padding:)`` for a CGPoint (Swift overloads the name)."""
    x, y = point
    return (x - padding.x) / (1 - 2 * padding.x), (y - padding.y) / (1 - 2 * padding.y)


def vision_rect_to_top_left(rect: Rect) -> Rect:
    """``visionRectToTopLeft(_:)``: Vision's bottom-left-origin normalised rect -> top-left origin, y downwards."""
    return Rect(x=rect.x, y=1 - rect.y - rect.height, width=rect.width, height=rect.height)


def _aspect_fill(image_size: tuple[float, float], view_size: tuple[float, float]) -> tuple[float, float, float]:
    """``aspectFill(imageSize:viewSize:)``: scale and offset of an image shown resizeAspectFill (centred, cropped)."""
    image_width, image_height = image_size
    view_width, view_height = view_size
    scale = max(view_width / image_width, view_height / image_height)
    offset_x = (view_width - image_width * scale) / 2
    offset_y = (view_height - image_height * scale) / 2
    return scale, offset_x, offset_y


def aspect_fill_rect(rect: Rect, image_size: tuple[float, float], view_size: tuple[float, float]) -> Rect:
    """``aspectFillRect(_:imageSize:viewSize:)``: a top-left rect normalised to the upright image -> view points."""
    scale, offset_x, offset_y = _aspect_fill(image_size, view_size)
    image_width, image_height = image_size
    return Rect(
        x=offset_x + rect.x * image_width * scale,
        y=offset_y + rect.y * image_height * scale,
        width=rect.width * image_width * scale,
        height=rect.height * image_height * scale,
    )


def aspect_fill_point(
    point: tuple[float, float], image_size: tuple[float, float], view_size: tuple[float, float]
) -> tuple[float, float]:
    """``aspectFillPoint(_:imageSize:viewSize:)``: a normalised top-left point of the upright image -> view points."""
    scale, offset_x, offset_y = _aspect_fill(image_size, view_size)
    image_width, image_height = image_size
    return offset_x + point[0] * image_width * scale, offset_y + point[1] * image_height * scale


def swap_left_right(keypoints: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """``swapLeftRight(_:)``: relabel the keypoints of a face found in a mirrored picture.

    In a mirrored picture the subject's right eye is on the picture's right, where the model expects a left eye:
    the model's "right eye" is the subject's left. Swapping the pairs gives the subject's own right and left.
    """
    swapped = list(keypoints)
    for right, left in LEFT_RIGHT_PAIRS:
        swapped[right], swapped[left] = keypoints[left], keypoints[right]
    return swapped


def is_mirrored(orientation: str) -> bool:
    """``isMirrored(_:)``: whether an orientation flips the picture (then the keypoints need ``swap_left_right``)."""
    return orientation in ("upMirrored", "downMirrored", "leftMirrored", "rightMirrored")


def upright_point(point: tuple[float, float], orientation: str) -> tuple[float, float]:
    """``uprightPoint(_:orientation:)``: a normalised top-left point of the sensor buffer -> of the upright picture.

    The EXIF meaning of each orientation: ``right`` (6) has the buffer's first row on the right and its first column
    at the top (a quarter turn clockwise), ``leftMirrored`` (5) is the transpose, and so on.
    """
    x, y = point
    return {
        "up": (x, y),
        "upMirrored": (1 - x, y),
        "down": (1 - x, 1 - y),
        "downMirrored": (x, 1 - y),
        "leftMirrored": (y, x),
        "right": (1 - y, x),
        "rightMirrored": (1 - y, 1 - x),
        "left": (y, 1 - x),
    }[orientation]


def sensor_point(point: tuple[float, float], orientation: str) -> tuple[float, float]:
    """``sensorPoint(_:orientation:)``: the inverse of ``upright_point``."""
    u, v = point
    return {
        "up": (u, v),
        "upMirrored": (1 - u, v),
        "down": (1 - u, 1 - v),
        "downMirrored": (u, 1 - v),
        "leftMirrored": (v, u),
        "right": (v, 1 - u),
        "rightMirrored": (1 - v, 1 - u),
        "left": (1 - v, u),
    }[orientation]


def reorient_point(point: tuple[float, float], source: str, target: str) -> tuple[float, float]:
    """``reorientPoint(_:from:to:)``: a point of the picture upright by ``source`` -> of the one upright by ``target``.

    For drawing when the detector's orientation (the device's, so faces are upright for the model) is not the
    preview's (a portrait-only interface, say).
    """
    return upright_point(sensor_point(point, source), target)


def reorient_rect(rect: Rect, source: str, target: str) -> Rect:
    """``reorientRect(_:from:to:)``: a top-left rect, corner by corner (quarter turns keep rects axis-aligned)."""
    x1, y1 = reorient_point((rect.x, rect.y), source, target)
    x2, y2 = reorient_point((rect.x + rect.width, rect.y + rect.height), source, target)
    return Rect(x=min(x1, x2), y=min(y1, y2), width=abs(x2 - x1), height=abs(y2 - y1))
