"""``detect``: faces in images and folders of images, in this process or on Ray."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import re
from pathlib import Path

import click

from ..backends import CHOICES as BACKEND_CHOICES
from ..detection.tiling import DEFAULT_OVERLAP
from ..variants import DEFAULT_VARIANT, NMS_IOU_THRESHOLD, get_variant
from .base import FRACTION, VARIANT, cli, progress, say, thresholds_help


@cli.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--model", "model_name", type=VARIANT,
              help=f"A shipped model, converted and cached on first use [default: {DEFAULT_VARIANT}].")
@click.option("--weights", type=click.Path(path_type=Path, dir_okay=False),
              help="A .pth state_dict instead of a shipped model (its architecture is read from the weights).")
@click.option("--variant", "variant_name", type=VARIANT,
              help="With --weights: which model the weights are, for anchors and the default threshold "
                   "[default: the shipped model with identical weights, else short_range for 128 px weights, back for 256 px].")
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
                   "written with other settings (model, backend, thresholds, --fast-decode, --tile, version).")
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
                   "time, box and score. The folder is created, its parents are not.")
@click.option("--crop-size", type=click.IntRange(1, 4096), default=112, show_default=True, metavar="PX",
              help="With --crops: the crops' side.")
@click.option("--margin", type=click.FloatRange(0, 10), default=0.25, show_default=True, metavar="F",
              help="With --crops: the margin around the box, as a share of its longer side on each side.")
@click.option("--min-face", type=click.FloatRange(0), default=0, metavar="PX",
              help="With --crops: skip faces whose box is smaller than PX pixels (its longer side) [default: none].")
@click.option("--every", type=click.IntRange(1), metavar="N", help="Videos: every N-th frame (counted from the first).")
@click.option("--fps", "sample_fps", type=click.FloatRange(0, min_open=True), metavar="F",
              help="Videos: at most F frames per second, chosen by timestamp.")
@click.option("--frames", "sample_frames", type=click.IntRange(1), metavar="N",
              help="Videos: N frames evenly spaced over the clip (or --start..--end), first and last included.")
@click.option("--start", type=click.FloatRange(0), metavar="SECONDS", help="Videos: begin at this time.")
@click.option("--end", type=click.FloatRange(0), metavar="SECONDS", help="Videos: stop before this time.")
@click.option("-r", "--recursive", is_flag=True,
              help="Read the image files of the folders' subfolders too (hidden files and folders are skipped).")
@click.option("-q", "--quiet", is_flag=True, help="No per-image summary on stdout.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1, 1024),
              help="Images per forward pass (model inputs, with --tile).")
@click.option("--fast-decode", is_flag=True,
              help="Decode JPEGs with DCT scaling to the smallest size that keeps twice the model's input resolution "
                   "(with --tile: per tile): several times faster on big photos, the same faces, but not bit-exact with "
                   "MediaPipe, which decodes in full (README: Big photos). Other formats decode as usual.")
@click.option("--tile", is_flag=True,
              help="Also run the model on overlapping square tiles of the image and merge all detections with "
                   "MediaPipe's weighted NMS: finds small faces in big pictures, at the cost of one model run per tile.")
@click.option("--tile-size", type=click.IntRange(16), metavar="PX",
              help="With --tile: the tile's side in pixels of the image [default: about 3.3x the model input: 427 "
                   "for 128 px models, 640 for full_range, 853 for back].")
@click.option("--tile-overlap", type=click.FloatRange(0, 0.9), metavar="F",
              help=f"With --tile: the share of a tile's side its neighbours overlap [default: {DEFAULT_OVERLAP}].")
@click.option("--fast/--no-fast", default=False, show_default=True,
              help="Run the model compiled for CPU (blazeconv.fast: traced and rewritten once per input shape, the "
                   "same outputs to 1e-4, 1-3 s to start) instead of the plain PyTorch module. On folders, decoding "
                   "the images dominates and the start-up does not pay off (README: Speed).")
@click.option("--backend", type=click.Choice(BACKEND_CHOICES), default="auto", show_default=True,
              help="Where the model runs: torch (the PyTorch module), onnxruntime or openvino (its ONNX export, "
                   "exported once into the cache; extras blazeconv[onnx] and blazeconv[openvino]), or auto: the first "
                   "installed of onnxruntime, openvino, torch (fastest first, README: Speed). --fast means torch.")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", metavar="[ADDRESS]",
              help="Run on Ray (pip install 'blazeconv[ray]'), the same outputs in the same order: alone, a local "
                   "cluster on every core started for this run; or ADDRESS: auto (the running cluster this machine "
                   "is part of), HOST:PORT or ray://HOST:PORT. Every worker must be able to read the files. Put it "
                   "after the inputs (a word right after --ray is its ADDRESS). Each video is one Ray task. Not with --annotate, "
                   "--crops or --fast.")
@click.option("--ray-actors", type=click.IntRange(1), metavar="N",
              help="With --ray: model actors, each reading and decoding its own files [default: as many as the "
                   "cluster's CPUs hold at --ray-actor-cpus each].")
@click.option("--ray-actor-cpus", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True,
              metavar="CPUS", help="With --ray: CPUs each actor reserves (its model threads and decoders).")
def detect(inputs, model_name, weights, variant_name, min_score, json_path, annotate_dir, batch_size, fast,
           jsonl_path, resume, quiet, backend, ray_address, ray_actors, ray_actor_cpus, fast_decode, tile, tile_size,
           tile_overlap, annotate_quality, annotate_size, overwrite, recursive, every, sample_fps, sample_frames, start,
           end, crops_dir, crop_size, margin, min_face) -> None:
    """Detect faces in images and videos (files, or folders of them) with MediaPipe's pre- and post-processing.

    Letterbox to the model input, run the model (--backend), decode with the SSD anchors, weighted
    non-maximum suppression (IoU 0.3), and coordinates mapped back to each image (0..1 of its width
    and height). A summary per image is printed on stdout (not with --quiet, or when --json or --jsonl
    write to stdout); progress and notices go to stderr. Keypoints come in MediaPipe's order (right eye,
    left eye, nose tip, mouth centre, right ear tragion, left ear tragion; the subject's right and left).

    \b
    Examples:
      blazeconv detect photo.jpg
      blazeconv detect photos/ --model back --json detections.json --annotate annotated/
      blazeconv detect photo.jpg --weights build/short_range.pth --min-score 0.6 --json -
      blazeconv detect huge_folder/ --jsonl faces.jsonl --resume     # rerun the same line after an interrupt
      blazeconv detect photos/ --backend openvino
      blazeconv detect photos/ --json faces.json --ray               # on a local Ray cluster (blazeconv[ray])
      blazeconv detect clip.mp4 --fps 5 --jsonl faces.jsonl           # videos: blazeconv[video]
      blazeconv detect clips/ --frames 32 --crops faces/              # 32 frames per clip, aligned face crops

    A video (MP4, MOV, M4V, MKV, WebM, AVI, recognised by content) gets one record per sampled frame (every frame
    by default: --every, --fps, --frames, --start, --end); GIF and WebP files are read as images (their first frame).
    """
    from .._version import __version__
    from ..backends import make_runner
    from ..detection import Tiling
    from ..detection.drawing import AnnotationWriter
    from ..detection.files import find_images, nothing_found_hint
    from ..detection.inputs import stream_inputs
    from ..detection.results import JsonlResults, result_record
    from ..detection.video import FrameResult, Sampling, is_video, require_video
    from ..detection.video_annotation import VideoAnnotations
    from ..errors import ImageError, OptionsError
    from ..interrupts import Interrupted
    from ..io import atomic_path
    from ..sources import resolve

    if model_name and weights:
        raise click.UsageError("give --model or --weights, not both")
    if variant_name and not weights:
        raise click.UsageError("--variant only applies with --weights (--model names the variant itself)")
    if ray_address is not None:
        _check_ray_options(ray_address, annotate_dir, fast)
    elif ray_actors is not None or ray_actor_cpus != 1.0:
        raise click.UsageError("--ray-actors and --ray-actor-cpus apply with --ray")
    if resume and (jsonl_path is None or str(jsonl_path) == "-"):
        raise click.UsageError("--resume continues the file of --jsonl FILE; give both")
    if json_path is not None and jsonl_path is not None and str(json_path) == str(jsonl_path) == "-":
        raise click.UsageError("only one of --json and --jsonl can write to stdout")
    if fast and backend not in ("auto", "torch"):
        raise click.UsageError(f"--fast compiles the PyTorch model: it runs with --backend torch, not {backend}")
    if not tile and (tile_size is not None or tile_overlap is not None):
        raise click.UsageError("--tile-size and --tile-overlap apply with --tile")
    tiling = Tiling(tile_size, DEFAULT_OVERLAP if tile_overlap is None else tile_overlap) if tile else None
    try:
        sampling = Sampling(every or 1, sample_fps, sample_frames, start, end).check()
    except OptionsError as exc:
        raise click.UsageError(str(exc).replace("every", "--every").replace("frames (evenly", "--frames (evenly")
                               .replace(" or fps", " or --fps")) from None
    paths = find_images(inputs, recursive=recursive)
    if not paths:
        raise click.UsageError("no image or video files found in " + ", ".join(str(i) for i in inputs) +
                               nothing_found_hint(inputs))
    videos = {i for i, path in enumerate(paths) if is_video(path)}
    sampled = sampling != Sampling()
    if sampled and not videos:
        raise click.UsageError("--every, --fps, --frames, --start and --end choose video frames: none of the inputs "
                               "is a video")
    if videos:
        require_video()
    results = JsonlResults(jsonl_path, resume=resume)
    if annotate_dir is None and (annotate_size is not None or overwrite or annotate_quality != 90):
        raise click.UsageError("--annotate-quality, --annotate-size and --overwrite apply with --annotate")
    annotations = _check_detect_outputs(paths, videos, weights, json_path, jsonl_path, annotate_dir, overwrite)
    if crops_dir is None and (crop_size != 112 or margin != 0.25 or min_face):
        raise click.UsageError("--crop-size, --margin and --min-face apply with --crops")
    if crops_dir is not None and ray_address is not None:
        raise click.UsageError("--crops needs the decoded images, which stay on the Ray workers: not with --ray")
    crop_names = _check_crops(paths, crops_dir, overwrite) if crops_dir is not None else {}
    results.check()
    source = resolve(weights, role="weights") if weights else get_variant(model_name or DEFAULT_VARIANT)
    runner = make_runner("torch" if fast else backend, source, variant_name)
    variant = runner.variant
    results.settings = {  # what shapes the results: a --resume with other settings is refused
        "blazeconv": __version__, "model": variant.name, "weights": str(weights.resolve()) if weights else None,
        "backend": getattr(runner, "backend", backend), "fast": fast,
        "min_score": variant.min_score if min_score is None else min_score, "iou_threshold": NMS_IOU_THRESHOLD,
        "fast_decode": fast_decode,
        "tile": None if tiling is None else {"size": tiling.side(variant.input_size), "overlap": tiling.overlap},
    }
    if videos:
        results.settings["video_sampling"] = sampling.settings()
    model = runner
    if fast:
        from ..fast import fast_model

        model = fast_model(runner.module)
    summary = not quiet and "-" not in (str(json_path), str(jsonl_path))
    count, total = 0, len(paths)
    noun = "inputs" if videos else "images"  # what the counts in messages count
    todo = list(range(total))
    frames_of: dict[int, list[dict]] = {}  # a video's frame records, for --json and its summary
    try:
        on_ray = ray_address is not None  # Ray shows its own progress on stderr
        with _ray_session(ray_address), results:
            # With --resume, what the interrupted run finished comes from the file: its images are not read again.
            todo = results.todo(paths)
            position = {os.path.realpath(p): i for i, p in enumerate(paths)}
            entries = [r for r in results.finished if "error" not in r and "frame" not in r]
            failures = [r["error"] for r in results.finished if "error" in r]
            for record in results.finished:
                if "frame" in record and os.path.realpath(record["path"]) in position:
                    frames_of.setdefault(position[os.path.realpath(record["path"])], []).append(record)
            after = {position[key]: frame for key, frame in results.last_frames().items() if key in position}
            for notice in results.notices:
                say(notice)
            if results.finished:
                say(f"resuming {jsonl_path}: {total - len(todo)} of {total} {noun} already done")
            with progress(0 if on_ray else len(todo), "detecting", plain=on_ray) as bar, \
                    AnnotationWriter(_write_annotation, jpeg_quality=annotate_quality, max_side=annotate_size) as drawer, \
                    VideoAnnotations(annotations, videos, {i: list(f) for i, f in frames_of.items()}) as video_drawer, \
                    _crop_writer(crops_dir, crop_names, crop_size, margin, min_face, overwrite) as cropper:
                # Images are decoded and letterboxed on every core while the model runs; annotations are drawn and
                # encoded on a thread of their own; outputs are written here, as they come.
                if on_ray:
                    results_in = _ray_inputs(paths, todo, videos, after, weights, variant, runner, min_score,
                                             batch_size, ray_actors, ray_actor_cpus, fast_decode, tiling, sampling)
                else:
                    results_in = stream_inputs(model, paths, videos, variant, min_score=min_score, batch_size=batch_size,
                                               fast_decode=fast_decode, tiling=tiling,
                                               keep_images=bool(annotations or crop_names), keep_frames=bool(crop_names),
                                               sampling=sampling, after=after, only=todo,
                                               video_writers=video_drawer if annotations else None)

                def finish(index, result, record):  # once the image's annotation is written
                    nonlocal count
                    found = result.detections
                    video = index in videos
                    if video and found is not None:
                        frames_of.setdefault(index, []).append(record)
                    results.write(record)
                    if video and found is not None and not result.last:
                        return  # the video goes on
                    if summary and video and frames_of.get(index):  # a video that could not be read: its error only
                        click.echo(_video_summary(paths[index], frames_of[index]) +
                                   (" (then stopped: see the error)" if found is None else ""))
                    elif summary and found is not None:
                        click.echo(f"{result.path}: {len(found)} {'face' if len(found) == 1 else 'faces'}" + "".join(
                            f"\n  score {d.score:.3f} box " + " ".join(f"{v:.3f}" for v in d.box) for d in found))
                    count += 1
                    bar.update(1)

                for index, result in results_in:
                    record = result_record(result)
                    if result.detections is None:
                        failures.append(record["error"])
                    elif not isinstance(result, FrameResult):
                        entries.append(record)
                    then = functools.partial(finish, index, result, record)
                    if cropper is not None and result.detections:
                        frame = result if isinstance(result, FrameResult) else None
                        cropper.add(result.path, result.image, result.detections, frame and frame.frame,
                                    frame and frame.time)
                    if index in videos:
                        video_drawer.add(index, result)
                        drawer.then(then)
                    elif annotations and result.detections is not None:
                        drawer.submit(result.image, result.detections, annotations[index], result.path, then)
                    else:
                        drawer.then(then)
    except Interrupted as exc:
        exc.detail = f"{total - len(todo) + count} of {total} {noun} done"
        if jsonl_path is not None and str(jsonl_path) != "-":
            exc.detail += f"; their results are in {jsonl_path} (rerun with --resume to continue)"
        raise

    document = {"images": entries}
    if videos:
        document["videos"] = [_video_entry(paths[i], frames_of[i]) for i in sorted(frames_of)]
    if failures:
        document["errors"] = failures
    if json_path is not None and str(json_path) == "-":
        click.echo(json.dumps(document, indent=2))
    elif json_path is not None:
        with atomic_path(json_path) as tmp:
            tmp.write_text(json.dumps(document, indent=2) + "\n")
    if entries or frames_of:
        threshold = variant.min_score if min_score is None else min_score
        parts = [f"{len(entries)} image(s)"] if entries or not frames_of else []
        parts += [f"{len(frames_of)} video(s)"] if frames_of else []
        say(f"{', '.join(parts)}, model {variant.name}, min score {threshold:g}")
    if failures:
        for message in failures[:-1]:
            click.echo(f"Error: {message}", err=True)
        raise ImageError(failures[-1] if len(failures) == 1 else f"{failures[-1]} ({len(failures)} {noun} failed)")


def _video_summary(path: Path, frames: list[dict]) -> str:
    """``clip.mp4: 275 frames, faces in 270, at most 2 per frame``."""
    counts = [len(f["detections"]) for f in frames]
    return (f"{path}: {len(frames)} {'frame' if len(frames) == 1 else 'frames'}, faces in {sum(1 for c in counts if c)}"
            f", at most {max(counts, default=0)} per frame")


def _video_entry(path: Path, frames: list[dict]) -> dict:
    """A video's ``--json`` entry: its size, nominal rate and duration, and its sampled frames."""
    from ..detection.video import probe

    try:
        info = probe(path)
        fps, duration = info.fps, info.duration
    except Exception:  # the frames were read; a second look that fails only loses the nominal figures
        fps = duration = None
    first = frames[0] if frames else {}
    return {"path": str(path), "width": first.get("width"), "height": first.get("height"), "fps": fps,
            "duration": duration,
            "frames": [{"frame": f["frame"], "time": f["time"], "detections": f["detections"]} for f in frames]}


