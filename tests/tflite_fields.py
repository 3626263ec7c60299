"""Where each field of a TFLite flatbuffer sits in the file, so tests can make it lie on purpose.

``field_map(data)`` walks a (valid) ``.tflite`` with the flatbuffers tables of the ``tflite`` package and
returns every scalar, vector length, vector element, offset and vtable slot it reaches as a ``Field``:
its byte position, width, signedness and a label (``subgraph 0 tensor 17 shape[2]``). The fuzz test
overwrites them with boundary values; the hardening tests overwrite chosen ones (a shape, a dense size).

Slot numbers are those of TensorFlow's ``tensorflow/lite/schema/schema.fbs`` (vtable offset
``4 + 2 * field id``), as the generated ``tflite`` accessors use them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import tflite


@dataclass(frozen=True)
class Field:
    """One field of the file: ``width`` bytes at ``pos``, little-endian; ``kind`` says what it holds."""

    pos: int
    width: int  # 1, 2, 4 or 8
    signed: bool
    kind: str  # scalar, index, shape, length, offset, vtable, enum, size
    label: str

    def read(self, data: bytes) -> int:
        return int.from_bytes(data[self.pos:self.pos + self.width], "little", signed=self.signed)

    def write(self, data: bytearray, value: int) -> None:
        """Store ``value`` wrapped to the field's width (so -1 in a uint32 field is 0xFFFFFFFF)."""
        value &= (1 << (8 * self.width)) - 1
        data[self.pos:self.pos + self.width] = value.to_bytes(self.width, "little")


# Per table type: slot -> (what the slot holds, label). Kinds: "i8"/"u8"/"i32"/"u32"/"u64" scalars,
# "vec_i32" a vector of int32, "string"/"bytes" a byte vector (its length is recorded), "table:<type>" a sub-table,
# "tables:<type>" a vector of sub-tables, "union:<type slot>" a union value (its table's scalars are recorded).
_SCHEMA: dict[str, dict[int, tuple[str, str]]] = {
    "Model": {4: ("u32", "version"), 6: ("tables:OperatorCode", "operator_codes"), 8: ("tables:SubGraph", "subgraphs"),
              10: ("string", "description"), 12: ("tables:Buffer", "buffers"), 14: ("vec_i32", "metadata_buffer"),
              16: ("tables:Metadata", "metadata")},
    "SubGraph": {4: ("tables:Tensor", "tensors"), 6: ("vec_i32", "inputs"), 8: ("vec_i32", "outputs"),
                 10: ("tables:Operator", "operators"), 12: ("string", "name")},
    "Tensor": {4: ("vec_i32", "shape"), 6: ("i8", "type"), 8: ("u32", "buffer"), 10: ("string", "name"),
               14: ("u8", "is_variable"), 16: ("table:SparsityParameters", "sparsity"),
               18: ("vec_i32", "shape_signature")},
    "Operator": {4: ("u32", "opcode_index"), 6: ("vec_i32", "inputs"), 8: ("vec_i32", "outputs"),
                 10: ("u8", "builtin_options_type"), 12: ("union:10", "builtin_options"), 14: ("bytes", "custom_options")},
    "OperatorCode": {4: ("i8", "deprecated_builtin_code"), 6: ("string", "custom_code"), 8: ("i32", "version"),
                     10: ("i32", "builtin_code")},
    "Buffer": {4: ("bytes", "data"), 6: ("u64", "offset"), 8: ("u64", "size")},
    "Metadata": {4: ("string", "name"), 6: ("u32", "buffer")},
    "SparsityParameters": {4: ("vec_i32", "traversal_order"), 6: ("vec_i32", "block_map"),
                           8: ("tables:DimensionMetadata", "dim_metadata")},
    "DimensionMetadata": {4: ("i8", "format"), 6: ("i32", "dense_size"), 8: ("u8", "array_segments_type"),
                          10: ("table:IndexVector", "array_segments"), 12: ("u8", "array_indices_type"),
                          14: ("table:IndexVector", "array_indices")},
    # Int32Vector / Uint16Vector / Uint8Vector: one "values" vector whose element width is the union type's.
    "IndexVector": {4: ("vec_index", "values")},
}

_KINDS_BY_NAME = {"shape": "shape", "shape_signature": "shape", "inputs": "index", "outputs": "index",
                  "buffer": "index", "opcode_index": "index", "metadata_buffer": "index", "dense_size": "size",
                  "traversal_order": "index", "block_map": "index", "type": "enum", "format": "enum",
                  "builtin_options_type": "enum", "array_segments_type": "enum", "array_indices_type": "enum",
                  "builtin_code": "enum", "deprecated_builtin_code": "enum", "offset": "size", "size": "size"}
