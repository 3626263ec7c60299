"""Aligned face crops: one face of an image as a square picture, the usual input of a face-recognition model.

``crop_face`` cuts one: a ``(size, size, 3)`` uint8 RGB crop of an ``(H, W, 3)`` uint8 RGB image, from a detection in
0..1 of that image. The crop's side is the box's longer side plus ``margin`` of it on each side (``1 + 2 * margin``
times the box). With ``align`` it is rotated so the eyes are level (the subject's right eye on the left, as in the
photo) and placed so they are symmetric about its vertical centre line, at the box centre's height along the face;
without it, axis-aligned and centred on the box. Bilinear sampling (Pillow's ``AFFINE`` transform,
``crop_transform``); parts outside the image are black.

``CropWriter`` is ``detect --crops DIR``: the crops of a run's images and video frames as PNG files under ``DIR``,
and ``DIR/index.jsonl``, one line per crop saying which file, frame and face it is.
"""

from __future__ import annotations

import heapq
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import OptionsError, OutputError
from ..io import PathUsageError, atomic_path, check_folder
from ..marks import CROP, has_mark, photo_save_options, source_mark
from .images import as_rgb
from .records import Detection


def check_crop_options(size: int, margin: float) -> None:
    """``OptionsError`` unless ``size`` is a whole number >= 1 and ``margin`` a finite number >= 0."""
    if not isinstance(size, int) or size < 1:
        raise OptionsError(f"crop size must be a positive integer, got {size!r}")
    if not (margin >= 0 and math.isfinite(margin)):
        raise OptionsError(f"crop margin must be a finite number >= 0, got {margin!r}")


def crop_transform(detection: Detection, size: int, align: bool = True, margin: float = 0.25) -> tuple[float, ...]:
    """Pillow ``AFFINE`` data ``(a, b, c, d, e, f)`` of ``crop_face``: output point ``(X, Y)`` (continuous pixel
    coordinates of the ``size`` x ``size`` crop) reads the image at ``(a X + b Y + c, d X + e Y + f)``.

    ``detection`` in pixels of the image (``Detection.to_pixels``). The crop's axes are ``right`` (unit vector from
    the right eye to the left eye, or +x without ``align``) and ``down`` (``right`` turned 90 degrees towards the
    mouth); its centre is the box centre, moved along ``right`` onto the eyes' perpendicular bisector when aligning.
    """
    xmin, ymin, xmax, ymax = detection.box
    side = max(xmax - xmin, ymax - ymin) * (1.0 + 2.0 * margin)
    if not side > 0 or not math.isfinite(side):
        raise OptionsError(f"cannot crop a detection without area (box {tuple(detection.box)})")
    centre = np.array([(xmin + xmax) / 2.0, (ymin + ymax) / 2.0])
    right = np.array([1.0, 0.0])
    if align:
        right_eye, left_eye = np.array(detection.keypoints.right_eye), np.array(detection.keypoints.left_eye)
        between = left_eye - right_eye
        if np.hypot(*between) > 0:
            right = between / np.hypot(*between)
    down = np.array([-right[1], right[0]])  # image y points down: +x turns into +y
    if align:
        eyes = (np.array(detection.keypoints.right_eye) + np.array(detection.keypoints.left_eye)) / 2.0
        centre = eyes + np.dot(centre - eyes, down) * down
    scale = side / size
    origin = centre - scale * size / 2.0 * (right + down)  # where the crop's corner (0, 0) reads the image
    return (scale * right[0], scale * down[0], origin[0], scale * right[1], scale * down[1], origin[1])


def crop_face(image: np.ndarray, detection: Detection, size: int = 112, align: bool = True,
              margin: float = 0.25) -> np.ndarray:
    """A ``(size, size, 3)`` uint8 RGB crop of one face of ``image`` (``(H, W, 3)`` uint8 RGB; ``detection`` in 0..1
    of it): see the module docstring. Bad ``size`` or ``margin``: ``OptionsError``."""
    check_crop_options(size, margin)
    rgb = as_rgb(image)
    height, width = rgb.shape[:2]
    matrix = crop_transform(detection.to_pixels(width, height), size, align, margin)
    cropped = Image.fromarray(rgb).transform((size, size), Image.Transform.AFFINE, matrix,
                                             resample=Image.Resampling.BILINEAR)
    return np.array(cropped, np.uint8)  # a writable copy