def _write_annotation(path: Path, data: bytes) -> None:
    """An annotation's bytes written to ``path`` atomically; its folder (inside --annotate DIR) made first."""
    from ..io import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _check_ray_options(address: str, annotate_dir: Path | None, fast: bool) -> None:
    """``--ray``'s address and companions, and ray installed (exit 8), before any work."""
    from ..ray import require_ray

    if not re.fullmatch(r"local|auto|(ray://)?[A-Za-z0-9_.\-\[\]:]+:[0-9]+", address):
        raise click.UsageError(f"--ray {address}: not a Ray address (local, auto, HOST:PORT or ray://HOST:PORT); "
                               "a word right after --ray is taken as its address: put --ray after the inputs")
    if annotate_dir is not None:
        raise click.UsageError("--annotate needs the decoded images, which stay on the Ray workers: not with --ray")
    if fast:
        raise click.UsageError("--fast compiles the model in this process: not with --ray (use --backend)")
    require_ray()


@contextlib.contextmanager
def _ray_session(address: str | None):
    """Connected to Ray at ``address`` for the run (a local cluster started and stopped), or nothing without --ray."""
    if address is None:
        yield
        return
    from ..interrupts import reclaim
    from ..ray import connected

    with connected(address):
        reclaim()  # ray.init replaced the SIGTERM handler with its own (exit 15, no message)
        yield


