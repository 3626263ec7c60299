"""BlazeFace module -> ONNX: the raw network, or a detections model with decoding and weighted NMS inside.

Two kinds of model, both with a dynamic batch dimension and metadata (``metadata_props``) naming the variant,
its anchor options, thresholds, keypoint names, the source ``.tflite``'s SHA-256 and blazeconv's version:

* raw — input ``image`` ``(B, 3, S, S)`` float32 RGB in [-1, 1]; outputs ``regressors`` ``(B, N, 16)`` and
  ``classificators`` ``(B, N, 1)``, TFLite's raw outputs (decode them with ``blazeconv.detection.decode_and_suppress``).
* detections — the same input, plus optional 0-d float32 inputs ``min_score`` and ``iou_threshold`` (initializers
  holding the defaults, overridable at run time: ONNX Runtime's "overridable initializers"). It decodes every anchor
  as MediaPipe's ``TensorsToDetectionsCalculator`` does (anchors are constants) and runs MediaPipe's WEIGHTED
  non-maximum suppression (``NonMaxSuppressionCalculator``) in an ONNX ``Loop`` that stops after the last face
  (at most ``max_faces`` rounds). Outputs ``detections``
  ``(B, max_faces, 17)`` rows ``(xmin, ymin, xmax, ymax, 6 x (x, y), score)`` in 0..1 of the model input, best
  first, zero rows after the last face, and ``count`` ``(B,)`` int64.

Exported with PyTorch's dynamo exporter (``torch.export``): ONNX Runtime runs its graphs faster than the TorchScript
exporter's, which keeps SAME padding as shape arithmetic (docs/bench.md, *Design figures*). The module's residuals
are summed out of place while exporting (``network.add_residual``): the in-place sum into a channel slice would
export as ``slice_scatter``, which halves ONNX Runtime's speed.

onnx and onnxscript (the ``onnx`` extra) are imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._version import __version__
from ..errors import BlazeconvError, ModelFileError, OptionsError, require
from ..io import atomic_path
from ..variants import KEYPOINT_NAMES, NMS_IOU_THRESHOLD, SCORE_CLIPPING, VARIANTS, Variant, fit_variant
from . import DEFAULT_MAX_FACES, RAW_OUTPUTS, check_options

log = logging.getLogger(__name__)

# Rows of the detections model (MediaPipe's face graphs keep every face; 16 is the Core ML landmarks model's default).
# The dynamo exporter's first opset; ONNX Runtime, OpenVINO and onnxruntime-web all read it.
OPSET = 18
# Columns of a detections row: box corners, the keypoints' (x, y), the score.

IMAGE = "image"
DETECTION_OUTPUTS = ("detections", "count")
THRESHOLD_INPUTS = ("min_score", "iou_threshold")


def require_onnx(purpose: str = "ONNX export") -> None:
    """``MissingDependencyError`` (exit 8) naming the ``convert`` extra unless onnx and onnxscript are installed."""
    for module in ("onnx", "onnxscript"):
        require(module, "blazeconv[convert]", purpose)


class DetectionHead(nn.Module):
    """Decoding + MediaPipe's weighted NMS of a batch of raw outputs, one loop round per face, at most ``max_faces``.

    ``forward(regressors (B, N, 16), classificators (B, N, 1), min_score (), iou_threshold ())`` ->
    ``detections (B, max_faces, 17)``, ``count (B,)`` int64. Each round is one round of ``NonMaxSuppressionCalculator``'s
    WEIGHTED algorithm, image by image: the best remaining detection (the first of equal scores) and its cluster,
    every remaining one with IoU > ``iou_threshold`` (itself included); the row is the cluster's score-weighted mean
    box corners and keypoints with the best one's score; the cluster is removed; a round that removes nothing (a box
    without area) is the image's last. Detections start out as the anchors with score >= ``min_score`` and a box of
    non-negative size, as TensorsToDetectionsCalculator keeps them. The loop ends when no image has a face left, so a
    scripted export runs (faces + 1) rounds, not ``max_faces``. Equal to ``detection.decode_and_suppress`` on the same
    raw outputs.
    """

    __constants__ = ["scale", "max_faces", "width", "clip"]

    def __init__(self, anchors: np.ndarray, input_size: int, max_faces: int = DEFAULT_MAX_FACES):
        super().__init__()
        table = torch.from_numpy(np.ascontiguousarray(anchors, np.float32))  # (N, 4) x_center, y_center, w, h
        pairs = 2 + len(KEYPOINT_NAMES)  # (x, y) pairs in a regressor row: centre, size, keypoints
        self.register_buffer("centre", table[:, 0:2].clone())  # (N, 2)
        self.register_buffer("keypoint_origin", table[:, 0:2].repeat(1, pairs - 2))  # (N, 2K)
        self.register_buffer("row_scale", table[:, 2:4].repeat(1, pairs))  # (N, 16) anchor (w, h) per pair
        self.scale = float(input_size)
        self.max_faces = int(max_faces)
        self.width = 2 * pairs  # box corners and keypoints: the values a cluster averages
        self.clip = float(SCORE_CLIPPING)  # a module constant: a scripted forward cannot read a global float

    def forward(
        self, regressors: torch.Tensor, classificators: torch.Tensor, min_score: torch.Tensor, iou_threshold: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        scores = torch.sigmoid(torch.clamp(classificators[:, :, 0], -self.clip, self.clip))  # (B, N)
        # As detection.postprocess._decode_boxes: every value / S * the anchor's size (x by width, y by height), then the centre.
        scaled = regressors / self.scale * self.row_scale  # (B, N, 16)
        centres = scaled[:, :, 0:2] + self.centre  # (B, N, 2)
        half = scaled[:, :, 2:4] / 2.0
        lows, highs = centres - half, centres + half  # (B, N, 2) each: (xmin, ymin), (xmax, ymax)
        values = torch.cat([lows, highs, scaled[:, :, 4:] + self.keypoint_origin], dim=2)  # (B, N, 4 + 2K)
        size = highs - lows  # (B, N, 2)
        area = size[:, :, 0] * size[:, :, 1]  # (B, N)
        remaining = (scores >= min_score) & (size[:, :, 0] >= 0) & (size[:, :, 1] >= 0)  # (B, N)
        running = remaining.any(dim=1)  # (B,) False once an image has no face left or a round removed nothing
        still_clustering = iou_threshold < 1.0  # with a threshold of 1 no cluster holds even the best one
        no_score = torch.full_like(scores, -1.0)
        no_weight = torch.zeros_like(scores)
        detections = torch.zeros(scores.shape[0], self.max_faces, self.width + 1, dtype=scores.dtype)
        count = torch.zeros_like(scores[:, 0], dtype=torch.int64)  # (B,)
        face = 0
        while face < self.max_faces and bool(running.any()):
            candidates = torch.where(remaining, scores, no_score)  # (B, N) -1 where taken or filtered out
            best = torch.argmax(candidates, dim=1, keepdim=True)  # (B, 1) the first of the best
            best_score = torch.gather(candidates, 1, best)  # (B, 1) -1 when nothing remains
            best_values = torch.gather(values, 1, best[:, :, None].expand(-1, -1, self.width))  # (B, 1, 4 + 2K)
            best_area = torch.gather(area, 1, best)  # (B, 1)
            overlap = torch.clamp(
                torch.minimum(best_values[:, :, 2:4], highs) - torch.maximum(best_values[:, :, 0:2], lows), min=0.0
            )  # (B, N, 2)
            intersection = overlap[:, :, 0] * overlap[:, :, 1]  # (B, N)
            # OverlapSimilarity (IoU). A union of 0 gives NaN, and NaN > threshold is False, as IoU 0 would be.
            iou = intersection / (best_area + area - intersection)
            cluster = remaining & (iou > iou_threshold)  # (B, N)
            weights = torch.where(cluster, scores, no_weight)  # (B, N)
            total = weights.sum(dim=1, keepdim=True)  # (B, 1)
            mean = torch.matmul(weights[:, None, :], values) / total[:, :, None]  # (B, 1, 4 + 2K)
            merged = torch.where(total[:, :, None] > 0, mean, best_values)  # all-zero weights: the best one as is
            row = torch.cat([merged, best_score[:, :, None]], dim=2)[:, 0]  # (B, 4 + 2K + 1)
            found = (best_score[:, 0] >= 0) & running  # (B,)
            detections[:, face] = torch.where(found[:, None], row, torch.zeros_like(row))  # zero rows after the last
            count = count + found.to(torch.int64)
            running = found & (best_area[:, 0] > 0) & still_clustering
            remaining = remaining & ~cluster
            face += 1
        return detections, count  # (B, max_faces, 17), (B,)


def export_onnx(
    model: nn.Module,
    variant: Variant,
    path: str | Path,
    *,
    detections: bool = False,
    source_sha256: str | None = None,
    min_score: float | None = None,
    iou_threshold: float = NMS_IOU_THRESHOLD,
    max_faces: int = DEFAULT_MAX_FACES,
    anchors: np.ndarray | None = None,
) -> Path:
    """Export ``model`` (an eval-mode BlazeFace module of ``variant``) to ONNX at ``path``, written atomically.

    Raw: ``image (B, 3, S, S)`` float32 RGB in [-1, 1] -> ``regressors (B, N, 16)``, ``classificators (B, N, 1)``.
    ``detections=True``: -> ``detections (B, max_faces, 17)``, ``count (B,)`` int64, with optional 0-d float32 inputs
    ``min_score`` (default ``min_score`` or the variant's) and ``iou_threshold`` (see the module docstring).
    ``anchors``: ``(N, 4)`` float32 ``(x_center, y_center, w, h)``, default the variant's generated ones.
    ``source_sha256``: of the ``.tflite`` the weights came from, recorded in the metadata ("unknown" if None).
    Returns ``path``.
    """
    require_onnx()
    check_options(variant.min_score if min_score is None else min_score, iou_threshold, max_faces)
    proto = _export_network(model.eval(), variant.input_size)
    if detections:
        proto = _with_detections(proto, variant, min_score, iou_threshold, max_faces, anchors)
    _describe(proto, variant, source_sha256, min_score, iou_threshold, max_faces if detections else None, anchors is not None)
    _save(proto, Path(path))
    return Path(path)


def export_detections(
    network: str | Path,
    path: str | Path,
    *,
    min_score: float | None = None,
    iou_threshold: float = NMS_IOU_THRESHOLD,
    max_faces: int = DEFAULT_MAX_FACES,
    variant: Variant | str | None = None,
) -> Path:
    """The detections model made from a raw network ``network`` that ``export_onnx`` wrote (its metadata names the
    variant and source); written atomically to ``path``. The same model as ``export_onnx(..., detections=True)``,
    without exporting the network again: only the decoding and NMS are traced (about a second). ``variant``
    overrides the one the metadata names (it must be of the same architecture; the source SHA-256 is then dropped,
    as ``sources.load_weights`` does). Returns ``path``.
    """
    import onnx

    require_onnx()
    network = Path(network)
    try:
        proto = onnx.load_model(str(network))
    except Exception as exc:  # protobuf's DecodeError and friends: not an ONNX file
        raise ModelFileError(f"{network}: not a readable ONNX model ({type(exc).__name__})") from None
    meta = {p.key: p.value for p in proto.metadata_props}
    if meta.get("kind") != "raw" or meta.get("variant") not in VARIANTS:
        raise ModelFileError(f"{network}: not a raw BlazeFace network exported by blazeconv (see its metadata)")
    recorded = VARIANTS[meta["variant"]]
    variant = recorded if variant is None else fit_variant(variant, recorded, str(network))
    check_options(variant.min_score if min_score is None else min_score, iou_threshold, max_faces)
    sha256 = meta.get("source_sha256") if variant is recorded else None
    proto = _with_detections(proto, variant, min_score, iou_threshold, max_faces, None)
    _describe(proto, variant, None if sha256 == "unknown" else sha256, min_score, iou_threshold, max_faces, False)
    _save(proto, Path(path))
    return Path(path)


def _with_detections(network, variant: Variant, min_score, iou_threshold, max_faces, anchors):
    """``network``'s graph followed by the decoding and weighted NMS, threshold inputs with their defaults."""
    table = variant.anchors() if anchors is None else np.asarray(anchors, np.float32)
    if table.shape != (variant.num_anchors, 4):
        raise OptionsError(f"anchors must be ({variant.num_anchors}, 4) for {variant.name}, got {table.shape}")
    head = _export_head(DetectionHead(table, variant.input_size, max_faces).eval(), variant.num_anchors, network)
    proto = _join(network, head)
    min_score = variant.min_score if min_score is None else float(min_score)
    _add_threshold_defaults(proto, {"min_score": min_score, "iou_threshold": float(iou_threshold)})
    return proto


def _describe(proto, variant: Variant, source_sha256, min_score, iou_threshold, max_faces, custom_anchors: bool) -> None:
    """Replace ``proto``'s metadata and doc string; ``max_faces`` is None for the raw network."""
    size = variant.input_size
    min_score = variant.min_score if min_score is None else float(min_score)
    metadata = {
        "blazeconv_version": __version__,
        "kind": "raw" if max_faces is None else "detections",
        "variant": variant.name,
        "input_size": str(size),
        "input": f"{IMAGE}: (batch, 3, {size}, {size}) float32 RGB in [-1, 1], letterboxed (aspect kept, border -1)",
        "num_anchors": str(variant.num_anchors),
        "anchor_options": json.dumps(dataclasses.asdict(variant.anchor_options)),
        "anchors": "custom table (constants in the model)" if custom_anchors else "SsdAnchorsCalculator options above",
        "min_score": f"{min_score:g}",
        "min_score_source": variant.min_score_source,
        "iou_threshold": f"{iou_threshold:g}",
        "nms": "MediaPipe NonMaxSuppressionCalculator WEIGHTED, IoU",
        "keypoint_names": json.dumps(list(KEYPOINT_NAMES)),
        "source_sha256": source_sha256 or "unknown",
        "source_file": variant.tflite_file,
    }
    if max_faces is None:
        metadata["decoding"] = (
            "x = r0/S*aw + ax, y = r1/S*ah + ay, w = r2/S*aw, h = r3/S*ah, keypoint k (r[4+2k]/S*aw + ax, "
            "r[5+2k]/S*ah + ay); score sigmoid(clip(logit, -100, 100))"
        )
        proto.doc_string = f"BlazeFace {variant.name}: TFLite's raw outputs regressors (batch, N, 16), classificators (batch, N, 1)."
    else:
        metadata["max_faces"] = str(max_faces)
        metadata["detection_columns"] = json.dumps(
            ["xmin", "ymin", "xmax", "ymax"] + [f"{n}_{axis}" for n in KEYPOINT_NAMES for axis in "xy"] + ["score"]
        )
        proto.doc_string = (
            f"BlazeFace {variant.name} with MediaPipe's decoding and weighted NMS: detections (batch, {max_faces}, 17) "
            "rows (xmin, ymin, xmax, ymax, 6 keypoints (x, y), score) in 0..1 of the input, zero rows after count."
        )
    del proto.metadata_props[:]
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)


