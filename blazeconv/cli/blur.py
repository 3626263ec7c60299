"""``blur``: faces hidden in photos and videos, written beside nothing of the user's."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from ..anonymise import DEFAULT_HOLD, DEFAULT_MIN_SCORE, DEFAULT_MODEL, DEFAULT_TILE, MIN_TILE, TILE_SHARE
from ..detection.masking import DEFAULT_SCALE, SHAPES, STYLES
from ..detection.tiling import DEFAULT_OVERLAP
from .base import FRACTION, backend_option, cli, model_option, progress, say, variant_option


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
@model_option("blur", default=f"{DEFAULT_MODEL}, which sees small faces")
@variant_option()
@click.option("--min-score", type=FRACTION,
              help=f"Hide detections scoring at least this [default: {DEFAULT_MIN_SCORE:g}, below MediaPipe's].")
@click.option("--tile/--no-tile", default=DEFAULT_TILE, show_default=True,
              help="Also detect on overlapping tiles of each picture (small and distant faces; --no-tile is several "
                   "times faster and misses them).")
@click.option("--tile-size", type=click.IntRange(16), metavar="PX",
              help=f"With tiles: their side [default: the picture's shorter side / {TILE_SHARE:g}, at least "
                   f"{MIN_TILE}].")
@click.option("--tile-overlap", type=click.FloatRange(0, 0.9), metavar="F",
              help=f"With tiles: the share of a tile's side its neighbours overlap [default: {DEFAULT_OVERLAP}].")
@backend_option()
@click.option("--hold", type=click.IntRange(0, 1000), metavar="N",
              help="Videos: a face stays hidden N frames after it was last found and N frames before it is first "
                   f"found (faces missed for a frame or two stay hidden) [default: {DEFAULT_HOLD}].")
@click.option("--crf", type=click.FloatRange(0, 51), default=20, show_default=True,
              help="Videos: H.264 quality (lower is better and bigger; 18 is visually lossless).")
@click.option("--no-audio", "no_audio", is_flag=True,
              help="Videos: write no audio stream (voices identify people too) [default: the audio is copied].")
@click.option("--keep-metadata", is_flag=True,
              help="Photos: keep how the photo was taken (EXIF Make, Model, Orientation (set upright), resolution, "
                   "DateTime, YCbCrPositioning; exposure time, f-number, exposure program and bias, ISO, EXIF "
                   "version, original and digitized times and offsets, shutter speed, aperture, brightness, "
                   "metering, light source, flash, focal lengths, colour space, exposure mode, white balance, "
                   "digital zoom, scene type, lens make and model) and the ICC profile; never GPS, owner, artist, "
                   "copyright, serial numbers, descriptions, comments, software, maker notes, XMP or a path. "
                   "[default: no metadata; videos never keep any but the audio's language].")
@click.option("--boxes-jsonl", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the masked regions as JSON Lines: per photo and per video frame {path, [frame, time,] "
                   "width, height, regions: [[left, top, right, bottom], ...]} in pixels.")
@click.option("--overwrite", is_flag=True,
              help="Replace an existing file of an output's name (-o FILE, or in a folder OUT), not only "
                   "blazeconv's blurred outputs.")
@click.option("-r", "--recursive", is_flag=True, help="Read the folders' subfolders too (hidden ones skipped).")
@click.option("-q", "--quiet", is_flag=True, help="No per-input summary on stdout.")
def blur(inputs, output, style, shape, mask_scale, model, variant_name, min_score, tile, tile_size, tile_overlap,
         backend, hold, crf, no_audio, keep_metadata, boxes_jsonl, overwrite, recursive, quiet) -> None:
    """Hide the faces in photos and videos (files or folders of them): blur, pixelate or fill each face's region.

    Videos keep every frame with its timestamp, the size, the rotation and the audio streams (copied, not
    re-encoded; --no-audio drops them, as voices identify people too); they are written as H.264. Outputs carry
    no metadata of their inputs (no path, name, EXIF, GPS, titles, chapters or subtitles), only a mark that says
    "blazeconv blurred output"; an existing file is replaced only when it is such an output (or with --overwrite).
    Inputs are never written to; each output is written under a temporary name and renamed when complete, so an
    interrupt leaves no half file. A video that stops early (a truncated file) is written with the frames that
    decoded and reported (exit 6). The progress counts frames written; errors come first, then one summary line.

    \b
    Examples:
      blazeconv blur photo.jpg -o photo_blurred.jpg
      blazeconv blur clip.mp4 -o clip_blurred.mp4 --boxes-jsonl boxes.jsonl
      blazeconv blur photos/ clips/ -o anonymised/ --style pixelate
      blazeconv blur photo.jpg -o out.jpg --model my_model.tflite --no-tile
    """
    from .. import anonymise
    from ..detection.files import find_images, nothing_found_hint
    from ..detection.masking import Masking
    from ..detection.video import is_video, open_video, require_video
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
    if not tile and (tile_size is not None or tile_overlap is not None):
        raise click.UsageError("--tile-size and --tile-overlap apply with tiles: not with --no-tile")
    detector = anonymise.detector_for(model=model, variant=variant_name, backend=backend, min_score=min_score,
                                      tile=tile, tile_size=tile_size, tile_overlap=tile_overlap)
    hold = DEFAULT_HOLD if hold is None else hold
    failures, lines, stopped = [], [], 0
    boxes = None
    # Progress counts the frames written: a photo is one, a video as many as its header announces (an estimate, read
    # when the video is opened for its pass: the file is opened once), the total corrected to the frames written
    # when the video ends (a truncated or interrupted one never shows its announced count as done).
    weights = [1] * len(paths)
    with progress(len(paths), "frames written") as bar, \
            (atomic_path(boxes_jsonl) if boxes_jsonl is not None else _Nothing()) as boxes_path:
        if boxes_path is not None:
            boxes = open(boxes_path, "w", encoding="utf-8")
        try:
            for index, (path, target) in enumerate(zip(paths, targets)):
                target.parent.mkdir(parents=True, exist_ok=True)  # inside OUT only (checked before any work)
                counted = [0]

                def on_regions(record, counted=counted, index=index):  # per photo or frame (writer's thread)
                    if boxes is not None:
                        boxes.write(json.dumps(record) + "\n")
                    counted[0] += 1
                    if counted[0] > weights[index]:  # more frames than the header announced
                        weights[index] += 1
                        _grow(bar, 1)
                    bar.update(1)

                try:
                    if index in videos:
                        with open_video(path) as video:
                            weights[index] = _frames_announced(video.info)
                            _grow(bar, weights[index] - 1)
                            done = anonymise.blur_video(video, target, detector=detector, masking=masking, hold=hold,
                                                        crf=crf, on_regions=on_regions, audio=not no_audio)
                    else:
                        done = anonymise.blur_photo(path, target, detector=detector, masking=masking,
                                                    keep_metadata=keep_metadata, on_regions=on_regions)
                except ImageError as exc:
                    failures.append(str(exc))
                    continue
                finally:
                    _grow(bar, counted[0] - weights[index])  # announced frames that were not written leave the total
                if done.error is not None:
                    failures.append(str(done.error))
                    stopped += 1
                line = (f"{path} -> {target}: " + (f"{done.frames} frames, faces hidden in {done.with_faces}"
                                                    if index in videos else f"{done.regions} face(s) hidden"))
                lines.append(line)
                if not quiet:
                    click.echo(line)
        finally:
            if boxes is not None:
                boxes.close()
    # Errors first, then one summary line: the last error line (exit 6) when an input failed.
    for message in failures:
        click.echo(f"Error: {message}", err=True)
    failed = len(failures) - stopped
    summary = (f"{len(lines)} of {len(paths)} input(s) written"
               + (f", {stopped} of them stopped early" if stopped else "") + (f", {failed} failed" if failed else "")
               + f"; model {detector.variant.name}, min score {detector.min_score:g}"
               + (f", hold {hold}" if videos else ""))
    if failures:
        raise ImageError(summary)
    say(summary)


def _frames_announced(info) -> int:
    """The frames a video's header announces (``VideoInfo``: its count, else duration x rate), at least 1."""
    if info.frame_count:
        return info.frame_count
    return max(1, round((info.duration or 0) * (info.fps or 0)))


def _grow(bar, count: int) -> None:
    """``count`` more steps in a ``progress`` bar's total: click's bar, or the plain lines."""
    if hasattr(bar, "length"):
        bar.length += count
    else:
        bar.total += count


class _Nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _targets(paths, videos, inputs, output: Path, boxes_jsonl, overwrite: bool, model=None) -> list[Path]:
    """Each input's output path, checked before any work: one input file -> ``output`` itself; otherwise ``output``
    is a folder and each path is mirrored below it. No output may be an input, and an existing file (``-o FILE`` or
    of a mirrored name) is replaced only when it is a blazeconv blurred output, or with ``overwrite`` (exit 2)."""
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
    if not overwrite:
        elsewhere = "choose another file name" if single else "write into another folder"
        for target in targets:
            if target.exists() and not is_blurred_output(target):
                raise PathUsageError(f"{target}: exists and is not a blazeconv blurred output; add --overwrite to "
                                     f"replace it, or {elsewhere}")
    return targets
