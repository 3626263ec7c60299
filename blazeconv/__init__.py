"""blazeconv: MediaPipe BlazeFace TFLite models to PyTorch, Core ML and ONNX, checked against the reference runtime.

Python API::

    import blazeconv
    model = blazeconv.load_model("short_range.pth")      # eval-mode torch.nn.Module
    regressors, classificators = model(x)                 # x: (B, 3, S, S) float32 RGB in [-1, 1]

Public names are imported on first use, so ``import blazeconv`` (and ``blazeconv --help``) does not load torch.
"""

__version__ = "0.1.0"

from .errors import BlazeconvError  # noqa: E402

# name -> module that defines it, imported lazily by __getattr__ below
_LAZY = {
    "load_model": "model",
}

__all__ = ["BlazeconvError", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
