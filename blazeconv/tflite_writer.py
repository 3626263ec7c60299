"""PyTorch state_dict -> TFLite: new weights written into a copy of a BlazeFace ``.tflite`` (``torch2tflite``).

The inverse of ``convert``: the source file (``like``) is walked as ``tflite2torch`` walks it, which says for every
state_dict key which constant tensor holds it and with which layout (``convert.Parameter``); each new value is put
back in the file's layout and encoded as the file stores that constant — float32, float16 behind DEQUANTIZE (rounded
to nearest, ties to even, as numpy's ``astype``), or sparse behind DENSIFY (the values at the pattern's positions,
in the same storage order: ``tflite_sparsity.stored_positions``) — and its bytes replace the old ones in place.
Every new value takes exactly the bytes the old one took, so the flatbuffer's layout does not move: operators,
tensors, sparsity metadata, TFLite metadata and every byte outside the weights' buffers stay as they were, and
``torch2tflite(tflite2torch(x), like=x)`` is ``x`` byte for byte.

Weights that do not fit are refused with one ``WeightsError`` (exit 5) naming every difference: missing and
unexpected keys, wrong shapes, values a float16 constant cannot hold, and for sparse constants every tensor with a
nonzero where the file's sparsity pattern has no place (its zeros moved). What was written is read back with the
converter before the file appears; anything but the expected weights is a bug, never a quiet wrong file.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .convert import Conversion, Parameter, convert_graph
from .errors import UnsupportedModelError, WeightsError
from .io import atomic_path, check_folder, refuse_overwriting
from .network.weights import architecture_of, state_dict_problems
from .sources import load_state_dict, resolve
from .tflite_reader import buffer_span, read_graph
from .tflite_sparsity import stored_positions
from .variants import Variant

log = logging.getLogger(__name__)

_FLOAT16_MAX = float(np.finfo(np.float16).max)  # 65504: a larger finite value would be stored as infinity
_STORED_DTYPES = (np.dtype("<f4"), np.dtype("<f2"))


@dataclass(frozen=True)
class WrittenModel:
    """What ``torch2tflite`` wrote.

    ``path``: the new file; ``like``: the file whose flatbuffer it copies, recognised as ``variant`` (by
    ``recognised_by``: ``checksum`` or ``structure``); ``tensors``: weight tensors written (one per state_dict
    entry), ``changed`` of them with other bytes than before, ``bytes_changed`` bytes in all; ``weight_storage``: how
    the file stores them (``float16``, ``float32``, ``sparse float16/float16``); ``float16_rounding``: the largest
    ``|float16(w) - w|`` over the weights stored as float16 (0.0 when none is).
    """

    path: Path
    like: Path
    variant: Variant
    recognised_by: str
    tensors: int
    changed: int
    bytes_changed: int
    weight_storage: str
    float16_rounding: float


@dataclass(frozen=True)
class _Encoded:
    """One parameter's new bytes and where they go: ``buffer`` index, ``start`` byte offset in the file."""

    key: str
    buffer: int
    start: int
    payload: bytes
    rounding: float  # largest |stored - value| (float16 storage), 0.0 for float32


def torch2tflite(weights: Any, like: str | Path | Variant, output: str | Path) -> WrittenModel:
    """Write ``weights`` into a copy of the BlazeFace ``like`` and save it as ``output`` (atomically).

    ``weights``: a ``.pth`` state_dict path, a state_dict (``{key: tensor}``), or a torch module (its
    ``state_dict()``); ``like``: a shipped variant name (or ``Variant``) or a BlazeFace ``.tflite`` that
    ``tflite2torch`` reads. The weights must be of ``like``'s architecture, key for key and shape for shape
    (``WeightsError``, exit 5, naming every difference). ``output`` is never one of the inputs (``PathUsageError``).
    """
    source = resolve(like, role="tflite")
    like_path = source.path
    output = Path(output)
    check_folder(output)
    if isinstance(weights, (str, Path)):
        weights_path = Path(weights)
        refuse_overwriting([("-o", output)], [("--like", like_path), ("the weights", weights_path)])
        state_dict, name = load_state_dict(weights_path), str(weights_path)
    else:
        refuse_overwriting([("-o", output)], [("--like", like_path)])
        state_dict = weights.state_dict() if hasattr(weights, "state_dict") and not isinstance(weights, Mapping) else weights
        name = "the state_dict" if isinstance(weights, Mapping) else f"the {type(weights).__name__}'s state_dict"
        if not isinstance(state_dict, Mapping):
            raise WeightsError(f"weights must be a .pth path, a state_dict or a torch module; got a {type(weights).__name__}")
    data = like_path.read_bytes()
    new, conversion, encoded = replace_weights(state_dict, like_path, data, name)
    _check_written(new, conversion, state_dict, output)
    with atomic_path(output) as tmp:
        tmp.write_bytes(new)
    changed = [e for e in encoded if data[e.start:e.start + len(e.payload)] != e.payload]
    bytes_changed = int(np.count_nonzero(np.frombuffer(new, np.uint8) != np.frombuffer(data, np.uint8)))
    written = WrittenModel(
        output, like_path, conversion.variant, conversion.recognised_by, len(encoded), len(changed), bytes_changed,
        conversion.weight_storage, max((e.rounding for e in encoded), default=0.0),
    )
    log.info("%s: %d of %d weight tensors changed (like %s)", output, written.changed, written.tensors, like_path)
    return written


