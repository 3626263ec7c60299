"""``blazeconv bench``: our models on every installed backend, side by side with LiteRT and MediaPipe, in one run.

A benchmark is a program, not a test: it measures, it asserts nothing. Every figure is a median over repeated
rounds after warm-up, and contenders that are compared are measured *interleaved* — each round times every
contender once — so a machine that gets busier half-way slows all of them alike and the ratios stay honest.

What is measured, per model (a shipped name or a ``.tflite``: LiteRT, the reference, runs TFLite files; converted and
exported on the spot or read from the cache):

* the network alone, ms per image, on the photo letterboxed: LiteRT (XNNPACK; its graph has batch 1 fixed by a
  RESHAPE, so a batch of ``n`` is ``n`` invocations), the PyTorch module (eager) and ``blazeconv.fast``, and each
  installed ONNX backend (ONNX Runtime, OpenVINO) — at batch 1, in one call at batch ``batch``, and as ``batch``
  calls at batch 1 (how the ONNX runners run a batch on the CPU); ratios to LiteRT; each contender's start-up;
  the largest difference of each from LiteRT's outputs;
* post-processing per image (``decode_and_suppress``), alone and in turn with the networks;
* end to end per image: ``FaceDetector`` on the decoded photo (an array) for each backend, against LiteRT's
  network plus our post-processing and, for ``short_range``, MediaPipe's own Tasks-API ``FaceDetector`` on the
  same array with the same ``.tflite`` (in its own Python, ``mediapipe_python``: it cannot share our
  environment; a worker process answers timing requests round by round, in turn with ours);
* the conversion stages;

and once, whole processes (a subprocess each, in turn; peak memory is the child's ``ru_maxrss``): ``blazeconv
detect FOLDER`` for each backend over ``throughput_images`` files (the photos repeated through symbolic links),
MediaPipe's ``FaceDetector`` over the same files one after another, ``blazeconv detect one.jpg`` with a warm
cache, and, for each clip of ``videos``, ``blazeconv detect CLIP`` (and with ``--annotate``) and ``blazeconv blur
CLIP``, with the frames each decoded, against MediaPipe's ``FaceDetector`` in VIDEO mode over the same PyAV frames.
Linux and macOS (``os.wait4``).

The package: ``rows`` (the options and the rows measured), ``timing`` (clocks, interleaved rounds, whole
processes), ``contenders`` (the networks and MediaPipe's worker client), ``measure`` (the measurements),
``report`` (the Markdown); ``mediapipe_worker.py`` and ``launcher.py`` are scripts another interpreter runs by
path; the bench never imports them.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..errors import OptionsError, require
from .contenders import (
    MEDIAPIPE_WORKER,
    ONNX_BACKENDS,
    _contenders,
    installed_onnx_backends,
    mediapipe_command,
)
from .measure import (
    BIG_MODES,
    BIG_SIZES,
    LOOP_CALLS,
    VIDEO_MODES,
    _convert_timed,
    _fast_initialisation,
    _measure_big_photos,
    _measure_folder,
    _measure_network,
    _measure_one_photo,
    _measure_pipeline,
    _measure_videos,
)
from .report import (
    TARGET_FOLDER_PEAK_MIB,
    TARGET_FOLDER_SPEEDUP,
    TARGET_ONE_PHOTO_S,
    format_report,
    format_targets,
)
from .rows import CLOCKS, QUICK, BenchModel, BenchOptions, BenchReport, NetworkRow, PipelineRow, ProcessRow, StageRow
from .timing import LAUNCHER, in_a_loop, run_measured, time_interleaved

DEFAULT_PHOTO = "astronaut.png"  # 512x512, shipped in blazeconv/photos
# MediaPipe (1.2.x) needs its own environment: opencv-contrib-python clashes with our opencv-python-headless.
DEFAULT_MEDIAPIPE_PYTHON = Path(".venv-mediapipe") / "bin" / "python"
MEDIAPIPE_ENV = "BLAZECONV_MEDIAPIPE_PYTHON"
# The model arguments a bench takes (``sources.KINDS``): LiteRT, the reference, runs TFLite files.
BENCH_KINDS = ("shipped", "tflite")
# MediaPipe's Tasks-API FaceDetector runs this model only (its own graph's anchors and input).
MEDIAPIPE_VARIANT = "short_range"

__all__ = [
    # the run and its report
    "BenchModel", "BenchOptions", "BenchReport", "NetworkRow", "PipelineRow", "ProcessRow", "StageRow", "bench_model", "default_options",
    "format_report", "format_targets", "machine_summary", "require_litert", "run_bench",
    # the instruments
    "BIG_MODES", "BIG_SIZES", "CLOCKS", "LAUNCHER", "LOOP_CALLS", "MEDIAPIPE_WORKER", "VIDEO_MODES", "in_a_loop",
    "installed_onnx_backends", "mediapipe_command", "run_measured", "time_interleaved",
    # constants
    "BENCH_KINDS", "DEFAULT_MEDIAPIPE_PYTHON", "DEFAULT_PHOTO", "MEDIAPIPE_ENV", "ONNX_BACKENDS", "QUICK", "TARGET_FOLDER_PEAK_MIB",
    "TARGET_FOLDER_SPEEDUP", "TARGET_ONE_PHOTO_S",
]


def machine_summary(threads: int) -> dict[str, str]:
    """CPU, core count and library versions, for the report's header."""
    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break

    def version(package: str) -> str:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "threads": str(threads),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "ai-edge-litert": version("ai-edge-litert"),
        "onnxruntime": version("onnxruntime"),
        "openvino": version("openvino"),
        "pillow": version("pillow"),
        "blazeconv": version("blazeconv"),
    }


