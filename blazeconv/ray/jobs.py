"""Runs on the connected cluster in the forms of ``blazeconv.detection``: ``detect_paths`` (rows in order),
``stream_files`` / ``detect_files`` (photos by the model actors), ``stream_videos`` (a task per video)."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..detection.pipeline import (
    FileResult,
)
from ..detection.settings import DetectionSettings
from ..errors import BlazeconvError, ImageError
from .actor import DetectFaces, _assigned_cpus
from .cluster import map_batches_options, require_ray

log = logging.getLogger(__name__)


def detect_paths(
    paths: Sequence[str | Path],
    model: str | Path | None = None,
    *,
    settings: DetectionSettings | None = None,
    actors: int | None = None,
    actor_cpus: float = 1.0,
    **options: Any,
) -> Iterator[dict]:
    """``DetectFaces`` over ``paths`` on the connected Ray cluster; yields its rows in the order of ``paths``.

    Each row: ``{"path", "width", "height", "detections": [Detection.to_dict(), ...], "error"}`` (``error`` None, or
    None ``width``/``height``/``detections`` and the message ``detect`` gives). The files are read by the workers, so
    on a cluster they must be on a file system every node sees (or be URIs). ``actors`` and ``actor_cpus``: see
    ``map_batches_options``; ``model``, ``settings`` and ``options``: see ``DetectFaces``.
    Ray's progress goes to stderr (logging).
    """
    ray = require_ray()
    import pyarrow as pa

    from ..io import looks_like_url

    settings = _portable(DetectionSettings.of(settings, model=model, **options))
    if not paths:
        return
    batch_size = settings.batch_size
    options = map_batches_options(actors, actor_cpus, batch_size, reserve_cpus=0)  # the input is in memory: no reads
    # One block per batch_size consecutive paths: the model then sees the very batches ``detect`` gives it (the
    # full-range models' float32 outputs can move by one unit in the last place with the batch's make-up).
    given = [str(p) for p in paths]
    readable = [p if looks_like_url(p) else os.path.abspath(p) for p in given]  # workers run in other folders
    blocks = [
        pa.table({"index": list(range(start, min(start + batch_size, len(paths)))),
                  "path": readable[start : start + batch_size]})
        for start in range(0, len(paths), batch_size)
    ]
    mapped = ray.data.from_arrow(blocks).map_batches(DetectFaces, fn_constructor_kwargs={"settings": settings},
                                                     **options)
    mapped.context.execution_options.preserve_order = True  # this dataset's own copy of the DataContext
    try:
        for expected, row in enumerate(mapped.iter_rows()):
            if row["index"] != expected:  # preserve_order guarantees it; a silent mix-up would be worse than a stop
                raise RuntimeError(f"Ray returned row {row['index']} where row {expected} was due")
            path, error = given[expected], row["error"]
            if error is not None and error.startswith(readable[expected]):  # name the file as it was given
                error = path + error[len(readable[expected]) :]
            detections = None if row["detections"] is None else json.loads(row["detections"])
            yield {"path": path, "width": row["width"], "height": row["height"], "detections": detections, "error": error}
    except ray.exceptions.RayError as exc:
        raise _cause(exc) from None


def _portable(settings: DetectionSettings) -> DetectionSettings:
    """``settings`` with the model as the workers, in folders of their own, find it (``ModelSource.portable``): a
    shipped name or a file's absolute path; a module or runner, which cannot travel: ``OptionsError``."""
    from ..sources import resolve

    return settings.replace(model=resolve(settings.model).portable())


def stream_files(paths: Sequence[str | Path], model: str | Path | None = None, **options: Any) -> Iterator[FileResult]:
    """``detect_paths`` in the form of ``blazeconv.detection.stream_files``: a ``FileResult`` per path, in order (no
    image: the pixels stay on the workers)."""
    from ..detection import Detection

    for row in detect_paths(paths, model, **options):
        path = Path(row["path"])
        if row["error"] is not None:
            yield FileResult(path, 0, 0, None, ImageError(row["error"]))
        else:
            faces = [Detection(d["score"], d["box"], d["keypoints"]) for d in row["detections"]]
            yield FileResult(path, row["width"], row["height"], faces)


