"""The plain numpy kernels the Core ML evaluator's ML program ops and neural network layers share.

No registry and no protobuf here: array functions only. Conventions: spatial kernels work on the last two axes,
channel first (``(B, C, H, W)`` for convolution, ``(..., H, W)`` for pooling and resampling, ``(..., C, H, W)``
for the depth/space rearrangements); 2-D padding is ``(top, bottom, left, right)``. float16 arguments are widened
exactly to float32 (``wide``) and computed in float32 where a kernel says so; rounding a result to the dtype a model
declares is the caller's. A malformed argument is an ``EvaluationError``, a case the evaluator does not model an
``UnsupportedOperationError``.
"""

from __future__ import annotations

import math

import numpy as np

from .base import EvaluationError, UnsupportedOperationError


def wide(array: np.ndarray) -> np.ndarray:
    """float16 -> float32 (exact); anything else unchanged: the precision every operation computes in."""
    array = np.asarray(array)
    return array.astype(np.float32) if array.dtype == np.float16 else array

def convolve(x: np.ndarray, weight: np.ndarray, bias, strides, dilations, groups: int, pads) -> np.ndarray:
    """2-D convolution (cross-correlation) of ``x (B, C, H, W)`` with ``weight (O, C/groups, kH, kW)``.

    ``pads``: ``(top, bottom, left, right)`` zeros. Computed in float32 as a sum over kernel taps of strided views.
    """
    x = wide(x).astype(np.float32, copy=False)
    weight = wide(weight).astype(np.float32, copy=False)
    top, bottom, left, right = pads
    x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    batch, channels, height, width = x.shape
    out_channels, group_channels, kernel_h, kernel_w = weight.shape
    if channels != group_channels * groups or out_channels % groups:
        raise EvaluationError(f"convolution of {channels} channels with weights {weight.shape} in {groups} groups")
    (stride_h, stride_w), (dilation_h, dilation_w) = strides, dilations
    out_h = (height - dilation_h * (kernel_h - 1) - 1) // stride_h + 1
    out_w = (width - dilation_w * (kernel_w - 1) - 1) // stride_w + 1
    out_per_group = out_channels // groups
    x = x.reshape(batch, groups, group_channels, height, width)
    w = weight.reshape(groups, out_per_group, group_channels, kernel_h, kernel_w)
    result = np.zeros((batch, groups, out_per_group, out_h, out_w), np.float32)
    for i in range(kernel_h):
        for j in range(kernel_w):
            top_i, left_j = i * dilation_h, j * dilation_w
            tap = x[:, :, :, top_i : top_i + stride_h * (out_h - 1) + 1 : stride_h,
                    left_j : left_j + stride_w * (out_w - 1) + 1 : stride_w]  # (B, G, Cg, oH, oW)
            if group_channels == 1 and out_per_group == 1:  # depthwise: a per-channel scale
                result += tap * w[None, :, :, :, i, j, None, None].reshape(1, groups, 1, 1, 1)
            else:
                result += np.einsum("bgchw,goc->bgohw", tap, w[:, :, :, i, j], optimize=True)
    result = result.reshape(batch, out_channels, out_h, out_w)
    if bias is not None:
        result += wide(bias).astype(np.float32).reshape(1, -1, 1, 1)
    return result


def max_pool(x: np.ndarray, kernel, strides, pads) -> np.ndarray:
    """Max pooling over the last two axes, ``pads`` ``(top, bottom, left, right)`` of -inf."""
    x = wide(x)
    top, bottom, left, right = pads
    pad_width = [(0, 0)] * (x.ndim - 2) + [(top, bottom), (left, right)]
    x = np.pad(x, pad_width, constant_values=-np.inf)
    height, width = x.shape[-2:]
    (kernel_h, kernel_w), (stride_h, stride_w) = kernel, strides
    out_h, out_w = (height - kernel_h) // stride_h + 1, (width - kernel_w) // stride_w + 1
    result = None
    for i in range(kernel_h):
        for j in range(kernel_w):
            tap = x[..., i : i + stride_h * (out_h - 1) + 1 : stride_h, j : j + stride_w * (out_w - 1) + 1 : stride_w]
            result = tap if result is None else np.maximum(result, tap)
    return result


