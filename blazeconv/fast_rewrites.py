"""The graph rewrites of ``blazeconv.fast``: each takes a traced ``fx.GraphModule``, rewrites it in place and returns
how many times it applied. ``REWRITES`` lists them in the order ``fast.compile_graph`` applies them."""

from __future__ import annotations

import operator
from collections.abc import Callable

import torch
from torch import fx

aten = torch.ops.aten

# A stride-1 1x1 convolution goes to oneDNN (prepacked) from this many output pixels (batch x H x W) on; below,
# ATen's GEMM path is cheaper per call (docs/bench.md, *The fast path*).
_PREPACK_1X1_MIN_ROWS = 8192
# From this batch on ATen itself runs 1x1 convolutions on oneDNN (reordering the weights on every call), so they are
# always prepacked (ATen's use_mkldnn: input.size(0) >= 16).
_ATEN_ONEDNN_MIN_BATCH = 16


def _is(node, target) -> bool:
    return isinstance(node, fx.Node) and node.op == "call_function" and node.target == target


def _shape(node: fx.Node) -> tuple[int, ...]:
    return tuple(node.meta["val"].shape)


def _zero_pad(node) -> list[int] | None:
    """The pad list of a zero-valued ``constant_pad_nd`` node, else None."""
    if not _is(node, aten.constant_pad_nd.default):
        return None
    value = node.args[2] if len(node.args) > 2 else node.kwargs.get("value", 0)
    return list(node.args[1]) if value == 0 else None


def _conv_parts(conv: fx.Node) -> dict:
    """Named arguments of an ``aten.convolution`` node."""
    names = ("input", "weight", "bias", "stride", "padding", "dilation", "transposed", "output_padding", "groups")
    return dict(zip(names, conv.args))


def _fold_zero_padding(gm: fx.GraphModule) -> int:
    """``conv(pad(x, (l, l, t, t)))`` -> ``conv(x, padding += (t, l))`` for 2-D convolutions."""
    count = 0
    for conv in list(gm.graph.nodes):
        if not _is(conv, aten.convolution.default):
            continue
        parts = _conv_parts(conv)
        pads = _zero_pad(parts["input"])
        if parts["transposed"] or len(parts["padding"]) != 2 or pads is None or len(pads) != 4:
            continue
        left, right, top, bottom = pads
        if left != right or top != bottom or min(pads) < 0:
            continue
        pad_node = parts["input"]
        conv.update_arg(0, pad_node.args[0])
        conv.update_arg(4, [parts["padding"][0] + top, parts["padding"][1] + left])
        if not pad_node.users:
            gm.graph.erase_node(pad_node)
        count += 1
    return count


def max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """``max_pool2d(x, 2)`` of an even-sized ``(B, C, H, W)`` tensor as the maximum of its four 2x2 phases."""
    top = torch.maximum(x[:, :, 0::2, 0::2], x[:, :, 0::2, 1::2])
    bottom = torch.maximum(x[:, :, 1::2, 0::2], x[:, :, 1::2, 1::2])
    return torch.maximum(top, bottom)


def _pool_as_maximum(gm: fx.GraphModule) -> int:
    """A 2x2, stride-2, unpadded max-pool on even H and W whose indices are unused -> ``max_pool_2x2``."""
    count = 0
    for pool in list(gm.graph.nodes):
        if not _is(pool, aten.max_pool2d_with_indices.default):
            continue
        args = list(pool.args) + [None] * (6 - len(pool.args))
        kernel, stride, padding, dilation, ceil_mode = args[1:6]
        stride = stride or kernel
        shape = _shape(pool.args[0])
        if (list(kernel) != [2, 2] or list(stride) not in ([2, 2], [2]) or any(padding or [])
                or any(d != 1 for d in (dilation or [1])) or ceil_mode or len(shape) != 4 or shape[2] % 2 or shape[3] % 2):
            continue
        users = list(pool.users)
        if not all(_is(u, operator.getitem) for u in users) or any(u.args[1] != 0 for u in users if u.users):
            continue
        with gm.graph.inserting_before(pool):
            pooled = gm.graph.call_function(max_pool_2x2, (pool.args[0],))
        pooled.meta["val"] = next((u.meta.get("val") for u in users if u.args[1] == 0), None)
        for user in users:
            if user.args[1] == 0:
                user.replace_all_uses_with(pooled)
            gm.graph.erase_node(user)
        gm.graph.erase_node(pool)
        count += 1
    return count