def _ray_inputs(paths, todo, videos, after, weights, variant, model, min_score, batch_size, actors, actor_cpus,
                fast_decode, tiling, sampling):
    """``(index, result)`` of the inputs ``todo`` computed on Ray, in order: the photos by the model actors
    (``_ray_files``), each video by a task of its own (``ray.stream_videos``), all videos submitted first."""
    from ..ray import stream_videos

    photos = [i for i in todo if i not in videos]
    clips = [i for i in todo if i in videos]
    source = str(weights.resolve()) if weights else variant.name  # the workers' folder may not be ours
    backend = getattr(model, "backend", "torch")
    by_video = iter(stream_videos([Path(paths[i]).resolve() for i in clips], source, variant=variant.name,
                                  min_score=min_score, backend=backend, batch_size=batch_size, sampling=sampling,
                                  tiling=tiling, after=[after.get(i) for i in clips], task_cpus=actor_cpus)) \
        if clips else iter(())
    by_photo = iter(_ray_files([paths[i] for i in photos], weights, variant, model, min_score, batch_size, actors,
                               actor_cpus, fast_decode, tiling)) if photos else iter(())
    for index in todo:
        if index in videos:
            for result in next(by_video):
                yield index, dataclasses.replace(result, path=paths[index])  # named as given, not resolved
        else:
            yield index, next(by_photo)


