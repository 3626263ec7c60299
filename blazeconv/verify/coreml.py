"""Check a saved Core ML model against the PyTorch model it came from, on real photos, on any OS.

The Core ML file is evaluated by ``coreml_eval`` (every operation of it, its NMS stage included) and the same
input tensor goes through the PyTorch model, MediaPipe's decoding (``detect.decode``) and the post-processing the
Core ML model claims in its metadata: Core ML's hard NMS for the Vision pipeline, MediaPipe's weighted NMS
(``detect.weighted_nms``) for the landmarks model. Compared per image:

* Vision model: the decoded boxes (``raw_coordinates`` of the pipeline's first stage) of the detection
  candidates — the anchors scoring at least the model's score threshold in either model — and, for information,
  of all anchors (low-scoring anchors have large raw offsets, whose float16 rounding can exceed the float16
  tolerance without ever reaching an output); every score; after NMS, the faces found.
* Landmarks model: every output row's box, keypoints and score, and the faces found.

"The same faces" means the same number of faces, each Core ML face overlapping the reference face of the same
rank with IoU > 0.5 (two anchors of one face can swap places in float16, which is still the same face).
Tolerances are absolute, in normalised coordinates: 1e-4 for a float32 model and 2e-3 for a float16 one.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BlazeconvError, OptionsError, UnsupportedModelError

log = logging.getLogger(__name__)

TOLERANCES = {"float32": 1e-4, "float16": 2e-3}
SAME_FACE_IOU = 0.5


class VerificationError(BlazeconvError):
    """The Core ML model does not compute what the PyTorch model does, within the tolerance."""

    exit_code = 1


@dataclass(frozen=True)
class ImageCheck:
    """One image's comparison. Errors are max absolute differences in normalised units (NaN: not compared)."""

    image: str
    faces: int
    reference_faces: int
    same_faces: bool
    box_error: float
    keypoint_error: float
    score_error: float
    problems: tuple[str, ...] = ()
    all_anchors_box_error: float = math.nan

    def passed(self, tolerance: float) -> bool:
        errors_ok = all(math.isnan(e) or e <= tolerance for e in (self.box_error, self.keypoint_error))
        return self.same_faces and errors_ok and not self.problems


@dataclass(frozen=True)
class Verification:
    """The result of ``verify_coreml``; ``passed`` when every image passed at ``tolerance``."""

    model: str
    kind: str
    format: str
    precision: str
    variant: str
    tolerance: float
    checks: tuple[ImageCheck, ...]
    operations: dict[str, int]

    @property
    def passed(self) -> bool:
        return all(check.passed(self.tolerance) for check in self.checks)

    def failures(self) -> list[str]:
        """One line per failed image, saying what failed."""
        lines = []
        for c in self.checks:
            if c.passed(self.tolerance):
                continue
            what = []
            if not c.same_faces:
                what.append(f"{c.faces} faces vs {c.reference_faces} in PyTorch")
            for name, error in (("box", c.box_error), ("keypoint", c.keypoint_error)):
                if not math.isnan(error) and error > self.tolerance:
                    what.append(f"{name} error {error:.2e} > {self.tolerance:g}")
            what.extend(c.problems)
            lines.append(f"{c.image}: {'; '.join(what)}")
        return lines


@dataclass(frozen=True)
class _Claims:
    """What a blazeconv Core ML model says about itself (user-defined metadata and structure)."""

    kind: str
    format: str
    precision: str
    variant: str
    input_size: int
    iou_threshold: float
    score_threshold: float
    max_faces: int
    generated_anchors: bool
    source_sha256: str


