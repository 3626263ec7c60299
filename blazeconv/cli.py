"""The ``blazeconv`` command line: parses arguments, calls one stage, prints a summary. Nothing else."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import traceback
from pathlib import Path

import click

from .backends import CHOICES as BACKEND_CHOICES
from .errors import BlazeconvError
from .variants import DEFAULT_VARIANT, VARIANTS, get_variant

INTERNAL_ERROR_EXIT = 70


def _say(message: str) -> None:
    """Progress and summaries go to stderr so stdout stays clean for data (``--json -``)."""
    click.echo(message, err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="blazeconv")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logging.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Convert MediaPipe BlazeFace face detectors (TFLite) to PyTorch and Core ML, and run them.

    Exit codes: 0 success, 1 other failure, 2 usage, 3 model file, 4 unsupported model, 5 weights,
    6 image, 7 options, 8 missing optional dependency, 70 internal error, 130 / 143 interrupted (SIGINT / SIGTERM).
    """
    ctx.obj = {"debug": debug}
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@cli.command()
@click.argument("model", metavar="MODEL", type=click.Path(path_type=Path, dir_okay=False))
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Where to write the state_dict [default: MODEL with suffix .pth; for a variant name, <name>.pth].")
def tflite2torch(model: Path, output: Path | None) -> None:
    """Convert a BlazeFace MODEL (a .tflite file or a shipped variant name) into a PyTorch state_dict (.pth).

    The model is recognised from the file itself (front, short_range, back, full_range,
    full_range_sparse); float16 weights behind DEQUANTIZE and sparse weights behind DENSIFY
    are folded into float32 tensors.

    \b
    Examples:
      blazeconv tflite2torch short_range -o short_range.pth
      blazeconv tflite2torch face_detection_full_range.tflite -o full_range.pth
    """
    from .convert import convert_file, save_state_dict
    from .shipped import resolve_source

    named = _variant_name(model)
    model = resolve_source(model)
    output = output or (Path(f"{named}.pth") if named else model.with_suffix(".pth"))
    _check_outputs([("-o", output)], [("the model", model)])
    conversion = convert_file(model)
    v = conversion.variant
    how = "its checksum" if conversion.recognised_by == "checksum" else "its structure (not a shipped file)"
    _say(f"{model}: recognised as {v.name} by {how}: {v.architecture}, {v.input_size}x{v.input_size} input, "
         f"{v.num_anchors} anchors, {conversion.weight_storage} weights")
    save_state_dict(conversion.state_dict, output)
    _say(f"wrote {output} ({len(conversion.state_dict)} tensors)")


@cli.command()
@click.option("--variant", type=click.Choice(list(VARIANTS)), help="Anchors of this model.")
@click.option("--options", "options_file", type=click.Path(path_type=Path, dir_okay=False),
              help="JSON object of MediaPipe SsdAnchorsCalculator fields instead of a variant.")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Where to write the (N, 4) float32 .npy [default: <variant or options name>_anchors.npy].")
def anchors(variant: str | None, options_file: Path | None, output: Path | None) -> None:
    """Generate SSD anchors exactly as MediaPipe's SsdAnchorsCalculator does.

    Writes an (N, 4) float32 .npy of (x_center, y_center, w, h), normalised to the model input.

    \b
    Examples:
      blazeconv anchors --variant short_range -o build/short_range_anchors.npy
      blazeconv anchors --options my_anchor_options.json -o anchors.npy
    """
    import numpy as np

    from .anchors import AnchorOptions, generate_anchors
    from .io import atomic_path

    if (variant is None) == (options_file is None):
        raise click.UsageError("give exactly one of --variant or --options")
    output = output or Path(f"{variant or options_file.stem}_anchors.npy")
    _check_outputs([("-o", output)], [("--options", options_file)] if options_file else [])
    if variant is not None:
        options = get_variant(variant).anchor_options
    else:
        options = AnchorOptions.from_json(options_file)
    result = generate_anchors(options)
    with atomic_path(output) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, result)
    _say(f"wrote {output}: {len(result)} anchors, (x_center, y_center, w, h) float32")


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _expand_images(inputs: tuple[Path, ...]) -> list[Path]:
    """Files as given; directories expand to their image files (by suffix, sorted, not recursive)."""
    paths: list[Path] = []
    for item in inputs:
        if item.is_dir():
            paths += sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            paths.append(item)
    return paths


class _PlainProgress:
    """Progress for a stderr that is not a terminal: a line at every tenth of a long run, nothing for short ones."""

    def __init__(self, total: int, label: str):
        self.total, self.label, self.done, self.reported = total, label, 0, 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, count: int) -> None:
        self.done += count
        if self.total >= 100 and self.done * 10 // self.total > self.reported:
            self.reported = self.done * 10 // self.total
            _say(f"{self.label}: {self.done}/{self.total}")


