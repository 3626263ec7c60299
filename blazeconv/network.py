"""BlazeFace as readable PyTorch modules, and ``load_model`` for a saved state_dict.

Parameter names follow the original PyTorch port (hollance/BlazeFace-PyTorch) so its published
``blazeface.pth`` / ``blazefaceback.pth`` load unchanged. Every convolution pads the way TFLite's
``SAME`` padding does, so outputs match the TFLite graph layer for layer.

Input: ``(B, 3, S, S)`` float32 RGB in [-1, 1]. Output: ``(regressors (B, N, 16), classificators (B, N, 1))``,
raw values in the TFLite outputs' layout, anchors ordered (grid, y, x, anchor) with the finer grid first.

Written for speed in plain eager mode on CPU (``blazeconv bench`` measures it against LiteRT): activations are
channels-last (NHWC in memory, what oneDNN's depthwise kernels take without a reorder, and the heads' layout),
stride-1 ``SAME`` padding is the convolution's own, residuals and ReLUs write into fresh convolution outputs
rather than allocating new tensors. All of it stays differentiable.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import WeightsError
from .variants import Variant

log = logging.getLogger(__name__)


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


# ------------------------------------------------------------------------------------------------- full range


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


ARCHITECTURES: dict[str, type[nn.Module]] = {
    cls.architecture: cls for cls in (BlazeFace128, BlazeFace256, BlazeFaceFullRange, BlazeFaceFullRangeSparse)
}


def architecture_of(state_dict: dict, source: str = "state_dict") -> str:
    """Which architecture a state_dict is for, judged by its keys and shapes; ``WeightsError`` if none fits."""
    keys = {(k, tuple(v.shape) if isinstance(v, torch.Tensor) else None) for k, v in state_dict.items() if isinstance(k, str)}
    names = {k for k, _ in keys}
    best, best_overlap = None, 0.0
    for name, cls in ARCHITECTURES.items():
        expected = set(_expected_shapes(cls).items())
        # Keys decide; shapes break ties between architectures that share key names (the full-range pair).
        overlap = len(names & {k for k, _ in expected}) / len(names | {k for k, _ in expected})
        overlap += 1e-3 * len(keys & expected) / len(expected)
        if overlap > best_overlap:
            best, best_overlap = name, overlap
    if best is None or best_overlap < 0.5:  # fewer than half the keys in common: something else
        sample = ", ".join(sorted(names)[:3]) or "no keys"
        raise WeightsError(f"{source}: not BlazeFace weights blazeconv knows (keys: {sample}, ...)")
    return best


_SHAPES_CACHE: dict[type, dict[str, tuple[int, ...]]] = {}


def _expected_shapes(cls: type[BlazeFaceBase]) -> dict[str, tuple[int, ...]]:
    if cls not in _SHAPES_CACHE:
        with torch.device("meta"):
            module = cls()
        _SHAPES_CACHE[cls] = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    return _SHAPES_CACHE[cls]


def check_state_dict(state_dict: dict, architecture: str, source: str = "state_dict") -> None:
    """Raise one ``WeightsError`` listing every missing key, unexpected key and wrong shape together."""
    expected = _expected_shapes(ARCHITECTURES[architecture])
    problems = []
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing:
        problems.append(f"missing {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected {', '.join(unexpected)}")
    for key, shape in expected.items():
        value = state_dict.get(key)
        if value is None:
            continue
        if not isinstance(value, torch.Tensor):
            problems.append(f"{key} is a {type(value).__name__}, not a tensor")
        elif tuple(value.shape) != shape:
            problems.append(f"{key} has shape {list(value.shape)}, expected {list(shape)}")
        elif not value.is_floating_point():
            problems.append(f"{key} has dtype {value.dtype}, expected a float tensor")
    if problems:
        raise WeightsError(f"{source}: weights do not fit {architecture}: " + "; ".join(problems))


def build_model(architecture: str) -> BlazeFaceBase:
    """A freshly initialised module of ``architecture`` (``blazeface128`` or ``blazeface256``)."""
    return ARCHITECTURES[architecture]()


def model_from_state_dict(state_dict: dict, source: str = "state_dict") -> BlazeFaceBase:
    """Build the fitting module, load ``state_dict`` strictly (checked first), and return it in eval mode.

    The module's ``variant`` is None: nothing here says which file the weights came from (``load_model`` finds out).
    """
    architecture = architecture_of(state_dict, source)
    check_state_dict(state_dict, architecture, source)
    model = build_model(architecture)
    model.load_state_dict({k: v.float() for k, v in state_dict.items()})
    model.variant = None
    return model.eval()


@dataclass(frozen=True)
class Weights:
    """A state_dict and what is known about it: the model it is (``variant``), where it came from.

    ``path``: the file read (a ``.tflite`` converted in memory, or a ``.pth``); ``source_sha256``: the SHA-256 of the
    ``.tflite`` the weights were converted from, None when unknown; ``recognised_by``: how ``variant`` was decided
    (for summaries and export metadata). Made by ``blazeconv.sources.load_weights``.
    """

    path: Path
    variant: Variant
    state_dict: dict[str, torch.Tensor] = field(repr=False)
    source_sha256: str | None
    recognised_by: str

    def module(self) -> BlazeFaceBase:
        """The eval-mode module of these weights, its ``variant`` attribute set."""
        model = model_from_state_dict(self.state_dict, str(self.path))
        model.variant = self.variant
        return model
