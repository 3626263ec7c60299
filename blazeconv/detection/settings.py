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
from ..variants import DEFAULT_MODEL, NMS_IOU_THRESHOLD, VARIANTS, Variant, get_variant
from .scales import Scale, check_min_face, check_overlap, decode_side, default_min_face, plan_scales

# ``fine_every="auto"`` (blur's default): on a video every frame of which is detected, the tile levels run at least
# every FINE_INTERVAL seconds (4 frames at 30 fps, 3 at 25), at most every MAX_FINE_EVERY frames. docs/tracks.md,
# *Fine scales on keyframes*, has the curve behind it (at 8 frames, fast small faces are lost between keyframes).
FINE_AUTO = "auto"
FINE_INTERVAL = 0.15
MAX_FINE_EVERY = 8

DEFAULT_BATCH_SIZE = 32
# A picture with no face gets a hint when the run's smallest face is above this many times the default smallest face.
HINT_RATIO = 1.5


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
    torch module or a runner); by default ``DEFAULT_MODEL``. ``variant``: which model the weights are (anchors, input
    size, default threshold, face band), overriding what the model says (a name or a ``Variant``). ``backend``: a
    ``backends.CHOICES`` name; ``device``: ``"cpu"`` or the runtime's accelerator. ``min_score``: keep faces scoring
    at least this (None: the variant's, MediaPipe's); ``iou_threshold``: weighted NMS overlap (MediaPipe's 0.3).
    ``batch_size``: model inputs per forward pass.

    Scales (``detection.scales``): by default each picture is looked at whole and, where faces as small as
    ``min_face`` pixels (None: ``scales.default_min_face``, a share of the picture's shorter side) are below what
    the model sees of the whole picture, on overlapping square tiles sized for them, every candidate merged by
    weighted NMS. ``tile=False``: the whole picture only. ``tile_size``: the expert's override, tiles of that side
    (pixels of the picture) as the one finer level; ``tile_overlap``: the share of a tile's side its neighbours
    share (None: what each level needs). ``exact``: the model on the whole picture, decoded in full, as MediaPipe
    runs it (its answers exactly; ``min_score`` still applies; not with the scale options). ``fast_decode``: JPEGs
    decoded with DCT scaling to twice the finest level's model resolution (None: unless ``exact``; not bit-exact
    with MediaPipe, which decodes in full). ``sampling``: which frames of a video are detected.
    ``whole_any_size``: the whole picture's faces are kept at any size it finds them, down to the finest level's
    smallest (blur's default, which favours hiding: what MediaPipe's one run finds, a small head seen from behind
    among it); False (detect's): below its band the whole picture's faces are left to the tiles, which find fewer
    false faces there (``scales.plan_scales``).
    ``track``: give each detection of a video a track id, stable while the face stays in view (``detection.tracking``:
    the ``track`` extra); a tracking option rather than a model one, but it changes a video's records, as sampling does.
    ``detect_every``: with ``track``, run the model on every N-th frame only (keyframes) and fill the frames between
    from the tracks (``stream_video``); not with ``sampling``'s ``every``, ``fps`` or ``frames``.
    ``fine_every``: on a video, every sampled frame is looked at whole (the coarsest level) and only every K-th
    (fine keyframes, counted from the first sampled frame) at every level of ``scales_for``; without a writer the
    smaller faces the tiles find are carried between fine keyframes along their tracks (implies tracking), a blur
    holds their masks until the next fine keyframe (``stream_video``, ``anonymise.blur_video``). 1: every level on
    every sampled frame. Not with ``exact``, ``tile=False`` or ``detect_every``. ``"auto"`` (``FINE_AUTO``, blur's
    default): K from the video's frame rate, ``fine_every_at``.
    """

    model: Any = DEFAULT_MODEL
    variant: Variant | str | None = None
    backend: str = "auto"
    device: str = "cpu"
    min_score: float | None = None
    iou_threshold: float = NMS_IOU_THRESHOLD
    batch_size: int = DEFAULT_BATCH_SIZE
    exact: bool = False
    tile: bool = True
    min_face: float | None = None
    tile_size: int | None = None
    tile_overlap: float | None = None
    fast_decode: bool | None = None
    sampling: Sampling = Sampling()
    whole_any_size: bool = False
    track: bool = False
    detect_every: int = 1
    fine_every: int | str = 1

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
        for name in ("exact", "tile"):
            if not isinstance(getattr(self, name), bool):
                raise OptionsError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.fast_decode is not None and not isinstance(self.fast_decode, bool):
            raise OptionsError(f"fast_decode must be True, False or None, got {self.fast_decode!r}")
        check_min_face(self.min_face)
        if self.tile_size is not None and (not isinstance(self.tile_size, int) or isinstance(self.tile_size, bool)
                                           or self.tile_size < 16):
            raise OptionsError(f"tile size must be an integer of at least 16 pixels, got {self.tile_size!r}")
        if self.tile_overlap is not None:
            check_overlap(self.tile_overlap)
        scale_options = [name for name in ("min_face", "tile_size", "tile_overlap") if getattr(self, name) is not None]
        if self.exact and (scale_options or self.fast_decode):
            given = ", ".join(scale_options + ["fast_decode"] * bool(self.fast_decode))
            raise OptionsError(f"exact runs the model on the whole picture decoded in full, as MediaPipe does: "
                               f"not with {given}")
        if not self.tile and scale_options:
            raise OptionsError(f"{', '.join(scale_options)} apply with tiles (tile=True)")
        if self.min_face is not None and self.tile_size is not None:
            raise OptionsError("tile_size fixes the tiles, min_face chooses them: give one of them")
        if not isinstance(self.sampling, Sampling):
            raise OptionsError(f"sampling must be a Sampling, got {self.sampling!r}")
        self.sampling.check()
        if not isinstance(self.whole_any_size, bool):
            raise OptionsError(f"whole_any_size must be True or False, got {self.whole_any_size!r}")
        if not isinstance(self.track, bool):
            raise OptionsError(f"track must be True or False, got {self.track!r}")
        if not isinstance(self.detect_every, int) or isinstance(self.detect_every, bool) or self.detect_every < 1:
            raise OptionsError(f"detect_every must be a whole number >= 1, got {self.detect_every!r}")
        if self.detect_every > 1 and not self.track:
            raise OptionsError("detect_every fills the frames between keyframes from the tracks: it needs track=True")
        if self.detect_every > 1 and (self.sampling.every != 1 or self.sampling.fps or self.sampling.frames):
            raise OptionsError("detect_every (every frame, detected on keyframes) cannot be combined with every, "
                               "fps or frames")
        if self.fine_every == FINE_AUTO:
            return
        if not isinstance(self.fine_every, int) or isinstance(self.fine_every, bool) or self.fine_every < 1:
            raise OptionsError(f"fine_every must be a whole number >= 1 or {FINE_AUTO!r}, got {self.fine_every!r}")
        if self.fine_every > 1 and not self.multi_scale:
            raise OptionsError("fine_every looks at the tiles on fine keyframes: not with exact or tile=False")
        if self.fine_every > 1 and self.detect_every > 1:
            raise OptionsError("fine_every and detect_every both choose keyframes: give one of them")

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
    def decodes_reduced(self) -> bool:
        """Whether JPEGs are decoded with DCT scaling (``fast_decode``; None: unless ``exact``)."""
        return not self.exact if self.fast_decode is None else self.fast_decode

    @property
    def tracked(self) -> bool:
        """Whether a video's detections are tracked when no writer takes them: ``track``, or ``fine_every`` other
        than 1 (its small faces are carried between fine keyframes along their tracks)."""
        return self.track or self.fine_every != 1

    def fine_every_at(self, fps: float | None) -> int:
        """K, the fine keyframes' spacing in sampled frames on a video of ``fps`` frames a second: ``fine_every``,
        or with ``"auto"`` the frames of ``FINE_INTERVAL`` seconds, from 1 to ``MAX_FINE_EVERY`` (1 when the
        frame rate is unknown, the pictures are looked at one scale only, or not every frame is detected)."""
        if self.fine_every != FINE_AUTO:
            return self.fine_every
        sampling = self.sampling
        every_frame = sampling.every == 1 and not sampling.fps and not sampling.frames and self.detect_every == 1
        if not (fps and fps > 0 and self.multi_scale and every_frame):
            return 1
        return max(1, min(MAX_FINE_EVERY, math.floor(fps * FINE_INTERVAL + 1e-9)))

    @property
    def multi_scale(self) -> bool:
        """Whether a picture may be looked at on tiles as well as whole (not ``exact``, ``tile``)."""
        return self.tile and not self.exact

    def scales_for(self, variant: Variant, width: int, height: int) -> tuple[Scale, ...]:
        """The levels a ``width`` x ``height`` picture (upright, as stored) is looked at with ``variant``:
        ``scales.plan_scales`` with this run's options; the whole picture alone when not ``multi_scale``."""
        if not self.multi_scale:
            return (Scale(max(width, height)),)
        return plan_scales(width, height, variant.face_band, self.min_face, overlap=self.tile_overlap,
                           tile_size=self.tile_size, whole_any_size=self.whole_any_size)

    def decode_side_for(self, variant: Variant):
        """``images.load_reduced``'s ``long_side(width, height)`` for this run: the decoded longer side that keeps
        twice the finest level's model resolution (``scales.decode_side``); None when decoding in full."""
        if not self.decodes_reduced:
            return None

        def long_side(width: int, height: int) -> int:
            return decode_side(self.scales_for(variant, width, height), variant.input_size, width, height)

        return long_side

    def smallest_face(self, variant: Variant, width: int, height: int) -> float:
        """The smallest face (pixels, box's longer side) this run looks for on a ``width`` x ``height`` picture:
        the low edge of ``variant``'s band at its finest level."""
        return min(scale.side for scale in self.scales_for(variant, width, height)) * variant.face_band[0]

    def small_faces_hint(self, variant: Variant, width: int, height: int) -> str | None:
        """For a picture where nothing was found: what to try when this run cannot see the small faces a default
        run would look for (``smallest_face`` well above ``scales.default_min_face``), else None."""
        smallest, default = self.smallest_face(variant, width, height), default_min_face(width, height)
        if smallest <= HINT_RATIO * default:
            return None
        how = ("as MediaPipe runs it (--exact)" if self.exact else "on the whole picture (--no-tile)" if not self.tile
               else f"with --tile-size {self.tile_size}" if self.tile_size is not None else
               f"with --min-face {self.min_face:g}")
        instead = ("run without --exact" if self.exact else "run without --no-tile" if not self.tile
                   else f"try --min-face {default:.0f}")
        return (f"{variant.name} {how} looks for faces of about {smallest:.0f} px and larger on this {width}x{height} "
                f"picture: to find faces down to {default:.0f} px, {instead}")

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
        scales = None
        if self.multi_scale:
            scales = {"min_face": self.min_face, "tile_size": self.tile_size, "overlap": self.tile_overlap}
            if self.whole_any_size:
                scales["whole_any_size"] = True
        return {
            "blazeconv": __version__, "model": variant.name, "weights": weights, "backend": backend,
            "min_score": self.score_for(variant), "iou_threshold": float(self.iou_threshold),
            "exact": self.exact, "fast_decode": self.decodes_reduced, "scales": scales,
        }


__all__ = ["DEFAULT_BATCH_SIZE", "FINE_AUTO", "FINE_INTERVAL", "MAX_FINE_EVERY", "DetectionSettings", "Sampling",
           "check_batch_size", "check_thresholds"]
