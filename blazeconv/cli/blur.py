"""``blur``: faces hidden in photos and videos, written beside nothing of the user's."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from ..anonymise import DEFAULT_HOLD, DEFAULT_MIN_SCORE, DEFAULT_MODEL
from ..detection.masking import DEFAULT_SCALE, SHAPES, STYLES
from .base import (
    FRACTION,
    backend_option,
    check_scale_options,
    cli,
    model_option,
    progress,
    say,
    scale_options,
    variant_option,
)


@cli.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="One input file: the file to write (its suffix chooses the format; a video as .mp4, .m4v, .mov or "
                   ".mkv). Several inputs or a folder: the folder to write into (created, its parents are not), the "
                   "inputs' paths mirrored below it as --annotate does, photos in their own format, videos as .mp4.")
@click.option("--style", type=click.Choice(STYLES), default="blur", show_default=True,
              help="blur (strong: no feature survives), pixelate (coarse cells) or fill (one colour).")
@click.option("--shape", type=click.Choice(SHAPES), default="ellipse", show_default=True, help="The masked region's shape.")
@click.option("--mask-scale", type=click.FloatRange(1, 10), default=DEFAULT_SCALE, show_default=True, metavar="F",
              help="The masked region's side over the detected box's (the box stops at the brows and the chin).")
@model_option("blur", default=DEFAULT_MODEL)
@variant_option()
@click.option("--min-score", type=FRACTION,
              help=f"Hide detections scoring at least this [default: {DEFAULT_MIN_SCORE:g}, below MediaPipe's].")
@scale_options(min_face_help="")
@backend_option()
@click.option("--hold", type=click.IntRange(0, 1000), metavar="N",
              help="Videos: a face stays hidden N frames after it was last found and N frames before it is first "
                   f"found (faces missed for a frame or two stay hidden) [default: {DEFAULT_HOLD}].")
@click.option("--crf", type=click.FloatRange(0, 51), default=20, show_default=True,
              help="Videos: H.264 quality (lower is better and bigger; 18 is visually lossless).")
@click.option("--keep-metadata", is_flag=True,
              help="Photos: keep the EXIF block (without GPS, orientation upright) and the ICC profile [default: "
                   "written without any metadata].")
@click.option("--boxes-jsonl", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the masked regions as JSON Lines: per photo and per video frame {path, [frame, time,] "
                   "width, height, regions: [[left, top, right, bottom], ...]} in pixels.")
@click.option("--overwrite", is_flag=True,
              help="In a folder OUT: replace any file of an output's name, not only blazeconv's blurred outputs.")
@click.option("-r", "--recursive", is_flag=True, help="Read the folders' subfolders too (hidden ones skipped).")
@click.option("-q", "--quiet", is_flag=True, help="No per-input summary on stdout.")
def blur(inputs, output, style, shape, mask_scale, model, variant_name, min_score, exact, tile, min_face, tile_size,
         tile_overlap, fast_decode, backend, hold, crf, keep_metadata, boxes_jsonl, overwrite, recursive, quiet) -> None:
    """Hide the faces in photos and videos (files or folders of them): blur, pixelate or fill each face's region.

    Videos keep every frame with its timestamp, the size, the rotation and the audio streams (copied, not
    re-encoded); they are written as H.264. Inputs are never written to; each output is written under a temporary
    name and renamed when complete, so an interrupt leaves no half file. A video that stops early (a truncated
    file) is written with the frames that decoded and reported (exit 6).

    \b
    Examples:
      blazeconv blur photo.jpg -o photo_blurred.jpg
      blazeconv blur clip.mp4 -o clip_blurred.mp4 --boxes-jsonl boxes.jsonl
      blazeconv blur photos/ clips/ -o anonymised/ --style pixelate
      blazeconv blur photo.jpg -o out.jpg --model my_model.tflite --no-tile
      blazeconv blur classroom.mp4 -o hidden.mp4 --min-face 8              # faces down to 8 px
    """
    from .. import anonymise
    from ..detection.files import find_images, nothing_found_hint
    from ..detection.masking import Masking
    from ..detection.video import is_video, require_video
    from ..errors import ImageError
    from ..io import atomic_path

    paths = find_images(inputs, recursive=recursive)
    if not paths:
        raise click.UsageError("no image or video files found in " + ", ".join(str(i) for i in inputs) +
                               nothing_found_hint(inputs))
    videos = {i for i, path in enumerate(paths) if is_video(path)}
    if videos:
        require_video()
    if not videos and hold is not None:
        raise click.UsageError("--hold applies to videos: none of the inputs is a video")
    targets = _targets(paths, videos, inputs, output, boxes_jsonl, overwrite, model)
    masking = Masking(style, shape, mask_scale).check()
    check_scale_options(exact, tile, min_face, tile_size, tile_overlap, fast_decode)
    detector = anonymise.detector_for(model=model, variant=variant_name, backend=backend, min_score=min_score,
                                      exact=exact or None, tile=tile, min_face=min_face, tile_size=tile_size,
                                      tile_overlap=tile_overlap, fast_decode=fast_decode)
    hold = DEFAULT_HOLD if hold is None else hold
    failures, lines = [], []
    boxes = None
    # Progress counts frames: a photo is one, a video as many as its header announces (an estimate: the bar moves on).
    weights = [_frames_announced(path) if index in videos else 1 for index, path in enumerate(paths)]
    with progress(sum(weights), "blurring") as bar, \
            (atomic_path(boxes_jsonl) if boxes_jsonl is not None else _Nothing()) as boxes_path:
        if boxes_path is not None:
            boxes = open(boxes_path, "w", encoding="utf-8")
        try:
            for index, (path, target) in enumerate(zip(paths, targets)):
                target.parent.mkdir(parents=True, exist_ok=True)  # inside OUT only (checked before any work)
                counted, size = [0], []

                def on_regions(record, counted=counted, expected=weights[index], size=size):  # per photo or frame
                    size[:] = [record["width"], record["height"]]  # (on the video writer's thread)
                    if boxes is not None:
                        boxes.write(json.dumps(record) + "\n")
                    if counted[0] < expected:
                        counted[0] += 1
                        bar.update(1)

                try:
                    if index in videos:
                        done = anonymise.blur_video(path, target, detector=detector, masking=masking, hold=hold,
                                                    crf=crf, on_regions=on_regions)
                    else:
                        done = anonymise.blur_photo(path, target, detector=detector, masking=masking,
                                                    keep_metadata=keep_metadata, on_regions=on_regions)
                except ImageError as exc:
                    failures.append(str(exc))
                    continue
                finally:
                    bar.update(weights[index] - counted[0])  # what the header announced and did not come
                if done.error is not None:
                    failures.append(str(done.error))
                line = (f"{path} -> {target}: " + (f"{done.frames} frames, faces hidden in {done.with_faces}"
                                                    if index in videos else f"{done.regions} face(s) hidden"))
                lines.append(line)
                if not quiet:
                    click.echo(line)
                hint = detector.settings.small_faces_hint(detector.variant, *size) if size and not done.regions \
                    and not quiet else None
                if hint is not None:
                    say(f"hint: {path}: no face found; {hint}")
        finally:
            if boxes is not None:
                boxes.close()
    say(f"{len(lines)} of {len(paths)} input(s) written, model {detector.variant.name}, min score {detector.min_score:g}"
        + (f", hold {hold}" if videos else ""))
    if failures:
        for message in failures[:-1]:
            click.echo(f"Error: {message}", err=True)
        raise ImageError(failures[-1] if len(failures) == 1 else f"{failures[-1]} ({len(failures)} inputs failed)")


def _frames_announced(path: Path) -> int:
    """The frames a video's header announces (its count, else duration x rate), at least 1; 1 when it cannot tell."""
    from ..detection.video import probe
    from ..errors import ImageError

    try:
        info = probe(path)
    except ImageError:
        return 1  # reported when it is read
    if info.frame_count:
        return info.frame_count
    return max(1, round((info.duration or 0) * (info.fps or 0)))


