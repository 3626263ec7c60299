"""BlazeFace weights -> Core ML: a Vision-ready detector pipeline, or a landmarks model with NMS inside.

Two kinds of model, each as an ML program (``.mlpackage``, iOS 15+) or a neural network (``.mlmodel``, iOS 14):

* ``vision`` — a pipeline of two models. The first takes the ``image`` (RGB, ``S x S``; the ``-1..1``
  normalisation is inside), runs the network and decodes every anchor into ``raw_confidence (N, 1)`` and
  ``raw_coordinates (N, 4)`` ``(x_center, y_center, width, height)`` normalised to the input, both FLOAT32.
  The second is Core ML's ``NonMaximumSuppression`` model (class ``face``), whose ``confidence`` and
  ``coordinates`` outputs are what Vision turns into ``VNRecognizedObjectObservation``s. Optional Double inputs
  ``iouThreshold`` and ``confidenceThreshold`` override the defaults baked in.
* ``landmarks`` — one model that also runs MediaPipe's *weighted* non-maximum suppression
  (``NonMaxSuppressionCalculator``, algorithm WEIGHTED) inside the program, unrolled for at most ``max_faces``
  faces, so keypoints survive: ``detections (max_faces, 17)`` rows ``(xmin, ymin, xmax, ymax, 6 x (x, y),
  score)`` normalised to the input, best first, zero rows after the last face, and ``count (1,)`` Int32.

The decoding mirrors MediaPipe's ``TensorsToDetectionsCalculator``: ``x = r0/S*aw + ax``, ``y = r1/S*ah + ay``,
``w = r2/S*aw``, ``h = r3/S*ah``, keypoint k ``(r[4+2k]/S*aw + ax, r[5+2k]/S*ah + ay)``, score
``sigmoid(clip(logit, -100, 100))``.

With float16 precision only the convolutional network (every op on a rank-4 tensor) computes in float16;
decoding and NMS stay float32, so coordinates do not lose digits and the NMS stage's inputs are FLOAT32.
For the neural-network format "float16" means the convolution weights are stored as float16.

coremltools is imported inside the functions that need it, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import shutil
import tempfile
import warnings
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._version import __version__
from ..errors import BlazeconvError, OptionsError, require
from ..network import SameConv2d, Weights, model_from_state_dict
from ..variants import KEYPOINT_NAMES, NMS_IOU_THRESHOLD, SCORE_CLIPPING, Variant
from . import DEFAULT_MAX_FACES, DETECTION_COLUMNS, check_options

log = logging.getLogger(__name__)

MODEL_KINDS = ("vision", "landmarks")
# Format -> (file suffix, minimum deployment target it is built for).
FORMATS = {"mlprogram": (".mlpackage", "iOS15"), "neuralnetwork": (".mlmodel", "iOS14")}
PRECISIONS = ("float16", "float32")

# Feature names: the image input; the Vision pipeline's internal and public features; the landmarks outputs.
IMAGE = "image"
RAW_CONFIDENCE = "raw_confidence"
RAW_COORDINATES = "raw_coordinates"
CONFIDENCE = "confidence"
COORDINATES = "coordinates"
IOU_THRESHOLD_INPUT = "iouThreshold"
CONFIDENCE_THRESHOLD_INPUT = "confidenceThreshold"
DETECTIONS = "detections"
COUNT = "count"
CLASS_LABEL = "face"

LICENSE = "Apache-2.0 (the MediaPipe BlazeFace model by Google; converted by blazeconv)"
AUTHOR = "Google MediaPipe (model); converted with blazeconv"


class CoreMLError(BlazeconvError):
    """A Core ML file that cannot be read, or a model coremltools cannot build or save."""

    exit_code = 3


# ------------------------------------------------------------------------------------------ options


@dataclass(frozen=True)
class CoreMLOptions:
    """What to build. ``precision=None`` means float16 for ``mlprogram`` and float32 for ``neuralnetwork``;
    ``score_threshold=None`` means the variant's ``min_score``."""

    kind: str = "vision"
    format: str = "mlprogram"
    precision: str | None = None
    iou_threshold: float = NMS_IOU_THRESHOLD
    score_threshold: float | None = None
    max_faces: int = DEFAULT_MAX_FACES

    def resolved(self, variant: Variant) -> CoreMLOptions:
        """A copy with every default filled in and every value checked (``OptionsError`` otherwise)."""
        if self.kind not in MODEL_KINDS:
            raise OptionsError(f"unknown Core ML model kind {self.kind!r}; known: {', '.join(MODEL_KINDS)}")
        if self.format not in FORMATS:
            raise OptionsError(f"unknown Core ML format {self.format!r}; known: {', '.join(FORMATS)}")
        precision = self.precision or ("float16" if self.format == "mlprogram" else "float32")
        if precision not in PRECISIONS:
            raise OptionsError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
        score = variant.min_score if self.score_threshold is None else float(self.score_threshold)
        iou = float(self.iou_threshold)
        check_options(score, iou, int(self.max_faces))  # the landmarks model unrolls its NMS once per row
        return CoreMLOptions(self.kind, self.format, precision, iou, score, int(self.max_faces))

    @property
    def suffix(self) -> str:
        return FORMATS[self.format][0]


