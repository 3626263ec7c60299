"""Evaluate a saved Core ML model with numpy, on any OS: every operation of it, none skipped.

Core ML itself runs only on Apple platforms. To know on Linux that a converted model computes the right thing,
this module reads the saved file's specification and executes it: an ML program operation by operation (the MIL
program as stored in the protobuf, weights read from the package's blob file), a neural network layer by layer,
Core ML's ``NonMaximumSuppression`` model by its documented semantics, and a pipeline model by model. An
operation, layer, model type or parameter it does not interpret is an ``UnsupportedOperationError`` — never a
silent pass.

Numerics: every operation computes in float32 (float16 inputs widen exactly) and its result is rounded to the
dtype the program declares for it. A float16 program is therefore evaluated with float16 values wherever the
program has them; elementwise results equal IEEE float16 arithmetic, convolutions and matrix products accumulate
in float32. Neural networks carry no precision of their own (the device chooses): they are evaluated in float32
with their weights as stored (float16 weights included).

Image inputs are given as ``(H, W, 3)`` uint8 RGB arrays of exactly the declared size; the evaluator lays them out
per the input's colour space and applies the preprocessing the model declares (a neural network's scaler; an ML
program does its own scaling in operations).
"""

from __future__ import annotations

import logging
import math
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ImageError, OptionsError, UnsupportedModelError

log = logging.getLogger(__name__)


class UnsupportedOperationError(UnsupportedModelError):
    """The model holds an operation, layer, model type or parameter the evaluator does not interpret."""


class EvaluationError(UnsupportedModelError):
    """The model is malformed as evaluated: an operation's result contradicts the type the model declares."""


@dataclass(frozen=True)
class Evaluation:
    """The result of evaluating a model.

    ``outputs``: the model's outputs by name, in the declared dtypes; ``features``: every feature of the evaluation
    (inputs as given, and for a pipeline the outputs of every stage); ``operations``: how many of each operation
    were evaluated, keyed ``"<kind>:<type>"`` (``mil:conv``, ``nn:convolution``, ``model:nonMaximumSuppression``).
    """

    outputs: dict[str, np.ndarray]
    features: dict[str, object] = field(repr=False)
    operations: dict[str, int]


def evaluate(model, inputs: dict[str, object]) -> Evaluation:
    """Evaluate ``model`` (a path to a ``.mlpackage`` / ``.mlmodel``, or a loaded ``coremltools`` MLModel).

    ``inputs``: image inputs as ``(H, W, 3)`` uint8 RGB arrays, multi-arrays as arrays, doubles as floats;
    optional inputs may be left out.
    """
    spec, data_dir = _load(model)
    counts: Counter[str] = Counter()
    features = dict(inputs)
    outputs = _evaluate_spec(spec, features, data_dir, counts)
    return Evaluation(outputs, features, dict(counts))


def _load(model):
    """``(spec, data_dir)``: the protobuf spec and the directory ``@model_path`` names (None for an .mlmodel)."""
    from .coreml import load_mlmodel

    if isinstance(model, (str, Path)):
        model = load_mlmodel(model)
    weights_dir = getattr(model, "weights_dir", None)
    data_dir = Path(weights_dir).parent if weights_dir else None
    return model.get_spec(), data_dir


def _evaluate_spec(spec, features: dict, data_dir: Path | None, counts: Counter) -> dict[str, np.ndarray]:
    kind = spec.WhichOneof("Type")
    counts[f"model:{kind}"] += 1
    if kind == "pipeline":
        for stage in spec.pipeline.models:
            features.update(_evaluate_spec(stage, features, data_dir, counts))
        return {o.name: features[o.name] for o in spec.description.output}
    runner = _MODEL_RUNNERS.get(kind)
    if runner is None:
        raise UnsupportedOperationError(f"model type '{kind}' is not supported by the evaluator")
    inputs = {d.name: _input_value(d, features) for d in spec.description.input}
    outputs = runner(spec, inputs, data_dir, counts)
    return {d.name: _output_value(d, outputs[d.name]) for d in spec.description.output}


# ----------------------------------------------------------------------------------- features


_ARRAY_DTYPES = {65568: np.float32, 65600: np.float64, 131104: np.int32, 65552: np.float16, 131080: np.int8}


def _input_value(description, features: dict):
    """The input ``description`` names, checked against its declared type; ``None`` for an absent optional one."""
    name, kind = description.name, description.type.WhichOneof("Type")
    if name not in features or features[name] is None:
        if description.type.isOptional:
            return None
        raise OptionsError(f"input '{name}' ({kind}) is required and was not given")
    value = features[name]
    if kind == "imageType":
        return _image_planes(name, description.type.imageType, value)
    if kind == "multiArrayType":
        array_type = description.type.multiArrayType
        array = np.asarray(value, _ARRAY_DTYPES.get(array_type.dataType, np.float32))
        shape = tuple(array_type.shape)
        if shape and array.shape != shape:
            raise OptionsError(f"input '{name}' has shape {array.shape}, the model declares {shape}")
        return array
    if kind == "doubleType":
        return float(value)
    if kind == "int64Type":
        return int(value)
    raise UnsupportedOperationError(f"input '{name}' of type {kind} is not supported by the evaluator")


def _image_planes(name: str, image_type, value) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB -> ``(3, H, W)`` float32 0..255 in the input's channel order (RGB or BGR)."""
    array = np.asarray(value)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ImageError(f"image input '{name}' must be an (H, W, 3) uint8 RGB array, got {array.dtype} {array.shape}")
    expected = (image_type.height, image_type.width)
    if array.shape[:2] != expected:
        raise ImageError(f"image input '{name}' must be {expected[1]}x{expected[0]}, got {array.shape[1]}x{array.shape[0]}")
    planes = array.transpose(2, 0, 1).astype(np.float32)  # (3, H, W) R, G, B
    colour = image_type.colorSpace
    if colour == 20:  # RGB
        return planes
    if colour == 30:  # BGR
        return planes[::-1].copy()
    raise UnsupportedOperationError(f"image input '{name}' has colour space {colour}; only RGB and BGR are supported")


def _output_value(description, value) -> np.ndarray:
    kind = description.type.WhichOneof("Type")
    if kind == "multiArrayType":
        dtype = _ARRAY_DTYPES.get(description.type.multiArrayType.dataType)
        if dtype is None:
            raise UnsupportedOperationError(f"output '{description.name}' has an unsupported array type")
        return np.asarray(value).astype(dtype)
    if kind == "doubleType":
        return np.asarray(value, np.float64)
    raise UnsupportedOperationError(f"output '{description.name}' of type {kind} is not supported by the evaluator")


def _registry(kind: str):
    """A name -> function registry whose decorator refuses a name registered twice."""
    table: dict[str, Callable] = {}

    def register(*names: str):
        def add(function):
            for name in names:
                if name in table:
                    raise RuntimeError(f"{kind} '{name}' registered twice")
                table[name] = function
            return function

        return add

    return table, register


