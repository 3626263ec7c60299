"""torch backend: the PyTorch module in a ``model.TorchRunner`` (what ``FaceDetector`` runs by default)."""

from __future__ import annotations

from typing import Any

from ..variants import Variant


def make(source: Any, variant: Variant | str | None, device: str, threads: int) -> Any:
    """``FaceDetector``'s torch runner for ``source`` (a ``Variant``, a shipped name, a ``.tflite`` or ``.pth`` path, or
    a module) on ``device``. ``threads`` is not applied: torch's thread count is the process's (``detect_files``
    manages it while it runs)."""
    from ..detector import _torch_runner

    if isinstance(source, Variant):
        source = source.name
    return _torch_runner(source, variant, device)
