"""Read a TFLite flatbuffer into a small, checked graph of numpy constants and operators.

Follows TensorFlow's ``tensorflow/lite/schema/schema.fbs``. Weight storage is undone here so
later stages only see float32 constants: a DEQUANTIZE of a float16 constant and a DENSIFY of a
sparse constant are folded into the constant they produce and dropped from the operator list.
Every size the file declares is checked against the file before anything is allocated.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tflite
from tflite.BuiltinOperator import BuiltinOperator
from tflite.BuiltinOptions import BuiltinOptions
from tflite.DimensionType import DimensionType
from tflite.SparseIndexVector import SparseIndexVector
from tflite.TensorType import TensorType

from .errors import ModelFileError

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

_MAX_TENSOR_ELEMENTS = 1 << 28  # far above any BlazeFace tensor; a guard against lying shapes


@dataclass(frozen=True)
class Tensor:
    """One tensor of the graph. ``data`` is its constant value (float32 for weights) or None for activations."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    data: np.ndarray | None = field(default=None, repr=False, compare=False)
    stored_as: str = "float32"  # how the file stores the constant: float32, float16, sparse float16, ...


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

    def producer(self, tensor: int) -> Operator | None:
        """The operator that writes ``tensor``, or None for graph inputs and constants."""
        for op in self.operators:
            if tensor in op.outputs:
                return op
        return None

    def consumers(self, tensor: int) -> list[Operator]:
        """The operators that read ``tensor``, in graph order."""
        return [op for op in self.operators if tensor in op.inputs]

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for op in self.operators:
            counts[op.kind] = counts.get(op.kind, 0) + 1
        return counts


def read_graph(path: str | Path) -> Graph:
    """Parse the TFLite file at ``path``; any problem with the file is a ``ModelFileError`` naming it."""
    path = Path(path)
    try:
        data = path.read_bytes()
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
    except ModelFileError:
        raise
    except Exception as exc:  # the flatbuffers runtime raises anything on a corrupt buffer
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise ModelFileError(
            f"{path}: malformed or truncated TFLite flatbuffer ({len(data)} bytes; reading it failed with {detail})"
        ) from None


def _parse(path: Path, data: bytes) -> Graph:
    model = tflite.Model.GetRootAsModel(data, 0)
    if model.SubgraphsLength() < 1:
        raise ModelFileError(f"{path}: the model has no subgraph")
    subgraph = model.Subgraphs(0)
    num_buffers = model.BuffersLength()

    def buffer_bytes(index: int) -> bytes:
        if not 0 <= index < num_buffers:
            raise ModelFileError(f"{path}: buffer index {index} out of range (file has {num_buffers})")
        buf = model.Buffers(index)
        if buf.Offset() > 1:  # buffers stored after the flatbuffer (models over 2 GB)
            start, size = buf.Offset(), buf.Size()
            if start + size > len(data):
                raise ModelFileError(f"{path}: buffer {index} runs past the end of the file")
            return data[start:start + size]
        if buf.DataIsNone():
            return b""
        start = buf._tab.Vector(buf._tab.Offset(4))
        size = buf.DataLength()
        if start + size > len(data):
            raise ModelFileError(f"{path}: buffer {index} runs past the end of the file (truncated?)")
        return data[start:start + size]

    raw: list[Tensor] = []
    for i in range(subgraph.TensorsLength()):
        raw.append(_read_tensor(path, subgraph.Tensors(i), i, buffer_bytes))

    operators: list[Operator] = []
    num_tensors = len(raw)
    for i in range(subgraph.OperatorsLength()):
        op = subgraph.Operators(i)
        code_index = op.OpcodeIndex()
        if not 0 <= code_index < model.OperatorCodesLength():
            raise ModelFileError(f"{path}: operator {i} has an invalid opcode index {code_index}")
        code = model.OperatorCodes(code_index)
        # The builtin code field was widened in schema v3a; old files only fill the deprecated one.
        builtin = max(code.DeprecatedBuiltinCode(), code.BuiltinCode())
        kind = _OPERATOR_NAMES.get(builtin, f"BUILTIN_{builtin}")
        if builtin == BuiltinOperator.CUSTOM:
            kind = f"CUSTOM:{(code.CustomCode() or b'').decode(errors='replace')}"
        inputs = tuple(int(op.Inputs(j)) for j in range(op.InputsLength()))
        outputs = tuple(int(op.Outputs(j)) for j in range(op.OutputsLength()))
        for t in inputs + outputs:
            if not -1 <= t < num_tensors:
                raise ModelFileError(f"{path}: operator {i} ({kind}) refers to tensor {t}, file has {num_tensors}")
        operators.append(Operator(i, kind, inputs, outputs, _read_options(op)))

    tensors, operators = _fold_weight_storage(path, raw, operators)
    inputs = tuple(int(subgraph.Inputs(j)) for j in range(subgraph.InputsLength()))
    outputs = tuple(int(subgraph.Outputs(j)) for j in range(subgraph.OutputsLength()))
    for t in inputs + outputs:
        if not 0 <= t < num_tensors:
            raise ModelFileError(f"{path}: graph input/output refers to tensor {t}, file has {num_tensors}")
    metadata = tuple(
        (model.Metadata(j).Name() or b"").decode(errors="replace") for j in range(model.MetadataLength())
    )
    description = (model.Description() or b"").decode(errors="replace")
    return Graph(path, description, tuple(tensors), tuple(operators), inputs, outputs, metadata)


