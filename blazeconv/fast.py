"""A fast CPU inference path for any BlazeFace module: trace once per input shape, rewrite the graph, compile.

``fast_model(module)`` wraps whatever ``load_model`` returns (or any module taking ``(B, 3, S, S)`` float32 and
returning a tuple of tensors) in a ``FastModel`` with the same call signature and the same outputs within the
LiteRT parity bound. Nothing here knows an architecture: for each input shape the module is traced into an
ATen graph (``make_fx``, real shapes, so every ``SAME`` padding is a constant), the graph is rewritten by
generic patterns, scripted and frozen:

* a zero ``constant_pad_nd`` that pads both sides of H and W equally is folded into the convolution after it
  (TFLite's ``SAME`` padding at stride 1) — one tensor copy fewer per convolution;
* convolutions run as oneDNN convolutions with weights reordered once (``mkldnn._convolution_pointwise``), a
  ReLU after one fused in — except small stride-1 1x1 ones, for which ATen's GEMM path costs less per call;
* ``conv + pad_channels(residual)`` becomes an in-place add into the conv's leading channels, and
  ``conv + residual`` an in-place add (the conv output has no other reader): no zero-padded copy, no new tensor;
  a ReLU of such a fresh result is applied in place;
* a 2x2 / stride-2 max-pool whose indices nobody reads is the maximum of four strided views;
* activations and weights are channels-last (NHWC in memory), the layout oneDNN's depthwise kernels want.

On Linux the first ``FastModel`` also asks glibc's malloc to keep freed memory for reuse, for the rest of the process
(``tuning.keep_freed_memory``): by default every activation above 128 KiB is a fresh ``mmap``, and its first touch
costs one page fault per 4 KiB, a large share of a forward's time (docs/bench.md, *The fast path*).

Large batches run in chunks of at most ``max_batch`` images (by default as many as fit ``DEFAULT_CHUNK_PIXELS``):
a chunk's activations stay in cache.

The plain module is several times slower than LiteRT/XNNPACK at batch 1, mostly per-call overhead of oneDNN's
depthwise convolutions and tensor copies for padding; ``blazeconv bench`` measures it on the machine at hand.
"""

from __future__ import annotations

import logging
import operator
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import fx, nn

from .tuning import keep_freed_memory

log = logging.getLogger(__name__)

aten = torch.ops.aten

# Largest chunk a compiled graph runs, in input pixels (batch x H x W): 16 images at 128x128, 4 at 256x256.
# Per-image time falls with the batch until the activations leave the cache (docs/bench.md, *The fast path*).
DEFAULT_CHUNK_PIXELS = 16 * 128 * 128
# A stride-1 1x1 convolution goes to oneDNN (prepacked) from this many output pixels (batch x H x W) on; below,
# ATen's GEMM path is cheaper per call (docs/bench.md, *The fast path*).
_PREPACK_1X1_MIN_ROWS = 8192
# From this batch on ATen itself runs 1x1 convolutions on oneDNN (reordering the weights on every call), so they are
# always prepacked (ATen's use_mkldnn: input.size(0) >= 16).
_ATEN_ONEDNN_MIN_BATCH = 16
# Parity bound of the converted model against LiteRT; a compiled graph must stay well within it of the module.
_SELF_CHECK_ATOL = 1e-4
_SELF_CHECK_RTOL = 1e-5


@dataclass(frozen=True)
class CompiledShape:
    """One compiled graph: the input shape it serves, what the rewrite did, and how long it took."""

    shape: tuple[int, ...]
    seconds: float
    rewrites: dict[str, int]


