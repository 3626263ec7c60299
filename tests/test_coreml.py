"""Core ML export: the saved files' structure, and their numbers, evaluated operation by operation on Linux.

Each model is converted once per session (module fixtures). The default (Vision pipeline, ML program, float16) and
the landmarks model are built for every variant; the other format/precision combinations for ``short_range``, and
for the 192 px full-range pair an ML program in float32 (``full_range``) and a float32 neural network
(``full_range_sparse``: its heads' gather + pixel shuffle). The operations only the full-range models use (bilinear
upsampling, pixel shuffle / reorganizeData) are also checked one by one against PyTorch and the specification.
Numbers are checked with ``coreml_eval`` (every operation of the saved file, the NMS stage included) against the
PyTorch model on the shipped photos; on macOS ``MLModel.predict`` is checked against the evaluator as well.
"""

from __future__ import annotations

import math
import shutil
import sys
import weakref

import numpy as np
import pytest
import torch
from helpers import CORE_VARIANTS, IMAGE_PATHS, assert_one_line_error, model_path, tiered

from blazeconv.detection import decode, weighted_nms
from blazeconv.errors import ImageError, OptionsError, WeightsError
from blazeconv.export.coreml import (
    CONFIDENCE,
    CONFIDENCE_THRESHOLD_INPUT,
    COORDINATES,
    COUNT,
    DETECTION_COLUMNS,
    DETECTIONS,
    IMAGE,
    IOU_THRESHOLD_INPUT,
    RAW_CONFIDENCE,
    RAW_COORDINATES,
    CoreMLError,
    CoreMLOptions,
    _LandmarksDetector,
    build_coreml,
    coreml_source,
    load_mlmodel,
    save_coreml,
)
from blazeconv.sources import load_weights
from blazeconv.variants import KEYPOINT_NAMES, get_variant
from blazeconv.verify.coreml import program_precision, verify_coreml
from blazeconv.verify.evaluator import (
    UnsupportedOperationError,
    evaluate,
    pick_top_nms,
    supported_operations,
)

# The bounds, absolute, in normalised coordinates.
FLOAT32_ATOL = 1e-4
FLOAT16_ATOL = 2e-3
# Landmarks models unroll their NMS once per row: rows cost conversion time, so besides the default (16 rows, for
# short_range) the tests build them with 4 rows; the photos hold at most 3 faces. The in-graph NMS itself is
# checked against detect.weighted_nms for any row count by test_landmarks_nms_is_mediapipes_weighted_nms.
SMALL_MAX_FACES = 4

# (variant, kind, format, precision, max_faces): what the tests build. The default model for every variant,
# the landmarks model for every variant, then every format and precision at least once.
FULL_RANGE_VARIANTS = ["full_range", "full_range_sparse"]
DEFAULT_BUILDS = [(v, "vision", "mlprogram", "float16", 16) for v in CORE_VARIANTS + FULL_RANGE_VARIANTS] + [
    ("short_range", "landmarks", "mlprogram", "float16", 16),
    ("front", "landmarks", "mlprogram", "float16", SMALL_MAX_FACES),
    ("back", "landmarks", "mlprogram", "float16", SMALL_MAX_FACES),
    ("full_range", "landmarks", "mlprogram", "float16", SMALL_MAX_FACES),
    ("full_range_sparse", "landmarks", "mlprogram", "float16", SMALL_MAX_FACES),
]
MATRIX_BUILDS = [
    ("short_range", "vision", "mlprogram", "float32", 16),
    ("short_range", "vision", "neuralnetwork", "float16", 16),
    ("short_range", "landmarks", "neuralnetwork", "float32", SMALL_MAX_FACES),
    ("full_range", "vision", "mlprogram", "float32", 16),
    ("full_range_sparse", "vision", "neuralnetwork", "float32", 16),
]
ALL_BUILDS = DEFAULT_BUILDS + MATRIX_BUILDS
# The quick tier's one build (the rest are marked slow: a build is a conversion of seconds).
QUICK_BUILDS = [("short_range", "vision", "mlprogram", "float16", 16)]


def build_id(build) -> str:
    variant, kind, model_format, precision, max_faces = build
    return f"{variant}-{kind}-{model_format}-{precision}"


def load_source(path, variant=None, source_tflite=None, anchors=None):
    """What ``blazeconv coreml`` exports: the weights of ``path`` (``sources.load_weights``) with their anchors."""
    return coreml_source(load_weights(path, variant=variant, source_tflite=source_tflite), anchors)


@pytest.fixture(scope="module")
def sources():
    """``sources(variant)`` -> CoreMLSource of the shipped .tflite, loaded once."""
    cache = {}

    def get(variant: str):
        if variant not in cache:
            cache[variant] = load_source(model_path(variant))
        return cache[variant]

    return get


@pytest.fixture(scope="module")
def built(sources, tmp_path_factory):
    """``built(build)`` -> path of the saved model, converted once per module."""
    folder = tmp_path_factory.mktemp("coreml")
    cache = {}

    def get(build):
        if build not in cache:
            variant, kind, model_format, precision, max_faces = build
            options = CoreMLOptions(kind=kind, format=model_format, precision=precision, max_faces=max_faces)
            path = folder / f"{build_id(build)}{options.suffix}"
            save_coreml(build_coreml(sources(variant), options), path)
            cache[build] = path
        return cache[build]

    return get


def spec_of(path):
    return load_mlmodel(path).get_spec()


