"""Read a TFLite flatbuffer into a small, checked graph of numpy constants and operators.

Follows TensorFlow's ``tensorflow/lite/schema/schema.fbs``. Weight storage is undone here so
later stages only see float32 constants: a DEQUANTIZE of a float16 constant and a DENSIFY of a
sparse constant are folded into the constant they produce and dropped from the operator list.
Every size the file declares is checked against the file before anything is allocated.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tflite
from tflite.BuiltinOperator import BuiltinOperator
from tflite.BuiltinOptions import BuiltinOptions
from tflite.TensorType import TensorType

from .errors import ModelFileError
from .tflite_checks import check_dataflow, check_operator
from .tflite_sparsity import densify

log = logging.getLogger(__name__)

_OPERATOR_NAMES = {code: name for name, code in vars(BuiltinOperator).items() if name.isupper()}

_DTYPES = {
    TensorType.FLOAT32: np.dtype("<f4"),
    TensorType.FLOAT16: np.dtype("<f2"),
    TensorType.INT32: np.dtype("<i4"),
    TensorType.INT64: np.dtype("<i8"),
    TensorType.UINT8: np.dtype("u1"),
    TensorType.INT8: np.dtype("i1"),
}

# Option tables we read: BuiltinOptions type -> (class, {our key: accessor name}).
_OPTION_FIELDS = {
    BuiltinOptions.Conv2DOptions: (
        tflite.Conv2DOptions,
        dict(padding="Padding", stride_w="StrideW", stride_h="StrideH", activation="FusedActivationFunction",
             dilation_w="DilationWFactor", dilation_h="DilationHFactor"),
    ),
    BuiltinOptions.DepthwiseConv2DOptions: (
        tflite.DepthwiseConv2DOptions,
        dict(padding="Padding", stride_w="StrideW", stride_h="StrideH", activation="FusedActivationFunction",
             dilation_w="DilationWFactor", dilation_h="DilationHFactor", depth_multiplier="DepthMultiplier"),
    ),
    BuiltinOptions.Pool2DOptions: (
        tflite.Pool2DOptions,
        dict(padding="Padding", stride_w="StrideW", stride_h="StrideH", filter_w="FilterWidth",
             filter_h="FilterHeight", activation="FusedActivationFunction"),
    ),
    BuiltinOptions.AddOptions: (tflite.AddOptions, dict(activation="FusedActivationFunction")),
    BuiltinOptions.ConcatenationOptions: (
        tflite.ConcatenationOptions, dict(axis="Axis", activation="FusedActivationFunction"),
    ),
    BuiltinOptions.ResizeBilinearOptions: (
        tflite.ResizeBilinearOptions, dict(align_corners="AlignCorners", half_pixel_centers="HalfPixelCenters"),
    ),
    BuiltinOptions.DepthToSpaceOptions: (tflite.DepthToSpaceOptions, dict(block_size="BlockSize")),
}

# Guards against files that lie about their sizes, far above any BlazeFace (whose largest constant has 36,864
# elements, whose constants total 1.5 million, and whose graphs have under 600 tensors): checked before allocating.
_MAX_TENSOR_ELEMENTS = 1 << 22  # one constant
_MAX_CONSTANT_ELEMENTS = 1 << 24  # all constants of the file together (aliased buffers count each time)
_MAX_GRAPH_ITEMS = 1 << 14  # tensors, operators, buffers, operator codes, metadata entries


@dataclass(frozen=True)
class Tensor:
    """One tensor of the graph. ``data`` is its constant value (float32 for weights) or None for activations."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    data: np.ndarray | None = field(default=None, repr=False, compare=False)
    stored_as: str = "float32"  # how the file stores the constant: float32, float16, sparse float16, ...
    # The tensor whose buffer holds the stored bytes: this one, or for a constant folded from DEQUANTIZE / DENSIFY
    # the constant at the start of that chain (``tflite_writer`` writes new weights there).
    stored_in: int | None = None

    @property
    def storage(self) -> int:
        """Index of the tensor whose buffer holds this constant's bytes (``stored_in``, else itself)."""
        return self.index if self.stored_in is None else self.stored_in