def read_claims(mlmodel, where: str) -> _Claims:
    """The facts verification needs from the model's metadata and spec; ``UnsupportedModelError`` if absent."""
    spec = mlmodel.get_spec()
    meta = dict(spec.description.metadata.userDefined)
    needed = ("model_kind", "variant", "input_size", "iou_threshold", "score_threshold", "max_faces")
    missing = [key for key in needed if key not in meta]
    if missing:
        raise UnsupportedModelError(f"{where}: not a blazeconv Core ML model (metadata lacks {', '.join(missing)})")
    kind = meta["model_kind"]
    if kind not in ("vision", "landmarks"):
        raise UnsupportedModelError(f"{where}: unknown model_kind {kind!r} in its metadata")
    model_format = "mlprogram" if _contains(spec, "mlProgram") else "neuralnetwork"
    return _Claims(
        kind=kind,
        format=model_format,
        precision=program_precision(spec),
        variant=meta["variant"],
        input_size=int(meta["input_size"]),
        iou_threshold=float(meta["iou_threshold"]),
        score_threshold=float(meta["score_threshold"]),
        max_faces=int(meta["max_faces"]),
        generated_anchors=meta.get("anchors", "").startswith("generated"),
        source_sha256=meta.get("source_sha256", "unknown"),
    )


def _contains(spec, model_type: str) -> bool:
    kind = spec.WhichOneof("Type")
    if kind == "pipeline":
        return any(_contains(stage, model_type) for stage in spec.pipeline.models)
    return kind == model_type


def program_precision(spec) -> str:
    """``float16`` when the model holds float16 values (an ML program's tensors, a network's stored weights)."""
    kind = spec.WhichOneof("Type")
    if kind == "pipeline":
        return "float16" if any(program_precision(s) == "float16" for s in spec.pipeline.models) else "float32"
    if kind == "mlProgram":
        function = spec.mlProgram.functions["main"]
        block = function.block_specializations[function.opset]
        for op in block.operations:
            if any(o.type.tensorType.dataType == 10 for o in op.outputs):  # FLOAT16
                return "float16"
        return "float32"
    if kind == "neuralNetwork":
        for layer in spec.neuralNetwork.layers:
            params = getattr(layer, layer.WhichOneof("layer"))
            for name in ("weights", "bias", "data"):
                weights = getattr(params, name, None)
                if weights is not None and hasattr(weights, "float16Value") and len(weights.float16Value):
                    return "float16"
        return "float32"
    return "float32"


def verify_coreml(
    model_path: str | Path,
    images: list[str | Path],
    weights: str | Path | None = None,
    anchors: str | Path | None = None,
    tolerance: float | None = None,
) -> Verification:
    """Compare the Core ML model at ``model_path`` with its PyTorch model on ``images``.

    ``weights``: the model argument the Core ML model came from (a shipped name, a ``.tflite`` or a ``.pth``, as
    ``sources.load_weights`` reads it); by default the shipped ``.tflite`` whose SHA-256 the model's metadata records. ``anchors``: the ``.npy`` the model was built with, if not generated.
    ``tolerance`` overrides the precision's default (1e-4 float32, 2e-3 float16).
    """
    import torch

    from ..export.coreml import coreml_source, load_mlmodel
    from ..sources import load_weights
    from ..variants import get_variant
    from .evaluator import evaluate

    model_path = Path(model_path)
    if not images:
        raise OptionsError("no images to verify on")
    _require_coreml(model_path)
    mlmodel = load_mlmodel(model_path)
    claims = read_claims(mlmodel, str(model_path))
    variant = get_variant(claims.variant)
    if not claims.generated_anchors and anchors is None:
        raise OptionsError(f"{model_path}: built with custom anchors; give the same anchors file to verify it")
    source = coreml_source(load_weights(_weights_for(model_path, claims, weights), variant=variant.name), anchors)
    from ..network import model_from_state_dict

    network = model_from_state_dict(source.state_dict, str(source.path))
    tolerance = TOLERANCES[claims.precision] if tolerance is None else float(tolerance)
    size = claims.input_size
    checks, operations = [], {}
    for image_path in images:
        pixels = _model_input(image_path, size)
        evaluation = evaluate(mlmodel, {"image": pixels})
        for key, count in evaluation.operations.items():
            operations[key] = max(operations.get(key, 0), count)
        x = torch.from_numpy(pixels.astype(np.float32) / np.float32(127.5) - np.float32(1.0)).permute(2, 0, 1)[None]
        with torch.no_grad():
            regressors, classificators = network(x)
        reference = _Reference(regressors[0].numpy(), classificators[0].numpy(), source.anchors, size)
        if claims.kind == "vision":
            checks.append(_check_vision(str(image_path), evaluation, reference, claims))
        else:
            checks.append(_check_landmarks(str(image_path), evaluation, reference, claims))
    return Verification(
        str(model_path), claims.kind, claims.format, claims.precision, variant.name, tolerance, tuple(checks), operations
    )