def replace_weights(state_dict: Mapping, like: Path, data: bytes, source: str = "the state_dict"
                    ) -> tuple[bytes, Conversion, list[_Encoded]]:
    """``data`` (the bytes of the BlazeFace file ``like``) with every weight replaced by ``state_dict``'s.

    Returns the new bytes (the same length: only weight buffers change), the conversion of ``like`` (which key is
    which tensor) and each parameter's new bytes. ``WeightsError`` names every difference between the weights and
    the file; ``ModelFileError`` / ``UnsupportedModelError`` come from reading ``like``.
    """
    import hashlib

    import tflite

    graph = read_graph(like, data)
    conversion = convert_graph(graph, hashlib.sha256(data).hexdigest())
    _check_keys_and_shapes(state_dict, conversion, like, source)

    model = tflite.Model.GetRootAsModel(data, 0)
    subgraph = model.Subgraphs(0)
    users = _buffer_users(model)
    encoded, problems = [], []
    for key, parameter in conversion.parameters.items():
        value = state_dict[key].detach().to("cpu").float().numpy()  # torch layout, float32
        stored = subgraph.Tensors(parameter.tensor.storage)
        buffer = stored.Buffer()
        start, size = buffer_span(like, model, buffer, len(data))
        dtype = graph.tensors[parameter.tensor.storage].dtype
        result = _encode(parameter, dtype, stored.Sparsity(), size, parameter.to_tflite(value), like)
        if isinstance(result, str):
            problems.append(f"{key} ('{parameter.tensor.name}'): {result}")
            continue
        payload, rounding = result
        if len(payload) != size:  # the layout must not move: same tensor, same storage, same byte count
            raise AssertionError(f"{like}: {key} encodes to {len(payload)} bytes, its buffer {buffer} holds {size}")
        encoded.append(_Encoded(key, buffer, start, payload, rounding))
    problems += _shared_buffer_problems(encoded, users, data)
    if problems:
        raise WeightsError(f"{source}: cannot be written into {like} ({conversion.variant.architecture}): "
                           + "; ".join(problems))
    new = bytearray(data)
    for e in encoded:
        new[e.start:e.start + len(e.payload)] = e.payload
    return bytes(new), conversion, encoded


def _check_keys_and_shapes(state_dict: Mapping, conversion: Conversion, like: Path, source: str) -> None:
    """Every key of the file's architecture with its shape and a float dtype, nothing else; all gaps together."""
    expected = {key: tuple(value.shape) for key, value in conversion.state_dict.items()}
    problems = state_dict_problems(state_dict, expected,
                                   lambda key: f"the file's '{conversion.parameters[key].tensor.name}' needs")
    missing_or_unexpected = set(expected) != set(state_dict)
    if problems:
        architecture = conversion.variant.architecture
        theirs = ""
        if missing_or_unexpected:
            try:
                found = architecture_of(dict(state_dict), source)
                theirs = f" (they are {found} weights)" if found != architecture else ""
            except WeightsError:
                theirs = " (they are no BlazeFace weights blazeconv knows)"
        raise WeightsError(f"{source}: weights do not fit {like} ({conversion.variant.name}, {architecture}){theirs}: "
                           + "; ".join(problems))


