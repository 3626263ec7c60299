"""The detection pipeline around a BlazeFace model, step for step as MediaPipe's face graphs run it.

image (file, bytes, Pillow image, array, tensor) -> ``as_rgb`` / ``load_image`` -> ``letterbox``
(ImageToTensorCalculator) -> runner -> ``decode`` (TensorsToDetectionsCalculator) -> ``weighted_nms``
(NonMaxSuppressionCalculator) -> ``remove_letterbox`` (DetectionLetterboxRemovalCalculator) -> ``Detection`` records in
0..1 of the original image. That is one scale, the whole picture (``exact``); by default the picture is also cut
into the tiles its scales need (``scales`` chooses, ``tiling`` cuts and maps back), each run the same way, and every
piece's candidates are merged by weighted NMS (``merging``).

The model step is a *runner*: any object with ``run(batch)``, ``batch`` a numpy ``(B, 3, S, S)`` float32 RGB array in
[-1, 1], returning numpy ``(regressors (B, N, 16), classificators (B, N, 1))`` (the TFLite outputs' layout), and a
``variant`` attribute (a ``Variant``, or None when the caller names it). A torch module (or any callable taking and
returning torch tensors) is wrapped in ``backends.torch.TorchRunner``; with any other runner this module never imports
torch. The runner protocol is written down in ``backends.runner.Runner``.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..anchors import AnchorOptions, generate_anchors
from ..backends.runner import Runner
from ..errors import ImageError, OptionsError
from ..sources import is_runner
from ..tuning import reused_decode_memory, torch_thread_count, torch_threads, with_torch_threads
from ..variants import Variant, fit_variant, get_variant
from .images import DecodeBudget, as_rgb, load_reduced
from .letterboxing import Letterbox, letterbox, remove_letterbox
from .merging import merge
from .postprocess import candidates, decode_and_suppress
from .records import Detection
from .scales import Scale
from .settings import DetectionSettings
from .tiling import Piece, scale_pieces, to_picture

# With ``keep_images`` a batch stops growing once its decoded images take this much (a 37-MP photo: 111 MB).
KEPT_IMAGE_BYTES = 192 * 1024 * 1024
# The loaders of a stream decode at most this many bytes of pixels at once (``images.DecodeBudget``).
DECODE_BUDGET_BYTES = 256 * 1024 * 1024

Model = Any
"""A runner (``run(batch)`` on numpy, see the module docstring), a torch module, or a callable on torch tensors."""


@functools.lru_cache(maxsize=8)
def _anchors(options: AnchorOptions) -> np.ndarray:
    anchors = generate_anchors(options)
    anchors.setflags(write=False)
    return anchors


def as_runner(model: Model) -> Runner:
    """``model`` itself when it is a runner, else a ``backends.torch.TorchRunner`` around it (imports torch)."""
    if is_runner(model):
        return model
    from ..backends.torch import TorchRunner

    return TorchRunner(model)


def resolve_variant(runner: Runner, variant: Variant | str | None) -> Variant:
    """``variant`` if given (it must fit the runner's architecture when the runner knows its own), else the runner's."""
    known = getattr(runner, "variant", None)
    known = get_variant(known) if isinstance(known, str) else known
    if variant is None:
        if known is None:
            raise OptionsError("the model does not know which variant it is: pass variant= (a name or a Variant)")
        return known
    return fit_variant(variant, known)


def _setup(model, settings: DetectionSettings | None, options: dict):
    """The runner, the variant and the settings of one call (``settings`` with ``options`` applied, every option
    checked before any work)."""
    settings = DetectionSettings.of(settings, **options)
    runner = as_runner(model)
    return runner, resolve_variant(runner, settings.variant), settings


@dataclass(frozen=True)
class Prepared:
    """One image as model inputs: the whole image letterboxed, then (with tiles) each tile letterboxed.

    ``tensors``: ``(3, S, S)`` float32 in [-1, 1] each; ``boxes``: their ``Letterbox``; ``pieces``: where each input
    lies in the image and what it answers for (``tiling.Piece``, pixels of the image as decoded, ``size``: its
    ``(width, height)``); the first is the whole image.
    """

    tensors: list[np.ndarray]
    boxes: list[Letterbox]
    pieces: list[Piece]
    size: tuple[int, int]


def prepare_image(image: np.ndarray, input_size: int, scales: Sequence[Scale] = (),
                  full_width: int | None = None) -> Prepared:
    """``image`` ``(H, W, 3)`` uint8 RGB as model inputs (``Prepared``): the whole image, then the tiles of
    ``scales`` (``tiling.scale_pieces``; none: the whole image only, as MediaPipe). ``full_width``: the width of
    the image as stored, when ``image`` was decoded smaller (the scales are in pixels of the stored image)."""
    height, width = image.shape[:2]
    prepared = Prepared([], [], scale_pieces(width, height, scales, full_width), (width, height))
    for piece in prepared.pieces:
        x0, y0, w, h = piece.region
        whole = (w, h) == (width, height)
        tensor, box = letterbox(image if whole else np.ascontiguousarray(image[y0 : y0 + h, x0 : x0 + w]), input_size)
        prepared.tensors.append(tensor)
        prepared.boxes.append(box)
    return prepared


def detect_images(
    model: Model,
    images: Sequence[Any],
    settings: DetectionSettings | None = None,
    *,
    channels: str = "rgb",
    model_threads: int | None = 1,
    **options: Any,
) -> list[list[Detection]]:
    """Detect faces in each image: letterbox, run the model in batches, decode, weighted NMS, undo the letterbox.

    ``model``: a runner, or a torch module / callable taking ``(B, 3, S, S)`` float32 RGB in [-1, 1] (cast to the
    module's dtype and device) and returning ``(regressors (B, N, 16), classificators (B, N, 1))`` raw values.
    ``images``: anything ``as_rgb`` takes (paths, bytes, Pillow images, uint8 arrays and tensors; ``channels`` for
    arrays and tensors). ``settings`` (``DetectionSettings``; ``options``: its fields as keywords, applied to it):
    ``variant`` (None: the model's own), ``min_score`` (None: the variant's), ``iou_threshold``, ``batch_size``,
    the scales and decoding options; ``settings.model`` is not used here (``model`` runs). Detections with score >=
    ``min_score`` are kept, as MediaPipe does; each image's list is in descending score order. A torch model runs
    with ``model_threads`` intra-op threads (None: the caller's setting), as in ``stream_files``: the thread count
    can change the last bits of a convolution's sums, and both give the numbers of ``detect``.
    """
    runner, variant, settings = _setup(model, settings, options)
    batch_size = settings.batch_size
    images = list(images)
    results: list[list[Detection]] = []
    for start in range(0, len(images), batch_size):
        prepared = [_prepare_any(i, channels, variant, settings) for i in images[start : start + batch_size]]
        with torch_threads(torch_thread_count(runner, model_threads)):
            results += detect_prepared(runner, prepared, variant, settings.score_for(variant), settings.iou_threshold,
                                       batch_size)
    return results


def _prepare_any(image: Any, channels: str, variant: Variant, settings: DetectionSettings) -> Prepared:
    """Any image ``as_rgb`` takes as model inputs at the scales of ``settings``; an encoded file (path, bytes, file
    object) is decoded with ``load_reduced`` so that reduced decoding (``settings.decode_side_for``) applies."""
    long_side = settings.decode_side_for(variant)
    if long_side is not None and (isinstance(image, (str, Path, bytes, bytearray, memoryview))
                                  or callable(getattr(image, "read", None))):
        array, (width, height) = load_reduced(image, long_side)
        return prepare_image(array, variant.input_size, settings.scales_for(variant, width, height), width)
    array = as_rgb(image, channels)
    height, width = array.shape[:2]
    return prepare_image(array, variant.input_size, settings.scales_for(variant, width, height))


@dataclass(frozen=True)
class FileResult:
    """One file of ``stream_files``: ``detections`` (None when it could not be read: ``error`` says why), the
    image's full upright ``width`` and ``height`` in pixels (0 when unreadable; what the 0..1 coordinates are
    relative to), and with ``keep_images`` the decoded ``(h, w, 3)`` uint8 RGB ``image`` (smaller than
    ``width`` x ``height`` with ``fast_decode``)."""

    path: Path
    width: int
    height: int
    detections: list[Detection] | None
    error: ImageError | None = None
    image: np.ndarray | None = field(default=None, repr=False)


def stream_files(
    model: Model,
    paths: Sequence[str | Path],
    settings: DetectionSettings | None = None,
    *,
    workers: int | None = None,
    model_threads: int | None = 1,
    keep_images: bool = False,
    **options: Any,
) -> Iterator[FileResult]:
    """``detect_images`` for many files, streamed: yields a ``FileResult`` per path, in the order of ``paths``.

    ``settings`` and ``options`` as ``detect_images``; they are checked at the call (``OptionsError``); the files
    are read as the iterator is consumed. ``workers`` threads (default: one per CPU core) decode and prepare the
    next images while the model runs (Pillow and numpy release the GIL). Memory is bounded whatever the number and
    size of the files: a loader hands on the model inputs and the image's size, not the decoded image, at most two
    batches ahead; the decoded images are kept only with ``keep_images`` (for annotations or crops): a batch's, up
    to about ``KEPT_IMAGE_BYTES`` of them (batches of big photos are then smaller), and one per worker being
    prepared. A file that cannot be read yields a result with its ``ImageError`` and the run goes on.

    Scales (``settings.scales_for``, ``detection.scales``): each picture whole and, where small faces need them,
    on overlapping tiles, all candidates merged. Reduced decoding (``settings.decode_side_for``): JPEGs are decoded
    with DCT scaling to the smallest size that keeps twice the finest level's model resolution; not bit-exact with
    MediaPipe, which decodes in full (``exact``; docs/every_face.md).

    For a torch model, torch uses ``model_threads`` intra-op threads while the iterator computes (None: leave the
    setting alone), and the caller's own setting again whenever the caller's code runs (between items, after the
    end): the loaders already keep the cores busy, and OpenMP threads that spin beside them slow everything down
    (docs/bench.md, *Design figures*).
    """
    import os

    runner, variant, settings = _setup(model, settings, options)
    batch_size = settings.batch_size
    workers = workers or os.cpu_count() or 1
    threads = torch_thread_count(runner, model_threads)
    long_side = settings.decode_side_for(variant)
    budget = DecodeBudget(DECODE_BUDGET_BYTES)

    def prepare(path: Path):
        try:
            image, (width, height) = load_reduced(path, long_side, budget)
        except ImageError as exc:
            return FileResult(path, 0, 0, None, exc), None
        prepared = prepare_image(image, variant.input_size, settings.scales_for(variant, width, height), width)
        return FileResult(path, width, height, None, None, image if keep_images else None), prepared

    # Whole decoded images, or a tiled image's many inputs, are held by few files at a time.
    window = max(2, workers) if keep_images or settings.multi_scale else 2 * batch_size
    stream = _stream(runner, [Path(p) for p in paths], prepare, variant, settings.score_for(variant),
                     settings.iou_threshold, batch_size, workers, window, keep_images)
    return with_torch_threads(stream, threads)


def detect_files(
    model: Model,
    paths: Sequence[str | Path],
    settings: DetectionSettings | None = None,
    *,
    workers: int | None = None,
    model_threads: int | None = 1,
    **options: Any,
) -> Iterator[tuple[Path, np.ndarray | ImageError, list[Detection] | None]]:
    """``stream_files`` with the decoded images: yields ``(path, image, detections)`` in the order of ``paths``,
    ``(path, ImageError, None)`` for a file that cannot be read. Holds at most two decoded images per worker."""
    results = stream_files(model, paths, settings, workers=workers, model_threads=model_threads, keep_images=True,
                           **options)  # options checked here
    return ((r.path, r.image if r.error is None else r.error, r.detections) for r in results)


def _stream(runner, paths, prepare, variant, min_score, iou_threshold, batch_size, workers, window, keep_images):
    """``stream_files``' loop: the loaders keep ``window`` files prepared ahead of the model. A batch is up to
    ``batch_size`` model inputs (an unreadable file takes one place, so batches are those of ``detect`` on the same
    paths), and holds at most about ``KEPT_IMAGE_BYTES`` of decoded images (at least one image)."""
    import collections
    from concurrent.futures import ThreadPoolExecutor

    with reused_decode_memory(), ThreadPoolExecutor(max_workers=workers, thread_name_prefix="blazeconv-load") as pool:
        pending: collections.deque = collections.deque()
        upcoming = iter(paths)

        def refill() -> None:
            for path in itertools.islice(upcoming, max(0, window - len(pending))):
                pending.append(pool.submit(prepare, path))

        refill()
        while pending:
            batch, used, kept = [], 0, 0
            while pending and used < batch_size and (not batch or used + _places(pending[0]) <= batch_size) \
                    and kept < KEPT_IMAGE_BYTES:
                batch.append(pending.popleft().result())
                used += max(1, len(batch[-1][1].tensors) if batch[-1][1] is not None else 1)
                kept += batch[-1][0].image.nbytes if batch[-1][0].image is not None else 0
                refill()
            readable = [prepared for _, prepared in batch if prepared is not None]
            found = iter(detect_prepared(runner, readable, variant, min_score, iou_threshold, batch_size))
            for result, prepared in batch:
                yield result if prepared is None else dataclasses.replace(result, detections=next(found))


def _places(future) -> int:
    """The places in a batch the next file takes: its model inputs once prepared (1 while it is still loading)."""
    if not future.done():
        return 1
    prepared = future.result()[1]
    return max(1, len(prepared.tensors)) if prepared is not None else 1


def detect_prepared(
    runner: Runner,
    prepared: Sequence[Prepared],
    variant: Variant,
    min_score: float,
    iou_threshold: float,
    batch_size: int | None = None,
) -> list[list[Detection]]:
    """Run the model inputs of several images through ``runner`` (``batch_size`` inputs per call, None: all in one)
    and post-process each image: its tiles' candidates merged by weighted NMS."""
    if not prepared:
        return []
    anchors = _anchors(variant.anchor_options)
    tensors = [tensor for image in prepared for tensor in image.tensors]
    step = batch_size or len(tensors)
    outputs = [_run(runner, tensors[i : i + step], variant, len(anchors)) for i in range(0, len(tensors), step)]
    regressors = np.concatenate([o[0] for o in outputs])
    classificators = np.concatenate([o[1] for o in outputs])
    results, start = [], 0
    for image in prepared:
        count = len(image.tensors)
        raw, logits = regressors[start : start + count], classificators[start : start + count]
        start += count
        if count == 1:  # the whole image only: MediaPipe's pipeline as it is
            results.append(_detections_from_outputs(raw[0], logits[0], anchors, variant.input_size, image.boxes[0],
                                                    min_score, iou_threshold))
        else:
            results.append(_merge_tiles(raw, logits, anchors, variant.input_size, image, min_score, iou_threshold))
    return results


def _run(runner: Any, tensors: list[np.ndarray], variant: Variant, num_anchors: int) -> tuple[np.ndarray, np.ndarray]:
    """One forward pass: ``(B, 3, S, S)`` float32 -> ``(B, N, 16)``, ``(B, N, 1)`` float32, shapes checked."""
    regressors, classificators = runner.run(np.stack(tensors))
    regressors = np.asarray(regressors, np.float32)
    classificators = np.asarray(classificators, np.float32)
    expected = (len(tensors), num_anchors)
    if regressors.shape[:2] != expected or classificators.shape[:2] != expected:
        raise OptionsError(
            f"model outputs {regressors.shape} and {classificators.shape} do not fit variant {variant.name!r} "
            f"({num_anchors} anchors, batch {len(tensors)})"
        )
    return regressors, classificators


def _merge_tiles(raw, logits, anchors, input_size, image: Prepared, min_score, iou_threshold) -> list[Detection]:
    """Each input's candidates (score >= ``min_score``, before NMS) in 0..1 of the whole image
    (``tiling.to_picture``), each piece's own merged with all the others' (``merging.merge``)."""
    width, height = image.size
    found = []
    for regressors, classificators, box, piece in zip(raw, logits, image.boxes, image.pieces):
        boxes, keypoints, scores = candidates(regressors, classificators, anchors, input_size, min_score)
        boxes, keypoints = remove_letterbox(boxes, keypoints, box)
        found.append((*to_picture(boxes, keypoints, piece.region, width, height), scores))
    boxes, keypoints, scores = merge(found, image.pieces, width, height, iou_threshold)
    return [Detection(s, b, k.tolist()) for s, b, k in zip(scores.tolist(), boxes.tolist(), keypoints)]


def detect_image(
    model: Model,
    image: Any,
    settings: DetectionSettings | None = None,
    *,
    channels: str = "rgb",
    **options: Any,
) -> list[Detection]:
    """``detect_images`` for one image (anything ``as_rgb`` takes: a path, ``(H, W, 3)`` uint8 RGB, ...)."""
    return detect_images(model, [image], settings, channels=channels, **options)[0]


def _detections_from_outputs(
    raw: np.ndarray,
    logits: np.ndarray,
    anchors: np.ndarray,
    input_size: int,
    box: Letterbox,
    min_score: float,
    iou_threshold: float,
) -> list[Detection]:
    """One image's ``(N, 16)`` and ``(N, 1)`` raw outputs to its final detections."""
    boxes, keypoints, scores = decode_and_suppress(raw, logits, anchors, input_size, min_score, iou_threshold)
    boxes, keypoints = remove_letterbox(boxes, keypoints, box)
    return [Detection(s, b, k.tolist()) for s, b, k in zip(scores.tolist(), boxes.tolist(), keypoints)]
