"""The ML program (MIL) operations of the Core ML evaluator, and the runner of an ``mlProgram`` model.

``run_program`` executes the ``main`` function of the program as stored in the protobuf, operation by operation:
``const`` values come from the spec or from the package's blob file (``weight.bin``, read via ``@model_path``), every
other operation from ``MIL_OPS``, the registry of ``op type -> function(call)``. An implementation reads its inputs
through a ``_MilCall`` (an input it does not read is an ``UnsupportedOperationError``) and returns an array, or a
tuple of arrays for an op with several outputs.

Numerics: every operation computes in float32 (float16 inputs widen exactly) and its result is rounded to the
dtype the program declares for it (``_conform``, which also checks the declared shape). A float16 program is
therefore evaluated with float16 values wherever the program has them; elementwise results equal IEEE float16
arithmetic, convolutions and matrix products accumulate in float32. Tensors are laid out as the program declares
them: images ``(1, 3, H, W)``, convolution weights ``(O, C/groups, kH, kW)``.
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from pathlib import Path

import numpy as np

from .base import EvaluationError, UnsupportedOperationError, registry
from .kernels import (
    bilinear,
    convolve,
    divide,
    expand_dims,
    gather,
    grid_align_corners,
    grid_half_pixel,
    max_pool,
    pixel_shuffle,
    reshape,
    same_pads,
    scaled_size,
    sigmoid,
    strided_slice,
    wide,
)

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


MIL_OPS, _mil_op = registry("ML program op")


def run_program(spec, inputs: dict, data_dir: Path | None, counts: Counter) -> dict:
    """The outputs of an ``mlProgram`` model's ``main`` function, by name; ``data_dir`` holds its blob files.

    ``inputs``: arrays by name; image planes ``(3, H, W)`` gain the batch axis the program declares.
    """
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
        implementation = MIL_OPS.get(op.type)
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
        top, bottom = same_pads(x.shape[-2], kernel[0], strides[0], dilations[0], first)
        left, right = same_pads(x.shape[-1], kernel[1], strides[1], dilations[1], first)
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
    return convolve(x, weight, call.get("bias"), strides, dilations, int(call.get("groups", 1)), pads)


@_mil_op("max_pool")
def _mil_max_pool(call):
    x = call.get("x")
    kernel = [int(k) for k in call.get("kernel_sizes")]
    strides = [int(s) for s in call.get("strides", kernel)]
    call.require_default("ceil_mode", False)
    if x.ndim != 4:
        raise UnsupportedOperationError(f"op '{call.name}': only 2-D pooling is supported")
    return max_pool(x, kernel, strides, _pads_2d(call, x, kernel, strides, (1, 1)))


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
    return np.maximum(wide(call.get("x")), 0)


@_mil_op("sigmoid")
def _mil_sigmoid(call):
    return sigmoid(call.get("x"))


@_mil_op("clip")
def _mil_clip(call):
    x = wide(call.get("x"))
    return np.minimum(np.maximum(x, wide(call.get("alpha"))), wide(call.get("beta")))


_BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "real_div": divide, "maximum": np.maximum,
    "minimum": np.minimum, "greater": np.greater, "greater_equal": np.greater_equal, "less": np.less,
    "less_equal": np.less_equal, "equal": np.equal, "not_equal": np.not_equal,
}


@_mil_op(*_BINARY)
def _mil_binary(call):
    return _BINARY[call.op.type](wide(call.get("x")), wide(call.get("y")))


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
    return np.where(cond, wide(call.get("a")), wide(call.get("b")))


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
    return reshape(call.get("x"), call.get("shape"))


@_mil_op("expand_dims")
def _mil_expand_dims(call):
    return expand_dims(call.get("x"), call.get("axes"))


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
    return strided_slice(
        x, begin, end, call.get("stride", np.ones(rank, np.int32)), call.get("begin_mask", none),
        call.get("end_mask", none), call.get("squeeze_mask", none),
    )


@_mil_op("concat")
def _mil_concat(call):
    call.require_default("interleave", False)
    return np.concatenate([wide(v) for v in call.many("values")], axis=int(call.get("axis")))


@_mil_op("stack")
def _mil_stack(call):
    return np.stack([wide(v) for v in call.many("values")], axis=int(call.get("axis")))


@_mil_op("gather")
def _mil_gather(call):
    call.require_default("batch_dims", 0)
    call.require_default("validate_indices", False)
    return gather(call.get("x"), call.get("indices"), int(call.get("axis", 0)))


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
    height = scaled_size(x.shape[-2], call.get("scale_factor_height", 1), f"op '{call.name}'")
    width = scaled_size(x.shape[-1], call.get("scale_factor_width", 1), f"op '{call.name}'")
    grid = grid_align_corners if align_corners else grid_half_pixel
    return bilinear(x, grid(x.shape[-2], height), grid(x.shape[-1], width))


@_mil_op("pixel_shuffle")
def _mil_pixel_shuffle(call):
    """``pixel_shuffle`` (rank 4, PyTorch ``PixelShuffle``): ``out[n, c, h*f + i, w*f + j] = x[n, c*f*f + i*f + j, h, w]``."""
    x = call.get("x")
    if x.ndim != 4:
        raise EvaluationError(f"op '{call.name}' (pixel_shuffle) on rank {x.ndim}, needs 4")
    return pixel_shuffle(x, int(call.get("upscale_factor")))


@_mil_op("reduce_argmax")
def _mil_reduce_argmax(call):
    x, axis = wide(call.get("x")), int(call.get("axis", -1))
    result = np.argmax(x, axis=axis)  # the first of equal maxima
    return np.expand_dims(result, axis) if call.get("keep_dims", False) else result


_REDUCE = {"reduce_sum": np.sum, "reduce_max": np.max, "reduce_min": np.min, "reduce_prod": np.prod}


@_mil_op(*_REDUCE)
def _mil_reduce(call):
    x, axes = wide(call.get("x")), call.get("axes")
    axes = None if axes is None else tuple(int(a) for a in axes)
    return _REDUCE[call.op.type](x, axis=axes, keepdims=bool(call.get("keep_dims", False)))


@_mil_op("matmul")
def _mil_matmul(call):
    x, y = wide(call.get("x")).astype(np.float32), wide(call.get("y")).astype(np.float32)
    if call.get("transpose_x", False) and x.ndim > 1:
        x = np.swapaxes(x, -1, -2)
    if call.get("transpose_y", False) and y.ndim > 1:
        y = np.swapaxes(y, -1, -2)
    return np.matmul(x, y)