def _encode(parameter: Parameter, dtype: np.dtype, sparsity, size: int, value: np.ndarray, like: Path
            ) -> tuple[bytes, float] | str:
    """``value`` (the file's layout, float32) as the file stores ``parameter``'s constant (``dtype``; ``sparsity``: its
    ``SparsityParameters`` or None; ``size``: its buffer's bytes): ``(bytes, rounding)``, or what is wrong as a phrase."""
    if dtype not in _STORED_DTYPES:
        raise UnsupportedModelError(f"{like}: '{parameter.tensor.name}' is stored as {dtype}, which blazeconv cannot write")
    if dtype == np.float16:
        finite = np.abs(value[np.isfinite(value)])
        if finite.size and finite.max() > _FLOAT16_MAX:
            return f"values up to {finite.max():g}, beyond the {_FLOAT16_MAX:g} a float16 constant holds"
    cast = value.astype(dtype)  # float16: round to nearest, ties to even
    with np.errstate(invalid="ignore"):
        rounding = float(np.nanmax(np.abs(cast.astype(np.float32) - value), initial=0.0))
    if sparsity is not None:
        positions = _positions(parameter, sparsity, size // dtype.itemsize, like)
        outside = np.ones(value.shape, dtype=bool)
        outside[positions] = False
        moved = outside & (value != 0)
        if moved.any():
            first = [int(i) for i in np.argwhere(parameter.to_torch(moved))[0]]  # in the state_dict's layout
            return (f"{int(moved.sum())} nonzero values where the file's sparsity pattern has no place (its zeros "
                    f"moved), the first at {first}")
        cast = cast[positions]  # (stored,): the values in storage order
    return np.ascontiguousarray(cast).tobytes(), rounding


def _positions(parameter: Parameter, sparsity, stored: int, like: Path) -> tuple[np.ndarray, ...]:
    """Where each of the sparse constant's ``stored`` values goes; each position once, or the file cannot be written
    back (two stored values at one place: DENSIFY keeps one, so the other's bytes could not be reproduced)."""
    shape = parameter.tensor.shape
    name = parameter.tensor.name
    positions = stored_positions(like, name, shape, stored, sparsity)
    flat = np.ravel_multi_index(positions, shape) if stored else np.zeros(0, np.int64)
    if len(np.unique(flat)) != stored:
        raise UnsupportedModelError(f"{like}: sparse tensor '{name}' stores two values at one position")
    return positions


def _buffer_users(model) -> dict[int, int]:
    """How many tensors (of every subgraph) read each buffer."""
    users: dict[int, int] = {}
    for g in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(g)
        for t in range(subgraph.TensorsLength()):
            buffer = subgraph.Tensors(t).Buffer()
            users[buffer] = users.get(buffer, 0) + 1
    return users


def _shared_buffer_problems(encoded: list[_Encoded], users: dict[int, int], data: bytes) -> list[str]:
    """A buffer several tensors share (a converter's deduplication) can change only if all its readers are weights
    given the same new bytes; BlazeFace's files share none, but a file may."""
    by_buffer: dict[int, list[_Encoded]] = {}
    for e in encoded:
        by_buffer.setdefault(e.buffer, []).append(e)
    problems = []
    for buffer, group in by_buffer.items():
        if len({e.payload for e in group}) > 1:
            problems.append(f"{', '.join(e.key for e in group)} share one buffer in the file, so they must be equal; "
                            "they differ")
        elif users.get(buffer, 0) > len(group) and group[0].payload != data[group[0].start:group[0].start + len(group[0].payload)]:
            problems.append(f"{group[0].key} shares its buffer with a tensor that is no weight, so it cannot change")
    return problems


def _check_written(new: bytes, conversion: Conversion, state_dict: Mapping, output: Path) -> None:
    """Read the new bytes back as ``tflite2torch`` would: every weight must be the state_dict's, rounded as stored.

    A difference is a bug in this module (``AssertionError``, exit 70), never a file handed to the user."""
    back = convert_graph(read_graph(output, new))
    if set(back.state_dict) != set(conversion.state_dict):
        raise AssertionError(f"{output}: the written file no longer has the source's structure")
    for key, parameter in conversion.parameters.items():
        dtype = np.float16 if parameter.tensor.stored_as.endswith("float16") else np.float32
        expected = state_dict[key].detach().to("cpu").float().numpy().astype(dtype).astype(np.float32)
        if not np.array_equal(back.state_dict[key].numpy(), expected, equal_nan=True):
            raise AssertionError(f"{output}: {key} reads back other than written")


__all__ = ["WrittenModel", "replace_weights", "torch2tflite"]