def detect_files(
    paths: Sequence[str | Path], model: str | Path | None = None, **options: Any
) -> Iterator[tuple[Path, np.ndarray | ImageError, list | None]]:
    """``detect_paths`` in the form of ``blazeconv.detection.detect_files``: ``(path, image, detections)`` in order.

    ``image`` is an ``ImageError`` for a file that could not be read (``detections`` None), else an empty ``(H, W, 0)``
    uint8 array that carries the image's size: the pixels stay on the workers. ``detections``: ``Detection`` records.
    """
    from ..detection import Detection

    for row in detect_paths(paths, model, **options):
        path = Path(row["path"])
        if row["error"] is not None:
            yield path, ImageError(row["error"]), None
        else:
            faces = [Detection(d["score"], d["box"], d["keypoints"]) for d in row["detections"]]
            yield path, np.empty((row["height"], row["width"], 0), np.uint8), faces


def stream_videos(paths: Sequence[str | Path], model: str | Path | None = None, *,
                  settings: DetectionSettings | None = None, after: Sequence[int | None] | None = None,
                  task_cpus: float = 1.0, **options: Any) -> Iterator[list]:
    """Each video of ``paths`` read and detected by a Ray task of its own (all submitted at once, running as the
    cluster's CPUs allow; every worker must be able to read the files); yields, per video in the order of ``paths``,
    its results as ``detection.video.stream_video`` gives them (``FrameResult`` records without images), ending with
    a ``FileResult`` holding the ``ImageError`` of a video that could not be read or stopped early. ``after``: per
    video, the last frame a previous run recorded (skipped). ``model``, ``settings`` and ``options``: see
    ``DetectFaces`` (``settings.sampling`` chooses the frames)."""
    import ray

    settings = _portable(DetectionSettings.of(settings, model=model, **options))
    task = ray.remote(num_cpus=task_cpus)(_video_task)
    after = list(after) if after is not None else [None] * len(paths)
    pending = [task.remote(str(path), settings, skip) for path, skip in zip(paths, after)]
    done = 0
    try:
        for ref in pending:
            yield ray.get(ref)
            done += 1
    except ray.exceptions.RayError as exc:
        raise _cause(exc) from None
    finally:
        for ref in pending[done:]:  # an interrupted run: the videos not yet collected are not computed
            try:
                ray.cancel(ref)
            except Exception as exc:  # already finished, or the cluster is going away
                log.debug("cancel: %s", exc)


def _video_task(path: str, settings: DetectionSettings, after: int | None) -> list:
    """One video on a Ray worker: ``stream_video``'s results, a ``FileResult`` with its error last if it failed."""
    from ..detection.video import stream_video

    runner = settings.make_runner(threads=_assigned_cpus())
    results = []
    try:
        results += stream_video(runner, path, settings, after=after)
    except ImageError as exc:
        results.append(FileResult(Path(path), 0, 0, None, exc))
    return results


def _cause(exc: BaseException) -> BaseException:
    """The ``BlazeconvError`` behind a Ray error (an actor that could not load its model), else a one-line error.

    A task's error carries the exception itself (``cause``); an actor that died in ``__init__`` only its traceback
    as text, whose last ``blazeconv.errors.X: message`` line is rebuilt into that error.
    """
    from .. import errors

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, BlazeconvError):
            return seen
        seen = getattr(seen, "cause", None) or seen.__cause__
    named = re.findall(r"blazeconv\.errors\.(\w+): ([^\n]*)", str(exc))
    kind = getattr(errors, named[-1][0], None) if named else None
    if isinstance(kind, type) and issubclass(kind, BlazeconvError):
        return kind(named[-1][1].strip())
    return BlazeconvError(f"the Ray job failed: {' '.join(str(exc).split())[:500]}")
