"""MediaPipe's letterbox (ImageToTensorCalculator) and its removal (DetectionLetterboxRemovalCalculator)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..errors import OptionsError
from .images import _check_rgb

# OpenCV's warpPerspective quantises source coordinates to 1/32 pixel (INTER_BITS = 5) and, for 8-bit
# images, interpolates with integer weights that sum to 2**15 (INTER_REMAP_COEF_BITS = 15).
_INTER_BITS = 5
_INTER_TAB_SIZE = 1 << _INTER_BITS

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
    round whichever way that noise says. Repeating OpenCV's arithmetic step for step makes those ties fall the same way:
    the warp equals OpenCV's bit for bit (tested), where rounding the exact points misses MediaPipe's detections.
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
