"""The result records: ``Detection`` with its ``Box`` and named ``Keypoints``, and their JSON form."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ..variants import KEYPOINT_NAMES


class Point(NamedTuple):
    """A keypoint ``(x, y)``: in 0..1 of the image's width and height (pixels after ``to_pixels``)."""

    x: float
    y: float


class Box(NamedTuple):
    """A box ``(xmin, ymin, xmax, ymax)``: in 0..1 of the image's width and height (pixels after ``to_pixels``)."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float


class Keypoints(namedtuple("_KeypointTuple", KEYPOINT_NAMES)):
    """The 6 keypoints, a tuple of ``Point`` in ``KEYPOINT_NAMES`` order, also addressable by name.

    ``k.right_eye``, ``k["nose_tip"]``, ``k[0]``, ``for point in k``, ``len(k) == 6``; equal to a plain tuple of
    ``(x, y)`` pairs with the same numbers. Sides are the subject's (the right eye is on the image's left).
    """

    __slots__ = ()

    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in self._fields:
                raise KeyError(f"no keypoint {key!r}; known: {', '.join(self._fields)}")
            return getattr(self, key)
        return super().__getitem__(key)


@dataclass(frozen=True)
class Detection:
    """One face, coordinates in 0..1 of the original image's width (x) and height (y).

    ``score``: MediaPipe's face score in 0..1; ``box``: a ``Box`` ``(xmin, ymin, xmax, ymax)``; ``keypoints``:
    ``Keypoints``, 6 ``Point`` ``(x, y)`` (right eye, left eye, nose tip, mouth centre, right ear tragion, left ear
    tragion; the subject's sides). Plain tuples given to the constructor are converted; numbers become ``float``.
    In a tracked video (``detection.tracking``): ``track``, the id of the face's track (an int from 0, unique in the
    video), and ``filled`` when the detection was interpolated between two detections of its track, not detected.
    """

    score: float
    box: Box
    keypoints: Keypoints
    track: int | None = None
    filled: bool = False

    def __post_init__(self) -> None:
        points = tuple(Point(float(x), float(y)) for x, y in self.keypoints)
        if len(points) != len(KEYPOINT_NAMES):
            raise ValueError(f"a Detection has {len(KEYPOINT_NAMES)} keypoints, got {len(points)}")
        object.__setattr__(self, "score", float(self.score))
        object.__setattr__(self, "box", Box(*(float(v) for v in self.box)))
        object.__setattr__(self, "keypoints", Keypoints(*points))
        if self.track is not None:
            object.__setattr__(self, "track", int(self.track))
        object.__setattr__(self, "filled", bool(self.filled))

    def to_pixels(self, width: float, height: float, *, clip: bool = True) -> Detection:
        """The same detection in pixels of a ``width`` x ``height`` image: x multiplied by ``width``, y by
        ``height``; the box clipped to the image (0..width, 0..height) unless ``clip`` is False (the model's box
        may reach past the image's edge: a face cut by it). Keypoints are not clipped (an ear may lie outside)."""
        xmin, ymin, xmax, ymax = self.box
        box = (xmin * width, ymin * height, xmax * width, ymax * height)
        if clip:
            box = clip_box(box, width, height)
        return Detection(self.score, box, tuple((x * width, y * height) for x, y in self.keypoints), self.track,
                         self.filled)

    def clipped(self) -> Box:
        """The box clipped to the image, in 0..1 (``box`` is the model's, which may reach past the edges)."""
        return Box(*clip_box(self.box, 1.0, 1.0))

    def to_dict(self) -> dict:
        """``{"score", "box": [xmin, ymin, xmax, ymax], "keypoints": [[x, y] x 6]}``: one entry of ``detect --json``;
        in a tracked video also ``"track": id``, and ``"filled": true`` for an interpolated detection (both keys are
        absent otherwise, so untracked outputs are unchanged)."""
        entry = {"score": self.score, "box": list(self.box), "keypoints": [list(point) for point in self.keypoints]}
        if self.track is not None:
            entry["track"] = self.track
        if self.filled:
            entry["filled"] = True
        return entry





def clip_box(box: Sequence[float], width: float, height: float) -> tuple[float, float, float, float]:
    """``(xmin, ymin, xmax, ymax)`` clipped to ``0..width`` x ``0..height``."""
    xmin, ymin, xmax, ymax = box
    return (min(max(xmin, 0.0), width), min(max(ymin, 0.0), height), min(max(xmax, 0.0), width),
            min(max(ymax, 0.0), height))


def detections_to_json(path: str | Path, width: int, height: int, detections: Sequence[Detection]) -> dict:
    """One image's result as a JSON-ready dict.

    ``{"path", "width", "height", "detections": [Detection.to_dict(), ...]}``: each ``{"score", "box": [xmin, ymin,
    xmax, ymax], "keypoints": [[x, y] x 6]}``, coordinates in 0..1 of the image's width and height.
    """
    return {"path": str(path), "width": int(width), "height": int(height), "detections": [d.to_dict() for d in detections]}