def _wide(array: np.ndarray) -> np.ndarray:
    """float16 -> float32 (exact); anything else unchanged: the precision every operation computes in."""
    array = np.asarray(array)
    return array.astype(np.float32) if array.dtype == np.float16 else array


# --------------------------------------------------------------------------------- shared kernels


def _convolve(x: np.ndarray, weight: np.ndarray, bias, strides, dilations, groups: int, pads) -> np.ndarray:
    """2-D convolution (cross-correlation) of ``x (B, C, H, W)`` with ``weight (O, C/groups, kH, kW)``.

    ``pads``: ``(top, bottom, left, right)`` zeros. Computed in float32 as a sum over kernel taps of strided views.
    """
    x = _wide(x).astype(np.float32, copy=False)
    weight = _wide(weight).astype(np.float32, copy=False)
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
        result += _wide(bias).astype(np.float32).reshape(1, -1, 1, 1)
    return result


def _max_pool(x: np.ndarray, kernel, strides, pads) -> np.ndarray:
    """Max pooling over the last two axes, ``pads`` ``(top, bottom, left, right)`` of -inf."""
    x = _wide(x)
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


def _same_pads(size: int, kernel: int, stride: int, dilation: int, extra_first: bool) -> tuple[int, int]:
    """``(before, after)`` padding for ``same`` output size ceil(size / stride)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    small, large = total // 2, total - total // 2
    return (large, small) if extra_first else (small, large)


def _slice(x: np.ndarray, begin, end, strides, begin_mask, end_mask, squeeze_mask) -> np.ndarray:
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


def _expand_dims(x: np.ndarray, axes) -> np.ndarray:
    rank = x.ndim + len(axes)
    for axis in sorted(int(a) + rank if int(a) < 0 else int(a) for a in axes):
        x = np.expand_dims(x, axis)
    return x


def _reshape(x: np.ndarray, shape) -> np.ndarray:
    shape = [int(s) for s in shape]
    if 0 in shape:
        raise UnsupportedOperationError(f"reshape to {shape}: 0 (copy a dimension) is not supported by the evaluator")
    return x.reshape(shape)


def _gather(x: np.ndarray, indices: np.ndarray, axis: int) -> np.ndarray:
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
def _grid_align_corners(size_in: int, size_out: int) -> np.ndarray:
    """``align_corners=True`` / ALIGN_CORNERS_TRUE: spacing ``(Xin - 1) / (Xout - 1)``, the corners map onto each other."""
    spacing = (size_in - 1) / (size_out - 1) if size_out > 1 else 0.0
    return np.arange(size_out) * spacing


def _grid_half_pixel(size_in: int, size_out: int) -> np.ndarray:
    """``align_corners=False`` / ALIGN_CORNERS_FALSE: spacing ``Xin / Xout``, offset ``0.5 * spacing - 0.5``: pixel
    centres (TensorFlow ``half_pixel_centers``, PyTorch ``align_corners=False``)."""
    spacing = size_in / size_out
    return np.arange(size_out) * spacing + 0.5 * spacing - 0.5


def _grid_nn_default(size_in: int, size_out: int) -> np.ndarray:
    """NN ``UpsampleLayerParams`` DEFAULT: spacing ``(Xin - Xin / Xout) / (Xout - 1)``."""
    spacing = (size_in - size_in / size_out) / (size_out - 1) if size_out > 1 else 0.0
    return np.arange(size_out) * spacing


def _linear_taps(grid: np.ndarray, size_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(low, high, fraction)`` of linear interpolation at ``grid`` clamped to ``0..size_in - 1``."""
    grid = np.clip(grid, 0.0, size_in - 1)
    low = np.floor(grid).astype(np.int64)
    high = np.minimum(low + 1, size_in - 1)
    return low, high, (grid - low).astype(np.float32)


def _bilinear(x: np.ndarray, grid_h: np.ndarray, grid_w: np.ndarray) -> np.ndarray:
    """``x (..., H, W)`` sampled at rows ``grid_h`` and columns ``grid_w`` (separable linear interpolation, float32)."""
    x = _wide(x).astype(np.float32, copy=False)
    low, high, t = _linear_taps(grid_h, x.shape[-2])
    x = x[..., low, :] * (1 - t)[:, None] + x[..., high, :] * t[:, None]
    low, high, t = _linear_taps(grid_w, x.shape[-1])
    return x[..., low] * (1 - t) + x[..., high] * t


def _scaled_size(size: int, factor, where: str) -> int:
    """``floor(size * factor)``, at least 1."""
    out = math.floor(size * float(factor))
    if out < 1:
        raise EvaluationError(f"{where}: scale factor {factor} leaves no pixels of {size}")
    return out


