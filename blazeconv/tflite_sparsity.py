"""TFLite's sparse constants (``SparsityParameters`` in ``tensorflow/lite/schema/schema.fbs``): ``densify`` expands
one as the DENSIFY operator does, every piece of its metadata checked against the tensor's shape first;
``stored_positions`` says where each stored value goes, which ``tflite_writer`` uses the other way round (a dense
tensor's values at those positions, in the same order, are what the file stores)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import tflite
from tflite.DimensionType import DimensionType
from tflite.SparseIndexVector import SparseIndexVector

from .errors import ModelFileError


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


def densify(path: Path, name: str, shape: tuple[int, ...], values: np.ndarray, sparsity) -> np.ndarray:
    """Expand a sparse constant as TFLite's DENSIFY does (schema.fbs ``SparsityParameters``): ``values`` (the stored
    values, in storage order) put at their ``stored_positions`` of a zero tensor of ``shape``."""
    result = np.zeros(shape, dtype=values.dtype)
    result[stored_positions(path, name, shape, len(values), sparsity)] = values
    return result


def stored_positions(path: Path, name: str, shape: tuple[int, ...], stored: int, sparsity) -> tuple[np.ndarray, ...]:
    """Where each of the ``stored`` values of a sparse constant of ``shape`` goes: one int64 array of ``stored``
    coordinates per dimension (a numpy index), in storage order. ``ModelFileError`` if the metadata does not describe
    exactly ``stored`` values. A well-formed file never stores two values at one position; that is not checked
    here (DENSIFY keeps the last), ``tflite_writer`` checks it before writing.

    The stored order is ``traversal_order`` over the original dimensions followed by block dimensions;
    ``block_map[k]`` names the original dimension block dimension k splits. Each traversal level is either
    DENSE (``dense_size`` positions) or SPARSE_CSR (``array_segments`` / ``array_indices``).

    The metadata is checked against ``shape`` before the walk (level sizes multiply to the element count, block
    sizes divide their dimension) and every level against the positions it can hold, so no array the walk
    builds is larger than the dense tensor, which the caller has already checked.
    """
    rank = len(shape)
    count = math.prod(shape)

    def bad(what: str) -> ModelFileError:
        return ModelFileError(f"{path}: sparse tensor '{name}' {list(shape)} has {what}")

    order = [int(v) for v in (sparsity.TraversalOrderAsNumpy() if sparsity.TraversalOrderLength() else [])]
    block_map = [int(v) for v in (sparsity.BlockMapAsNumpy() if sparsity.BlockMapLength() else [])]
    levels = sparsity.DimMetadataLength()
    if sorted(order) != list(range(rank + len(block_map))) or levels != len(order):
        raise bad("an inconsistent traversal order / dimension metadata")
    if any(not 0 <= d < rank for d in block_map) or len(set(block_map)) != len(block_map):
        raise bad(f"a block map {block_map} that does not name distinct dimensions of {rank}")

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

    # A block dimension is DENSE with dense_size = the block size, which divides the dimension it splits.
    block_size = {}
    for k, d in enumerate(block_map):
        kind, size, _, _ = meta[order.index(rank + k)]
        if kind != "dense" or size < 1 or shape[d] % size:
            raise bad(f"block dimension {k} of size {size} (dense: {kind == 'dense'}) for dimension {d} of {shape[d]}")
        block_size[d] = size
    # Size of each traversal dimension: the original dimension's (over its block size), or the block size. A
    # DENSE level must declare exactly that size.
    level_size = [shape[dim] // block_size.get(dim, 1) if dim < rank else block_size[block_map[dim - rank]] for dim in order]
    for level, (kind, size, _, _) in enumerate(meta):
        if kind == "dense" and size != level_size[level]:
            raise bad(f"dense_size {size} at level {level}, expected {level_size[level]}")
    if math.prod(level_size) != count:
        raise bad(f"traversal sizes {level_size} that do not cover its {count} elements")

    # Walk the levels breadth-first, keeping for every stored position its coordinate at each level.
    coords = np.zeros((1, 0), dtype=np.int64)
    parents = np.zeros(1, dtype=np.int64)  # position index into the previous level's segments
    reachable = 1  # positions the levels so far can address: a bound on the positions stored
    for level in range(levels):
        kind, size, segments, indices = meta[level]
        reachable *= level_size[level]
        if kind == "dense":
            child = (parents[:, None] * size + np.arange(size)[None, :]).reshape(-1)
            coord = np.tile(np.arange(size), len(parents))
            coords = np.repeat(coords, size, axis=0)
        else:
            if len(segments) < parents.max(initial=-1) + 2 or np.any(np.diff(segments) < 0) or np.any(segments < 0):
                raise bad(f"bad array_segments at level {level}")
            if len(segments) and segments[-1] > len(indices):
                raise bad(f"array_segments past its indices at level {level}")
            starts, ends = segments[parents], segments[parents + 1]
            counts = ends - starts
            total = int(counts.sum())
            if total > reachable:
                raise bad(f"{total} positions at level {level}, more than its {reachable} places")
            # child = concatenation of range(start, end) for every parent, without a Python loop
            child = np.arange(total, dtype=np.int64) + np.repeat(starts - (np.cumsum(counts) - counts), counts)
            coord = indices[child]
            coords = np.repeat(coords, counts, axis=0)
        if np.any(coord < 0) or np.any(coord >= max(level_size[level], 1)):
            raise bad(f"an index out of range at level {level}")
        coords = np.concatenate([coords, coord[:, None]], axis=1)
        parents = child

    if len(coords) != stored:
        raise bad(f"metadata describing {len(coords)} values, its buffer holds {stored}")
    # Original coordinate of dimension d: outer index (times block size) plus the block's inner index.
    dense_index = []
    for d in range(rank):
        outer = coords[:, order.index(d)]
        if d in block_size:
            k = block_map.index(d)
            outer = outer * block_size[d] + coords[:, order.index(rank + k)]
        dense_index.append(outer)
    return tuple(dense_index)


__all__ = ["densify", "stored_positions"]
