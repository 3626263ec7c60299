"""The JSON formats: COCO's (a dataset, or a results list) and blazeconv's ``detect --json`` / ``--jsonl``
(``labels`` describes both)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import LabelsError
from .boxes import BadEntry, FileBox, FileImage, Where, file_box, finite, stated_size

# ------------------------------------------------------------------------------------ JSON: COCO and blazeconv's


def json_document(path: Path, text: str, format: str):
    """The parsed JSON document, or for blazeconv's JSON lines a list of ``(line, record)``."""
    try:
        return json.loads(text)
    except ValueError as exc:
        if format == "blazeconv" and text.lstrip().startswith("{"):
            return _json_lines(path, text)
        raise LabelsError(f"{path} line {exc.lineno}: not JSON ({exc.msg}), so not {format}'s format"
                          if isinstance(exc, json.JSONDecodeError) else f"{path}: not JSON, so not {format}'s format"
                          ) from None


def _json_lines(path: Path, text: str) -> list[tuple[int, dict]]:
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise LabelsError(f"{path} line {number}: not a JSON object, so neither blazeconv's --json document nor "
                              "its --jsonl records") from None
        if not isinstance(record, dict):
            raise LabelsError(f"{path} line {number}: not a JSON object, so not a blazeconv --jsonl record")
        records.append((number, record))
    return records


def read_coco(path: Path, document) -> tuple[list[FileImage], bool]:
    """A COCO dataset's pictures and face boxes, or a COCO results list's (then ``True``: named by image id)."""
    if isinstance(document, list):
        return _read_coco_results(document), True
    if not isinstance(document, dict) or not isinstance(document.get("images"), list) or not isinstance(
            document.get("annotations"), list):
        raise BadEntry((), "not a COCO dataset (an object with 'images' and 'annotations' lists) nor a COCO results list")
    faces = _face_categories(document)
    images, by_id = [], {}
    for index, entry in enumerate(document["images"]):
        where = ("images", index)
        if not isinstance(entry, dict) or not isinstance(entry.get("file_name"), str) or "id" not in entry:
            raise BadEntry(where, "a COCO image needs 'id' and 'file_name'")
        if entry["id"] in by_id:
            raise BadEntry(where, f"image id {entry['id']!r} is given twice")
        image = FileImage(entry["file_name"], where, stated_size(entry.get("width"), where, "width"),
                          stated_size(entry.get("height"), where, "height"), image_id=entry["id"])
        images.append(image)
        by_id[entry["id"]] = image
    for index, annotation in enumerate(document["annotations"]):
        where = ("annotations", index)
        if not isinstance(annotation, dict):
            raise BadEntry(where, "an annotation is not an object")
        if faces is not None and annotation.get("category_id") not in faces:
            continue
        image = by_id.get(annotation.get("image_id"))
        if image is None:
            raise BadEntry(where, f"image_id {annotation.get('image_id')!r} is none of the file's images")
        image.boxes.append(_cocofile_box(annotation, where))
    return images, False


def _face_categories(document: dict) -> set | None:
    """The category ids that are faces: None (every annotation) with at most one category, else those named face."""
    categories = document.get("categories") or []
    if len(categories) <= 1:
        return None
    faces = {c.get("id") for c in categories if isinstance(c, dict) and str(c.get("name", "")).lower() == "face"}
    if not faces:
        names = ", ".join(str(c.get("name")) for c in categories if isinstance(c, dict))
        raise BadEntry(("categories",), f"several categories ({names}) and none named 'face'")
    return faces


def _cocofile_box(annotation: dict, where: Where) -> FileBox:
    bbox = annotation.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise BadEntry(where, f"'bbox' is {bbox!r}, not [x, y, width, height]")
    ignore = bool(annotation.get("iscrowd")) or bool(annotation.get("ignore"))
    return file_box(*bbox, where, score=annotation.get("score"), ignore=ignore)


def _read_coco_results(document: list) -> list[FileImage]:
    images: dict = {}
    for index, result in enumerate(document):
        where = (index,)
        if not isinstance(result, dict) or "image_id" not in result:
            raise BadEntry(where, "not a COCO result (an object with 'image_id', 'bbox' and 'score')")
        image = images.setdefault(result["image_id"], FileImage(None, where, image_id=result["image_id"]))
        image.boxes.append(_cocofile_box(result, where))
    return list(images.values())


def read_blazeconv(path: Path, document) -> tuple[list[FileImage], bool]:
    """The photo records of a ``detect --json`` document or of ``--jsonl`` lines (``json_document``'s list)."""
    if isinstance(document, list):  # JSON lines
        records = [(number, record) for number, record in document if "blazeconv_settings" not in record]
    elif isinstance(document, dict) and isinstance(document.get("images"), list):
        records = [(("images", index), record) for index, record in enumerate(document["images"])]
    elif isinstance(document, dict) and "path" in document:  # one --jsonl record alone
        records = [(1, document)]
    else:
        raise BadEntry((), "neither COCO (images, annotations) nor blazeconv's detect --json (images with detections)")
    images = []
    for where, record in records:
        if not isinstance(record, dict) or not isinstance(record.get("path"), str):
            raise BadEntry(where, "not a blazeconv record (an object with 'path')")
        if "frame" in record:
            continue  # a video frame: eval scores photos
        if "error" in record:
            images.append(FileImage(record["path"], where, error=str(record["error"])))
            continue
        detections = record.get("detections")
        if not isinstance(detections, list):
            raise BadEntry(where, f"{record['path']}: no 'detections' list")
        image = FileImage(record["path"], where, stated_size(record.get("width"), where, "width"),
                          stated_size(record.get("height"), where, "height"), relative=True)
        for index, detection in enumerate(detections):
            box = detection.get("box") if isinstance(detection, dict) else None
            inner = where + ("detections", index) if isinstance(where, tuple) else where
            if not isinstance(box, list) or len(box) != 4:
                raise BadEntry(inner, f"{record['path']}: a detection's 'box' is {box!r}, not [xmin, ymin, xmax, ymax]")
            xmin, ymin, xmax, ymax = (finite(v, inner, "a box value") for v in box)
            image.boxes.append(file_box(xmin, ymin, xmax - xmin, ymax - ymin, inner, score=detection.get("score"),
                                        ignore=bool(detection.get("ignore")), keypoints=detection.get("keypoints")))
        images.append(image)
    if not images and records:
        raise BadEntry(records[0][0], "no photo records (video frames are not scored)")
    return images, False



__all__ = ["json_document", "read_blazeconv", "read_coco"]