def _pixel_shuffle(x: np.ndarray, block: int) -> np.ndarray:
    """PyTorch ``pixel_shuffle`` on the last three axes: ``out[c, h*b + i, w*b + j] = in[c*b*b + i*b + j, h, w]``."""
    *lead, channels, height, width = x.shape
    if block < 1 or channels % (block * block):
        raise EvaluationError(f"pixel shuffle of {channels} channels by block {block}")
    y = x.reshape(*lead, channels // (block * block), block, block, height, width)
    n = len(lead)
    y = y.transpose(*range(n), n, n + 3, n + 1, n + 4, n + 2)  # (..., C, H, i, W, j)
    return y.reshape(*lead, channels // (block * block), height * block, width * block)


def _depth_to_space(x: np.ndarray, block: int) -> np.ndarray:
    """TensorFlow ``depth_to_space`` (DCR) on the last three axes: ``out[c, h*b + i, w*b + j] = in[(i*b + j)*C + c, h, w]``."""
    *lead, channels, height, width = x.shape
    if block < 1 or channels % (block * block):
        raise EvaluationError(f"depth to space of {channels} channels by block {block}")
    depth = channels // (block * block)
    y = x.reshape(*lead, block, block, depth, height, width)
    n = len(lead)
    y = y.transpose(*range(n), n + 2, n + 3, n, n + 4, n + 1)  # (..., C, H, i, W, j)
    return y.reshape(*lead, depth, height * block, width * block)


def _space_to_depth(x: np.ndarray, block: int) -> np.ndarray:
    """The inverse of ``_depth_to_space``: ``out[(i*b + j)*C + c, h, w] = in[c, h*b + i, w*b + j]``."""
    *lead, channels, height, width = x.shape
    if block < 1 or height % block or width % block:
        raise EvaluationError(f"space to depth of {height}x{width} by block {block}")
    y = x.reshape(*lead, channels, height // block, block, width // block, block)
    n = len(lead)
    y = y.transpose(*range(n), n + 2, n + 4, n, n + 1, n + 3)  # (..., i, j, C, H, W)
    return y.reshape(*lead, channels * block * block, height // block, width // block)


def _divide(x, y):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.divide(x, y)


def _sigmoid(x):
    x = _wide(x)
    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + np.exp(-x))).astype(x.dtype)


# ------------------------------------------------------------------------------------ ML programs


_MIL_DTYPES = {
    1: np.bool_, 10: np.float16, 11: np.float32, 12: np.float64, 21: np.int8, 22: np.int16, 23: np.int32,
    24: np.int64, 31: np.uint8, 32: np.uint16, 33: np.uint32, 34: np.uint64,
}
_MIL_STRING = 2
_CAST_DTYPES = {
    "bool": np.bool_, "fp16": np.float16, "fp32": np.float32, "fp64": np.float64, "int8": np.int8,
    "uint8": np.uint8, "int16": np.int16, "uint16": np.uint16, "int32": np.int32, "int64": np.int64,
}
# MIL blob storage ("weight.bin"): a 64-byte header, then per blob 64 bytes of metadata
# (sentinel 0xDEADBEEF, data type, size in bytes, data offset) at the offset the program names.
_BLOB_SENTINEL = 0xDEADBEEF
_BLOB_DTYPES = {1: np.float16, 2: np.float32, 3: np.uint8, 4: np.int8, 6: np.int16, 7: np.uint16, 8: np.int32}


class _Blobs:
    """Reads constants out of an ML program's weight files, checking each blob's metadata against the program."""

    def __init__(self, data_dir: Path | None):
        self.data_dir = data_dir
        self.files: dict[str, bytes] = {}

    def read(self, file_name: str, offset: int, dtype, shape: tuple[int, ...]) -> np.ndarray:
        prefix = "@model_path/"
        if self.data_dir is None or not file_name.startswith(prefix):
            raise UnsupportedOperationError(f"weights in '{file_name}' cannot be located")
        if file_name not in self.files:
            path = self.data_dir / file_name[len(prefix):]
            try:
                self.files[file_name] = path.read_bytes()
            except OSError as exc:
                raise EvaluationError(f"{path}: cannot read weights ({exc.strerror})") from None
        blob = self.files[file_name]
        if offset + 24 > len(blob):
            raise EvaluationError(f"{file_name}: blob offset {offset} beyond the file's {len(blob)} bytes")
        sentinel, stored, size, data_offset = struct.unpack_from("<IIQQ", blob, offset)
        count = math.prod(shape)
        if sentinel != _BLOB_SENTINEL or _BLOB_DTYPES.get(stored) is not dtype:
            raise EvaluationError(f"{file_name}: blob at {offset} is not a {np.dtype(dtype).name} blob")
        if size != count * np.dtype(dtype).itemsize or data_offset + size > len(blob):
            raise EvaluationError(f"{file_name}: blob at {offset} holds {size} bytes, {shape} needs another size")
        return np.frombuffer(blob, dtype, count, data_offset).reshape(shape)


def _tensor_type(value_type) -> tuple[object, tuple[int | None, ...]]:
    """``(numpy dtype or 'string', shape with None for unknown dimensions)`` of a MIL ValueType."""
    which = value_type.WhichOneof("type")
    if which != "tensorType":
        raise UnsupportedOperationError(f"MIL value of type {which} is not supported by the evaluator")
    tensor = value_type.tensorType
    if tensor.dataType == _MIL_STRING:
        dtype = "string"
    elif tensor.dataType in _MIL_DTYPES:
        dtype = _MIL_DTYPES[tensor.dataType]
    else:
        raise UnsupportedOperationError(f"MIL data type {tensor.dataType} is not supported by the evaluator")
    shape = tuple(d.constant.size if d.WhichOneof("dimension") == "constant" else None for d in tensor.dimensions)
    return dtype, shape


def _mil_value(value, blobs: _Blobs):
    """A MIL ``Value`` (immediate or in a blob file) as a numpy array, or ``str`` for a string scalar."""
    dtype, shape = _tensor_type(value.type)
    if None in shape:
        raise UnsupportedOperationError("MIL constant with an unknown dimension")
    kind = value.WhichOneof("value")
    if kind == "blobFileValue":
        return blobs.read(value.blobFileValue.fileName, value.blobFileValue.offset, dtype, shape)
    if kind != "immediateValue" or value.immediateValue.WhichOneof("value") != "tensor":
        raise UnsupportedOperationError(f"MIL constant stored as {kind} is not supported by the evaluator")
    tensor = value.immediateValue.tensor
    which = tensor.WhichOneof("value")
    if which == "strings":
        strings = list(tensor.strings.values)
        return strings[0] if shape == () and len(strings) == 1 else np.array(strings, object).reshape(shape)
    if which == "bytes":
        data = np.frombuffer(tensor.bytes.values, dtype)
    elif which in ("floats", "ints", "bools", "longInts", "doubles"):
        data = np.array(getattr(tensor, which).values).astype(dtype)
    else:
        raise UnsupportedOperationError(f"MIL immediate tensor of kind {which} is not supported by the evaluator")
    if data.size != math.prod(shape):
        raise EvaluationError(f"MIL constant has {data.size} values for shape {shape}")
    return data.reshape(shape)


class _MilCall:
    """One operation's inputs, resolved; records which were read so none goes uninterpreted."""

    def __init__(self, op, env: dict, blobs: _Blobs):
        self.op = op
        self.env = env
        self.blobs = blobs
        self.unread = set(op.inputs)

    @property
    def name(self) -> str:
        return self.op.outputs[0].name if self.op.outputs else self.op.type

    def _bindings(self, key: str) -> list:
        self.unread.discard(key)
        values = []
        for binding in self.op.inputs[key].arguments:
            if binding.WhichOneof("binding") == "name":
                if binding.name not in self.env:
                    raise EvaluationError(f"op '{self.name}' reads '{binding.name}' before it is computed")
                values.append(self.env[binding.name])
            else:
                values.append(_mil_value(binding.value, self.blobs))
        return values

    def has(self, key: str) -> bool:
        return key in self.op.inputs

    def get(self, key: str, default=None):
        """The single value bound to ``key``, or ``default`` when the op does not set it."""
        if key not in self.op.inputs:
            return default
        values = self._bindings(key)
        if len(values) != 1:
            raise EvaluationError(f"op '{self.name}' input '{key}' has {len(values)} values, expected 1")
        return values[0]

    def many(self, key: str) -> list:
        return self._bindings(key)

    def require_default(self, key: str, default) -> None:
        """Read ``key`` and insist it has the value the evaluator assumes (an optional input it does not model)."""
        value = self.get(key, default)
        if np.any(np.asarray(value) != np.asarray(default)):
            raise UnsupportedOperationError(
                f"op '{self.name}' ({self.op.type}) sets {key}={value!r}; the evaluator supports only {default!r}"
            )


_MIL_OPS, _mil_op = _registry("ML program op")


def _run_program(spec, inputs: dict, data_dir: Path | None, counts: Counter) -> dict:
    program = spec.mlProgram
    if "main" not in program.functions:
        raise UnsupportedOperationError(f"ML program without a 'main' function (has {list(program.functions)})")
    function = program.functions["main"]
    block = function.block_specializations[function.opset]
    blobs = _Blobs(data_dir)
    env: dict[str, object] = {}
    for parameter in function.inputs:
        value = inputs[parameter.name]
        dtype, shape = _tensor_type(parameter.type)
        if value.ndim == 3 and len(shape) == 4:  # image planes (3, H, W) -> (1, 3, H, W)
            value = value[None]
        env[parameter.name] = _conform(value, parameter.type, f"input '{parameter.name}'")
    for op in block.operations:
        if len(op.blocks):
            raise UnsupportedOperationError(f"ML program op '{op.type}' with nested blocks is not supported")
        counts[f"mil:{op.type}"] += 1
        if op.type == "const":
            env[op.outputs[0].name] = _conform(_mil_value(op.attributes["val"], blobs), op.outputs[0].type, "const")
            continue
        implementation = _MIL_OPS.get(op.type)
        call = _MilCall(op, env, blobs)
        if implementation is None:
            raise UnsupportedOperationError(f"ML program op '{op.type}' ('{call.name}') is not supported by the evaluator")
        results = implementation(call)
        if call.unread:
            raise UnsupportedOperationError(
                f"op '{call.name}' ({op.type}) has inputs the evaluator does not interpret: {', '.join(sorted(call.unread))}"
            )
        results = results if isinstance(results, tuple) else (results,)
        if len(results) != len(op.outputs):
            raise EvaluationError(f"op '{call.name}' ({op.type}) gave {len(results)} results for {len(op.outputs)} outputs")
        for output, result in zip(op.outputs, results):
            env[output.name] = _conform(result, output.type, f"op '{call.name}' ({op.type})")
    return {name: env[name] for name in block.outputs}


def _conform(value, value_type, where: str):
    """``value`` rounded to the declared dtype; a shape contradicting the declaration is an ``EvaluationError``."""
    dtype, shape = _tensor_type(value_type)
    if dtype == "string":
        return value
    array = np.asarray(value)
    if array.shape != tuple(s if s is not None else d for s, d in zip(shape, array.shape)) or array.ndim != len(shape):
        raise EvaluationError(f"{where} computed shape {array.shape}, the program declares {shape}")
    if array.dtype.kind == "f" and np.dtype(dtype).kind in "iub":
        raise EvaluationError(f"{where} computed {array.dtype}, the program declares {np.dtype(dtype).name}")
    return array.astype(dtype, copy=False)


def _pads_2d(call: _MilCall, x: np.ndarray, kernel, strides, dilations) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` from a MIL op's ``pad_type`` / ``pad``."""
    pad_type = call.get("pad_type", "valid")
    pad = call.get("pad", np.zeros(4, np.int32))
    if pad_type == "custom":
        top, bottom, left, right = (int(p) for p in pad)
        return top, bottom, left, right
    if np.any(pad != 0):
        raise UnsupportedOperationError(f"op '{call.name}' sets pad {list(pad)} with pad_type {pad_type}")
    if pad_type == "valid":
        return 0, 0, 0, 0
    if pad_type in ("same", "same_lower"):
        first = pad_type == "same_lower"
        top, bottom = _same_pads(x.shape[-2], kernel[0], strides[0], dilations[0], first)
        left, right = _same_pads(x.shape[-1], kernel[1], strides[1], dilations[1], first)
        return top, bottom, left, right
    raise UnsupportedOperationError(f"op '{call.name}' pad_type {pad_type!r} is not supported")


@_mil_op("conv")
def _mil_conv(call):
    x, weight = call.get("x"), call.get("weight")
    if x.ndim != 4:
        raise UnsupportedOperationError(f"op '{call.name}': only 2-D convolution is supported, input rank {x.ndim}")
    strides = [int(s) for s in call.get("strides", [1, 1])]
    dilations = [int(d) for d in call.get("dilations", [1, 1])]
    pads = _pads_2d(call, x, weight.shape[2:], strides, dilations)
    return _convolve(x, weight, call.get("bias"), strides, dilations, int(call.get("groups", 1)), pads)


@_mil_op("max_pool")
def _mil_max_pool(call):
    x = call.get("x")
    kernel = [int(k) for k in call.get("kernel_sizes")]
    strides = [int(s) for s in call.get("strides", kernel)]
    call.require_default("ceil_mode", False)
    if x.ndim != 4:
        raise UnsupportedOperationError(f"op '{call.name}': only 2-D pooling is supported")
    return _max_pool(x, kernel, strides, _pads_2d(call, x, kernel, strides, (1, 1)))


@_mil_op("pad")
def _mil_pad(call):
    x, pad = call.get("x"), [int(p) for p in call.get("pad")]
    mode = call.get("mode", "constant")
    value = call.get("constant_val", 0.0)
    pairs = [(0, 0)] * (x.ndim - len(pad) // 2) + [(pad[i], pad[i + 1]) for i in range(0, len(pad), 2)]
    if mode == "constant":
        return np.pad(x, pairs, constant_values=np.asarray(value).astype(x.dtype))
    if mode in ("reflect", "replicate"):
        return np.pad(x, pairs, mode="reflect" if mode == "reflect" else "edge")
    raise UnsupportedOperationError(f"op '{call.name}' pad mode {mode!r} is not supported")


@_mil_op("relu")
def _mil_relu(call):
    return np.maximum(_wide(call.get("x")), 0)


@_mil_op("sigmoid")
def _mil_sigmoid(call):
    return _sigmoid(call.get("x"))


@_mil_op("clip")
def _mil_clip(call):
    x = _wide(call.get("x"))
    return np.minimum(np.maximum(x, _wide(call.get("alpha"))), _wide(call.get("beta")))


_BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "real_div": _divide, "maximum": np.maximum,
    "minimum": np.minimum, "greater": np.greater, "greater_equal": np.greater_equal, "less": np.less,
    "less_equal": np.less_equal, "equal": np.equal, "not_equal": np.not_equal,
}


@_mil_op(*_BINARY)
def _mil_binary(call):
    return _BINARY[call.op.type](_wide(call.get("x")), _wide(call.get("y")))


_LOGICAL = {"logical_and": np.logical_and, "logical_or": np.logical_or, "logical_xor": np.logical_xor}


@_mil_op(*_LOGICAL)
def _mil_logical(call):
    x, y = call.get("x"), call.get("y")
    if x.dtype != np.bool_ or y.dtype != np.bool_:
        raise EvaluationError(f"op '{call.name}' ({call.op.type}) on {x.dtype} and {y.dtype}, expected bool")
    return _LOGICAL[call.op.type](x, y)


@_mil_op("logical_not")
def _mil_logical_not(call):
    return np.logical_not(call.get("x"))


@_mil_op("select")
def _mil_select(call):
    cond = call.get("cond")
    if cond.dtype != np.bool_:
        raise EvaluationError(f"op '{call.name}' selects on {cond.dtype}, expected bool")
    return np.where(cond, _wide(call.get("a")), _wide(call.get("b")))


@_mil_op("cast")
def _mil_cast(call):
    x, dtype = call.get("x"), call.get("dtype")
    if dtype not in _CAST_DTYPES:
        raise UnsupportedOperationError(f"op '{call.name}' casts to {dtype!r}")
    return np.asarray(x).astype(_CAST_DTYPES[dtype])  # float -> int truncates toward zero


@_mil_op("transpose")
def _mil_transpose(call):
    return np.transpose(call.get("x"), [int(p) for p in call.get("perm")])


@_mil_op("reshape")
def _mil_reshape(call):
    return _reshape(call.get("x"), call.get("shape"))


@_mil_op("expand_dims")
def _mil_expand_dims(call):
    return _expand_dims(call.get("x"), call.get("axes"))


@_mil_op("squeeze")
def _mil_squeeze(call):
    x, axes = call.get("x"), call.get("axes")
    return np.squeeze(x) if axes is None else np.squeeze(x, tuple(int(a) for a in axes))


@_mil_op("slice_by_index")
def _mil_slice_by_index(call):
    x = call.get("x")
    rank = x.ndim
    none = np.zeros(rank, bool)
    begin, end = call.get("begin"), call.get("end")
    return _slice(
        x, begin, end, call.get("stride", np.ones(rank, np.int32)), call.get("begin_mask", none),
        call.get("end_mask", none), call.get("squeeze_mask", none),
    )


@_mil_op("concat")
def _mil_concat(call):
    call.require_default("interleave", False)
    return np.concatenate([_wide(v) for v in call.many("values")], axis=int(call.get("axis")))


@_mil_op("stack")
def _mil_stack(call):
    return np.stack([_wide(v) for v in call.many("values")], axis=int(call.get("axis")))


@_mil_op("gather")
def _mil_gather(call):
    call.require_default("batch_dims", 0)
    call.require_default("validate_indices", False)
    return _gather(call.get("x"), call.get("indices"), int(call.get("axis", 0)))


@_mil_op("tile")
def _mil_tile(call):
    return np.tile(call.get("x"), [int(r) for r in call.get("reps")])


@_mil_op("upsample_bilinear")
def _mil_upsample_bilinear(call):
    """``upsample_bilinear``: output ``floor(H * scale_factor_height) x floor(W * scale_factor_width)``, the scale
    recomputed from the sizes (``spacing = Xin / Xout``); ``align_corners`` (default True) picks the grid.

    iOS 16's ``half_pixel_centers`` (default ``not align_corners``) is accepted only at that default: the two
    documented samplings. Computed in float32, rounded to the declared dtype.
    """
    x = call.get("x")
    if x.ndim < 3:
        raise EvaluationError(f"op '{call.name}' (upsample_bilinear) on rank {x.ndim}, needs at least 3")
    align_corners = bool(call.get("align_corners", True))
    call.require_default("half_pixel_centers", not align_corners)
    height = _scaled_size(x.shape[-2], call.get("scale_factor_height", 1), f"op '{call.name}'")
    width = _scaled_size(x.shape[-1], call.get("scale_factor_width", 1), f"op '{call.name}'")
    grid = _grid_align_corners if align_corners else _grid_half_pixel
    return _bilinear(x, grid(x.shape[-2], height), grid(x.shape[-1], width))


@_mil_op("pixel_shuffle")
def _mil_pixel_shuffle(call):
    """``pixel_shuffle`` (rank 4, PyTorch ``PixelShuffle``): ``out[n, c, h*f + i, w*f + j] = x[n, c*f*f + i*f + j, h, w]``."""
    x = call.get("x")
    if x.ndim != 4:
        raise EvaluationError(f"op '{call.name}' (pixel_shuffle) on rank {x.ndim}, needs 4")
    return _pixel_shuffle(x, int(call.get("upscale_factor")))


@_mil_op("reduce_argmax")
def _mil_reduce_argmax(call):
    x, axis = _wide(call.get("x")), int(call.get("axis", -1))
    result = np.argmax(x, axis=axis)  # the first of equal maxima
    return np.expand_dims(result, axis) if call.get("keep_dims", False) else result


_REDUCE = {"reduce_sum": np.sum, "reduce_max": np.max, "reduce_min": np.min, "reduce_prod": np.prod}


@_mil_op(*_REDUCE)
def _mil_reduce(call):
    x, axes = _wide(call.get("x")), call.get("axes")
    axes = None if axes is None else tuple(int(a) for a in axes)
    return _REDUCE[call.op.type](x, axis=axes, keepdims=bool(call.get("keep_dims", False)))


@_mil_op("matmul")
def _mil_matmul(call):
    x, y = _wide(call.get("x")).astype(np.float32), _wide(call.get("y")).astype(np.float32)
    if call.get("transpose_x", False) and x.ndim > 1:
        x = np.swapaxes(x, -1, -2)
    if call.get("transpose_y", False) and y.ndim > 1:
        y = np.swapaxes(y, -1, -2)
    return np.matmul(x, y)


# -------------------------------------------------------------------------------- neural networks


_NN_LAYERS, _nn_layer = _registry("neural network layer")
# Fields of a layer's parameters each implementation interprets; any other set field is refused.
_NN_FIELDS: dict[str, set[str]] = {}


def _nn(kind: str, fields: set[str]):
    def add(function):
        _NN_FIELDS[kind] = fields
        return _nn_layer(kind)(function)

    return add


def _weights(params, shape=None) -> np.ndarray:
    """A ``WeightParams`` as float32 (float16 storage widened); quantized weights are refused."""
    stored = {f.name for f, _ in params.ListFields()}
    if stored - {"floatValue", "float16Value"}:
        raise UnsupportedOperationError(f"weights stored as {sorted(stored)} are not supported by the evaluator")
    if "float16Value" in stored:
        data = np.frombuffer(params.float16Value, np.float16).astype(np.float32)
    else:
        data = np.asarray(params.floatValue, np.float32)
    return data if shape is None else data.reshape(shape)


def _run_network(spec, inputs: dict, data_dir, counts: Counter) -> dict:
    network = spec.neuralNetwork
    env: dict[str, np.ndarray] = {}
    scalers = {}
    for step in network.preprocessing:
        if step.WhichOneof("preprocessor") != "scaler":
            raise UnsupportedOperationError(f"preprocessing {step.WhichOneof('preprocessor')} is not supported")
        scalers[step.featureName] = step.scaler
    for description in spec.description.input:
        value = inputs[description.name]
        if description.type.WhichOneof("Type") == "imageType":
            if network.imageInputShapeMapping != 1:  # RANK4_IMAGE_MAPPING
                raise UnsupportedOperationError("only rank-4 image input mapping is supported by the evaluator")
            scaler = scalers.get(description.name)
            if scaler is not None:
                counts["nn:preprocessing.scaler"] += 1
                value = _scale_image(value, scaler, description.type.imageType.colorSpace)
            value = value[None]  # (1, 3, H, W)
        elif value is not None and network.arrayInputShapeMapping != 1:  # EXACT_ARRAY_MAPPING
            raise UnsupportedOperationError("only exact array input mapping is supported by the evaluator")
        env[description.name] = None if value is None else np.asarray(value, np.float32)
    for layer in network.layers:
        kind = layer.WhichOneof("layer")
        counts[f"nn:{kind}"] += 1
        implementation = _NN_LAYERS.get(kind)
        if implementation is None:
            raise UnsupportedOperationError(f"neural network layer '{kind}' ('{layer.name}') is not supported by the evaluator")
        params = getattr(layer, kind)
        unknown = {f.name for f, _ in params.ListFields()} - _NN_FIELDS[kind]
        if unknown:
            raise UnsupportedOperationError(
                f"layer '{layer.name}' ({kind}) sets {', '.join(sorted(unknown))}, which the evaluator does not interpret"
            )
        missing = [name for name in layer.input if name not in env]
        if missing:
            raise EvaluationError(f"layer '{layer.name}' reads {missing} before it is computed")
        results = implementation(params, [env[name] for name in layer.input], layer)
        results = results if isinstance(results, tuple) else (results,)
        for name, result in zip(layer.output, results, strict=True):
            env[name] = np.asarray(result, np.float32)
    return {d.name: env[d.name] for d in spec.description.output}


def _scale_image(planes: np.ndarray, scaler, colour_space: int) -> np.ndarray:
    """NeuralNetworkImageScaler: ``channelScale * x + bias`` per channel, biases named by colour."""
    red, green, blue = scaler.redBias, scaler.greenBias, scaler.blueBias
    biases = (red, green, blue) if colour_space == 20 else (blue, green, red)
    scale = np.float32(scaler.channelScale)
    return planes * scale + np.asarray(biases, np.float32)[:, None, None]


def _padding_amounts(border) -> tuple[int, int, int, int]:
    """NN ``paddingAmounts`` (height, width borders) -> ``(top, bottom, left, right)``; none set is 0."""
    amounts = list(border.borderAmounts) or []
    if len(amounts) not in (0, 2):
        raise UnsupportedOperationError(f"padding amounts for {len(amounts)} axes, expected 2")
    if not amounts:
        return 0, 0, 0, 0
    return amounts[0].startEdgeSize, amounts[0].endEdgeSize, amounts[1].startEdgeSize, amounts[1].endEdgeSize


_CONV_FIELDS = {"outputChannels", "kernelChannels", "nGroups", "kernelSize", "stride", "dilationFactor", "valid",
                "same", "hasBias", "weights", "bias"}


@_nn("convolution", _CONV_FIELDS)
def _nn_convolution(params, inputs, layer):
    (x,) = inputs
    kernel = list(params.kernelSize) or [3, 3]
    strides = list(params.stride) or [1, 1]
    dilations = list(params.dilationFactor) or [1, 1]
    groups = params.nGroups or 1
    weight = _weights(params.weights, (params.outputChannels, params.kernelChannels, *kernel))
    bias = _weights(params.bias) if params.hasBias else None
    if params.WhichOneof("ConvolutionPaddingType") == "same":
        first = params.same.asymmetryMode == 1  # TOP_LEFT_HEAVY
        top, bottom = _same_pads(x.shape[-2], kernel[0], strides[0], dilations[0], first)
        left, right = _same_pads(x.shape[-1], kernel[1], strides[1], dilations[1], first)
        pads = (top, bottom, left, right)
    else:
        pads = _padding_amounts(params.valid.paddingAmounts)
    return _convolve(x, weight, bias, strides, dilations, groups, pads)


@_nn("pooling", {"type", "kernelSize", "stride", "valid", "avgPoolExcludePadding"})
def _nn_pooling(params, inputs, layer):
    (x,) = inputs
    if params.type != 0:  # MAX
        raise UnsupportedOperationError(f"layer '{layer.name}': pooling type {params.type} is not supported (MAX only)")
    kernel, strides = list(params.kernelSize), list(params.stride)
    return _max_pool(x, kernel, strides, _padding_amounts(params.valid.paddingAmounts))


@_nn("activation", {"ReLU", "sigmoid", "linear"})
def _nn_activation(params, inputs, layer):
    (x,) = inputs
    kind = params.WhichOneof("NonlinearityType")
    if kind == "ReLU":
        return np.maximum(x, 0)
    if kind == "sigmoid":
        return _sigmoid(x)
    if kind == "linear":
        return x * np.float32(params.linear.alpha) + np.float32(params.linear.beta)
    raise UnsupportedOperationError(f"layer '{layer.name}': activation {kind} is not supported")


@_nn("padding", {"constant", "paddingAmounts"})
def _nn_padding(params, inputs, layer):
    (x,) = inputs
    if params.WhichOneof("PaddingType") != "constant":
        raise UnsupportedOperationError(f"layer '{layer.name}': padding {params.WhichOneof('PaddingType')} is not supported")
    top, bottom, left, right = _padding_amounts(params.paddingAmounts)
    pairs = [(0, 0)] * (x.ndim - 2) + [(top, bottom), (left, right)]
    return np.pad(x, pairs, constant_values=np.float32(params.constant.value))


@_nn("constantPad", {"value", "padAmounts"})
def _nn_constant_pad(params, inputs, layer):
    (x,) = inputs
    amounts = list(params.padAmounts)
    if len(amounts) != 2 * x.ndim:
        raise EvaluationError(f"layer '{layer.name}': {len(amounts)} pad amounts for rank {x.ndim}")
    pairs = [(amounts[2 * i], amounts[2 * i + 1]) for i in range(x.ndim)]
    return np.pad(x, pairs, constant_values=np.float32(params.value))


@_nn("add", {"alpha"})
def _nn_add(params, inputs, layer):
    if len(inputs) == 1:
        return inputs[0] + np.float32(params.alpha)
    total = inputs[0]
    for x in inputs[1:]:
        total = total + x
    return total


@_nn("multiply", {"alpha"})
def _nn_multiply(params, inputs, layer):
    if len(inputs) == 1:
        return inputs[0] * np.float32(params.alpha)
    product = inputs[0]
    for x in inputs[1:]:
        product = product * x
    return product


_NN_BINARY = {
    "addBroadcastable": np.add, "subtractBroadcastable": np.subtract, "multiplyBroadcastable": np.multiply,
    "divideBroadcastable": _divide, "minBroadcastable": np.minimum, "maxBroadcastable": np.maximum,
}
for _kind in _NN_BINARY:
    _nn(_kind, set())(lambda params, inputs, layer: _NN_BINARY[layer.WhichOneof("layer")](*inputs))

_NN_COMPARE = {
    "greaterThan": np.greater, "greaterEqual": np.greater_equal, "lessThan": np.less, "lessEqual": np.less_equal,
    "equal": np.equal, "notEqual": np.not_equal,
}


def _nn_compare(params, inputs, layer):
    """Comparison: of two inputs, or of one input with ``alpha``; true is 1.0."""
    compare = _NN_COMPARE[layer.WhichOneof("layer")]
    right = inputs[1] if len(inputs) == 2 else np.float32(params.alpha)
    return compare(inputs[0], right).astype(np.float32)


for _kind in _NN_COMPARE:
    _nn(_kind, {"alpha"})(_nn_compare)


@_nn("logicalAnd", set())
def _nn_logical_and(params, inputs, layer):
    return np.logical_and(inputs[0] != 0, inputs[1] != 0).astype(np.float32)


@_nn("logicalNot", set())
def _nn_logical_not(params, inputs, layer):
    return (inputs[0] == 0).astype(np.float32)


@_nn("whereBroadcastable", set())
def _nn_where(params, inputs, layer):
    condition, x, y = inputs
    return np.where(condition != 0, x, y)


@_nn("clip", {"minVal", "maxVal"})
def _nn_clip(params, inputs, layer):
    return np.minimum(np.maximum(inputs[0], np.float32(params.minVal)), np.float32(params.maxVal))


@_nn("floor", set())
def _nn_floor(params, inputs, layer):
    return np.floor(inputs[0])


@_nn("ceil", set())
def _nn_ceil(params, inputs, layer):
    return np.ceil(inputs[0])


@_nn("transpose", {"axes"})
def _nn_transpose(params, inputs, layer):
    return np.transpose(inputs[0], list(params.axes))


@_nn("reshapeStatic", {"targetShape"})
def _nn_reshape_static(params, inputs, layer):
    return _reshape(inputs[0], params.targetShape)


@_nn("expandDims", {"axes"})
def _nn_expand_dims(params, inputs, layer):
    return _expand_dims(inputs[0], params.axes)


@_nn("concatND", {"axis"})
def _nn_concat(params, inputs, layer):
    return np.concatenate(inputs, axis=params.axis)


@_nn("stack", {"axis"})
def _nn_stack(params, inputs, layer):
    return np.stack(inputs, axis=params.axis)


@_nn("tile", {"reps"})
def _nn_tile(params, inputs, layer):
    return np.tile(inputs[0], list(params.reps))


@_nn("sliceStatic", {"beginIds", "beginMasks", "endIds", "endMasks", "strides", "squeezeMasks"})
def _nn_slice_static(params, inputs, layer):
    (x,) = inputs
    squeeze = list(params.squeezeMasks) or [False] * x.ndim
    return _slice(x, params.beginIds, params.endIds, params.strides, params.beginMasks, params.endMasks, squeeze)


@_nn("slice", {"startIndex", "endIndex", "stride", "axis"})
def _nn_slice(params, inputs, layer):
    """SliceLayer: ``[startIndex, endIndex)`` with ``stride`` along axis -3 (channel), -2 (height) or -1 (width)."""
    (x,) = inputs
    axis = {0: -3, 1: -2, 2: -1}[params.axis]
    index = [slice(None)] * x.ndim
    index[axis] = slice(params.startIndex, params.endIndex, params.stride or 1)
    return x[tuple(index)]


@_nn("loadConstantND", {"shape", "data"})
def _nn_load_constant(params, inputs, layer):
    return _weights(params.data, tuple(params.shape))


@_nn("gather", {"axis"})
def _nn_gather(params, inputs, layer):
    return _gather(inputs[0], inputs[1], params.axis)


@_nn("upsample", {"scalingFactor", "fractionalScalingFactor", "mode", "linearUpsampleMode"})
def _nn_upsample(params, inputs, layer):
    """UpsampleLayer on the last two axes (rank >= 3). ``scalingFactor`` (integers, default ``[1, 1]``) or
    ``fractionalScalingFactor`` (BILINEAR with ALIGN_CORNERS_* only; here only where it gives whole sizes).
    NN (nearest) repeats every pixel ``scalingFactor`` times; BILINEAR samples at the grid ``linearUpsampleMode``
    documents: DEFAULT, ALIGN_CORNERS_TRUE, ALIGN_CORNERS_FALSE."""
    (x,) = inputs
    if x.ndim < 3:
        raise EvaluationError(f"layer '{layer.name}': upsample of rank {x.ndim}, needs at least 3")
    integral, fractional = list(params.scalingFactor), list(params.fractionalScalingFactor)
    if integral and fractional:
        raise EvaluationError(f"layer '{layer.name}': both scalingFactor and fractionalScalingFactor are set")
    factors = integral or fractional or [1, 1]
    if len(factors) != 2:
        raise EvaluationError(f"layer '{layer.name}': {len(factors)} scaling factors, expected 2 (H, W)")
    sizes = []
    for size, factor in zip(x.shape[-2:], factors):
        scaled = size * float(factor)
        if scaled != math.floor(scaled) or scaled < 1:
            raise UnsupportedOperationError(
                f"layer '{layer.name}': scaling {size} by {factor} gives {scaled} pixels; only whole sizes are supported"
            )
        sizes.append(int(scaled))
    mode = {0: "NN", 1: "BILINEAR"}.get(params.mode)
    linear = {0: "DEFAULT", 1: "ALIGN_CORNERS_TRUE", 2: "ALIGN_CORNERS_FALSE"}.get(params.linearUpsampleMode)
    if mode is None or linear is None:
        raise UnsupportedOperationError(f"layer '{layer.name}': upsample mode {params.mode}/{params.linearUpsampleMode}")
    if mode == "NN":
        if fractional or params.linearUpsampleMode:
            raise UnsupportedOperationError(f"layer '{layer.name}': nearest upsampling takes integer factors and no linear mode")
        return np.repeat(np.repeat(x, int(factors[0]), axis=-2), int(factors[1]), axis=-1)
    if fractional and linear == "DEFAULT":
        raise UnsupportedOperationError(f"layer '{layer.name}': fractional scaling needs an ALIGN_CORNERS_* mode")
    grid = {"DEFAULT": _grid_nn_default, "ALIGN_CORNERS_TRUE": _grid_align_corners,
            "ALIGN_CORNERS_FALSE": _grid_half_pixel}[linear]
    return _bilinear(x, grid(x.shape[-2], sizes[0]), grid(x.shape[-1], sizes[1]))


_REORGANIZE = {0: _space_to_depth, 1: _depth_to_space, 2: _pixel_shuffle}


@_nn("reorganizeData", {"mode", "blockSize"})
def _nn_reorganize_data(params, inputs, layer):
    """ReorganizeDataLayer on the last three axes (C, H, W): SPACE_TO_DEPTH, DEPTH_TO_SPACE (TensorFlow's channel
    order: output channel c of block offset (i, j) is input channel ``(i*b + j)*C + c``) or PIXEL_SHUFFLE
    (PyTorch's: input channel ``c*b*b + i*b + j``). ``blockSize`` must exceed 1."""
    (x,) = inputs
    if x.ndim < 3:
        raise EvaluationError(f"layer '{layer.name}': reorganizeData of rank {x.ndim}, needs at least 3")
    if params.mode not in _REORGANIZE:
        raise UnsupportedOperationError(f"layer '{layer.name}': reorganizeData mode {params.mode} is not supported")
    if params.blockSize < 2:
        raise EvaluationError(f"layer '{layer.name}': block size {params.blockSize}, must be greater than 1")
    return _REORGANIZE[params.mode](x, int(params.blockSize))


@_nn("argMax", {"axis", "removeDim"})
def _nn_argmax(params, inputs, layer):
    result = np.argmax(inputs[0], axis=params.axis)  # the first of equal maxima
    return (result if params.removeDim else np.expand_dims(result, params.axis)).astype(np.float32)


@_nn("reduceSum", {"axes", "keepDims", "reduceAll"})
def _nn_reduce_sum(params, inputs, layer):
    axes = None if params.reduceAll else tuple(params.axes)
    return np.sum(inputs[0], axis=axes, keepdims=params.keepDims)


@_nn("batchedMatmul", {"transposeA", "transposeB"})
def _nn_batched_matmul(params, inputs, layer):
    """Two-input BatchedMatMul: a 1-D ``a`` is ``(1, D)``, a 1-D ``b`` is ``(D, 1)``; the result keeps rank >= 2."""
    a, b = inputs
    a = a[None] if a.ndim == 1 else a
    b = b[:, None] if b.ndim == 1 else b
    if params.transposeA:
        a = np.swapaxes(a, -1, -2)
    if params.transposeB:
        b = np.swapaxes(b, -1, -2)
    return np.matmul(a, b)


# ------------------------------------------------------------------------------ NonMaximumSuppression


def pick_top_nms(
    confidence: np.ndarray,
    coordinates: np.ndarray,
    iou_threshold: float,
    confidence_threshold: float,
    per_class: bool = True,
    max_boxes: int | None = None,
) -> np.ndarray:
    """Indices of the boxes Core ML's NonMaximumSuppression model (``pickTop``) keeps, best first.

    ``confidence``: ``(N, C)``; ``coordinates``: ``(N, 4)`` ``(x_center, y_center, width, height)``. A box's label is
    the argmax of its row and its score that maximum; boxes scoring below ``confidence_threshold`` are dropped;
    the rest are visited by descending score (ties: lower index first) and one is kept unless a kept box (of the
    same label when ``per_class``) overlaps it with IoU > ``iou_threshold``. At most ``max_boxes`` are returned.
    """
    confidence = np.asarray(confidence, np.float64)
    boxes = np.asarray(coordinates, np.float64)
    labels = np.argmax(confidence, axis=1)
    scores = confidence[np.arange(len(confidence)), labels]
    corners = np.concatenate([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], axis=1)
    area = np.clip(corners[:, 2] - corners[:, 0], 0, None) * np.clip(corners[:, 3] - corners[:, 1], 0, None)
    order = [i for i in np.argsort(-scores, kind="stable") if scores[i] >= confidence_threshold]
    kept: list[int] = []
    for i in order:
        if max_boxes is not None and len(kept) >= max_boxes:
            break
        others = np.array([j for j in kept if not per_class or labels[j] == labels[i]], np.int64)
        if len(others):
            low = np.maximum(corners[others, :2], corners[i, :2])
            high = np.minimum(corners[others, 2:], corners[i, 2:])
            overlap = np.clip(high - low, 0, None)
            intersection = overlap[:, 0] * overlap[:, 1]
            union = area[others] + area[i] - intersection
            with np.errstate(divide="ignore", invalid="ignore"):
                iou = np.where(union > 0, intersection / union, 0.0)
            if np.any(iou > iou_threshold):
                continue
        kept.append(int(i))
    return np.asarray(kept, np.int64)


def _run_nms(spec, inputs: dict, data_dir, counts: Counter) -> dict:
    nms = spec.nonMaximumSuppression
    if nms.WhichOneof("SuppressionMethod") != "pickTop":
        raise UnsupportedOperationError(f"NMS method {nms.WhichOneof('SuppressionMethod')} is not supported")
    confidence = inputs[nms.confidenceInputFeatureName]
    coordinates = inputs[nms.coordinatesInputFeatureName]
    if confidence.ndim != 2 or coordinates.shape != (len(confidence), 4):
        raise EvaluationError(f"NMS inputs of shapes {confidence.shape} and {coordinates.shape}, expected (N, C), (N, 4)")
    iou = inputs.get(nms.iouThresholdInputFeatureName) if nms.iouThresholdInputFeatureName else None
    threshold = inputs.get(nms.confidenceThresholdInputFeatureName) if nms.confidenceThresholdInputFeatureName else None
    iou = nms.iouThreshold if iou is None else iou
    threshold = nms.confidenceThreshold if threshold is None else threshold
    outputs = {d.name: d for d in spec.description.output}
    low, high = _row_bounds(outputs[nms.confidenceOutputFeatureName])
    low2, high2 = _row_bounds(outputs[nms.coordinatesOutputFeatureName])
    low, high = max(low, low2), min(high, high2)
    kept = pick_top_nms(confidence, coordinates, iou, threshold, nms.pickTop.perClass, high if high >= 0 else None)
    rows = max(len(kept), low)  # padded with zero rows up to a lower bound
    confidence_out = np.zeros((rows, confidence.shape[1]), confidence.dtype)
    coordinates_out = np.zeros((rows, 4), coordinates.dtype)
    confidence_out[: len(kept)] = confidence[kept]
    coordinates_out[: len(kept)] = coordinates[kept]
    return {nms.confidenceOutputFeatureName: confidence_out, nms.coordinatesOutputFeatureName: coordinates_out}


def _row_bounds(description) -> tuple[int, int]:
    """``(lower, upper)`` number of output rows a multi-array output allows; upper -1 is unbounded."""
    array = description.type.multiArrayType
    if array.WhichOneof("ShapeFlexibility") == "shapeRange" and array.shapeRange.sizeRanges:
        first = array.shapeRange.sizeRanges[0]
        return int(first.lowerBound), int(first.upperBound)
    if len(array.shape):
        return int(array.shape[0]), int(array.shape[0])
    return 0, -1


_MODEL_RUNNERS = {"mlProgram": _run_program, "neuralNetwork": _run_network, "nonMaximumSuppression": _run_nms}


def supported_operations() -> dict[str, list[str]]:
    """The ML program ops and neural network layers the evaluator interprets (for documentation and tests)."""
    return {"mil": sorted(set(_MIL_OPS) | {"const"}), "nn": sorted(_NN_LAYERS), "models": sorted(_MODEL_RUNNERS)}
