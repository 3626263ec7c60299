"""Faces followed through a video's frames: ``Tracker.update(detections) -> detections with track ids``.

An IoU tracker, SORT without the Kalman filter: each live track predicts its box on the new frame from its last box
and its velocity (box corners per frame, smoothed); detections and predictions are matched by the Hungarian
algorithm on ``1 - IoU`` (``scipy.optimize.linear_sum_assignment``, the ``track`` extra), a pair counting only at
IoU >= ``min_iou``; the tracks and detections left are then paired by the distance of their centres in box sides,
within ``max_shift`` sides per frame since the track's last detection and of alike sizes (a small fast face moves
more than its size between keyframes: measured on the shared one-by-one clip, this second pairing cut its tracks
from 153 to 108 and, with keyframes every 3 frames and masks spread 1, hid 24 of CenterFace's 30 faces, not 16). A matched
detection takes the track's id; an unmatched one starts a new track (ids from 0, in the
order tracks start, never reused in a video). A track that finds no detection is kept ``lost_track_buffer`` frames
(counted in frame indices, so sampled videos keep it as long in frames) and then ends: a face missed for a frame or
two keeps its id, a face that leaves ends its track.

A scene cut ends every track: ``update(..., cut=True)``. ``is_cut`` says whether two frames are in different shots:
the mean absolute difference of their grey thumbnails (``thumbnail``, about 64 pixels wide) is above
``CUT_THRESHOLD`` of the grey range. Measured on the shared clips (/work/shared/videos): consecutive frames of one
shot differ by at most 0.049 (people walking through a room), a cut between two of the signing clips (one person,
alike backgrounds) by 0.085 to 0.111, the NASA clip's own cuts by 0.29. A cut between two shots of the same scene
that look alike may pass unseen: tracks then go on only where boxes overlap. ``reset()`` between videos.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..errors import OptionsError, require
from .records import Detection

# How many frames a track outlives its last detection (a face missed for up to this many frames keeps its id).
LOST_TRACK_BUFFER = 10
# A detection continues a track when its box overlaps the track's predicted box by at least this IoU.
MIN_IOU = 0.1
# A detection that does not overlap a track's predicted box enough still continues it when its centre is within
# this many box sides of the predicted centre per frame since the track's last detection (0: IoU only).
MAX_SHIFT = 0.5
# Two consecutive sampled frames whose grey thumbnails differ by more than this share of the grey range (mean
# absolute difference) are in different shots (measured: within a shot <= 0.049, across a cut >= 0.085).
CUT_THRESHOLD = 0.07
# Thumbnails for cuts are about this many pixels wide.
THUMBNAIL_WIDTH = 64
# The velocity of a track is smoothed: new = SMOOTHING * measured + (1 - SMOOTHING) * old.
SMOOTHING = 0.5


def require_tracking() -> None:
    """``MissingDependencyError`` (exit 8) naming the extra unless SciPy is installed."""
    require("scipy", "blazeconv[track]", "tracking faces (--track)")


def thumbnail(image: np.ndarray) -> np.ndarray:
    """A small grey float32 copy of an ``(H, W, 3)`` uint8 RGB frame, values in 0..1, about ``THUMBNAIL_WIDTH``
    pixels wide (every ``step``-th pixel: cheap, and enough to tell shots apart)."""
    step = max(1, image.shape[1] // THUMBNAIL_WIDTH)
    return image[::step, ::step].mean(axis=2, dtype=np.float32) / 255.0


def is_cut(previous: np.ndarray | None, current: np.ndarray, threshold: float = CUT_THRESHOLD) -> bool:
    """Whether two thumbnails (``thumbnail``) of consecutive sampled frames are in different shots; False for the
    first frame (``previous`` None) or thumbnails of different sizes."""
    if previous is None or previous.shape != current.shape:
        return False
    return float(np.abs(current - previous).mean()) > threshold


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` ``(N, 4)`` with every box of ``b`` ``(M, 4)`` (``xmin, ymin, xmax, ymax``):
    ``(N, M)``, 0 for boxes without area."""
    a, b = a[:, None, :], b[None, :, :]
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = width * height
    area_a = np.clip(a[..., 2] - a[..., 0], 0, None) * np.clip(a[..., 3] - a[..., 1], 0, None)
    area_b = np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


@dataclass
class _Track:
    id: int
    box: np.ndarray  # (4,) the last detected box
    velocity: np.ndarray  # (4,) box change per frame
    frame: int  # the frame of the last detection
    matches: int = 0  # detections that continued it (its velocity is measured from the first)

    def predict(self, frame: int) -> np.ndarray:
        return self.box + self.velocity * (frame - self.frame)


