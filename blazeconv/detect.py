"""The detection pipeline around a BlazeFace model, step for step as MediaPipe's face graphs run it.

image (file, bytes, Pillow image, array, tensor) -> ``as_rgb`` / ``load_image`` -> ``letterbox``
(ImageToTensorCalculator) -> runner -> ``decode`` (TensorsToDetectionsCalculator) -> ``weighted_nms``
(NonMaxSuppressionCalculator) -> ``remove_letterbox`` (DetectionLetterboxRemovalCalculator) -> ``Detection`` records in
0..1 of the original image.

The model step is a *runner*: any object with ``run(batch)``, ``batch`` a numpy ``(B, 3, S, S)`` float32 RGB array in
[-1, 1], returning numpy ``(regressors (B, N, 16), classificators (B, N, 1))`` (the TFLite outputs' layout), and a
``variant`` attribute (a ``Variant``, or None when the caller names it). A torch module (or any callable taking and
returning torch tensors) is wrapped in ``model.TorchRunner``; with any other runner this module never imports torch.
"""

from __future__ import annotations

import functools
import io
import itertools
import re
import sys
import warnings
from collections import namedtuple
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from .anchors import AnchorOptions, generate_anchors
from .errors import ImageError, OptionsError
from .variants import KEYPOINT_NAMES, NMS_IOU_THRESHOLD, Variant, get_variant

# OpenCV's warpPerspective quantises source coordinates to 1/32 pixel (INTER_BITS = 5) and, for 8-bit
# images, interpolates with integer weights that sum to 2**15 (INTER_REMAP_COEF_BITS = 15).
_INTER_BITS = 5
_INTER_TAB_SIZE = 1 << _INTER_BITS
# TensorsToDetectionsCalculatorOptions.score_clipping_thresh in the face graphs.
_SCORE_CLIPPING = 100.0
# "scheme://" or, after pathlib collapsed the double slash, "scheme:/"; two letters at least (not a drive "C:/").
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")


# --------------------------------------------------------------------------------------------- images


def looks_like_url(text: str | Path) -> bool:
    """True for ``http://...``, ``https://...``, ``s3://...`` and the like, also as a ``Path`` (``https:/...``)."""
    return bool(_URL.match(str(text)))


ImageSource = str | Path | bytes | bytearray | memoryview | io.IOBase
"""What ``load_image`` reads: a path, the encoded bytes of an image file, or a binary file object."""