def _read_tensor(path: Path, t, index: int, buffer_bytes) -> Tensor:
    name = (t.Name() or b"").decode(errors="replace")
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
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if count > _MAX_TENSOR_ELEMENTS:
        raise ModelFileError(f"{path}: tensor '{name}' declares {count} elements, more than blazeconv accepts")
    if dtype.kind == "V":
        raise ModelFileError(f"{path}: constant tensor '{name}' has an unsupported type {t.Type()}")
    sparsity = t.Sparsity()
    if sparsity is not None:
        values = np.frombuffer(payload, dtype=dtype, count=len(payload) // dtype.itemsize)
        dense = _densify(path, name, shape, values, sparsity)
        return Tensor(index, name, shape, dtype, dense, stored_as=f"sparse {dtype.name}")
    if len(payload) != count * dtype.itemsize:
        raise ModelFileError(
            f"{path}: tensor '{name}' of shape {list(shape)} needs {count * dtype.itemsize} bytes, "
            f"its buffer holds {len(payload)}"
        )
    value = np.frombuffer(payload, dtype=dtype).reshape(shape).copy()
    return Tensor(index, name, shape, dtype, value, stored_as=dtype.name)


def _index_vector(path: Path, name: str, kind: int, table) -> np.ndarray:
    """Decode one ``SparseIndexVector`` union member (int32, uint16 or uint8 values)."""
    classes = {
        SparseIndexVector.Int32Vector: tflite.Int32Vector,
        SparseIndexVector.Uint16Vector: tflite.Uint16Vector,
        SparseIndexVector.Uint8Vector: tflite.Uint8Vector,
    }
    if kind not in classes or table is None:
        raise ModelFileError(f"{path}: sparse tensor '{name}' has an index vector of unknown type {kind}")
    vector = classes[kind]()
    vector.Init(table.Bytes, table.Pos)
    return np.asarray(vector.ValuesAsNumpy() if vector.ValuesLength() else [], dtype=np.int64)


def _densify(path: Path, name: str, shape: tuple[int, ...], values: np.ndarray, sparsity) -> np.ndarray:
    """Expand a sparse constant as TFLite's DENSIFY does (schema.fbs ``SparsityParameters``).

    The stored order is ``traversal_order`` over the original dimensions followed by block dimensions;
    ``block_map[k]`` names the original dimension block dimension k splits. Each traversal level is either
    DENSE (``dense_size`` positions) or SPARSE_CSR (``array_segments`` / ``array_indices``).
    """
    rank = len(shape)
    order = [int(v) for v in (sparsity.TraversalOrderAsNumpy() if sparsity.TraversalOrderLength() else [])]
    block_map = [int(v) for v in (sparsity.BlockMapAsNumpy() if sparsity.BlockMapLength() else [])]
    levels = sparsity.DimMetadataLength()
    if sorted(order) != list(range(rank + len(block_map))) or levels != len(order):
        raise ModelFileError(f"{path}: sparse tensor '{name}' has inconsistent traversal order / dimension metadata")
    if any(not 0 <= d < rank for d in block_map):
        raise ModelFileError(f"{path}: sparse tensor '{name}' has a block map outside its {rank} dimensions")

    # Per level: ('dense', size) or ('csr', segments, indices).
    meta = []
    for level in range(levels):
        dm = sparsity.DimMetadata(level)
        if dm.Format() == DimensionType.DENSE:
            meta.append(("dense", int(dm.DenseSize()), None, None))
        else:
            segments = _index_vector(path, name, dm.ArraySegmentsType(), dm.ArraySegments())
            indices = _index_vector(path, name, dm.ArrayIndicesType(), dm.ArrayIndices())
            meta.append(("csr", 0, segments, indices))

    # Size of each traversal dimension: dense_size for DENSE levels; for CSR levels the original
    # dimension's size (divided by its block size when the dimension is blocked).
    block_size = {block_map[k]: meta[order.index(rank + k)][1] for k in range(len(block_map))}
    level_size = []
    for level, dim in enumerate(order):
        if meta[level][0] == "dense":
            level_size.append(meta[level][1])
        elif dim < rank:
            level_size.append(shape[dim] // block_size.get(dim, 1))
        else:
            level_size.append(meta[level][1])

    # Walk the levels breadth-first, keeping for every stored position its coordinate at each level.
    coords = np.zeros((1, 0), dtype=np.int64)
    parents = np.zeros(1, dtype=np.int64)  # position index into the previous level's segments
    for level in range(levels):
        kind, size, segments, indices = meta[level]
        if kind == "dense":
            n = len(parents)
            child = (parents[:, None] * size + np.arange(size)[None, :]).reshape(-1)
            coord = np.tile(np.arange(size), n)
            coords = np.repeat(coords, size, axis=0)
        else:
            if len(segments) < parents.max(initial=-1) + 2 or np.any(np.diff(segments) < 0):
                raise ModelFileError(f"{path}: sparse tensor '{name}' has bad array_segments at level {level}")
            starts, ends = segments[parents], segments[parents + 1]
            counts = ends - starts
            if counts.sum() > len(indices) or (len(segments) and segments[-1] > len(indices)):
                raise ModelFileError(f"{path}: sparse tensor '{name}' has array_segments past its indices")
            child = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)]) if len(starts) else np.zeros(0, np.int64)
            coord = indices[child]
            coords = np.repeat(coords, counts, axis=0)
        if np.any(coord < 0) or np.any(coord >= max(level_size[level], 1)):
            raise ModelFileError(f"{path}: sparse tensor '{name}' has an index out of range at level {level}")
        coords = np.concatenate([coords, coord[:, None]], axis=1)
        parents = child

    if len(coords) != len(values):
        raise ModelFileError(
            f"{path}: sparse tensor '{name}' describes {len(coords)} values, its buffer holds {len(values)}"
        )
    # Original coordinate of dimension d: outer index (times block size) plus the block's inner index.
    dense_index = []
    for d in range(rank):
        outer = coords[:, order.index(d)]
        if d in block_size:
            k = block_map.index(d)
            outer = outer * block_size[d] + coords[:, order.index(rank + k)]
        dense_index.append(outer)
    result = np.zeros(shape, dtype=values.dtype)
    result[tuple(dense_index)] = values
    return result


def _read_options(op) -> dict:
    entry = _OPTION_FIELDS.get(op.BuiltinOptionsType())
    table = op.BuiltinOptions()
    if entry is None or table is None:
        return {}
    cls, fields = entry
    options = cls()
    options.Init(table.Bytes, table.Pos)
    return {key: getattr(options, accessor)() for key, accessor in fields.items()}


def _fold_weight_storage(path: Path, tensors: list[Tensor], operators: list[Operator]):
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
                tensors[target.index] = Tensor(
                    target.index, target.name, target.shape, np.dtype("<f4"),
                    source.data.astype(np.float32), stored_as=source.stored_as,
                )
                continue
        kept.append(op)
    return tensors, kept
