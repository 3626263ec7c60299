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
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .fast_rewrites import REWRITES
from .tuning import keep_freed_memory

log = logging.getLogger(__name__)


# Largest chunk a compiled graph runs, in input pixels (batch x H x W): 16 images at 128x128, 4 at 256x256.
# Per-image time falls with the batch until the activations leave the cache (docs/bench.md, *The fast path*).
DEFAULT_CHUNK_PIXELS = 16 * 128 * 128
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
