"""What the iOS guide (docs/ios.md, ios/BlazeFaceCamera) relies on in the Core ML models ``blazeconv coreml`` makes.

Core ML cannot run here (its runtime exists only on Apple platforms), so the models are converted as a user would
(``blazeconv coreml short_range -o ...``) and read back with coremltools without loading them: input and output names
and types, the columns the Swift code reads, the keypoint order its mirroring swap assumes, and the image input's
description, which must ask for the same ``imageCropAndScaleOption`` the Swift code sets.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from blazeconv.cli import cli
from blazeconv.export.coreml import load_mlmodel
from blazeconv.variants import KEYPOINT_NAMES, get_variant

pytest.importorskip("coremltools", reason="the Core ML checks need coremltools (blazeconv[coreml])")

ROOT = Path(__file__).resolve().parent.parent
SWIFT = ROOT / "ios" / "BlazeFaceCamera" / "Sources" / "BlazeFaceCamera"
GUIDE = ROOT / "docs" / "ios.md"


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """``converted(variant, landmarks)`` -> the model's spec, converted once with the CLI as the guide says."""
    folder = tmp_path_factory.mktemp("ios")
    cache = {}

    def get(variant: str, landmarks: bool):
        if (variant, landmarks) not in cache:
            path = folder / f"{variant}{'_landmarks' if landmarks else ''}.mlpackage"
            arguments = ["coreml", variant, "-o", str(path)] + (["--landmarks"] if landmarks else [])
            result = CliRunner().invoke(cli, arguments, catch_exceptions=False)
            assert result.exit_code == 0, result.output
            cache[variant, landmarks] = load_mlmodel(path).get_spec()
        return cache[variant, landmarks]

    return get


def features(spec) -> dict:
    return {f.name: f for f in list(spec.description.input) + list(spec.description.output)}


def swift_source(name: str) -> str:
    return (SWIFT / name).read_text()


@pytest.mark.parametrize("landmarks", [False, True], ids=["vision", "landmarks"])
def test_image_description_asks_for_the_option_the_swift_code_sets(converted, landmarks):
    description = features(converted("short_range", landmarks))["image"].shortDescription
    options = set(re.findall(r"imageCropAndScaleOption\s*=\s*\.(\w+)", swift_source("FaceDetector.swift")))
    assert options == {"scaleFill"}, options
    assert "letterbox" in description and "centred black square" in description, description
    assert "scaleFill" in description and "scaleFit" not in description, description
    assert "docs/ios.md" in description, description
    assert GUIDE.exists()


@pytest.mark.parametrize(
    "variant, camera",
    [("short_range", "front"), pytest.param("full_range_sparse", "back", marks=pytest.mark.slow)],
    ids=["front", "back"],
)
def test_landmarks_model_has_what_the_swift_code_reads(converted, variant, camera):
    spec = converted(variant, True)
    by_name = features(spec)
    image = by_name["image"].type.imageType
    size = get_variant(variant).input_size
    assert (image.width, image.height) == (size, size)  # square: letterboxing to a square then scaleFill fits
    assert image.colorSpace == image.RGB  # Vision converts the BGRA camera buffer to it
    assert [f.name for f in spec.description.output] == ["detections", "count"]
    assert list(by_name["detections"].type.multiArrayType.shape) == [16, 17]
    meta = dict(spec.description.metadata.userDefined)
    columns = meta["detection_columns"].split(",")
    detector = swift_source("FaceDetector.swift")
    # FaceDetector.swift: boxes in 0..<4, keypoints (x, y) from column 4, the score in column 16.
    assert columns[:4] == ["xmin", "ymin", "xmax", "ymax"] and "boxColumns = 0..<4" in detector
    assert columns.index("right_eye_x") == 4 and "firstKeypointColumn = 4" in detector
    assert columns.index("score") == 16 and "scoreColumn = 16" in detector
    assert "keypointCount = 6" in detector and len(KEYPOINT_NAMES) == 6
    # Geometry.swift swaps (0, 1) and (4, 5): right/left eye and right/left ear tragion.
    names = meta["keypoint_names"].split(",")
    assert (names[0], names[1], names[4], names[5]) == (
        "right_eye", "left_eye", "right_ear_tragion", "left_ear_tragion"
    )
    assert "leftRightPairs = [(0, 1), (4, 5)]" in swift_source("Geometry.swift")
    # Descriptions a developer sees in Xcode say y runs downwards (FaceDetector does not flip these rows).
    assert "y downwards" in by_name["detections"].shortDescription


def test_vision_pipeline_has_what_the_swift_code_reads(converted):
    spec = converted("short_range", False)
    assert spec.WhichOneof("Type") == "pipeline"
    assert spec.pipeline.models[-1].WhichOneof("Type") == "nonMaximumSuppression"  # VNRecognizedObjectObservation
    by_name = features(spec)
    assert {"confidence", "coordinates"} <= set(by_name)
    assert by_name["iouThreshold"].type.isOptional and by_name["confidenceThreshold"].type.isOptional
    meta = dict(spec.description.metadata.userDefined)
    assert (meta["variant"], meta["input_size"], meta["model_kind"]) == ("short_range", "128", "vision")
    assert "VNRecognizedObjectObservation" in spec.description.metadata.shortDescription