def _progress(total: int, label: str, plain: bool = False):
    """A progress bar on a terminal (unless ``plain``), sparse progress lines otherwise."""
    if sys.stderr.isatty() and not plain:
        return click.progressbar(length=total, label=label, file=sys.stderr)
    return _PlainProgress(total, label)


def _require(module: str, extra: str, purpose: str) -> None:
    """Refuse before any work when an optional dependency is missing: ``MissingDependencyError`` (exit 8)."""
    import importlib.util

    from .errors import MissingDependencyError

    if importlib.util.find_spec(module) is None:
        raise MissingDependencyError(f"{purpose} needs the '{module}' package: pip install 'blazeconv[{extra}]'")


def _check_outputs(outputs: list[tuple[str, Path]], inputs: list[tuple[str, Path]]) -> None:
    """Before any work: each output's folder exists, and no output is (or links to) an input (exit 2)."""
    from .io import check_folder, refuse_overwriting

    for _, path in outputs:
        check_folder(path)
    refuse_overwriting(outputs, inputs)


def _variant_name(argument: Path) -> str | None:
    """The variant an argument names (``short_range``), or None for a path (an existing file wins)."""
    return str(argument) if str(argument) in VARIANTS and not argument.exists() else None


def _thresholds_help() -> str:
    return ", ".join(f"{v.name} {v.min_score:g}" for v in VARIANTS.values())


class _Fraction(click.ParamType):
    """A threshold from 0 to 1. NaN, anything outside and non-numbers are options errors (exit 7), one line."""

    name = "0..1"

    def convert(self, value, param, ctx):
        from .errors import OptionsError

        option = param.opts[0] if param is not None and param.opts else "value"
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise OptionsError(f"{option} {value}: not a number (expected one from 0 to 1)") from None
        if not 0.0 <= number <= 1.0:  # false for NaN as well
            raise OptionsError(f"{option} {value}: expected a number from 0 to 1")
        return number


FRACTION = _Fraction()


@cli.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--model", "model_name", type=click.Choice(list(VARIANTS)),
              help=f"A shipped model, converted and cached on first use [default: {DEFAULT_VARIANT}].")
@click.option("--weights", type=click.Path(path_type=Path, dir_okay=False),
              help="A .pth state_dict instead of a shipped model (its architecture is read from the weights).")
@click.option("--variant", "variant_name", type=click.Choice(list(VARIANTS)),
              help="With --weights: which model the weights are, for anchors and the default threshold "
                   "[default: the shipped model with identical weights, else short_range for 128 px weights, back for 256 px].")
@click.option("--min-score", type=FRACTION,
              help=f"Keep detections scoring at least this [default: MediaPipe's for the model: {_thresholds_help()}].")
@click.option("--json", "json_path", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
              help="Write the detections as one JSON document to this file, or - for stdout; written at the end, "
                   "also when every image failed (with 'errors'), never after an interrupt.")
@click.option("--jsonl", "jsonl_path", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
              help="Write one JSON object per image as results come (the fields of a --json entry; 'path' and "
                   "'error' for an image that failed) to this file, or - for stdout. An interrupted run keeps every "
                   "finished image. An existing non-empty file is continued only with --resume.")
@click.option("--resume", is_flag=True,
              help="With --jsonl FILE: skip the images already in FILE (same paths as given) and append the rest; "
                   "a line cut short by a kill is redone.")
@click.option("--annotate", "annotate_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Write each image with boxes, keypoints and scores drawn into this folder as PNG, named by the "
                   "image's path relative to the deepest folder holding all inputs, suffix .png (a/1.jpg, b/1.jpg "
                   "-> DIR/a/1.png, DIR/b/1.png). The folder is created, its parents are not. Refused before any "
                   "work when an annotation would replace an input or two inputs would share one.")
@click.option("-q", "--quiet", is_flag=True, help="No per-image summary on stdout.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1, 1024),
              help="Images per forward pass.")
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
                   "after the inputs (a word right after --ray is its ADDRESS). Not with --annotate or --fast.")
@click.option("--ray-actors", type=click.IntRange(1), metavar="N",
              help="With --ray: model actors, each reading and decoding its own files [default: as many as the "
                   "cluster's CPUs hold at --ray-actor-cpus each].")
@click.option("--ray-actor-cpus", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True,
              metavar="CPUS", help="With --ray: CPUs each actor reserves (its model threads and decoders).")