@contextlib.contextmanager
def _quiet_exporter():
    """The dynamo exporter prints progress to stdout and warns about torchvision ops we do not use."""
    noisy = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._export", "onnxscript")]
    levels = [logger.level for logger in noisy]
    try:
        for logger in noisy:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(noisy, levels):
            logger.setLevel(level)


def _export_network(model: nn.Module, size: int):
    """The network through the dynamo exporter (``torch.export``) -> an ``onnx.ModelProto``, weights inside."""
    example = (torch.zeros(2, 3, size, size),)  # batch 2: a batch-1 example specialises the dynamic dimension
    try:
        with _quiet_exporter(), torch.no_grad():
            program = torch.onnx.export(
                model, example, dynamo=True, input_names=[IMAGE], output_names=list(RAW_OUTPUTS),
                dynamic_shapes=({0: torch.export.Dim("batch")},), opset_version=OPSET, optimize=True, verbose=False,
                external_data=False,
            )
    except Exception as exc:  # the exporter's own errors are long; the first line says what failed
        raise _export_failure(model, exc) from exc
    return _without_build_traces(program.model_proto)


def _export_head(head: DetectionHead, num_anchors: int, network):
    """The decoding and NMS scripted (``torch.jit.script``) through the TorchScript exporter -> an ``onnx.ModelProto``.

    Scripting keeps the data-dependent ``while`` as an ONNX ``Loop``, which stops after the last face: faster than
    the NMS unrolled ``max_faces`` times, which the dynamo exporter is also slow to export (docs/bench.md). Opset
    and IR version follow ``network``'s, so the two join.
    """
    import onnx

    example = (torch.zeros(2, num_anchors, 16), torch.zeros(2, num_anchors, 1), torch.tensor(0.5), torch.tensor(0.3))
    names = [*RAW_OUTPUTS, *THRESHOLD_INPUTS]
    batch = {0: "batch"}
    buffer = io.BytesIO()
    try:
        with _quiet_exporter(), torch.no_grad():
            torch.onnx.export(
                torch.jit.script(head), example, buffer, dynamo=False, input_names=names, output_names=list(DETECTION_OUTPUTS),
                dynamic_axes={"regressors": batch, "classificators": batch, "detections": batch, "count": batch},
                opset_version=OPSET,
            )
    except Exception as exc:
        raise _export_failure(head, exc) from exc
    proto = _without_build_traces(onnx.load_model_from_string(buffer.getvalue()))
    proto.ir_version = network.ir_version
    return proto