def _ray_files(paths, weights, variant, model, min_score, batch_size, actors, actor_cpus, fast_decode, tiling):
    """``stream_files``' results computed on Ray by actors that load the model the way this process did."""
    from ..ray import stream_files

    source = str(weights.resolve()) if weights else variant.name  # the workers' folder may not be ours
    return stream_files(paths, source, variant=variant.name, min_score=min_score, backend=getattr(model, "backend", "torch"),
                        batch_size=batch_size, actors=actors, actor_cpus=actor_cpus, fast_decode=fast_decode,
                        tiling=tiling)


def _check_detect_outputs(paths, videos, weights, json_path, jsonl_path, annotate_dir, overwrite) -> list[Path]:
    """detect's outputs checked before any work; returns each input's annotation path (none without --annotate).

    Folders must exist (--annotate DIR: its parent), no output may be an input, no two inputs may share an
    annotation, and an existing file of an annotation's name is replaced only when blazeconv wrote it as the
    annotation of the same input, or with ``overwrite``. A video's annotation is ``.mp4``.
    """
    from ..detection.drawing import annotation_suffix
    from ..io import PathUsageError, check_folder, mirrored_paths, refuse_overwriting

    files = [(label, path) for label, path in (("--json", json_path), ("--jsonl", jsonl_path))
             if path is not None and str(path) != "-"]
    for _, path in files:
        check_folder(path)
    annotations = []
    if annotate_dir is not None:
        if not annotate_dir.is_dir():
            check_folder(annotate_dir)
        video_paths = {Path(os.path.abspath(paths[i])) for i in videos}  # mirrored_paths passes absolute paths
        annotations = mirrored_paths(paths, annotate_dir,
                                     lambda p: ".mp4" if p in video_paths else annotation_suffix(p))
    inputs = [("input", p) for p in paths] + ([("--weights", weights)] if weights else [])
    refuse_overwriting(files + [("annotation", a) for a in annotations], inputs)
    if not overwrite:
        for index, (path, annotation) in enumerate(zip(paths, annotations)):
            if annotation.exists() and not _is_annotation(annotation, path, index in videos):
                raise PathUsageError(f"{annotation}: exists and is not blazeconv's annotation of {path}; "
                                     "add --overwrite to replace it, or annotate into another folder")
    return annotations