@dataclass(frozen=True)
class Operator:
    """One operator: ``kind`` is the builtin name (``CONV_2D``), ``inputs``/``outputs`` are tensor indices (-1: absent)."""

    index: int
    kind: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Graph:
    """The first subgraph of a TFLite model, with weight storage (DEQUANTIZE, DENSIFY) folded away."""

    path: Path
    description: str
    tensors: tuple[Tensor, ...]
    operators: tuple[Operator, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    metadata_names: tuple[str, ...]

    @functools.cached_property
    def _dataflow(self) -> tuple[dict[int, Operator], dict[int, list[Operator]]]:
        """Producer and consumers of every tensor, indexed once (a hostile graph cannot make lookups quadratic)."""
        producers: dict[int, Operator] = {}
        consumers: dict[int, list[Operator]] = {}
        for op in self.operators:
            for t in op.outputs:
                producers.setdefault(t, op)
            for t in dict.fromkeys(op.inputs):
                consumers.setdefault(t, []).append(op)
        return producers, consumers

    def producer(self, tensor: int) -> Operator | None:
        """The operator that writes ``tensor``, or None for graph inputs and constants."""
        return self._dataflow[0].get(tensor)

    def consumers(self, tensor: int) -> list[Operator]:
        """The operators that read ``tensor``, in graph order."""
        return list(self._dataflow[1].get(tensor, ()))


def read_graph(path: str | Path, data: bytes | None = None) -> Graph:
    """Parse the TFLite file at ``path``; any problem with the file is a ``ModelFileError`` naming it.

    ``data``: the file's bytes when the caller has already read them (``path`` then only names them in messages).
    """
    path = Path(path)
    try:
        data = path.read_bytes() if data is None else bytes(data)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path}: is a directory, expected a .tflite file") from None
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelFileError(f"{path}: not a TFLite flatbuffer (no 'TFL3' file identifier)")
    try:
        return _parse(path, data)
    except (ModelFileError, MemoryError):
        raise  # a MemoryError means a size went unchecked: a bug, not a verdict on the file
    except Exception as exc:  # the flatbuffers runtime raises anything on a corrupt buffer
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise ModelFileError(
            f"{path}: malformed or truncated TFLite flatbuffer ({len(data)} bytes; reading it failed with {detail})"
        ) from None


def _count(path: Path, what: str, n: int, data: bytes, limit: int = _MAX_GRAPH_ITEMS) -> int:
    """A vector length from the file, checked against the file's size (4 bytes an entry) and ``limit``."""
    if n < 0 or 4 * n > len(data):
        raise ModelFileError(f"{path}: declares {n} {what}, more than fit in its {len(data)} bytes")
    if n > limit:
        raise ModelFileError(f"{path}: declares {n} {what}, more than blazeconv accepts ({limit})")
    return n


def buffer_span(path: Path, model, index: int, file_size: int) -> tuple[int, int]:
    """Where buffer ``index`` of ``model`` (a ``tflite.Model``) lies in the file: ``(byte offset, byte count)``,
    ``(0, 0)`` for an empty buffer; ``ModelFileError`` when it is out of range or runs past the file's end."""
    num_buffers = model.BuffersLength()
    if not 0 <= index < num_buffers:
        raise ModelFileError(f"{path}: buffer index {index} out of range (file has {num_buffers})")
    buf = model.Buffers(index)
    if buf.Offset() > 1:  # buffers stored after the flatbuffer (models over 2 GB)
        start, size = buf.Offset(), buf.Size()
        if start + size > file_size:
            raise ModelFileError(f"{path}: buffer {index} runs past the end of the file")
        return start, size
    if buf.DataIsNone():
        return 0, 0
    start = buf._tab.Vector(buf._tab.Offset(4))  # the first byte of the data vector (after its length)
    size = buf.DataLength()
    if start < 0 or start + size > file_size:
        raise ModelFileError(f"{path}: buffer {index} runs past the end of the file (truncated?)")
    return start, size


