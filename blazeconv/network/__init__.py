"""BlazeFace as readable PyTorch modules, and the checks of a state_dict against them.

Parameter names follow the original PyTorch port (hollance/BlazeFace-PyTorch) so its published
``blazeface.pth`` / ``blazefaceback.pth`` load unchanged. Every convolution pads the way TFLite's
``SAME`` padding does, so outputs match the TFLite graph layer for layer.

Input: ``(B, 3, S, S)`` float32 RGB in [-1, 1]. Output: ``(regressors (B, N, 16), classificators (B, N, 1))``,
raw values in the TFLite outputs' layout, anchors ordered (grid, y, x, anchor) with the finer grid first.

Written for speed in plain eager mode on CPU (``blazeconv bench`` measures it against LiteRT): activations are
channels-last (NHWC in memory, what oneDNN's depthwise kernels take without a reorder, and the heads' layout),
stride-1 ``SAME`` padding is the convolution's own, residuals and ReLUs write into fresh convolution outputs
rather than allocating new tensors. All of it stays differentiable.

One module per part: ``layers`` (specifications, SAME convolutions, blocks), ``blazeface`` (the 128 and 256 px
models), ``full_range`` (the 192 px pyramid models), ``weights`` (architectures, state_dict checks, ``Weights``).
"""

from .blazeface import BlazeFace128, BlazeFace256, BlazeFaceBase
from .full_range import BlazeFaceFullRange, BlazeFaceFullRangeSparse, DoubleBlazeBlock, tflite_to_torch_depth_order
from .layers import ArchitectureSpec, BlazeBlock, BlockSpec, PyramidSpec, SameConv2d, SeparableBlock, add_residual
from .weights import ARCHITECTURES, Weights, architecture_of, build_model, check_state_dict, model_from_state_dict

__all__ = [
    "ARCHITECTURES", "ArchitectureSpec", "BlazeBlock", "BlazeFace128", "BlazeFace256", "BlazeFaceBase",
    "BlazeFaceFullRange", "BlazeFaceFullRangeSparse", "BlockSpec", "DoubleBlazeBlock", "PyramidSpec", "SameConv2d",
    "SeparableBlock", "Weights", "add_residual", "architecture_of", "build_model", "check_state_dict",
    "model_from_state_dict", "tflite_to_torch_depth_order",
]
