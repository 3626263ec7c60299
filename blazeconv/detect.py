"""The old module path of the detection pipeline, kept for code that imports it (the README names
``blazeconv.detect.detect_image``, ``letterbox``, ``decode``, ``weighted_nms``, ...). It lives in
``blazeconv.detection``, one module per stage."""

from .detection import *  # noqa: F403 (the package's public names, its __all__)
from .detection import __all__ as _names
from .io import looks_like_url

__all__ = [*_names, "looks_like_url"]