def detect(inputs, model_name, weights, variant_name, min_score, json_path, annotate_dir, batch_size, fast,
           jsonl_path, resume, quiet, backend, ray_address, ray_actors, ray_actor_cpus) -> None:
    """Detect faces in images (files or folders of images) with MediaPipe's pre- and post-processing.

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
    """
    import json

    from .detect import annotate, detect_files, detections_to_json
    from .errors import ImageError
    from .interrupts import Interrupted
    from .io import atomic_path, read_jsonl

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
    paths = _expand_images(tuple(inputs))
    if not paths:
        raise click.UsageError("no image files found in " + ", ".join(str(i) for i in inputs))
    annotations = _check_detect_outputs(paths, weights, json_path, jsonl_path, annotate_dir, resume)
    if fast and backend not in ("auto", "torch"):
        raise click.UsageError(f"--fast compiles the PyTorch model: it runs with --backend torch, not {backend}")
    if fast or backend == "torch":
        from .model import load_model
        from .shipped import cached_weights

        if weights:
            model = load_model(weights)
            variant = get_variant(variant_name) if variant_name else model.variant
            if variant.architecture != model.architecture:
                raise click.UsageError(f"--variant {variant.name} is a {variant.architecture} model, "
                                       f"the weights are {model.architecture}")
        else:
            variant = get_variant(model_name or DEFAULT_VARIANT)
            model = load_model(cached_weights(variant), variant)
    else:
        from .backends import make_runner

        model = make_runner(backend, weights or get_variant(model_name or DEFAULT_VARIANT), variant_name)
        variant = model.variant

    if fast:
        from .fast import fast_model

        model = fast_model(model)
    # With --resume, what the interrupted run finished comes from the file: its images are not read again.
    finished = read_jsonl(jsonl_path) if resume and jsonl_path.is_file() else ([], 0)
    entries, failures = [r for r in finished[0] if "error" not in r], [r["error"] for r in finished[0] if "error" in r]
    done = {r["path"] for r in finished[0]}
    todo = [(p, a) for p, a in zip(paths, annotations or [None] * len(paths)) if str(p) not in done]
    if done:
        _say(f"resuming {jsonl_path}: {len(paths) - len(todo)} of {len(paths)} images already done")
    summary = not quiet and "-" not in (str(json_path), str(jsonl_path))
    count = 0
    try:
        on_ray = ray_address is not None  # Ray shows its own progress on stderr
        with _ray_session(ray_address), _jsonl_stream(jsonl_path, keep=finished[1]) as stream, \
                _progress(0 if on_ray else len(todo), "detecting", plain=on_ray) as progress:
            # Images are decoded and letterboxed on every core while the model runs; outputs are written as they come.
            found_in = detect_files(model, [p for p, _ in todo], variant, min_score=min_score, batch_size=batch_size) \
                if not on_ray else _ray_files([p for p, _ in todo], weights, variant, model, min_score, batch_size,
                                              ray_actors, ray_actor_cpus)
            for (path, image, found), (_, annotation) in zip(found_in, todo):
                if found is None:
                    failures.append(str(image))
                    record = {"path": str(path), "error": str(image)}
                else:
                    record = detections_to_json(path, image.shape[1], image.shape[0], found)
                    entries.append(record)
                    if annotation is not None:
                        annotation.parent.mkdir(parents=True, exist_ok=True)  # inside --annotate DIR only
                        with atomic_path(annotation) as tmp:
                            annotate(image, found).save(tmp, format="PNG")
                    if summary:
                        click.echo(f"{path}: {len(found)} {'face' if len(found) == 1 else 'faces'}" + "".join(
                            f"\n  score {d.score:.3f} box " + " ".join(f"{v:.3f}" for v in d.box) for d in found))
                if stream is not None:
                    stream.write(json.dumps(record) + "\n")
                    stream.flush()
                count += 1
                progress.update(1)
    except Interrupted as exc:
        exc.detail = f"{len(paths) - len(todo) + count} of {len(paths)} images done"
        if jsonl_path is not None and str(jsonl_path) != "-":
            exc.detail += f"; their results are in {jsonl_path} (rerun with --resume to continue)"
        raise

    document = {"images": entries}
    if failures:
        document["errors"] = failures
    if json_path is not None and str(json_path) == "-":
        click.echo(json.dumps(document, indent=2))
    elif json_path is not None:
        with atomic_path(json_path) as tmp:
            tmp.write_text(json.dumps(document, indent=2) + "\n")
    if entries:
        threshold = variant.min_score if min_score is None else min_score
        _say(f"{len(entries)} image(s), model {variant.name}, min score {threshold:g}")
    if failures:
        for message in failures[:-1]:
            click.echo(f"Error: {message}", err=True)
        raise ImageError(failures[-1] if len(failures) == 1 else f"{failures[-1]} ({len(failures)} images failed)")


def _check_ray_options(address: str, annotate_dir: Path | None, fast: bool) -> None:
    """``--ray``'s address and companions, and ray installed (exit 8), before any work."""
    from .ray import require_ray

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
    from .interrupts import reclaim
    from .ray import connected

    with connected(address):
        reclaim()  # ray.init replaced the SIGTERM handler with its own (exit 15, no message)
        yield