class _Nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _targets(paths, videos, inputs, output: Path, boxes_jsonl, overwrite: bool, model=None) -> list[Path]:
    """Each input's output path, checked before any work: one input file -> ``output`` itself (replaced if it
    exists, as an explicitly named output is); otherwise ``output`` is a folder and each path is mirrored below
    it; no output may be an input, and a file of a mirrored name is replaced only when it is a blazeconv blurred
    output, or with ``overwrite``."""
    from ..anonymise import PHOTO_FORMATS, is_blurred_output
    from ..detection.video_annotation import FORMATS
    from ..io import PathUsageError, check_folder, mirrored_paths, refuse_overwriting

    single = len(paths) == 1 and len(inputs) == 1 and not Path(inputs[0]).is_dir()
    if single:
        if output.is_dir():
            raise PathUsageError(f"-o {output}: is a folder; for one input file give the file to write")
        formats = FORMATS if videos else PHOTO_FORMATS
        if output.suffix.lower() not in formats:
            kind = "a video" if videos else "a photo"
            raise PathUsageError(f"-o {output}: {kind} is written as {', '.join(formats)}, not "
                                 f"{output.suffix or 'a file without a suffix'}")
        check_folder(output)
        targets = [output]
    else:
        if output.exists() and not output.is_dir():
            raise PathUsageError(f"-o {output}: not a folder; several inputs are written into a folder")
        if not output.is_dir():
            check_folder(output)
        video_paths = {Path(os.path.abspath(paths[i])) for i in videos}  # mirrored_paths passes absolute paths
        targets = mirrored_paths(paths, output, lambda p: ".mp4" if p in video_paths else
                                 (p.suffix.lower() if p.suffix.lower() in PHOTO_FORMATS else ".png"))
    outputs = [("output", t) for t in targets] + ([("--boxes-jsonl", boxes_jsonl)] if boxes_jsonl else [])
    if boxes_jsonl is not None:
        check_folder(boxes_jsonl)
    model_file = [("--model", model.path)] if model is not None and model.kind != "shipped" else []
    refuse_overwriting(outputs, [("input", p) for p in paths] + model_file)
    if not single and not overwrite:
        for target in targets:
            if target.exists() and not is_blurred_output(target):
                raise PathUsageError(f"{target}: exists and is not a blazeconv blurred output; add --overwrite to "
                                     "replace it, or write into another folder")
    return targets