def _without_build_traces(proto):
    """``proto`` without the exporters' debugging records: each node's stack trace (the absolute paths of the
    machine that exported it), FX node, scopes and rewrite rules, and the exported program's signature. An export
    then reveals nothing of where it was made, and the same weights give the same bytes on every machine."""
    _clear_graph(proto.graph)
    return proto


def _clear_graph(graph) -> None:
    del graph.metadata_props[:]
    for value in (*graph.input, *graph.output, *graph.value_info):
        del value.metadata_props[:]
    for node in graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
        for attribute in node.attribute:  # a Loop's body (reading .g of another attribute would create one)
            if attribute.HasField("g"):
                _clear_graph(attribute.g)
            for body in attribute.graphs:
                _clear_graph(body)


def _join(network, head):
    """One graph: ``network``'s raw outputs feed ``head``'s inputs of the same names."""
    from onnx import compose

    links = [(name, name) for name in RAW_OUTPUTS]
    return compose.merge_models(network, head, io_map=links, producer_name=network.producer_name,
                                producer_version=network.producer_version)


def _export_failure(module: nn.Module, exc: Exception) -> BlazeconvError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return BlazeconvError(f"ONNX export of {type(module).__name__} failed: {first[:300]}")


def _add_threshold_defaults(proto, defaults: dict[str, float]) -> None:
    """Give the threshold inputs initializers of the same name: defaults a caller may leave out or override."""
    from onnx import numpy_helper

    declared = {i.name for i in proto.graph.input}
    for name, value in defaults.items():
        if name not in declared:
            raise BlazeconvError(f"exported detections model lacks its {name!r} input")
        proto.graph.initializer.append(numpy_helper.from_array(np.array(value, np.float32), name=name))


def _save(proto, path: Path) -> None:
    import onnx

    with atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp))


def default_output(source: Path, detections: bool) -> Path:
    """``build/front.pth`` -> ``build/front.onnx``, or ``build/front_detections.onnx`` with ``detections``."""
    return source.with_name(source.stem + ("_detections" if detections else "") + ".onnx")