def same_pads(size: int, kernel: int, stride: int, dilation: int, extra_first: bool) -> tuple[int, int]:
    """``(before, after)`` padding for ``same`` output size ceil(size / stride)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    small, large = total // 2, total - total // 2
    return (large, small) if extra_first else (small, large)


def strided_slice(x: np.ndarray, begin, end, strides, begin_mask, end_mask, squeeze_mask) -> np.ndarray:
    """Strided slice per axis with masks (MIL ``slice_by_index``, NN ``sliceStatic``): negative indices count
    from the end; a set begin/end mask ignores that bound; a squeeze mask takes the single element at begin."""
    index: list = []
    for axis in range(x.ndim):
        if squeeze_mask[axis]:
            position = int(begin[axis])
            if not -x.shape[axis] <= position < x.shape[axis]:
                raise EvaluationError(f"slice index {position} out of range for axis {axis} of shape {x.shape}")
            index.append(position)
            continue
        start = None if begin_mask[axis] else int(begin[axis])
        stop = None if end_mask[axis] else int(end[axis])
        index.append(slice(start, stop, int(strides[axis])))
    return x[tuple(index)]


def expand_dims(x: np.ndarray, axes) -> np.ndarray:
    """``x`` with a new axis of size 1 at each of ``axes`` (positions in the result; negative count from its end)."""
    rank = x.ndim + len(axes)
    for axis in sorted(int(a) + rank if int(a) < 0 else int(a) for a in axes):
        x = np.expand_dims(x, axis)
    return x


def reshape(x: np.ndarray, shape) -> np.ndarray:
    """``x`` reshaped to ``shape`` (-1 inferred); 0, copying a dimension, is refused."""
    shape = [int(s) for s in shape]
    if 0 in shape:
        raise UnsupportedOperationError(f"reshape to {shape}: 0 (copy a dimension) is not supported by the evaluator")
    return x.reshape(shape)


def gather(x: np.ndarray, indices: np.ndarray, axis: int) -> np.ndarray:
    """``np.take`` along ``axis``: float indices must be whole numbers; one out of range is an ``EvaluationError``."""
    indices = np.asarray(indices)
    if indices.dtype.kind == "f":
        if not np.all(indices == np.round(indices)):
            raise EvaluationError(f"gather indices {indices} are not integers")
        indices = indices.astype(np.int64)
    try:
        return np.take(x, indices, axis=axis)
    except IndexError as exc:
        raise EvaluationError(f"gather: {exc}") from None


# Sampling grids of bilinear upsampling, as Core ML documents them (MIL ``upsample_bilinear``, NN
# ``UpsampleLayerParams.LinearUpsampleMode``): input positions 0..Xin-1, output size Xout, then
# ``grid_point[i] = min(Xin - 1, max(0, i * spacing + offset))``.
def grid_align_corners(size_in: int, size_out: int) -> np.ndarray:
    """``align_corners=True`` / ALIGN_CORNERS_TRUE: spacing ``(Xin - 1) / (Xout - 1)``, the corners map onto each other."""
    spacing = (size_in - 1) / (size_out - 1) if size_out > 1 else 0.0
    return np.arange(size_out) * spacing


def grid_half_pixel(size_in: int, size_out: int) -> np.ndarray:
    """``align_corners=False`` / ALIGN_CORNERS_FALSE: spacing ``Xin / Xout``, offset ``0.5 * spacing - 0.5``: pixel
    centres (TensorFlow ``half_pixel_centers``, PyTorch ``align_corners=False``)."""
    spacing = size_in / size_out
    return np.arange(size_out) * spacing + 0.5 * spacing - 0.5


def grid_nn_default(size_in: int, size_out: int) -> np.ndarray:
    """NN ``UpsampleLayerParams`` DEFAULT: spacing ``(Xin - Xin / Xout) / (Xout - 1)``."""
    spacing = (size_in - size_in / size_out) / (size_out - 1) if size_out > 1 else 0.0
    return np.arange(size_out) * spacing


def _linear_taps(grid: np.ndarray, size_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(low, high, fraction)`` of linear interpolation at ``grid`` clamped to ``0..size_in - 1``."""
    grid = np.clip(grid, 0.0, size_in - 1)
    low = np.floor(grid).astype(np.int64)
    high = np.minimum(low + 1, size_in - 1)
    return low, high, (grid - low).astype(np.float32)