def _check_crops(paths, crops_dir: Path, overwrite: bool) -> dict[Path, str]:
    """--crops DIR checked before any work: its parent exists, and no input's subfolder holds a file that is not
    blazeconv's crop of that input (unless ``overwrite``). Returns each input's subfolder name."""
    from ..detection.cropping import INDEX_NAME, is_crop_of
    from ..io import PathUsageError, check_folder, mirrored_paths

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
        for item in sorted(folder.iterdir()):
            if not is_crop_of(item, path):
                raise PathUsageError(f"{item}: exists and is not blazeconv's crop of {path}; add --overwrite to "
                                     "replace such files, or write the crops into another folder")
    return names


def _crop_writer(crops_dir, names, size, margin, min_face, overwrite):
    """--crops' ``CropWriter`` (a context manager), or a null context giving None."""
    if crops_dir is None:
        return contextlib.nullcontext()
    from ..detection.cropping import CropWriter

    return CropWriter(crops_dir, names=names, size=size, margin=margin, min_face=min_face, overwrite=overwrite)


def _is_annotation(annotation: Path, source: Path, video: bool) -> bool:
    """Whether ``annotation`` is blazeconv's annotation of ``source`` (a photo's or, with ``video``, a video's)."""
    if video:
        from ..detection.video_annotation import is_video_annotation_of

        return is_video_annotation_of(annotation, source)
    from ..detection.drawing import is_annotation_of

    return is_annotation_of(annotation, source)
