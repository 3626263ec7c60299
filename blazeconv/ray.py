"""Face detection as a Ray Data stage: the same answers as ``blazeconv detect``, on one machine or a cluster.

A pipeline (``pip install 'blazeconv[ray]'``)::

    import ray
    from blazeconv.ray import DetectFaces, map_batches_options

    ds = ray.data.read_binary_files("photos/", include_paths=True)            # columns: bytes, path
    ds = ds.map_batches(DetectFaces, fn_constructor_kwargs={"model": "short_range"}, **map_batches_options())
    ds.write_parquet("faces/")                                                 # one row per image

``DetectFaces`` loads the model once per actor and takes batches holding one of these columns (the first present wins):

- ``image``: uint8 ``(H, W, 3)`` RGB arrays, as ``ray.data.read_images(..., mode="RGB", include_paths=True)`` gives.
  Ray decodes those files itself (in its read tasks, without EXIF orientation, and one corrupt file fails the read);
- ``bytes``: the encoded files, as ``ray.data.read_binary_files(..., include_paths=True)`` gives, decoded here with
  ``detect``'s own loader (EXIF orientation applied): the form that gives exactly ``detect``'s answers;
- ``path``: file paths (or ``scheme://`` URIs that ``pyarrow.fs`` opens: ``s3://``, ``gs://``, ``file://``), read here.

Each output row (``output_schema``): ``path`` (string; null when the batch had no path column), ``width`` and
``height`` (int64 pixels, of the upright image), ``detections`` and ``error`` (string: why this image could not be
read, as ``detect`` words it; null when it was). A row that cannot be decoded (corrupt bytes, a missing file) becomes
a row with ``error`` set and null ``width``, ``height`` and ``detections``; it never fails the job. Other input
columns (an id, a label) are carried through unchanged.

``detections`` is, by default, a JSON string: the list of ``detect --json`` entries (``Detection.to_dict()``:
``{"score", "box": [xmin, ymin, xmax, ymax], "keypoints": [[x, y] x 6]}``, 0..1 of the image). A string survives
every sink bit for bit: ``write_json`` renders float columns with pandas' ``to_json``, which keeps 10 significant
digits (measured: 0.12345678901234568 comes back as 0.123456789), while the string holds Python's shortest exact
repr. ``nested=True`` gives a typed Arrow column instead (list of struct ``score: double, box: list<double>,
keypoints: list<list<double>>``) for Parquet readers that query into it; it is exact through ``write_parquet`` but
not through ``write_json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .detection.images import DecodeBudget, load_reduced
from .detection.pipeline import (
    DECODE_BUDGET_BYTES,
    FileResult,
    Prepared,
    detect_prepared,
    prepare_image,
)
from .detection.settings import DetectionSettings
from .errors import BlazeconvError, ImageError, OptionsError, require

log = logging.getLogger(__name__)

INPUT_COLUMNS = ("image", "bytes", "path")
"""The columns ``DetectFaces`` reads an image from, in order of preference."""

LOCAL = "local"
"""The ``address`` that starts a local Ray cluster (``ray.init()`` without an address)."""

# Of the cluster's CPUs, this share (at least one) is left to Ray Data's read tasks and the driver: with every CPU
# held by an actor the read tasks never get a slot (2 CPUs, two 1-CPU actors: backpressured forever, measured).
_RESERVED_SHARE = 1 / 8


def require_ray():
    """``import ray``, or ``MissingDependencyError`` naming the extra."""
    require("ray", "blazeconv[ray]", "running on Ray")
    import ray

    return ray


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
        from .detection import as_rgb

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
    from .detector import FaceDetector
    from .tuning import dedicate_torch_threads

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
    from .io import looks_like_url

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


def map_batches_options(
    actors: int | None = None,
    actor_cpus: float = 1.0,
    batch_size: int = 32,
    cluster_cpus: float | None = None,
    reserve_cpus: float | None = None,
) -> dict:
    """``map_batches`` keyword arguments sized to the cluster: ``{"compute", "num_cpus", "batch_size"}``.

    ``actors`` (None: as many ``actor_cpus``-CPU actors as fit in ``cluster_cpus`` once ``reserve_cpus`` are left
    to the read tasks and the driver); ``cluster_cpus`` (None: the connected cluster's ``CPU`` total, connecting as
    Ray Data would when not connected yet); ``reserve_cpus`` (None: an eighth of the CPUs, at least one: 1 actor on
    2 CPUs, 14 on 16, 56 on 64; 0 for a dataset already in memory, ``from_items``/``from_arrow``, which has no read
    tasks). Leaving no CPU to ``read_*`` tasks deadlocks: on 2 CPUs, two 1-CPU actors beside ``read_binary_files``
    wait for each other forever (measured). Options out of range: ``OptionsError``.
    """
    if not (isinstance(actor_cpus, (int, float)) and math.isfinite(actor_cpus) and actor_cpus > 0):
        raise OptionsError(f"actor_cpus must be a positive number, got {actor_cpus!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise OptionsError(f"batch_size must be a positive integer, got {batch_size!r}")
    if reserve_cpus is not None and not (isinstance(reserve_cpus, (int, float)) and math.isfinite(reserve_cpus)
                                         and reserve_cpus >= 0):
        raise OptionsError(f"reserve_cpus must be a number >= 0, got {reserve_cpus!r}")
    ray = require_ray()
    if actors is None:
        if cluster_cpus is None:
            if not ray.is_initialized():
                ray.init()  # what Ray Data's first operation would do: a local cluster, or RAY_ADDRESS's
            cluster_cpus = float(ray.cluster_resources().get("CPU", 1))
        if reserve_cpus is None:
            reserve_cpus = max(1.0, math.floor(cluster_cpus * _RESERVED_SHARE))
        actors = max(1, math.floor((cluster_cpus - reserve_cpus) / actor_cpus + 1e-9))
    elif not isinstance(actors, int) or actors < 1:
        raise OptionsError(f"actors must be a positive integer, got {actors!r}")
    from ray.data import ActorPoolStrategy

    return {"compute": ActorPoolStrategy(size=actors), "num_cpus": actor_cpus, "batch_size": batch_size}


@contextmanager
def connected(address: str | None = LOCAL, num_cpus: int | None = None) -> Iterator[None]:
    """Inside: connected to Ray; disconnected afterwards when this call connected (already connected: used as is).

    ``address``: ``"local"`` or None (a new local cluster of ``num_cpus`` CPUs, default all, shut down on the way
    out, even where ``RAY_ADDRESS`` names another), ``"auto"`` (the running cluster this machine belongs to), ``"HOST:PORT"`` or ``"ray://HOST:PORT"``.
    A local cluster keeps its sockets and logs in a folder of its own under ``$RAY_TMPDIR`` or ``$TMPDIR``
    (short-named: socket paths are limited to about 107 characters), removed afterwards. Ray itself creates
    ``~/.ray/auth_token`` (its token authentication) the first time a local cluster starts.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield
        return
    local = address in (None, LOCAL)
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    temp_dir = None
    if local:
        parent = os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()
        temp_dir = tempfile.mkdtemp(prefix="bzray", dir=parent)
        options |= {"num_cpus": num_cpus, "_temp_dir": temp_dir}
    on_term = signal.getsignal(signal.SIGTERM)
    try:
        ray.init(address=LOCAL if local else address, **options)  # "local": a new cluster, whatever RAY_ADDRESS says
    except (ConnectionError, ValueError, RuntimeError) as exc:
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)
        raise OptionsError(f"cannot connect to Ray at {address}: {' '.join(str(exc).split())[:500]}") from None
    if callable(on_term) and threading.current_thread() is threading.main_thread():
        # ray.init replaces SIGTERM's handler with sys.exit(15): keep the caller's (the CLI's: exit 143, one line).
        signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        ray.shutdown()
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)


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

    from .io import looks_like_url

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
    from .sources import resolve

    return settings.replace(model=resolve(settings.model).portable())


def stream_files(paths: Sequence[str | Path], model: str | Path | None = None, **options: Any) -> Iterator[FileResult]:
    """``detect_paths`` in the form of ``blazeconv.detection.stream_files``: a ``FileResult`` per path, in order (no
    image: the pixels stay on the workers)."""
    from .detection import Detection

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
    from .detection import Detection

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
    from .detection.video import stream_video

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
    from . import errors

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