# What a file that is not a Core ML model most likely is, by its first bytes (start, offset): TFLite flatbuffers
# carry their identifier at offset 4; PyTorch saves zip archives (older versions a bare pickle).
_OTHER_FORMATS = (
    (b"TFL3", 4, "a TFLite model", "convert it first: blazeconv coreml {path}"),
    (b"PK\x03\x04", 0, "a zip archive (PyTorch .pth weights are one)", "convert weights first: blazeconv coreml {path}"),
    (b"\x80", 0, "a Python pickle (older PyTorch weights are one)", "convert weights first: blazeconv coreml {path}"),
    (b"\x93NUMPY", 0, "a numpy array", ""),
)


def _require_coreml(path: Path) -> None:
    """``CoreMLError`` (exit 3) saying what was expected when ``path`` is plainly not a Core ML model: a folder
    without ``Manifest.json``, a file of another known format, or a file not named ``.mlmodel``."""
    from ..export.coreml import CoreMLError

    expected = "expected an .mlpackage folder or an .mlmodel file"
    if path.is_dir():
        if not (path / "Manifest.json").is_file():
            raise CoreMLError(f"{path}: not a Core ML model: a folder without Manifest.json ({expected})")
        return
    if not path.is_file():
        return  # missing: load_mlmodel names it
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return
    for magic, offset, what, advice in _OTHER_FORMATS:
        if head[offset:offset + len(magic)] == magic:
            hint = f"; {advice.format(path=path)}" if advice else ""
            raise CoreMLError(f"{path}: not a Core ML model but {what} ({expected}){hint}")
    if path.suffix.lower() != ".mlmodel":
        raise CoreMLError(f"{path}: not a Core ML model ({expected}, got {path.suffix or 'a file without suffix'})")


def _weights_for(model_path: Path, claims: _Claims, weights):
    """The model argument to compare with: ``weights`` as given (any file kind ``sources.load_weights`` reads), else
    the shipped ``.tflite`` whose SHA-256 the Core ML model records."""
    if weights is not None:
        return weights
    from ..sources import shipped_model
    from ..variants import get_variant

    variant = get_variant(claims.variant)
    if claims.source_sha256 != variant.sha256:
        raise OptionsError(
            f"{model_path}: its weights are not from the shipped {variant.tflite_file} "
            f"(source_sha256 {claims.source_sha256}); give the weights it was built from"
        )
    return shipped_model(variant)


def _model_input(image_path, size: int) -> np.ndarray:
    """The photo as ``(size, size, 3)`` uint8 RGB (squashed: parity needs the same input, not a letterbox)."""
    from PIL import Image

    from ..detection import load_image

    rgb = load_image(image_path)
    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BILINEAR), np.uint8)


class _Reference:
    """PyTorch outputs of one image, decoded as MediaPipe does: corner boxes, keypoints and scores per anchor."""

    def __init__(self, raw: np.ndarray, logits: np.ndarray, anchors: np.ndarray, size: int):
        from ..detection import decode

        self.boxes, self.keypoints, self.scores = decode(raw, logits, anchors, size)

    def centre_size(self) -> np.ndarray:
        """``(N, 4)`` ``(x_center, y_center, width, height)``: the Vision model's coordinates."""
        low, high = self.boxes[:, :2], self.boxes[:, 2:]
        return np.concatenate([(low + high) / 2, high - low], axis=1)


def _corners(centre_size: np.ndarray) -> np.ndarray:
    centre_size = np.asarray(centre_size, np.float64).reshape(-1, 4)
    return np.concatenate([centre_size[:, :2] - centre_size[:, 2:] / 2, centre_size[:, :2] + centre_size[:, 2:] / 2], 1)


