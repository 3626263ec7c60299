"""The pictures a label file names, found among the paths given, and each picture's boxes in its pixels.

A label's path (``FileImage.name``) is looked for, in order: under each folder given (WIDER FACE's and COCO's paths
start from their images folder), as written (absolute, or relative to the current folder), beside the label file
(dlib's imglab writes paths relative to its XML); it must be one of the pictures given (a file given, or an image
file anywhere under a folder given). Failing that, the picture given whose path ends the same way over the most
parts (the file name at least) is it; two such pictures are an error (say which folder the paths start from).

When every path given is a file, only those pictures are scored (each must be labelled); with a folder among them,
every labelled picture is scored and each must be found.

Boxes are taken in the upright picture's pixels (EXIF orientation applied, as ``detect`` reports them), ``(x, y)``
the top left corner: a box wholly outside the picture is an error, one that crosses its edge is clipped to it (as
detections are). A size the file states must be the picture's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import LabelsError
from .boxes import BoxFile, FileImage
from .metrics import Faces

_ORIENTATION = 0x0112  # the EXIF tag; 5 to 8 turn the picture a quarter


def picture_size(path: str | Path) -> tuple[int, int]:
    """The upright ``(width, height)`` of the picture at ``path`` (EXIF orientation applied), read from its header.
    ``ImageError`` (exit 6) for a file that is not a picture Pillow reads."""
    from PIL import Image, UnidentifiedImageError

    from ..errors import ImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
            turned = image.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image Pillow can read") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return (height, width) if turned else (width, height)


def given_pictures(images: Sequence[str | Path]) -> tuple[list[Path], bool]:
    """The pictures among ``images``: each file as given, the image files anywhere under each folder (sorted); and
    whether every path given was a file (then only those are scored). A path that does not exist:
    ``LabelsError``."""
    from ..detection.files import find_images

    found, only_files = [], True
    for item in map(Path, images):
        if not item.exists():
            raise LabelsError(f"{item}: no such file or folder")
        only_files &= not item.is_dir()
        found += find_images([item], recursive=True)
    return found, only_files


class Pictures:
    """Finds the picture a path names among ``pictures`` (the files given and found under ``folders``)."""

    def __init__(self, pictures: Sequence[Path], folders: Sequence[Path]):
        self.pictures = list(pictures)
        self.folders = list(folders)
        self._real = {os.path.realpath(p): p for p in self.pictures}
        self._by_name: dict[str, list[Path]] = {}
        for picture in self.pictures:
            self._by_name.setdefault(picture.name, []).append(picture)

    def find(self, name: str, beside: Path | None = None) -> Path | list[Path] | None:
        """The picture ``name`` names (module docstring); a list of the candidates when several fit as well; None
        when none does."""
        tries = [folder / name for folder in self.folders] + [Path(name)]
        tries += [beside / name] if beside is not None else []
        for path in tries:
            real = os.path.realpath(path)
            if real in self._real:
                return self._real[real]
        parts = Path(name.replace("\\", "/")).parts
        best, found = 0, []
        for picture in self._by_name.get(parts[-1] if parts else "", []):
            common = _common_tail(parts, Path(os.path.realpath(picture)).parts)
            if common > best:
                best, found = common, [picture]
            elif common == best:
                found.append(picture)
        return None if not found else found[0] if len(found) == 1 else found


def _common_tail(a: Sequence[str], b: Sequence[str]) -> int:
    count = 0
    while count < min(len(a), len(b)) and a[-1 - count] == b[-1 - count]:
        count += 1
    return count


def labelled_pictures(labels: BoxFile, images: Sequence[str | Path]) -> list[tuple[Path, FileImage]]:
    """Each picture to score with its entry in ``labels``, in the file's order (module docstring for how they are
    found). ``LabelsError`` naming the file and line for a picture not found, found twice or labelled twice, and for
    a picture given that has no labels."""
    if labels.by_id:
        raise LabelsError(f"{labels.path}: a COCO results list names pictures by image id only; give it as "
                          "--detections, with the COCO labels it refers to")
    pictures, only_files = given_pictures(images)
    finder = Pictures(pictures, [Path(i) for i in images if Path(i).is_dir()])
    chosen: dict[Path, FileImage] = {}
    for entry in labels.images:
        found = finder.find(entry.name, labels.path.parent)
        if isinstance(found, list):
            raise labels.error(entry.where, f"{entry.name} could be any of {', '.join(map(str, found[:4]))}: give "
                                            "the folder the labels' paths start from")
        if found is None:
            if only_files:
                continue
            places = ", ".join(str(i) for i in images)
            raise labels.error(entry.where, f"picture {entry.name} not found in {places} (nor beside the labels)")
        if found in chosen:
            raise labels.error(entry.where, f"{found} is labelled twice (also line {labels.line(chosen[found].where)})")
        chosen[found] = entry
    if only_files:
        unlabelled = [p for p in pictures if p not in chosen]
        if unlabelled:
            raise LabelsError(f"{unlabelled[0]}: no labels for it in {labels.path}")
    if not chosen:
        raise LabelsError(f"{labels.path}: labels no picture")
    return list(chosen.items())


def faces_of(entry: FileImage, size: tuple[int, int], source: BoxFile, picture: Path) -> Faces:
    """``entry``'s boxes in pixels of the upright picture of ``size`` ``(width, height)``, clipped to it.

    ``LabelsError`` naming ``source``'s file and line: a stated size that is not the picture's, a record of a
    picture the run could not read, a box wholly outside the picture, or one of no size."""
    width, height = size
    if entry.error is not None:
        raise source.error(entry.where, f"{picture}: the run that wrote this file could not read it ({entry.error})")
    if entry.width is not None and entry.height is not None and (entry.width, entry.height) != (width, height):
        turned = " (its stored size: labels are drawn on the upright picture)" if (entry.height, entry.width) == (
            width, height) else ""
        raise source.error(entry.where, f"{entry.name} is {entry.width}x{entry.height} here, but {picture} is "
                                        f"{width}x{height} upright{turned}")
    scale = (width, height) if entry.relative else (1, 1)
    boxes, scores, ignore = [], [], []
    for box in entry.boxes:
        x0, y0 = box.x * scale[0], box.y * scale[1]
        x1, y1 = x0 + box.w * scale[0], y0 + box.h * scale[1]
        cx0, cy0, cx1, cy1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height))
        if box.w == 0 or box.h == 0:
            raise source.error(box.where, f"a box of no size ({box.w:g} x {box.h:g}) in {entry.name}")
        if cx1 <= cx0 or cy1 <= cy0:
            raise source.error(box.where, f"a box outside the picture: ({x0:g}, {y0:g}) to ({x1:g}, {y1:g}) in "
                                          f"{entry.name}, which is {width}x{height} px")
        boxes.append((cx0, cy0, cx1 - cx0, cy1 - cy0))
        scores.append(1.0 if box.score is None else box.score)
        ignore.append(box.ignore)
    return Faces.of(boxes, scores, ignore)


def detection_entries(detections: BoxFile, labelled: Sequence[tuple[Path, FileImage]]) -> list[FileImage]:
    """For each labelled picture, its entry in ``detections`` (found as ``Pictures.find`` finds a label's picture,
    or by COCO image id for a COCO results list). A picture the file does not mention: ``LabelsError``, except in a
    COCO results list, which leaves out the pictures without detections (an empty entry)."""
    if detections.by_id:
        by_id = {entry.image_id: entry for entry in detections.images}
        if any(entry.image_id is None for _, entry in labelled):
            raise LabelsError(f"{detections.path}: a COCO results list names pictures by image id: the labels must be "
                              "the COCO dataset it refers to")
        return [by_id.get(entry.image_id, FileImage(None, 0, image_id=entry.image_id)) for _, entry in labelled]
    pictures = [picture for picture, _ in labelled]
    finder = Pictures(pictures, [])
    matched: dict[Path, FileImage] = {}
    for entry in detections.images:
        found = finder.find(entry.name, detections.path.parent)
        if isinstance(found, list):
            raise detections.error(entry.where, f"{entry.name} could be any of {', '.join(map(str, found[:4]))}")
        if found is not None:
            if found in matched:
                raise detections.error(entry.where, f"{found} has two records (also line "
                                                    f"{detections.line(matched[found].where)})")
            matched[found] = entry
    missing = [p for p in pictures if p not in matched]
    if missing:
        raise LabelsError(f"{detections.path}: no record of {missing[0]}"
                          + (f" (nor of {len(missing) - 1} other labelled pictures)" if len(missing) > 1 else ""))
    return [matched[p] for p in pictures]


def model_faces(detections, size: tuple[int, int]) -> Faces:
    """A model's ``Detection`` list (0..1 of the picture) as ``Faces`` in pixels of the picture of ``size``,
    clipped to it (a box that clips to nothing is left out)."""
    width, height = size
    boxes, scores = [], []
    for detection in detections:
        xmin, ymin, xmax, ymax = detection.box
        x0, y0 = max(xmin * width, 0.0), max(ymin * height, 0.0)
        x1, y1 = min(xmax * width, float(width)), min(ymax * height, float(height))
        if x1 > x0 and y1 > y0:
            boxes.append((x0, y0, x1 - x0, y1 - y0))
            scores.append(detection.score)
    return Faces.of(boxes, scores, [False] * len(boxes))


__all__ = ["Pictures", "detection_entries", "faces_of", "given_pictures", "labelled_pictures", "model_faces",
           "picture_size"]