def require_litert() -> None:
    """``MissingDependencyError`` (exit 8) naming the ``bench`` extra unless LiteRT (the reference) is installed."""
    require("ai_edge_litert", "blazeconv[bench]", "bench (it compares with LiteRT)")


def run_bench(options: BenchOptions, progress: Callable[[str], None] = lambda message: None) -> BenchReport:
    """Measure everything ``options`` asks for; ``progress`` receives a line before each step."""
    require_litert()
    if options.videos:
        from ..detection.video import require_video

        require_video()  # before minutes of measurements, not after
    started = time.perf_counter()
    report = BenchReport(options, machine_summary(options.threads))
    onnx = installed_onnx_backends()
    report.backends = ["litert", "eager", "fast", *onnx]
    missing = [name for name in ONNX_BACKENDS if name not in onnx]
    if missing:
        report.notes.append(f"not installed, not measured: {', '.join(missing)} (pip install 'blazeconv[convert]', "
                            "'blazeconv[openvino]')")
    mediapipe = _mediapipe_python(options, report.notes)
    report.fast_init_s = _fast_initialisation()
    from ..tuning import torch_threads

    with torch_threads(options.threads):
        for subject in options.models:
            name = subject.name
            progress(f"{name}: converting and exporting")
            model, stages = _convert_timed(subject)
            report.stages.append(stages)
            contenders, startup = _contenders(subject, model, onnx, options)
            progress(f"{name}: network, batch 1, {options.batch_size} and {options.batch_size} x 1")
            report.networks += _measure_network(subject, contenders, options)
            with_mediapipe = mediapipe if subject.variant.name == MEDIAPIPE_VARIANT else None
            progress(f"{name}: post-processing and end to end" + (" (and MediaPipe)" if with_mediapipe else ""))
            report.pipelines.append(_measure_pipeline(subject, model, contenders, startup, options, with_mediapipe))
    subject = next((m for m in options.models if m.variant.name == MEDIAPIPE_VARIANT), options.models[0])
    name = subject.name
    with_mediapipe = mediapipe if subject.variant.name == MEDIAPIPE_VARIANT else None
    if options.one_photo_runs:
        progress(f"detect one.jpg, whole process, {options.one_photo_runs} run(s) per backend ({name})")
        report.one_photo = _measure_one_photo(subject, ["torch", *onnx], options)
    if options.throughput_images:
        progress(f"detect on {options.throughput_images} files ({name}), whole process, per backend"
                 + (" and MediaPipe" if with_mediapipe else ""))
        report.folder = _measure_folder(subject, ["torch", *onnx], with_mediapipe, options)
    if options.big_photos:
        progress(f"detect on {options.big_photos} big JPEGs per size ({name}), exact, annotated, fast decode and tiles"
                 + (" and MediaPipe" if with_mediapipe else ""))
        report.big_photos = _measure_big_photos(subject, onnx[0] if onnx else "torch", with_mediapipe, options)
    if options.videos:
        progress(f"detect on {len(options.videos)} video(s) ({name}), plain and annotated, and blur"
                 + (" and MediaPipe's VIDEO mode" if with_mediapipe else ""))
        report.videos = _measure_videos(subject, onnx[0] if onnx else "torch", with_mediapipe, options, report.notes)
    if options.blur_clips:
        from .anonymise import measure_blur

        deface = options.deface_python
        if deface is None or not Path(deface).is_file():
            report.notes.append(f"blur against deface skipped: no deface environment at {deface} (--deface-python)")
        else:
            report.blur = measure_blur(options.blur_clips, Path(deface), blazeconv=_blazeconv_command(),
                                       progress=progress)
    report.seconds = time.perf_counter() - started
    return report


