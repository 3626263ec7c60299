"""The detection pipeline around a BlazeFace model, step for step as MediaPipe's face graphs run it.

image (file, bytes, Pillow image, array, tensor) -> ``as_rgb`` / ``load_image`` -> ``letterbox``
(ImageToTensorCalculator) -> runner -> ``decode`` (TensorsToDetectionsCalculator) -> ``weighted_nms``
(NonMaxSuppressionCalculator) -> ``remove_letterbox`` (DetectionLetterboxRemovalCalculator) -> ``Detection`` records in
0..1 of the original image.

The model step is a *runner*: any object with ``run(batch)``, ``batch`` a numpy ``(B, 3, S, S)`` float32 RGB array in
[-1, 1], returning numpy ``(regressors (B, N, 16), classificators (B, N, 1))`` (the TFLite outputs' layout), and a
``variant`` attribute (a ``Variant``, or None when the caller names it). A torch module (or any callable taking and
returning torch tensors) is wrapped in ``backends.torch.TorchRunner``; with any other runner this module never imports
torch. The runner protocol is written down in ``backends.runner.Runner``.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..anchors import AnchorOptions, generate_anchors
from ..backends.runner import Runner
from ..errors import ImageError, OptionsError
from ..sources import is_runner
from ..variants import NMS_IOU_THRESHOLD, Variant, fit_variant, get_variant
from .images import as_rgb, load_image
from .letterboxing import Letterbox, letterbox, remove_letterbox
from .postprocess import decode_and_suppress
from .records import Detection

Model = Any
"""A runner (``run(batch)`` on numpy, see the module docstring), a torch module, or a callable on torch tensors."""


@functools.lru_cache(maxsize=8)
def _anchors(options: AnchorOptions) -> np.ndarray:
    anchors = generate_anchors(options)
    anchors.setflags(write=False)
    return anchors


def check_thresholds(min_score: float | None, iou_threshold: float) -> None:
    """``OptionsError`` unless ``min_score`` (None: the variant's) and ``iou_threshold`` are numbers in [0, 1]."""
    for name, value in (("min_score", min_score), ("iou_threshold", iou_threshold)):
        if value is None and name == "min_score":
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise OptionsError(f"{name} must be a number in [0, 1], got {value!r}") from None
        if not 0.0 <= number <= 1.0:  # NaN fails this too
            raise OptionsError(f"{name} must be in [0, 1], got {value!r}")


def check_batch_size(batch_size: int) -> int:
    """``batch_size`` when it is a positive integer, else ``OptionsError``."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise OptionsError(f"batch_size must be a positive integer, got {batch_size!r}")
    return batch_size


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


def _setup(model, variant, min_score, iou_threshold, batch_size):
    """The runner, variant and thresholds of one call, every option checked before any work."""
    check_thresholds(min_score, iou_threshold)
    check_batch_size(batch_size)
    runner = as_runner(model)
    variant = resolve_variant(runner, variant)
    min_score = variant.min_score if min_score is None else float(min_score)
    return runner, variant, min_score, float(iou_threshold)


def detect_images(
    model: Model,
    images: Sequence[Any],
    variant: Variant | str | None = None,
    min_score: float | None = None,
    iou_threshold: float = NMS_IOU_THRESHOLD,
    batch_size: int = 32,
    channels: str = "rgb",
    model_threads: int | None = 1,
) -> list[list[Detection]]:
    """Detect faces in each image: letterbox, run the model in batches, decode, weighted NMS, undo the letterbox.

    ``model``: a runner, or a torch module / callable taking ``(B, 3, S, S)`` float32 RGB in [-1, 1] (cast to the
    module's dtype and device) and returning ``(regressors (B, N, 16), classificators (B, N, 1))`` raw values.
    ``images``: anything ``as_rgb`` takes (paths, bytes, Pillow images, uint8 arrays and tensors; ``channels`` for
    arrays and tensors). ``variant``: a ``Variant`` or its name (input size, anchors, default ``min_score``); None:
    the model's own ``variant``. Detections with score >= ``min_score`` are kept, as MediaPipe does; each image's
    list is in descending score order. Thresholds outside [0, 1] or NaN: ``OptionsError``. A torch model runs with
    ``model_threads`` intra-op threads (None: the caller's setting), as in ``detect_files``: the thread count can
    change the last bits of a convolution's sums, and both give the numbers of ``detect``.
    """
    runner, variant, min_score, iou_threshold = _setup(model, variant, min_score, iou_threshold, batch_size)
    images = list(images)
    results: list[list[Detection]] = []
    for start in range(0, len(images), batch_size):
        arrays = [as_rgb(i, channels) for i in images[start : start + batch_size]]
        prepared = [letterbox(a, variant.input_size) for a in arrays]
        with torch_threads(model_threads if getattr(runner, "uses_torch", False) else None):
            results += _detect_prepared(runner, prepared, variant, min_score, iou_threshold)
    return results


def detect_files(
    model: Model,
    paths: Sequence[str | Path],
    variant: Variant | str | None = None,
    min_score: float | None = None,
    iou_threshold: float = NMS_IOU_THRESHOLD,
    batch_size: int = 32,
    workers: int | None = None,
    model_threads: int | None = 1,
) -> Iterator[tuple[Path, np.ndarray | ImageError, list[Detection] | None]]:
    """``detect_images`` for many files, streamed: yields ``(path, image, detections)`` in the order of ``paths``.

    Options are checked at the call (``OptionsError``); the files are read as the iterator is consumed.
    ``workers`` threads (default: one per CPU core) decode and letterbox the next images while the model runs
    (Pillow and numpy release the GIL), at most two batches ahead, so memory stays bounded however many files
    there are. A file that cannot be read yields ``(path, ImageError, None)`` and the run goes on.

    For a torch model, torch uses ``model_threads`` intra-op threads while the iterator computes (None: leave the
    setting alone), and the caller's own setting again whenever the caller's code runs (between items, after the
    end): the loaders already keep the cores busy, and OpenMP threads that spin beside them slow everything down
    (docs/bench.md, *Design figures*).
    """
    import os

    runner, variant, min_score, iou_threshold = _setup(model, variant, min_score, iou_threshold, batch_size)
    workers = workers or os.cpu_count() or 1
    threads = model_threads if getattr(runner, "uses_torch", False) else None

    def prepare(path: Path):
        try:
            image = load_image(path)
        except ImageError as exc:
            return exc, None
        return image, letterbox(image, variant.input_size)

    stream = _stream(runner, [Path(p) for p in paths], prepare, variant, min_score, iou_threshold, batch_size, workers)
    return _with_model_threads(stream, threads)


def _with_model_threads(stream: Iterator, threads: int | None) -> Iterator:
    """Yield ``stream``'s items; torch has ``threads`` threads while ``stream`` computes, the caller's otherwise."""
    try:
        while True:
            with torch_threads(threads):
                try:
                    item = next(stream)
                except StopIteration:
                    return
            yield item
    finally:
        stream.close()


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Context: torch's intra-op thread count is ``count`` inside (None: untouched, torch not imported), what it was
    before outside."""
    if count is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    if before != count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if before != count:
            torch.set_num_threads(before)


def _stream(runner, paths, prepare, variant, min_score, iou_threshold, batch_size, workers):
    """``detect_files``' loop: the loaders stay up to two batches ahead of the model."""
    import collections
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="blazeconv-load") as pool:
        pending: collections.deque = collections.deque()
        upcoming = iter(paths)
        for path in itertools.islice(upcoming, 2 * batch_size):
            pending.append((path, pool.submit(prepare, path)))
        while pending:
            batch = [pending.popleft() for _ in range(min(batch_size, len(pending)))]
            for path in itertools.islice(upcoming, len(batch)):
                pending.append((path, pool.submit(prepare, path)))
            loaded = [(path, *future.result()) for path, future in batch]
            readable = [(image, prepared) for _, image, prepared in loaded if prepared is not None]
            found = iter(_detect_prepared(runner, [p for _, p in readable], variant, min_score, iou_threshold))
            for path, image, prepared in loaded:
                yield path, image, (next(found) if prepared is not None else None)


def _detect_prepared(
    runner: Any,
    prepared: Sequence[tuple[np.ndarray, Letterbox]],
    variant: Variant,
    min_score: float,
    iou_threshold: float,
) -> list[list[Detection]]:
    """Run one batch of letterboxed ``(3, S, S)`` tensors through ``runner`` and post-process each image."""
    if not prepared:
        return []
    anchors = _anchors(variant.anchor_options)
    tensors, boxes = zip(*prepared)
    regressors, classificators = runner.run(np.stack(tensors))  # (B, 3, S, S) float32 -> (B, N, 16), (B, N, 1)
    regressors = np.asarray(regressors, np.float32)
    classificators = np.asarray(classificators, np.float32)
    expected = (len(tensors), len(anchors))
    if regressors.shape[:2] != expected or classificators.shape[:2] != expected:
        raise OptionsError(
            f"model outputs {regressors.shape} and {classificators.shape} do not fit variant {variant.name!r} "
            f"({len(anchors)} anchors, batch {len(tensors)})"
        )
    return [
        _detections_from_outputs(raw, logits, anchors, variant.input_size, box, min_score, iou_threshold)
        for raw, logits, box in zip(regressors, classificators, boxes)
    ]


def detect_image(
    model: Model,
    image: Any,
    variant: Variant | str | None = None,
    min_score: float | None = None,
    iou_threshold: float = NMS_IOU_THRESHOLD,
    channels: str = "rgb",
) -> list[Detection]:
    """``detect_images`` for one image (anything ``as_rgb`` takes: a path, ``(H, W, 3)`` uint8 RGB, ...)."""
    return detect_images(model, [image], variant, min_score, iou_threshold, channels=channels)[0]


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


# -------------------------------------------------------------------------------------------- output
