"""The measurements: the conversion stages, the networks (batch 1, one call at the large batch, batch-1 calls),
post-processing and end to end per image (with MediaPipe's worker), and whole ``detect`` processes.

The ``_measure_*`` functions return rows (``rows.py``): milliseconds per image, or seconds for whole processes and
stages; contenders compared are timed in turn, round by round (``timing.time_interleaved``).
"""

from __future__ import annotations

import dataclasses
import functools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..errors import OptionsError
from .contenders import _Contender, _MediaPipeWorker, mediapipe_command
from .rows import BenchModel, BenchOptions, NetworkRow, PipelineRow, ProcessRow, StageRow
from .timing import in_a_loop, run_measured, time_interleaved

# End to end, each contender runs this many calls in a row per round, the first untimed (``in_a_loop``).
LOOP_CALLS = 5


def _fast_initialisation() -> float:
    """Seconds the process's first ``compile_graph`` takes on a one-convolution module: the one-time part of the
    fast path's start-up, kept out of the per-model start-up column."""
    import torch

    from ..fast import compile_graph

    start = time.perf_counter()
    compile_graph(torch.nn.Conv2d(3, 4, 3).eval(), (1, 3, 8, 8))
    return time.perf_counter() - start


def _convert_timed(subject: BenchModel, repeats: int = 3):
    """Convert the model's .tflite stage by stage, ``repeats`` times after an untimed run (which pays the process's
    one-time imports); returns the loaded module and each stage's median time."""
    from ..anchors import generate_anchors
    from ..convert import convert_graph, save_state_dict
    from ..io import sha256_of
    from ..sources import load_model
    from ..tflite_reader import read_graph

    variant, path = subject.variant, subject.path
    samples: dict[str, list[float]] = {}

    def stage(label: str, run: Callable, *args):
        start = time.perf_counter()
        result = run(*args)
        samples.setdefault(label, []).append(time.perf_counter() - start)
        return result

    with tempfile.TemporaryDirectory(prefix="blazeconv-bench-") as folder:
        weights = Path(folder) / f"{variant.name}.pth"
        for _ in range(1 + repeats):
            digest = stage("checksum", sha256_of, path)
            graph = stage("read", read_graph, path)
            conversion = stage("derive", convert_graph, graph, digest)
            stage("save", save_state_dict, conversion.state_dict, weights)
            model = stage("load", load_model, weights, variant)
            stage("anchors", generate_anchors, variant.anchor_options)
    return model, StageRow(subject.name, {label: statistics.median(values[1:]) for label, values in samples.items()})


def _photo_input(photo: Path, size: int) -> np.ndarray:
    """The photo letterboxed as ``detect`` does: ``(3, S, S)`` float32 in [-1, 1]."""
    from ..detection import letterbox, load_image

    return letterbox(load_image(photo), size)[0]