INDEX_NAME = "index.jsonl"


def is_crop_of(path: str | Path, source: str | Path) -> bool:
    """True when the file at ``path`` is a crop blazeconv wrote of ``source`` (by the mark its PNG records: crops
    say whose they are, so that a later run replaces its own and never a user's file of the same name)."""
    return has_mark(path, source_mark(CROP, source))


class CropWriter:
    """``detect --crops ROOT``: each kept face of each image or sampled video frame as a PNG under ``ROOT``.

    ``names`` maps each input path to its folder under ``ROOT`` (the caller mirrors the inputs' folders, as
    ``io.mirrored_paths`` does). A video frame's faces are ``ROOT/<name>/f000123_0.png`` (the frame's index, six
    digits, then the face's index in the frame's detections), a photo's ``ROOT/<name>/0.png``. ``size``, ``margin``
    and ``align`` as ``crop_face``; faces whose box's longer side is under ``min_face`` pixels of the image are
    skipped. Each PNG is written atomically and records whose crop it is (``is_crop_of``); a file of a crop's name
    that is not blazeconv's crop of the same source is a ``PathUsageError`` naming it, unless ``overwrite``.

    A tracked video's faces (``Detection.track`` set) go one folder per track: ``ROOT/<name>/track_0003/f000123.png``,
    and their index lines carry ``"track"``. ``best`` N keeps only the N best crops of each track, ranked by the box's
    area in pixels times its score (the biggest, surest views; ties: the earlier frame): they are held in memory
    (at most N crops per track) and written when the video is done (``finish``) or the writer closes.

    After each crop, one line is appended to ``ROOT/index.jsonl`` and flushed (so the index never lists a crop not
    yet on disk): ``{"crop": "<name>/f000123_0.png", "source": "<input path>", "frame": 123 | null, "time": 4.1 |
    null, "box": [xmin, ymin, xmax, ymax] in 0..1 of the image (clipped to it), "score": 0.93}``. A context manager:
    the index is opened (``ROOT`` made, its parent must exist) on entering and closed on leaving.
    """

    def __init__(self, root: str | Path, *, names: dict[Path, str], size: int = 112, margin: float = 0.25,
                 min_face: float = 0, align: bool = True, overwrite: bool = False, best: int | None = None):
        check_crop_options(size, margin)
        if best is not None and (not isinstance(best, int) or isinstance(best, bool) or best < 1):
            raise OptionsError(f"best must be a whole number >= 1, got {best!r}")
        self.best = best
        self._held: dict[tuple[Path, int], list] = {}  # (input, track) -> heap of (rank, -frame, crop, line)
        if not (isinstance(min_face, (int, float)) and min_face >= 0 and math.isfinite(min_face)):
            raise OptionsError(f"min_face must be a number of pixels >= 0, got {min_face!r}")
        self.root, self.names = Path(root), {Path(path): name for path, name in names.items()}
        self.size, self.margin, self.min_face, self.align, self.overwrite = size, margin, min_face, align, overwrite
        self._index = None

    def __enter__(self) -> CropWriter:
        if not self.root.is_dir():
            check_folder(self.root)
        index = self.root / INDEX_NAME
        try:
            self.root.mkdir(exist_ok=True)
            self._index = open(index, "a", encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"{index}: cannot write: {exc.strerror or exc}") from None
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self.close()

    def close(self) -> None:
        if self._index is not None and self._held:
            self.finish()
        if self._index is not None:
            self._index.close()
            self._index = None

    def add(self, path: str | Path, image: np.ndarray, detections: Sequence[Detection], frame: int | None = None,
            time: float | None = None) -> list[Path]:
        """Crop the faces of ``image`` (``(H, W, 3)`` uint8 RGB, upright; ``detections`` in 0..1 of it) of input
        ``path`` (video frame ``frame`` at ``time`` seconds, or a photo without them); returns the files written."""
        if self._index is None:
            raise RuntimeError("CropWriter.add outside its with block")
        path = Path(path)
        folder = self._folder(path)
        height, width = np.shape(image)[:2]
        written = []
        for number, detection in enumerate(detections):
            xmin, ymin, xmax, ymax = detection.box
            if max((xmax - xmin) * width, (ymax - ymin) * height) < self.min_face:
                continue
            tracked = detection.track is not None and frame is not None
            if tracked:
                name = f"track_{detection.track:04d}/f{frame:06d}.png"
            else:
                name = f"{number}.png" if frame is None else f"f{frame:06d}_{number}.png"
            crop = crop_face(image, detection, self.size, self.align, self.margin)
            target = folder / name
            line = {"crop": target.relative_to(self.root).as_posix(), "source": str(path), "frame": frame,
                    "time": time, "box": list(detection.clipped()), "score": detection.score}
            if tracked:
                line["track"] = detection.track
            if tracked and self.best is not None:
                rank = (xmax - xmin) * width * (ymax - ymin) * height * detection.score
                held = self._held.setdefault((path, detection.track), [])
                entry = (rank, -frame, crop, line)
                if len(held) < self.best:
                    heapq.heappush(held, entry)
                elif entry[:2] > held[0][:2]:
                    heapq.heapreplace(held, entry)
                continue
            self._put(target, crop, path, line)
            written.append(target)
        return written

    def finish(self, path: str | Path | None = None) -> list[Path]:
        """Write the best crops held for the tracks of input ``path`` (None: of every input), in frame order; returns
        the files written."""
        keys = [key for key in self._held if path is None or key[0] == Path(path)]
        entries = sorted((entry for key in keys for entry in self._held.pop(key)), key=lambda e: (-e[1], e[3]["crop"]))
        written = []
        for _, _, crop, line in entries:
            target = self.root / line["crop"]
            self._put(target, crop, Path(line["source"]), line)
            written.append(target)
        return written

    def _put(self, target: Path, crop: np.ndarray, source: Path, line: dict) -> None:
        if not target.parent.is_dir():
            try:
                target.parent.mkdir(parents=True, exist_ok=True)  # a track's folder, inside ROOT
            except OSError as exc:
                raise OutputError(f"{target.parent}: cannot make the folder: {exc.strerror or exc}") from None
        self._write(target, crop, source)
        self._append(line)

    def _folder(self, path: Path) -> Path:
        """``ROOT/<name>`` of input ``path``, made when missing; a name that would leave ``ROOT`` is refused."""
        if path not in self.names:
            raise ValueError(f"{path}: no crop folder name given for this input")
        name = Path(self.names[path])
        if name.is_absolute() or ".." in name.parts:
            raise ValueError(f"{path}: crop folder name {str(name)!r} is not a relative path inside {self.root}")
        folder = self.root / name
        try:
            folder.mkdir(parents=True, exist_ok=True)  # inside ROOT only
        except OSError as exc:
            raise OutputError(f"{folder}: cannot make the folder: {exc.strerror or exc}") from None
        return folder

    def _write(self, target: Path, crop: np.ndarray, source: Path) -> None:
        if not self.overwrite and os.path.lexists(target) and not is_crop_of(target, source):
            raise PathUsageError(f"{target} exists and is not a crop blazeconv wrote of {source}: add --overwrite "
                                 "to replace it, or write the crops into another folder")
        with atomic_path(target) as temporary:
            Image.fromarray(crop).save(temporary, format="PNG", **photo_save_options("PNG", source_mark(CROP, source)))

    def _append(self, line: dict) -> None:
        try:
            self._index.write(json.dumps(line) + "\n")
            self._index.flush()
        except OSError as exc:
            raise OutputError(f"{self.root / INDEX_NAME}: cannot write: {exc.strerror or exc}") from None


__all__ = ["CropWriter", "INDEX_NAME", "check_crop_options", "crop_face", "crop_transform", "is_crop_of"]