def _parse(path: Path, data: bytes) -> Graph:
    model = tflite.Model.GetRootAsModel(data, 0)
    if _count(path, "subgraphs", model.SubgraphsLength(), data) < 1:
        raise ModelFileError(f"{path}: the model has no subgraph")
    subgraph = model.Subgraphs(0)
    _count(path, "buffers", model.BuffersLength(), data)  # checked before any buffer is looked up
    num_codes = _count(path, "operator codes", model.OperatorCodesLength(), data)
    view = memoryview(data)  # buffers are sliced without copying; only checked constants are copied out

    def buffer_bytes(index: int) -> bytes:
        start, size = buffer_span(path, model, index, len(data))
        return view[start:start + size]

    budget = _Budget(path)
    raw: list[Tensor] = []
    for i in range(_count(path, "tensors", subgraph.TensorsLength(), data)):
        raw.append(_read_tensor(path, subgraph.Tensors(i), i, buffer_bytes, budget))
    num_tensors = len(raw)

    inputs = tuple(int(subgraph.Inputs(j)) for j in range(_count(path, "graph inputs", subgraph.InputsLength(), data)))
    outputs = tuple(int(subgraph.Outputs(j)) for j in range(_count(path, "graph outputs", subgraph.OutputsLength(), data)))
    for t in inputs + outputs:
        if not 0 <= t < num_tensors:
            raise ModelFileError(f"{path}: graph input/output refers to tensor {t}, file has {num_tensors}")
    for t in inputs:
        if raw[t].data is not None:
            raise ModelFileError(f"{path}: graph input '{raw[t].name}' is a constant")

    operators: list[Operator] = []
    for i in range(_count(path, "operators", subgraph.OperatorsLength(), data)):
        op = subgraph.Operators(i)
        code_index = op.OpcodeIndex()
        if not 0 <= code_index < num_codes:
            raise ModelFileError(f"{path}: operator {i} has an invalid opcode index {code_index}")
        code = model.OperatorCodes(code_index)
        # The builtin code field was widened in schema v3a; old files only fill the deprecated one.
        builtin = max(code.DeprecatedBuiltinCode(), code.BuiltinCode())
        kind = _OPERATOR_NAMES.get(builtin, f"BUILTIN_{builtin}")
        if builtin == BuiltinOperator.CUSTOM:
            kind = f"CUSTOM:{_text(code.CustomCode())}"
        op_inputs = tuple(int(op.Inputs(j)) for j in range(_count(path, f"inputs of operator {i}", op.InputsLength(), data)))
        op_outputs = tuple(
            int(op.Outputs(j)) for j in range(_count(path, f"outputs of operator {i}", op.OutputsLength(), data))
        )
        for t in op_inputs + op_outputs:
            if not -1 <= t < num_tensors:
                raise ModelFileError(f"{path}: operator {i} ({kind}) refers to tensor {t}, file has {num_tensors}")
        operator = Operator(i, kind, op_inputs, op_outputs, _read_options(op))
        check_operator(path, operator, raw)
        operators.append(operator)
    check_dataflow(path, raw, operators, inputs)

    tensors, operators = _fold_weight_storage(path, raw, operators, budget)
    metadata = tuple(
        _text(model.Metadata(j).Name()) for j in range(_count(path, "metadata entries", model.MetadataLength(), data))
    )
    description = _text(model.Description())
    return Graph(path, description, tuple(tensors), tuple(operators), inputs, outputs, metadata)



class _Budget:
    """Elements of constant data a file may still make the reader allocate (aliased buffers count every time)."""

    def __init__(self, path: Path, elements: int = _MAX_CONSTANT_ELEMENTS):
        self.path, self.left = path, elements

    def take(self, name: str, count: int) -> None:
        if count > _MAX_TENSOR_ELEMENTS:
            raise ModelFileError(
                f"{self.path}: tensor '{name}' declares {count} elements, more than blazeconv accepts ({_MAX_TENSOR_ELEMENTS})"
            )
        if count > self.left:
            raise ModelFileError(
                f"{self.path}: constants add up to more than {_MAX_CONSTANT_ELEMENTS} elements at '{name}', "
                f"more than blazeconv accepts"
            )
        self.left -= count


