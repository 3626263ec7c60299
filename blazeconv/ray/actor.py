"""``DetectFaces``: the ``Dataset.map_batches`` class, one model per actor, one output row per input row."""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..detection.images import DecodeBudget, load_reduced
from ..detection.pipeline import (
    DECODE_BUDGET_BYTES,
    Prepared,
    detect_prepared,
    prepare_image,
)
from ..detection.settings import DetectionSettings
from ..errors import ImageError, OptionsError

log = logging.getLogger(__name__)

INPUT_COLUMNS = ("image", "bytes", "path")
"""The columns ``DetectFaces`` reads an image from, in order of preference."""


def output_schema(nested: bool = False):
    """The Arrow schema of ``DetectFaces``' output, given explicitly so that every block agrees.

    (Inferred types would differ between a batch with faces and one without: an empty list has no element type.)
    """
    import pyarrow as pa

    if nested:
        detection = pa.struct(
            [("score", pa.float64()), ("box", pa.list_(pa.float64())), ("keypoints", pa.list_(pa.list_(pa.float64())))]
        )
        detections = pa.list_(detection)
    else:
        detections = pa.string()
    return pa.schema(
        [("path", pa.string()), ("width", pa.int64()), ("height", pa.int64()), ("detections", detections), ("error", pa.string())]
    )


class DetectFaces:
    """A ``Dataset.map_batches`` class: one model per actor, one output row per input row (see the module docstring).

    ``settings``: a ``DetectionSettings`` (or its fields as keywords, applied to it: ``model``, ``variant``,
    ``min_score``, ``backend``, ``batch_size``, ``exact``, ``min_face``, ...), as for ``FaceDetector``; its
    ``model`` is a shipped variant name (``"short_range"``), or a ``.tflite``, ``.pth`` or ``.onnx`` path readable on
    every worker. ``nested``: the ``detections`` column as Arrow structs instead of a JSON string; ``threads``: the
    model's intra-op threads and this actor's image decoders (None: the CPUs Ray gave the actor, at least 1). Each row is decoded and
    prepared for the model at once, so an actor holds the model inputs of a batch, not its decoded images. Bad
    options raise ``OptionsError`` when the actor starts (and fail the job: every row would fail alike).
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        settings: DetectionSettings | None = None,
        nested: bool = False,
        threads: int | None = None,
        **options: Any,
    ):
        settings = DetectionSettings.of(settings, model=None if model is None else str(model), **options)
        self.threads = threads or _assigned_cpus()
        self.nested = nested
        self.schema = output_schema(nested)
        self.budget = DecodeBudget(DECODE_BUDGET_BYTES)  # the decoder threads' pixels at once
        self.detector = _load_detector(settings, self.threads)

    def __call__(self, batch: dict[str, np.ndarray]):
        """``batch``: columns of equal length (numpy); returns a ``pyarrow.Table`` with ``output_schema`` + others."""
        import pyarrow as pa

        source = next((c for c in INPUT_COLUMNS if c in batch), None)
        if source is None:
            raise OptionsError(f"DetectFaces needs an 'image', 'bytes' or 'path' column, got {sorted(batch)}")
        paths = [None if p is None else str(p) for p in batch["path"]] if "path" in batch else [None] * len(batch[source])
        decoded = self._decode(source, batch[source], paths)
        readable = [item for item in decoded if not isinstance(item, str)]
        detector = self.detector
        found = iter(detect_prepared(detector.runner, [prepared for prepared, _ in readable], detector.variant,
                                     detector.min_score, detector.iou_threshold, detector.batch_size))
        columns: dict[str, list] = {name: [] for name in self.schema.names}
        for path, item in zip(paths, decoded):
            error = isinstance(item, str)
            faces = None if error else [d.to_dict() for d in next(found)]
            columns["path"].append(path)
            columns["width"].append(None if error else int(item[1][0]))
            columns["height"].append(None if error else int(item[1][1]))
            columns["detections"].append(faces if self.nested or faces is None else json.dumps(faces))
            columns["error"].append(item if error else None)
        table = pa.Table.from_pydict(columns, schema=self.schema)
        for name in batch:
            if name not in INPUT_COLUMNS and name not in self.schema.names:
                table = table.append_column(name, pa.array(list(batch[name])))
        return table

    def _decode(self, source: str, values: Any, paths: list[str | None]) -> list[tuple[Prepared, tuple[int, int]] | str]:
        """Each value as model inputs (``Prepared``) and the image's full ``(width, height)``, or the message of the
        ``ImageError`` that refused it."""
        from ..detection import as_rgb

        detector = self.detector
        settings, variant = detector.settings, detector.variant
        long_side = settings.decode_side_for(variant)

        def one(value, path):
            try:
                if source == "image":
                    image = as_rgb(np.asarray(value))
                    size = (image.shape[1], image.shape[0])
                elif source == "bytes":
                    image, size = _load_bytes(value, path, long_side, self.budget)
                else:
                    image, size = _load_path(str(value), long_side, self.budget)
                scales = settings.scales_for(variant, *size)
                return prepare_image(image, variant.input_size, scales, size[0]), size
            except ImageError as exc:
                return f"{path}: {exc}" if source == "image" and path else str(exc)

        if self.threads > 1 and len(paths) > 1:
            with ThreadPoolExecutor(self.threads, thread_name_prefix="blazeconv-decode") as pool:
                return list(pool.map(one, values, paths))
        return [one(v, p) for v, p in zip(values, paths)]


def _assigned_cpus() -> int:
    """The CPUs Ray gave the current actor (rounded down, at least 1); 1 outside Ray."""
    try:
        import ray

        if ray.is_initialized():
            return max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))
    except Exception as exc:  # a Ray without a runtime context here: the safe default
        log.debug("no assigned resources: %s", exc)
    return 1


def _load_detector(settings: DetectionSettings, threads: int):
    """A ``FaceDetector`` of ``settings`` (its runner with ``threads`` intra-op threads) for one actor."""
    from ..detector import FaceDetector
    from ..tuning import dedicate_torch_threads

    runner = settings.make_runner(threads=threads)
    dedicate_torch_threads(runner, threads)  # the actor's process is the runner's own
    return FaceDetector(settings=settings.replace(model=runner))


def _load_bytes(value: Any, path: str | None, long_side=None, budget=None) -> tuple[np.ndarray, tuple[int, int]]:
    """Encoded image bytes -> RGB and full size with ``detect``'s loader (``load_reduced``); errors name ``path`` as
    ``detect`` does."""
    import io

    stream = io.BytesIO(bytes(value))
    stream.name = path or "<bytes>"
    return load_reduced(stream, long_side, budget)


def _load_path(path: str, long_side=None, budget=None) -> tuple[np.ndarray, tuple[int, int]]:
    """A local path with ``detect``'s loader; a ``scheme://`` URI through ``pyarrow.fs`` (S3, GCS, ...)."""
    from ..io import looks_like_url

    if not looks_like_url(path):
        return load_reduced(path, long_side, budget)
    import pyarrow.fs

    try:
        filesystem, inner = pyarrow.fs.FileSystem.from_uri(path)
        with filesystem.open_input_file(inner) as stream:
            data = stream.read()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise ImageError(f"{path}: cannot read: {' '.join(str(exc).split())}") from None
    return _load_bytes(data, path, long_side, budget)