_WIDTHS = {"i8": (1, True), "u8": (1, False), "i32": (4, True), "u32": (4, False), "u64": (8, False)}
# SparseIndexVector union: type -> element width (Int32Vector, Uint16Vector, Uint8Vector).
_INDEX_WIDTHS = {1: 4, 2: 2, 3: 1}


def field_map(data: bytes) -> list[Field]:
    """Every field reachable from the root table of the valid TFLite flatbuffer ``data``."""
    fields: list[Field] = [Field(0, 4, False, "offset", "root table offset")]
    model = tflite.Model.GetRootAsModel(data, 0)
    seen: set[int] = set()
    _walk(data, model._tab.Pos, "Model", "model", fields, seen)
    unique = {}
    for f in fields:  # vtables are shared between tables: keep each position once
        unique.setdefault((f.pos, f.width), f)
    return list(unique.values())


def _walk(data: bytes, pos: int, type_name: str, label: str, fields: list[Field], seen: set[int],
          element_width: int = 4) -> None:
    if pos in seen or not 0 <= pos < len(data) - 4:
        return
    seen.add(pos)
    vtable = pos - struct.unpack_from("<i", data, pos)[0]
    vtable_size = struct.unpack_from("<H", data, vtable)[0]
    fields.append(Field(vtable, 2, False, "vtable", f"{label} vtable size"))
    for slot in range(4, vtable_size, 2):
        fields.append(Field(vtable + slot, 2, False, "vtable", f"{label} vtable slot {slot}"))
    for slot, (what, name) in _SCHEMA[type_name].items():
        if slot >= vtable_size:
            continue
        rel = struct.unpack_from("<H", data, vtable + slot)[0]
        if rel == 0:
            continue
        at = pos + rel
        where = f"{label} {name}"
        if what in _WIDTHS:
            width, signed = _WIDTHS[what]
            fields.append(Field(at, width, signed, _KINDS_BY_NAME.get(name, "scalar"), where))
            continue
        fields.append(Field(at, 4, False, "offset", f"{where} offset"))
        target = at + struct.unpack_from("<I", data, at)[0]
        if what.startswith("table:"):
            width = 4
            if name in ("array_segments", "array_indices"):  # the union's type field is the slot before
                type_rel = struct.unpack_from("<H", data, vtable + slot - 2)[0]
                width = _INDEX_WIDTHS.get(data[pos + type_rel] if type_rel else 0, 0)
            _walk(data, target, what.split(":")[1], where, fields, seen, width)
        elif what.startswith("union:"):
            _walk_union(data, target, where, fields, seen)
        else:  # a vector: its length, then its elements
            length = struct.unpack_from("<I", data, target)[0]
            fields.append(Field(target, 4, False, "length", f"{where} length"))
            if what == "vec_i32":
                kind = _KINDS_BY_NAME.get(name, "scalar")
                for i in range(length):
                    fields.append(Field(target + 4 + 4 * i, 4, True, kind, f"{where}[{i}]"))
            elif what == "vec_index" and element_width:
                for i in range(length):
                    fields.append(Field(target + 4 + element_width * i, element_width, False, "index", f"{where}[{i}]"))
            elif what.startswith("tables:"):
                for i in range(length):
                    element = target + 4 + 4 * i
                    fields.append(Field(element, 4, False, "offset", f"{where}[{i}] offset"))
                    child = element + struct.unpack_from("<I", data, element)[0]
                    _walk(data, child, what.split(":")[1], f"{where}[{i}]", fields, seen)


def _walk_union(data: bytes, pos: int, label: str, fields: list[Field], seen: set[int]) -> None:
    """An options table: every field is a scalar of at most 4 bytes in the options BlazeFace uses."""
    if pos in seen or not 0 <= pos < len(data) - 4:
        return
    seen.add(pos)
    vtable = pos - struct.unpack_from("<i", data, pos)[0]
    vtable_size = struct.unpack_from("<H", data, vtable)[0]
    rels = [struct.unpack_from("<H", data, vtable + slot)[0] for slot in range(4, vtable_size, 2)]
    inline_size = struct.unpack_from("<H", data, vtable + 2)[0]
    present = sorted(r for r in rels if r)
    for i, rel in enumerate(present):
        end = present[i + 1] if i + 1 < len(present) else inline_size
        width = 4 if end - rel >= 4 else 1
        fields.append(Field(pos + rel, width, True, "scalar", f"{label} field at +{rel}"))


def buffer_ranges(data: bytes) -> list[tuple[int, int]]:
    """``(start, end)`` byte ranges of every buffer's data (the weights) inside ``data``."""
    model = tflite.Model.GetRootAsModel(data, 0)
    ranges = []
    for i in range(model.BuffersLength()):
        buf = model.Buffers(i)
        rel = buf._tab.Offset(4)
        if rel:
            start = buf._tab.Vector(rel)
            ranges.append((start, start + buf._tab.VectorLen(rel)))
    return ranges