def _blazeconv_command() -> tuple[str, ...]:
    """How a bench runs ``blazeconv``: this interpreter on this package's entry point (the one being measured)."""
    import sys

    return (sys.executable, "-m", "blazeconv")


def _mediapipe_python(options: BenchOptions, notes: list[str]) -> Path | None:
    """The MediaPipe interpreter to use, or None with a note saying why MediaPipe is not measured."""
    python = options.mediapipe_python
    if python is None:
        notes.append("MediaPipe not measured: no interpreter given (--mediapipe-python)")
        return None
    if not python.is_file():
        notes.append(f"MediaPipe not measured: {python} does not exist (python3 -m venv .venv-mediapipe && "
                     ".venv-mediapipe/bin/pip install mediapipe==1.2.2)")
        return None
    if all(m.variant.name != MEDIAPIPE_VARIANT for m in options.models):
        notes.append(f"MediaPipe not measured: its Tasks-API FaceDetector runs {MEDIAPIPE_VARIANT}, which is not "
                     "benchmarked")
        return None
    return python


def bench_model(argument) -> BenchModel:
    """What the bench measures for a model argument (``sources.resolve``): a shipped name, or a ``.tflite`` (its
    variant recognised as ``tflite2torch`` recognises it); any other kind is refused in the one message every
    command gives (``sources.require_kind``, exit 7)."""
    from ..sources import require_kind, resolve

    source = require_kind(resolve(argument), BENCH_KINDS, "blazeconv bench", "LiteRT, the reference, runs TFLite files")
    if source.kind == "shipped":
        return BenchModel(source.variant.name, source.path, source.variant)
    from ..convert import convert_file

    return BenchModel(source.path.name, source.path, convert_file(source.path).variant, shipped=False)


def default_options(
    models: Sequence | None = None, photo: Path | None = None, photos_dir: Path | None = None,
    mediapipe_python: Path | None = None, **kwargs
) -> BenchOptions:
    """Options for ``models`` (model arguments, ``bench_model``; default: every shipped model whose file is
    present), with the shipped photos (``blazeconv/photos``), and MediaPipe's interpreter from
    ``$BLAZECONV_MEDIAPIPE_PYTHON``, else ``.venv-mediapipe/bin/python`` (relative to the current folder)."""
    from ..resources import models_dir
    from ..resources import photos_dir as shipped_photos_dir
    from ..variants import VARIANTS

    photos_dir = photos_dir or (photo.parent if photo else shipped_photos_dir())  # the throughput run's files
    photo = photo or photos_dir / DEFAULT_PHOTO
    if not photo.is_file():
        raise OptionsError(f"{photo}: no such photo (give --photo, a 512x512 image is the reference case)")
    if models:
        chosen = tuple(bench_model(m) for m in models)
    else:
        chosen = tuple(bench_model(v) for v in VARIANTS.values() if (models_dir() / v.tflite_file).is_file())
    if mediapipe_python is None:
        mediapipe_python = Path(os.environ.get(MEDIAPIPE_ENV) or DEFAULT_MEDIAPIPE_PYTHON)
    return BenchOptions(models=chosen, photo=photo, photos_dir=photos_dir, mediapipe_python=mediapipe_python,
                        **kwargs)
