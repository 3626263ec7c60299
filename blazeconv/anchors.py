"""SSD anchors exactly as MediaPipe's ``SsdAnchorsCalculator`` makes them.

Mirrors ``mediapipe/calculators/tflite/ssd_anchors_calculator.cc`` (field names and defaults
from its ``ssd_anchors_calculator.proto``). The result is an ``(N, 4)`` float32 array of
``(x_center, y_center, w, h)``, all in 0..1 of the model input.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import OptionsError


@dataclass(frozen=True)
class AnchorOptions:
    """The fields of MediaPipe's ``SsdAnchorsCalculatorOptions`` (same names, same defaults)."""

    num_layers: int
    min_scale: float
    max_scale: float
    input_size_height: int
    input_size_width: int
    anchor_offset_x: float = 0.5
    anchor_offset_y: float = 0.5
    strides: tuple[int, ...] = ()
    feature_map_height: tuple[int, ...] = ()
    feature_map_width: tuple[int, ...] = ()
    aspect_ratios: tuple[float, ...] = ()
    reduce_boxes_in_lowest_layer: bool = False
    interpolated_scale_aspect_ratio: float = 1.0
    fixed_anchor_size: bool = False

    def __post_init__(self) -> None:
        if self.num_layers < 1:
            raise OptionsError(f"num_layers must be at least 1, got {self.num_layers}")
        if self.feature_map_height:
            if len(self.feature_map_height) != self.num_layers or len(self.feature_map_width) != self.num_layers:
                raise OptionsError(
                    "feature_map_height and feature_map_width need one entry per layer "
                    f"(num_layers={self.num_layers})"
                )
        elif len(self.strides) != self.num_layers:
            raise OptionsError(
                f"strides needs one entry per layer: got {len(self.strides)} for num_layers={self.num_layers}"
            )
        if any(s <= 0 for s in self.strides):
            raise OptionsError(f"strides must be positive, got {list(self.strides)}")
        if self.input_size_height <= 0 or self.input_size_width <= 0:
            raise OptionsError("input_size_height and input_size_width must be positive")
        if not self.aspect_ratios and not self.reduce_boxes_in_lowest_layer:
            raise OptionsError("aspect_ratios is empty: every layer would have no anchors")
        if any(r <= 0 for r in self.aspect_ratios):
            raise OptionsError(f"aspect_ratios must be positive, got {list(self.aspect_ratios)}")

    @classmethod
    def from_dict(cls, fields: dict, source: str = "options") -> AnchorOptions:
        """Build from a dict of MediaPipe field names; unknown or missing fields are an error naming ``source``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise OptionsError(f"{source}: unknown anchor option(s) {', '.join(unknown)}")
        required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
        missing = sorted(required - set(fields))
        if missing:
            raise OptionsError(f"{source}: missing anchor option(s) {', '.join(missing)}")
        values = {}
        try:
            for f in dataclasses.fields(cls):
                if f.name not in fields:
                    continue
                value = fields[f.name]
                if f.name in ("strides", "feature_map_height", "feature_map_width"):
                    value = tuple(_as_int(v) for v in _as_list(value))
                elif f.name == "aspect_ratios":
                    value = tuple(float(v) for v in _as_list(value))
                elif f.name in ("num_layers", "input_size_height", "input_size_width"):
                    value = _as_int(value)
                elif f.name in ("reduce_boxes_in_lowest_layer", "fixed_anchor_size"):
                    if not isinstance(value, bool):
                        raise TypeError(f"{f.name} must be true or false")
                else:
                    value = float(value)
                values[f.name] = value
        except (TypeError, ValueError) as exc:
            raise OptionsError(f"{source}: bad anchor option: {exc}") from None
        try:
            return cls(**values)
        except OptionsError as exc:
            raise OptionsError(f"{source}: {exc}") from None

    @classmethod
    def from_json(cls, path: str | Path) -> AnchorOptions:
        """Read options from a JSON object of MediaPipe field names."""
        path = Path(path)
        try:
            fields = json.loads(path.read_text())
        except FileNotFoundError:
            raise OptionsError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise OptionsError(f"{path}: cannot read: {exc}") from None
        except json.JSONDecodeError as exc:
            raise OptionsError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(fields, dict):
            raise OptionsError(f"{path}: expected a JSON object of SsdAnchorsCalculator fields")
        return cls.from_dict(fields, source=str(path))


def _as_list(value) -> list:
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"expected a list, got {value!r}")
    return list(value)


def _as_int(value) -> int:
    if isinstance(value, bool) or not float(value).is_integer():
        raise TypeError(f"expected an integer, got {value!r}")
    return int(value)


def _scale(min_scale: float, max_scale: float, index: int, count: int) -> float:
    """MediaPipe's ``CalculateScale``: linear from min to max over the layers."""
    if count == 1:
        return (min_scale + max_scale) * 0.5
    return min_scale + (max_scale - min_scale) * index / (count - 1)


def generate_anchors(options: AnchorOptions) -> np.ndarray:
    """Anchors for ``options``: ``(N, 4)`` float32 rows ``(x_center, y_center, w, h)`` in 0..1.

    Consecutive layers with the same stride share one grid; within a cell the anchors come in
    the order their (scale, aspect ratio) pairs were collected; cells run row by row (y, then x).
    """
    o = options
    num_strides = len(o.strides)
    rows: list[tuple[float, float, float, float]] = []
    layer = 0
    while layer < o.num_layers:
        scales: list[float] = []
        ratios: list[float] = []
        last = layer
        # Merge the run of layers that share this layer's stride into one grid.
        while last < num_strides and o.strides[last] == o.strides[layer]:
            scale = _scale(o.min_scale, o.max_scale, last, num_strides)
            if last == 0 and o.reduce_boxes_in_lowest_layer:
                ratios += [1.0, 2.0, 0.5]
                scales += [0.1, scale, scale]
            else:
                for ratio in o.aspect_ratios:
                    ratios.append(ratio)
                    scales.append(scale)
                if o.interpolated_scale_aspect_ratio > 0.0:
                    next_scale = 1.0 if last == num_strides - 1 else _scale(o.min_scale, o.max_scale, last + 1, num_strides)
                    scales.append(math.sqrt(scale * next_scale))
                    ratios.append(o.interpolated_scale_aspect_ratio)
            last += 1
        if not o.strides:  # feature maps given explicitly: one grid per layer
            last = layer + 1
            scale = _scale(o.min_scale, o.max_scale, layer, o.num_layers)
            for ratio in o.aspect_ratios:
                ratios.append(ratio)
                scales.append(scale)
        sizes = [(s * math.sqrt(r), s / math.sqrt(r)) for s, r in zip(scales, ratios)]  # (w, h)
        if o.feature_map_height:
            grid_h, grid_w = o.feature_map_height[layer], o.feature_map_width[layer]
        else:
            stride = o.strides[layer]
            grid_h = math.ceil(o.input_size_height / stride)
            grid_w = math.ceil(o.input_size_width / stride)
        for y in range(grid_h):
            for x in range(grid_w):
                x_center = (x + o.anchor_offset_x) / grid_w
                y_center = (y + o.anchor_offset_y) / grid_h
                for w, h in sizes:
                    if o.fixed_anchor_size:
                        w = h = 1.0
                    rows.append((x_center, y_center, w, h))
        layer = last
    return np.asarray(rows, dtype=np.float32).reshape(-1, 4)