def program_ops(spec):
    function = spec.mlProgram.functions["main"]
    return list(function.block_specializations[function.opset].operations)


# ------------------------------------------------------------------------------------- numbers


@pytest.mark.slow
@pytest.mark.parametrize("build", ALL_BUILDS, ids=build_id)
def test_coreml_program_matches_pytorch_on_the_photos(build, built):
    variant, kind, model_format, precision, _ = build
    atol = FLOAT16_ATOL if precision == "float16" else FLOAT32_ATOL
    result = verify_coreml(built(build), IMAGE_PATHS, weights=model_path(variant), tolerance=atol)
    assert result.precision == precision and result.kind == kind and result.format == model_format
    assert len(result.checks) == len(IMAGE_PATHS)
    for check in result.checks:
        assert check.same_faces, check
        assert not check.problems, check
        assert check.box_error <= atol, check
        if kind == "landmarks":
            assert check.keypoint_error <= atol, check
        else:
            assert math.isnan(check.keypoint_error)
        if precision == "float32" and kind == "vision":  # float32: every anchor, not only the candidates
            assert check.all_anchors_box_error <= FLOAT32_ATOL, check
    assert result.passed
    assert sum(check.faces for check in result.checks) >= len(IMAGE_PATHS) - 1  # the photos do have faces
    if kind == "vision":
        assert result.operations["model:nonMaximumSuppression"] == 1
        assert result.operations["model:pipeline"] == 1


@pytest.mark.slow
def test_float16_is_evaluated_in_float16(built):
    """The float16 program's numbers differ from the float32 one's by float16 rounding, not by nothing."""
    image = photo("1face.png", 128)
    half = evaluate(built(("short_range", "vision", "mlprogram", "float16", 16)), {IMAGE: image})
    full = evaluate(built(("short_range", "vision", "mlprogram", "float32", 16)), {IMAGE: image})
    difference = np.abs(half.features[RAW_COORDINATES] - full.features[RAW_COORDINATES]).max()
    assert 1e-6 < difference < FLOAT16_ATOL
    assert half.operations["mil:cast"] >= 2  # into float16 for the network, back to float32 for decoding


def test_vision_thresholds_can_be_overridden_at_run_time(built):
    path = built(("short_range", "vision", "mlprogram", "float16", 16))
    image = photo("3faces.png", 128)
    default = evaluate(path, {IMAGE: image}).outputs[CONFIDENCE]
    strict = evaluate(path, {IMAGE: image, CONFIDENCE_THRESHOLD_INPUT: 1.0}).outputs[CONFIDENCE]
    loose = evaluate(path, {IMAGE: image, CONFIDENCE_THRESHOLD_INPUT: 0.01, IOU_THRESHOLD_INPUT: 0.9}).outputs[CONFIDENCE]
    assert len(strict) == 0 < len(default) < len(loose) <= 16


@pytest.mark.skipif(sys.platform != "darwin", reason="Core ML predicts only on macOS")
@pytest.mark.parametrize("build", tiered(ALL_BUILDS, QUICK_BUILDS), ids=build_id)
def test_mlmodel_predict_matches_the_evaluator(build, built):
    import coremltools as ct
    from PIL import Image

    variant, kind, _, precision, _ = build
    size = get_variant(variant).input_size
    model = ct.models.MLModel(str(built(build)))
    atol = FLOAT16_ATOL if precision == "float16" else FLOAT32_ATOL
    for path in IMAGE_PATHS:
        image = photo(path.name, size)
        expected = evaluate(built(build), {IMAGE: image}).outputs
        actual = model.predict({IMAGE: Image.fromarray(image)})
        for name, value in expected.items():
            got = np.asarray(actual[name])
            if kind == "vision":  # the same faces, the same boxes
                assert got.shape == value.shape, name
            np.testing.assert_allclose(got.reshape(value.shape), value, atol=atol, rtol=0, err_msg=name)


def photo(name: str, size: int) -> np.ndarray:
    from PIL import Image

    path = next(p for p in IMAGE_PATHS if p.name == name)
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR), np.uint8)


# ------------------------------------------------------------------------------------ structure


@pytest.mark.parametrize("build", tiered(ALL_BUILDS, QUICK_BUILDS), ids=build_id)
def test_image_input_normalises_rgb_inside_the_model(build, built):
    variant, _, model_format, _, _ = build
    size = get_variant(variant).input_size
    spec = spec_of(built(build))
    (image,) = [f for f in spec.description.input if f.name == IMAGE]
    assert image.type.WhichOneof("Type") == "imageType"
    assert (image.type.imageType.width, image.type.imageType.height) == (size, size)
    assert image.type.imageType.colorSpace == 20  # RGB
    detector = spec.pipeline.models[0] if spec.WhichOneof("Type") == "pipeline" else spec
    if model_format == "neuralnetwork":
        (step,) = detector.neuralNetwork.preprocessing
        assert step.featureName == IMAGE
        assert step.scaler.channelScale == pytest.approx(1 / 127.5)
        assert (step.scaler.redBias, step.scaler.greenBias, step.scaler.blueBias) == (-1, -1, -1)
    else:  # an ML program scales with its first two ops
        ops = [op for op in program_ops(detector) if op.type != "const"]
        consts = {op.outputs[0].name: op.attributes["val"] for op in program_ops(detector) if op.type == "const"}
        scale, bias = ops[0], ops[1]
        assert scale.type == "mul" and scale.inputs["x"].arguments[0].name == IMAGE
        assert consts[scale.inputs["y"].arguments[0].name].immediateValue.tensor.floats.values[0] == pytest.approx(1 / 127.5)
        assert bias.type == "add" and bias.inputs["x"].arguments[0].name == scale.outputs[0].name
        assert list(consts[bias.inputs["y"].arguments[0].name].immediateValue.tensor.floats.values) == [-1, -1, -1]


