"""What a detection run needs, in one frozen value: ``DetectionSettings``.

Every entry point (``FaceDetector``, ``stream_files`` and its kin, ``stream_video``, ``stream_inputs``,
``anonymise``, Ray's ``DetectFaces`` and video tasks, the ``detect`` and ``blur`` commands) takes one of these, or
builds it once from its keywords with ``DetectionSettings.of``; every check of a detection option happens here, in
``__post_init__``, so a bad value fails before any work, with one ``OptionsError`` (exit 7) whatever the entry point.
As MediaPipe Tasks' ``FaceDetectorOptions`` holds every knob of a run, and the detector is made from it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..errors import OptionsError
from ..variants import DEFAULT_VARIANT, NMS_IOU_THRESHOLD, VARIANTS, Variant, get_variant
from .tiling import DEFAULT_OVERLAP, Tiling

DEFAULT_BATCH_SIZE = 32


@dataclass(frozen=True)
class Sampling:
    """Which frames of a video are detected: every ``every``-th frame (counted from the first); at most ``fps``
    frames per second, chosen by timestamp; or ``frames`` frames evenly spaced (first and last included, not with
    ``every`` or ``fps``); within ``start`` <= time < ``end`` seconds. ``check()`` raises ``OptionsError``."""

    every: int = 1
    fps: float | None = None
    frames: int | None = None
    start: float | None = None
    end: float | None = None

    def check(self) -> Sampling:
        if not isinstance(self.every, int) or isinstance(self.every, bool) or self.every < 1:
            raise OptionsError(f"every must be a whole number >= 1, got {self.every!r}")
        if self.fps is not None and not (self.fps > 0 and math.isfinite(self.fps)):
            raise OptionsError(f"fps must be a number > 0, got {self.fps!r}")
        if self.frames is not None and (not isinstance(self.frames, int) or self.frames < 1):
            raise OptionsError(f"frames must be a whole number >= 1, got {self.frames!r}")
        if self.frames is not None and (self.every != 1 or self.fps is not None):
            raise OptionsError("frames (evenly spaced) cannot be combined with every or fps")
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and not (value >= 0 and math.isfinite(value)):
                raise OptionsError(f"{name} must be a number of seconds >= 0, got {value!r}")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise OptionsError(f"end ({self.end:g} s) must be after start ({self.start:g} s)")
        return self

    def settings(self) -> dict:
        """What the sampling is, for a results file's settings record."""
        return {"every": self.every, "fps": self.fps, "frames": self.frames, "start": self.start, "end": self.end}


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


