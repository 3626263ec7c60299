"""The ``Runner`` protocol: what the detection pipeline needs of a model, whatever runtime holds it."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from ..sources import ModelSource
from ..variants import VARIANTS, Variant, fit_variant


@runtime_checkable
class Runner(Protocol):
    """A BlazeFace network on some runtime.

    ``run(batch)``: ``batch`` ``(B, 3, S, S)`` float32 RGB in [-1, 1] (numpy) -> ``(regressors (B, N, 16),
    classificators (B, N, 1))`` float32 numpy, TFLite's raw outputs (x before y, offsets in input pixels; logits).
    ``variant``: the model it runs (anchors, input size, default threshold), or None when the caller must name it.
    ``uses_torch``: True when ``run`` computes with torch (``detect_files`` then manages torch's thread count).
    ``make_runner`` also sets ``backend``, the registry name it was built by.
    """

    variant: Variant | None
    uses_torch: bool

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def runner_variant(known: str | None, variant: Variant | str | None, model: ModelSource | None) -> Variant | None:
    """The variant of an ONNX runner: ``variant`` if given (it must fit the model), else the shipped variant the
    argument named, else the one the file's metadata names (``known``)."""
    from_file = (model.variant if model is not None else None) or VARIANTS.get(known or "")
    if variant is None:
        return from_file
    return fit_variant(variant, from_file, model.given if model is not None else None)
