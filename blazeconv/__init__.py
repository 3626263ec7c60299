"""blazeconv: MediaPipe BlazeFace TFLite models to PyTorch and Core ML, checked against the reference runtime.

Python API::

    import blazeconv
    model = blazeconv.load_model("short_range.pth")      # eval-mode torch.nn.Module
    regressors, classificators = model(x)                 # x: (B, 3, S, S) float32 RGB in [-1, 1]
"""

__version__ = "0.1.0"

from .errors import BlazeconvError  # noqa: E402
from .model import load_model  # noqa: E402

__all__ = ["BlazeconvError", "__version__", "load_model"]