@pytest.mark.parametrize("build", tiered([b for b in ALL_BUILDS if b[1] == "vision"], QUICK_BUILDS), ids=build_id)
def test_vision_model_is_a_detector_then_nms_pipeline(build, built):
    variant, _, model_format, _, max_faces = build
    v = get_variant(variant)
    spec = spec_of(built(build))
    assert spec.WhichOneof("Type") == "pipeline"
    detector, nms_model = spec.pipeline.models
    assert detector.WhichOneof("Type") == ("mlProgram" if model_format == "mlprogram" else "neuralNetwork")
    assert nms_model.WhichOneof("Type") == "nonMaximumSuppression"
    assert spec.specificationVersion == (6 if model_format == "mlprogram" else 5)  # iOS 15 / iOS 14
    # The detector hands FLOAT32 (N, 1) and (N, 4) to the NMS stage.
    for features in (detector.description.output, nms_model.description.input[:2]):
        shapes = {f.name: (list(f.type.multiArrayType.shape), f.type.multiArrayType.dataType) for f in features}
        assert shapes == {RAW_CONFIDENCE: ([v.num_anchors, 1], 65568), RAW_COORDINATES: ([v.num_anchors, 4], 65568)}
    nms = nms_model.nonMaximumSuppression
    assert nms.WhichOneof("SuppressionMethod") == "pickTop"
    assert list(nms.stringClassLabels.vector) == ["face"]
    assert nms.iouThreshold == pytest.approx(0.3)
    assert nms.confidenceThreshold == pytest.approx(v.min_score)
    assert (nms.confidenceInputFeatureName, nms.coordinatesInputFeatureName) == (RAW_CONFIDENCE, RAW_COORDINATES)
    assert (nms.confidenceOutputFeatureName, nms.coordinatesOutputFeatureName) == (CONFIDENCE, COORDINATES)
    assert (nms.iouThresholdInputFeatureName, nms.confidenceThresholdInputFeatureName) == (
        IOU_THRESHOLD_INPUT, CONFIDENCE_THRESHOLD_INPUT)
    inputs = {f.name: f.type for f in spec.description.input}
    assert set(inputs) == {IMAGE, IOU_THRESHOLD_INPUT, CONFIDENCE_THRESHOLD_INPUT}
    for name in (IOU_THRESHOLD_INPUT, CONFIDENCE_THRESHOLD_INPUT):
        assert inputs[name].WhichOneof("Type") == "doubleType" and inputs[name].isOptional
    outputs = {f.name: f.type.multiArrayType for f in spec.description.output}
    assert list(outputs) == [CONFIDENCE, COORDINATES]
    for name, columns in ((CONFIDENCE, 1), (COORDINATES, 4)):
        rows, cols = outputs[name].shapeRange.sizeRanges
        assert outputs[name].dataType == 65568  # FLOAT32
        assert (rows.lowerBound, rows.upperBound, cols.lowerBound, cols.upperBound) == (0, max_faces, columns, columns)


@pytest.mark.parametrize("build", tiered([b for b in ALL_BUILDS if b[1] == "landmarks"], QUICK_BUILDS), ids=build_id)
def test_landmarks_model_outputs_rows_and_a_count(build, built):
    _, _, model_format, _, max_faces = build
    spec = spec_of(built(build))
    assert spec.WhichOneof("Type") == ("mlProgram" if model_format == "mlprogram" else "neuralNetwork")
    assert spec.specificationVersion == (6 if model_format == "mlprogram" else 5)
    outputs = {f.name: f.type.multiArrayType for f in spec.description.output}
    assert list(outputs) == [DETECTIONS, COUNT]
    assert list(outputs[DETECTIONS].shape) == [max_faces, DETECTION_COLUMNS] == [max_faces, 17]
    assert outputs[DETECTIONS].dataType == 65568  # FLOAT32
    assert list(outputs[COUNT].shape) == [1]
    # Int32 in an ML program; a neural network computes in floats and says so.
    assert outputs[COUNT].dataType == (131104 if model_format == "mlprogram" else 65568)
    meta = spec.description.metadata.userDefined
    assert meta["nms"].startswith("weighted")
    assert meta["detection_columns"].split(",")[:5] == ["xmin", "ymin", "xmax", "ymax", "right_eye_x"]


@pytest.mark.parametrize("build", tiered(ALL_BUILDS, QUICK_BUILDS), ids=build_id)
def test_metadata_describes_the_model(build, built):
    variant, kind, model_format, precision, max_faces = build
    v = get_variant(variant)
    spec = spec_of(built(build))
    metadata = spec.description.metadata
    assert "BlazeFace" in metadata.shortDescription and v.name in metadata.shortDescription
    assert "Apache-2.0" in metadata.license
    assert metadata.author and metadata.versionString
    for feature in list(spec.description.input) + list(spec.description.output):
        assert feature.shortDescription, feature.name
    meta = dict(metadata.userDefined)
    assert meta["variant"] == v.name
    assert meta["input_size"] == str(v.input_size)
    assert meta["num_anchors"] == str(v.num_anchors)
    assert float(meta["iou_threshold"]) == pytest.approx(0.3)
    assert float(meta["score_threshold"]) == pytest.approx(v.min_score)
    assert meta["max_faces"] == str(max_faces)
    assert meta["keypoint_names"].split(",") == list(KEYPOINT_NAMES)
    assert meta["source_sha256"] == v.sha256
    assert (meta["model_kind"], meta["format"], meta["precision"]) == (kind, model_format, precision)


