"""``eval``: recall, precision and AP of detections against labelled faces (``blazeconv.evaluation``)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..detection.settings import DEFAULT_BATCH_SIZE
from ..variants import DEFAULT_MODEL
from .base import (
    FRACTION,
    backend_option,
    check_outputs,
    check_scale_options,
    cli,
    given_options,
    model_option,
    needs_extra,
    progress,
    scale_options,
    thresholds_help,
    variant_option,
)

_FORMATS = click.Choice(["auto", "wider", "coco", "dlib", "blazeconv"])
# The options of a model run, as detect has them: given with --detections, they are refused.
_RUN_OPTIONS = ("model", "variant_name", "backend", "batch_size", "exact", "tile", "tile_size", "tile_overlap",
                "fast_decode")


@cli.command("eval")
@needs_extra("eval")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--labels", "labels_path", required=True, type=click.Path(path_type=Path),
              help="The labelled faces: WIDER FACE txt (RetinaFace's 5-landmark variant too), COCO JSON, dlib imglab "
                   "XML, or blazeconv detect --json/--jsonl output (any detector's answers as the reference).")
@click.option("--labels-format", type=_FORMATS, default="auto", show_default=True,
              help="The format of --labels (auto: by its content).")
@click.option("--detections", "detections_path", type=click.Path(path_type=Path),
              help="Score the detections in this file (any of the label formats; scores where the format has them) "
                   "instead of running a model.")
@click.option("--detections-format", type=_FORMATS, default="auto", show_default=True,
              help="The format of --detections (auto: by its content).")
@model_option("eval", default=DEFAULT_MODEL)
@variant_option()
@backend_option()
@click.option("--min-score", type=FRACTION,
              help=f"With a model: keep detections scoring at least this [default: the model's: {thresholds_help()}]."
                   " With --detections: leave out those scoring less [default: keep all].")
@click.option("--batch-size", type=click.IntRange(1, 1024),
              help=f"Model inputs per forward pass [default: {DEFAULT_BATCH_SIZE}].")
@scale_options(min_face_help=" (with a model); labelled faces under PX, and detections under PX that match no label, "
                             "are not counted (COCO's area-range rule; with --detections, only that) [default for "
                             "counting: every face]")
@click.option("--iou", type=FRACTION, default=0.5, show_default=True,
              help="A detection matches a labelled face at IoU >= this (0 excluded); AP50 is always at 0.5.")
@click.option("--json", "json_path", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
              help="Also write the figures as JSON (recall, precision, ap50, ap, counts, bands) to this file, or - "
                   "for stdout (then without the table).")
@click.option("-q", "--quiet", is_flag=True, help="No table on stdout.")
def eval_command(images, labels_path, labels_format, detections_path, detections_format, model, variant_name,
                 backend, min_score, batch_size, exact, tile, min_face, tile_size, tile_overlap, fast_decode, iou,
                 json_path, quiet) -> None:
    """Score face detections against labelled faces: recall, precision and average precision at IoU 0.5 (--iou),
    for all faces and per face size, computed by pycocotools' COCOeval (pip install 'blazeconv[eval]').

    IMAGES are the labelled pictures, folders holding them, or the folder the labels' relative paths start from;
    given only files, just those are scored. The detections are a model's, run with detect's settings (its
    defaults by default), or read from --detections.

    Face sizes are banded by the labelled box's longer side: <16, 16-32, 32-64, 64-128, >=128 px (low <= side <
    high). Within a band, COCO's area-range rules: a label of another size is ignored, and so is a detection of
    another size that matches nothing. Recall is labels matched over labels counted; precision, detections
    matched over detections counted, both at the detections' own threshold (every detection given); AP is COCO's
    101-point interpolated average precision over the detections given (with a model: those above --min-score).
    Ignore regions (dlib ignore, WIDER FACE invalid, COCO iscrowd) count neither way.

    \b
    Examples:
      blazeconv eval photos/ --labels photos/training.xml
      blazeconv eval photos/ --labels training.xml --model short_range --exact --json scores.json
      blazeconv eval WIDER_val/images --labels wider_face_val_bbx_gt.txt --min-face 16
      blazeconv eval photos/ --labels training.xml --detections other_detector.jsonl --min-score 0.5
    """
    from ..detection.settings import DetectionSettings
    from ..evaluation import evaluate

    given = given_options(*_RUN_OPTIONS)
    if detections_path is not None and given:
        names = ", ".join("--" + name.replace("_name", "").replace("_", "-") for name in given)
        raise click.UsageError(f"{names}: options of a model run, not of --detections")
    check_scale_options(exact, tile, None, tile_size, tile_overlap, fast_decode)  # --min-face also counts: any run
    if json_path is not None and str(json_path) != "-":
        check_outputs([("--json", json_path)], [("--labels", labels_path), ("--detections", detections_path),
                                                *(("IMAGES", Path(i)) for i in images)])
    settings = None
    if detections_path is None:
        settings = DetectionSettings.of(
            model=model, variant=variant_name, backend=backend, min_score=min_score, batch_size=batch_size,
            exact=exact or None, tile=tile, tile_size=tile_size, tile_overlap=tile_overlap, fast_decode=fast_decode,
            min_face=min_face if tile is not False and not exact and tile_size is None else None)
    bar = []  # made at the first picture, when the count is known

    def advance(path, done, total):
        if not bar:
            bar.append(progress(total, "detecting").__enter__())
        bar[0].update(1)

    try:
        result = evaluate(images, labels_path, detections=detections_path, settings=settings, iou=iou,
                          min_face=min_face or 0.0, min_score=min_score if detections_path is not None else None,
                          labels_format=labels_format, detections_format=detections_format, on_picture=advance)
    finally:
        if bar:
            bar[0].__exit__(None, None, None)
    document = json.dumps(result.to_dict(), indent=2)
    if json_path is not None and str(json_path) == "-":
        click.echo(document)
    elif json_path is not None:
        from ..io import atomic_path

        with atomic_path(json_path) as tmp:
            tmp.write_text(document + "\n")
    if not quiet and str(json_path) != "-":
        click.echo(result.table())