@dataclass(frozen=True)
class DetectionSettings:
    """Every option of a detection run, checked when the value is made (``OptionsError``).

    ``model``: any model argument (``sources.resolve``: a shipped name, a ``.tflite``, ``.pth`` or ``.onnx`` path, a
    torch module or a runner). ``variant``: which model the weights are (anchors, input size, default threshold),
    overriding what the model says (a name or a ``Variant``). ``backend``: a ``backends.CHOICES`` name;
    ``device``: ``"cpu"`` or the runtime's accelerator. ``min_score``: keep faces scoring at least this (None: the
    variant's, MediaPipe's); ``iou_threshold``: weighted NMS overlap (MediaPipe's 0.3). ``batch_size``: model inputs
    per forward pass. ``tile``: also run the model on overlapping square tiles of ``tile_size`` pixels (None: about
    3.3 times the model input) sharing ``tile_overlap`` of their side (``detection.tiling``). ``fast_decode``: JPEGs
    decoded with DCT scaling (not bit-exact with MediaPipe). ``sampling``: which frames of a video are detected.
    ``track``: give each detection of a video a track id, stable while the face stays in view (``detection.tracking``:
    the ``track`` extra); a tracking option rather than a model one, but it changes a video's records, as sampling does.
    ``detect_every``: with ``track``, run the model on every N-th frame only (keyframes) and fill the frames between
    from the tracks (``stream_video``); not with ``sampling``'s ``every``, ``fps`` or ``frames``.
    """

    model: Any = DEFAULT_VARIANT
    variant: Variant | str | None = None
    backend: str = "auto"
    device: str = "cpu"
    min_score: float | None = None
    iou_threshold: float = NMS_IOU_THRESHOLD
    batch_size: int = DEFAULT_BATCH_SIZE
    tile: bool = False
    tile_size: int | None = None
    tile_overlap: float = DEFAULT_OVERLAP
    fast_decode: bool = False
    sampling: Sampling = Sampling()
    track: bool = False
    detect_every: int = 1

    def __post_init__(self) -> None:
        from ..backends import CHOICES

        check_thresholds(self.min_score, self.iou_threshold)
        check_batch_size(self.batch_size)
        if self.backend not in CHOICES:
            raise OptionsError(f"unknown backend {self.backend!r}; choices: {', '.join(CHOICES)}")
        if isinstance(self.variant, str):
            get_variant(self.variant)  # an unknown name: the options error with the shipped names
        elif self.variant is not None and not isinstance(self.variant, Variant):
            raise OptionsError(f"variant must be a name ({', '.join(VARIANTS)}) or a Variant, got {self.variant!r}")
        if not isinstance(self.tile, bool):
            raise OptionsError(f"tile must be True or False, got {self.tile!r}")
        if not self.tile and (self.tile_size is not None or self.tile_overlap != DEFAULT_OVERLAP):
            raise OptionsError("tile_size and tile_overlap apply with tile=True")
        Tiling(self.tile_size, self.tile_overlap)  # checks both
        if not isinstance(self.sampling, Sampling):
            raise OptionsError(f"sampling must be a Sampling, got {self.sampling!r}")
        self.sampling.check()
        object.__setattr__(self, "fast_decode", bool(self.fast_decode))
        if not isinstance(self.track, bool):
            raise OptionsError(f"track must be True or False, got {self.track!r}")
        if not isinstance(self.detect_every, int) or isinstance(self.detect_every, bool) or self.detect_every < 1:
            raise OptionsError(f"detect_every must be a whole number >= 1, got {self.detect_every!r}")
        if self.detect_every > 1 and not self.track:
            raise OptionsError("detect_every fills the frames between keyframes from the tracks: it needs track=True")
        if self.detect_every > 1 and (self.sampling.every != 1 or self.sampling.fps or self.sampling.frames):
            raise OptionsError("detect_every (every frame, detected on keyframes) cannot be combined with every, "
                               "fps or frames")

    @classmethod
    def of(cls, settings: DetectionSettings | None = None, **changes: Any) -> DetectionSettings:
        """``settings`` (default: the defaults) with ``changes`` applied; ``None`` values in ``changes`` leave a
        field as it is, so keyword arguments that were not given change nothing."""
        base = settings if settings is not None else cls()
        if not isinstance(base, DetectionSettings):
            raise OptionsError(f"settings must be a DetectionSettings, got {type(base).__name__}")
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise TypeError(f"unknown detection settings: {', '.join(unknown)}")
        given = {k: v for k, v in changes.items() if v is not None}
        return dataclasses.replace(base, **given) if given else base

    def replace(self, **changes: Any) -> DetectionSettings:
        """A copy with ``changes`` (None is a value here: ``replace(min_score=None)`` means the variant's)."""
        return dataclasses.replace(self, **changes)

    @property
    def tiling(self) -> Tiling | None:
        """The ``Tiling`` of ``tile``/``tile_size``/``tile_overlap``, None without tiles."""
        return Tiling(self.tile_size, self.tile_overlap) if self.tile else None

    def score_for(self, variant: Variant) -> float:
        """The score threshold for ``variant``: ``min_score``, else the variant's own."""
        return variant.min_score if self.min_score is None else float(self.min_score)

    def make_runner(self, *, threads: int = 1):
        """A runner for ``model`` on ``backend`` and ``device`` (``backends.make_runner``)."""
        from ..backends import make_runner

        return make_runner(self.backend, self.model, self.variant, self.device, threads=threads)

    def record(self, variant: Variant, backend: str) -> dict:
        """What shapes the results of a run with this model (``variant``, resolved) on ``backend``, for a results
        file's settings record: a ``--resume`` with other settings is refused."""
        from .._version import __version__
        from ..sources import resolve

        source = resolve(self.model)
        weights = None if source.kind == "shipped" else source.portable() if source.path else source.describe()
        tiling = self.tiling
        return {
            "blazeconv": __version__, "model": variant.name, "weights": weights, "backend": backend,
            "min_score": self.score_for(variant), "iou_threshold": float(self.iou_threshold),
            "fast_decode": self.fast_decode,
            "tile": None if tiling is None else {"size": tiling.side(variant.input_size), "overlap": tiling.overlap},
        }


__all__ = ["DEFAULT_BATCH_SIZE", "DetectionSettings", "Sampling", "check_batch_size", "check_thresholds"]