@pytest.mark.parametrize("build", tiered(ALL_BUILDS, QUICK_BUILDS), ids=build_id)
def test_precision_is_what_was_asked(build, built):
    _, _, model_format, precision, _ = build
    spec = spec_of(built(build))
    assert program_precision(spec) == precision
    detector = spec.pipeline.models[0] if spec.WhichOneof("Type") == "pipeline" else spec
    if model_format == "mlprogram" and precision == "float16":
        # Only the network (rank-4 tensors) is float16; decoding and NMS compute in float32.
        for op in program_ops(detector):
            for output in op.outputs:
                if output.type.tensorType.dataType == 10 and op.type != "const":
                    assert output.type.tensorType.rank == 4 or op.type == "reshape", (op.type, output.name)
    if model_format == "neuralnetwork":
        convolutions = [layer.convolution for layer in detector.neuralNetwork.layers if layer.HasField("convolution")]
        stored_half = [len(c.weights.float16Value) > 0 for c in convolutions]
        assert convolutions and all(stored_half) == (precision == "float16") and any(stored_half) == all(stored_half)


@pytest.mark.slow
def test_evaluator_knows_every_operation_in_the_built_models(built):
    known = supported_operations()
    for build in ALL_BUILDS:
        spec = spec_of(built(build))
        stages = list(spec.pipeline.models) if spec.WhichOneof("Type") == "pipeline" else [spec]
        for stage in stages:
            kind = stage.WhichOneof("Type")
            if kind == "mlProgram":
                assert {op.type for op in program_ops(stage)} <= set(known["mil"])
            elif kind == "neuralNetwork":
                assert {layer.WhichOneof("layer") for layer in stage.neuralNetwork.layers} <= set(known["nn"])
            else:
                assert kind in known["models"]


def immediate(value) -> list:
    """The values of a MIL constant stored in the program itself."""
    tensor = value.immediateValue.tensor
    return list(getattr(tensor, tensor.WhichOneof("value")).values)


@pytest.mark.parametrize("build", tiered([b for b in ALL_BUILDS if b[0] in FULL_RANGE_VARIANTS], QUICK_BUILDS), ids=build_id)
def test_full_range_upsampling_is_half_pixel_bilinear(build, built):
    """PyTorch's ``F.interpolate(bilinear, align_corners=False)`` is TFLite's half-pixel resize; the converted model must
    ask Core ML for that sampling (iOS 15 ``upsample_bilinear`` align_corners=False, NN ALIGN_CORNERS_FALSE), by 2,
    at each of the three pyramid levels; the sparse model's heads shuffle pixels in PyTorch's channel order."""
    variant, _, model_format, _, _ = build
    shuffles = 2 if variant == "full_range_sparse" else 0
    spec = spec_of(built(build))
    detector = spec.pipeline.models[0] if spec.WhichOneof("Type") == "pipeline" else spec
    if model_format == "mlprogram":
        ops = program_ops(detector)
        consts = {
            op.outputs[0].name: immediate(op.attributes["val"])
            for op in ops
            if op.type == "const" and op.attributes["val"].WhichOneof("value") == "immediateValue"
        }

        def argument(op, key):
            return consts[op.inputs[key].arguments[0].name]

        upsamples = [op for op in ops if op.type == "upsample_bilinear"]
        assert len(upsamples) == 3
        for op in upsamples:
            assert set(op.inputs) == {"x", "scale_factor_height", "scale_factor_width", "align_corners"}
            assert argument(op, "align_corners") == [False]
            assert argument(op, "scale_factor_height") == argument(op, "scale_factor_width") == [2]
        pixel_shuffles = [op for op in ops if op.type == "pixel_shuffle"]
        assert [argument(op, "upscale_factor") for op in pixel_shuffles] == [[2]] * shuffles
    else:
        layers = detector.neuralNetwork.layers
        upsamples = [layer.upsample for layer in layers if layer.HasField("upsample")]
        assert len(upsamples) == 3
        for upsample in upsamples:
            assert list(upsample.scalingFactor) == [2, 2] and not len(upsample.fractionalScalingFactor)
            assert (upsample.mode, upsample.linearUpsampleMode) == (1, 2)  # BILINEAR, ALIGN_CORNERS_FALSE
        reorganize = [layer.reorganizeData for layer in layers if layer.HasField("reorganizeData")]
        assert [(r.mode, r.blockSize) for r in reorganize] == [(2, 2)] * shuffles  # PIXEL_SHUFFLE


# ----------------------------------------------- the full-range models' operations, one at a time


