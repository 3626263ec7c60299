"""torch backend: the PyTorch module in a ``TorchRunner`` (what ``FaceDetector(backend="torch")`` runs).

Imported only when torch is to be used: ``blazeconv.detection`` wraps a torch module given as the model in a
``TorchRunner`` through ``as_runner``, and ``make_runner("torch", ...)`` builds one from a model argument.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import OptionsError
from ..sources import ModelSource, load_module
from ..variants import Variant


class TorchRunner:
    """A torch module as a runner (``blazeconv.backends.runner.Runner``): numpy batch in, numpy outputs out.

    ``run(batch)``: ``batch`` ``(B, 3, S, S)`` float32 numpy is cast to the dtype and moved to the device of the
    module's first floating-point parameter (float32 on the CPU for a module without one, or a plain callable), run
    under ``torch.inference_mode``; returns ``(regressors (B, N, 16), classificators (B, N, 1))`` float32 numpy on
    the CPU. ``variant``: the module's own ``variant`` attribute unless given. ``uses_torch`` tells ``detect_files``
    to manage torch's thread count.
    """

    uses_torch = True

    def __init__(self, module, variant: Variant | None = None):
        self.module = module
        self.variant = variant if variant is not None else getattr(module, "variant", None)

    def run(self, batch):
        dtype, device = self.placement()
        x = torch.from_numpy(batch).to(device=device, dtype=dtype)
        with torch.inference_mode():
            regressors, classificators = self.module(x)
        return _to_numpy(regressors), _to_numpy(classificators)

    def placement(self) -> tuple[torch.dtype, torch.device]:
        """The module's dtype and device, read at each call (the module may have been moved since)."""
        parameters = getattr(self.module, "parameters", None)
        if callable(parameters):
            for parameter in parameters():
                if parameter.is_floating_point():
                    return parameter.dtype, parameter.device
        return torch.float32, torch.device("cpu")


def _to_numpy(value):
    """A torch output as float32 numpy on the CPU (post-processing stays in float32 whatever the model computes in)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to(device="cpu", dtype=torch.float32).numpy()
    return np.asarray(value, np.float32)


def make(source: ModelSource, variant: Variant | str | None, device: str, threads: int) -> TorchRunner:
    """The runner of ``source`` (any kind ``sources.resolve`` recognises but an ONNX file) on ``device``.
    ``threads`` is not applied: torch's thread count is the process's (``detect_files`` manages it while it runs)."""
    module = load_module(source, variant)
    try:
        module = module.to(device)
    except (RuntimeError, AssertionError, ValueError) as exc:  # "Torch not compiled with CUDA enabled", bad name
        raise OptionsError(f"device {device!r} is not available to torch: {' '.join(str(exc).split())}") from None
    return TorchRunner(module)
