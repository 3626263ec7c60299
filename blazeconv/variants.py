"""The BlazeFace models blazeconv knows: one frozen record per variant, the one place each fact lives."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anchors import AnchorOptions, generate_anchors
from .errors import OptionsError

# MediaPipe's keypoint order (subject's right and left), as TensorsToDetectionsCalculator emits them.
KEYPOINT_NAMES = (
    "right_eye",
    "left_eye",
    "nose_tip",
    "mouth_center",
    "right_ear_tragion",
    "left_ear_tragion",
)

# NonMaxSuppressionCalculator options shared by every MediaPipe face graph.
NMS_IOU_THRESHOLD = 0.3
# TensorsToDetectionsCalculatorOptions.score_clipping_thresh in the face graphs: logits are clipped to +-100.
SCORE_CLIPPING = 100.0


@dataclass(frozen=True)
class Variant:
    """A named BlazeFace model.

    ``architecture`` names the PyTorch module family (several variants can share one);
    ``min_score`` is MediaPipe's default ``min_score_thresh`` for this model, ``min_score_source`` says where
    that number comes from; ``tflite_file`` is the upstream file name shipped in ``blazeconv/models/`` and ``sha256`` its
    checksum; ``weight_storage`` is how that file stores its weights (it tells variants of one architecture apart).
    ``face_band``: ``(low, high)``, the face sizes (a face box's longer side) the model finds reliably, as shares of
    its input side (measured: docs/bench.md, *Every face*); the scale policy (``detection.scales``) reads it.
    """

    name: str
    architecture: str
    input_size: int
    num_anchors: int
    anchor_options: AnchorOptions
    min_score: float
    min_score_source: str
    tflite_file: str
    sha256: str
    weight_storage: str
    description: str
    face_band: tuple[float, float] = (0.16, 0.9)

    def anchors(self) -> np.ndarray:
        """``(num_anchors, 4)`` float32 anchors ``(x_center, y_center, w, h)``."""
        return generate_anchors(self.anchor_options)


def _face_anchor_options(size: int, strides: tuple[int, ...], min_scale: float, interpolated: float) -> AnchorOptions:
    return AnchorOptions(
        num_layers=len(strides),
        min_scale=min_scale,
        max_scale=0.75,
        input_size_height=size,
        input_size_width=size,
        anchor_offset_x=0.5,
        anchor_offset_y=0.5,
        strides=strides,
        aspect_ratios=(1.0,),
        interpolated_scale_aspect_ratio=interpolated,
        fixed_anchor_size=True,
    )


_ANCHORS_128 = _face_anchor_options(128, (8, 16, 16, 16), 0.1484375, 1.0)
_ANCHORS_256 = _face_anchor_options(256, (16, 32, 32, 32), 0.15625, 1.0)
_ANCHORS_192 = _face_anchor_options(192, (4,), 0.1484375, 0.0)

VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(
            name="front",
            architecture="blazeface128",
            input_size=128,
            num_anchors=896,
            anchor_options=_ANCHORS_128,
            min_score=0.75,
            min_score_source="MediaPipe face_detection_front_cpu.pbtxt",
            tflite_file="face_detection_front.tflite",
            sha256="a31cce739e9f5b9b08a15ef5ff90c500a46e96bd2c87f329d58a008dfd6c42ff",
            weight_storage="float32",
            description="front camera (2019), 128x128, float32 weights: selfie-distance faces",
            face_band=(0.15, 1.0),
        ),
        Variant(
            name="short_range",
            architecture="blazeface128",
            input_size=128,
            num_anchors=896,
            anchor_options=_ANCHORS_128,
            min_score=0.5,
            min_score_source="MediaPipe face_detection_short_range_common.pbtxt",
            tflite_file="face_detection_short_range.tflite",
            sha256="bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
            weight_storage="float16",
            description="short range, 128x128, float16 weights: faces within about 2 m",
            face_band=(0.17, 0.9),
        ),
        Variant(
            name="back",
            architecture="blazeface256",
            input_size=256,
            num_anchors=896,
            anchor_options=_ANCHORS_256,
            min_score=0.65,
            min_score_source="the original PyTorch port (hollance/BlazeFace-PyTorch)",
            tflite_file="face_detection_back.tflite",
            sha256="e376cf6b168d5ece8a3cedb94acc4eb168a136aede125ccc3d903ef38f5beda8",
            weight_storage="float16",
            description="back camera, 256x256, float16 weights: smaller faces further away",
            face_band=(0.08, 0.6),
        ),
        Variant(
            name="full_range",
            architecture="full_range",
            input_size=192,
            num_anchors=2304,
            anchor_options=_ANCHORS_192,
            min_score=0.6,
            min_score_source="MediaPipe face_detection_full_range_common.pbtxt",
            tflite_file="face_detection_full_range.tflite",
            sha256="99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3",
            weight_storage="float16",
            description="full range, 192x192, dense float16 weights: faces up to about 5 m",
            face_band=(0.085, 0.45),
        ),
        Variant(
            name="full_range_sparse",
            architecture="full_range_sparse",
            input_size=192,
            num_anchors=2304,
            anchor_options=_ANCHORS_192,
            min_score=0.6,
            min_score_source="MediaPipe face_detection_full_range_common.pbtxt",
            tflite_file="face_detection_full_range_sparse.tflite",
            sha256="2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
            weight_storage="float16/sparse float16",
            description="full range, 192x192, sparse float16 weights (DENSIFY): MediaPipe's full-range choice",
            face_band=(0.085, 0.4),
        ),
    )
}

DEFAULT_VARIANT = "short_range"
# The model a run uses when none is given (detect, blur, eval, FaceDetector, Ray): chosen by recall against labelled
# faces and speed (docs/bench.md, *Every face*). DEFAULT_VARIANT stays the architecture's default for a bare .pth.
DEFAULT_MODEL = "full_range_sparse"


def get_variant(name: str) -> Variant:
    """The variant called ``name``; an unknown name is an ``OptionsError`` listing the known ones."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise OptionsError(f"unknown model variant {name!r}{did_you_mean(name)}; known: {', '.join(VARIANTS)}") from None


def did_you_mean(name: str) -> str:
    """``" (did you mean 'short_range'?)"`` for a near miss of a shipped variant's name, else ``""``."""
    import difflib

    close = difflib.get_close_matches(str(name).replace("-", "_").lower(), list(VARIANTS), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def default_variant_for(architecture: str) -> Variant:
    """The variant assumed for weights of ``architecture`` when nothing says which file they came from.

    For the 128 px architecture that is ``short_range`` (MediaPipe's current model); otherwise the only one.
    """
    candidates = [v for v in VARIANTS.values() if v.architecture == architecture]
    if not candidates:
        raise OptionsError(f"no variant has architecture {architecture!r}")
    preferred = [v for v in candidates if v.name == DEFAULT_VARIANT]
    return (preferred or candidates)[0]


def fit_variant(variant: Variant | str, known: Variant | str | None, source: str | None = None) -> Variant:
    """``variant`` (a ``Variant`` or its name), checked against what the weights are: ``known`` is the weights'
    architecture name, or the ``Variant`` a model says it is, or None (nothing to check).

    The one place that decides whether a named variant fits a model: ``OptionsError`` naming both when the
    architectures differ, prefixed by ``source`` (the file or argument) when given.
    """
    chosen = get_variant(variant) if isinstance(variant, str) else variant
    if known is None:
        return chosen
    architecture = known.architecture if isinstance(known, Variant) else known
    if chosen.architecture == architecture:
        return chosen
    where = f"{source}: " if source else ""
    which = f" ({known.name})" if isinstance(known, Variant) else ""
    raise OptionsError(f"{where}variant {chosen.name!r} is a {chosen.architecture} model, the weights are "
                       f"{architecture}{which}")
