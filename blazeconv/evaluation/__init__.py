"""How well detections find labelled faces: ``evaluate`` (``blazeconv eval``).

    import blazeconv
    result = blazeconv.evaluate(["photos/"], "labels.xml")                   # the default model, detect's defaults
    result = blazeconv.evaluate(["photos/"], "labels.xml", model="full_range_sparse", tile=True)
    result = blazeconv.evaluate(["photos/"], "labels.xml", detections="faces.jsonl")   # any detector's output
    result.recall, result.precision, result.ap50, result.to_dict(), print(result.table())

``labels`` (the file formats, found by content; read by ``text_formats`` and ``json_formats`` into the form of
``boxes``), ``pictures`` (finding the pictures, boxes in pixels), ``metrics`` (the figures, by pycocotools' COCOeval:
what each one is, the face-size bands, ``min_face``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..detection.settings import DetectionSettings
from ..errors import OptionsError, require
from .labels import FORMATS, BoxFile, read_boxes
from .metrics import DEFAULT_BANDS, EXTRA, Band, Evaluation, Faces, Scores, score


def evaluate(
    images: str | Path | Sequence[str | Path],
    labels: str | Path,
    *,
    detections: str | Path | None = None,
    settings: DetectionSettings | None = None,
    iou: float = 0.5,
    min_face: float = 0.0,
    min_score: float | None = None,
    labels_format: str = "auto",
    detections_format: str = "auto",
    bands: Sequence[Band] = DEFAULT_BANDS,
    on_picture: Callable[[Path, int, int], None] | None = None,
    **options: Any,
) -> Evaluation:
    """Score detections against the faces labelled in ``labels`` on ``images`` (``metrics`` says how).

    ``images``: the pictures (files), or folders holding them, or the folder the labels' relative paths start from
    (``pictures`` says how each labelled picture is found; with files only, just those are scored). ``labels``: a
    file in one of ``labels.FORMATS`` (``labels_format``; ``"auto"``: by content). The detections come from
    ``detections``, a file in any of those formats (``detections_format``), or else from a model run on the
    pictures with ``settings`` (``DetectionSettings``; ``options``: its fields as keywords, e.g. ``model=``,
    ``tile=``: the same run as ``detect``'s, its defaults by default). ``min_score``: with a model, the run's
    threshold (None: the model's); with a file, detections scoring less are left out (None: all kept).
    ``iou``: a detection matches a label at IoU >= this; ``min_face``: labels (and unmatched detections) whose
    longer side is under this many pixels are ignored; ``bands``: the face-size bands. ``on_picture(path, done, total)`` is
    called as each picture's detections are ready (progress).

    Before any detection, every label is read and checked against its picture: ``LabelsError`` (exit 2) naming
    the file and line of a file in no known format, a picture not found, a box outside its picture.
    ``MissingDependencyError`` (exit 8) without pycocotools (``blazeconv[eval]``).
    """
    from .pictures import detection_entries, faces_of, labelled_pictures, picture_size

    require("pycocotools", EXTRA, "scoring detections (blazeconv eval)")
    if detections is not None and (settings is not None or options):
        given = ", ".join(["settings"] * (settings is not None) + sorted(options))
        raise OptionsError(f"detection settings ({given}) apply to a model run, not to detections read from a file")
    images = [images] if isinstance(images, (str, Path)) else list(images)
    label_file = read_boxes(labels, labels_format)
    labelled = labelled_pictures(label_file, images)
    sizes = [picture_size(path) for path, _ in labelled]
    truth = [faces_of(entry, size, label_file, path) for (path, entry), size in zip(labelled, sizes)]
    if detections is not None:
        found_file = read_boxes(detections, detections_format)
        entries = detection_entries(found_file, labelled)
        found = [_at_least(faces_of(entry, size, found_file, path), min_score)
                 for (path, _), entry, size in zip(labelled, entries, sizes)]
        source = {"path": str(found_file.path), "format": found_file.format, "min_score": min_score}
    else:
        found, source = _detect([path for path, _ in labelled], sizes, settings, min_score, options, on_picture)
    result = score(truth, found, iou=iou, min_face=min_face, bands=bands)
    from dataclasses import replace

    return replace(result, labels={"path": str(label_file.path), "format": label_file.format}, source=source)


def _at_least(faces: Faces, min_score: float | None) -> Faces:
    if min_score is None:
        return faces
    keep = faces.scores >= float(min_score)
    return Faces(faces.boxes[keep], faces.scores[keep], faces.ignore[keep])


def _detect(paths, sizes, settings, min_score, options, on_picture) -> tuple[list[Faces], dict]:
    """Run the model of ``settings`` (with ``options``) over ``paths`` as ``detect`` does (``stream_files``): the
    detections as ``Faces``, and the run's settings record."""
    from ..detection.pipeline import resolve_variant, stream_files
    from .pictures import model_faces

    settings = DetectionSettings.of(settings, min_score=min_score, **options)
    runner = settings.make_runner()
    variant = resolve_variant(runner, settings.variant)
    settings = settings.replace(variant=variant)
    found = []
    for done, (result, size) in enumerate(zip(stream_files(runner, paths, settings), sizes), 1):
        if result.error is not None:
            raise result.error
        if (result.width, result.height) != size:  # the labels were checked against the size detect sees
            raise RuntimeError(f"{result.path}: decoded as {result.width}x{result.height}, its header said {size}")
        found.append(model_faces(result.detections, size))
        if on_picture is not None:
            on_picture(result.path, done, len(paths))
    return found, {"settings": settings.record(variant, getattr(runner, "backend", settings.backend))}


__all__ = ["DEFAULT_BANDS", "FORMATS", "Band", "BoxFile", "Evaluation", "Faces", "Scores", "evaluate", "read_boxes",
           "score"]