def load_image(source: ImageSource) -> np.ndarray:
    """Decode an image file into ``(H, W, 3)`` uint8 RGB, upright per its EXIF orientation.

    ``source``: a path (str or ``Path``), the file's bytes (``bytes``, ``bytearray``, ``memoryview``), or a binary
    file object (anything with ``read``; read from its current position). Errors name the path, ``<bytes>``, or the
    file object's ``name``. A path that is a URL is refused: URLs are not read.

    Alpha is dropped, not composited (MediaPipe's reference was made with Pillow's ``convert("RGB")``);
    16-bit grey keeps its top 8 bits. Pillow's ``Image.MAX_IMAGE_PIXELS`` guard stays on and is strict: an
    image over the limit is refused before its pixels are decoded (Pillow itself only warns up to twice the
    limit). Pillow's other warnings (a corrupt EXIF block it skips, say) are not shown. Any failure, whatever
    Pillow's decoder raised on a corrupt file, is an ``ImageError`` naming the file.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        name, opened = "<bytes>", io.BytesIO(source)
    elif isinstance(source, (str, Path)):
        name = opened = Path(source)
        if looks_like_url(source) and not opened.exists():
            raise ImageError(f"{source}: URLs are not read; download the file first")
    elif callable(getattr(source, "read", None)):
        name, opened = str(getattr(source, "name", None) or f"<{type(source).__name__}>"), source
    else:
        raise ImageError(f"expected a path, bytes or a binary file object, got {_describe(source)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(opened) as image:
                array = _upright_rgb(image)
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{name}: is a directory, not an image") from None
    except PermissionError:
        raise ImageError(f"{name}: permission denied") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(
            f"{name}: image too large (more than Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS} pixels)"
        ) from None
    except MemoryError:
        raise
    except Exception as exc:  # OSError, SyntaxError, ValueError, EOFError, struct.error, ...: a corrupt file
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ImageError(f"{name}: cannot decode image: {reason}") from None
    if array.size == 0:
        raise ImageError(f"{name}: empty image ({array.shape[1]}x{array.shape[0]} pixels)")
    return array


_EXPECTED_IMAGE = (
    "a path, bytes, a binary file, a PIL image, a uint8 numpy array (H, W), (H, W, 3) or (H, W, 4), "
    "or a uint8 torch tensor (H, W, 3) or (3, H, W)"
)


def as_rgb(image: Any, channels: str = "rgb") -> np.ndarray:
    """Any image a user holds as ``(H, W, 3)`` uint8 RGB: the one form the pipeline works on.

    - a path, bytes or binary file object: ``load_image`` (EXIF orientation applied);
    - a ``PIL.Image`` of any mode: EXIF orientation applied and converted exactly as ``load_image`` does for files;
    - a uint8 numpy array ``(H, W)`` grey (repeated), ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` (alpha dropped);
    - a uint8 torch tensor ``(H, W, 3)`` or ``(3, H, W)`` (or the array shapes above), on any device.

    ``channels``: ``"rgb"``, or ``"bgr"`` for arrays and tensors in OpenCV's order (BGR, BGRA); files and Pillow
    images carry their own order and ignore it. Anything else is an ``ImageError`` saying what was expected.
    """
    if channels not in ("rgb", "bgr"):
        raise OptionsError(f"channels must be 'rgb' or 'bgr', got {channels!r}")
    if isinstance(image, (str, Path, bytes, bytearray, memoryview)) or callable(getattr(image, "read", None)):
        return load_image(image)
    if isinstance(image, Image.Image):
        array = _upright_rgb(image)
        if array.size == 0:
            raise ImageError(f"empty image ({array.shape[1]}x{array.shape[0]} pixels)")
        return array
    torch = sys.modules.get("torch")  # a tensor can only exist once torch is imported
    if torch is not None and isinstance(image, torch.Tensor):
        if image.dtype != torch.uint8:
            raise ImageError(f"expected {_EXPECTED_IMAGE}; got a {image.dtype} tensor of shape {tuple(image.shape)}")
        array = image.detach().to("cpu").numpy()
        if array.ndim == 3 and array.shape[2] not in (1, 3, 4) and array.shape[0] in (1, 3, 4):
            array = array.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
        return _array_to_rgb(array, channels)
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image, channels)
    raise ImageError(f"expected {_EXPECTED_IMAGE}; got {_describe(image)}")


def _array_to_rgb(array: np.ndarray, channels: str) -> np.ndarray:
    """``(H, W)``, ``(H, W, 1|3|4)`` uint8 in ``channels`` order -> ``(H, W, 3)`` uint8 RGB (a view when it can be)."""
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise ImageError(f"expected {_EXPECTED_IMAGE}; got {_describe(array)}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ImageError(f"empty image of shape {array.shape}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[2] == 1:
        return np.repeat(array, 3, axis=2)
    rgb = array[:, :, :3]  # alpha dropped, as load_image drops it
    return rgb[:, :, ::-1] if channels == "bgr" else rgb


def _describe(value: Any) -> str:
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        return f"a {type(value).__name__} of shape {tuple(shape)} and dtype {dtype}"
    return f"a {type(value).__module__}.{type(value).__qualname__}".replace("builtins.", "")


def _upright_rgb(image: Image.Image) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB of a Pillow image turned upright per its EXIF orientation (what ``load_image`` does)."""
    return _to_rgb_array(ImageOps.exif_transpose(image))


def _to_rgb_array(image: Image.Image) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB from any Pillow mode."""
    if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        # Pillow's own convert clips 16-bit samples at 255; keep the top 8 bits instead.
        grey = np.asarray(image).astype(np.int64)
        grey = (np.clip(grey, 0, 65535) >> 8).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode == "La":  # premultiplied grey + alpha has no direct route to RGB
        image = image.convert("LA")
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def _check_rgb(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ImageError(f"expected an (H, W, 3) uint8 RGB array, got shape {shape} dtype {dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ImageError(f"empty image of shape {image.shape}")


# ------------------------------------------------------------------------------------------ letterbox


@dataclass(frozen=True)
class Letterbox:
    """How an image was fitted into the square model input, enough to undo it.

    ``padding`` is ``(left, top, right, bottom)`` in fractions of the model input, the ``LETTERBOX_PADDING``
    MediaPipe's ImageToTensorCalculator reports: a wide image is padded top and bottom, a tall one left and right.
    """

    image_width: int
    image_height: int
    input_size: int
    padding: tuple[float, float, float, float]


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """Fit ``image`` ``(H, W, 3)`` uint8 RGB into a ``(3, size, size)`` float32 tensor in [-1, 1].

    Mirrors MediaPipe's CPU ``ImageToTensorCalculator`` (``keep_aspect_ratio: true``, ``BORDER_ZERO``), which
    calls OpenCV ``warpPerspective`` (INTER_LINEAR) on the 8-bit image, then maps 0..255 to -1..1. The source
    region is the square of side ``L = max(W, H)`` centred on the image; output pixel ``(x, y)`` reads the
    source point ``(x0 + x*L/size, y0 + y*L/size)`` — no half-pixel offset, no antialiasing. As in OpenCV the
    point is rounded to 1/32 pixel, the four neighbours are weighted in fixed point, neighbours outside the
    image count as 0 (a sample straddling the edge mixes with black) and the result is rounded to uint8.
    """
    _check_rgb(image)
    if size < 1:
        raise OptionsError(f"letterbox size must be positive, got {size}")
    height, width = image.shape[:2]
    tensor = _warp_planes(image, size).astype(np.float32)  # (3, S, S), values 0..255
    tensor *= np.float32(2.0 / 255.0)
    tensor -= np.float32(1.0)

    # PadRoi in image_to_tensor_utils.cc: the padding as fractions of the square input.
    side = max(width, height)
    pad_x = (1.0 - width / side) / 2.0
    pad_y = (1.0 - height / side) / 2.0
    return tensor, Letterbox(width, height, size, (pad_x, pad_y, pad_x, pad_y))


def _warp(image: np.ndarray, size: int) -> np.ndarray:
    """The ``(size, size, 3)`` uint8 image ``cv::warpPerspective`` makes (INTER_LINEAR, BORDER_CONSTANT 0)."""
    planes = _warp_planes(image, size).astype(np.uint8)  # (3, S, S)
    return np.ascontiguousarray(planes.transpose(1, 2, 0))  # (S, S, 3)


def _warp_planes(image: np.ndarray, size: int) -> np.ndarray:
    """``_warp``'s result channel-first, ``(3, size, size)`` int32 holding 0..255 (the layout the model takes)."""
    height, width = image.shape[:2]
    indices, weights = _warp_taps(width, height, size)  # (4, 3*S*S) each
    pixels = np.take(np.ascontiguousarray(image).reshape(-1), indices)  # (4, 3*S*S) uint8: the neighbours' bytes
    total = pixels.astype(np.int32)  # the sum is at most 255 * 32 * 32
    total *= weights
    total[0] += total[1]
    total[2] += total[3]
    total[0] += total[2]
    # The weights sum to 32*32; OpenCV's (sum * 2**5 + 2**14) >> 15 rounds exactly like this.
    total[0] += 1 << (2 * _INTER_BITS - 1)
    total[0] >>= 2 * _INTER_BITS
    return total[0].reshape(3, size, size)


@functools.lru_cache(maxsize=8)
def _warp_taps(width: int, height: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """For each output value (channel, y, x) its four bilinear neighbours: source byte offsets and weights.

    ``indices`` ``(4, 3*size*size)`` into the image's flat bytes (one-byte gathers are twice as fast as
    gathering 3-byte pixels), channel-first, taps in the order (top-left, top-right, bottom-left, bottom-right);
    ``weights`` the same shape, int32 out of 32*32; a neighbour outside the image has weight 0 (the border value).
    Cached per geometry (1.5 MB for a 128 input): a folder of photos of one size, or a video, computes it once.
    """
    fixed_x, fixed_y = _warp_grid(width, height, size)  # (S, S) each, in 1/32 pixel
    indices, weights = [], []
    for dy in (0, 1):
        row = (fixed_y >> _INTER_BITS) + dy
        row_weight = _tap_weight(fixed_y, dy)
        for dx in (0, 1):
            col = (fixed_x >> _INTER_BITS) + dx
            weight = (row_weight * _tap_weight(fixed_x, dx)).astype(np.int32)
            weight *= (row >= 0) & (row < height) & (col >= 0) & (col < width)  # outside: the border value 0
            pixel = (np.clip(row, 0, height - 1) * width + np.clip(col, 0, width - 1)).ravel()  # (S*S,)
            indices.append((np.arange(3)[:, None] + pixel * 3).ravel().astype(np.intp))  # (3*S*S,) bytes
            weights.append(np.tile(weight.ravel(), 3))
    taps = np.stack(indices), np.stack(weights)
    for array in taps:
        array.setflags(write=False)
    return taps


def _tap_weight(fixed: np.ndarray, second: int) -> np.ndarray:
    """Bilinear weight out of 32 of the first (``second=0``) or second neighbour of 1/32-pixel coordinates."""
    fraction = fixed & (_INTER_TAB_SIZE - 1)
    return fraction if second else _INTER_TAB_SIZE - fraction


def _warp_grid(width: int, height: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Source x and y of each output pixel, ``(size, size)`` int64 in 1/32 pixel, exactly as OpenCV gets them.

    MediaPipe builds the matrix with ``cv::getPerspectiveTransform`` from the ROI's ``cv::boxPoints`` and
    ``warpPerspective`` inverts it; the inverse carries float noise of ~1e-16, and source points that fall
    exactly halfway between two 1/32 steps (for a 128 input: whenever the longer side is not a multiple of 4)
    round whichever way that noise says. Repeating OpenCV's arithmetic step for step makes those ties fall the same way
    (measured: matches OpenCV 4.14 bit for bit and MediaPipe 0.10.21's detections to 3e-7, where rounding
    the exact points misses them by up to 3.5e-3).
    """
    # The ROI is the side x side square centred on the image; cv::boxPoints lists its corners (float32)
    # bottom-left, top-left, top-right, bottom-right, and MediaPipe sends them to the output's corners.
    half = np.float32(max(width, height)) * np.float32(0.5)
    cx, cy = np.float32(width) * np.float32(0.5), np.float32(height) * np.float32(0.5)
    src = [(cx - half, cy + half), (cx - half, cy - half), (cx + half, cy - half), (cx + half, cy + half)]
    dst = [(0.0, size), (0.0, 0.0), (size, 0.0), (size, size)]
    m = _invert_3x3(_perspective_transform(src, dst))
    # warpPerspective works in tiles bw columns wide; within a row of a tile it adds m*x1 to the tile's start.
    bh = min(16, size)
    bw = min(1024 // bh, size)
    x = np.arange(size)
    start = (x // bw * bw).astype(np.float64)
    x1 = (x % bw).astype(np.float64)
    y = np.arange(size, dtype=np.float64)[:, None]
    x0 = m[0] * start + m[1] * y + m[2]  # (S, S), same operation order as OpenCV
    y0 = m[3] * start + m[4] * y + m[5]
    w = m[6] * start + m[7] * y + m[8] + m[6] * x1
    with np.errstate(divide="ignore"):
        w = np.where(w != 0, _INTER_TAB_SIZE / w, 0.0)
    limit = float(np.iinfo(np.int32).max)
    fixed_x = np.rint(np.clip((x0 + m[0] * x1) * w, -limit, limit)).astype(np.int64)  # cvRound: half to even
    fixed_y = np.rint(np.clip((y0 + m[3] * x1) * w, -limit, limit)).astype(np.int64)
    return fixed_x, fixed_y


def _perspective_transform(src: list, dst: list) -> list[float]:
    """``cv::getPerspectiveTransform``: the 8x8 system solved by OpenCV's LU with partial pivoting (float64).

    Returns the 3x3 matrix row-major, ``m[8] = 1``. Products of two coordinates are float32, as in OpenCV.
    """
    a = [[0.0] * 8 for _ in range(8)]
    b = [0.0] * 8
    for i, ((sx, sy), (dx, dy)) in enumerate(zip(src, dst)):
        sx, sy, dx, dy = (np.float32(v) for v in (sx, sy, dx, dy))
        a[i][0:3] = a[i + 4][3:6] = [float(sx), float(sy), 1.0]
        a[i][6:8] = [float(-sx * dx), float(-sy * dx)]
        a[i + 4][6:8] = [float(-sx * dy), float(-sy * dy)]
        b[i], b[i + 4] = float(dx), float(dy)
    for i in range(8):  # LUImpl in OpenCV's matrix_decomp.cpp
        pivot = max(range(i, 8), key=lambda r: (abs(a[r][i]), -r))
        a[i], a[pivot] = a[pivot], a[i]
        b[i], b[pivot] = b[pivot], b[i]
        d = -1.0 / a[i][i]
        for j in range(i + 1, 8):
            alpha = a[j][i] * d
            for k in range(i + 1, 8):
                a[j][k] += alpha * a[i][k]
            b[j] += alpha * b[i]
    for i in range(7, -1, -1):
        total = b[i]
        for k in range(i + 1, 8):
            total -= a[i][k] * b[k]
        b[i] = total / a[i][i]
    return b + [1.0]


def _invert_3x3(m: list[float]) -> list[float]:
    """``cv::invert`` of a 3x3 float64 matrix (row-major): OpenCV's closed form with the determinant."""
    def e(r: int, c: int) -> float:
        return m[3 * r + c]

    det = e(0, 0) * (e(1, 1) * e(2, 2) - e(1, 2) * e(2, 1)) - e(0, 1) * (e(1, 0) * e(2, 2) - e(1, 2) * e(2, 0))
    det += e(0, 2) * (e(1, 0) * e(2, 1) - e(1, 1) * e(2, 0))
    d = 1.0 / det
    return [
        (e(1, 1) * e(2, 2) - e(1, 2) * e(2, 1)) * d,
        (e(0, 2) * e(2, 1) - e(0, 1) * e(2, 2)) * d,
        (e(0, 1) * e(1, 2) - e(0, 2) * e(1, 1)) * d,
        (e(1, 2) * e(2, 0) - e(1, 0) * e(2, 2)) * d,
        (e(0, 0) * e(2, 2) - e(0, 2) * e(2, 0)) * d,
        (e(0, 2) * e(1, 0) - e(0, 0) * e(1, 2)) * d,
        (e(1, 0) * e(2, 1) - e(1, 1) * e(2, 0)) * d,
        (e(0, 1) * e(2, 0) - e(0, 0) * e(2, 1)) * d,
        (e(0, 0) * e(1, 1) - e(0, 1) * e(1, 0)) * d,
    ]


def remove_letterbox(boxes: np.ndarray, keypoints: np.ndarray, box: Letterbox) -> tuple[np.ndarray, np.ndarray]:
    """Map model-input coordinates back to the original image, as ``DetectionLetterboxRemovalCalculator``.

    ``boxes``: ``(M, 4)`` ``(xmin, ymin, xmax, ymax)``; ``keypoints``: ``(M, K, 2)`` ``(x, y)``; both in 0..1 of
    the model input. Returns the same shapes in 0..1 of the original image's width and height.
    """
    left, top, right, bottom = box.padding
    origin = np.array([left, top], np.float32)
    scale = np.array([1.0 - left - right, 1.0 - top - bottom], np.float32)
    boxes = np.asarray(boxes, np.float32)
    keypoints = np.asarray(keypoints, np.float32)
    corners = (boxes.reshape(-1, 2, 2) - origin) / scale  # (M, 4) -> (M, 2 corners, 2)
    return corners.reshape(boxes.shape), (keypoints - origin) / scale


# ---------------------------------------------------------------------------------- decoding and NMS


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
    clipped = np.minimum(np.maximum(logits, np.float32(-_SCORE_CLIPPING)), np.float32(_SCORE_CLIPPING))
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
    raw = np.asarray(raw_boxes, np.float32)
    scores = _scores(np.asarray(logits, np.float32).reshape(-1))
    anchors = np.asarray(anchors, np.float32)
    if raw.ndim != 2 or raw.shape[1] < 4 or raw.shape[1] % 2 or anchors.shape != (len(raw), 4) or scores.shape != (len(raw),):
        decode(raw, logits, anchors, input_size)  # raises the OptionsError that names the shapes
    keep = np.flatnonzero(scores >= np.float32(min_score))
    if not len(keep):  # no face: most frames of a video, most anchors always
        pairs = (raw.shape[1] - 4) // 2
        return np.zeros((0, 4), np.float32), np.zeros((0, pairs, 2), np.float32), np.zeros(0, np.float32)
    boxes, keypoints = _decode_boxes(raw[keep], anchors[keep], input_size)  # only the kept rows
    sized = np.flatnonzero((boxes[:, 2] - boxes[:, 0] >= 0) & (boxes[:, 3] - boxes[:, 1] >= 0))
    return weighted_nms(boxes[sized], keypoints[sized], scores[keep][sized], iou_threshold)


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


# ------------------------------------------------------------------------------------------ records


class Point(NamedTuple):
    """A keypoint ``(x, y)``: in 0..1 of the image's width and height (pixels after ``to_pixels``)."""

    x: float
    y: float


class Box(NamedTuple):
    """A box ``(xmin, ymin, xmax, ymax)``: in 0..1 of the image's width and height (pixels after ``to_pixels``)."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float


class Keypoints(namedtuple("_KeypointTuple", KEYPOINT_NAMES)):
    """The 6 keypoints, a tuple of ``Point`` in ``KEYPOINT_NAMES`` order, also addressable by name.

    ``k.right_eye``, ``k["nose_tip"]``, ``k[0]``, ``for point in k``, ``len(k) == 6``; equal to a plain tuple of
    ``(x, y)`` pairs with the same numbers. Sides are the subject's (the right eye is on the image's left).
    """

    __slots__ = ()

    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in self._fields:
                raise KeyError(f"no keypoint {key!r}; known: {', '.join(self._fields)}")
            return getattr(self, key)
        return super().__getitem__(key)


@dataclass(frozen=True)
class Detection:
    """One face, coordinates in 0..1 of the original image's width (x) and height (y).

    ``score``: MediaPipe's face score in 0..1; ``box``: a ``Box`` ``(xmin, ymin, xmax, ymax)``; ``keypoints``:
    ``Keypoints``, 6 ``Point`` ``(x, y)`` (right eye, left eye, nose tip, mouth centre, right ear tragion, left ear
    tragion; the subject's sides). Plain tuples given to the constructor are converted; numbers become ``float``.
    """

    score: float
    box: Box
    keypoints: Keypoints

    def __post_init__(self) -> None:
        points = tuple(Point(float(x), float(y)) for x, y in self.keypoints)
        if len(points) != len(KEYPOINT_NAMES):
            raise ValueError(f"a Detection has {len(KEYPOINT_NAMES)} keypoints, got {len(points)}")
        object.__setattr__(self, "score", float(self.score))
        object.__setattr__(self, "box", Box(*(float(v) for v in self.box)))
        object.__setattr__(self, "keypoints", Keypoints(*points))

    def to_pixels(self, width: float, height: float) -> Detection:
        """The same detection with x multiplied by ``width`` and y by ``height`` (the image's size in pixels)."""
        xmin, ymin, xmax, ymax = self.box
        return Detection(
            self.score,
            (xmin * width, ymin * height, xmax * width, ymax * height),
            tuple((x * width, y * height) for x, y in self.keypoints),
        )

    def to_dict(self) -> dict:
        """``{"score", "box": [xmin, ymin, xmax, ymax], "keypoints": [[x, y] x 6]}``: one entry of ``detect --json``."""
        return {"score": self.score, "box": list(self.box), "keypoints": [list(point) for point in self.keypoints]}


# ------------------------------------------------------------------------------------------ pipeline


Model = Any
"""A runner (``run(batch)`` on numpy, see the module docstring), a torch module, or a callable on torch tensors."""


@functools.lru_cache(maxsize=8)
def _anchors(options: AnchorOptions) -> np.ndarray:
    anchors = generate_anchors(options)
    anchors.setflags(write=False)
    return anchors


def check_thresholds(min_score: float | None, iou_threshold: float) -> None:
    """``OptionsError`` unless ``min_score`` (None: the variant's) and ``iou_threshold`` are numbers in [0, 1]."""
    for name, value in (("min_score", min_score), ("iou_threshold", iou_threshold)):
        if value is None and name == "min_score":
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise OptionsError(f"{name} must be a number in [0, 1], got {value!r}") from None
        if not 0.0 <= number <= 1.0:  # NaN fails this too
            raise OptionsError(f"{name} must be in [0, 1], got {value!r}")


def as_runner(model: Model) -> Any:
    """``model`` itself when it has ``run`` (a runner), else a ``model.TorchRunner`` around it (imports torch)."""
    if callable(getattr(model, "run", None)):
        return model
    from .model import TorchRunner

    return TorchRunner(model)


def _resolve_variant(runner: Any, variant: Variant | str | None) -> Variant:
    """``variant`` if given (it must fit the runner's architecture when the runner knows its own), else the runner's."""
    known = getattr(runner, "variant", None)
    known = get_variant(known) if isinstance(known, str) else known
    if variant is None:
        if known is None:
            raise OptionsError("the model does not know which variant it is: pass variant= (a name or a Variant)")
        return known
    chosen = get_variant(variant) if isinstance(variant, str) else variant
    if known is not None and known.architecture != chosen.architecture:
        raise OptionsError(
            f"variant {chosen.name!r} is a {chosen.architecture} model, the model is {known.name!r} ({known.architecture})"
        )
    return chosen


def _setup(model, variant, min_score, iou_threshold, batch_size):
    """The runner, variant and thresholds of one call, every option checked before any work."""
    check_thresholds(min_score, iou_threshold)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise OptionsError(f"batch_size must be a positive integer, got {batch_size!r}")
    runner = as_runner(model)
    variant = _resolve_variant(runner, variant)
    min_score = variant.min_score if min_score is None else float(min_score)
    return runner, variant, min_score, float(iou_threshold)


def detect_images(
    model: Model,
    images: Sequence[Any],
    variant: Variant | str | None = None,
    min_score: float | None = None,
    iou_threshold: float = NMS_IOU_THRESHOLD,
    batch_size: int = 32,
    channels: str = "rgb",
) -> list[list[Detection]]:
    """Detect faces in each image: letterbox, run the model in batches, decode, weighted NMS, undo the letterbox.

    ``model``: a runner, or a torch module / callable taking ``(B, 3, S, S)`` float32 RGB in [-1, 1] (cast to the
    module's dtype and device) and returning ``(regressors (B, N, 16), classificators (B, N, 1))`` raw values.
    ``images``: anything ``as_rgb`` takes (paths, bytes, Pillow images, uint8 arrays and tensors; ``channels`` for
    arrays and tensors). ``variant``: a ``Variant`` or its name (input size, anchors, default ``min_score``); None:
    the model's own ``variant``. Detections with score >= ``min_score`` are kept, as MediaPipe does; each image's
    list is in descending score order. Thresholds outside [0, 1] or NaN: ``OptionsError``.
    """
    runner, variant, min_score, iou_threshold = _setup(model, variant, min_score, iou_threshold, batch_size)
    images = list(images)
    results: list[list[Detection]] = []
    for start in range(0, len(images), batch_size):
        arrays = [as_rgb(i, channels) for i in images[start : start + batch_size]]
        prepared = [letterbox(a, variant.input_size) for a in arrays]
        results += _detect_prepared(runner, prepared, variant, min_score, iou_threshold)
    return results


def detect_files(
    model: Model,
    paths: Sequence[str | Path],
    variant: Variant | str | None = None,
    min_score: float | None = None,
    iou_threshold: float = NMS_IOU_THRESHOLD,
    batch_size: int = 32,
    workers: int | None = None,
    model_threads: int | None = 1,
) -> Iterator[tuple[Path, np.ndarray | ImageError, list[Detection] | None]]:
    """``detect_images`` for many files, streamed: yields ``(path, image, detections)`` in the order of ``paths``.

    Options are checked at the call (``OptionsError``); the files are read as the iterator is consumed.
    ``workers`` threads (default: one per CPU core) decode and letterbox the next images while the model runs
    (Pillow and numpy release the GIL), at most two batches ahead, so memory stays bounded however many files
    there are. A file that cannot be read yields ``(path, ImageError, None)`` and the run goes on.

    For a torch model, torch uses ``model_threads`` intra-op threads while the iterator computes (None: leave the
    setting alone), and the caller's own setting again whenever the caller's code runs (between items, after the
    end): the loaders already keep the cores busy, and OpenMP threads that spin beside them slow everything down
    (measured on 2 cores, short_range: 13 images/s with 2 torch threads, 63 with 1).
    """
    import os

    runner, variant, min_score, iou_threshold = _setup(model, variant, min_score, iou_threshold, batch_size)
    workers = workers or os.cpu_count() or 1
    threads = model_threads if getattr(runner, "uses_torch", False) else None

    def prepare(path: Path):
        try:
            image = load_image(path)
        except ImageError as exc:
            return exc, None
        return image, letterbox(image, variant.input_size)

    stream = _stream(runner, [Path(p) for p in paths], prepare, variant, min_score, iou_threshold, batch_size, workers)
    return _with_model_threads(stream, threads)


def _with_model_threads(stream: Iterator, threads: int | None) -> Iterator:
    """Yield ``stream``'s items; torch has ``threads`` threads while ``stream`` computes, the caller's otherwise."""
    try:
        while True:
            with _torch_threads(threads):
                try:
                    item = next(stream)
                except StopIteration:
                    return
            yield item
    finally:
        stream.close()


class _torch_threads:
    """Context: torch's intra-op thread count is ``count`` inside (None: untouched), what it was outside."""

    def __init__(self, count: int | None):
        self.count, self.before = count, None

    def __enter__(self):
        if self.count is not None:
            import torch

            self.before = torch.get_num_threads()
            if self.before != self.count:
                torch.set_num_threads(self.count)

    def __exit__(self, *exc):
        if self.before is not None and self.before != self.count:
            import torch

            torch.set_num_threads(self.before)
        return False


def _stream(runner, paths, prepare, variant, min_score, iou_threshold, batch_size, workers):
    """``detect_files``' loop: the loaders stay up to two batches ahead of the model."""
    import collections
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="blazeconv-load") as pool:
        pending: collections.deque = collections.deque()
        upcoming = iter(paths)
        for path in itertools.islice(upcoming, 2 * batch_size):
            pending.append((path, pool.submit(prepare, path)))
        while pending:
            batch = [pending.popleft() for _ in range(min(batch_size, len(pending)))]
            for path in itertools.islice(upcoming, len(batch)):
                pending.append((path, pool.submit(prepare, path)))
            loaded = [(path, *future.result()) for path, future in batch]
            readable = [(image, prepared) for _, image, prepared in loaded if prepared is not None]
            found = iter(_detect_prepared(runner, [p for _, p in readable], variant, min_score, iou_threshold))
            for path, image, prepared in loaded:
                yield path, image, (next(found) if prepared is not None else None)


def _detect_prepared(
    runner: Any,
    prepared: Sequence[tuple[np.ndarray, Letterbox]],
    variant: Variant,
    min_score: float,
    iou_threshold: float,
) -> list[list[Detection]]:
    """Run one batch of letterboxed ``(3, S, S)`` tensors through ``runner`` and post-process each image."""
    if not prepared:
        return []
    anchors = _anchors(variant.anchor_options)
    tensors, boxes = zip(*prepared)
    regressors, classificators = runner.run(np.stack(tensors))  # (B, 3, S, S) float32 -> (B, N, 16), (B, N, 1)
    regressors = np.asarray(regressors, np.float32)
    classificators = np.asarray(classificators, np.float32)
    expected = (len(tensors), len(anchors))
    if regressors.shape[:2] != expected or classificators.shape[:2] != expected:
        raise OptionsError(
            f"model outputs {regressors.shape} and {classificators.shape} do not fit variant {variant.name!r} "
            f"({len(anchors)} anchors, batch {len(tensors)})"
        )
    return [
        _detections_from_outputs(raw, logits, anchors, variant.input_size, box, min_score, iou_threshold)
        for raw, logits, box in zip(regressors, classificators, boxes)
    ]


def detect_image(
    model: Model,
    image: Any,
    variant: Variant | str | None = None,
    min_score: float | None = None,
    iou_threshold: float = NMS_IOU_THRESHOLD,
    channels: str = "rgb",
) -> list[Detection]:
    """``detect_images`` for one image (anything ``as_rgb`` takes: a path, ``(H, W, 3)`` uint8 RGB, ...)."""
    return detect_images(model, [image], variant, min_score, iou_threshold, channels=channels)[0]


def _detections_from_outputs(
    raw: np.ndarray,
    logits: np.ndarray,
    anchors: np.ndarray,
    input_size: int,
    box: Letterbox,
    min_score: float,
    iou_threshold: float,
) -> list[Detection]:
    """One image's ``(N, 16)`` and ``(N, 1)`` raw outputs to its final detections."""
    boxes, keypoints, scores = decode_and_suppress(raw, logits, anchors, input_size, min_score, iou_threshold)
    boxes, keypoints = remove_letterbox(boxes, keypoints, box)
    return [Detection(s, b, k.tolist()) for s, b, k in zip(scores.tolist(), boxes.tolist(), keypoints)]


# -------------------------------------------------------------------------------------------- output


def detections_to_json(path: str | Path, width: int, height: int, detections: Sequence[Detection]) -> dict:
    """One image's result as a JSON-ready dict.

    ``{"path", "width", "height", "detections": [Detection.to_dict(), ...]}``: each ``{"score", "box": [xmin, ymin,
    xmax, ymax], "keypoints": [[x, y] x 6]}``, coordinates in 0..1 of the image's width and height.
    """
    return {"path": str(path), "width": int(width), "height": int(height), "detections": [d.to_dict() for d in detections]}


_BOX_COLOUR = (0, 220, 0)
# One colour per keypoint, in KEYPOINT_NAMES order.
_KEYPOINT_COLOURS = ((255, 60, 60), (60, 120, 255), (255, 220, 0), (255, 0, 255), (255, 140, 0), (0, 220, 255))


def annotate(image: np.ndarray | Image.Image, detections: Sequence[Detection]) -> Image.Image:
    """A copy of ``image`` (``(H, W, 3)`` uint8 RGB or a Pillow image) with each detection drawn on it.

    Box outline, the keypoints as dots (colours in ``KEYPOINT_NAMES`` order) and the score above the box;
    line width and font size scale with the image so they stay readable on small and large images.
    """
    canvas = image.convert("RGB") if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, np.uint8))
    width, height = canvas.size
    draw = ImageDraw.Draw(canvas)
    line = max(1, round(min(width, height) / 250))
    radius = max(1.5, line * 2)
    font = _font(max(9, round(min(width, height) / 32)))
    for detection in detections:
        xmin, ymin, xmax, ymax = detection.box
        rectangle = (xmin * width, ymin * height, xmax * width, ymax * height)
        draw.rectangle(rectangle, outline=_BOX_COLOUR, width=line)
        for (x, y), colour in zip(detection.keypoints, itertools.cycle(_KEYPOINT_COLOURS)):
            cx, cy = x * width, y * height
            draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour, outline=(0, 0, 0))
        label = f"{detection.score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        label_width, label_height = right - left + 2 * line, bottom - top + 2 * line
        # Above the box's top-left corner when there is room, else just inside it; always within the image.
        text_y = rectangle[1] - label_height - line if rectangle[1] - label_height - line >= 0 else rectangle[1] + line
        text_x = min(max(rectangle[0], 0), max(width - label_width, 0))
        text_y = min(max(text_y, 0), max(height - label_height, 0))
        draw.rectangle((text_x, text_y, text_x + label_width, text_y + label_height), fill=_BOX_COLOUR)
        draw.text((text_x + line - left, text_y + line - top), label, fill=(0, 0, 0), font=font)
    return canvas


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()