def mil_model(make, shape, opset="iOS15"):
    """A float32 ML program computing ``make(mb, x)`` of one input ``x`` of ``shape``."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    target = getattr(ct.target, opset)

    @mb.program(input_specs=[mb.TensorSpec(shape=shape)], opset_version=target)
    def program(x):
        return make(mb, x)

    return package_removed_with(ct.convert(program, convert_to="mlprogram", minimum_deployment_target=target,
                                           compute_precision=ct.precision.FLOAT32, skip_model_load=True))


def package_removed_with(model):
    """``model``, whose temporary package is deleted when the model is (coremltools deletes it only at exit, and the
    suite fails on anything left in the temporary folder)."""
    weakref.finalize(model, shutil.rmtree, model.package_path, True)
    return model


def nn_model(add_layer, in_shape, out_shape):
    """A neural network of one layer, ``add_layer(builder)`` from ``x`` to ``y``."""
    import coremltools as ct
    from coremltools.models import datatypes
    from coremltools.models.neural_network import NeuralNetworkBuilder

    builder = NeuralNetworkBuilder([("x", datatypes.Array(*in_shape))], [("y", datatypes.Array(*out_shape))],
                                   disable_rank5_shape_mapping=True)
    add_layer(builder)
    return ct.models.MLModel(builder.spec, skip_model_load=True)


def evaluate_one(model, x, operation):
    """The single output of ``model`` on ``x``; ``operation`` (``mil:...``/``nn:...``) must have been evaluated."""
    evaluation = evaluate(model, {"x": x})
    assert evaluation.operations.get(operation) == 1, evaluation.operations
    (value,) = evaluation.outputs.values()
    return np.asarray(value, np.float32)


def plain_upsample(x, grid_h, grid_w):
    """Bilinear sampling of ``x (..., H, W)`` at the given (unclamped) grid points, one output pixel at a time."""
    height, width = x.shape[-2:]
    out = np.zeros(x.shape[:-2] + (len(grid_h), len(grid_w)), np.float64)
    for i, gy in enumerate(grid_h):
        gy = min(height - 1, max(0.0, gy))
        y0 = int(math.floor(gy))
        y1, ty = min(y0 + 1, height - 1), gy - y0
        for j, gx in enumerate(grid_w):
            gx = min(width - 1, max(0.0, gx))
            x0 = int(math.floor(gx))
            x1, tx = min(x0 + 1, width - 1), gx - x0
            top = x[..., y0, x0] * (1 - tx) + x[..., y0, x1] * tx
            bottom = x[..., y1, x0] * (1 - tx) + x[..., y1, x1] * tx
            out[..., i, j] = top * (1 - ty) + bottom * ty
    return out


def torch_bilinear(x, scales, align_corners):
    """PyTorch's bilinear upsampling with the scale recomputed from the output size (what Core ML does)."""
    return torch.nn.functional.interpolate(
        torch.from_numpy(x), scale_factor=scales, mode="bilinear", align_corners=align_corners,
        recompute_scale_factor=True,
    ).numpy()


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("scales", [(2, 2), (2, 3), (1.5, 2.5)])
def test_upsample_bilinear_op_matches_pytorch(align_corners, scales):
    x = np.random.default_rng(1).normal(size=(1, 3, 4, 6)).astype(np.float32)
    model = mil_model(lambda mb, x: mb.upsample_bilinear(
        x=x, scale_factor_height=float(scales[0]), scale_factor_width=float(scales[1]), align_corners=align_corners,
    ), x.shape)
    actual = evaluate_one(model, x, "mil:upsample_bilinear")
    np.testing.assert_allclose(actual, torch_bilinear(x, scales, align_corners), atol=1e-6, rtol=0)


def test_upsample_bilinear_half_pixel_centers_only_at_its_default():
    """iOS 16 adds ``half_pixel_centers`` (default: not align_corners); another combination is refused, not guessed."""
    x = np.random.default_rng(2).normal(size=(1, 2, 3, 5)).astype(np.float32)

    def upsample(align_corners, half_pixel_centers):
        return mil_model(lambda mb, x: mb.upsample_bilinear(
            x=x, scale_factor_height=2.0, scale_factor_width=2.0, align_corners=align_corners,
            half_pixel_centers=half_pixel_centers,
        ), x.shape, opset="iOS16")

    for align_corners in (False, True):
        actual = evaluate_one(upsample(align_corners, not align_corners), x, "mil:upsample_bilinear")
        np.testing.assert_allclose(actual, torch_bilinear(x, (2, 2), align_corners), atol=1e-6, rtol=0)
    with pytest.raises(UnsupportedOperationError, match="half_pixel_centers"):
        evaluate(upsample(False, False), {"x": x})


@pytest.mark.parametrize(
    "mode, linear, scales",
    [("BILINEAR", "ALIGN_CORNERS_FALSE", (2, 3)), ("BILINEAR", "ALIGN_CORNERS_TRUE", (2, 3)),
     ("BILINEAR", "DEFAULT", (2, 3)), ("BILINEAR", "ALIGN_CORNERS_FALSE", (1.5, 2.5)), ("NN", "DEFAULT", (2, 3))],
)
def test_nn_upsample_layer_matches_pytorch_and_the_specification(mode, linear, scales):
    x = np.random.default_rng(3).normal(size=(1, 2, 4, 6)).astype(np.float32)
    out_shape = (1, 2, int(4 * scales[0]), int(6 * scales[1]))
    model = nn_model(lambda b: b.add_upsample("up", scales[0], scales[1], "x", "y", mode=mode,
                                              linear_upsample_mode=linear), x.shape, out_shape)
    actual = evaluate_one(model, x, "nn:upsample")
    assert actual.shape == out_shape
    (h_in, w_in), (h_out, w_out) = x.shape[-2:], out_shape[-2:]
    if mode == "NN":
        expected = torch.nn.functional.interpolate(torch.from_numpy(x), scale_factor=scales, mode="nearest").numpy()
    elif linear == "DEFAULT":  # NeuralNetwork.proto: spacing = (Xin - Xin/Xout) / (Xout - 1), grid = i * spacing
        grid_h = np.arange(h_out) * (h_in - h_in / h_out) / (h_out - 1)
        grid_w = np.arange(w_out) * (w_in - w_in / w_out) / (w_out - 1)
        expected = plain_upsample(x, grid_h, grid_w)
    else:
        expected = torch_bilinear(x, scales, linear == "ALIGN_CORNERS_TRUE")
        if linear == "ALIGN_CORNERS_FALSE":  # spacing = Xin / Xout, grid = i * spacing + 0.5 * spacing - 0.5
            grid_h = (np.arange(h_out) + 0.5) * h_in / h_out - 0.5
            grid_w = (np.arange(w_out) + 0.5) * w_in / w_out - 0.5
            np.testing.assert_allclose(actual, plain_upsample(x, grid_h, grid_w), atol=1e-6, rtol=0)
    np.testing.assert_allclose(actual, expected, atol=1e-6, rtol=0)


