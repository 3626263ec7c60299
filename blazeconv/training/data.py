"""Labelled pictures as training samples: read with ``evaluation``'s label readers, augmented, letterboxed as
``detect`` letterboxes them.

A ``Sample`` is one picture and its faces in the upright picture's pixels. ``model_input`` makes one model input of
it: optionally flipped (left and right keypoints swapped: the subject's right eye becomes the image's right), a square
region of the picture chosen (scale jitter: the whole picture as ``detect`` sees it, or a part of it as a tile of the
every-face strategy shows it, or the picture zoomed out), cut out and letterboxed with ``detection.letterbox``
(MediaPipe's own warp), and the faces mapped into the model input (0..1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..detection.images import load_image
from ..detection.letterboxing import letterbox
from ..errors import LabelsError
from ..evaluation.labels import read_boxes
from ..evaluation.pictures import faces_of, labelled_pictures, picture_size
from ..variants import KEYPOINT_NAMES

NUM_KEYPOINTS = len(KEYPOINT_NAMES)


def _flip_order() -> np.ndarray:
    """Index of each keypoint's mirror image: right and left swap (right eye <-> left eye, the ear tragions)."""
    names = list(KEYPOINT_NAMES)
    mirror = [n.replace("right_", "@").replace("left_", "right_").replace("@", "left_") for n in names]
    return np.array([names.index(n) for n in mirror])


FLIP_ORDER = _flip_order()
"""``keypoints[:, FLIP_ORDER]`` after mirroring x: the keypoints of the flipped face, in MediaPipe's order again."""


@dataclass(frozen=True)
class Sample:
    """One labelled picture.

    ``path``; ``boxes`` ``(M, 4)`` float32 ``(xmin, ymin, xmax, ymax)`` in pixels of the upright picture (clipped to
    it); ``keypoints`` ``(M, K, 2)`` float32 pixels and ``labelled`` ``(M, K)`` bool (which keypoints the file
    gives); ``ignore`` ``(M,)`` bool: ignore regions (no anchor near one is trained either way). ``M`` may be 0: a
    picture without faces, whose every anchor is a negative.
    """

    path: Path
    width: int
    height: int
    boxes: np.ndarray
    keypoints: np.ndarray
    labelled: np.ndarray
    ignore: np.ndarray


@dataclass(frozen=True)
class Targets:
    """The faces of one model input: as ``Sample`` but in 0..1 of the model input."""

    boxes: np.ndarray
    keypoints: np.ndarray
    labelled: np.ndarray
    ignore: np.ndarray


@dataclass(frozen=True)
class Augmentation:
    """How a training picture is varied (``model_input``).

    ``flip``: probability of a horizontal flip. ``min_zoom`` / ``max_zoom``: the side of the square cut out, as a
    share of the picture's longer side, drawn log-uniformly: 1 is the whole picture (``detect`` without tiles), below
    1 a part of it, as the every-face strategy's tiles show the model (a tile of a third of the picture: 0.33), above
    1 the picture smaller inside a black border. ``brightness``: gain drawn from ``1 +- brightness``.
    ``min_visible``: a face cut by the region's edge stays a face if at least this share of its box is inside,
    else it becomes an ignore region.
    """

    flip: float = 0.5
    min_zoom: float = 0.3
    max_zoom: float = 1.3
    brightness: float = 0.2
    min_visible: float = 0.6

    @classmethod
    def none(cls) -> Augmentation:
        """No variation: the whole picture, letterboxed exactly as ``detect`` does."""
        return cls(flip=0.0, min_zoom=1.0, max_zoom=1.0, brightness=0.0)


def read_samples(labels: str | Path, images: str | Path | Sequence[str | Path] | None = None,
                 labels_format: str = "auto") -> list[Sample]:
    """Every labelled picture of ``labels`` as a ``Sample``.

    ``labels``: any file ``blazeconv eval`` reads (``evaluation.labels.FORMATS``); ``images``: where the pictures
    are (as for ``eval``; None: the labels file's folder, and the folders of absolute paths it names). Checked
    before any training, with eval's errors (``LabelsError``, exit 2, naming the file and line): a file in no known
    format, a picture not found, a box outside its picture, a keypoint list of the wrong length. Boxes crossing the
    picture's edge are clipped.
    """
    box_file = read_boxes(labels, labels_format)
    if images is None:  # beside the labels, and the folders of the absolute paths they name
        named = {Path(e.name).parent for e in box_file.images if e.name and Path(e.name).is_absolute()}
        images = [box_file.path.parent, *sorted(f for f in named if f.is_dir() and f != box_file.path.parent)]
    elif isinstance(images, (str, Path)):
        images = [images]
    samples = []
    for path, entry in labelled_pictures(box_file, list(images)):
        width, height = picture_size(path)
        faces = faces_of(entry, (width, height), box_file, path)  # the checks eval makes, boxes clipped
        count = len(entry.boxes)
        keypoints = np.zeros((count, NUM_KEYPOINTS, 2), np.float32)
        labelled = np.zeros((count, NUM_KEYPOINTS), bool)
        scale = (width, height) if entry.relative else (1, 1)
        for index, box in enumerate(entry.boxes):
            if box.keypoints is None:
                continue
            if len(box.keypoints) != NUM_KEYPOINTS:
                raise box_file.error(box.where, f"{len(box.keypoints)} keypoints, expected {NUM_KEYPOINTS} "
                                                f"({', '.join(KEYPOINT_NAMES)}; null where not labelled)")
            for k, point in enumerate(box.keypoints):
                if point is not None:
                    keypoints[index, k] = (point[0] * scale[0], point[1] * scale[1])
                    labelled[index, k] = True
        xywh = np.asarray(faces.boxes, np.float32).reshape(-1, 4)
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)  # (M, 4) corners
        samples.append(Sample(path, width, height, boxes, keypoints, labelled, np.asarray(faces.ignore, bool)))
    if not samples:
        raise LabelsError(f"{box_file.path}: labels no picture")
    return samples