def _ray_files(paths, weights, variant, model, min_score, batch_size, actors, actor_cpus):
    """``detect_files``' items computed on Ray by actors that load the model the way this process did."""
    from .ray import detect_files

    source = str(weights.resolve()) if weights else variant.name  # the workers' folder may not be ours
    return detect_files(paths, source, variant=variant.name, min_score=min_score, backend=getattr(model, "backend", "torch"),
                        batch_size=batch_size, actors=actors, actor_cpus=actor_cpus)


def _check_detect_outputs(paths, weights, json_path, jsonl_path, annotate_dir, resume) -> list[Path]:
    """detect's outputs checked before any work; returns each image's annotation path (none without --annotate).

    Folders must exist (--annotate DIR: its parent), no output may be an input, no two inputs may share an
    annotation, and a --jsonl file holding results is only continued with --resume.
    """
    from .io import PathUsageError, check_folder, mirrored_paths, refuse_overwriting

    files = [(label, path) for label, path in (("--json", json_path), ("--jsonl", jsonl_path))
             if path is not None and str(path) != "-"]
    for _, path in files:
        check_folder(path)
    annotations = []
    if annotate_dir is not None:
        if not annotate_dir.is_dir():
            check_folder(annotate_dir)
        annotations = mirrored_paths(paths, annotate_dir)
    inputs = [("input image", p) for p in paths] + ([("--weights", weights)] if weights else [])
    refuse_overwriting(files + [("annotation", a) for a in annotations], inputs)
    if jsonl_path is not None and not resume and str(jsonl_path) != "-" and jsonl_path.is_file() \
            and jsonl_path.stat().st_size > 0:
        raise PathUsageError(f"--jsonl {jsonl_path} already holds results: add --resume to continue that run, "
                             "or remove the file")
    return annotations


@contextlib.contextmanager
def _jsonl_stream(path: Path | None, keep: int):
    """The --jsonl output opened for appending after its first ``keep`` bytes (a torn last line is cut), or
    stdout for ``-``, or None."""
    if path is None:
        yield None
    elif str(path) == "-":
        yield sys.stdout
    else:
        with open(path, "a", encoding="utf-8") as stream:
            stream.truncate(keep)
            yield stream



@cli.command()
@click.argument("source", type=click.Path(path_type=Path, dir_okay=False))
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Where to write the model [default: SOURCE with suffix .mlpackage (mlprogram) or .mlmodel "
                   "(neuralnetwork); with --landmarks, <stem>_landmarks.<suffix>].")
@click.option("--landmarks", is_flag=True,
              help="Build the landmarks model (decoding and MediaPipe's weighted NMS inside; boxes, 6 keypoints and "
                   "scores out) instead of the Vision pipeline.")
@click.option("--format", "model_format", type=click.Choice(["mlprogram", "neuralnetwork"]), default="mlprogram",
              show_default=True, help="mlprogram: .mlpackage for iOS 15+; neuralnetwork: .mlmodel for iOS 14.")
@click.option("--precision", type=click.Choice(["float16", "float32"]),
              help="float16 (the network computes in float16; decoding and NMS stay float32) or float32 "
                   "[default: float16 for mlprogram, float32 for neuralnetwork, where float16 stores the "
                   "convolution weights as float16].")
@click.option("--iou-threshold", type=FRACTION, default=0.3, show_default=True,
              help="NMS overlap threshold (MediaPipe's face graphs use 0.3).")
@click.option("--score-threshold", type=FRACTION,
              help=f"Minimum face score [default: the variant's: {_thresholds_help()}].")
@click.option("--max-faces", type=click.IntRange(1, 100), default=16, show_default=True,
              help="Most faces a model returns (rows of the landmarks model; Vision's upper bound). The landmarks "
                   "model repeats its NMS step per row, so more rows convert more slowly.")
@click.option("--variant", "variant_name", type=click.Choice(list(VARIANTS)),
              help="Which model the weights are (thresholds, anchors, metadata) [default: from the .tflite; for a "
                   ".pth the shipped model with identical weights, else short_range (128 px) or back (256 px)].")
@click.option("--source-tflite", type=click.Path(path_type=Path, dir_okay=False),
              help="With a .pth: the .tflite it was converted from (its weights must match); recorded by SHA-256.")
@click.option("--anchors", "anchors_file", type=click.Path(path_type=Path, dir_okay=False),
              help="An (N, 4) .npy of anchors (x_center, y_center, w, h) instead of the variant's generated ones.")
