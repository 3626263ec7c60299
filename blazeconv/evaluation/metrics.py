"""Recall, precision and average precision of face detections against labels, by pycocotools' ``COCOeval``.

Converting the boxes to COCO is ours (``coco_datasets``); the matching and the AP are COCOeval's, run as COCO runs
it (``evaluate()``, ``accumulate()``) with these parameters:

- one category, ``face``; ``iouType="bbox"``; ``iouThrs``: the IoU threshold asked for (a detection matches a label
  at IoU >= it) and 0.5, for ``ap50``; ``maxDets``: the most detections in one picture, so every detection counts;
  ``recThrs``: COCO's 101 recall points.
- **Face-size bands by the longer side.** Each box's COCO ``area`` is set to the square of its longer side (in
  pixels), so COCO's area ranges are bands of the longer side: ``DEFAULT_BANDS`` are ``<16``, ``16-32``,
  ``32-64``, ``64-128``, ``>=128`` px, each ``low <= side < high``, by the *label's* longer side. Within a band
  COCO's area-range rules hold: a label outside it is ignored (a detection matching it counts neither way), and so
  is a detection outside it that matches nothing; so a band's precision counts the detections of that size.
- **Smallest face** (``min_face``, px): the same rule on every range, ``all`` included: a label whose longer side
  is under ``min_face`` is ignored (not counted in recall; a detection matching it is neither right nor wrong), and
  a detection under ``min_face`` that matches no label is ignored too (not counted as false).
- **Ignore regions** (dlib's ``ignore``, WIDER FACE's ``invalid``, COCO's ``iscrowd``/``ignore``) go to COCO as
  ``iscrowd`` labels: detections inside one (intersection over the detection's area >= the threshold) are ignored.

The figures:

- ``ap``: COCO's AP, the mean over the 101 recall points of ``eval["precision"]`` (interpolated precision), at the
  IoU asked for; ``ap50`` the same at IoU 0.5. It covers the detections given, so with a model it is the curve above
  the run's ``min_score``: lower it to see more of the curve.
- ``recall``: COCO's ``eval["recall"]`` (every detection given, that is, at the detections' own threshold), which
  is also ``found / faces``: labels matched over labels counted.
- ``precision``: from the matches of ``evalImgs`` at the same threshold: ``(detections - false) / detections``,
  ``detections`` counting those not ignored and ``false`` those matched to nothing. (``eval["precision"]`` is
  interpolated along the curve, not this.)

A figure that cannot be had (a band with no label: recall and AP; no detection: precision) is None.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import OptionsError, require

EXTRA = "blazeconv[eval]"


@dataclass(frozen=True)
class Faces:
    """One picture's boxes in its pixels: ``boxes`` ``(N, 4)`` float64 ``(x, y, width, height)``, ``(x, y)`` the top
    left corner (COCO's ``bbox``); ``scores`` ``(N,)`` float64 (1 where the source has none); ``ignore`` ``(N,)``
    bool, ignore regions (labels only)."""

    boxes: np.ndarray
    scores: np.ndarray
    ignore: np.ndarray

    @classmethod
    def of(cls, boxes, scores=None, ignore=None) -> Faces:
        """From sequences: ``boxes`` of ``(x, y, w, h)``; ``scores`` (default 1) and ``ignore`` (default False)."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)  # (N, 4), also for no box
        count = len(boxes)
        scores = np.ones(count) if scores is None else np.asarray(scores, dtype=np.float64).reshape(count)
        ignore = np.zeros(count, bool) if ignore is None else np.asarray(ignore, dtype=bool).reshape(count)
        return cls(boxes, scores, ignore)

    def __len__(self) -> int:
        return len(self.boxes)


@dataclass(frozen=True)
class Band:
    """Faces whose longer side is ``low <= side < high`` pixels; ``name`` as tables and JSON show it."""

    name: str
    low: float
    high: float = math.inf


DEFAULT_BANDS = (Band("<16", 0, 16), Band("16-32", 16, 32), Band("32-64", 32, 64), Band("64-128", 64, 128),
                 Band(">=128", 128))


@dataclass(frozen=True)
class Scores:
    """The figures over one range of face sizes (module docstring): ``recall``, ``precision``, ``ap`` (at the IoU
    asked for), ``ap50``; ``faces`` (labels counted), ``found`` (of them matched), ``detections`` (counted),
    ``false`` (of them matched to nothing). None where a figure cannot be had."""

    recall: float | None
    precision: float | None
    ap: float | None
    ap50: float | None
    faces: int
    found: int
    detections: int
    false: int

    def to_dict(self) -> dict:
        return {"recall": self.recall, "precision": self.precision, "ap50": self.ap50, "ap": self.ap,
                "faces": self.faces, "found": self.found, "detections": self.detections, "false": self.false}


@dataclass(frozen=True)
class Evaluation:
    """What ``score`` (and ``blazeconv.evaluate``) measured: ``overall`` and per ``bands`` (``(Band, Scores)``), at
    IoU >= ``iou``, labels smaller than ``min_face`` px ignored, over ``images`` pictures, ``ignored_faces`` labels
    left out (ignore regions and faces under ``min_face``); ``labels`` and ``source`` say where the labels and the
    detections came from (``evaluate`` fills them)."""

    overall: Scores
    bands: tuple[tuple[Band, Scores], ...]
    iou: float
    min_face: float
    images: int
    ignored_faces: int
    labels: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)

    recall = property(lambda self: self.overall.recall)
    precision = property(lambda self: self.overall.precision)
    ap50 = property(lambda self: self.overall.ap50)
    ap = property(lambda self: self.overall.ap)

    def to_dict(self) -> dict:
        """The JSON form: ``recall``, ``precision``, ``ap50``, ``ap`` and the counts of ``overall`` at the top, then
        ``iou``, ``min_face``, ``images``, ``ignored_faces``, ``bands`` (name -> ``min_px``, ``max_px`` (None: no
        bound) and the same figures), ``labels`` and ``detections_from``."""
        return {
            **self.overall.to_dict(), "iou": self.iou, "min_face": self.min_face, "images": self.images,
            "ignored_faces": self.ignored_faces,
            "bands": {band.name: {"min_px": band.low, "max_px": None if math.isinf(band.high) else band.high,
                                  **scores.to_dict()} for band, scores in self.bands},
            "labels": self.labels, "detections_from": self.source,
        }

    def table(self) -> str:
        """A small text table: a row for all faces, then one per band (``-``: a figure that cannot be had)."""
        def figure(value):
            return "-" if value is None else f"{value:.3f}"

        extra = not math.isclose(self.iou, 0.5)
        header = ["size", "labelled", "found", "recall", "detections", "false", "precision", "AP50"]
        header += [f"AP@{self.iou:g}"] if extra else []
        rows = []
        for name, s in [("all", self.overall)] + [(f"{band.name} px", scores) for band, scores in self.bands]:
            row = [name, str(s.faces), str(s.found), figure(s.recall), str(s.detections), str(s.false),
                   figure(s.precision), figure(s.ap50)]
            rows.append(row + ([figure(s.ap)] if extra else []))
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                 for r in [header, *rows]]
        ignored = f", {self.ignored_faces} ignored" if self.ignored_faces else ""
        smallest = f" (faces under {self.min_face:g} px ignored)" if self.min_face else ""
        title = (f"{self.images} {'picture' if self.images == 1 else 'pictures'}, {self.overall.faces} labelled faces"
                 f"{ignored}{smallest}; a detection matches a label at IoU >= {self.iou:g}; sizes by the label's longer "
                 "side")
        return "\n".join([title, *lines])


