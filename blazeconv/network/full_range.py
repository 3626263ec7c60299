"""BlazeFace full range, dense and sparse (192 px, 2304 anchors): a feature pyramid with double BlazeBlocks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ArchitectureSpec, BlockSpec, PyramidSpec, SameConv2d, _flatten_head, add_residual


class DoubleBlazeBlock(nn.Module):
    """Bottleneck BlazeBlock of the full-range models.

    3x3 depthwise (``stride``) -> 1x1 ``in -> mid`` -> ReLU -> 3x3 depthwise -> 1x1 ``mid -> out``, plus the
    residual (2x2 max-pooled when stride 2, zero-padded on channels when they grow) when ``residual``,
    then ReLU. ``symmetric_padding`` pads every 3x3 convolution by one pixel on each side (the sparse file's
    explicit PADs) instead of TFLite ``SAME`` (which pads (0, 1) at stride 2).
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, stride: int, residual: bool,
                 symmetric_padding: bool):
        super().__init__()
        self.stride, self.residual = stride, residual
        self.extra_channels = out_channels - in_channels
        self.dw1 = _depthwise(in_channels, stride, symmetric_padding)
        self.pw1 = nn.Conv2d(in_channels, mid_channels, 1)
        self.dw2 = _depthwise(mid_channels, 1, symmetric_padding)
        self.pw2 = nn.Conv2d(mid_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pw2(self.dw2(self.pw1(self.dw1(x)).relu_()))
        if self.residual:
            h = add_residual(h, F.max_pool2d(x, 2) if self.stride == 2 else x, self.extra_channels)
        return h.relu_()


def _depthwise(channels: int, stride: int, symmetric_padding: bool) -> nn.Conv2d:
    if symmetric_padding:
        return nn.Conv2d(channels, channels, 3, stride=stride, padding=1, groups=channels)
    return SameConv2d(channels, channels, 3, stride=stride, groups=channels)


def tflite_to_torch_depth_order(channels: int, block: int) -> torch.Tensor:
    """Channel permutation that turns TFLite's DEPTH_TO_SPACE layout into ``pixel_shuffle``'s.

    TFLite puts output channel ``c`` of block offset ``(i, j)`` at input channel ``(i * block + j) * C + c``;
    ``pixel_shuffle`` reads it from ``c * block**2 + i * block + j``. Entry ``k`` of the result is the TFLite
    channel that ``pixel_shuffle`` channel ``k`` must hold.
    """
    c = channels // (block * block)
    k = torch.arange(channels, device="cpu")  # real values even when the module is built on the meta device
    return (k % (block * block)) * c + k // (block * block)


class FpnLevel(nn.Module):
    """One top-down step: ``relu(reduce(coarse))`` upsampled 2x (bilinear, half-pixel centres) plus
    ``relu(lateral(feature))``, then ``num_blocks`` DoubleBlazeBlocks at the finer scale."""

    def __init__(self, coarse_channels: int, lateral_channels: int, width: int, mid: int, num_blocks: int,
                 symmetric_padding: bool):
        super().__init__()
        self.reduce = nn.Conv2d(coarse_channels, width, 1)
        self.lateral = nn.Conv2d(lateral_channels, width, 1)
        self.blocks = nn.Sequential(
            *(DoubleBlazeBlock(width, mid, width, 1, True, symmetric_padding) for _ in range(num_blocks))
        )

    def forward(self, coarse: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(self.reduce(coarse).relu_(), scale_factor=2, mode="bilinear", align_corners=False)
        return self.blocks(up.add_(self.lateral(feature).relu_()))  # into the upsampled map: its gradient needs neither


class FullRangeHead(nn.Module):
    """1x1 conv to ``values`` per cell; the sparse file instead makes ``4 * values`` channels, then a 3x3
    stride-2 depthwise and DEPTH_TO_SPACE(2) back to the full grid (``upsample``)."""

    def __init__(self, channels: int, values: int, upsample: bool):
        super().__init__()
        self.conv = nn.Conv2d(channels, values * (4 if upsample else 1), 1)
        self.upsample = _depthwise(values * 4, 2, True) if upsample else None
        if upsample:
            self.register_buffer("depth_order", tflite_to_torch_depth_order(values * 4, 2), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.upsample is not None:
            # TFLite DEPTH_TO_SPACE(2) = reorder the channels, then pixel_shuffle (no shape arithmetic to trace).
            x = F.pixel_shuffle(self.upsample(x)[:, self.depth_order], 2)
        return x


class BlazeFaceFullRange(nn.Module):
    """The 192x192 full-range model (dense file): 2304 anchors, one per cell of a 48x48 grid.

    A 3x3 stride-2 stem, 15 DoubleBlazeBlocks down to 6x6, then a top-down feature pyramid back to 48x48
    (laterals from the last block at 12x12, 24x24 and 48x48), and one classifier and one regressor head.
    """

    input_size = 192
    architecture = "full_range"
    SYMMETRIC_PADDING = False
    STRIDE2_RESIDUAL = True
    # (in, mid, out, stride) of each backbone block.
    BLOCKS = (
        (32, 8, 32, 1), (32, 8, 32, 1),
        (32, 12, 48, 2), (48, 12, 48, 1), (48, 16, 64, 1),
        (64, 24, 96, 2), (96, 32, 128, 1), (128, 32, 128, 1),
        (128, 36, 144, 2), (144, 48, 192, 1), (192, 64, 256, 1),
        (256, 96, 384, 2), (384, 96, 384, 1), (384, 96, 384, 1), (384, 96, 384, 1),
    )
    # Pyramid levels, coarse to fine: (width, bottleneck of its blocks, number of blocks).
    FPN = ((96, 48, 2), (64, 32, 2), (48, 24, 1))
    HEAD_UPSAMPLE = False

    def __init__(self):
        super().__init__()
        pad = self.SYMMETRIC_PADDING
        self.stem = nn.Conv2d(3, 32, 3, stride=2, padding=1) if pad else SameConv2d(3, 32, 3, stride=2)
        self.backbone = nn.ModuleList(
            DoubleBlazeBlock(cin, mid, cout, s, s == 1 or self.STRIDE2_RESIDUAL, pad) for cin, mid, cout, s in self.BLOCKS
        )
        lateral_channels = [self.BLOCKS[i][2] for i in self.lateral_sources()]
        coarse = [self.BLOCKS[-1][2]] + [level[0] for level in self.FPN[:-1]]
        self.fpn = nn.ModuleList(
            FpnLevel(c, lateral, *level, pad) for c, lateral, level in zip(coarse, lateral_channels, self.FPN)
        )
        width = self.FPN[-1][0]
        self.classifier = FullRangeHead(width, 1, self.HEAD_UPSAMPLE)
        self.regressor = FullRangeHead(width, 16, self.HEAD_UPSAMPLE)

    @classmethod
    def lateral_sources(cls) -> list[int]:
        """Index of the backbone block feeding each pyramid level's lateral: the last block before a stride-2 one."""
        before_downsampling = [i - 1 for i, block in enumerate(cls.BLOCKS) if block[3] == 2 and i > 0]
        return before_downsampling[::-1][: len(cls.FPN)]

    def spec(self) -> ArchitectureSpec:
        def block_spec(b: DoubleBlazeBlock) -> BlockSpec:
            return BlockSpec(b.dw1.in_channels, b.pw1.out_channels, b.pw2.out_channels, b.stride, b.residual)

        pyramid = tuple(
            PyramidSpec(level.reduce.out_channels, source, tuple(block_spec(b) for b in level.blocks))
            for level, source in zip(self.fpn, self.lateral_sources())
        )
        padding = "symmetric" if self.SYMMETRIC_PADDING else "same"
        return ArchitectureSpec(
            self.input_size, 3, padding, tuple(block_spec(b) for b in self.backbone), pyramid, self.HEAD_UPSAMPLE
        )

    def parameter_addresses(self) -> dict[str, str]:
        """State_dict prefix of each structural address the converter's graph walk assigns."""
        addresses = {"stem": "stem"}

        def add_block(address: str, prefix: str) -> None:
            for part in ("depthwise 1", "pointwise 1", "depthwise 2", "pointwise 2"):
                kind, number = part.split()
                addresses[f"{address} {part}"] = f"{prefix}.{'dw' if kind == 'depthwise' else 'pw'}{number}"

        for k in range(len(self.backbone)):
            add_block(f"block {k}", f"backbone.{k}")
        for level, module in enumerate(self.fpn):
            addresses[f"pyramid {level} reduce"] = f"fpn.{level}.reduce"
            addresses[f"pyramid {level} lateral"] = f"fpn.{level}.lateral"
            for m in range(len(module.blocks)):
                add_block(f"pyramid {level} block {m}", f"fpn.{level}.blocks.{m}")
        for output, prefix in (("classificators", "classifier"), ("regressors", "regressor")):
            addresses[f"head {output} #0"] = f"{prefix}.conv"
            if self.HEAD_UPSAMPLE:
                addresses[f"head {output} #0 upsample"] = f"{prefix}.upsample"
        return addresses

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.stem(x.contiguous(memory_format=torch.channels_last)).relu_()  # (B, 32, 96, 96)
        features = []
        for block in self.backbone:
            x = block(x)
            features.append(x)
        for level, source in zip(self.fpn, self.lateral_sources()):
            x = level(x, features[source])  # 6 -> 12 -> 24 -> 48 pixels
        regressors = _flatten_head(self.regressor(x), 16)  # (B, 2304, 16)
        classificators = _flatten_head(self.classifier(x), 1)  # (B, 2304, 1)
        return regressors, classificators


class BlazeFaceFullRangeSparse(BlazeFaceFullRange):
    """The 192x192 full-range model as the sparse file has it: a different network, not a pruned copy.

    Narrower bottlenecks, stride-2 blocks without a residual, one pixel of padding on every side of each
    3x3 convolution, and heads that go through a stride-2 depthwise and DEPTH_TO_SPACE.
    """

    architecture = "full_range_sparse"
    SYMMETRIC_PADDING = True
    STRIDE2_RESIDUAL = False
    BLOCKS = (
        (32, 8, 32, 1), (32, 8, 32, 1),
        (32, 16, 64, 2), (64, 16, 64, 1), (64, 16, 64, 1),
        (64, 32, 128, 2), (128, 32, 128, 1), (128, 32, 128, 1),
        (128, 48, 192, 2), (192, 48, 192, 1), (192, 48, 192, 1),
        (192, 96, 384, 2), (384, 96, 384, 1), (384, 96, 384, 1), (384, 96, 384, 1),
    )
    HEAD_UPSAMPLE = True