# NeuralNetwork.proto's ReorganizeDataLayerParams example: C = 8, H = 1, W = 2 with block size 2.
REORGANIZE_INPUT = np.arange(1, 17, dtype=np.float32).reshape(1, 8, 1, 2)
REORGANIZE_EXAMPLES = {
    "DEPTH_TO_SPACE": [[[1, 5, 2, 6], [9, 13, 10, 14]], [[3, 7, 4, 8], [11, 15, 12, 16]]],
    "PIXEL_SHUFFLE": [[[1, 3, 2, 4], [5, 7, 6, 8]], [[9, 11, 10, 12], [13, 15, 14, 16]]],
}


def test_reorganize_data_and_pixel_shuffle_follow_the_specification():
    def reorganize(mode, x, out_shape):
        model = nn_model(lambda b: b.add_reorganize_data("r", "x", "y", mode=mode, block_size=2), x.shape, out_shape)
        return evaluate_one(model, x, "nn:reorganizeData")

    for mode, expected in REORGANIZE_EXAMPLES.items():
        np.testing.assert_array_equal(reorganize(mode, REORGANIZE_INPUT, (1, 2, 2, 4))[0], expected)
    # SPACE_TO_DEPTH is DEPTH_TO_SPACE with input and output swapped.
    spread = np.asarray(REORGANIZE_EXAMPLES["DEPTH_TO_SPACE"], np.float32)[None]
    np.testing.assert_array_equal(reorganize("SPACE_TO_DEPTH", spread, (1, 8, 1, 2)), REORGANIZE_INPUT)
    # PIXEL_SHUFFLE and the ML program's pixel_shuffle are PyTorch's.
    x = np.random.default_rng(4).normal(size=(1, 12, 3, 5)).astype(np.float32)
    expected = torch.nn.functional.pixel_shuffle(torch.from_numpy(x), 2).numpy()
    np.testing.assert_array_equal(reorganize("PIXEL_SHUFFLE", x, expected.shape), expected)
    program = mil_model(lambda mb, x: mb.pixel_shuffle(x=x, upscale_factor=2), x.shape)
    np.testing.assert_array_equal(evaluate_one(program, x, "mil:pixel_shuffle"), expected)


# ------------------------------------------------------------------------ the evaluator refuses


def detector_with(built, edit):
    """The float32 ML program Vision pipeline with ``edit(spec)`` applied, as a loaded model."""
    import coremltools as ct

    model = load_mlmodel(built(("short_range", "vision", "mlprogram", "float32", 16)))
    spec = model.get_spec()
    edit(spec)
    return package_removed_with(ct.models.MLModel(spec, weights_dir=model.weights_dir, skip_model_load=True))


def first_op(spec, op_type):
    return next(op for op in program_ops(spec.pipeline.models[0]) if op.type == op_type)


@pytest.mark.slow
def test_an_unknown_operation_is_an_error(built):
    model = detector_with(built, lambda spec: setattr(first_op(spec, "relu"), "type", "gelu"))
    with pytest.raises(UnsupportedOperationError, match="'gelu'.*not supported"):
        evaluate(model, {IMAGE: photo("1face.png", 128)})


@pytest.mark.slow
def test_an_operation_input_the_evaluator_ignores_is_an_error(built):
    def edit(spec):
        op = first_op(spec, "relu")
        op.inputs["alpha"].arguments.add().name = op.inputs["x"].arguments[0].name

    with pytest.raises(UnsupportedOperationError, match="does not interpret: alpha"):
        evaluate(detector_with(built, edit), {IMAGE: photo("1face.png", 128)})


@pytest.mark.slow
def test_an_unknown_layer_or_layer_field_is_an_error(built):
    import coremltools as ct

    spec = spec_of(built(("short_range", "vision", "neuralnetwork", "float16", 16)))
    layers = spec.pipeline.models[0].neuralNetwork.layers
    conv = next(layer for layer in layers if layer.HasField("convolution"))
    conv.convolution.isDeconvolution = True
    with pytest.raises(UnsupportedOperationError, match="isDeconvolution"):
        evaluate(ct.models.MLModel(spec, skip_model_load=True), {IMAGE: photo("1face.png", 128)})
    conv.softmax.SetInParent()  # the layer becomes a softmax, which the evaluator does not know
    with pytest.raises(UnsupportedOperationError, match="'softmax'"):
        evaluate(ct.models.MLModel(spec, skip_model_load=True), {IMAGE: photo("1face.png", 128)})