def coreml(source, output, landmarks, model_format, precision, iou_threshold, score_threshold, max_faces,
           variant_name, source_tflite, anchors_file) -> None:
    """Convert BlazeFace weights (SOURCE: WEIGHTS.pth, MODEL.tflite or a shipped variant name) to a Core ML model.

    By default a pipeline for Vision: image in (RGB at the model's size, normalised inside), boxes decoded
    inside, then Core ML's NonMaximumSuppression; outputs 'confidence' (N x 1) and 'coordinates'
    (N x 4: x_center, y_center, width, height, normalised), optional Double inputs 'iouThreshold' and
    'confidenceThreshold', class label 'face'. VNCoreMLRequest returns VNRecognizedObjectObservations.

    With --landmarks: one model with MediaPipe's weighted NMS inside, outputs 'detections'
    (max-faces x 17: xmin, ymin, xmax, ymax, 6 keypoints (x, y), score; normalised; zero rows after the
    last face) and 'count'.

    A .tflite is converted on the fly and knows its variant and SHA-256. For a .pth the variant is
    --variant, else the one of --source-tflite, else the shipped model with identical weights, else the
    architecture's default; the metadata records the source SHA-256 when it is known, "unknown" otherwise.
    Check the result with 'blazeconv verify'.

    \b
    Examples:
      blazeconv coreml short_range -o ShortRange.mlpackage
      blazeconv coreml build/back.pth --landmarks -o build/back_landmarks.mlpackage
      blazeconv coreml build/front.pth --format neuralnetwork --precision float16 -o front.mlmodel
    """
    from .coreml import CoreMLOptions, build_coreml, default_output, load_source, save_coreml
    from .errors import OptionsError
    from .shipped import resolve_source

    options = CoreMLOptions(
        kind="landmarks" if landmarks else "vision",
        format=model_format,
        precision=precision,
        iou_threshold=iou_threshold,
        score_threshold=score_threshold,
        max_faces=max_faces,
    )
    _require("coremltools", "coreml", "blazeconv coreml")
    named = _variant_name(source)
    source = resolve_source(source)
    output = output or default_output(Path(named) if named else source, options)
    if output.suffix.lower() != options.suffix:
        raise OptionsError(f"{output}: a {model_format} model is saved as {options.suffix}, not {output.suffix or 'no suffix'}")
    _check_outputs([("-o", output)], [(label, path) for label, path in (
        ("the source", source), ("--source-tflite", source_tflite), ("--anchors", anchors_file)) if path is not None])
    loaded = load_source(source, variant=variant_name, source_tflite=source_tflite, anchors=anchors_file)
    options = options.resolved(loaded.variant)
    v = loaded.variant
    _say(f"{source}: {v.name} ({loaded.recognised_by}), {v.input_size}x{v.input_size}, {len(loaded.anchors)} anchors")
    model = build_coreml(loaded, options)
    save_coreml(model, output)
    what = "landmarks model (weighted NMS inside)" if landmarks else "Vision pipeline (detector + NMS)"
    _say(f"wrote {output}: {what}, {options.format} {options.precision}, IoU {options.iou_threshold:g}, "
         f"score {options.score_threshold:g}, up to {options.max_faces} faces, "
         f"source SHA-256 {loaded.source_sha256 or 'unknown'}")


@cli.command()
@click.argument("source", type=click.Path(path_type=Path, dir_okay=False))
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Where to write the model [default: SOURCE with suffix .onnx; with --detections, "
                   "<stem>_detections.onnx; for a variant name, in the current folder].")
@click.option("--detections", is_flag=True,
              help="Also decode and run MediaPipe's weighted NMS inside: outputs 'detections' (batch x max-faces x 17: "
                   "xmin, ymin, xmax, ymax, 6 keypoints (x, y), score; 0..1 of the input) and 'count'.")
@click.option("--min-score", type=FRACTION,
              help=f"With --detections: the default of the 'min_score' input [default: the variant's: {_thresholds_help()}].")
@click.option("--iou-threshold", type=FRACTION, default=0.3, show_default=True,
              help="With --detections: the default of the 'iou_threshold' input (MediaPipe's face graphs use 0.3).")
@click.option("--max-faces", type=click.IntRange(1, 100), default=16, show_default=True,
              help="With --detections: rows of 'detections' (the NMS step is repeated per row).")
@click.option("--variant", "variant_name", type=click.Choice(list(VARIANTS)),
              help="Which model the weights are (thresholds, anchors, metadata) [default: from the .tflite; for a "
                   ".pth the shipped model with identical weights, else short_range (128 px) or back (256 px)].")
@click.option("--source-tflite", type=click.Path(path_type=Path, dir_okay=False),
              help="With a .pth: the .tflite it was converted from (its weights must match); recorded by SHA-256.")