def coco_datasets(labels: Sequence[Faces], detections: Sequence[Faces]) -> tuple[dict, dict]:
    """The labels and the detections as two COCO datasets (picture ``i`` of the lists is image id ``i + 1``;
    category 1, ``face``; annotation ids from 1, as COCOeval needs them non-zero). ``area`` is the square of the
    box's longer side (the bands, module docstring); detections carry their ``score``, ignore regions ``iscrowd``."""
    images = [{"id": i + 1} for i in range(len(labels))]
    categories = [{"id": 1, "name": "face"}]

    def annotations(pictures: Sequence[Faces], scored: bool) -> list[dict]:
        found = []
        for image_id, faces in enumerate(pictures, 1):
            for box, score, ignore in zip(faces.boxes.tolist(), faces.scores.tolist(), faces.ignore.tolist()):
                entry = {"id": len(found) + 1, "image_id": image_id, "category_id": 1, "bbox": box,
                         "area": max(box[2], box[3]) ** 2, "iscrowd": int(ignore)}
                found.append({**entry, "score": score} if scored else entry)
        return found

    return ({"images": images, "categories": categories, "annotations": annotations(labels, False)},
            {"images": images, "categories": categories, "annotations": annotations(detections, True)})


def _ranges(bands: Sequence[Band], min_face: float) -> list[list[float]]:
    """COCO area ranges (squared longer sides, both ends inclusive in COCO): all faces from ``min_face``, then each
    band from ``max(low, min_face)`` to just under ``high``."""
    def below(side: float) -> float:
        return math.inf if math.isinf(side) else float(np.nextafter(side * side, 0.0))

    return [[min_face ** 2, math.inf]] + [[max(band.low, min_face) ** 2, below(band.high)] for band in bands]


