"""Architectures by name, state_dict checks, and ``Weights`` (a state_dict and what is known about it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import WeightsError
from ..variants import Variant
from .blazeface import BlazeFace128, BlazeFace256, BlazeFaceBase
from .full_range import BlazeFaceFullRange, BlazeFaceFullRangeSparse

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


def state_dict_problems(state_dict, expected: dict[str, tuple[int, ...]], needs=None) -> list[str]:
    """Every gap between ``state_dict`` and the ``expected`` key -> shape table, as phrases: missing keys, unexpected
    keys, values that are no tensor, wrong shapes (``needs(key)``: what to call the expected shape, default
    ``expected``), non-float dtypes. Empty when it fits."""
    problems = []
    missing = [k for k in expected if k not in state_dict]
    unexpected = [str(k) for k in state_dict if k not in expected]
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
        elif tuple(value.shape) != tuple(shape):
            problems.append(f"{key} has shape {list(value.shape)}, {needs(key) if needs else 'expected'} {list(shape)}")
        elif not value.is_floating_point():
            problems.append(f"{key} has dtype {value.dtype}, expected a float tensor")
    return problems


def check_state_dict(state_dict: dict, architecture: str, source: str = "state_dict") -> None:
    """Raise one ``WeightsError`` listing every missing key, unexpected key and wrong shape together."""
    problems = state_dict_problems(state_dict, _expected_shapes(ARCHITECTURES[architecture]))
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