def bilinear(x: np.ndarray, grid_h: np.ndarray, grid_w: np.ndarray) -> np.ndarray:
    """``x (..., H, W)`` sampled at rows ``grid_h`` and columns ``grid_w`` (separable linear interpolation, float32)."""
    x = wide(x).astype(np.float32, copy=False)
    low, high, t = _linear_taps(grid_h, x.shape[-2])
    x = x[..., low, :] * (1 - t)[:, None] + x[..., high, :] * t[:, None]
    low, high, t = _linear_taps(grid_w, x.shape[-1])
    return x[..., low] * (1 - t) + x[..., high] * t


def scaled_size(size: int, factor, where: str) -> int:
    """``floor(size * factor)``, at least 1."""
    out = math.floor(size * float(factor))
    if out < 1:
        raise EvaluationError(f"{where}: scale factor {factor} leaves no pixels of {size}")
    return out


def pixel_shuffle(x: np.ndarray, block: int) -> np.ndarray:
    """PyTorch ``pixel_shuffle`` on the last three axes: ``out[c, h*b + i, w*b + j] = in[c*b*b + i*b + j, h, w]``."""
    *lead, channels, height, width = x.shape
    if block < 1 or channels % (block * block):
        raise EvaluationError(f"pixel shuffle of {channels} channels by block {block}")
    y = x.reshape(*lead, channels // (block * block), block, block, height, width)
    n = len(lead)
    y = y.transpose(*range(n), n, n + 3, n + 1, n + 4, n + 2)  # (..., C, H, i, W, j)
    return y.reshape(*lead, channels // (block * block), height * block, width * block)


def depth_to_space(x: np.ndarray, block: int) -> np.ndarray:
    """TensorFlow ``depth_to_space`` (DCR) on the last three axes: ``out[c, h*b + i, w*b + j] = in[(i*b + j)*C + c, h, w]``."""
    *lead, channels, height, width = x.shape
    if block < 1 or channels % (block * block):
        raise EvaluationError(f"depth to space of {channels} channels by block {block}")
    depth = channels // (block * block)
    y = x.reshape(*lead, block, block, depth, height, width)
    n = len(lead)
    y = y.transpose(*range(n), n + 2, n + 3, n, n + 4, n + 1)  # (..., C, H, i, W, j)
    return y.reshape(*lead, depth, height * block, width * block)


def space_to_depth(x: np.ndarray, block: int) -> np.ndarray:
    """The inverse of ``depth_to_space``: ``out[(i*b + j)*C + c, h, w] = in[c, h*b + i, w*b + j]``."""
    *lead, channels, height, width = x.shape
    if block < 1 or height % block or width % block:
        raise EvaluationError(f"space to depth of {height}x{width} by block {block}")
    y = x.reshape(*lead, channels, height // block, block, width // block, block)
    n = len(lead)
    y = y.transpose(*range(n), n + 2, n + 4, n, n + 1, n + 3)  # (..., i, j, C, H, W)
    return y.reshape(*lead, channels * block * block, height // block, width // block)


def divide(x, y):
    """Elementwise ``x / y`` without warnings: division by zero gives inf or nan, as IEEE arithmetic does."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.divide(x, y)


def sigmoid(x):
    """Elementwise ``1 / (1 + exp(-x))`` in the widened dtype (float16 computes in float32); overflow gives 0."""
    x = wide(x)
    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + np.exp(-x))).astype(x.dtype)