class Tracker:
    """Track ids for the detections of one video's frames, given in order (``update``); ``reset()`` between videos.

    ``lost_track_buffer``: frames a track outlives its last detection (raise it to bridge longer misses, at the risk
    of giving a new face that appears where one left the old id); ``min_iou``: the overlap a detection needs with a
    track's predicted box to continue it (lower it for fast, small faces, at the risk of swapping ids of faces that
    pass close); ``max_shift``: how far, in box sides per frame, a detection that does not overlap a track's
    predicted box may be from it and still continue it (raise it for sparser frames or faster faces, at the risk of
    joining two faces' tracks; 0: IoU only); ``first_id``: the id of the first track (a resumed video goes on after
    its recorded ids).
    """

    def __init__(self, lost_track_buffer: int = LOST_TRACK_BUFFER, min_iou: float = MIN_IOU, first_id: int = 0,
                 max_shift: float = MAX_SHIFT):
        if not isinstance(lost_track_buffer, int) or lost_track_buffer < 0:
            raise OptionsError(f"lost_track_buffer must be a whole number >= 0, got {lost_track_buffer!r}")
        if not 0.0 < min_iou <= 1.0:
            raise OptionsError(f"min_iou must be in (0, 1], got {min_iou!r}")
        require_tracking()
        if not (isinstance(max_shift, (int, float)) and 0 <= max_shift < float("inf")):
            raise OptionsError(f"max_shift must be a number >= 0, got {max_shift!r}")
        self.lost_track_buffer, self.min_iou, self.max_shift = lost_track_buffer, float(min_iou), float(max_shift)
        self.first_id = first_id
        self.reset()

    def reset(self) -> None:
        """Forget every track (a new video); ids start again at ``first_id``."""
        self.tracks: list[_Track] = []
        self.next_id = self.first_id
        self.frame: int | None = None

    def end_all(self) -> None:
        """End every live track (a scene cut): the next detections start new tracks; ids go on."""
        self.tracks = []

    def update(self, detections: Sequence[Detection], frame: int | None = None, *, cut: bool = False) -> list[Detection]:
        """``detections`` of the next frame (index ``frame``; None: the one after the last), each with its ``track``
        id, in the same order. ``cut``: the frame starts a new shot (every track ends first)."""
        from scipy.optimize import linear_sum_assignment

        frame = (0 if self.frame is None else self.frame + 1) if frame is None else int(frame)
        if self.frame is not None and frame <= self.frame:
            raise ValueError(f"frames must come in order: {frame} after {self.frame}")
        self.frame = frame
        if cut:
            self.end_all()
        self.tracks = [t for t in self.tracks if frame - t.frame <= self.lost_track_buffer + 1]
        boxes = np.array([list(d.box) for d in detections], dtype=np.float64).reshape(-1, 4)
        ids: list[int | None] = [None] * len(detections)
        if self.tracks and len(detections):
            predicted = np.stack([t.predict(frame) for t in self.tracks])
            overlap = iou_matrix(predicted, boxes)
            rows, cols = linear_sum_assignment(1.0 - overlap)
            for row, col in zip(rows.tolist(), cols.tolist()):
                if overlap[row, col] >= self.min_iou:
                    self._continue(self.tracks[row], boxes[col], frame)
                    ids[col] = self.tracks[row].id
            if self.max_shift:
                self._continue_near(predicted, boxes, ids, frame)
        for col, found in enumerate(ids):
            if found is None:
                self.tracks.append(_Track(self.next_id, boxes[col], np.zeros(4), frame))
                ids[col] = self.next_id
                self.next_id += 1
        return [replace(d, track=i) for d, i in zip(detections, ids)]

    @staticmethod
    def _continue(track: _Track, box: np.ndarray, frame: int) -> None:
        measured = (box - track.box) / (frame - track.frame)
        # A track's first velocity is measured whole (smoothing it against zero would halve a fast face's speed).
        track.velocity = measured if track.matches == 0 else SMOOTHING * measured + (1.0 - SMOOTHING) * track.velocity
        track.box, track.frame, track.matches = box, frame, track.matches + 1

    def _continue_near(self, predicted: np.ndarray, boxes: np.ndarray, ids: list, frame: int) -> None:
        """The second pairing, for the tracks and detections the IoU left apart: by the distance of the box centres
        in box sides (the larger of the two boxes' mean side), a pair counting when it is within ``max_shift`` per
        frame since the track's last detection and the sides differ by less than half: a small face that moved more
        than its size (sampled or keyframed frames)."""
        from scipy.optimize import linear_sum_assignment

        taken = {i for i in ids if i is not None}
        rows = [k for k, t in enumerate(self.tracks) if t.id not in taken and t.frame < frame]
        cols = [k for k, i in enumerate(ids) if i is None]
        if not rows or not cols:
            return
        a, b = predicted[rows], boxes[cols]
        side_a = ((a[:, 2] - a[:, 0]) + (a[:, 3] - a[:, 1]))[:, None] / 2
        side_b = ((b[:, 2] - b[:, 0]) + (b[:, 3] - b[:, 1]))[None, :] / 2
        centre_a, centre_b = (a[:, :2] + a[:, 2:]) / 2, (b[:, :2] + b[:, 2:]) / 2
        distance = np.linalg.norm(centre_a[:, None, :] - centre_b[None, :, :], axis=2) / np.maximum(
            np.maximum(side_a, side_b), 1e-9)
        gaps = np.array([frame - self.tracks[k].frame for k in rows], np.float64)[:, None]
        alike = np.minimum(side_a, side_b) > 0.5 * np.maximum(side_a, side_b)
        allowed = (distance <= self.max_shift * gaps) & alike
        cost = np.where(allowed, distance, 1e6)
        for r, c in zip(*linear_sum_assignment(cost)):
            if allowed[r, c]:
                track = self.tracks[rows[r]]
                self._continue(track, boxes[cols[c]], frame)
                ids[cols[c]] = track.id