def add_into_channels(out: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """``out + pad_channels(residual)``, written into ``out``: the residual is added to the leading channels."""
    out.narrow(1, 0, residual.shape[1]).add_(residual)
    return out


def _residual_in_place(gm: fx.GraphModule) -> int:
    """Residual adds into a fresh convolution output, as dataflow the convolution rewrite can fuse.

    * ``conv + pad_channels(r)`` -> ``add_into_channels(conv, r)``; ``conv + r`` (same shape) -> ``conv.add_(r)``,
      when nothing else reads ``conv`` (so writing into it is invisible);
    * ``slice(conv, 1, 0, n).add_(r)`` followed by one reader of ``conv`` (how ``out.narrow(1, 0, n).add_(r)``
      traces) -> ``conv.add_(r)`` when ``n`` is all of its channels, else ``add_into_channels(conv, r)``; the reader
      takes the result.
    """
    order = {node: i for i, node in enumerate(gm.graph.nodes)}
    count = 0
    for add in list(gm.graph.nodes):
        if _is(add, aten.add.Tensor) and len(add.args) == 2 and add.kwargs.get("alpha", 1) == 1:
            count += _functional_residual(gm, add)
        elif _is(add, aten.add_.Tensor) and len(add.args) == 2 and not add.kwargs and not add.users:
            count += _sliced_residual(gm, add, order)
    return count


def _functional_residual(gm: fx.GraphModule, add: fx.Node) -> int:
    for conv, other in (add.args, add.args[::-1]):
        if not _is(conv, aten.convolution.default) or len(conv.users) != 1 or not isinstance(other, fx.Node):
            continue
        pads = _zero_pad(other)
        with gm.graph.inserting_before(add):
            if (pads is not None and len(pads) == 6 and not any(pads[:5]) and pads[5] > 0 and len(other.users) == 1
                    and _shape(other) == _shape(conv)):
                new = gm.graph.call_function(add_into_channels, (conv, other.args[0]))
            elif _shape(other) == _shape(conv) == _shape(add):
                new = gm.graph.call_function(aten.add_.Tensor, (conv, other))
            else:
                continue
        new.meta["val"] = add.meta.get("val")
        add.replace_all_uses_with(new)
        gm.graph.erase_node(add)
        if pads is not None and not other.users:
            gm.graph.erase_node(other)
        return 1
    return 0


def _sliced_residual(gm: fx.GraphModule, add: fx.Node, order: dict[fx.Node, int]) -> int:
    view, residual = add.args
    if not (_is(view, aten.slice.Tensor) and len(view.users) == 1 and isinstance(residual, fx.Node)):
        return 0
    conv, dim, start = view.args[:3]
    step = view.args[4] if len(view.args) > 4 else 1
    if not (_is(conv, aten.convolution.default) and dim == 1 and start == 0 and step == 1):
        return 0
    readers = [u for u in conv.users if u is not view]
    if len(readers) != 1 or order[readers[0]] < order[add]:
        return 0
    with gm.graph.inserting_before(add):
        function = aten.add_.Tensor if _shape(view) == _shape(conv) else add_into_channels
        new = gm.graph.call_function(function, (conv, residual))
    new.meta["val"] = conv.meta.get("val")
    readers[0].replace_input_with(conv, new)
    gm.graph.erase_node(add)
    gm.graph.erase_node(view)
    return 1


def _prepack_convolutions(gm: fx.GraphModule) -> int:
    """Convolutions with constant weights (except small stride-1 1x1 ones) -> oneDNN with weights reordered once.

    A residual ``conv.add_(r)`` and a ReLU that follow it (each the previous one's only reader) become oneDNN post-ops
    of the convolution. Skipped when PyTorch was built without oneDNN.
    """
    if not torch.backends.mkldnn.is_available():
        return 0
    count = 0
    for conv in list(gm.graph.nodes):
        if not _is(conv, aten.convolution.default):
            continue
        p = _conv_parts(conv)
        weight_node, bias_node = p["weight"], p["bias"]
        if p["transposed"] or len(p["stride"]) != 2 or weight_node.op != "get_attr":
            continue
        if bias_node is not None and bias_node.op != "get_attr":
            continue
        weight = getattr(gm, weight_node.target)
        batch, _, height, width = _shape(p["input"])
        if (weight.shape[-2:] == (1, 1) and list(p["stride"]) == [1, 1] and not any(p["padding"])
                and batch * height * width < _PREPACK_1X1_MIN_ROWS and batch < _ATEN_ONEDNN_MIN_BATCH):
            continue  # a small 1x1: ATen's GEMM path costs less per call than oneDNN
        padding, stride, dilation = list(p["padding"]), list(p["stride"]), list(p["dilation"])
        packed = torch.ops.mkldnn._reorder_convolution_weight(
            weight.contiguous(memory_format=torch.channels_last), padding, stride, dilation, p["groups"],
            list(_shape(p["input"])),
        )
        name = f"{weight_node.target}_packed"
        gm.register_buffer(name, packed)
        # What follows the convolution and can ride along: conv.add_(r) (see _residual_in_place), then a ReLU.
        chain = [conv]
        while len(chain) < 3 and len(chain[-1].users) == 1:
            user = next(iter(chain[-1].users))
            residual_add = (len(chain) == 1 and _is(user, aten.add_.Tensor) and user.args[0] is conv
                            and isinstance(user.args[1], fx.Node) and _shape(user.args[1]) == _shape(conv))
            if not (residual_add or _is(user, aten.relu.default) or _is(user, aten.relu_.default)):
                break
            chain.append(user)
            if not residual_add:
                break
        residual = chain[1].args[1] if len(chain) > 1 and _is(chain[1], aten.add_.Tensor) else None
        unary = "relu" if _is(chain[-1], aten.relu.default) or _is(chain[-1], aten.relu_.default) else None
        last = chain[-1]
        with gm.graph.inserting_before(last):
            packed_node = gm.graph.get_attr(name)
            geometry = (bias_node, padding, stride, dilation, p["groups"])
            if residual is None:
                fused = gm.graph.call_function(
                    torch.ops.mkldnn._convolution_pointwise.default,
                    (p["input"], packed_node, *geometry, unary or "none", [], None),
                )
            else:  # oneDNN adds the residual (and applies the ReLU) as post-ops of the convolution
                fused = gm.graph.call_function(
                    torch.ops.mkldnn._convolution_pointwise.binary,
                    (p["input"], residual, packed_node, *geometry, "add", None, unary, [], None),
                )
        fused.meta["val"] = last.meta.get("val")
        last.replace_all_uses_with(fused)
        for node in reversed(chain):
            gm.graph.erase_node(node)
        count += 1
    return count


def _relu_in_place(gm: fx.GraphModule) -> int:
    """``relu(t)`` -> ``relu_(t)`` when ``t`` is a fresh result (a convolution's, an add's) that nothing else reads."""
    fresh = {aten.convolution.default, aten.add.Tensor, aten.add_.Tensor, add_into_channels,
             torch.ops.mkldnn._convolution_pointwise.default, torch.ops.mkldnn._convolution_pointwise.binary}
    count = 0
    for relu in list(gm.graph.nodes):
        if not _is(relu, aten.relu.default):
            continue
        source = relu.args[0]
        if not (isinstance(source, fx.Node) and source.op == "call_function" and source.target in fresh
                and len(source.users) == 1):
            continue
        relu.target = aten.relu_.default
        count += 1
    return count


def _channels_last_weights(gm: fx.GraphModule) -> int:
    """Store the weights of the remaining ATen convolutions channels-last (a copy; the module is untouched)."""
    count = 0
    for conv in gm.graph.nodes:
        if not _is(conv, aten.convolution.default) or conv.args[1].op != "get_attr":
            continue
        weight = getattr(gm, conv.args[1].target)
        if weight.dim() == 4 and not weight.is_contiguous(memory_format=torch.channels_last):
            name = f"{conv.args[1].target}_channels_last"
            gm.register_buffer(name, weight.contiguous(memory_format=torch.channels_last))
            with gm.graph.inserting_before(conv):
                conv.update_arg(1, gm.graph.get_attr(name))
            count += 1
    return count


# Applied in this order; ``compile_graph(..., rewrites=...)`` picks a subset (to measure what each one buys).
REWRITES: dict[str, Callable[[fx.GraphModule], int]] = {
    "fold_padding": _fold_zero_padding,
    "pool_as_maximum": _pool_as_maximum,
    "residual_in_place": _residual_in_place,
    "prepacked_conv": _prepack_convolutions,
    "relu_in_place": _relu_in_place,
    "channels_last_weights": _channels_last_weights,
}
