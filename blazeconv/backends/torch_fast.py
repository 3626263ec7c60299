"""torch-fast backend: the PyTorch module compiled for the CPU by ``blazeconv.fast`` (``--backend torch-fast``).

The same ``TorchRunner`` as the torch backend, around ``fast.fast_model(module)``: traced, rewritten and compiled
once per input shape (1-3 s on the first shape), then several times faster per call than the plain module at
batch 1; outputs equal the module's within the LiteRT parity bound (``fast``'s self-check). CPU only.
"""

from __future__ import annotations

from ..errors import OptionsError
from ..sources import ModelSource, load_module
from ..variants import Variant
from .torch import TorchRunner


def make(source: ModelSource, variant: Variant | str | None, device: str, threads: int) -> TorchRunner:
    """The compiled runner of ``source`` (any kind but an ONNX file). ``device`` must be the CPU; ``threads`` is not
    applied (torch's thread count is the process's, as for the torch backend)."""
    from ..fast import fast_model

    if device.lower() != "cpu":
        raise OptionsError(f"device {device!r}: the torch-fast backend compiles for the CPU; use the torch backend "
                           "on an accelerator")
    module = load_module(source, variant)
    return TorchRunner(fast_model(module), module.variant)
