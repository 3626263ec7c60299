"""The old module path of the network and ``load_model``, kept for code that imports it (the README names
``blazeconv.model.load_model``). The modules live in ``blazeconv.network``, loading in ``blazeconv.sources``, the
torch runner in ``blazeconv.backends.torch``."""

from .backends.torch import TorchRunner
from .network import (
    ARCHITECTURES,
    BlazeFace128,
    BlazeFace256,
    BlazeFaceBase,
    BlazeFaceFullRange,
    BlazeFaceFullRangeSparse,
    SameConv2d,
    Weights,
    architecture_of,
    build_model,
    check_state_dict,
    model_from_state_dict,
)
from .sources import load_model, load_state_dict, shipped_variant_of

__all__ = [
    "ARCHITECTURES", "BlazeFace128", "BlazeFace256", "BlazeFaceBase", "BlazeFaceFullRange", "BlazeFaceFullRangeSparse",
    "SameConv2d", "TorchRunner", "Weights", "architecture_of", "build_model", "check_state_dict", "load_model",
    "load_state_dict", "model_from_state_dict", "shipped_variant_of",
]