def _measure_network(subject: BenchModel, contenders: dict[str, _Contender], options: BenchOptions) -> list[NetworkRow]:
    """Batch 1, one call at ``batch_size``, ``batch_size`` calls at batch 1: ms per image of every contender, in turn."""
    image = _photo_input(options.photo, subject.variant.input_size)  # (3, S, S)
    x1 = image[None]  # (1, 3, S, S)
    xb = np.ascontiguousarray(np.repeat(x1, options.batch_size, axis=0))  # (B, 3, S, S): the photo B times
    batch_rounds = max(3, options.rounds // 4)
    rows = []
    for mode, x, rounds, call in (
        ("1", x1, options.rounds, "one"),
        ("B", xb, batch_rounds, "one"),
        ("Bx1", xb, batch_rounds, "each"),
    ):
        runs = {label: functools.partial(getattr(c, call), x) for label, c in contenders.items()}
        medians = time_interleaved(runs, rounds, options.warmup, options.clock)
        rows.append(NetworkRow(subject.name, mode, len(x), {k: v * 1e3 / len(x) for k, v in medians.items()}))
    return rows


def _measure_pipeline(subject: BenchModel, model, contenders: dict[str, _Contender], startup: dict[str, float],
                      options: BenchOptions, mediapipe: Path | None) -> PipelineRow:
    from ..detection import decode_and_suppress, letterbox, load_image
    from ..detection.pipeline import _anchors
    from ..detector import FaceDetector

    variant = subject.variant
    photo = load_image(options.photo)  # (H, W, 3) uint8: what FaceDetector and MediaPipe are given
    tensor, _ = letterbox(photo, variant.input_size)
    litert = contenders["litert"].runner
    reference = litert.outputs(np.ascontiguousarray(tensor.transpose(1, 2, 0)))
    outputs = {label: c.runner.run(tensor[None]) for label, c in contenders.items() if label != "litert"}
    max_diff = {label: max(float(np.abs(a[0] - e).max()) for a, e in zip(out, reference))
                for label, out in outputs.items()}
    raw, logits = reference
    anchors = _anchors(variant.anchor_options)

    def post():
        return decode_and_suppress(raw, logits, anchors, variant.input_size, variant.min_score)

    detectors = {label: FaceDetector(c.runner, variant=variant, exact=True) for label, c in contenders.items() if label != "litert"}
    faces = {label: len(detector(photo)) for label, detector in detectors.items()}
    alone = time_interleaved({"post": post}, 10 * options.rounds, options.warmup, options.clock)["post"]
    runs: dict[str, Callable[[], object]] = {
        "litert": in_a_loop(lambda: contenders["litert"].one(tensor[None]), LOOP_CALLS, options.clock),
        "post": post,
        **{f"detect {label}": in_a_loop(lambda d=detector: d(photo), LOOP_CALLS, options.clock)
           for label, detector in detectors.items()},
    }
    worker = None
    with tempfile.TemporaryDirectory(prefix="blazeconv-bench-") as folder:
        if mediapipe is not None:
            array_file = Path(folder) / "photo.npy"
            np.save(array_file, photo)
            worker = _MediaPipeWorker(mediapipe, subject.path, variant.min_score, array_file, options.clock)
            runs["mediapipe"] = functools.partial(worker.time, LOOP_CALLS)
            faces["mediapipe"] = worker.faces
        try:
            medians = time_interleaved(runs, options.rounds, options.warmup, options.clock)
        finally:
            if worker is not None:
                worker.close()
    candidates = int((1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -100, 100))) >= variant.min_score).sum())
    return PipelineRow(
        variant=subject.name,
        anchors=len(anchors),
        candidates=candidates,
        post_ms=alone * 1e3,
        post_in_turn_ms=medians["post"] * 1e3,
        litert_ms=medians["litert"] * 1e3,
        detect_ms={label: medians[f"detect {label}"] * 1e3 for label in detectors},
        faces=faces,
        max_diff=max_diff,
        startup_s=startup,
        mediapipe_ms=medians["mediapipe"] * 1e3 if "mediapipe" in medians else None,
    )


def _detect_command(subject: BenchModel, backend: str, inputs: Sequence[str | Path], *options: str) -> list[str]:
    return [sys.executable, "-m", "blazeconv", "detect", *map(str, inputs), "--model", subject.argument(),
            "--backend", backend, "--quiet", *options]


def _measure_one_photo(subject: BenchModel, backends: list[str], options: BenchOptions) -> list[ProcessRow]:
    """``blazeconv detect one.jpg`` (the photo as a JPEG) per backend: median wall of ``one_photo_runs`` runs in
    turn, after one untimed run each (which fills the cache: converted weights, ONNX export)."""
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="blazeconv-bench-") as folder:
        one = Path(folder) / "one.jpg"
        with Image.open(options.photo) as image:
            image.convert("RGB").save(one, quality=95)
        for backend in backends:
            run_measured(_detect_command(subject, backend, [one], "--exact"))
        runs: dict[str, list[ProcessRow]] = {backend: [] for backend in backends}
        for _ in range(options.one_photo_runs):
            for backend in backends:
                runs[backend].append(run_measured(_detect_command(subject, backend, [one], "--exact")))
    return [
        ProcessRow(backend, 1, statistics.median(r.seconds for r in rows), statistics.median(r.cpu_seconds for r in rows),
                   max(r.peak_mib for r in rows))
        for backend, rows in runs.items()
    ]


