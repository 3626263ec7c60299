"""The dataflow walk: from the graph's input through the stem, block after block, to the heads, each convolution
given a structural address (``stem``, ``block k depthwise|pointwise``, ``head <output> #<position>``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UnsupportedModelError
from ..network import ArchitectureSpec, BlockSpec, PyramidSpec
from ..tflite_reader import Graph, Operator, Tensor

_NO_ACTIVATION = 0  # tflite ActivationFunctionType.NONE
_PADDING_SAME = 0  # tflite Padding.SAME
_RELU = 1  # tflite ActivationFunctionType.RELU
_PADDING_VALID = 1  # tflite Padding.VALID
_SYMMETRIC_PAD = np.array([[0, 0], [1, 1], [1, 1], [0, 0]])


@dataclass(frozen=True)
class ConvLayer:
    """One convolution of the file: where it sits in the network, and its float32 constants."""

    address: str
    op: Operator
    kernel: Tensor
    bias: Tensor


@dataclass(frozen=True)
class Structure:
    """What the dataflow walk found: the architecture's spec, the anchors, and every convolution."""

    spec: ArchitectureSpec
    num_anchors: int
    layers: tuple[ConvLayer, ...]


class _Walker:
    """Walks a BlazeFace graph from its input; every surprise is an ``UnsupportedModelError`` naming what was
    expected. ``double_blocks`` says which block form to follow (single: depthwise, pointwise; double: depthwise,
    pointwise, ReLU, depthwise, pointwise) — the form of the architecture being matched."""

    def __init__(self, graph: Graph, double_blocks: bool):
        self.graph = graph
        self.double_blocks = double_blocks
        self.where = str(graph.path)
        self.layers: list[ConvLayer] = []
        self.paddings: set[str] = set()

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

    def consumers_through_pad(self, tensor: int, kind: str) -> list[tuple[Operator, Operator | None]]:
        """``(op, pad)`` for each ``kind`` reading ``tensor`` directly (pad None) or through a spatial PAD."""
        found = []
        for op in self.graph.consumers(tensor):
            if op.kind == kind:
                found.append((op, None))
            elif op.kind == "PAD":
                found += [(after, op) for after in self.graph.consumers(op.outputs[0]) if after.kind == kind]
        return found

    def constant(self, op: Operator, position: int, what: str) -> Tensor:
        if position >= len(op.inputs) or op.inputs[position] < 0:
            raise self.fail(f"a {what} input on {op.kind} #{op.index}", "none")
        t = self.tensor(op.inputs[position])
        if t.data is None or t.data.dtype.kind != "f":
            raise self.fail(f"a constant float {what} on {op.kind} #{op.index}", f"'{t.name}'")
        return t

    def conv(self, op: Operator, pad: Operator | None, address: str, kernel_size: int, stride: int) -> Operator:
        """Check a CONV_2D / DEPTHWISE_CONV_2D (and the PAD before it) and record it as a layer."""
        o = op.options
        expected = {"stride_h": stride, "stride_w": stride, "dilation_h": 1, "dilation_w": 1}
        if op.kind == "DEPTHWISE_CONV_2D":
            expected["depth_multiplier"] = 1
        if kernel_size > 1:
            # TFLite SAME padding, or an explicit one-pixel PAD on every side followed by VALID.
            expected["padding"] = _PADDING_SAME if pad is None else _PADDING_VALID
            if pad is not None:
                paddings = self.tensor(pad.inputs[1]).data if len(pad.inputs) > 1 else None
                if paddings is None or paddings.shape != (4, 2) or not np.array_equal(paddings, _SYMMETRIC_PAD):
                    raise self.fail(f"one pixel of padding before {address}", f"PAD {paddings}")
            self.paddings.add("same" if pad is None else "symmetric")
        elif pad is not None:
            raise self.fail(f"no padding before the 1x1 {address}", "a PAD")
        wrong = {k: o.get(k) for k, v in expected.items() if o.get(k) != v}
        if wrong or o.get("activation") not in (_NO_ACTIVATION, _RELU):
            raise self.fail(f"{address} ({op.kind} #{op.index}) with {expected}", f"{o}")
        kernel, bias = self.constant(op, 1, "kernel"), self.constant(op, 2, "bias")
        if len(kernel.shape) != 4 or kernel.shape[1:3] != (kernel_size, kernel_size):
            raise self.fail(f"a {kernel_size}x{kernel_size} kernel for {address}", f"shape {list(kernel.shape)}")
        self.layers.append(ConvLayer(address, op, kernel, bias))
        return op

    def relu_after(self, tensor: int) -> int:
        """``tensor`` itself when its producer has a fused ReLU, else the output of the RELU that must follow."""
        producer = self.graph.producer(tensor)
        if producer is not None and producer.options.get("activation") == _RELU:
            return tensor
        return self.only_consumer(tensor, ("RELU",)).outputs[0]

    def no_relu(self, op: Operator, address: str) -> None:
        if op.options.get("activation", _NO_ACTIVATION) != _NO_ACTIVATION:
            raise self.fail(f"no activation fused into {address}", f"{op.options}")

    def walk(self) -> Structure:
        g = self.graph
        if len(g.inputs) != 1:
            raise self.fail("one input image tensor", f"{len(g.inputs)} inputs")
        image = self.tensor(g.inputs[0])
        if len(image.shape) != 4 or image.shape[0] != 1 or image.shape[3] != 3 or image.shape[1] != image.shape[2]:
            raise self.fail("an input of shape [1, S, S, 3]", f"{list(image.shape)}")
        outputs = self.outputs()

        stems = self.consumers_through_pad(image.index, "CONV_2D")
        if len(stems) != 1:
            raise self.fail("one convolution reading the input image", f"{len(stems)}")
        stem, pad = stems[0]
        kernel = self.tensor(stem.inputs[1]).shape[1] if len(self.tensor(stem.inputs[1]).shape) == 4 else 0
        self.conv(stem, pad, "stem", kernel, 2)
        x = self.relu_after(stem.outputs[0])

        blocks, outputs_of = [], {}  # outputs_of: block output tensor -> block index
        activations = {x}
        while True:
            found = self.consumers_through_pad(x, "DEPTHWISE_CONV_2D")
            if not found:
                break
            if len(found) > 1:
                raise self.fail(f"one depthwise convolution reading '{self.tensor(x).name}'", f"{len(found)}")
            spec, x = self.block(f"block {len(blocks)}", *found[0], x)
            outputs_of[x] = len(blocks)
            blocks.append(spec)
            activations.add(x)

        pyramid = []
        while (level := self.pyramid_level(len(pyramid), x, outputs_of)) is not None:
            spec, x = level
            pyramid.append(spec)
            activations.add(x)

        head_upsample = self.heads(outputs, activations)
        if len(self.paddings) > 1:
            raise self.fail("one padding style for every 3x3 convolution", "SAME and explicit PADs mixed")
        spec = ArchitectureSpec(
            image.shape[1], kernel, next(iter(self.paddings), "same"), tuple(blocks), tuple(pyramid), head_upsample
        )
        return Structure(spec, self.tensor(outputs["regressors"]).shape[1], tuple(self.layers))

    def block(self, name: str, dw: Operator, pad: Operator | None, x: int) -> tuple[BlockSpec, int]:
        in_shape = self.tensor(x).shape
        stride = dw.options.get("stride_h", 1)
        self.conv(dw, pad, f"{name} depthwise{' 1' if self.double_blocks else ''}", 3, stride)
        self.no_relu(dw, name)
        pw = self.only_consumer(dw.outputs[0], ("CONV_2D",))
        self.conv(pw, None, f"{name} pointwise{' 1' if self.double_blocks else ''}", 1, 1)
        mid = 0
        if self.double_blocks:
            h = self.relu_after(pw.outputs[0])
            mid = self.tensor(h).shape[3]
            inner = self.consumers_through_pad(h, "DEPTHWISE_CONV_2D")
            if len(inner) != 1:
                raise self.fail(f"{name}'s second depthwise convolution", f"{len(inner)}")
            dw2, pad2 = inner[0]
            self.conv(dw2, pad2, f"{name} depthwise 2", 3, 1)
            self.no_relu(dw2, name)
            pw = self.only_consumer(dw2.outputs[0], ("CONV_2D",))
            self.conv(pw, None, f"{name} pointwise 2", 1, 1)
        out = pw.outputs[0]
        out_channels = self.tensor(out).shape[3]
        after = [op for op in self.graph.consumers(out)]
        residual = len(after) == 1 and after[0].kind == "ADD" and pw.options.get("activation") == _NO_ACTIVATION
        if residual:
            add = after[0]
            skip = [t for t in add.inputs if t != out]
            if len(skip) != 1:
                raise self.fail(f"{name}'s ADD to take the block output and a skip", f"{add.inputs}")
            self.check_skip(name, skip[0], x, stride, out_channels - in_shape[3])
            result = self.relu_after(add.outputs[0])
        else:
            result = self.relu_after(out)
        if self.tensor(result).shape[1] != -(-in_shape[1] // stride):
            raise self.fail(f"{name} to map {in_shape[1]} pixels to {-(-in_shape[1] // stride)}",
                            f"{self.tensor(result).shape[1]}")
        return BlockSpec(in_shape[3], mid, out_channels, stride, residual), result

    def check_skip(self, name: str, skip: int, x: int, stride: int, extra_channels: int) -> None:
        """The skip must be the block input, 2x2-max-pooled when stride 2, zero-padded when channels grow."""
        if extra_channels:
            pad = self.graph.producer(skip)
            paddings = self.tensor(pad.inputs[1]).data if pad is not None and pad.kind == "PAD" else None
            want = np.array([[0, 0], [0, 0], [0, 0], [0, extra_channels]])
            if paddings is None or paddings.shape != (4, 2) or not np.array_equal(paddings, want):
                raise self.fail(f"{name}'s skip to pad {extra_channels} channels", f"{paddings}")
            skip = pad.inputs[0]
        if stride == 2:
            pool = self.graph.producer(skip)
            o = pool.options if pool is not None else {}
            if pool is None or pool.kind != "MAX_POOL_2D" or (o.get("filter_h"), o.get("filter_w"), o.get("stride_h")) != (2, 2, 2):
                raise self.fail(f"{name}'s skip to be a 2x2 stride-2 MAX_POOL_2D", pool.kind if pool else "none")
            skip = pool.inputs[0]
        if skip != x:
            raise self.fail(f"{name}'s skip to start at the block input", f"'{self.tensor(skip).name}'")

    def pyramid_level(self, level: int, x: int, outputs_of: dict[int, int]) -> tuple[PyramidSpec, int] | None:
        """A top-down level starting at ``x``: relu(reduce(x)) -> RESIZE_BILINEAR 2x -> ADD relu(lateral(f))."""
        for reduce in (op for op in self.graph.consumers(x) if op.kind == "CONV_2D"):
            reduced = reduce.outputs[0]
            if reduce.options.get("activation") != _RELU:  # look through a separate RELU, if that is what follows
                after = self.graph.consumers(reduced)
                reduced = after[0].outputs[0] if len(after) == 1 and after[0].kind == "RELU" else reduced
            resize = [op for op in self.graph.consumers(reduced) if op.kind == "RESIZE_BILINEAR"]
            if resize:
                break
        else:
            return None
        reduced = self.relu_after(reduce.outputs[0])
        name = f"pyramid {level}"
        self.conv(reduce, None, f"{name} reduce", 1, 1)
        up = resize[0]
        o = up.options
        if o.get("align_corners") or not o.get("half_pixel_centers"):
            raise self.fail(f"{name}'s RESIZE_BILINEAR with half-pixel centres", f"{o}")
        if self.tensor(up.outputs[0]).shape[1] != 2 * self.tensor(reduced).shape[1]:
            raise self.fail(f"{name} to upsample 2x", f"{self.tensor(up.outputs[0]).shape}")
        add = self.only_consumer(up.outputs[0], ("ADD",))
        self.no_relu(add, f"{name}'s ADD")
        lateral_out = [t for t in add.inputs if t != up.outputs[0]]
        producer = self.graph.producer(lateral_out[0]) if len(lateral_out) == 1 else None
        if producer is not None and producer.kind == "RELU":
            producer = self.graph.producer(producer.inputs[0])
        if producer is None or producer.kind != "CONV_2D" or producer.inputs[0] not in outputs_of:
            raise self.fail(f"{name}'s lateral to be a 1x1 CONV_2D on a backbone block output", f"{producer}")
        self.relu_after(producer.outputs[0])
        self.conv(producer, None, f"{name} lateral", 1, 1)
        x = add.outputs[0]
        blocks = []
        while (found := self.consumers_through_pad(x, "DEPTHWISE_CONV_2D")):
            if len(found) > 1:
                raise self.fail(f"one depthwise convolution reading '{self.tensor(x).name}'", f"{len(found)}")
            spec, x = self.block(f"{name} block {len(blocks)}", *found[0], x)
            blocks.append(spec)
        width = self.tensor(reduce.outputs[0]).shape[3]
        return PyramidSpec(width, outputs_of[producer.inputs[0]], tuple(blocks)), x

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

    def heads(self, outputs: dict[str, int], activations: set[int]) -> bool:
        """Record every head convolution; True when the heads go through a stride-2 depthwise and DEPTH_TO_SPACE."""
        upsampled = set()
        for name, tensor in outputs.items():
            concat = self.graph.producer(tensor)
            parts = list(concat.inputs) if concat is not None and concat.kind == "CONCATENATION" else [tensor]
            for position, part in enumerate(parts):
                address = f"head {name} #{position}"
                reshape = self.graph.producer(part)
                if reshape is None or reshape.kind != "RESHAPE":
                    raise self.fail(f"{name} part {position} to come from a RESHAPE", reshape.kind if reshape else "none")
                conv = self.graph.producer(reshape.inputs[0])
                upsampled.add(conv is not None and conv.kind == "DEPTH_TO_SPACE")
                if conv is not None and conv.kind == "DEPTH_TO_SPACE":
                    if conv.options.get("block_size") != 2:
                        raise self.fail(f"{address}'s DEPTH_TO_SPACE with block size 2", f"{conv.options}")
                    dw = self.graph.producer(conv.inputs[0])
                    pad = self.graph.producer(dw.inputs[0]) if dw is not None else None
                    pad = pad if pad is not None and pad.kind == "PAD" else None
                    if dw is None or dw.kind != "DEPTHWISE_CONV_2D":
                        raise self.fail(f"{address}'s DEPTH_TO_SPACE to follow a depthwise convolution", f"{dw}")
                    self.conv(dw, pad, f"{address} upsample", 3, 2)
                    conv = self.graph.producer(pad.inputs[0] if pad is not None else dw.inputs[0])
                if conv is None or conv.kind != "CONV_2D" or conv.inputs[0] not in activations:
                    raise self.fail(f"{name} part {position} to be a 1x1 CONV_2D on a block output", conv.kind if conv else "none")
                self.conv(conv, None, address, 1, 1)
        if len(upsampled) != 1:
            raise self.fail("every head in the same form", "some upsampled, some not")
        return upsampled.pop()


def derive_structure(graph: Graph, double_blocks: bool = False) -> Structure:
    """Walk ``graph`` and describe it; ``UnsupportedModelError`` if it is not a BlazeFace of a known shape."""
    return _Walker(graph, double_blocks).walk()
