"""Where a detect run writes (``DetectOutputs``), and the checks made before any work: folders exist, no output is an
input or the model file, and a file there is replaced only when blazeconv wrote it of the same input."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from .io import PathUsageError


@dataclass(frozen=True)
class DetectOutputs:
    """Where a detect run writes, besides what the caller prints.

    ``json``: one JSON document at the end (``"-"``: returned for stdout, not written); ``jsonl``: one record per
    image or video frame as results come, after a settings record (``"-"``: stdout); ``resume``: continue ``jsonl``
    (``detection.results.JsonlResults``). ``annotate``: a folder for annotated copies (JPEG ``annotate_quality``,
    longer side at most ``annotate_size``); ``crops``: a folder for aligned face crops (``crop_size`` px,
    ``margin``, faces of at least ``min_face`` px; with tracks, one folder per track, and ``best`` keeps the N best
    crops of each: ``CropWriter``); ``overwrite``: replace files there that blazeconv did not write of the same input.
    """

    json: Path | str | None = None
    jsonl: Path | str | None = None
    resume: bool = False
    annotate: Path | None = None
    annotate_quality: int = 90
    annotate_size: int | None = None
    crops: Path | None = None
    crop_size: int = 112
    margin: float = 0.25
    min_face: float = 0.0
    overwrite: bool = False
    best: int | None = None


def check_outputs(paths, videos, model, outputs: DetectOutputs) -> list[Path]:
    """The outputs checked before any work; returns each input's annotation path (none without annotations).

    Folders must exist (the annotation folder: its parent), no output may be an input (nor the model file), no two
    inputs may share an annotation, and an existing file of an annotation's name is replaced only when blazeconv
    wrote it as the annotation of the same input, or with ``overwrite``. A video's annotation is ``.mp4``.
    """
    from .detection.drawing import annotation_suffix
    from .io import check_folder, mirrored_paths, refuse_overwriting

    files = [(label, Path(path)) for label, path in (("--json", outputs.json), ("--jsonl", outputs.jsonl))
             if path is not None and str(path) != "-"]
    for _, path in files:
        check_folder(path)
    annotations = []
    annotate_dir = outputs.annotate
    if annotate_dir is not None:
        if not annotate_dir.is_dir():
            check_folder(annotate_dir)
        video_paths = {Path(os.path.abspath(paths[i])) for i in videos}  # mirrored_paths passes absolute paths
        annotations = mirrored_paths(paths, annotate_dir,
                                     lambda p: ".mp4" if p in video_paths else annotation_suffix(p))
    from .sources import resolve

    source = resolve(model)
    model_file = [("--model", source.path)] if source.kind not in ("shipped", "module", "runner") else []
    refuse_overwriting(files + [("annotation", a) for a in annotations], [("input", p) for p in paths] + model_file)
    if not outputs.overwrite:
        for index, (path, annotation) in enumerate(zip(paths, annotations)):
            if annotation.exists() and not _is_annotation(annotation, path, index in videos):
                raise PathUsageError(f"{annotation}: exists and is not blazeconv's annotation of {path}; "
                                     "add --overwrite to replace it, or annotate into another folder")
    return annotations


def check_crops(paths, crops_dir: Path, overwrite: bool) -> dict[Path, str]:
    """The crops folder checked before any work: its parent exists, and no input's subfolder holds a file that is
    not blazeconv's crop of that input (unless ``overwrite``). Returns each input's subfolder name."""
    from .detection.cropping import INDEX_NAME, is_crop_of
    from .io import check_folder, mirrored_paths

    if not crops_dir.is_dir():
        check_folder(crops_dir)
    names = {path: folder.relative_to(crops_dir).as_posix()
             for path, folder in zip(paths, mirrored_paths(paths, crops_dir, lambda p: ""))}
    if names and INDEX_NAME in names.values():
        raise PathUsageError(f"{crops_dir / INDEX_NAME}: an input's crops would go into the index's place")
    for path, name in names.items():
        folder = crops_dir / name
        if overwrite or not folder.is_dir():
            continue
        items = sorted(folder.iterdir())
        items += [i for track in items if track.is_dir() and track.name.startswith("track_")
                  for i in sorted(track.iterdir())]
        for item in items:
            if item.is_dir() and item.name.startswith("track_"):
                continue
            if not is_crop_of(item, path):
                raise PathUsageError(f"{item}: exists and is not blazeconv's crop of {path}; add --overwrite to "
                                     "replace such files, or write the crops into another folder")
    return names


def crop_writer(outputs: DetectOutputs, names):
    """The run's ``CropWriter`` (a context manager), or a null context giving None."""
    if outputs.crops is None:
        return contextlib.nullcontext()
    from .detection.cropping import CropWriter

    return CropWriter(outputs.crops, names=names, size=outputs.crop_size, margin=outputs.margin,
                      min_face=outputs.min_face, overwrite=outputs.overwrite, best=outputs.best)


def _is_annotation(annotation: Path, source: Path, video: bool) -> bool:
    """Whether ``annotation`` is blazeconv's annotation of ``source`` (a photo's or, with ``video``, a video's)."""
    if video:
        from .detection.video_annotation import is_video_annotation_of

        return is_video_annotation_of(annotation, source)
    from .detection.drawing import is_annotation_of

    return is_annotation_of(annotation, source)


__all__ = ["DetectOutputs", "check_crops", "check_outputs", "crop_writer"]
