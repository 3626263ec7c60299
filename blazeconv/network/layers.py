"""The building blocks: layer specifications, TFLite-``SAME`` convolutions, residuals, BlazeBlocks and heads."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class BlockSpec:
    """One block: ``in -> out`` channels (through ``mid`` for a double block, 0 for a single one)."""

    in_channels: int
    mid_channels: int
    out_channels: int
    stride: int
    residual: bool


@dataclass(frozen=True)
class PyramidSpec:
    """One top-down pyramid level: its width, the backbone block whose output feeds its lateral, its blocks."""

    width: int
    lateral_source: int
    blocks: tuple[BlockSpec, ...]


@dataclass(frozen=True)
class ArchitectureSpec:
    """What a TFLite graph must show to be this architecture (compared whole with what the converter finds).

    ``padding`` is ``same`` (TFLite SAME on every 3x3 convolution) or ``symmetric`` (explicit 1-pixel PADs);
    ``head_upsample``: heads go through a stride-2 depthwise and DEPTH_TO_SPACE.
    """

    input_size: int
    stem_kernel: int
    padding: str
    blocks: tuple[BlockSpec, ...]
    pyramid: tuple[PyramidSpec, ...] = ()
    head_upsample: bool = False


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow ``SAME`` padding: the odd pixel of padding goes after (bottom/right).

    At stride 1 with an odd kernel ``SAME`` is symmetric, ``kernel // 2`` on every side, and the convolution pads
    by itself (no padded copy of the input); otherwise the input is padded first.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == (1, 1) and self.kernel_size[0] % 2 and self.kernel_size[1] % 2:
            padding = (self.kernel_size[0] // 2, self.kernel_size[1] // 2)
            return F.conv2d(x, self.weight, self.bias, 1, padding, self.dilation, self.groups)
        pads = []
        for size, kernel, stride in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            out = -(-size // stride)  # ceil
            total = max((out - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def add_residual(out: torch.Tensor, residual: torch.Tensor, extra_channels: int) -> torch.Tensor:
    """``out + residual`` zero-padded on the channel axis to ``out``'s channels (TFLite's ``channel_padding``),
    added in place into ``out``'s leading channels: ``out`` ``(B, C, H, W)``, ``residual`` ``(B, C - extra_channels,
    H, W)``.

    ``out`` must be a fresh result nothing else reads (a convolution's output: its gradient does not need it).
    Under ``torch.jit.trace`` (the Core ML export, the TorchScript ONNX exporter) and ``torch.export`` (the dynamo
    ONNX exporter) the sum is out of place: a write through a view is not dataflow a traced graph's readers
    (coremltools) follow, and exported it becomes ``slice_scatter``, which halves ONNX Runtime's speed.
    """
    if torch.jit.is_tracing() or torch.compiler.is_exporting():
        return out + (F.pad(residual, (0, 0, 0, 0, 0, extra_channels)) if extra_channels else residual)
    out.narrow(1, 0, residual.shape[1]).add_(residual)
    return out


class BlazeBlock(nn.Module):
    """Single BlazeBlock: 3x3 depthwise + 1x1 pointwise, residual, ReLU after the add.

    With stride 2 the residual goes through a 2x2 max-pool; when channels grow it is zero-padded
    on the channel axis (TFLite's ``channel_padding`` PAD).
    """

    residual = True

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.stride = stride
        self.extra_channels = out_channels - in_channels
        self.convs = nn.Sequential(
            SameConv2d(in_channels, in_channels, 3, stride=stride, groups=in_channels),
            nn.Conv2d(in_channels, out_channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = F.max_pool2d(x, 2) if self.stride == 2 else x
        return add_residual(self.convs(x), residual, self.extra_channels).relu_()


class SeparableBlock(nn.Module):
    """3x3 depthwise + 1x1 pointwise + ReLU without a residual (the ``back`` model's last, stride-2 block)."""

    residual = False

    def __init__(self, channels: int, stride: int = 2):
        super().__init__()
        self.stride = stride
        self.convs = nn.Sequential(
            SameConv2d(channels, channels, 3, stride=stride, groups=channels),
            nn.Conv2d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x).relu_()


def _blocks(channels: list[int], strides: list[int]) -> list[BlazeBlock]:
    """Blocks taking ``channels[i] -> channels[i + 1]`` with ``strides[i]``."""
    return [BlazeBlock(cin, cout, s) for cin, cout, s in zip(channels, channels[1:], strides)]


def _flatten_head(x: torch.Tensor, values_per_anchor: int) -> torch.Tensor:
    """``(B, A*V, H, W)`` head output -> ``(B, H*W*A, V)`` in TFLite's (y, x, anchor) order."""
    x = x.permute(0, 2, 3, 1)  # (B, H, W, A*V)
    return x.reshape(x.shape[0], -1, values_per_anchor)  # (B, H*W*A, V)