def score(labels: Sequence[Faces], detections: Sequence[Faces], *, iou: float = 0.5, min_face: float = 0.0,
          bands: Sequence[Band] = DEFAULT_BANDS) -> Evaluation:
    """Score ``detections`` against ``labels`` (one ``Faces`` each per picture, in the same order) with COCOeval
    (module docstring). ``OptionsError`` for an IoU threshold outside (0, 1] or a negative ``min_face``;
    ``MissingDependencyError`` (exit 8) without pycocotools."""
    require("pycocotools", EXTRA, "scoring detections (blazeconv eval)")
    if not (0.0 < float(iou) <= 1.0):
        raise OptionsError(f"the IoU threshold must be in (0, 1], got {iou!r}")
    if not (float(min_face) >= 0.0 and math.isfinite(min_face)):
        raise OptionsError(f"the smallest face must be a number of pixels >= 0, got {min_face!r}")
    if len(labels) != len(detections):
        raise ValueError(f"{len(labels)} pictures of labels but {len(detections)} of detections")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    iou, min_face = float(iou), float(min_face)
    truth, found = coco_datasets(labels, detections)
    ranges = _ranges(bands, min_face)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress; stdout is ours
        coco_truth, coco_found = COCO(), COCO()
        coco_truth.dataset, coco_found.dataset = truth, found
        coco_truth.createIndex()
        coco_found.createIndex()
        evaluation = COCOeval(coco_truth, coco_found, iouType="bbox")
        params = evaluation.params
        params.imgIds, params.catIds = [image["id"] for image in truth["images"]], [1]
        params.iouThrs = np.array(sorted({0.5, iou}))
        params.maxDets = [max([1, *(len(d) for d in detections)])]
        params.areaRng, params.areaRngLbl = ranges, ["all", *(band.name for band in bands)]
        evaluation.evaluate()
        evaluation.accumulate()
    at = {threshold: index for index, threshold in enumerate(params.iouThrs.tolist())}
    figures = [_scores(evaluation, a, at[iou], at[0.5]) for a in range(len(ranges))]
    ignored = sum(int(np.count_nonzero(e["gtIgnore"])) for e in _images_of(evaluation, 0))
    return Evaluation(figures[0], tuple(zip(bands, figures[1:])), iou, min_face, len(labels), ignored)


def _images_of(evaluation, area: int) -> list[dict]:
    """COCOeval's per-picture results for area range ``area`` (``evalImgs`` is ordered category, range, picture;
    None for a picture with neither labels nor detections)."""
    count = len(evaluation.params.imgIds)
    return [e for e in evaluation.evalImgs[area * count:(area + 1) * count] if e is not None]


def _scores(evaluation, area: int, t: int, t50: int) -> Scores:
    faces = found = detections = false = 0
    for e in _images_of(evaluation, area):
        counted = e["gtIgnore"] == 0
        faces += int(np.count_nonzero(counted))
        found += int(np.count_nonzero((e["gtMatches"][t] > 0) & counted))
        kept = ~e["dtIgnore"][t].astype(bool)
        detections += int(np.count_nonzero(kept))
        false += int(np.count_nonzero((e["dtMatches"][t] == 0) & kept))
    recall = float(evaluation.eval["recall"][t, 0, area, 0])

    def ap(index: int) -> float | None:
        curve = evaluation.eval["precision"][index, :, 0, area, 0]  # interpolated precision at 101 recall points
        return None if (curve < 0).all() else float(curve.mean())

    return Scores(None if recall < 0 else recall, (detections - false) / detections if detections else None,
                  ap(t), ap(t50), faces, found, detections, false)


__all__ = ["DEFAULT_BANDS", "EXTRA", "Band", "Evaluation", "Faces", "Scores", "coco_datasets", "score"]
