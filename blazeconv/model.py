"""BlazeFace as readable PyTorch modules, and ``load_model`` for a saved state_dict.

Parameter names follow the original PyTorch port (hollance/BlazeFace-PyTorch) so its published
``blazeface.pth`` / ``blazefaceback.pth`` load unchanged. Every convolution pads the way TFLite's
``SAME`` padding does, so outputs match the TFLite graph layer for layer.

Input: ``(B, 3, S, S)`` float32 RGB in [-1, 1]. Output: ``(regressors (B, N, 16), classificators (B, N, 1))``,
raw values in the TFLite outputs' layout, anchors ordered (grid, y, x, anchor) with the finer grid first.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import WeightsError

log = logging.getLogger(__name__)


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow ``SAME`` padding: the odd pixel of padding goes after (bottom/right)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, kernel, stride in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            out = -(-size // stride)  # ceil
            total = max((out - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


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
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = F.max_pool2d(x, 2) if self.stride == 2 else x
        if self.extra_channels > 0:
            residual = F.pad(residual, (0, 0, 0, 0, 0, self.extra_channels))
        return self.act(self.convs(x) + residual)


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
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.convs(x))


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

    def heads(self) -> dict[tuple[str, int], str]:
        """State_dict prefix of each head conv, keyed by (output name, position in that output's concatenation)."""
        return {
            ("classificators", 0): "classifier_8",
            ("classificators", 1): "classifier_16",
            ("regressors", 0): "regressor_8",
            ("regressors", 1): "regressor_16",
        }

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fine, coarse = self.features(x)
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


ARCHITECTURES: dict[str, type[BlazeFaceBase]] = {
    cls.architecture: cls for cls in (BlazeFace128, BlazeFace256)
}


def architecture_of(state_dict: dict, source: str = "state_dict") -> str:
    """Which architecture a state_dict is for, judged by its keys; ``WeightsError`` if none fits."""
    keys = set(state_dict)
    best, best_overlap = None, 0.0
    for name, cls in ARCHITECTURES.items():
        expected = set(_expected_shapes(cls))
        overlap = len(keys & expected) / len(expected | keys)
        if overlap > best_overlap:
            best, best_overlap = name, overlap
    if best is None or best_overlap < 0.5:
        sample = ", ".join(sorted(keys)[:3]) or "no keys"
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


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state_dict with ``weights_only=True`` (no code from the file runs); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, zip errors, refused globals: all mean "not plain weights"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"{path}: not a loadable weights-only state_dict ({first_line[:200]})") from None
    if not isinstance(state_dict, dict):
        raise WeightsError(f"{path}: holds a {type(state_dict).__name__}, expected a state_dict (dict of tensors)")
    return state_dict


def model_from_state_dict(state_dict: dict, source: str = "state_dict") -> BlazeFaceBase:
    """Build the fitting module, load ``state_dict`` strictly (checked first), and return it in eval mode."""
    architecture = architecture_of(state_dict, source)
    check_state_dict(state_dict, architecture, source)
    model = build_model(architecture)
    model.load_state_dict({k: v.float() for k, v in state_dict.items()})
    return model.eval()


def load_model(weights_path: str | Path) -> BlazeFaceBase:
    """Load BlazeFace weights saved by ``blazeconv tflite2torch`` (or the original port's .pth files).

    The architecture (128 or 256 input) is inferred from the keys and checked shape by shape.
    Returns the module in eval mode; forward takes ``(B, 3, S, S)`` float32 RGB in [-1, 1] and returns
    ``(regressors (B, N, 16), classificators (B, N, 1))``, raw logits in the TFLite outputs' layout.
    """
    return model_from_state_dict(load_state_dict(weights_path), str(weights_path))