@pytest.mark.slow
def test_an_unknown_model_type_is_an_error(built):
    def edit(spec):
        spec.pipeline.models[1].identity.SetInParent()

    with pytest.raises(UnsupportedOperationError, match="model type 'identity'"):
        evaluate(detector_with(built, edit), {IMAGE: photo("1face.png", 128)})


@pytest.mark.slow
def test_an_image_of_the_wrong_size_is_refused(built):
    with pytest.raises(ImageError, match="must be 128x128"):
        evaluate(built(("short_range", "vision", "mlprogram", "float32", 16)), {IMAGE: photo("1face.png", 64)})


# ------------------------------------------------------------- NMS semantics against plain loops


def plain_pick_top(confidence, coordinates, iou_threshold, confidence_threshold, per_class, max_boxes):
    """Core ML's PickTop, one box at a time, straight from NonMaximumSuppression.proto's description."""
    rows = []
    for i, (scores, (x, y, w, h)) in enumerate(zip(confidence.tolist(), coordinates.tolist())):
        label = max(range(len(scores)), key=lambda c: (scores[c], -c))
        rows.append((scores[label], i, label, (x - w / 2, y - h / 2, x + w / 2, y + h / 2)))
    rows = sorted((r for r in rows if r[0] >= confidence_threshold), key=lambda r: (-r[0], r[1]))
    kept = []
    for score, i, label, box in rows:
        if max_boxes is not None and len(kept) >= max_boxes:
            break
        if all(plain_iou(box, other) <= iou_threshold for _, _, other_label, other in kept
               if not per_class or other_label == label):
            kept.append((score, i, label, box))
    return [i for _, i, _, _ in kept]


def plain_iou(a, b):
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    intersection = width * height
    union = max(a[2] - a[0], 0) * max(a[3] - a[1], 0) + max(b[2] - b[0], 0) * max(b[3] - b[1], 0) - intersection
    return intersection / union if union > 0 else 0.0


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("per_class", [True, False])
def test_pick_top_nms_matches_a_plain_loop(seed, per_class):
    rng = np.random.default_rng(seed)
    count = 60
    centres = rng.uniform(0.3, 0.7, (count, 2))
    sizes = rng.uniform(0.05, 0.3, (count, 2))
    coordinates = np.concatenate([centres, sizes], axis=1).astype(np.float32)
    confidence = rng.uniform(0, 1, (count, 3)).astype(np.float32)
    confidence[::7] = confidence[3]  # ties
    for iou_threshold in (0.0, 0.3, 0.5, 1.0):
        for threshold, max_boxes in ((0.0, None), (0.5, None), (0.3, 4)):
            expected = plain_pick_top(confidence, coordinates, iou_threshold, threshold, per_class, max_boxes)
            actual = pick_top_nms(confidence, coordinates, iou_threshold, threshold, per_class, max_boxes)
            assert actual.tolist() == expected


def test_pick_top_nms_at_the_iou_threshold():
    """Two unit boxes shifted so their IoU is just above / exactly / below 1/3 (IoU > threshold suppresses)."""
    for shift, kept in ((0.499, 1), (0.5, 2), (0.501, 2)):
        coordinates = np.array([[0.5, 0.5, 1.0, 1.0], [0.5 + shift, 0.5, 1.0, 1.0]], np.float64)
        confidence = np.array([[0.9], [0.8]])
        assert len(pick_top_nms(confidence, coordinates, 1 / 3, 0.5)) == kept


class _FixedNetwork(torch.nn.Module):
    """Returns given raw outputs: stands in for the network to test the landmarks model's NMS alone."""

    def __init__(self, raw, logits):
        super().__init__()
        self.raw = torch.as_tensor(raw, dtype=torch.float32)[None]
        self.logits = torch.as_tensor(logits, dtype=torch.float32)[None, :, None]

    def forward(self, image):
        return self.raw, self.logits


def reference_rows(raw, logits, anchors, size, score_threshold, iou_threshold, max_faces):
    boxes, keypoints, scores = decode(raw, logits, anchors, size)
    keep = (scores >= np.float32(score_threshold)) & (boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])
    b, k, s = weighted_nms(boxes[keep], keypoints[keep], scores[keep], iou_threshold)
    rows = np.concatenate([b, k.reshape(len(b), -1), s[:, None]], axis=1)[:max_faces]
    return rows


@pytest.mark.parametrize("seed", range(6))
def test_landmarks_nms_is_mediapipes_weighted_nms(seed):
    """The unrolled in-graph NMS (as traced into Core ML) against ``detect.weighted_nms`` on crowded scenes."""
    rng = np.random.default_rng(seed)
    anchors = get_variant("short_range").anchors()
    count, size = len(anchors), 128
    raw = rng.normal(0, 4, (count, 16)).astype(np.float32)
    raw[:, 2:4] = rng.uniform(8, 40, (count, 2))
    logits = rng.normal(-2, 3, count).astype(np.float32)
    logits[rng.integers(0, count, 40)] = 2.0  # exact ties
    raw[:3, 2:4] = 0.0  # boxes without area: a round that removes nothing ends the loop
    logits[:3] = rng.uniform(0, 8, 3)
    for score_threshold, iou_threshold, max_faces in ((0.5, 0.3, 16), (0.3, 0.1, 5), (0.9, 0.6, 8), (0.5, 1.0, 4)):
        module = _LandmarksDetector(_FixedNetwork(raw, logits), anchors, size, score_threshold, iou_threshold, max_faces)
        with torch.no_grad():
            rows, found = module(torch.zeros(1, 3, size, size))
        expected = reference_rows(raw, logits, anchors, size, score_threshold, iou_threshold, max_faces)
        assert int(found[0]) == len(expected)
        np.testing.assert_allclose(rows[: len(expected)].numpy(), expected, atol=1e-6, rtol=0)
        assert not rows[len(expected):].any()