def onnx(source, output, detections, min_score, iou_threshold, max_faces, variant_name, source_tflite) -> None:
    """Export BlazeFace (SOURCE: MODEL.tflite, WEIGHTS.pth or a shipped variant name) to ONNX.

    The network: input 'image' (batch x 3 x S x S float32 RGB in -1..1, batch dynamic), outputs
    'regressors' (batch x N x 16) and 'classificators' (batch x N x 1), TFLite's raw outputs.
    With --detections the model also decodes (anchors inside) and runs MediaPipe's weighted NMS; optional
    float32 scalar inputs 'min_score' and 'iou_threshold' override the defaults written into it.
    The metadata records the variant, anchor options, thresholds, keypoint names and the source SHA-256.
    With --detections SOURCE may also be a network .onnx this command wrote: only the decoding and NMS are
    added (a second instead of a full export). Needs the onnx extra: pip install 'blazeconv[onnx]'.

    \b
    Examples:
      blazeconv onnx short_range                      # -> short_range.onnx
      blazeconv onnx short_range --detections         # -> short_range_detections.onnx
      blazeconv onnx short_range.onnx --detections    # the same, from the network
      blazeconv onnx build/back.pth --detections --min-score 0.7 -o back_faces.onnx
    """
    from .errors import OptionsError
    from .onnx_export import OPSET, default_output, export_detections, export_source
    from .shipped import resolve_source

    _require("onnx", "onnx", "blazeconv onnx")
    _require("onnxscript", "onnx", "blazeconv onnx")
    named = _variant_name(source)
    source = resolve_source(source)
    output = output or default_output(Path(f"{named}.onnx") if named else source, detections)
    _check_outputs([("-o", output)], [(label, path) for label, path in (
        ("the source", source), ("--source-tflite", source_tflite)) if path is not None])
    if source.suffix.lower() == ".onnx":
        if not detections or variant_name or source_tflite:
            raise OptionsError(f"{source}: an .onnx source only takes --detections (its metadata names the variant)")
        export_detections(source, output, min_score=min_score, iou_threshold=iou_threshold, max_faces=max_faces)
        _say(f"wrote {output}: detections model (weighted NMS inside) from the network {source}, IoU {iou_threshold:g}, "
             f"up to {max_faces} faces")
        return
    loaded = export_source(source, output, detections=detections, variant=variant_name, source_tflite=source_tflite,
                           min_score=min_score, iou_threshold=iou_threshold, max_faces=max_faces)
    v = loaded.variant
    _say(f"{source}: {v.name} ({loaded.recognised_by}), {v.input_size}x{v.input_size}, {v.num_anchors} anchors")
    if detections:
        score = v.min_score if min_score is None else min_score
        what = f"detections model (weighted NMS inside), min score {score:g}, IoU {iou_threshold:g}, up to {max_faces} faces"
    else:
        what = "network (raw outputs)"
    _say(f"wrote {output}: {what}, dynamic batch, opset {OPSET}, source SHA-256 {loaded.source_sha256 or 'unknown'}")


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("images", nargs=-1, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--weights", type=click.Path(path_type=Path, dir_okay=False),
              help="The .pth or .tflite the model was built from [default: the shipped .tflite whose SHA-256 the "
                   "model records].")
@click.option("--anchors", "anchors_file", type=click.Path(path_type=Path, dir_okay=False),
              help="The anchors .npy the model was built with, if it was built with --anchors.")
@click.option("--atol", type=FRACTION,
              help="Tolerance for boxes and keypoints [default: 1e-4 for float32 models, 2e-3 for float16].")
def verify(model, images, weights, anchors_file, atol) -> None:
    """Check a Core ML MODEL numerically against its PyTorch model, on any OS.

    Evaluates every operation of the saved model (its NMS stage included) with numpy on each of IMAGES
    (squashed to the model's input size) [default: the repository's test photos], runs the PyTorch model
    and MediaPipe's decoding on the same input, and compares: decoded boxes and keypoints within the
    tolerance (normalised units), and the same faces after NMS. Exits non-zero on any difference, or if
    the model holds an operation the evaluator does not know.

    \b
    Examples:
      blazeconv verify build/short_range.mlpackage
      blazeconv verify front.mlmodel photo.jpg --weights build/front.pth
    """
    from .coreml_verify import VerificationError, default_images, verify_coreml

    images = list(images) or default_images()
    if not images:
        raise click.UsageError("give IMAGES to verify on (the repository's test photos are not here)")
    result = verify_coreml(model, images, weights=weights, anchors=anchors_file, tolerance=atol)
    _say(f"{model}: {result.kind} model, {result.variant}, {result.format} {result.precision}, "
         f"tolerance {result.tolerance:g}")
    _say(f"  {'image':<28} {'faces':>5} {'torch':>5} {'same':>4} {'box err':>9} {'kpt err':>9} {'score err':>9}")
    for c in result.checks:
        keypoints = "-" if c.keypoint_error != c.keypoint_error else f"{c.keypoint_error:.2e}"
        _say(f"  {Path(c.image).name:<28} {c.faces:>5} {c.reference_faces:>5} {'yes' if c.same_faces else 'NO':>4} "
             f"{c.box_error:>9.2e} {keypoints:>9} {c.score_error:>9.2e}")
    every_anchor = [c.all_anchors_box_error for c in result.checks if c.all_anchors_box_error == c.all_anchors_box_error]
    if every_anchor:
        _say(f"  (box err: detection candidates; over all anchors, for information: {max(every_anchor):.2e})")
    total = sum(n for key, n in result.operations.items() if not key.startswith("model:"))
    kinds = sorted(key for key in result.operations if not key.startswith("model:"))
    models = ", ".join(sorted(key.split(":", 1)[1] for key in result.operations if key.startswith("model:")))
    _say(f"  evaluated {total} operations of {len(kinds)} kinds in models: {models}")
    if not result.passed:
        failures = result.failures()
        raise VerificationError(f"{model}: differs from PyTorch on {len(failures)} image(s): " + " | ".join(failures))
    _say(f"{model}: matches PyTorch on {len(result.checks)} image(s)")

