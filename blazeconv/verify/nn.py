"""The NeuralNetwork layers of the Core ML evaluator, and the runner of a ``neuralNetwork`` model.

``run_network`` applies the model's image preprocessing (a ``scaler`` only) and evaluates its layers in order from
``NN_LAYERS``, the registry of ``layer kind -> function(params, inputs, layer)``: ``params`` the layer's parameter
message, ``inputs`` its input arrays in order, ``layer`` the layer (for its name and kind). Every layer registers
the parameter fields it interprets; a layer that sets any other field is an ``UnsupportedOperationError``.

Numerics: a neural network carries no precision of its own (the device chooses), so it is evaluated in float32
with its weights as stored (float16 weights widened). Layout: an image input becomes ``(1, 3, H, W)`` (rank-4
image mapping), an array input keeps its shape (exact array mapping); spatial layers work on the last two axes.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from .base import EvaluationError, UnsupportedOperationError, registry
from .kernels import (
    bilinear,
    convolve,
    depth_to_space,
    divide,
    expand_dims,
    gather,
    grid_align_corners,
    grid_half_pixel,
    grid_nn_default,
    max_pool,
    pixel_shuffle,
    reshape,
    same_pads,
    sigmoid,
    space_to_depth,
    strided_slice,
)

NN_LAYERS, _nn_layer = registry("neural network layer")
# Fields of a layer's parameters each implementation interprets; any other set field is refused.
_NN_FIELDS: dict[str, set[str]] = {}


def _nn(kind: str, fields: set[str]):
    def add(function):
        _NN_FIELDS[kind] = fields
        return _nn_layer(kind)(function)

    return add


def _weights(params, shape=None) -> np.ndarray:
    """A ``WeightParams`` as float32 (float16 storage widened); quantized weights are refused."""
    stored = {f.name for f, _ in params.ListFields()}
    if stored - {"floatValue", "float16Value"}:
        raise UnsupportedOperationError(f"weights stored as {sorted(stored)} are not supported by the evaluator")
    if "float16Value" in stored:
        data = np.frombuffer(params.float16Value, np.float16).astype(np.float32)
    else:
        data = np.asarray(params.floatValue, np.float32)
    return data if shape is None else data.reshape(shape)


def run_network(spec, inputs: dict, data_dir, counts: Counter) -> dict:
    """The outputs of a ``neuralNetwork`` model by name, float32; ``data_dir`` is unused (weights are in the spec).

    ``inputs``: arrays by name (``None`` for an absent optional one); image planes ``(3, H, W)`` are scaled by
    the model's preprocessing and become ``(1, 3, H, W)``.
    """
    network = spec.neuralNetwork
    env: dict[str, np.ndarray] = {}
    scalers = {}
    for step in network.preprocessing:
        if step.WhichOneof("preprocessor") != "scaler":
            raise UnsupportedOperationError(f"preprocessing {step.WhichOneof('preprocessor')} is not supported")
        scalers[step.featureName] = step.scaler
    for description in spec.description.input:
        value = inputs[description.name]
        if description.type.WhichOneof("Type") == "imageType":
            if network.imageInputShapeMapping != 1:  # RANK4_IMAGE_MAPPING
                raise UnsupportedOperationError("only rank-4 image input mapping is supported by the evaluator")
            scaler = scalers.get(description.name)
            if scaler is not None:
                counts["nn:preprocessing.scaler"] += 1
                value = _scale_image(value, scaler, description.type.imageType.colorSpace)
            value = value[None]  # (1, 3, H, W)
        elif value is not None and network.arrayInputShapeMapping != 1:  # EXACT_ARRAY_MAPPING
            raise UnsupportedOperationError("only exact array input mapping is supported by the evaluator")
        env[description.name] = None if value is None else np.asarray(value, np.float32)
    for layer in network.layers:
        kind = layer.WhichOneof("layer")
        counts[f"nn:{kind}"] += 1
        implementation = NN_LAYERS.get(kind)
        if implementation is None:
            raise UnsupportedOperationError(f"neural network layer '{kind}' ('{layer.name}') is not supported by the evaluator")
        params = getattr(layer, kind)
        unknown = {f.name for f, _ in params.ListFields()} - _NN_FIELDS[kind]
        if unknown:
            raise UnsupportedOperationError(
                f"layer '{layer.name}' ({kind}) sets {', '.join(sorted(unknown))}, which the evaluator does not interpret"
            )
        missing = [name for name in layer.input if name not in env]
        if missing:
            raise EvaluationError(f"layer '{layer.name}' reads {missing} before it is computed")
        results = implementation(params, [env[name] for name in layer.input], layer)
        results = results if isinstance(results, tuple) else (results,)
        for name, result in zip(layer.output, results, strict=True):
            env[name] = np.asarray(result, np.float32)
    return {d.name: env[d.name] for d in spec.description.output}


def _scale_image(planes: np.ndarray, scaler, colour_space: int) -> np.ndarray:
    """NeuralNetworkImageScaler: ``channelScale * x + bias`` per channel, biases named by colour."""
    red, green, blue = scaler.redBias, scaler.greenBias, scaler.blueBias
    biases = (red, green, blue) if colour_space == 20 else (blue, green, red)
    scale = np.float32(scaler.channelScale)
    return planes * scale + np.asarray(biases, np.float32)[:, None, None]


def _padding_amounts(border) -> tuple[int, int, int, int]:
    """NN ``paddingAmounts`` (height, width borders) -> ``(top, bottom, left, right)``; none set is 0."""
    amounts = list(border.borderAmounts) or []
    if len(amounts) not in (0, 2):
        raise UnsupportedOperationError(f"padding amounts for {len(amounts)} axes, expected 2")
    if not amounts:
        return 0, 0, 0, 0
    return amounts[0].startEdgeSize, amounts[0].endEdgeSize, amounts[1].startEdgeSize, amounts[1].endEdgeSize


_CONV_FIELDS = {"outputChannels", "kernelChannels", "nGroups", "kernelSize", "stride", "dilationFactor", "valid",
                "same", "hasBias", "weights", "bias"}


@_nn("convolution", _CONV_FIELDS)
def _nn_convolution(params, inputs, layer):
    (x,) = inputs
    kernel = list(params.kernelSize) or [3, 3]
    strides = list(params.stride) or [1, 1]
    dilations = list(params.dilationFactor) or [1, 1]
    groups = params.nGroups or 1
    weight = _weights(params.weights, (params.outputChannels, params.kernelChannels, *kernel))
    bias = _weights(params.bias) if params.hasBias else None
    if params.WhichOneof("ConvolutionPaddingType") == "same":
        first = params.same.asymmetryMode == 1  # TOP_LEFT_HEAVY
        top, bottom = same_pads(x.shape[-2], kernel[0], strides[0], dilations[0], first)
        left, right = same_pads(x.shape[-1], kernel[1], strides[1], dilations[1], first)
        pads = (top, bottom, left, right)
    else:
        pads = _padding_amounts(params.valid.paddingAmounts)
    return convolve(x, weight, bias, strides, dilations, groups, pads)


@_nn("pooling", {"type", "kernelSize", "stride", "valid", "avgPoolExcludePadding"})
def _nn_pooling(params, inputs, layer):
    (x,) = inputs
    if params.type != 0:  # MAX
        raise UnsupportedOperationError(f"layer '{layer.name}': pooling type {params.type} is not supported (MAX only)")
    kernel, strides = list(params.kernelSize), list(params.stride)
    return max_pool(x, kernel, strides, _padding_amounts(params.valid.paddingAmounts))


@_nn("activation", {"ReLU", "sigmoid", "linear"})
def _nn_activation(params, inputs, layer):
    (x,) = inputs
    kind = params.WhichOneof("NonlinearityType")
    if kind == "ReLU":
        return np.maximum(x, 0)
    if kind == "sigmoid":
        return sigmoid(x)
    if kind == "linear":
        return x * np.float32(params.linear.alpha) + np.float32(params.linear.beta)
    raise UnsupportedOperationError(f"layer '{layer.name}': activation {kind} is not supported")


@_nn("padding", {"constant", "paddingAmounts"})
def _nn_padding(params, inputs, layer):
    (x,) = inputs
    if params.WhichOneof("PaddingType") != "constant":
        raise UnsupportedOperationError(f"layer '{layer.name}': padding {params.WhichOneof('PaddingType')} is not supported")
    top, bottom, left, right = _padding_amounts(params.paddingAmounts)
    pairs = [(0, 0)] * (x.ndim - 2) + [(top, bottom), (left, right)]
    return np.pad(x, pairs, constant_values=np.float32(params.constant.value))


@_nn("constantPad", {"value", "padAmounts"})
def _nn_constant_pad(params, inputs, layer):
    (x,) = inputs
    amounts = list(params.padAmounts)
    if len(amounts) != 2 * x.ndim:
        raise EvaluationError(f"layer '{layer.name}': {len(amounts)} pad amounts for rank {x.ndim}")
    pairs = [(amounts[2 * i], amounts[2 * i + 1]) for i in range(x.ndim)]
    return np.pad(x, pairs, constant_values=np.float32(params.value))


@_nn("add", {"alpha"})
def _nn_add(params, inputs, layer):
    if len(inputs) == 1:
        return inputs[0] + np.float32(params.alpha)
    total = inputs[0]
    for x in inputs[1:]:
        total = total + x
    return total


@_nn("multiply", {"alpha"})
def _nn_multiply(params, inputs, layer):
    if len(inputs) == 1:
        return inputs[0] * np.float32(params.alpha)
    product = inputs[0]
    for x in inputs[1:]:
        product = product * x
    return product


_NN_BINARY = {
    "addBroadcastable": np.add, "subtractBroadcastable": np.subtract, "multiplyBroadcastable": np.multiply,
    "divideBroadcastable": divide, "minBroadcastable": np.minimum, "maxBroadcastable": np.maximum,
}
for _kind in _NN_BINARY:
    _nn(_kind, set())(lambda params, inputs, layer: _NN_BINARY[layer.WhichOneof("layer")](*inputs))

_NN_COMPARE = {
    "greaterThan": np.greater, "greaterEqual": np.greater_equal, "lessThan": np.less, "lessEqual": np.less_equal,
    "equal": np.equal, "notEqual": np.not_equal,
}


def _nn_compare(params, inputs, layer):
    """Comparison: of two inputs, or of one input with ``alpha``; true is 1.0."""
    compare = _NN_COMPARE[layer.WhichOneof("layer")]
    right = inputs[1] if len(inputs) == 2 else np.float32(params.alpha)
    return compare(inputs[0], right).astype(np.float32)


for _kind in _NN_COMPARE:
    _nn(_kind, {"alpha"})(_nn_compare)


@_nn("logicalAnd", set())
def _nn_logical_and(params, inputs, layer):
    return np.logical_and(inputs[0] != 0, inputs[1] != 0).astype(np.float32)


@_nn("logicalNot", set())
def _nn_logical_not(params, inputs, layer):
    return (inputs[0] == 0).astype(np.float32)


@_nn("whereBroadcastable", set())
def _nn_where(params, inputs, layer):
    condition, x, y = inputs
    return np.where(condition != 0, x, y)


@_nn("clip", {"minVal", "maxVal"})
def _nn_clip(params, inputs, layer):
    return np.minimum(np.maximum(inputs[0], np.float32(params.minVal)), np.float32(params.maxVal))


@_nn("floor", set())
def _nn_floor(params, inputs, layer):
    return np.floor(inputs[0])


@_nn("ceil", set())
def _nn_ceil(params, inputs, layer):
    return np.ceil(inputs[0])


@_nn("transpose", {"axes"})
def _nn_transpose(params, inputs, layer):
    return np.transpose(inputs[0], list(params.axes))


@_nn("reshapeStatic", {"targetShape"})
def _nn_reshape_static(params, inputs, layer):
    return reshape(inputs[0], params.targetShape)


@_nn("expandDims", {"axes"})
def _nn_expand_dims(params, inputs, layer):
    return expand_dims(inputs[0], params.axes)


@_nn("concatND", {"axis"})
def _nn_concat(params, inputs, layer):
    return np.concatenate(inputs, axis=params.axis)


@_nn("stack", {"axis"})
def _nn_stack(params, inputs, layer):
    return np.stack(inputs, axis=params.axis)


@_nn("tile", {"reps"})
def _nn_tile(params, inputs, layer):
    return np.tile(inputs[0], list(params.reps))


@_nn("sliceStatic", {"beginIds", "beginMasks", "endIds", "endMasks", "strides", "squeezeMasks"})
def _nn_slice_static(params, inputs, layer):
    (x,) = inputs
    squeeze = list(params.squeezeMasks) or [False] * x.ndim
    return strided_slice(x, params.beginIds, params.endIds, params.strides, params.beginMasks, params.endMasks, squeeze)


@_nn("slice", {"startIndex", "endIndex", "stride", "axis"})
def _nn_slice(params, inputs, layer):
    """SliceLayer: ``[startIndex, endIndex)`` with ``stride`` along axis -3 (channel), -2 (height) or -1 (width)."""
    (x,) = inputs
    axis = {0: -3, 1: -2, 2: -1}[params.axis]
    index = [slice(None)] * x.ndim
    index[axis] = slice(params.startIndex, params.endIndex, params.stride or 1)
    return x[tuple(index)]


@_nn("loadConstantND", {"shape", "data"})
def _nn_load_constant(params, inputs, layer):
    return _weights(params.data, tuple(params.shape))


@_nn("gather", {"axis"})
def _nn_gather(params, inputs, layer):
    return gather(inputs[0], inputs[1], params.axis)


@_nn("upsample", {"scalingFactor", "fractionalScalingFactor", "mode", "linearUpsampleMode"})
def _nn_upsample(params, inputs, layer):
    """UpsampleLayer on the last two axes (rank >= 3). ``scalingFactor`` (integers, default ``[1, 1]``) or
    ``fractionalScalingFactor`` (BILINEAR with ALIGN_CORNERS_* only; here only where it gives whole sizes).
    NN (nearest) repeats every pixel ``scalingFactor`` times; BILINEAR samples at the grid ``linearUpsampleMode``
    documents: DEFAULT, ALIGN_CORNERS_TRUE, ALIGN_CORNERS_FALSE."""
    (x,) = inputs
    if x.ndim < 3:
        raise EvaluationError(f"layer '{layer.name}': upsample of rank {x.ndim}, needs at least 3")
    integral, fractional = list(params.scalingFactor), list(params.fractionalScalingFactor)
    if integral and fractional:
        raise EvaluationError(f"layer '{layer.name}': both scalingFactor and fractionalScalingFactor are set")
    factors = integral or fractional or [1, 1]
    if len(factors) != 2:
        raise EvaluationError(f"layer '{layer.name}': {len(factors)} scaling factors, expected 2 (H, W)")
    sizes = []
    for size, factor in zip(x.shape[-2:], factors):
        scaled = size * float(factor)
        if scaled != math.floor(scaled) or scaled < 1:
            raise UnsupportedOperationError(
                f"layer '{layer.name}': scaling {size} by {factor} gives {scaled} pixels; only whole sizes are supported"
            )
        sizes.append(int(scaled))
    mode = {0: "NN", 1: "BILINEAR"}.get(params.mode)
    linear = {0: "DEFAULT", 1: "ALIGN_CORNERS_TRUE", 2: "ALIGN_CORNERS_FALSE"}.get(params.linearUpsampleMode)
    if mode is None or linear is None:
        raise UnsupportedOperationError(f"layer '{layer.name}': upsample mode {params.mode}/{params.linearUpsampleMode}")
    if mode == "NN":
        if fractional or params.linearUpsampleMode:
            raise UnsupportedOperationError(f"layer '{layer.name}': nearest upsampling takes integer factors and no linear mode")
        return np.repeat(np.repeat(x, int(factors[0]), axis=-2), int(factors[1]), axis=-1)
    if fractional and linear == "DEFAULT":
        raise UnsupportedOperationError(f"layer '{layer.name}': fractional scaling needs an ALIGN_CORNERS_* mode")
    grid = {"DEFAULT": grid_nn_default, "ALIGN_CORNERS_TRUE": grid_align_corners,
            "ALIGN_CORNERS_FALSE": grid_half_pixel}[linear]
    return bilinear(x, grid(x.shape[-2], sizes[0]), grid(x.shape[-1], sizes[1]))


_REORGANIZE = {0: space_to_depth, 1: depth_to_space, 2: pixel_shuffle}


@_nn("reorganizeData", {"mode", "blockSize"})
def _nn_reorganize_data(params, inputs, layer):
    """ReorganizeDataLayer on the last three axes (C, H, W): SPACE_TO_DEPTH, DEPTH_TO_SPACE (TensorFlow's channel
    order: output channel c of block offset (i, j) is input channel ``(i*b + j)*C + c``) or PIXEL_SHUFFLE
    (PyTorch's: input channel ``c*b*b + i*b + j``). ``blockSize`` must exceed 1."""
    (x,) = inputs
    if x.ndim < 3:
        raise EvaluationError(f"layer '{layer.name}': reorganizeData of rank {x.ndim}, needs at least 3")
    if params.mode not in _REORGANIZE:
        raise UnsupportedOperationError(f"layer '{layer.name}': reorganizeData mode {params.mode} is not supported")
    if params.blockSize < 2:
        raise EvaluationError(f"layer '{layer.name}': block size {params.blockSize}, must be greater than 1")
    return _REORGANIZE[params.mode](x, int(params.blockSize))


@_nn("argMax", {"axis", "removeDim"})
def _nn_argmax(params, inputs, layer):
    result = np.argmax(inputs[0], axis=params.axis)  # the first of equal maxima
    return (result if params.removeDim else np.expand_dims(result, params.axis)).astype(np.float32)


@_nn("reduceSum", {"axes", "keepDims", "reduceAll"})
def _nn_reduce_sum(params, inputs, layer):
    axes = None if params.reduceAll else tuple(params.axes)
    return np.sum(inputs[0], axis=axes, keepdims=params.keepDims)


@_nn("batchedMatmul", {"transposeA", "transposeB"})
def _nn_batched_matmul(params, inputs, layer):
    """Two-input BatchedMatMul: a 1-D ``a`` is ``(1, D)``, a 1-D ``b`` is ``(D, 1)``; the result keeps rank >= 2."""
    a, b = inputs
    a = a[None] if a.ndim == 1 else a
    b = b[:, None] if b.ndim == 1 else b
    if params.transposeA:
        a = np.swapaxes(a, -1, -2)
    if params.transposeB:
        b = np.swapaxes(b, -1, -2)
    return np.matmul(a, b)