# ------------------------------------------------------------------------ sources and saving


def test_pth_weights_are_recognised_by_the_shipped_file(converted, tmp_path):
    weights = tmp_path / "w.pth"
    torch.save(converted("front").state_dict, weights)
    source = load_source(weights)
    assert source.variant.name == "front" and source.source_sha256 == get_variant("front").sha256
    unknown = {k: v + 1e-3 for k, v in converted("front").state_dict.items()}
    torch.save(unknown, weights)
    source = load_source(weights)
    assert source.variant.name == "short_range" and source.source_sha256 is None  # the architecture's default
    assert load_source(weights, variant="front").variant.name == "front"
    with pytest.raises(OptionsError, match="'back' is a blazeface256 model"):
        load_source(weights, variant="back")
    with pytest.raises(WeightsError, match="weights differ"):
        load_source(weights, source_tflite=model_path("front"))


def test_custom_anchors_must_fit(tmp_path):
    bad = tmp_path / "anchors.npy"
    np.save(bad, np.zeros((10, 4), np.float32))
    with pytest.raises(OptionsError, match=r"\[896, 4\]"):
        load_source(model_path("front"), anchors=bad)
    good = tmp_path / "good.npy"
    np.save(good, get_variant("front").anchors())
    assert load_source(model_path("front"), anchors=good).anchors_from == "good.npy"


def test_options_are_checked():
    v = get_variant("front")
    assert CoreMLOptions().resolved(v).precision == "float16"
    assert CoreMLOptions(format="neuralnetwork").resolved(v).precision == "float32"
    for bad in (dict(kind="x"), dict(format="onnx"), dict(precision="int8"), dict(iou_threshold=1.5),
                dict(score_threshold=-0.1), dict(max_faces=0)):
        with pytest.raises(OptionsError):
            CoreMLOptions(**bad).resolved(v)


class _FailingModel:
    def save(self, path):
        from pathlib import Path

        Path(path).mkdir()
        (Path(path) / "half").write_text("half written")
        raise OSError(28, "No space left on device")


def test_saving_is_atomic(tmp_path):
    target = tmp_path / "m.mlpackage"
    target.mkdir()
    (target / "old").write_text("previous model")
    with pytest.raises(CoreMLError, match="No space left"):
        save_coreml(_FailingModel(), target)
    assert [p.name for p in tmp_path.iterdir()] == ["m.mlpackage"]  # nothing left beside it
    assert (target / "old").read_text() == "previous model"


def test_reading_a_package_leaves_its_times(built):
    """coremltools rewrites a package's Manifest.json when it reads one; make must not see the package as newer."""
    path = built(("short_range", "vision", "mlprogram", "float16", 16))
    files = [path, path / "Manifest.json"]
    before = [p.stat().st_mtime_ns for p in files]
    load_mlmodel(path)
    evaluate(path, {IMAGE: photo("1face.png", 128)})
    assert [p.stat().st_mtime_ns for p in files] == before


# ------------------------------------------------------------------------------------ the CLI


@pytest.mark.slow
def test_cli_coreml_and_verify(tmp_path, run_cli):
    out = tmp_path / "front.mlmodel"
    code, _, err = run_cli("coreml", model_path("front"), "--format", "neuralnetwork", "-o", out)
    assert code == 0, err
    assert "wrote" in err and get_variant("front").sha256 in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["front.mlmodel"]
    code, _, err = run_cli("verify", out, IMAGE_PATHS[0])
    assert code == 0, err
    assert "matches PyTorch" in err and "nonMaximumSuppression" in err
    # The wrong weights: a clear failure naming the model.
    code, _, err = run_cli("verify", out, IMAGE_PATHS[0], "--model", model_path("short_range"))
    assert code == 1 and f"Error: {out}: differs from PyTorch" in err, err


def test_cli_coreml_errors_write_nothing(tmp_path, run_cli):
    out = tmp_path / "x.mlpackage"
    code, _, err = run_cli("coreml", tmp_path / "missing.pth", "-o", out)
    assert_one_line_error(code, err, "missing.pth", 5)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a pickle")
    code, _, err = run_cli("coreml", garbage, "-o", out)
    assert_one_line_error(code, err, "garbage.pth", 5)
    code, _, err = run_cli("coreml", model_path("front"), "-o", tmp_path / "x.mlmodel")
    assert_one_line_error(code, err, "x.mlmodel", 7)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.pth"]


def test_cli_verify_errors(tmp_path, run_cli):
    code, _, err = run_cli("verify", tmp_path / "none.mlpackage", IMAGE_PATHS[0])
    assert_one_line_error(code, err, "none.mlpackage", 3)
    broken = tmp_path / "broken.mlmodel"
    broken.write_bytes(b"\x00garbage")
    code, _, err = run_cli("verify", broken, IMAGE_PATHS[0])
    assert_one_line_error(code, err, "broken.mlmodel", 3)