def _same_faces(found: np.ndarray, expected: np.ndarray) -> bool:
    """Same count, and each face (corner box) overlapping the expected one of the same rank with IoU > 0.5."""
    from ..detection import iou_matrix

    if len(found) != len(expected):
        return False
    if not len(found):
        return True
    overlaps = iou_matrix(np.concatenate([found, expected]).astype(np.float32))[: len(found), len(found) :]
    return bool(np.all(np.diag(overlaps) > SAME_FACE_IOU))


def _check_vision(image: str, evaluation, reference: _Reference, claims: _Claims) -> ImageCheck:
    from ..export.coreml import COORDINATES, RAW_CONFIDENCE, RAW_COORDINATES
    from .evaluator import pick_top_nms

    problems = []
    raw_coordinates = np.asarray(evaluation.features[RAW_COORDINATES], np.float32)
    raw_confidence = np.asarray(evaluation.features[RAW_CONFIDENCE], np.float32)
    expected = reference.centre_size()
    difference = np.abs(raw_coordinates - expected)  # (N, 4)
    threshold = np.float32(claims.score_threshold)
    candidates = (reference.scores >= threshold) | (raw_confidence[:, 0] >= threshold)
    box_error = float(difference[candidates].max()) if candidates.any() else 0.0
    score_error = float(np.max(np.abs(raw_confidence[:, 0] - reference.scores)))
    kept = pick_top_nms(
        reference.scores[:, None], expected, claims.iou_threshold, claims.score_threshold, True, claims.max_faces
    )
    found = np.asarray(evaluation.outputs[COORDINATES], np.float32)
    for row in found:  # the NMS stage copies rows of its input: each face must be one anchor's box
        if not np.any(np.all(raw_coordinates == row, axis=1)):
            problems.append(f"output box {row.tolist()} is no anchor's box")
    same = _same_faces(_corners(found), _corners(expected[kept]))
    return ImageCheck(
        image, len(found), len(kept), same, box_error, math.nan, score_error, tuple(problems), float(difference.max())
    )


def _check_landmarks(image: str, evaluation, reference: _Reference, claims: _Claims) -> ImageCheck:
    from ..detection import weighted_nms
    from ..export.coreml import COUNT, DETECTIONS

    problems = []
    rows = np.asarray(evaluation.outputs[DETECTIONS], np.float32)
    count = int(np.asarray(evaluation.outputs[COUNT]).reshape(-1)[0])
    boxes, keypoints, scores = reference.boxes, reference.keypoints, reference.scores
    # TensorsToDetectionsCalculator: score >= threshold, boxes of non-negative size.
    keep = (scores >= np.float32(claims.score_threshold)) & (boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])
    ref_boxes, ref_keypoints, ref_scores = weighted_nms(boxes[keep], keypoints[keep], scores[keep], claims.iou_threshold)
    expected = np.concatenate([ref_boxes, ref_keypoints.reshape(len(ref_boxes), 2 * keypoints.shape[1]), ref_scores[:, None]], axis=1)
    expected = expected[: claims.max_faces]
    if not 0 <= count <= len(rows):
        problems.append(f"count {count} outside 0..{len(rows)}")
        count = max(0, min(count, len(rows)))
    if np.any(rows[count:] != 0):
        problems.append("rows after 'count' are not zero")
    found = rows[:count]
    same = _same_faces(found[:, :4], expected[:, :4])
    compared = min(len(found), len(expected))
    if compared:
        difference = np.abs(found[:compared] - expected[:compared])
        box_error = float(difference[:, :4].max())
        keypoint_error = float(difference[:, 4:-1].max())
        score_error = float(difference[:, -1].max())
    else:
        box_error = keypoint_error = score_error = 0.0
    return ImageCheck(image, count, len(expected), same, box_error, keypoint_error, score_error, tuple(problems))


def default_images() -> list[Path]:
    """The photos that ship with the package (``blazeconv/photos``), so ``verify`` works after a plain pip install."""
    from ..resources import shipped_photos

    return shipped_photos()