_MAX_MESSAGE = 2000  # characters of an error line; a hostile file can put megabytes into a tensor name


def _one_line(message: object) -> str:
    """A message as one printable line of bounded length.

    A value's repr (a numpy array, say) may bring newlines, a file's strings control characters; overlong
    messages keep their start (the file) and end (the verdict).
    """
    text = re.sub(r"\s*\n\s*", " ", str(message).strip())
    if not text.isprintable():
        text = "".join(c if c.isprintable() else "?" for c in text)
    if len(text) > _MAX_MESSAGE:
        text = f"{text[:_MAX_MESSAGE // 2]} [...] {text[-_MAX_MESSAGE // 2:]}"
    return text


def _os_error_message(exc: OSError) -> str:
    """``FILE: reason`` for an operating-system error the user can fix (permissions, full disk, ...)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{exc.filename}: {reason}" if exc.filename else reason



@cli.command()
@click.option("--variant", "variants", multiple=True, type=click.Choice(list(VARIANTS)),
              help="Measure this model (repeatable) [default: every shipped model].")
@click.option("--rounds", type=click.IntRange(1, 10000),
              help="Timed rounds per measurement, the median is reported; a quarter as many at the large batch "
                   "[default: 40; --quick: 3].")
@click.option("--warmup", type=click.IntRange(0, 1000), help="Untimed rounds first [default: 5; --quick: 1].")
@click.option("--batch", type=click.IntRange(1, 1024), help="The large batch size [default: 32; --quick: 4].")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1, 256),
              help="torch, LiteRT, ONNX Runtime and OpenVINO threads for the per-image figures (the whole-process "
                   "detect runs use every core, as detect does).")
@click.option("--throughput-images", type=click.IntRange(0, 100000),
              help="Files for the whole-process detect and MediaPipe folder runs, 0 to skip them "
                   "[default: 1000; --quick: 40].")
@click.option("--one-photo-runs", type=click.IntRange(0, 1000),
              help="Whole-process 'detect one.jpg' runs per backend, 0 to skip [default: 5; --quick: 1].")
@click.option("--clock", type=click.Choice(["wall", "cpu"]), default="wall", show_default=True,
              help="Elapsed time, or the thread's CPU time (steadier on a busy machine; one thread only).")
@click.option("--photo", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="The photo the per-image figures use; the folder runs repeat the photos of its folder "
                   "[default: the shipped blazeconv/photos/astronaut.png, 512x512].")
@click.option("--mediapipe-python", type=click.Path(path_type=Path, dir_okay=False),
              help="Python of an environment with mediapipe 1.2.x, for MediaPipe's FaceDetector as the reference "
                   "(skipped with a note when missing) [default: $BLAZECONV_MEDIAPIPE_PYTHON, else "
                   ".venv-mediapipe/bin/python].")
@click.option("--quick", is_flag=True, help="A smoke test: fewer rounds, a small batch, few files.")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Also write the table to this file (Markdown).")
def bench(variants, rounds, warmup, batch, threads, throughput_images, one_photo_runs, clock, photo, mediapipe_python,
          quick, output) -> None:
    """Measure speed side by side with LiteRT and MediaPipe and print Markdown tables (stdout).

    For each model: the network alone at batch 1, in one --batch call and as --batch calls at batch 1 (LiteRT/XNNPACK,
    the eager PyTorch module, the fast path blazeconv.fast, and each installed ONNX backend: ONNX Runtime,
    OpenVINO), ms per image and the ratio to LiteRT, with start-ups and output differences; decode + weighted
    NMS per image; FaceDetector end to end on the decoded 512x512 photo per backend, against MediaPipe's own
    FaceDetector on the same array (short_range); each conversion stage. Then whole processes: detect over
    --throughput-images files per backend and MediaPipe over the same files, with peak memory, and 'detect
    one.jpg'. Medians after warm-up, contenders interleaved round by round; the targets of issue 12 at the end.
    Needs LiteRT (pip install 'blazeconv[bench]').

    \b
    Examples:
      blazeconv bench > bench.md
      blazeconv bench --variant short_range --rounds 100 --clock cpu
      blazeconv bench --quick
    """
    from .bench import default_options, format_report, run_bench
    from .io import atomic_path

    if output is not None:
        _check_outputs([("-o", output)], [("--photo", photo)] if photo else [])
    defaults = (3, 1, 4, 40, 1) if quick else (40, 5, 32, 1000, 5)
    rounds, warmup, batch, throughput_images, one_photo_runs = (
        given if given is not None else default
        for given, default in zip((rounds, warmup, batch, throughput_images, one_photo_runs), defaults)
    )
    options = default_options(variants, photo=photo, rounds=rounds, warmup=warmup, batch=batch, threads=threads,
                              throughput_images=throughput_images, one_photo_runs=one_photo_runs, clock=clock,
                              mediapipe_python=mediapipe_python)
    table = format_report(run_bench(options, progress=_say))
    click.echo(table)
    if output is not None:
        with atomic_path(output) as tmp:
            tmp.write_text(table + "\n")


# Schemes of files on a network: a path argument written like this is a URL, which blazeconv does not download.
_URL = re.compile(r"^(?:https?|ftps?|s3|gs|file)://", re.IGNORECASE)


def _debug_first(args: list[str]) -> list[str]:
    """``--debug`` is accepted anywhere before ``--``: moved in front of the subcommand, where click expects it."""
    end = args.index("--") if "--" in args else len(args)
    if "--debug" not in args[:end]:
        return args
    return ["--debug"] + [a for a in args[:end] if a != "--debug"] + args[end:]


def _refuse_urls(args: list[str]) -> None:
    from .io import PathUsageError

    for arg in args:
        value = arg.split("=", 1)[1] if arg.startswith("--") and "=" in arg else arg
        if _URL.match(value):
            raise PathUsageError(f"{value}: URLs are not read; download the file first and give its path")


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the CLI and turns every failure into one ``Error:`` line and a documented exit code.

    Exit codes: a ``BlazeconvError``'s own (2 paths that cannot be used together, 3 model file, 4 unsupported
    model, 5 weights, 6 image, 7 options, 8 missing optional dependency, 1 an output that cannot be written or
    another failure), 2 usage (click), 1 an operating-system error outside those (named with its file), 130 / 143
    interrupted by SIGINT / SIGTERM, 70 anything else: a bug, reported as an internal error. ``--debug`` adds the
    traceback.

    SIGINT and SIGTERM raise ``Interrupted`` from the moment the CLI starts (``blazeconv.interrupts``): clean-up
    code runs, temporary files go, and the first import of torch and other native packages is never cut short.
    """
    from .interrupts import Interrupted, guard_imports, handle_signals

    args = _debug_first(list(sys.argv[1:] if argv is None else argv))
    debug = bool(args) and args[0] == "--debug"
    with handle_signals(), guard_imports():
        try:
            code = _run(args, debug)
        except Interrupted as exc:
            if debug:
                traceback.print_exc()
            click.echo(f"Error: {_one_line(exc)}", err=True)
            code = exc.exit_code
    sys.exit(code)


def _run(args: list[str], debug: bool) -> int:
    """Run the CLI on ``args``; print the one error line of a failure; return the exit code."""
    try:
        _refuse_urls(args)
        cli.main(args=args, prog_name="blazeconv", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort as exc:
        if isinstance(exc.__context__, KeyboardInterrupt):  # a SIGINT under another handler than ours
            click.echo("Error: interrupted by SIGINT", err=True)
            return 130
        click.echo("Aborted.", err=True)
        return 1
    except BlazeconvError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"Error: {_one_line(exc)}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("Error: interrupted by SIGINT", err=True)
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (``--json - | head``): nothing more to say to it, and stop Python
        # from complaining about the failed flush at exit.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:  # the environment, not blazeconv: a file that cannot be read or written
        if debug:
            traceback.print_exc()
        click.echo(f"Error: {_one_line(_os_error_message(exc))}", err=True)
        return 1
    except Exception as exc:  # a bug: say so in one line, keep the traceback for --debug
        if debug:
            traceback.print_exc()
        detail = _one_line(f"{type(exc).__name__}: {exc}")
        click.echo(f"Error: internal error: {detail} (rerun with --debug for the traceback)", err=True)
        return INTERNAL_ERROR_EXIT
    return 0
