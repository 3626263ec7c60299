"""Evaluate a saved Core ML model with numpy, on any OS: every operation of it, none skipped.

Core ML itself runs only on Apple platforms. To know on Linux that a converted model computes the right thing,
this module reads the saved file's specification and executes it: an ML program operation by operation (the MIL
program as stored in the protobuf, weights read from the package's blob file), a neural network layer by layer,
Core ML's ``NonMaximumSuppression`` model by its documented semantics, and a pipeline model by model. An
operation, layer, model type or parameter it does not interpret is an ``UnsupportedOperationError`` — never a
silent pass.

Numerics: every operation computes in float32 (float16 inputs widen exactly) and its result is rounded to the
dtype the program declares for it. A float16 program is therefore evaluated with float16 values wherever the
program has them; elementwise results equal IEEE float16 arithmetic, convolutions and matrix products accumulate
in float32. Neural networks carry no precision of their own (the device chooses): they are evaluated in float32
with their weights as stored (float16 weights included).

Image inputs are given as ``(H, W, 3)`` uint8 RGB arrays of exactly the declared size; the evaluator lays them out
per the input's colour space and applies the preprocessing the model declares (a neural network's scaler; an ML
program does its own scaling in operations).

Each kind of model has its module: ``mil`` (ML program ops), ``nn`` (neural network layers) and ``nms``
(``NonMaximumSuppression``), over the numpy kernels of ``kernels`` and the error types and registry of ``base``.
This module loads the spec, walks a pipeline stage by stage, checks and lays out the features, and hands each model
to the runner of its kind, ``runner(spec, inputs, data_dir, counts) -> {output name: value}``.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ImageError, OptionsError
from .base import EvaluationError, UnsupportedOperationError
from .mil import MIL_OPS, run_program
from .nms import pick_top_nms, run_nms
from .nn import NN_LAYERS, run_network

__all__ = ["Evaluation", "EvaluationError", "UnsupportedOperationError", "evaluate", "pick_top_nms", "supported_operations"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Evaluation:
    """The result of evaluating a model.

    ``outputs``: the model's outputs by name, in the declared dtypes; ``features``: every feature of the evaluation
    (inputs as given, and for a pipeline the outputs of every stage); ``operations``: how many of each operation
    were evaluated, keyed ``"<kind>:<type>"`` (``mil:conv``, ``nn:convolution``, ``model:nonMaximumSuppression``).
    """

    outputs: dict[str, np.ndarray]
    features: dict[str, object] = field(repr=False)
    operations: dict[str, int]


def evaluate(model, inputs: dict[str, object]) -> Evaluation:
    """Evaluate ``model`` (a path to a ``.mlpackage`` / ``.mlmodel``, or a loaded ``coremltools`` MLModel).

    ``inputs``: image inputs as ``(H, W, 3)`` uint8 RGB arrays, multi-arrays as arrays, doubles as floats;
    optional inputs may be left out.
    """
    spec, data_dir = _load(model)
    counts: Counter[str] = Counter()
    features = dict(inputs)
    outputs = _evaluate_spec(spec, features, data_dir, counts)
    return Evaluation(outputs, features, dict(counts))


def _load(model):
    """``(spec, data_dir)``: the protobuf spec and the directory ``@model_path`` names (None for an .mlmodel)."""
    from ..export.coreml import load_mlmodel

    if isinstance(model, (str, Path)):
        model = load_mlmodel(model)
    weights_dir = getattr(model, "weights_dir", None)
    data_dir = Path(weights_dir).parent if weights_dir else None
    return model.get_spec(), data_dir


def _evaluate_spec(spec, features: dict, data_dir: Path | None, counts: Counter) -> dict[str, np.ndarray]:
    kind = spec.WhichOneof("Type")
    counts[f"model:{kind}"] += 1
    if kind == "pipeline":
        for stage in spec.pipeline.models:
            features.update(_evaluate_spec(stage, features, data_dir, counts))
        return {o.name: features[o.name] for o in spec.description.output}
    runner = _MODEL_RUNNERS.get(kind)
    if runner is None:
        raise UnsupportedOperationError(f"model type '{kind}' is not supported by the evaluator")
    inputs = {d.name: _input_value(d, features) for d in spec.description.input}
    outputs = runner(spec, inputs, data_dir, counts)
    return {d.name: _output_value(d, outputs[d.name]) for d in spec.description.output}


# ----------------------------------------------------------------------------------- features


_ARRAY_DTYPES = {65568: np.float32, 65600: np.float64, 131104: np.int32, 65552: np.float16, 131080: np.int8}


def _input_value(description, features: dict):
    """The input ``description`` names, checked against its declared type; ``None`` for an absent optional one."""
    name, kind = description.name, description.type.WhichOneof("Type")
    if name not in features or features[name] is None:
        if description.type.isOptional:
            return None
        raise OptionsError(f"input '{name}' ({kind}) is required and was not given")
    value = features[name]
    if kind == "imageType":
        return _image_planes(name, description.type.imageType, value)
    if kind == "multiArrayType":
        array_type = description.type.multiArrayType
        array = np.asarray(value, _ARRAY_DTYPES.get(array_type.dataType, np.float32))
        shape = tuple(array_type.shape)
        if shape and array.shape != shape:
            raise OptionsError(f"input '{name}' has shape {array.shape}, the model declares {shape}")
        return array
    if kind == "doubleType":
        return float(value)
    if kind == "int64Type":
        return int(value)
    raise UnsupportedOperationError(f"input '{name}' of type {kind} is not supported by the evaluator")


def _image_planes(name: str, image_type, value) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB -> ``(3, H, W)`` float32 0..255 in the input's channel order (RGB or BGR)."""
    array = np.asarray(value)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ImageError(f"image input '{name}' must be an (H, W, 3) uint8 RGB array, got {array.dtype} {array.shape}")
    expected = (image_type.height, image_type.width)
    if array.shape[:2] != expected:
        raise ImageError(f"image input '{name}' must be {expected[1]}x{expected[0]}, got {array.shape[1]}x{array.shape[0]}")
    planes = array.transpose(2, 0, 1).astype(np.float32)  # (3, H, W) R, G, B
    colour = image_type.colorSpace
    if colour == 20:  # RGB
        return planes
    if colour == 30:  # BGR
        return planes[::-1].copy()
    raise UnsupportedOperationError(f"image input '{name}' has colour space {colour}; only RGB and BGR are supported")


def _output_value(description, value) -> np.ndarray:
    kind = description.type.WhichOneof("Type")
    if kind == "multiArrayType":
        dtype = _ARRAY_DTYPES.get(description.type.multiArrayType.dataType)
        if dtype is None:
            raise UnsupportedOperationError(f"output '{description.name}' has an unsupported array type")
        return np.asarray(value).astype(dtype)
    if kind == "doubleType":
        return np.asarray(value, np.float64)
    raise UnsupportedOperationError(f"output '{description.name}' of type {kind} is not supported by the evaluator")


# The runner of each model type: runner(spec, inputs, data_dir, counts) -> {output name: value}, ``inputs`` as
# ``_input_value`` gives them (image inputs as (3, H, W) float32 planes), ``counts`` the operation counter to add to.
_MODEL_RUNNERS = {"mlProgram": run_program, "neuralNetwork": run_network, "nonMaximumSuppression": run_nms}


def supported_operations() -> dict[str, list[str]]:
    """The ML program ops and neural network layers the evaluator interprets (for documentation and tests)."""
    return {"mil": sorted(set(MIL_OPS) | {"const"}), "nn": sorted(NN_LAYERS), "models": sorted(_MODEL_RUNNERS)}