def interpolated(before: Sequence[Detection], after: Sequence[Detection], weight: float) -> list[Detection]:
    """The detections of a frame between two detected ones (keyframes), ``weight`` of the way from ``before``'s
    frame (0) to ``after``'s (1): for each track with a detection in both, its box, keypoints and score linearly
    interpolated, marked ``filled``, in ``before``'s order. A track in only one of them (it starts or ends between
    the two) gives nothing: a face seen on neither keyframe is not found, one seen on one only is not extended."""
    ahead = {d.track: d for d in after if d.track is not None}
    filled = []
    for start in before:
        end = ahead.get(start.track)
        if start.track is None or end is None:
            continue

        def mix(a, b):
            return (1.0 - weight) * a + weight * b

        filled.append(Detection(
            mix(start.score, end.score), [mix(a, b) for a, b in zip(start.box, end.box)],
            [(mix(p[0], q[0]), mix(p[1], q[1])) for p, q in zip(start.keypoints, end.keypoints)],
            start.track, True))
    return filled


def _shifted(detection: Detection, shift: np.ndarray) -> Detection:
    """``detection`` moved by ``shift`` ``(4,)`` (box corners; keypoints by the mean of the x and of the y shift),
    marked ``filled``."""
    dx, dy = (shift[0] + shift[2]) / 2.0, (shift[1] + shift[3]) / 2.0
    return Detection(detection.score, [float(v + d) for v, d in zip(detection.box, shift)],
                     [(p[0] + dx, p[1] + dy) for p in detection.keypoints], detection.track, True)


def track_at(found: Sequence[tuple[int, Detection]], frame: int) -> list[Detection]:
    """Where one track's face is on ``frame``, from its detections ``found`` (``(frame, detection)``, in frame
    order, at least one): its detection on that frame; between two of them, the box interpolated
    (``interpolated``); before its first or after its last, that detection held *and* moved on by the track's
    velocity at that end (the change per frame between its two end detections; nothing more with one detection):
    a face that is moving keeps moving for the frames it was not seen, one that stopped stays, and both are
    covered. A list of one or two detections, the moved and held ones marked ``filled``."""
    frames = [f for f, _ in found]
    for k, (f, d) in enumerate(found):
        if f == frame:
            return [d]
        if f > frame:
            if k:
                start, first = found[k - 1]
                return interpolated([first], [d], (frame - start) / (f - start))
            break
    if frame < frames[0]:
        end, near, other = found[0][0], found[0][1], found[1] if len(found) > 1 else None
    else:
        end, near, other = found[-1][0], found[-1][1], found[-2] if len(found) > 1 else None
    held = replace(near, filled=True)
    if other is None:
        return [held]
    velocity = (np.asarray(near.box, np.float64) - np.asarray(other[1].box, np.float64)) / (end - other[0])
    return [held, _shifted(near, velocity * (frame - end))]


__all__ = ["CUT_THRESHOLD", "LOST_TRACK_BUFFER", "MAX_SHIFT", "MIN_IOU", "Tracker", "interpolated", "is_cut",
           "iou_matrix", "require_tracking", "thumbnail", "track_at"]