def model_input(sample: Sample, size: int, rng: np.random.Generator | None = None,
                augmentation: Augmentation | None = None, image: np.ndarray | None = None
                ) -> tuple[np.ndarray, Targets]:
    """One model input of ``sample``: ``(3, size, size)`` float32 in [-1, 1] and its ``Targets``.

    Without ``rng`` (or with ``Augmentation.none()``) it is the whole picture letterboxed as ``detect`` does.
    ``image``: the decoded picture, when the caller has it (else it is loaded).
    """
    augmentation = augmentation or Augmentation.none()
    picture = load_image(sample.path) if image is None else image
    height, width = picture.shape[:2]
    if (width, height) != (sample.width, sample.height):
        raise LabelsError(f"{sample.path}: decoded as {width}x{height}, its header said {sample.width}x{sample.height}")
    boxes, keypoints, labelled = sample.boxes.copy(), sample.keypoints.copy(), sample.labelled.copy()
    if rng is not None and rng.random() < augmentation.flip:
        picture = picture[:, ::-1]
        boxes = np.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], axis=1)
        keypoints = keypoints.copy()
        keypoints[..., 0] = width - keypoints[..., 0]
        keypoints, labelled = keypoints[:, FLIP_ORDER], labelled[:, FLIP_ORDER]
    side = float(max(width, height))
    x0, y0 = (width - side) / 2, (height - side) / 2  # MediaPipe's letterbox: the centred square of the longer side
    if rng is not None and (augmentation.min_zoom, augmentation.max_zoom) != (1.0, 1.0):
        zoom = math.exp(rng.uniform(math.log(augmentation.min_zoom), math.log(augmentation.max_zoom)))
        side = max(round(side * zoom), 8)
        x0 = rng.uniform(min(0.0, width - side), max(0.0, width - side))
        y0 = rng.uniform(min(0.0, height - side), max(0.0, height - side))
    x0, y0, side = round(x0), round(y0), int(round(side))
    square = _cut(picture, x0, y0, side)
    if rng is not None and augmentation.brightness:
        gain = rng.uniform(1 - augmentation.brightness, 1 + augmentation.brightness)
        square = np.clip(square.astype(np.float32) * gain + 0.5, 0, 255).astype(np.uint8)
    tensor, _ = letterbox(square, size)  # a square: no padding, MediaPipe's warp of the region
    return tensor, _targets(boxes, keypoints, labelled, sample.ignore, x0, y0, side, augmentation.min_visible)


def _cut(picture: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    """The ``(side, side, 3)`` square of ``picture`` whose top left corner is ``(x0, y0)``; outside it, black (0)."""
    height, width = picture.shape[:2]
    square = np.zeros((side, side, 3), np.uint8)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, width), min(y0 + side, height)
    if sx1 > sx0 and sy1 > sy0:
        square[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = picture[sy0:sy1, sx0:sx1]
    return square


def _targets(boxes, keypoints, labelled, ignore, x0, y0, side, min_visible) -> Targets:
    """Faces in pixels to 0..1 of the region ``(x0, y0, side)``: boxes wholly outside dropped, mostly cut ones made
    ignore regions, keypoints outside the region not labelled."""
    scaled = (boxes - np.array([x0, y0, x0, y0], np.float32)) / np.float32(side)  # (M, 4)
    points = (keypoints - np.array([x0, y0], np.float32)) / np.float32(side)  # (M, K, 2)
    clipped = np.clip(scaled, 0.0, 1.0)
    area = np.prod(scaled[:, 2:] - scaled[:, :2], axis=1)
    inside = np.prod(np.maximum(clipped[:, 2:] - clipped[:, :2], 0.0), axis=1)
    keep = inside > 0
    visible = np.where(area > 0, inside / np.maximum(area, 1e-12), 0.0)
    ignore = ignore | (visible < min_visible)
    labelled = labelled & np.all((points >= 0) & (points <= 1), axis=2)
    return Targets(clipped[keep].astype(np.float32), points[keep].astype(np.float32), labelled[keep], ignore[keep])


__all__ = ["FLIP_ORDER", "NUM_KEYPOINTS", "Augmentation", "Sample", "Targets", "model_input", "read_samples"]
