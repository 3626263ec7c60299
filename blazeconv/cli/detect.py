"""``detect``: faces in images and folders of images, in this process or on Ray."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..detection.settings import DEFAULT_BATCH_SIZE
from ..variants import DEFAULT_MODEL
from .base import (
    FRACTION,
    backend_option,
    check_scale_options,
    cli,
    given_options,
    model_option,
    progress,
    renamed,
    say,
    scale_options,
    thresholds_help,
    variant_option,
)


@cli.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@model_option("detect", default=DEFAULT_MODEL)
@variant_option()
@click.option("--min-score", type=FRACTION,
              help=f"Keep detections scoring at least this [default: MediaPipe's for the model: {thresholds_help()}].")
@click.option("--json", "json_path", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
              help="Write the detections as one JSON document to this file, or - for stdout; written at the end, "
                   "also when every image failed (with 'errors'), never after an interrupt.")
@click.option("--jsonl", "jsonl_path", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
              help="Write one JSON object per image as results come (the fields of a --json entry; 'path' and "
                   "'error' for an image that failed) to this file, or - for stdout; a file starts with a line "
                   "recording the settings. An interrupted run keeps every finished image. An existing non-empty "
                   "file is continued only with --resume; a file another run is writing is refused.")
@click.option("--resume", is_flag=True,
              help="With --jsonl FILE: skip the images already in FILE (the same files, however their paths are "
                   "written) and append the rest; a line cut short by a kill is redone. Refused when FILE was "
                   "written with other settings (model, backend, thresholds, scale and decoding options, version).")
@click.option("--annotate", "annotate_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Write each image with boxes, keypoints and scores drawn into this folder, named by the image's "
                   "path relative to the deepest folder holding all inputs: a JPEG input as .jpg, any other as .png "
                   "(a/1.jpg, b/2.png -> DIR/a/1.jpg, DIR/b/2.png). The folder is created, its parents are not. "
                   "Refused before any work when an annotation would replace an input, two inputs would share one, "
                   "or a file there is not an annotation blazeconv wrote of the same image (see --overwrite).")
@click.option("--annotate-quality", type=click.IntRange(1, 100), default=90, show_default=True, metavar="Q",
              help="JPEG quality of the annotations of JPEG inputs.")
@click.option("--annotate-size", type=click.IntRange(16), metavar="PX",
              help="Scale annotations down so their longer side is at most PX pixels [default: the image's size].")
@click.option("--overwrite", is_flag=True,
              help="Let --annotate replace any file of an annotation's name, not only annotations blazeconv wrote of "
                   "the same image.")
@click.option("--crops", "crops_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Write each face as an aligned square PNG (FaceDetector.crop) into this folder: one subfolder per "
                   "input, named as --annotate names files (without the suffix), holding 0.png, 1.png... for a photo "
                   "and f000123_0.png (frame, face) for a video; DIR/index.jsonl links each crop to its source, frame, "
                   "time, box and score. With --track, a video's faces go one folder per track: DIR/<video>/track_0003/f000123.png. "
                   "The folder is created, its parents are not.")
@click.option("--crop-size", type=click.IntRange(1, 4096), default=112, show_default=True, metavar="PX",
              help="With --crops: the crops' side.")
@click.option("--margin", type=click.FloatRange(0, 10), default=0.25, show_default=True, metavar="F",
              help="With --crops: the margin around the box, as a share of its longer side on each side.")
@click.option("--best", type=click.IntRange(1), metavar="N",
              help="With --crops and --track: keep only the N best crops of each track (the biggest box times the "
                   "score), in DIR/<video>/track_0003/f000123.png, written when the video is done.")
@click.option("--every", type=click.IntRange(1), metavar="N", help="Videos: every N-th frame (counted from the first).")
@click.option("--fps", "sample_fps", type=click.FloatRange(0, min_open=True), metavar="F",
              help="Videos: at most F frames per second, chosen by timestamp.")
@click.option("--frames", "sample_frames", type=click.IntRange(1), metavar="N",
              help="Videos: N frames evenly spaced over the clip (or --start..--end), first and last included.")
@click.option("--start", type=click.FloatRange(0), metavar="SECONDS", help="Videos: begin at this time.")
@click.option("--end", type=click.FloatRange(0), metavar="SECONDS", help="Videos: stop before this time.")
@click.option("--track", is_flag=True,
              help="Videos: give each face a 'track' id in the records, the same while the face stays in view (a "
                   "miss of up to 10 frames keeps it; a face that leaves or a scene cut ends it). Needs "
                   "blazeconv[track] (docs/crops-tracks.md: Tracks).")
@click.option("--detect-every", type=click.IntRange(1), metavar="N",
              help="Videos, implies --track: run the model on every N-th frame only (keyframes) and give the frames "
                   "between the faces of the tracks found on both keyframes around them, interpolated and marked "
                   "\"filled\": true. A face that comes and goes between two keyframes is missed; 1 detects every "
                   "frame. Not with --every, --fps, --frames, --annotate or --crops (docs/crops-tracks.md: Tracks).")
@click.option("--fine-every", type=click.IntRange(1), metavar="K",
              help="Videos, implies --track: look at every frame whole and at the finer tiles only every K-th frame "
                   "(fine keyframes); the faces only the tiles find are given to the frames between along their "
                   "tracks, interpolated and marked \"filled\": true. A small face that comes and goes between two "
                   "fine keyframes is missed; 1 (the default) looks at every level on every frame. Not with --exact, "
                   "--no-tile, --detect-every, --annotate or --crops (docs/tracks.md).")
@click.option("-r", "--recursive", is_flag=True,
              help="Read the image files of the folders' subfolders too (hidden files and folders are skipped).")
@click.option("-q", "--quiet", is_flag=True, help="No per-image summary on stdout.")
@click.option("--batch-size", default=DEFAULT_BATCH_SIZE, show_default=True, type=click.IntRange(1, 1024),
              help="Model inputs per forward pass (a picture's tiles count one each).")
@scale_options(min_face_help="; with --crops, smaller faces are not cropped")
@backend_option()
@renamed("--fast/--no-fast", "backend", to=lambda value: "torch-fast", is_flag=True, default=False)
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", metavar="[ADDRESS]",
              help="Run on Ray (pip install 'blazeconv[ray]'), the same outputs in the same order: alone, a local "
                   "cluster on every core started for this run; or ADDRESS: auto (the running cluster this machine "
                   "is part of), HOST:PORT or ray://HOST:PORT. Every worker must be able to read the files. Put it "
                   "after the inputs (a word right after --ray is its ADDRESS). Each video is one Ray task. Not with --annotate "
                   "or --crops.")
@click.option("--ray-actors", type=click.IntRange(1), metavar="N",
              help="With --ray: model actors, each reading and decoding its own files [default: as many as the "
                   "cluster's CPUs hold at --ray-actor-cpus each].")
@click.option("--ray-actor-cpus", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True,
              metavar="CPUS", help="With --ray: CPUs each actor reserves (its model threads and decoders).")
def detect(inputs, model, variant_name, min_score, json_path, annotate_dir, batch_size,
           jsonl_path, resume, quiet, backend, ray_address, ray_actors, ray_actor_cpus, exact, tile, min_face,
           tile_size, tile_overlap, fast_decode, annotate_quality, annotate_size, overwrite, recursive, every,
           sample_fps, sample_frames, start, end, crops_dir, crop_size, margin, track, detect_every, fine_every,
           best) -> None:
    """Detect faces in images and videos (files, or folders of them) with MediaPipe's pre- and post-processing.

    Each picture is letterboxed to the model input whole and, where faces down to --min-face are too small
    for the model there, on overlapping tiles sized for them; the model runs (--backend), its outputs are
    decoded with the SSD anchors, every candidate is merged by weighted non-maximum suppression (IoU 0.3),
    and coordinates are mapped back to each image (0..1 of its width and height). --exact gives MediaPipe's
    own answers (one scale). A summary per image is printed on stdout (not with --quiet, or when --json or
    --jsonl write to stdout); progress and notices go to stderr. Keypoints come in MediaPipe's order (right
    eye, left eye, nose tip, mouth centre, right ear tragion, left ear tragion; the subject's right and left).

    \b
    Examples:
      blazeconv detect photo.jpg
      blazeconv detect photo.jpg --model short_range --exact         # MediaPipe's short-range answers
      blazeconv detect crowd.jpg --min-face 20 --annotate annotated/  # faces down to 20 px
      blazeconv detect photos/ --model back --json detections.json --annotate annotated/
      blazeconv detect photo.jpg --model build/short_range.pth --min-score 0.6 --json -
      blazeconv detect photo.jpg --model my_model.tflite --backend torch-fast
      blazeconv detect huge_folder/ --jsonl faces.jsonl --resume     # rerun the same line after an interrupt
      blazeconv detect photos/ --backend openvino
      blazeconv detect photos/ --json faces.json --ray               # on a local Ray cluster (blazeconv[ray])
      blazeconv detect clip.mp4 --fps 5 --jsonl faces.jsonl           # videos: blazeconv[video]
      blazeconv detect clips/ --frames 32 --crops faces/              # 32 frames per clip, aligned face crops
      blazeconv detect clip.mp4 --track --jsonl faces.jsonl          # a track id per face (blazeconv[track])
      blazeconv detect clip.mp4 --detect-every 4 --jsonl faces.jsonl # the model on 1 frame in 4, tracks between

    A video (MP4, MOV, M4V, MKV, WebM, AVI, recognised by content) gets one record per sampled frame (every frame
    by default: --every, --fps, --frames, --start, --end); GIF and WebP files are read as images (their first frame).
    """
    from ..detection.settings import DetectionSettings, Sampling
    from ..runs import DetectOutputs, DetectRun, RayOptions, no_face_hint, video_summary

    if ray_address is None and given_options("ray_actors", "ray_actor_cpus"):
        raise click.UsageError("--ray-actors and --ray-actor-cpus apply with --ray")
    if resume and (jsonl_path is None or str(jsonl_path) == "-"):
        raise click.UsageError("--resume continues the file of --jsonl FILE; give both")
    if json_path is not None and jsonl_path is not None and str(json_path) == str(jsonl_path) == "-":
        raise click.UsageError("only one of --json and --jsonl can write to stdout")
    check_scale_options(exact, tile, min_face, tile_size, tile_overlap, fast_decode)
    if sample_frames is not None and (every is not None or sample_fps is not None):
        raise click.UsageError("--frames (evenly spaced) cannot be combined with --every or --fps")
    if start is not None and end is not None and end <= start:
        raise click.UsageError(f"--end ({end:g} s) must be after --start ({start:g} s)")
    if detect_every is not None and (every is not None or sample_fps is not None or sample_frames is not None):
        raise click.UsageError("--detect-every (every frame, detected on keyframes) cannot be combined with --every, "
                               "--fps or --frames")
    if detect_every is not None and (annotate_dir is not None or crops_dir is not None):
        raise click.UsageError("--detect-every cannot be combined with --annotate or --crops yet")
    if fine_every is not None and fine_every > 1:
        if exact or tile is False:
            raise click.UsageError(f"--fine-every looks at the tiles on fine keyframes: not with "
                                   f"{'--exact' if exact else '--no-tile'}")
        if detect_every is not None:
            raise click.UsageError("--fine-every and --detect-every both choose keyframes: give one of them")
        if annotate_dir is not None or crops_dir is not None:
            raise click.UsageError("--fine-every cannot be combined with --annotate or --crops yet")
    if annotate_dir is None and given_options("annotate_size", "overwrite", "annotate_quality"):
        raise click.UsageError("--annotate-quality, --annotate-size and --overwrite apply with --annotate")
    if best is not None and (crops_dir is None or not track):
        raise click.UsageError("--best keeps the best crops of each track: it needs --crops and --track")
    if crops_dir is None and given_options("crop_size", "margin"):
        raise click.UsageError("--crop-size and --margin apply with --crops")
    settings = DetectionSettings(
        model=model or DEFAULT_MODEL, variant=variant_name, backend=backend, min_score=min_score,
        batch_size=batch_size, exact=exact, tile=tile is not False, min_face=min_face, tile_size=tile_size,
        tile_overlap=tile_overlap, fast_decode=fast_decode,
        sampling=Sampling(every or 1, sample_fps, sample_frames, start, end),
        track=track or detect_every is not None or (fine_every or 1) > 1,
        detect_every=detect_every or 1, fine_every=fine_every or 1)
    outputs = DetectOutputs(json=json_path, jsonl=jsonl_path, resume=resume, annotate=annotate_dir,
                            annotate_quality=annotate_quality, annotate_size=annotate_size, crops=crops_dir,
                            crop_size=crop_size, margin=margin, min_face=min_face or 0.0, overwrite=overwrite,
                            best=best)
    ray = None if ray_address is None else RayOptions(ray_address, ray_actors, ray_actor_cpus)
    run = DetectRun(inputs, settings, outputs, recursive=recursive, ray=ray)
    summary = not quiet and "-" not in (str(json_path), str(jsonl_path))
    on_ray = ray is not None  # Ray shows its own progress on stderr
    with progress(0 if on_ray else len(run.paths), "detecting", plain=on_ray) as bar:
        for done in run:
            if summary and done.video and done.records:  # a video that could not be read: its error only
                click.echo(video_summary(done.path, done.records) +
                           (" (then stopped: see the error)" if done.error else ""))
            elif summary and not done.error:
                found = done.records[0]["detections"]
                click.echo(f"{done.path}: {len(found)} {'face' if len(found) == 1 else 'faces'}" + "".join(
                    f"\n  score {d['score']:.3f} box " + " ".join(f"{v:.3f}" for v in d["box"]) for d in found))
            hint = None if quiet else no_face_hint(run, done)
            if hint is not None:
                say(hint)  # stderr, never in the JSON on stdout
            bar.update(1)
    report = run.report
    if json_path is not None and str(json_path) == "-":
        click.echo(json.dumps(report.document, indent=2))
    if report.images or report.videos:
        parts = [f"{report.images} image(s)"] if report.images or not report.videos else []
        parts += [f"{report.videos} video(s)"] if report.videos else []
        say(f"{', '.join(parts)}, model {report.variant}, min score {report.min_score:g}")
    for message in report.failures[:-1]:
        click.echo(f"Error: {message}", err=True)
    if report.failures:
        raise report.failure()
