"""TFLite graph -> PyTorch state_dict, by a derivation from the graph's dataflow, checked both ways.

The graph is walked from its input: the stem convolution, then block after block (depthwise 3x3,
pointwise 1x1, an optional residual ADD whose other operand is the block input through MAX_POOL_2D
and/or a channel PAD, then RELU), then the head convolutions found by following each graph output back
through CONCATENATION and RESHAPE. Each convolution gets a structural address — ``stem``, ``block k
depthwise|pointwise``, ``head <output> #<position in the concatenation>`` — and the module names the
state_dict key of each address. Every key must be filled, every weight tensor used, every shape equal;
all gaps are reported together.

One module per part: ``walk`` (the dataflow walk and its addresses), here the match with an architecture, the
layouts both ways and the state_dict.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import UnsupportedModelError
from ..io import atomic_path, sha256_of
from ..network import ARCHITECTURES, build_model
from ..tflite_reader import Graph, Tensor, read_graph
from ..variants import VARIANTS, Variant
from .walk import ConvLayer, Structure, derive_structure

log = logging.getLogger(__name__)

# The layout change between a TFLite constant and its state_dict entry, both ways (schema.fbs: CONV_2D kernels are
# O,H,W,I and DEPTHWISE_CONV_2D kernels 1,H,W,C; torch's Conv2d weights are O,I,H,W, grouped ones C,1,H,W). Channel
# orders need nothing: the full-range heads' DEPTH_TO_SPACE order is undone inside the module's forward
# (``network.tflite_to_torch_depth_order``), so every state_dict entry holds the file's channels in the file's order.
_TO_TORCH = {"conv": (0, 3, 1, 2), "depthwise": (3, 0, 1, 2), "vector": (0,)}
_TO_TFLITE = {"conv": (0, 2, 3, 1), "depthwise": (1, 2, 3, 0), "vector": (0,)}


@dataclass(frozen=True)
class Parameter:
    """Where one state_dict entry lives in the file: its constant ``tensor`` (float32, weight storage folded away;
    ``tensor.storage`` is the tensor whose buffer holds the bytes) and the ``layout`` between the two: ``conv``
    (TFLite O,H,W,I <-> torch O,I,H,W), ``depthwise`` (1,H,W,C <-> C,1,H,W) or ``vector`` (biases, as they are)."""

    key: str
    tensor: Tensor
    layout: str

    def to_torch(self, value: np.ndarray) -> np.ndarray:
        """A value in the file's layout -> the state_dict's."""
        return value.transpose(_TO_TORCH[self.layout])

    def to_tflite(self, value: np.ndarray) -> np.ndarray:
        """A value in the state_dict's layout -> the file's (the inverse of ``to_torch``)."""
        return value.transpose(_TO_TFLITE[self.layout])


@dataclass(frozen=True)
class Conversion:
    """The result of converting one file. ``parameters``: for every state_dict key, where it is in the file."""

    variant: Variant
    recognised_by: str  # "checksum" (a shipped file) or "structure"
    state_dict: dict[str, torch.Tensor]
    weight_storage: str
    parameters: dict[str, Parameter] = field(default_factory=dict, repr=False, compare=False)


def _match_architecture(graph: Graph) -> tuple[str, Structure, dict[str, str]]:
    """Walk the graph as each candidate architecture of its input size would be walked; keep the one it equals."""
    where = str(graph.path)
    image_shape = graph.tensors[graph.inputs[0]].shape if len(graph.inputs) == 1 else ()
    size = image_shape[1] if len(image_shape) > 1 else None
    candidates = [name for name, cls in ARCHITECTURES.items() if cls.input_size == size]
    first_error, walked = None, []
    for name in candidates:
        module = build_model(name)
        expected = module.spec()
        try:
            structure = derive_structure(graph, double_blocks=any(b.mid_channels for b in expected.blocks))
        except UnsupportedModelError as exc:
            first_error = first_error or exc
            continue
        if structure.spec == expected:
            return name, structure, module.parameter_addresses()
        walked.append(structure)
    if first_error is not None and not walked:
        raise first_error
    if not candidates:
        structure = derive_structure(graph)  # says what is wrong with the graph, if anything
        walked.append(structure)
    spec = walked[0].spec
    raise UnsupportedModelError(
        f"{where}: a BlazeFace-like graph ({spec.input_size}x{spec.input_size} input, {len(spec.blocks)} blocks, "
        f"{walked[0].num_anchors} anchors) that matches no architecture blazeconv knows "
        f"({', '.join(f'{c.architecture} {c.input_size}px' for c in ARCHITECTURES.values())})"
    )


def _weight_storage(layers: tuple[ConvLayer, ...]) -> str:
    kinds = sorted({layer.kernel.stored_as for layer in layers} | {layer.bias.stored_as for layer in layers})
    return "/".join(kinds)


def recognise(graph: Graph, structure: Structure, architecture: str, sha256: str | None) -> tuple[Variant, str]:
    """Which named variant the file is: by checksum for the shipped files, else by structure and weight storage."""
    for variant in VARIANTS.values():
        if sha256 is not None and variant.sha256 == sha256:
            if variant.architecture != architecture:
                raise UnsupportedModelError(f"{graph.path}: checksum of {variant.tflite_file} but not its structure")
            return variant, "checksum"
    candidates = [v for v in VARIANTS.values() if v.architecture == architecture]
    storage = _weight_storage(structure.layers)
    by_storage = [v for v in candidates if v.weight_storage == storage]
    chosen = (by_storage or candidates)[0]
    if chosen.num_anchors != structure.num_anchors:
        raise UnsupportedModelError(
            f"{graph.path}: {architecture} graph with {structure.num_anchors} anchors, expected {chosen.num_anchors}"
        )
    return chosen, "structure"


def convert_graph(graph: Graph, sha256: str | None = None) -> Conversion:
    """Derive the state_dict of ``graph``; one ``UnsupportedModelError`` lists every gap if it does not fit."""
    where = str(graph.path)
    architecture, structure, keys = _match_architecture(graph)
    variant, recognised_by = recognise(graph, structure, architecture, sha256)
    expected = build_model(architecture).state_dict()

    state_dict: dict[str, torch.Tensor] = {}
    parameters: dict[str, Parameter] = {}
    problems: list[str] = []
    used: set[int] = set()
    for layer in structure.layers:
        prefix = keys.get(layer.address)
        if prefix is None:
            problems.append(f"unused tensors '{layer.kernel.name}', '{layer.bias.name}' ({layer.address} has no key)")
            continue
        kernel_layout = "depthwise" if layer.op.kind == "DEPTHWISE_CONV_2D" else "conv"
        for parameter in (Parameter(f"{prefix}.weight", layer.kernel, kernel_layout),
                          Parameter(f"{prefix}.bias", layer.bias, "vector")):
            key, tensor = parameter.key, parameter.tensor
            value = parameter.to_torch(tensor.data)  # (O, I, H, W), (C, 1, H, W) or (O,)
            if key not in expected:
                problems.append(f"'{tensor.name}' maps to unknown key {key}")
            elif tuple(value.shape) != tuple(expected[key].shape):
                problems.append(f"'{tensor.name}' gives {key} shape {list(value.shape)}, expected {list(expected[key].shape)}")
            else:
                state_dict[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
                parameters[key] = parameter
            used.add(tensor.index)
    unfilled = [k for k in expected if k not in state_dict]
    if unfilled:
        problems.append(f"unfilled keys {', '.join(unfilled)}")
    unused = sorted(
        {graph.tensors[t].name for op in graph.operators for t in op.inputs
         if t >= 0 and t not in used and graph.tensors[t].data is not None and graph.tensors[t].data.dtype.kind == "f"}
    )
    if unused:
        problems.append(f"unused weight tensors {', '.join(unused)}")
    if problems:
        raise UnsupportedModelError(f"{where}: cannot map the file onto {architecture}: " + "; ".join(problems))
    log.info("%s: %s (%s), %d tensors", where, variant.name, recognised_by, len(state_dict))
    return Conversion(variant, recognised_by, state_dict, _weight_storage(structure.layers), parameters)


def convert_file(path: str | Path) -> Conversion:
    """Read and convert the TFLite file at ``path`` (the ``tflite2torch`` stage)."""
    graph = read_graph(path)
    return convert_graph(graph, sha256_of(path))


def save_state_dict(state_dict: dict[str, torch.Tensor], path: str | Path) -> None:
    """Save a plain state_dict (loadable with ``torch.load(path, weights_only=True)``), atomically."""
    with atomic_path(path) as tmp:
        torch.save(state_dict, tmp)