class FastModel(nn.Module):
    """``module`` compiled per input shape; call it like the module: ``(B, 3, S, S)`` float32 -> tuple of tensors.

    Inference only (no autograd). Inputs that are not 4-D CPU float32 go to ``module`` unchanged. The first call
    for a new ``(B, C, H, W)`` (``B`` capped at the chunk size) traces and compiles it (a fraction of a second on
    an idle machine, more for the first shape of a process); ``warm_up`` does it ahead of time. A compiled graph
    holds the weights as they were then: after changing the module's weights, make a new ``FastModel``. If a
    graph cannot be compiled or disagrees with ``module``, that shape falls back to ``module`` and the reason is
    kept in ``fallbacks``.
    """

    def __init__(self, module: nn.Module, max_batch: int | None = None, tune_allocator: bool = True):
        super().__init__()
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"max_batch must be positive, got {max_batch}")
        if tune_allocator:
            keep_freed_memory()
        self.module = module.eval()
        self.max_batch = max_batch
        for name in ("input_size", "architecture", "variant"):
            if hasattr(module, name):
                setattr(self, name, getattr(module, name))
        self._graphs: dict[tuple[int, ...], Callable] = {}
        self.compiled: list[CompiledShape] = []
        self.fallbacks: dict[tuple[int, ...], str] = {}

    @property
    def startup_seconds(self) -> float:
        """Time spent compiling graphs so far (tracing, rewriting, scripting, the self-check)."""
        return sum(c.seconds for c in self.compiled)

    def warm_up(self, *batch_sizes: int) -> FastModel:
        """Compile for these batch sizes (default 1) at the module's ``input_size`` now rather than on first use."""
        size = getattr(self, "input_size", None)
        if size is None:
            raise ValueError("warm_up needs a module with an input_size attribute")
        for batch in batch_sizes or (1,):
            with torch.inference_mode():
                self(torch.zeros(batch, 3, size, size))
        return self

    def forward(self, x: torch.Tensor):
        if x.dim() != 4 or x.device.type != "cpu" or x.dtype != torch.float32:
            return self.module(x)
        x = x.contiguous(memory_format=torch.channels_last)
        chunk = self.chunk_size(x.shape[-2], x.shape[-1])
        if x.shape[0] <= chunk:
            return self.graph_for(tuple(x.shape))(x)
        parts = [self.graph_for(tuple(part.shape))(part) for part in x.split(chunk)]
        return tuple(torch.cat(outputs) for outputs in zip(*parts))

    def chunk_size(self, height: int, width: int) -> int:
        """Images per compiled call for inputs of ``height x width``."""
        return self.max_batch or max(1, DEFAULT_CHUNK_PIXELS // (height * width))

    def graph_for(self, shape: tuple[int, ...]) -> Callable:
        """The compiled graph for a channels-last input of ``shape`` (the module itself if it fell back), compiled on
        first use."""
        graph = self._graphs.get(shape)
        if graph is None:
            start = time.perf_counter()
            try:
                graph, rewrites = compile_graph(self.module, shape)
            except Exception as exc:  # an op or pattern the rewrite cannot take: the module still works
                log.warning("fast path unavailable for input %s, using the module as is: %s", shape, exc)
                self.fallbacks[shape] = f"{type(exc).__name__}: {exc}"
                graph, rewrites = self.module, {}
            self.compiled.append(CompiledShape(shape, time.perf_counter() - start, rewrites))
            self._graphs[shape] = graph
        return graph


def fast_model(module: nn.Module, max_batch: int | None = None, warm_up: tuple[int, ...] = ()) -> FastModel:
    """Wrap ``module`` (eval mode, as ``load_model`` returns it) in a ``FastModel``; optionally compile for
    ``warm_up`` batch sizes now."""
    model = FastModel(module, max_batch=max_batch)
    if warm_up:
        model.warm_up(*warm_up)
    return model


# --------------------------------------------------------------------------------------------- compile


def compile_graph(
    module: nn.Module, shape: tuple[int, ...], rewrites: tuple[str, ...] | None = None
) -> tuple[torch.jit.ScriptModule, dict[str, int]]:
    """Trace ``module`` for a channels-last float32 input of ``shape``, rewrite, script and freeze the graph.

    Returns the frozen TorchScript module and how many times each rewrite applied. The result is checked
    against ``module`` on a fixed random input (``RuntimeError`` when it differs by more than 1e-4 + 1e-5 x value).
    """
    from torch.fx.experimental.proxy_tensor import make_fx

    # Traced outside inference mode even when called inside it (detect runs the model in inference mode): there,
    # make_fx decomposes upsample_bilinear2d into a dozen index and arithmetic ops (full_range: 1.6x slower).
    with torch.inference_mode(False), torch.no_grad():
        seeded = torch.Generator().manual_seed(0)  # the self-check below sees the same input every time
        example = torch.rand(shape, generator=seeded).mul_(2).sub_(1).contiguous(memory_format=torch.channels_last)
        gm = make_fx(module)(example)
    applied = {name: REWRITES[name](gm) for name in (REWRITES if rewrites is None else rewrites)}
    gm.graph.eliminate_dead_code()
    for node in gm.graph.nodes:  # TorchScript resolves an op by its packet (torch.ops.aten.add), not an overload
        if node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload):
            node.target = node.target.overloadpacket
    gm.graph.lint()
    gm.recompile()
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's notes on GraphModule internals
        compiled = torch.jit.freeze(torch.jit.script(gm).eval())
        _check_same(compiled(example), module(example))
    return compiled, applied


def _check_same(actual, expected) -> None:
    actual = actual if isinstance(actual, (tuple, list)) else (actual,)
    expected = expected if isinstance(expected, (tuple, list)) else (expected,)
    if len(actual) != len(expected):
        raise RuntimeError(f"compiled graph returns {len(actual)} outputs, the module {len(expected)}")
    for i, (a, e) in enumerate(zip(actual, expected)):
        if a.shape != e.shape:
            raise RuntimeError(f"output {i}: compiled shape {tuple(a.shape)}, module {tuple(e.shape)}")
        if not torch.allclose(a, e, atol=_SELF_CHECK_ATOL, rtol=_SELF_CHECK_RTOL):
            worst = (a - e).abs().max().item()
            raise RuntimeError(f"output {i}: compiled graph differs from the module by up to {worst:.3g}")


# --------------------------------------------------------------------------------------------- rewrites


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