def _text(raw: bytes | None) -> str:
    """A name from the file as printable text: control characters (never in a real name) become '?'."""
    text = (raw or b"").decode(errors="replace")
    return text if text.isprintable() else "".join(c if c.isprintable() else "?" for c in text)


def _read_tensor(path: Path, t, index: int, buffer_bytes, budget: _Budget) -> Tensor:
    name = _text(t.Name())
    shape = tuple(int(d) for d in (t.ShapeAsNumpy() if t.ShapeLength() else ()))
    if any(d < 0 for d in shape):
        shape_sig = shape  # dynamic dimension (-1); only activations may have one
    else:
        shape_sig = None
    if t.Type() not in _DTYPES:
        dtype = np.dtype("V1")  # a type blazeconv never reads (strings, complex, ...)
    else:
        dtype = _DTYPES[t.Type()]
    payload = buffer_bytes(t.Buffer())
    if not payload:
        return Tensor(index, name, shape, dtype)
    if shape_sig is not None:
        raise ModelFileError(f"{path}: constant tensor '{name}' has a dynamic shape {list(shape)}")
    count = math.prod(shape)  # Python integers: a lying shape cannot overflow into a small count
    budget.take(name, count)
    if dtype.kind == "V":
        raise ModelFileError(f"{path}: constant tensor '{name}' has an unsupported type {t.Type()}")
    sparsity = t.Sparsity()
    if sparsity is not None:
        values = np.frombuffer(payload, dtype=dtype, count=len(payload) // dtype.itemsize)
        dense = densify(path, name, shape, values, sparsity)
        return Tensor(index, name, shape, dtype, dense, stored_as=f"sparse {dtype.name}")
    if len(payload) != count * dtype.itemsize:
        raise ModelFileError(
            f"{path}: tensor '{name}' of shape {list(shape)} needs {count * dtype.itemsize} bytes, "
            f"its buffer holds {len(payload)}"
        )
    value = np.frombuffer(payload, dtype=dtype).reshape(shape).copy()
    return Tensor(index, name, shape, dtype, value, stored_as=dtype.name)


def _read_options(op) -> dict:
    entry = _OPTION_FIELDS.get(op.BuiltinOptionsType())
    table = op.BuiltinOptions()
    if entry is None or table is None:
        return {}
    cls, fields = entry
    options = cls()
    options.Init(table.Bytes, table.Pos)
    return {key: getattr(options, accessor)() for key, accessor in fields.items()}


def _fold_weight_storage(path: Path, tensors: list[Tensor], operators: list[Operator], budget: _Budget):
    """Replace DEQUANTIZE/DENSIFY of constants by the float32 constant they compute; drop those operators."""
    tensors = list(tensors)
    kept = []
    for op in operators:
        if op.kind in ("DEQUANTIZE", "DENSIFY") and len(op.inputs) == 1 and len(op.outputs) == 1:
            source, target = tensors[op.inputs[0]], tensors[op.outputs[0]]
            if source.data is not None:
                if source.shape != target.shape:
                    raise ModelFileError(
                        f"{path}: {op.kind} turns '{source.name}' {list(source.shape)} into '{target.name}' "
                        f"{list(target.shape)}"
                    )
                if source.dtype.kind != "f":
                    raise ModelFileError(f"{path}: {op.kind} of non-float constant '{source.name}' is not supported")
                budget.take(target.name, source.data.size)  # the float32 copy (one per operator, even if aliased)
                tensors[target.index] = Tensor(
                    target.index, target.name, target.shape, np.dtype("<f4"),
                    source.data.astype(np.float32), stored_as=source.stored_as, stored_in=source.storage,
                )
                continue
        kept.append(op)
    return tensors, kept
