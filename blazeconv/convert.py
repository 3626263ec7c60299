"""TFLite graph -> PyTorch state_dict, by a derivation from the graph's dataflow, checked both ways.

The graph is walked from its input: the stem convolution, then block after block (depthwise 3x3,
pointwise 1x1, an optional residual ADD whose other operand is the block input through MAX_POOL_2D
and/or a channel PAD, then RELU), then the head convolutions found by following each graph output back
through CONCATENATION and RESHAPE. Each convolution gets a structural address — ``stem``, ``block k
depthwise|pointwise``, ``head <output> #<position in the concatenation>`` — and the module names the
state_dict key of each address. Every key must be filled, every weight tensor used, every shape equal;
all gaps are reported together.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import UnsupportedModelError
from .io import atomic_path, sha256_of
from .model import ARCHITECTURES, BlazeFaceBase, build_model
from .tflite_reader import Graph, Operator, Tensor, read_graph
from .variants import VARIANTS, Variant

log = logging.getLogger(__name__)

_NO_ACTIVATION = 0  # tflite ActivationFunctionType.NONE
_PADDING_SAME = 0  # tflite Padding.SAME


@dataclass(frozen=True)
class ConvLayer:
    """One convolution of the file: where it sits in the network, and its float32 constants."""

    address: str
    op: Operator
    kernel: Tensor
    bias: Tensor


@dataclass(frozen=True)
class BlockSpec:
    """A block as the file has it: ``in_channels -> out_channels`` at ``stride``, with or without residual."""

    in_channels: int
    out_channels: int
    stride: int
    residual: bool


@dataclass(frozen=True)
class Structure:
    """What the dataflow walk found: sizes, the block sequence and every convolution."""

    input_size: int
    num_anchors: int
    stem_channels: int
    blocks: tuple[BlockSpec, ...]
    layers: tuple[ConvLayer, ...]


@dataclass(frozen=True)
class Conversion:
    """The result of converting one file."""

    variant: Variant
    recognised_by: str  # "checksum" (a shipped file) or "structure"
    state_dict: dict[str, torch.Tensor]
    weight_storage: str


class _Walker:
    """Walks a BlazeFace graph; every surprise is an ``UnsupportedModelError`` saying what was expected."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.where = str(graph.path)

    def fail(self, expected: str, found: str) -> UnsupportedModelError:
        return UnsupportedModelError(
            f"{self.where}: not a supported BlazeFace face detector: expected {expected}, found {found}"
        )

    def tensor(self, index: int) -> Tensor:
        return self.graph.tensors[index]

    def only_consumer(self, tensor: int, kinds: tuple[str, ...]) -> Operator:
        ops = self.graph.consumers(tensor)
        if len(ops) != 1 or ops[0].kind not in kinds:
            found = ", ".join(op.kind for op in ops) or "nothing"
            raise self.fail(f"'{self.tensor(tensor).name}' to feed one {'/'.join(kinds)}", found)
        return ops[0]

    def constant(self, op: Operator, position: int, what: str) -> Tensor:
        if position >= len(op.inputs) or op.inputs[position] < 0:
            raise self.fail(f"a {what} input on {op.kind} #{op.index}", "none")
        t = self.tensor(op.inputs[position])
        if t.data is None or t.data.dtype.kind != "f":
            raise self.fail(f"a constant float {what} on {op.kind} #{op.index}", f"'{t.name}'")
        return t

    def conv(self, op: Operator, address: str, kernel_size: int, stride: int) -> ConvLayer:
        """Check a CONV_2D / DEPTHWISE_CONV_2D's options and return it as a layer."""
        o = op.options
        expected = dict(stride_h=stride, stride_w=stride, dilation_h=1, dilation_w=1, activation=_NO_ACTIVATION)
        if kernel_size > 1:
            expected["padding"] = _PADDING_SAME
        if op.kind == "DEPTHWISE_CONV_2D":
            expected["depth_multiplier"] = 1
        wrong = {k: o.get(k) for k, v in expected.items() if o.get(k) != v}
        if wrong:
            raise self.fail(f"{address} ({op.kind} #{op.index}) with {expected}", f"{wrong}")
        kernel, bias = self.constant(op, 1, "kernel"), self.constant(op, 2, "bias")
        if len(kernel.shape) != 4 or kernel.shape[1:3] != (kernel_size, kernel_size):
            raise self.fail(f"a {kernel_size}x{kernel_size} kernel for {address}", f"shape {list(kernel.shape)}")
        return ConvLayer(address, op, kernel, bias)

    def activated(self, tensor: int) -> int:
        """The tensor after the RELU that must follow ``tensor``."""
        return self.only_consumer(tensor, ("RELU",)).outputs[0]

    def walk(self) -> Structure:
        g = self.graph
        if len(g.inputs) != 1:
            raise self.fail("one input image tensor", f"{len(g.inputs)} inputs")
        image = self.tensor(g.inputs[0])
        if len(image.shape) != 4 or image.shape[0] != 1 or image.shape[3] != 3 or image.shape[1] != image.shape[2]:
            raise self.fail("an input of shape [1, S, S, 3]", f"{list(image.shape)}")
        size = image.shape[1]
        outputs = self.outputs()
        num_anchors = self.tensor(outputs["regressors"]).shape[1]

        stem_op = self.only_consumer(image.index, ("CONV_2D",))
        layers = [self.conv(stem_op, "stem", 5, 2)]
        stem_channels = layers[0].kernel.shape[0]
        x = self.activated(stem_op.outputs[0])
        blocks: list[BlockSpec] = []
        activations = {x}
        while True:
            depthwise = [op for op in g.consumers(x) if op.kind == "DEPTHWISE_CONV_2D"]
            if not depthwise:
                break
            if len(depthwise) > 1:
                raise self.fail(f"one depthwise convolution reading '{self.tensor(x).name}'", f"{len(depthwise)}")
            block, layer_pair, x = self.block(len(blocks), depthwise[0], x)
            blocks.append(block)
            layers += layer_pair
            activations.add(x)
        layers += self.heads(outputs, activations)
        return Structure(size, num_anchors, stem_channels, tuple(blocks), tuple(layers))

    def block(self, k: int, dw: Operator, x: int) -> tuple[BlockSpec, list[ConvLayer], int]:
        in_shape, dw_shape = self.tensor(x).shape, self.tensor(dw.outputs[0]).shape
        stride = dw.options.get("stride_h", 1)
        dw_layer = self.conv(dw, f"block {k} depthwise", 3, stride)
        pw = self.only_consumer(dw.outputs[0], ("CONV_2D",))
        pw_layer = self.conv(pw, f"block {k} pointwise", 1, 1)
        out = pw.outputs[0]
        in_channels, out_channels = in_shape[3], self.tensor(out).shape[3]
        after = self.only_consumer(out, ("ADD", "RELU"))
        residual = after.kind == "ADD"
        if residual:
            if after.options.get("activation", 0) != _NO_ACTIVATION:
                raise self.fail(f"block {k}'s ADD without fused activation", f"{after.options}")
            skip = [t for t in after.inputs if t != out]
            if len(skip) != 1:
                raise self.fail(f"block {k}'s ADD to take the block output and a skip", f"{after.inputs}")
            self.check_skip(k, skip[0], x, stride, out_channels - in_channels)
            result = self.activated(after.outputs[0])
        else:
            result = after.outputs[0]
        if dw_shape[1] * stride != in_shape[1] and -(-in_shape[1] // stride) != dw_shape[1]:
            raise self.fail(f"block {k} to map {in_shape[1]} pixels to {in_shape[1] // stride}", f"{dw_shape[1]}")
        return BlockSpec(in_channels, out_channels, stride, residual), [dw_layer, pw_layer], result

    def check_skip(self, k: int, skip: int, x: int, stride: int, extra_channels: int) -> None:
        """The skip must be the block input, 2x2-max-pooled when stride 2, zero-padded when channels grow."""
        if extra_channels:
            pad = self.graph.producer(skip)
            paddings = self.tensor(pad.inputs[1]).data if pad is not None and pad.kind == "PAD" else None
            want = np.array([[0, 0], [0, 0], [0, 0], [0, extra_channels]])
            if paddings is None or paddings.shape != (4, 2) or not np.array_equal(paddings, want):
                raise self.fail(f"block {k}'s skip to pad {extra_channels} channels", f"{paddings}")
            skip = pad.inputs[0]
        if stride == 2:
            pool = self.graph.producer(skip)
            o = pool.options if pool is not None else {}
            if pool is None or pool.kind != "MAX_POOL_2D" or (o.get("filter_h"), o.get("filter_w"), o.get("stride_h")) != (2, 2, 2):
                raise self.fail(f"block {k}'s skip to be a 2x2 stride-2 MAX_POOL_2D", pool.kind if pool else "none")
            skip = pool.inputs[0]
        if skip != x:
            raise self.fail(f"block {k}'s skip to start at the block input", f"'{self.tensor(skip).name}'")

    def outputs(self) -> dict[str, int]:
        """The regressors ``[1, N, 16]`` and classificators ``[1, N, 1]`` outputs, told apart by shape."""
        found = {}
        for t in self.graph.outputs:
            shape = self.tensor(t).shape
            if len(shape) == 3 and shape[0] == 1 and shape[2] in (16, 1):
                found["regressors" if shape[2] == 16 else "classificators"] = t
        shapes = [list(self.tensor(t).shape) for t in self.graph.outputs]
        if len(self.graph.outputs) != 2 or len(found) != 2:
            raise self.fail("outputs [1, N, 16] (regressors) and [1, N, 1] (classificators)", f"outputs {shapes}")
        if self.tensor(found["regressors"]).shape[1] != self.tensor(found["classificators"]).shape[1]:
            raise self.fail("regressors and classificators for the same anchors", f"outputs {shapes}")
        return found

    def heads(self, outputs: dict[str, int], activations: set[int]) -> list[ConvLayer]:
        layers = []
        for name, tensor in outputs.items():
            concat = self.graph.producer(tensor)
            parts = list(concat.inputs) if concat is not None and concat.kind == "CONCATENATION" else [tensor]
            for position, part in enumerate(parts):
                reshape = self.graph.producer(part)
                if reshape is None or reshape.kind != "RESHAPE":
                    raise self.fail(f"{name} part {position} to come from a RESHAPE", reshape.kind if reshape else "none")
                conv = self.graph.producer(reshape.inputs[0])
                if conv is None or conv.kind != "CONV_2D" or conv.inputs[0] not in activations:
                    raise self.fail(f"{name} part {position} to be a 1x1 CONV_2D on a block output", conv.kind if conv else "none")
                layers.append(self.conv(conv, f"head {name} #{position}", 1, 1))
        return layers


def derive_structure(graph: Graph) -> Structure:
    """Walk ``graph`` and describe it; ``UnsupportedModelError`` if it is not a BlazeFace of the known shape."""
    return _Walker(graph).walk()


def _module_structure(module: BlazeFaceBase) -> tuple[tuple[BlockSpec, ...], dict[str, str]]:
    """The module's blocks, and the state_dict prefix of every address the walk can produce."""
    specs, keys = [], {}
    stem_key, _ = module.stem()
    keys["stem"] = stem_key
    for k, (prefix, block) in enumerate(module.blocks()):
        dw, pw = block.convs
        specs.append(BlockSpec(dw.in_channels, pw.out_channels, block.stride, block.residual))
        keys[f"block {k} depthwise"] = f"{prefix}.convs.0"
        keys[f"block {k} pointwise"] = f"{prefix}.convs.1"
    for (output, position), prefix in module.heads().items():
        keys[f"head {output} #{position}"] = prefix
    return tuple(specs), keys


def _match_architecture(structure: Structure, where: str) -> tuple[str, dict[str, str]]:
    for name, cls in ARCHITECTURES.items():
        if cls.input_size != structure.input_size:
            continue
        specs, keys = _module_structure(build_model(name))
        if specs == structure.blocks:
            return name, keys
    raise UnsupportedModelError(
        f"{where}: a BlazeFace-like graph ({structure.input_size}x{structure.input_size} input, "
        f"{len(structure.blocks)} blocks, {structure.num_anchors} anchors) that matches no architecture blazeconv "
        f"knows ({', '.join(f'{c.architecture} {c.input_size}px' for c in ARCHITECTURES.values())})"
    )


def _torch_layout(layer: ConvLayer) -> np.ndarray:
    """TFLite kernel -> PyTorch layout: CONV_2D O,H,W,I -> O,I,H,W; DEPTHWISE 1,H,W,C -> C,1,H,W."""
    kernel = layer.kernel.data
    if layer.op.kind == "DEPTHWISE_CONV_2D":
        return kernel.transpose(3, 0, 1, 2)  # (C, 1, H, W)
    return kernel.transpose(0, 3, 1, 2)  # (O, I, H, W)


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
    structure = derive_structure(graph)
    architecture, keys = _match_architecture(structure, where)
    variant, recognised_by = recognise(graph, structure, architecture, sha256)
    expected = build_model(architecture).state_dict()

    state_dict: dict[str, torch.Tensor] = {}
    problems: list[str] = []
    used: set[int] = set()
    for layer in structure.layers:
        prefix = keys.get(layer.address)
        if prefix is None:
            problems.append(f"unused tensors '{layer.kernel.name}', '{layer.bias.name}' ({layer.address} has no key)")
            continue
        for suffix, value, tensor in (("weight", _torch_layout(layer), layer.kernel), ("bias", layer.bias.data, layer.bias)):
            key = f"{prefix}.{suffix}"
            if key not in expected:
                problems.append(f"'{tensor.name}' maps to unknown key {key}")
            elif tuple(value.shape) != tuple(expected[key].shape):
                problems.append(f"'{tensor.name}' gives {key} shape {list(value.shape)}, expected {list(expected[key].shape)}")
            else:
                state_dict[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
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
    return Conversion(variant, recognised_by, state_dict, _weight_storage(structure.layers))


def convert_file(path: str | Path) -> Conversion:
    """Read and convert the TFLite file at ``path`` (the ``tflite2torch`` stage)."""
    graph = read_graph(path)
    return convert_graph(graph, sha256_of(path))


def save_state_dict(state_dict: dict[str, torch.Tensor], path: str | Path) -> None:
    """Save a plain state_dict (loadable with ``torch.load(path, weights_only=True)``), atomically."""
    with atomic_path(path) as tmp:
        torch.save(state_dict, tmp)