@dataclass(frozen=True)
class CoreMLSource:
    """The network to export and what is known about where it came from.

    ``anchors``: ``(N, 4)`` float32 ``(x_center, y_center, w, h)`` in 0..1 of the input;
    ``source_sha256`` is the SHA-256 of the ``.tflite`` the weights came from, ``None`` when unknown;
    ``recognised_by`` says how the variant was decided (for the summary and the metadata).
    """

    path: Path
    variant: Variant
    state_dict: dict[str, torch.Tensor] = field(repr=False)
    source_sha256: str | None
    recognised_by: str
    anchors: np.ndarray = field(repr=False)
    anchors_from: str


def coreml_source(weights: Weights, anchors: str | Path | None = None) -> CoreMLSource:
    """What ``build_coreml`` exports: ``weights`` (``sources.load_weights``) with the variant's generated anchors,
    or the ``(N, 4)`` ``.npy`` table ``anchors`` instead."""
    table, anchors_from = _anchors_for(weights.variant, anchors)
    return CoreMLSource(weights.path, weights.variant, weights.state_dict, weights.source_sha256, weights.recognised_by,
                        table, anchors_from)


def _anchors_for(variant: Variant, anchors_file: str | Path | None) -> tuple[np.ndarray, str]:
    if anchors_file is None:
        return variant.anchors(), f"generated ({variant.name} SsdAnchorsCalculator options)"
    anchors_file = Path(anchors_file)
    try:
        table = np.load(anchors_file, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise OptionsError(f"{anchors_file}: not a readable .npy anchor table ({exc})") from None
    expected = (variant.num_anchors, 4)
    if table.shape != expected or table.dtype.kind != "f":
        raise OptionsError(f"{anchors_file}: anchors must be a float {list(expected)} array, got {table.dtype} {list(table.shape)}")
    if not np.all(np.isfinite(table)) or np.any(table[:, 2:] <= 0):
        raise OptionsError(f"{anchors_file}: anchors must be finite with positive width and height")
    return np.ascontiguousarray(table, np.float32), anchors_file.name


# ------------------------------------------------------------------------------- the traced modules


class _PaddedConv(nn.Module):
    """A ``SameConv2d`` with its TensorFlow ``SAME`` padding fixed for one input size (a constant ``pad`` op)."""

    def __init__(self, conv: nn.Conv2d, pads: tuple[int, int, int, int]):
        super().__init__()
        self.conv = conv
        self.pads = pads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        if any(self.pads):
            x = F.pad(x, self.pads)
        return F.conv2d(x, c.weight, c.bias, c.stride, 0, c.dilation, c.groups)


def _same_pads(size: tuple[int, int], conv: nn.Conv2d) -> tuple[int, int, int, int]:
    """``F.pad`` order ``(left, right, top, bottom)`` of TensorFlow ``SAME`` padding: odd pixel after."""
    pads: list[int] = []
    for length, kernel, stride in zip(reversed(size), reversed(conv.kernel_size), reversed(conv.stride)):
        total = max((-(-length // stride) - 1) * stride + kernel - length, 0)
        pads += [total // 2, total - total // 2]
    return tuple(pads)  # type: ignore[return-value]


def _static_network(model: nn.Module, input_size: int) -> nn.Module:
    """A copy of ``model`` whose SAME paddings are constants for ``input_size``.

    ``SameConv2d`` computes its padding from the runtime shape, which tracing records as shape arithmetic the
    Core ML converter cannot fold; with the input size fixed, the padding is a constant.
    """
    model = copy.deepcopy(model).eval()
    pads: dict[nn.Module, tuple[int, int, int, int]] = {}

    def record(module, args):
        pads[module] = _same_pads(tuple(args[0].shape[-2:]), module)

    hooks = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, SameConv2d)]
    with torch.no_grad():
        model(torch.zeros(1, 3, input_size, input_size))
    for hook in hooks:
        hook.remove()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, SameConv2d):
                parent._modules[name] = _PaddedConv(child, pads[child])
    return model


class _Decoder(nn.Module):
    """Network + decoding of every anchor (MediaPipe ``TensorsToDetectionsCalculator``), for one image."""

    def __init__(self, network: nn.Module, anchors: np.ndarray, input_size: int):
        super().__init__()
        self.network = network
        table = torch.from_numpy(np.asarray(anchors, np.float32))
        self.register_buffer("centre", table[:, 0:2].clone())  # (N, 2) anchor (x, y)
        self.register_buffer("extent", table[:, 2:4].clone())  # (N, 2) anchor (w, h)
        self.scale = float(input_size)
        self.num_anchors = len(table)  # a Python int: traced shapes would become ops the converter cannot fold

    def decode(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``image (1, 3, S, S)`` in -1..1 -> ``scores (N,)``, ``centre (N, 2)``, ``size (N, 2)``, ``keypoints (N, K, 2)``."""
        regressors, classificators = self.network(image)
        raw = regressors[0]  # (N, 16)
        logits = classificators[0, :, 0]  # (N,)
        scores = torch.sigmoid(torch.clamp(logits, -SCORE_CLIPPING, SCORE_CLIPPING))
        centre = raw[:, 0:2] / self.scale * self.extent + self.centre  # (N, 2)
        size = raw[:, 2:4] / self.scale * self.extent  # (N, 2)
        keypoints = raw[:, 4:].reshape(self.num_anchors, -1, 2) / self.scale * self.extent[:, None] + self.centre[:, None]  # (N, K, 2)
        return scores, centre, size, keypoints


class _VisionDetector(_Decoder):
    """``image`` -> ``raw_confidence (N, 1)``, ``raw_coordinates (N, 4)`` (x_center, y_center, w, h)."""

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores, centre, size, _ = self.decode(image)
        return scores[:, None], torch.cat([centre, size], dim=1)  # (N, 1), (N, 4)


class _LandmarksDetector(_Decoder):
    """``image`` -> ``detections (max_faces, 17)`` after MediaPipe's weighted NMS, and ``count (1,)`` int32.

    The NMS loop is unrolled ``max_faces`` times (a traced program has no data-dependent loop), each round
    exactly one round of ``NonMaxSuppressionCalculator``'s WEIGHTED algorithm: the best remaining detection's
    cluster is every remaining one with IoU > threshold (itself included); the row is the cluster's
    score-weighted mean box corners and keypoints with the best one's score; the cluster is removed; a round that
    removes nothing (a box without area) ends the loop. Detections start out as those with
    score >= ``score_threshold`` and a box of non-negative size, as TensorsToDetectionsCalculator keeps them.
    """

    def __init__(self, network, anchors, input_size, score_threshold: float, iou_threshold: float, max_faces: int):
        super().__init__(network, anchors, input_size)
        self.score_threshold = float(score_threshold)
        self.iou_threshold = float(iou_threshold)
        self.max_faces = int(max_faces)
        self.register_buffer("running_at_start", torch.ones(1, dtype=torch.bool))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores, centre, size, keypoints = self.decode(image)
        half = size / 2.0
        boxes = torch.cat([centre - half, centre + half], dim=1)  # (N, 4) xmin, ymin, xmax, ymax
        values = torch.cat([boxes, keypoints.reshape(self.num_anchors, -1)], dim=1)  # (N, 4 + 2K): what is averaged
        lows, highs = boxes[:, 0:2], boxes[:, 2:4]  # (N, 2) each
        extent = highs - lows  # (N, 2) width, height
        area = extent[:, 0] * extent[:, 1]  # (N,)
        # TensorsToDetectionsCalculator keeps score >= threshold and drops boxes of negative size.
        remaining = (scores >= self.score_threshold) & (extent[:, 0] >= 0) & (extent[:, 1] >= 0)  # (N,) bool
        running = self.running_at_start  # (1,) False once a round removed nothing
        no_score = torch.full_like(scores, -1.0)
        no_weight = torch.zeros_like(scores)
        rows, valid_rows = [], []
        for _ in range(self.max_faces):
            candidates = torch.where(remaining, scores, no_score)  # (N,) -1 where taken or filtered out
            best = torch.argmax(candidates, dim=0, keepdim=True)  # (1,) first of the best: MediaPipe's stable order
            best_score = candidates.index_select(0, best)  # (1,) -1 when nothing remains
            best_values = values.index_select(0, best)  # (1, 4 + 2K)
            best_area = area.index_select(0, best)  # (1,)
            overlap = torch.clamp(torch.minimum(best_values[:, 2:4], highs) - torch.maximum(best_values[:, 0:2], lows), min=0.0)
            intersection = overlap[:, 0] * overlap[:, 1]  # (N,)
            # OverlapSimilarity (IoU). A union of 0 gives NaN here, and NaN > threshold is False, as IoU 0 would be.
            iou = intersection / (best_area + area - intersection)
            cluster = remaining & (iou > self.iou_threshold)  # (N,) the best one too, unless it has no area
            weights = torch.where(cluster, scores, no_weight)
            total = weights.sum(dim=0, keepdim=True)  # (1,)
            mean = torch.matmul(weights[None], values) / total  # (1, 4 + 2K)
            merged = torch.where(total > 0, mean, best_values)
            rows.append(torch.cat([merged, best_score[None]], dim=1))  # (1, 4 + 2K + 1)
            valid_rows.append((best_score >= 0) & running)  # (1,)
            # The cluster is empty exactly when the best box has no area (its IoU with itself is then not 1) or
            # when the threshold is 1 or more; MediaPipe then outputs it as it is and stops.
            if self.iou_threshold < 1.0:
                running = running & (best_area > 0)
            else:
                running = running & ~running
            remaining = remaining & ~cluster
        valid = torch.stack(valid_rows)  # (max_faces, 1)
        detections = torch.cat(rows, dim=0)  # (max_faces, 4 + 2K + 1)
        detections = torch.where(valid, detections, torch.zeros_like(detections))  # zero rows after the last face
        found = valid.to(torch.int32).sum().reshape(1)  # (1,)
        return detections, found


# ---------------------------------------------------------------------------------------- building


def build_coreml(source: CoreMLSource, options: CoreMLOptions = CoreMLOptions()):
    """The Core ML model (a ``coremltools.models.MLModel``) of ``source``, described and with metadata.

    coremltools' intermediate packages never outlive the call (``_scratch_tempdir``); an ML program's own package
    is one temporary folder, removed when the returned model is garbage collected (or at exit).
    """
    variant = source.variant
    options = options.resolved(variant)
    network = _static_network(model_from_state_dict(source.state_dict, str(source.path)), variant.input_size)
    with _scratch_tempdir() as outside:
        if options.kind == "vision":
            detector = _VisionDetector(network, source.anchors, variant.input_size).eval()
            model = _convert(detector, variant.input_size, [RAW_CONFIDENCE, RAW_COORDINATES], options)
            model = _vision_pipeline(model, len(source.anchors), options)
        else:
            detector = _LandmarksDetector(
                network, source.anchors, variant.input_size, options.score_threshold, options.iou_threshold,
                options.max_faces,
            ).eval()
            model = _convert(detector, variant.input_size, [DETECTIONS, COUNT], options)
        model = _move_package(model, outside)
    _describe(model, source, options)
    return model


@contextlib.contextmanager
def _scratch_tempdir():
    """Point ``tempfile`` at a private folder while coremltools builds, and delete that folder afterwards, on
    success, failure or interrupt. Yields the temporary folder in use before.

    coremltools writes each intermediate ML program as a ``tmp*.mlpackage`` in the temporary folder and removes
    them only at exit, and the package of ``make_pipeline`` never (32 of them were left after one ``make``).
    ``tempfile.tempdir`` is process-wide: builds are not meant to run in several threads at once.
    """
    outside = tempfile.gettempdir()
    scratch = tempfile.mkdtemp(prefix="blazeconv-coreml-")
    saved = tempfile.tempdir
    tempfile.tempdir = scratch
    try:
        yield outside
    finally:
        tempfile.tempdir = saved
        shutil.rmtree(scratch, ignore_errors=True)


def _move_package(model, folder: str):
    """The same model with its package (an ML program's spec and weights) copied out of the scratch folder into a
    new temporary package in ``folder``, deleted when the model is garbage collected; other models as they are."""
    if not model.is_package:
        return model
    ct = coremltools()
    saved = tempfile.tempdir
    tempfile.tempdir = folder
    try:
        moved = ct.models.MLModel(model.get_spec(), weights_dir=model.weights_dir, skip_model_load=True)
    finally:
        tempfile.tempdir = saved
    weakref.finalize(moved, shutil.rmtree, moved.package_path, True)
    return moved


@contextlib.contextmanager
def _quiet_coremltools():
    """Keep coremltools' progress bars and Linux notices ("Failed to load _MLModelProxy") out of the terminal.

    Its warnings stay visible with debug logging; the captured progress text is logged at debug level.
    """
    debug = logging.getLogger().isEnabledFor(logging.DEBUG)
    ct_logger = logging.getLogger("coremltools")
    old_level = ct_logger.level
    if not debug:
        ct_logger.setLevel(logging.ERROR)
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured) if not debug else contextlib.nullcontext():
            yield
    finally:
        ct_logger.setLevel(old_level)
        if captured.getvalue():
            log.debug("coremltools: %s", captured.getvalue()[-2000:])


def coremltools():
    """Import coremltools quietly (it warns about its native runtime on Linux and untested torch versions)."""
    require("coremltools", "blazeconv[coreml]", "Core ML")
    with _quiet_coremltools():
        import coremltools as ct
    return ct


def _float16_selector(op) -> bool:
    """Ops that compute in float16 in a float16 ML program: those touching a rank-4 tensor (the network)."""
    tensors = list(op.outputs)
    for value in op.inputs.values():
        tensors.extend(value if isinstance(value, (list, tuple)) else [value])
    return any(getattr(t, "rank", 0) == 4 for t in tensors)


def _convert(module: nn.Module, input_size: int, output_names: list[str], options: CoreMLOptions):
    """Trace ``module`` and convert it; the image input normalises 0..255 RGB to -1..1 itself."""
    ct = coremltools()
    example = torch.zeros(1, 3, input_size, input_size)
    with torch.no_grad(), _quiet_coremltools(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # tracer and converter notices: logged below, not shown to the user
        traced = torch.jit.trace(module, example, check_trace=False)
        image = ct.ImageType(
            name=IMAGE,
            shape=(1, 3, input_size, input_size),
            scale=1.0 / 127.5,
            bias=[-1.0, -1.0, -1.0],
            color_layout=ct.colorlayout.RGB,
        )
        if options.format == "mlprogram":
            precision = (
                ct.transform.FP16ComputePrecision(op_selector=_float16_selector)
                if options.precision == "float16"
                else ct.precision.FLOAT32
            )
            outputs = [ct.TensorType(name=name) for name in output_names]
            model = ct.convert(
                traced,
                inputs=[image],
                outputs=outputs,
                convert_to="mlprogram",
                minimum_deployment_target=ct.target.iOS15,
                compute_precision=precision,
            )
        else:
            model = ct.convert(
                traced,
                inputs=[image],
                outputs=[ct.TensorType(name=name) for name in output_names],
                convert_to="neuralnetwork",
                minimum_deployment_target=ct.target.iOS14,
            )
            spec = model.get_spec()
            # The neural-network backend leaves output shapes undeclared; declare what the module returns.
            shapes = [tuple(t.shape) for t in module(example)]
            for output, shape in zip(spec.description.output, shapes):
                if not len(output.type.multiArrayType.shape):
                    output.type.multiArrayType.shape.extend(shape)
            if options.precision == "float16":
                _store_convolutions_as_float16(spec)
            model = ct.models.MLModel(spec, skip_model_load=True)
    for warning in caught:
        log.debug("while converting: %s: %s", warning.category.__name__, warning.message)
    return model


def _store_convolutions_as_float16(spec) -> None:
    """Neural network: store every convolution's weights and bias as float16 (they are computed per device)."""
    for layer in spec.neuralNetwork.layers:
        if layer.WhichOneof("layer") != "convolution":
            continue
        for params in (layer.convolution.weights, layer.convolution.bias):
            if len(params.floatValue):
                values = np.asarray(params.floatValue, np.float32)
                params.ClearField("floatValue")
                params.float16Value = values.astype(np.float16).tobytes()


def _vision_pipeline(detector, num_anchors: int, options: CoreMLOptions):
    """``detector`` followed by Core ML's NonMaximumSuppression model, as one pipeline Vision understands."""
    ct = coremltools()
    spec = detector.get_spec()
    for output in spec.description.output:  # the NMS stage wants FLOAT32 (N, C) and (N, 4)
        array = output.type.multiArrayType
        array.dataType = ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
        del array.shape[:]
        array.shape.extend([num_anchors, 1 if output.name == RAW_CONFIDENCE else 4])
    detector = _reload(detector, spec)
    nms = ct.models.MLModel(_nms_spec(num_anchors, options), skip_model_load=True)
    with _quiet_coremltools():
        pipeline = ct.utils.make_pipeline(detector, nms)
    spec = pipeline.get_spec()
    for feature in spec.description.input:
        if feature.name in (IOU_THRESHOLD_INPUT, CONFIDENCE_THRESHOLD_INPUT):
            feature.type.isOptional = True
    return _reload(pipeline, spec)


def _reload(model, spec):
    """A new MLModel of ``spec`` that keeps ``model``'s weights (an ML program's live beside the spec)."""
    ct = coremltools()
    if model.is_package:
        return ct.models.MLModel(spec, weights_dir=model.weights_dir, skip_model_load=True)
    return ct.models.MLModel(spec, skip_model_load=True)


def _nms_spec(num_anchors: int, options: CoreMLOptions):
    """The NonMaximumSuppression model: per-class PickTop over one class, thresholds overridable at run time."""
    ct = coremltools()
    proto = ct.proto
    spec = proto.Model_pb2.Model()
    spec.specificationVersion = 5 if options.format == "neuralnetwork" else 6
    float32 = proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
    for name, columns, what in (
        (RAW_CONFIDENCE, 1, "face confidence of every anchor"),
        (RAW_COORDINATES, 4, "decoded box of every anchor"),
    ):
        feature = spec.description.input.add()
        feature.name, feature.shortDescription = name, what
        feature.type.multiArrayType.dataType = float32
        feature.type.multiArrayType.shape.extend([num_anchors, columns])
    for name, columns in ((CONFIDENCE, 1), (COORDINATES, 4)):
        feature = spec.description.output.add()
        feature.name = name
        array = feature.type.multiArrayType
        array.dataType = float32
        array.shapeRange.sizeRanges.add(lowerBound=0, upperBound=options.max_faces)
        array.shapeRange.sizeRanges.add(lowerBound=columns, upperBound=columns)
    for name in (IOU_THRESHOLD_INPUT, CONFIDENCE_THRESHOLD_INPUT):
        feature = spec.description.input.add()
        feature.name = name
        feature.type.doubleType.MergeFromString(b"")
        feature.type.isOptional = True
    nms = spec.nonMaximumSuppression
    nms.pickTop.perClass = True
    nms.stringClassLabels.vector.extend([CLASS_LABEL])
    nms.iouThreshold = options.iou_threshold
    nms.confidenceThreshold = options.score_threshold
    nms.confidenceInputFeatureName = RAW_CONFIDENCE
    nms.coordinatesInputFeatureName = RAW_COORDINATES
    nms.iouThresholdInputFeatureName = IOU_THRESHOLD_INPUT
    nms.confidenceThresholdInputFeatureName = CONFIDENCE_THRESHOLD_INPUT
    nms.confidenceOutputFeatureName = CONFIDENCE
    nms.coordinatesOutputFeatureName = COORDINATES
    return spec


# ---------------------------------------------------------------------------------------- metadata


def _describe(model, source: CoreMLSource, options: CoreMLOptions) -> None:
    """Descriptions of the model, its inputs and outputs, and the user-defined metadata Xcode shows."""
    variant = source.variant
    size = variant.input_size
    if options.kind == "vision":
        model.short_description = (
            f"BlazeFace face detector ({variant.name}, {size}x{size}) with decoding and non-maximum suppression: "
            f"use with Vision (VNCoreMLRequest -> VNRecognizedObjectObservation, label '{CLASS_LABEL}')."
        )
        nms = f"Core ML NonMaximumSuppression (hard, per class, IoU > {options.iou_threshold:g} suppressed)"
    else:
        model.short_description = (
            f"BlazeFace face detector ({variant.name}, {size}x{size}) with keypoints: decoding and MediaPipe's "
            f"weighted non-maximum suppression inside; up to {options.max_faces} faces as rows of "
            "(xmin, ymin, xmax, ymax, 6 keypoints (x, y), score)."
        )
        nms = f"weighted (MediaPipe NonMaxSuppressionCalculator WEIGHTED, IoU > {options.iou_threshold:g} clusters)"
    model.author = AUTHOR
    model.license = LICENSE
    model.version = f"{variant.name}-{__version__}"
    descriptions = {
        IMAGE: f"RGB image, {size}x{size}; 0..255 is mapped to -1..1 inside the model. MediaPipe letterboxes: "
        "pad the upright picture to a centred black square, give Vision the square with imageCropAndScaleOption "
        "scaleFill, and map the outputs back by undoing the padding (docs/ios.md). scaleFill on a non-square "
        "picture squashes it.",
        IOU_THRESHOLD_INPUT: f"Optional: suppress boxes overlapping a better one by more than this IoU "
        f"(default {options.iou_threshold:g}).",
        CONFIDENCE_THRESHOLD_INPUT: f"Optional: drop detections scoring below this (default {options.score_threshold:g}).",
        CONFIDENCE: "Per face after NMS: the face score (0..1); Vision reports it as observation.confidence.",
        COORDINATES: "Per face after NMS: box (x_center, y_center, width, height), normalised 0..1 to the input, "
        "y downwards.",
        DETECTIONS: f"Faces after weighted NMS, best first, {options.max_faces} rows of {DETECTION_COLUMNS}: xmin, "
        f"ymin, xmax, ymax, then (x, y) of {', '.join(KEYPOINT_NAMES)}, then the score; normalised 0..1 to the "
        "input, y downwards. Rows from 'count' on are zero.",
        COUNT: "Number of valid rows in 'detections'.",
    }
    for name, text in descriptions.items():
        if name in model.input_description or name in model.output_description:
            target = model.input_description if name in model.input_description else model.output_description
            target[name] = text
    model.user_defined_metadata.update(
        {
            "variant": variant.name,
            "architecture": variant.architecture,
            "model_kind": options.kind,
            "format": options.format,
            "precision": options.precision,
            "input_size": str(size),
            "num_anchors": str(len(source.anchors)),
            "anchors": source.anchors_from,
            "iou_threshold": f"{options.iou_threshold:g}",
            "score_threshold": f"{options.score_threshold:g}",
            "max_faces": str(options.max_faces),
            "nms": nms,
            "keypoint_names": ",".join(KEYPOINT_NAMES),
            "source_tflite": variant.tflite_file if source.source_sha256 else "unknown",
            "source_sha256": source.source_sha256 or "unknown",
            "recognised_by": source.recognised_by,
            "blazeconv_version": __version__,
        }
    )
    if options.kind == "landmarks":
        model.user_defined_metadata["detection_columns"] = ",".join(
            ["xmin", "ymin", "xmax", "ymax"] + [f"{k}_{axis}" for k in KEYPOINT_NAMES for axis in "xy"] + ["score"]
        )


# ------------------------------------------------------------------------------------------ saving


def save_coreml(model, path: str | Path) -> Path:
    """Save ``model`` to ``path`` atomically: written beside it first, then renamed into place.

    A ``.mlpackage`` is a directory; an existing one is replaced only once the new one is complete. The folder
    of ``path`` must exist (``OutputError`` naming it). The staging folder beside ``path`` is removed whatever
    happens; the two renames that swap the old package for the new one are never separated by an interrupt.
    """
    from ..interrupts import deferred
    from ..io import check_folder

    path = Path(path)
    check_folder(path)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    except OSError as exc:
        raise CoreMLError(f"{path}: cannot write the Core ML model ({exc})") from None
    try:
        fresh = staging / path.name
        with _quiet_coremltools():
            model.save(str(fresh))
        previous = staging / "previous"
        with deferred():
            if path.exists() or path.is_symlink():
                os.rename(path, previous)
            try:
                os.rename(fresh, path)
            except OSError:
                if previous.exists():
                    os.rename(previous, path)
                raise
    except OSError as exc:
        raise CoreMLError(f"{path}: cannot write the Core ML model ({exc})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def default_output(source: Path, options: CoreMLOptions) -> Path:
    """``build/front.pth`` -> ``build/front.mlpackage`` (vision) or ``build/front_landmarks.mlpackage``."""
    stem = source.stem + ("_landmarks" if options.kind == "landmarks" else "")
    return source.with_name(stem + options.suffix)


@contextlib.contextmanager
def _package_times_kept(path: Path):
    """Reading an ``.mlpackage`` with coremltools rewrites its ``Manifest.json`` (the same bytes), which makes the
    package look newer than anything derived from it (``make all`` would verify again); when the manifest is
    unchanged, its and the package's times are put back."""
    manifest = path / "Manifest.json"
    try:
        saved = [(p, p.stat()) for p in (manifest, path)], manifest.read_bytes()
    except OSError:  # not a package, or no manifest: nothing to keep
        yield
        return
    try:
        yield
    finally:
        times, content = saved
        try:
            if manifest.read_bytes() == content:
                for p, stat in times:
                    os.utime(p, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        except OSError as exc:
            log.debug("cannot restore the times of %s: %s", path, exc)


def load_mlmodel(path: str | Path):
    """A saved Core ML model, loaded for inspection only (no compilation; works on Linux). ``CoreMLError`` if unreadable."""
    path = Path(path)
    if not path.exists():
        raise CoreMLError(f"{path}: no such file or directory")
    ct = coremltools()
    try:
        with _quiet_coremltools(), _package_times_kept(path):
            model = ct.models.MLModel(str(path), skip_model_load=True)
    except Exception as exc:  # coremltools raises bare Exceptions for corrupt files
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise CoreMLError(f"{path}: not a readable Core ML model ({reason})") from None
    return model
