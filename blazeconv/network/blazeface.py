"""BlazeFace 128 and 256 (front, short range, back): two grids of anchors, 896 in all."""

from __future__ import annotations

import torch
from torch import nn

from .layers import ArchitectureSpec, BlockSpec, SameConv2d, SeparableBlock, _blocks, _flatten_head


class BlazeFaceBase(nn.Module):
    """Common head layout: two grids (``*_8`` finer, ``*_16`` coarser), 2 and 6 anchors per cell."""

    input_size: int
    architecture: str

    def __init__(self, fine_channels: int, coarse_channels: int):
        super().__init__()
        self.classifier_8 = nn.Conv2d(fine_channels, 2, 1)
        self.classifier_16 = nn.Conv2d(coarse_channels, 6, 1)
        self.regressor_8 = nn.Conv2d(fine_channels, 2 * 16, 1)
        self.regressor_16 = nn.Conv2d(coarse_channels, 6 * 16, 1)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(fine (B, C, S/8, S/8), coarse (B, C', S/16, S/16))`` feature maps for the heads."""
        raise NotImplementedError

    def stem(self) -> tuple[str, nn.Conv2d]:
        """State_dict prefix and module of the first (5x5, stride 2) convolution."""
        raise NotImplementedError

    def blocks(self) -> list[tuple[str, nn.Module]]:
        """State_dict prefix and module of every block, in dataflow order."""
        raise NotImplementedError

    def spec(self) -> ArchitectureSpec:
        blocks = tuple(
            BlockSpec(b.convs[0].in_channels, 0, b.convs[1].out_channels, b.stride, b.residual) for _, b in self.blocks()
        )
        return ArchitectureSpec(self.input_size, self.stem()[1].kernel_size[0], "same", blocks)

    def parameter_addresses(self) -> dict[str, str]:
        """State_dict prefix of each structural address the converter's graph walk assigns."""
        addresses = {"stem": self.stem()[0]}
        for k, (prefix, _) in enumerate(self.blocks()):
            addresses[f"block {k} depthwise"] = f"{prefix}.convs.0"
            addresses[f"block {k} pointwise"] = f"{prefix}.convs.1"
        for (output, position), prefix in self.heads().items():
            addresses[f"head {output} #{position}"] = prefix
        return addresses

    def heads(self) -> dict[tuple[str, int], str]:
        """State_dict prefix of each head conv, keyed by (output name, position in that output's concatenation)."""
        return {
            ("classificators", 0): "classifier_8",
            ("classificators", 1): "classifier_16",
            ("regressors", 0): "regressor_8",
            ("regressors", 1): "regressor_16",
        }

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fine, coarse = self.features(x.contiguous(memory_format=torch.channels_last))
        classificators = torch.cat(
            [_flatten_head(self.classifier_8(fine), 1), _flatten_head(self.classifier_16(coarse), 1)], dim=1
        )  # (B, N, 1)
        regressors = torch.cat(
            [_flatten_head(self.regressor_8(fine), 16), _flatten_head(self.regressor_16(coarse), 16)], dim=1
        )  # (B, N, 16)
        return regressors, classificators


class BlazeFace128(BlazeFaceBase):
    """The 128x128 models (``front``, ``short_range``): grids 16x16 (2 anchors) and 8x8 (6 anchors), 896 anchors."""

    input_size = 128
    architecture = "blazeface128"
    CHANNELS = [24, 24, 28, 32, 36, 42, 48, 56, 64, 72, 80, 88]
    STRIDES = [1, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1]

    def __init__(self):
        super().__init__(88, 96)
        self.backbone1 = nn.Sequential(
            SameConv2d(3, 24, 5, stride=2),
            nn.ReLU(inplace=True),
            *_blocks(self.CHANNELS, self.STRIDES),
        )
        self.backbone2 = nn.Sequential(*_blocks([88, 96, 96, 96, 96, 96], [2, 1, 1, 1, 1]))

    def features(self, x):
        fine = self.backbone1(x)  # (B, 88, 16, 16)
        coarse = self.backbone2(fine)  # (B, 96, 8, 8)
        return fine, coarse

    def stem(self):
        return "backbone1.0", self.backbone1[0]

    def blocks(self):
        return [(f"backbone1.{i}", m) for i, m in enumerate(self.backbone1) if i >= 2] + [
            (f"backbone2.{i}", m) for i, m in enumerate(self.backbone2)
        ]


class BlazeFace256(BlazeFaceBase):
    """The 256x256 ``back`` model: grids 16x16 (2 anchors) and 8x8 (6 anchors), 896 anchors."""

    input_size = 256
    architecture = "blazeface256"
    CHANNELS = [24] * 16 + [48] * 8 + [96] * 8
    STRIDES = [1] * 7 + [2] + [1] * 7 + [2] + [1] * 7 + [2] + [1] * 7

    def __init__(self):
        super().__init__(96, 96)
        self.backbone = nn.Sequential(
            SameConv2d(3, 24, 5, stride=2),
            nn.ReLU(inplace=True),
            *_blocks(self.CHANNELS, self.STRIDES),
        )
        self.final = SeparableBlock(96, stride=2)

    def features(self, x):
        fine = self.backbone(x)  # (B, 96, 16, 16)
        coarse = self.final(fine)  # (B, 96, 8, 8)
        return fine, coarse

    def stem(self):
        return "backbone.0", self.backbone[0]

    def blocks(self):
        return [(f"backbone.{i}", m) for i, m in enumerate(self.backbone) if i >= 2] + [("final", self.final)]