def _measure_folder(subject: BenchModel, backends: list[str], mediapipe: Path | None,
                    options: BenchOptions) -> list[ProcessRow]:
    """``blazeconv detect FOLDER`` per backend and MediaPipe's loop over the same files, one process each, in turn."""
    sources = sorted(p for p in options.photos_dir.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not sources:
        raise OptionsError(f"{options.photos_dir}: no photos (.png, .jpg) to run detect on")
    variant = subject.variant
    rows = []
    with tempfile.TemporaryDirectory(prefix="blazeconv-bench-") as folder:
        files = Path(folder) / "files"
        files.mkdir()
        paths = []
        for i in range(options.throughput_images):
            source = sources[i % len(sources)]
            link = files / f"{i:05d}{source.suffix}"
            link.symlink_to(source.resolve())
            paths.append(link)
        listing = Path(folder) / "files.txt"
        listing.write_text("\n".join(map(str, paths)) + "\n")
        commands = {backend: _detect_command(subject, backend, [files], "--exact") for backend in backends}
        if mediapipe is not None:
            commands["mediapipe"] = mediapipe_command(mediapipe, subject.path, variant.min_score, "files",
                                                      str(listing))
        for contender, command in commands.items():
            row = run_measured(command)
            rows.append(ProcessRow(contender, len(paths), row.seconds, row.cpu_seconds, row.peak_mib))
    return rows


# Big photos: (label, width, height) of the JPEGs made from the photos, and the detect options measured on them.
BIG_SIZES = (("12 MP", 4000, 3000), ("37 MP", 7008, 5256))
# ANNOTATIONS stands for a fresh folder for --annotate.
ANNOTATIONS = "{annotations}"
BIG_MODES = {"exact": ("--exact",), "default": (), "annotate": ("--annotate", ANNOTATIONS), "no-tile": ("--no-tile",)}


def _measure_big_photos(subject: BenchModel, backend: str, mediapipe: Path | None, options: BenchOptions) -> dict[str, list[ProcessRow]]:
    """``blazeconv detect FOLDER`` over ``big_photos`` phone-sized JPEGs per size, in each of ``BIG_MODES``, and
    MediaPipe's loop over the same files: one process each, in turn."""
    from PIL import Image

    sources = sorted(p for p in options.photos_dir.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not sources:
        raise OptionsError(f"{options.photos_dir}: no photos (.png, .jpg) to make big photos from")
    variant = subject.variant
    results = {}
    for label, width, height in BIG_SIZES:
        with tempfile.TemporaryDirectory(prefix="blazeconv-bench-") as folder:
            files = Path(folder) / "files"
            files.mkdir()
            paths = []
            for i in range(options.big_photos):
                with Image.open(sources[i % len(sources)]) as image:
                    photo = _cover(image.convert("RGB"), width, height)
                paths.append(files / f"{i:03d}.jpg")
                photo.save(paths[-1], quality=90)
                del photo
            listing = Path(folder) / "files.txt"
            listing.write_text("\n".join(map(str, paths)) + "\n")
            commands = {mode: _detect_command(subject, backend, [files]) + [str(Path(folder) / mode) if flag == ANNOTATIONS
                                                                          else flag for flag in flags]
                        for mode, flags in BIG_MODES.items()}
            if mediapipe is not None:
                commands["mediapipe"] = mediapipe_command(mediapipe, subject.path, variant.min_score, "files",
                                                          str(listing))
            rows = []
            for contender, command in commands.items():
                row = run_measured(command)
                rows.append(ProcessRow(contender, len(paths), row.seconds, row.cpu_seconds, row.peak_mib))
            results[label] = rows
    return results


def _cover(image, width: int, height: int):
    """``image`` scaled (bicubic) to cover ``width`` x ``height`` and cut to it, centred."""
    from PIL import Image

    scale = max(width / image.width, height / image.height)
    resized = image.resize((max(width, round(image.width * scale)), max(height, round(image.height * scale))),
                           Image.Resampling.BICUBIC)
    left, top = (resized.width - width) // 2, (resized.height - height) // 2
    return resized.crop((left, top, left + width, top + height))


# Videos: what is measured on each clip: the detect options (detect's defaults; --exact: MediaPipe's processing),
# or the blur command's (OUTPUT: a fresh path for the
# output; blur runs with its own defaults).
OUTPUT = "{output}"
VIDEO_MODES = {"detect": ("detect",), "exact": ("detect", "--exact"), "annotate": ("detect", "--annotate", OUTPUT),
               "blur": ("blur", "-o", OUTPUT + ".mp4", "-q")}
# ``python -c`` this with COUNT_FILE ARGS...: ``blazeconv ARGS``, then the frames the process decoded
# (``video.frames_decoded``) written to COUNT_FILE as it exits.
_COUNTING = """
import atexit, sys

def count(path=sys.argv[1]):
    from blazeconv.detection.video import frames_decoded
    with open(path, "w") as file:
        file.write(str(frames_decoded()))

atexit.register(count)
sys.argv = ["blazeconv", *sys.argv[2:]]
from blazeconv.__main__ import main
main()
"""


def _video_command(subject: BenchModel, backend: str, clip: Path, flags: Sequence[str], output: Path) -> list[str]:
    """The command of a ``VIDEO_MODES`` entry on ``clip`` (``python -m blazeconv ...``)."""
    flags = [str(output) + flag[len(OUTPUT):] if flag.startswith(OUTPUT) else flag for flag in flags]
    if flags[0] == "detect":
        return _detect_command(subject, backend, [clip]) + flags[1:]
    return [sys.executable, "-m", "blazeconv", flags[0], str(clip), *flags[1:]]


def _run_counted(command: Sequence[str], folder: Path) -> ProcessRow:
    """``run_measured`` of a ``python -m blazeconv ...`` command, with the frames it decoded in the row's
    ``decoded``."""
    if list(command[1:3]) != ["-m", "blazeconv"]:
        raise ValueError(f"not a blazeconv command: {' '.join(map(str, command[:3]))}")
    count = folder / "decoded.txt"
    count.unlink(missing_ok=True)
    row = run_measured([command[0], "-c", _COUNTING, str(count), *command[3:]])
    return dataclasses.replace(row, decoded=int(count.read_text()) if count.exists() else None)


def _measure_videos(subject: BenchModel, backend: str, mediapipe: Path | None, options: BenchOptions,
                    notes: list[str]) -> dict[str, list[ProcessRow]]:
    """``blazeconv detect CLIP`` per clip of ``videos``, in each of ``VIDEO_MODES`` (``blur CLIP`` with blur's
    defaults), and MediaPipe's VIDEO mode over the same PyAV frames (the worker's ``video`` mode): one process
    each, in turn, with the frames each decoded. Keys: ``name (frames frames, W×H)``; rows count frames as images.
    A command that fails is left out with a note saying why."""
    from ..detection.video import probe

    variant = subject.variant
    results = {}
    for clip in (path.resolve() for path in options.videos):
        info = probe(clip)
        frames = _count_frames(clip)
        with tempfile.TemporaryDirectory(prefix="blazeconv-bench-") as folder:
            commands = {mode: _video_command(subject, backend, clip, flags, Path(folder) / mode)
                        for mode, flags in VIDEO_MODES.items()}
            if mediapipe is not None:
                commands["mediapipe video"] = mediapipe_command(mediapipe, subject.path, variant.min_score,
                                                                "video", str(clip))
            rows = []
            for contender, command in commands.items():
                try:
                    row = _run_counted(command, Path(folder)) if contender in VIDEO_MODES else run_measured(command)
                except OptionsError as exc:
                    notes.append(f"{clip.name}, {contender}: not measured: {exc}")
                    continue
                rows.append(dataclasses.replace(row, contender=contender, images=frames))
        results[f"{clip.name} ({frames} frames, {info.width}×{info.height})"] = rows
    return results


def _count_frames(clip: Path) -> int:
    """Frames of the clip's first video stream that have a timestamp (what ``detect`` reads), from its packets."""
    import av

    with av.open(str(clip)) as container:
        return sum(1 for packet in container.demux(container.streams.video[0]) if packet.size and packet.pts is not None)
