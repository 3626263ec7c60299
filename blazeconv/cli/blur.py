"""``blur``: faces hidden in photos and videos, written beside nothing of the user's."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from ..anonymise import DEFAULT_HOLD, DEFAULT_MIN_SCORE, DEFAULT_MODEL
from ..detection.masking import DEFAULT_SCALE, SHAPES, STYLES
from .base import (
    EVERY_OR_AUTO,
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
@click.option("--track", is_flag=True,
              help="Videos: masks follow each face's track (where it is on the frame and the frames next to it, "
                   "interpolated across a miss, held and moved on past its ends) instead of covering every box "
                   "within --hold. Needs blazeconv[track] (docs/tracks.md).")
@click.option("--detect-every", type=click.IntRange(1), default=1, show_default=True, metavar="N",
              help="Videos, implies --track: run the model on every N-th frame only (keyframes) and mask the frames "
                   "between along the tracks. Faster, but a face that appears and leaves between two keyframes is "
                   "not hidden; 1 looks at every frame (docs/tracks.md).")
@click.option("--fine-every", type=EVERY_OR_AUTO, default="auto", show_default=True, metavar="K|auto",
              help="Videos: look at every frame whole and at the finer tiles only every K-th frame (fine keyframes), "
                   "every mask held K - 1 frames longer so the faces only the tiles find stay hidden between. auto: "
                   "the frames of 0.15 s (4 at 30 fps, at most 8; 1 with --exact, --no-tile or --detect-every). A "
                   "small face that appears and leaves between two fine keyframes is not hidden: 1 looks at every "
                   "level on every frame (docs/tracks.md).")
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
def blur(inputs, output, style, shape, mask_scale, model, variant_name, min_score, exact, tile, min_face, tile_size,
         tile_overlap, fast_decode, backend, hold, track, detect_every, fine_every, crf, no_audio, keep_metadata, boxes_jsonl,
         overwrite, recursive,
         quiet) -> None:
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
      blazeconv blur classroom.mp4 -o hidden.mp4 --min-face 8              # faces down to 8 px
      blazeconv blur clip.mp4 -o clip_blurred.mp4 --track                  # masks follow the faces
    """
    from ..blurring import BlurRun
    from ..detection.masking import Masking

    check_scale_options(exact, tile, min_face, tile_size, tile_overlap, fast_decode)
    chosen = fine_every != "auto"
    if chosen and fine_every > 1 and (exact or tile is False):
        raise click.UsageError(f"--fine-every looks at the tiles on fine keyframes: not with "
                               f"{'--exact' if exact else '--no-tile'}")
    if chosen and fine_every > 1 and detect_every > 1:
        raise click.UsageError("--fine-every and --detect-every both choose keyframes: give one of them")
    run = BlurRun(inputs, output, masking=Masking(style, shape, mask_scale), hold=hold, crf=crf, audio=not no_audio,
                  keep_metadata=keep_metadata, boxes_jsonl=boxes_jsonl, overwrite=overwrite, recursive=recursive,
                  track=track, detect_every=detect_every,
                  model=model, variant=variant_name, backend=backend, min_score=min_score, exact=exact or None,
                  tile=tile, min_face=min_face, tile_size=tile_size, tile_overlap=tile_overlap,
                  fast_decode=fast_decode, fine_every=fine_every)
    # Progress counts the frames written: a photo is one, a video as many as its header announces (read when the
    # video is opened for its pass), the total corrected to the frames written when the video ends.
    with progress(0, "frames written") as bar:
        def on_frames(written: int, announced: int) -> None:
            _grow(bar, announced)
            bar.update(written)

        with contextlib.closing(run.run(on_frames)) as results:
            for done in results:
                if not quiet and done.done is not None:
                    click.echo(f"{done.path} -> {done.target}: " + (
                        f"{done.done.frames} frames, faces hidden in {done.done.with_faces}" if done.video
                        else f"{done.done.regions} face(s) hidden"))
                hint = None if quiet else run.no_face_hint(done)
                if hint is not None:
                    say(hint)
    # Errors first, then one summary line: the last error line (exit 6) when an input failed.
    for message in run.failures:
        click.echo(f"Error: {message}", err=True)
    if run.failures:
        raise run.failure()
    say(run.summary())


def _grow(bar, count: int) -> None:
    """``count`` more steps in a ``progress`` bar's total: click's bar, or the plain lines."""
    if hasattr(bar, "length"):
        bar.length += count
    else:
        bar.total += count
