"""``blazeconv bench``: our models on every installed backend, side by side with LiteRT and MediaPipe, in one run.

A benchmark is a program, not a test: it measures, it asserts nothing. Every figure is a median over repeated
rounds after warm-up, and contenders that are compared are measured *interleaved* — each round times every
contender once — so a machine that gets busier half-way slows all of them alike and the ratios stay honest.

What is measured, per variant (its shipped ``.tflite``, converted and exported on the spot or read from the cache):

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
MediaPipe's ``FaceDetector`` over the same files one after another, and ``blazeconv detect one.jpg`` with a warm
cache. Linux and macOS (``os.wait4``).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import importlib.metadata
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import MissingDependencyError, OptionsError

DEFAULT_PHOTO = "astronaut.png"  # 512x512, shipped in blazeconv/photos
CLOCKS = ("wall", "cpu")
# MediaPipe (1.2.x) needs its own environment: opencv-contrib-python clashes with our opencv-python-headless.
DEFAULT_MEDIAPIPE_PYTHON = Path(".venv-mediapipe") / "bin" / "python"
MEDIAPIPE_ENV = "BLAZECONV_MEDIAPIPE_PYTHON"
# The ONNX backends measured when installed, in the order of the tables.
ONNX_BACKENDS = ("onnxruntime", "openvino")
# Targets of issue 12, checked at the end of the report.
TARGET_FOLDER_SPEEDUP = 2.0
TARGET_FOLDER_PEAK_MIB = 300.0
TARGET_ONE_PHOTO_S = 0.7
# End to end, each contender runs this many calls in a row per round, the first untimed (``in_a_loop``).
LOOP_CALLS = 5


@dataclass(frozen=True)
class BenchOptions:
    """What to measure and how often.

    ``rounds``: timed rounds per measurement (the median is reported), after ``warmup`` untimed ones; batch
    ``batch`` rounds are fewer (``max(3, rounds // 4)``). ``threads``: torch, LiteRT, ONNX Runtime and OpenVINO
    threads for the per-image figures (``detect`` runs as it runs). ``clock``: ``wall`` (elapsed time) or ``cpu``
    (the calling thread's CPU time, steadier on a shared machine; only meaningful with one thread; MediaPipe's
    worker then times its whole process's CPU time, its own threads included). ``throughput_images``: files for
    the whole-process ``detect`` runs (0: skip them); ``one_photo_runs``: whole-process ``detect one.jpg`` runs
    per backend (0: skip). ``mediapipe_python``: the interpreter of an environment with ``mediapipe`` (None:
    skipped with a note).
    """

    variants: tuple[str, ...]
    photo: Path
    photos_dir: Path
    rounds: int = 40
    warmup: int = 5
    batch: int = 32
    threads: int = 1
    throughput_images: int = 1000
    one_photo_runs: int = 5
    clock: str = "wall"
    mediapipe_python: Path | None = None

    def __post_init__(self):
        if self.rounds < 1 or self.warmup < 0 or self.batch < 1 or self.threads < 1 or self.throughput_images < 0 \
                or self.one_photo_runs < 0:
            raise OptionsError("rounds, batch and threads must be positive; warmup, throughput images and one-photo "
                               "runs not negative")
        if self.clock not in CLOCKS:
            raise OptionsError(f"clock must be one of {', '.join(CLOCKS)}, got {self.clock!r}")


@dataclass(frozen=True)
class NetworkRow:
    """The network alone in one mode (``1``, ``B`` one call, ``Bx1`` calls): ms per image for each contender."""

    variant: str
    mode: str
    batch: int
    ms: dict[str, float]  # contender -> ms per image; "litert" is the reference

    def ratio(self, contender: str) -> float:
        return self.ms[contender] / self.ms["litert"]


@dataclass(frozen=True)
class PipelineRow:
    """Per image on the photo: post-processing, end to end for each backend, references, output parity."""

    variant: str
    anchors: int
    candidates: int  # anchors at or above the variant's min score on the photo
    post_ms: float  # decode + NMS repeated alone
    post_in_turn_ms: float  # the same, timed in turn with the others
    litert_ms: float
    detect_ms: dict[str, float]  # backend -> FaceDetector on the decoded photo
    faces: dict[str, int]  # backend (and "mediapipe") -> faces found on the photo
    max_diff: dict[str, float]  # contender -> largest |raw output - LiteRT's|
    startup_s: dict[str, float]  # contender -> seconds to build it (session, compile) for this variant
    mediapipe_ms: float | None = None

    @property
    def reference_ms(self) -> float:
        """LiteRT's network + our post-processing (alone)."""
        return self.litert_ms + self.post_ms


@dataclass(frozen=True)
class StageRow:
    """Seconds per conversion stage of one variant."""

    variant: str
    seconds: dict[str, float]


@dataclass(frozen=True)
class ProcessRow:
    """One whole process: ``blazeconv detect`` with a backend, or MediaPipe's loop, over ``images`` files."""

    contender: str
    images: int
    seconds: float  # wall, start to exit (median over runs for the one-photo rows)
    cpu_seconds: float  # the child's user + system time
    peak_mib: float  # the child's ru_maxrss

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds


@dataclass
class BenchReport:
    """Everything one ``run_bench`` measured, and the machine it ran on."""

    options: BenchOptions
    machine: dict[str, str]
    backends: list[str] = field(default_factory=list)  # the contenders of the network table, LiteRT first
    networks: list[NetworkRow] = field(default_factory=list)
    pipelines: list[PipelineRow] = field(default_factory=list)
    stages: list[StageRow] = field(default_factory=list)
    folder: list[ProcessRow] = field(default_factory=list)
    one_photo: list[ProcessRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fast_init_s: float = 0.0  # the first compile of a process (tracer imports, dispatcher caches), on a tiny module
    seconds: float = 0.0


# ------------------------------------------------------------------------------------------- timing


def _clock(kind: str) -> Callable[[], float]:
    return time.thread_time if kind == "cpu" else time.perf_counter


def time_interleaved(
    contenders: dict[str, Callable[[], object]], rounds: int, warmup: int, clock: str = "wall"
) -> dict[str, float]:
    """Median seconds per call of each contender; every round calls each once, in turn, after ``warmup`` rounds.

    A contender may time itself: when its call returns a float, that is its duration (the MediaPipe worker's own
    measurement, without the round trip to it).
    """
    now = _clock(clock)
    for _ in range(warmup):
        for run in contenders.values():
            run()
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            start = now()
            result = run()
            elapsed = now() - start
            samples[name].append(result if isinstance(result, float) else elapsed)
    return {name: statistics.median(values) for name, values in samples.items()}


def in_a_loop(run: Callable[[], object], calls: int, clock: str = "wall") -> Callable[[], float]:
    """``run`` as a self-timing contender for ``time_interleaved``: each round calls it ``calls`` times in a row and
    reports the mean of all but the first call, which brings its data back into the caches after the others ran
    (as an application calling a detector frame after frame keeps them)."""
    now = _clock(clock)

    def timed() -> float:
        run()
        start = now()
        for _ in range(calls - 1):
            run()
        return (now() - start) / (calls - 1)

    return timed


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run with ``count`` torch intra-op threads, restoring the previous setting afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _LiteRT:
    """One LiteRT interpreter (XNNPACK) for a BlazeFace file; outputs picked by shape, not by index."""

    def __init__(self, path: Path, threads: int):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]["index"]

    def run(self, images_nhwc: np.ndarray) -> None:
        """Invoke once per image of ``(B, S, S, 3)`` float32."""
        for image in images_nhwc:
            self.interpreter.set_tensor(self.input, image[None])
            self.interpreter.invoke()

    def run_nchw(self, batch: np.ndarray) -> None:
        """``run`` on ``(B, 3, S, S)``; the layout change is made once per batch array, outside later timings."""
        if batch is not getattr(self, "_last", None):
            self._last, self._last_nhwc = batch, np.ascontiguousarray(batch.transpose(0, 2, 3, 1))
        self.run(self._last_nhwc)

    def outputs(self, image_nhwc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(regressors (N, 16), classificators (N, 1))`` of one ``(S, S, 3)`` image."""
        self.run(image_nhwc[None])
        by_width = {d["shape"][-1]: self.interpreter.get_tensor(d["index"]) for d in self.interpreter.get_output_details()}
        return by_width[16][0], by_width[1][0]


# MediaPipe's Tasks-API FaceDetector, run by the interpreter of MediaPipe's own environment (numpy only besides).
# argv: model, min score, then "array FILE.npy CLOCK" (answer "N" lines on stdin with N durations in seconds, after a
# first line "faces version"; CLOCK "cpu" times the process's CPU time: MediaPipe may compute on threads of its own)
# or "files LIST.txt" (detect every listed file in turn; print "images faces").
_MEDIAPIPE_WORKER = r"""
import sys, time
import numpy as np
import mediapipe as mp
from mediapipe.tasks.python import BaseOptions
from mediapipe.tasks.python.vision import FaceDetector, FaceDetectorOptions, RunningMode
model, min_score, mode, data = sys.argv[1:5]
now = time.process_time if sys.argv[5:] == ["cpu"] else time.perf_counter
detector = FaceDetector.create_from_options(FaceDetectorOptions(
    base_options=BaseOptions(model_asset_path=model), running_mode=RunningMode.IMAGE,
    min_detection_confidence=float(min_score)))
if mode == "files":
    images = faces = 0
    for path in open(data).read().split("\n"):
        if path:
            faces += len(detector.detect(mp.Image.create_from_file(path)).detections)
            images += 1
    print(images, faces)
else:
    image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(np.load(data)))
    print(len(detector.detect(image).detections), mp.__version__, flush=True)
    for line in sys.stdin:
        times = []
        for _ in range(int(line)):
            start = now()
            detector.detect(image)
            times.append(now() - start)
        print(" ".join(repr(t) for t in times), flush=True)
"""


class _MediaPipeWorker:
    """MediaPipe's FaceDetector on one decoded photo in a worker process; ``time()`` runs it once and returns the
    seconds it took, measured in the worker: elapsed, or with ``clock="cpu"`` the worker's CPU time (all its threads)."""

    def __init__(self, python: Path, model: Path, min_score: float, array_file: Path, clock: str = "wall"):
        self.process = subprocess.Popen(
            [str(python), "-c", _MEDIAPIPE_WORKER, str(model), str(min_score), "array", str(array_file), clock],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        first = self.process.stdout.readline().split()
        if len(first) != 2:
            self.close()
            raise OptionsError(f"{python}: MediaPipe's FaceDetector did not start (is mediapipe installed there?)")
        self.faces, self.version = int(first[0]), first[1]

    def time(self, calls: int = 1) -> float:
        """Seconds per call: one call, or the mean of all but the first of ``calls`` in a row (``in_a_loop``)."""
        self.process.stdin.write(f"{calls}\n")
        self.process.stdin.flush()
        times = [float(t) for t in self.process.stdout.readline().split()]
        return times[0] if calls == 1 else statistics.fmean(times[1:])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# Starts a command and reports its wall seconds, CPU seconds, peak resident KiB (ru_maxrss) and exit code. A small
# process of its own forks the command: a child forked straight from the benchmark would inherit the benchmark's
# resident size as its starting peak (Linux keeps the pre-exec high-water mark in ru_maxrss).
_LAUNCHER = r"""
import os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.dup2(os.open(os.devnull, os.O_RDWR), 0)
    os.dup2(os.open(os.devnull, os.O_RDWR), 1)
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - start, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def run_measured(command: Sequence[str]) -> ProcessRow:
    """Run ``command`` to its end (its output discarded): wall seconds, CPU seconds and peak resident memory of
    the command's process (``ru_maxrss``). A failing command is an ``OptionsError`` with its last error line."""
    with tempfile.TemporaryFile() as errors:
        done = subprocess.run([sys.executable, "-I", "-S", "-c", _LAUNCHER, *map(str, command)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors, text=True)
        seconds, cpu, peak, code = done.stdout.split()
        if done.returncode != 0 or int(code) != 0:
            errors.seek(0)
            tail = errors.read().decode(errors="replace").strip().splitlines()[-1:] or [""]
            raise OptionsError(f"{' '.join(map(str, command[:6]))} ... failed ({code}): {tail[0][:300]}")
    # ru_maxrss: kibibytes on Linux, bytes on macOS.
    peak_mib = int(peak) / (1 << 20 if sys.platform == "darwin" else 1 << 10)
    return ProcessRow("", 0, float(seconds), float(cpu), peak_mib)


# ------------------------------------------------------------------------------------------ the run


def installed_onnx_backends() -> list[str]:
    """The ONNX backends whose runtime is installed."""
    from .backends import BACKENDS

    return [name for name in ONNX_BACKENDS if BACKENDS[name].installed()]


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
    if importlib.util.find_spec("ai_edge_litert") is None:
        raise MissingDependencyError(
            "bench compares with LiteRT, which is not installed: pip install 'blazeconv[bench]'"
        )


def run_bench(options: BenchOptions, progress: Callable[[str], None] = lambda message: None) -> BenchReport:
    """Measure everything ``options`` asks for; ``progress`` receives a line before each step."""
    require_litert()
    started = time.perf_counter()
    report = BenchReport(options, machine_summary(options.threads))
    onnx = installed_onnx_backends()
    report.backends = ["litert", "eager", "fast", *onnx]
    missing = [name for name in ONNX_BACKENDS if name not in onnx]
    if missing:
        report.notes.append(f"not installed, not measured: {', '.join(missing)} (pip install 'blazeconv[onnx]', "
                            "'blazeconv[openvino]')")
    mediapipe = _mediapipe_python(options, report.notes)
    report.fast_init_s = _fast_initialisation()
    with torch_threads(options.threads):
        for name in options.variants:
            progress(f"{name}: converting and exporting")
            model, stages = _convert_timed(name)
            report.stages.append(stages)
            contenders, startup = _contenders(name, model, onnx, options)
            progress(f"{name}: network, batch 1, {options.batch} and {options.batch} x 1")
            report.networks += _measure_network(name, contenders, options)
            progress(f"{name}: post-processing and end to end" + (" (and MediaPipe)" if mediapipe and
                                                                 name == "short_range" else ""))
            report.pipelines.append(_measure_pipeline(name, model, contenders, startup, options,
                                                      mediapipe if name == "short_range" else None))
    name = "short_range" if "short_range" in options.variants else options.variants[0]
    if options.one_photo_runs:
        progress(f"detect one.jpg, whole process, {options.one_photo_runs} run(s) per backend ({name})")
        report.one_photo = _measure_one_photo(name, ["torch", *onnx], options)
    if options.throughput_images:
        progress(f"detect on {options.throughput_images} files ({name}), whole process, per backend"
                 + (" and MediaPipe" if mediapipe else ""))
        report.folder = _measure_folder(name, ["torch", *onnx], mediapipe if name == "short_range" else None, options)
    report.seconds = time.perf_counter() - started
    return report


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
    if "short_range" not in options.variants:
        notes.append("MediaPipe not measured: its Tasks-API FaceDetector runs short_range, which is not benchmarked")
        return None
    return python


def _fast_initialisation() -> float:
    """Seconds the process's first ``compile_graph`` takes on a one-convolution module: the one-time part of the
    fast path's start-up, kept out of the per-model start-up column."""
    import torch

    from .fast import compile_graph

    start = time.perf_counter()
    compile_graph(torch.nn.Conv2d(3, 4, 3).eval(), (1, 3, 8, 8))
    return time.perf_counter() - start


def _convert_timed(name: str, repeats: int = 3):
    """Convert the shipped file stage by stage, ``repeats`` times after an untimed run (which pays the process's
    one-time imports); returns the loaded module and each stage's median time."""
    from .anchors import generate_anchors
    from .convert import convert_graph, save_state_dict
    from .io import sha256_of
    from .model import load_model
    from .shipped import shipped_model
    from .tflite_reader import read_graph
    from .variants import get_variant

    variant = get_variant(name)
    path = shipped_model(variant)
    samples: dict[str, list[float]] = {}

    def stage(label: str, run: Callable, *args):
        start = time.perf_counter()
        result = run(*args)
        samples.setdefault(label, []).append(time.perf_counter() - start)
        return result

    with tempfile.TemporaryDirectory(prefix="blazeconv-bench-") as folder:
        weights = Path(folder) / f"{name}.pth"
        for _ in range(1 + repeats):
            digest = stage("checksum", sha256_of, path)
            graph = stage("read", read_graph, path)
            conversion = stage("derive", convert_graph, graph, digest)
            stage("save", save_state_dict, conversion.state_dict, weights)
            model = stage("load", load_model, weights, variant)
            stage("anchors", generate_anchors, variant.anchor_options)
    return model, StageRow(name, {label: statistics.median(values[1:]) for label, values in samples.items()})


def _photo_input(photo: Path, size: int) -> np.ndarray:
    """The photo letterboxed as ``detect`` does: ``(3, S, S)`` float32 in [-1, 1]."""
    from .detect import letterbox, load_image

    return letterbox(load_image(photo), size)[0]


@dataclass
class _Contender:
    """A network to time: ``one(x)`` runs a batch in one call, ``each(x)`` as batch-1 calls; ``runner`` for the
    end-to-end ``FaceDetector``."""

    one: Callable[[np.ndarray], object]
    each: Callable[[np.ndarray], object]
    runner: object


def _contenders(name: str, model, onnx: list[str], options: BenchOptions):
    """Every network for ``name`` (LiteRT, eager, fast, the ONNX backends) and the seconds each took to build."""
    import torch

    from .backends.onnxruntime import OnnxRuntimeRunner
    from .backends.openvino import OpenVinoRunner
    from .fast import fast_model
    from .model import TorchRunner
    from .shipped import cached_onnx, shipped_model
    from .variants import get_variant

    variant = get_variant(name)
    startup: dict[str, float] = {}

    def timed(label: str, make: Callable[[], object]):
        start = time.perf_counter()
        made = make()
        startup[label] = time.perf_counter() - start
        return made

    litert = timed("litert", lambda: _LiteRT(shipped_model(variant), options.threads))
    fast = fast_model(model)
    size = variant.input_size
    for batch in (1, options.batch):  # compile both shapes now: reported as start-up, never timed
        timed(f"fast{batch}", lambda b=batch: fast(torch.zeros(b, 3, size, size)))
    startup["fast"] = startup.pop("fast1") + startup.pop(f"fast{options.batch}")

    def torch_calls(module):
        def one(x):
            with torch.inference_mode():
                return module(torch.from_numpy(x))

        def each(x):
            with torch.inference_mode():
                return [module(torch.from_numpy(x[i : i + 1])) for i in range(len(x))]

        return one, each

    contenders = {
        "litert": _Contender(litert.run_nchw, litert.run_nchw, litert),
        "eager": _Contender(*torch_calls(model), TorchRunner(model, variant)),
        "fast": _Contender(*torch_calls(fast), TorchRunner(fast, variant)),
    }
    if onnx:
        path = cached_onnx(variant)
    if "onnxruntime" in onnx:
        ort = timed("onnxruntime", lambda: OnnxRuntimeRunner(path, variant, threads=options.threads))
        one = OnnxRuntimeRunner(path, variant, threads=options.threads, per_image=False)
        contenders["onnxruntime"] = _Contender(one.run, ort.run, ort)
    if "openvino" in onnx:
        ov = timed("openvino", lambda: OpenVinoRunner(path, variant, threads=options.threads))
        dynamic = OpenVinoRunner(path, variant, threads=options.threads, per_image=False)
        contenders["openvino"] = _Contender(dynamic.run, ov.run, ov)
    return contenders, startup


def _measure_network(name: str, contenders: dict[str, _Contender], options: BenchOptions) -> list[NetworkRow]:
    """Batch 1, one call at ``batch``, ``batch`` calls at batch 1: ms per image of every contender, in turn."""
    from .variants import get_variant

    image = _photo_input(options.photo, get_variant(name).input_size)  # (3, S, S)
    x1 = image[None]  # (1, 3, S, S)
    xb = np.ascontiguousarray(np.repeat(x1, options.batch, axis=0))  # (B, 3, S, S): the photo B times
    batch_rounds = max(3, options.rounds // 4)
    rows = []
    for mode, x, rounds, call in (
        ("1", x1, options.rounds, "one"),
        ("B", xb, batch_rounds, "one"),
        ("Bx1", xb, batch_rounds, "each"),
    ):
        runs = {label: functools.partial(getattr(c, call), x) for label, c in contenders.items()}
        medians = time_interleaved(runs, rounds, options.warmup, options.clock)
        rows.append(NetworkRow(name, mode, len(x), {k: v * 1e3 / len(x) for k, v in medians.items()}))
    return rows


def _measure_pipeline(name: str, model, contenders: dict[str, _Contender], startup: dict[str, float],
                      options: BenchOptions, mediapipe: Path | None) -> PipelineRow:
    from .detect import _anchors, decode_and_suppress, letterbox, load_image
    from .detector import FaceDetector
    from .shipped import shipped_model
    from .variants import get_variant

    variant = get_variant(name)
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

    detectors = {label: FaceDetector(c.runner, variant=variant) for label, c in contenders.items() if label != "litert"}
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
            worker = _MediaPipeWorker(mediapipe, shipped_model(variant), variant.min_score, array_file, options.clock)
            runs["mediapipe"] = functools.partial(worker.time, LOOP_CALLS)
            faces["mediapipe"] = worker.faces
        try:
            medians = time_interleaved(runs, options.rounds, options.warmup, options.clock)
        finally:
            if worker is not None:
                worker.close()
    candidates = int((1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -100, 100))) >= variant.min_score).sum())
    return PipelineRow(
        variant=name,
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


def _detect_command(name: str, backend: str, inputs: Sequence[str | Path]) -> list[str]:
    return [sys.executable, "-m", "blazeconv", "detect", *map(str, inputs), "--model", name, "--backend", backend,
            "--quiet"]


def _measure_one_photo(name: str, backends: list[str], options: BenchOptions) -> list[ProcessRow]:
    """``blazeconv detect one.jpg`` (the photo as a JPEG) per backend: median wall of ``one_photo_runs`` runs in
    turn, after one untimed run each (which fills the cache: converted weights, ONNX export)."""
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="blazeconv-bench-") as folder:
        one = Path(folder) / "one.jpg"
        with Image.open(options.photo) as image:
            image.convert("RGB").save(one, quality=95)
        for backend in backends:
            run_measured(_detect_command(name, backend, [one]))
        runs: dict[str, list[ProcessRow]] = {backend: [] for backend in backends}
        for _ in range(options.one_photo_runs):
            for backend in backends:
                runs[backend].append(run_measured(_detect_command(name, backend, [one])))
    return [
        ProcessRow(backend, 1, statistics.median(r.seconds for r in rows), statistics.median(r.cpu_seconds for r in rows),
                   max(r.peak_mib for r in rows))
        for backend, rows in runs.items()
    ]


def _measure_folder(name: str, backends: list[str], mediapipe: Path | None, options: BenchOptions) -> list[ProcessRow]:
    """``blazeconv detect FOLDER`` per backend and MediaPipe's loop over the same files, one process each, in turn."""
    from .shipped import shipped_model
    from .variants import get_variant

    sources = sorted(p for p in options.photos_dir.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not sources:
        raise OptionsError(f"{options.photos_dir}: no photos (.png, .jpg) to run detect on")
    variant = get_variant(name)
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
        commands = {backend: _detect_command(name, backend, [files]) for backend in backends}
        if mediapipe is not None:
            commands["mediapipe"] = [str(mediapipe), "-c", _MEDIAPIPE_WORKER, str(shipped_model(variant)),
                                     str(variant.min_score), "files", str(listing)]
        for contender, command in commands.items():
            row = run_measured(command)
            rows.append(ProcessRow(contender, len(paths), row.seconds, row.cpu_seconds, row.peak_mib))
    return rows


# ------------------------------------------------------------------------------------------- report


def _ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}×"


_LABELS = {"litert": "LiteRT (XNNPACK)", "eager": "eager PyTorch", "fast": "fast", "onnxruntime": "ONNX Runtime",
           "openvino": "OpenVINO", "torch": "torch", "mediapipe": "MediaPipe FaceDetector"}
_MODES = {"1": "1", "B": "{b}", "Bx1": "{b} × 1"}


def format_report(report: BenchReport) -> str:
    """The report as Markdown: a header, then one table per kind of measurement, then the targets."""
    o, m = report.options, report.machine
    lines = [
        f"blazeconv bench — {m['date']}, {m['cpu']}, {m['cores']} cores; {m['threads']} thread(s) unless stated",
        f"python {m['python']}, torch {m['torch']}, numpy {m['numpy']}, ai-edge-litert {m['ai-edge-litert']}, "
        f"onnxruntime {m['onnxruntime']}, openvino {m['openvino']}, pillow {m['pillow']}, blazeconv {m['blazeconv']}",
        f"medians of {o.rounds} rounds (batch {o.batch}: {max(3, o.rounds // 4)}) after {o.warmup} warm-up, "
        f"{o.clock} clock, contenders interleaved; input: {o.photo.name} letterboxed; fast start-up: compiling "
        f"for batch 1 and {o.batch}, after the process's one-time {report.fast_init_s:.1f} s (first compile ever)",
        *(f"note: {note}" for note in report.notes),
    ]
    others = [c for c in report.backends if c != "litert"]
    lines += [
        "",
        f"Network, ms per image (× LiteRT). Batch: 1; {o.batch} in one call; {o.batch} × 1: {o.batch} calls at batch 1 "
        f"(how the ONNX runners run a batch on the CPU). LiteRT's graph has batch 1 fixed: its batch {o.batch} is "
        f"{o.batch} invocations.",
        "",
        "| variant | batch | " + " | ".join(_LABELS[c] for c in report.backends) + " |",
        "|---|---:|" + "---:|" * len(report.backends),
    ]
    for r in report.networks:
        cells = [f"{r.ms['litert']:.3f}"] + [f"{r.ms[c]:.3f} ({_ratio(r.ms[c], r.ms['litert'])})" for c in others]
        lines.append(f"| {r.variant} | {_MODES[r.mode].format(b=r.batch)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Start-up per model, seconds (LiteRT: interpreter; fast start-up: compiling both shapes; ONNX Runtime: "
        "session from the cached export; OpenVINO: read and compile), and the largest |difference| of the raw "
        f"outputs from LiteRT's on {o.photo.name}:",
        "",
        "| variant | " + " | ".join(f"{_LABELS[c].replace('fast', 'fast start-up')}" for c in report.backends)
        + " | " + " | ".join(f"max diff {c}" for c in others) + " |",
        "|---|" + "---:|" * (len(report.backends) + len(others)),
    ]
    for p in report.pipelines:
        cells = [f"{p.startup_s[c]:.2f} s" if c in p.startup_s else "—" for c in report.backends]
        cells += [f"{p.max_diff[c]:.1e}" for c in others]
        lines.append(f"| {p.variant} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Per image on {o.photo.name} (decoded, {_size(o.photo)}): decode + score threshold + weighted NMS of the raw "
        "outputs (candidates: anchors above the score threshold), alone (repeated, warm caches) and in turn with the "
        "others; `FaceDetector` end to end on the decoded array (letterbox, network, post-processing) per backend, "
        "× LiteRT's network + our post-processing (alone) and × MediaPipe's Tasks-API FaceDetector on the same array "
        "(short_range's file; its own process, timed in turn with ours, round by round).",
        "",
        "| variant | anchors | candidates | decode + NMS ms | in turn | LiteRT + post ms | MediaPipe ms | "
        + " | ".join(f"{_LABELS[c]} detect ms" for c in others) + " |",
        "|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(others),
    ]
    for p in report.pipelines:
        mp = f"{p.mediapipe_ms:.3f}" if p.mediapipe_ms else "—"
        cells = []
        for c in others:
            cell = f"{p.detect_ms[c]:.3f} ({_ratio(p.detect_ms[c], p.reference_ms)}"
            cell += f"; {_ratio(p.detect_ms[c], p.mediapipe_ms)} MP)" if p.mediapipe_ms else ")"
            cells.append(cell)
        lines.append(f"| {p.variant} | {p.anchors} | {p.candidates} | {p.post_ms:.3f} | {p.post_in_turn_ms:.3f} | "
                     f"{p.reference_ms:.3f} | {mp} | " + " | ".join(cells) + " |")
    faces = {p.variant: p.faces for p in report.pipelines}
    lines += ["", "Faces found on the photo: " + "; ".join(
        f"{v}: " + ", ".join(f"{_LABELS.get(c, c)} {n}" for c, n in f.items()) for v, f in faces.items())]
    if report.folder:
        reference = next((r for r in report.folder if r.contender == "mediapipe"), None)
        lines += [
            "",
            f"`blazeconv detect FOLDER --backend X` on {report.folder[0].images} files (the photos of "
            f"{o.photos_dir.name}/ repeated), whole process (start-up and decoding included), one process each, in "
            "turn; MediaPipe: its FaceDetector over the same files one after another in a plain loop. Peak memory: "
            "the process's maximum resident set.",
            "",
            "| process | seconds | images/s | CPU s | peak MiB | × MediaPipe images/s |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in report.folder:
            versus = f"{r.images_per_second / reference.images_per_second:.2f}×" if reference else "—"
            lines.append(f"| {_LABELS.get(r.contender, r.contender)} | {r.seconds:.2f} | {r.images_per_second:.0f} | "
                         f"{r.cpu_seconds:.2f} | {r.peak_mib:.0f} | {versus} |")
    if report.one_photo:
        lines += [
            "",
            f"`blazeconv detect one.jpg --backend X` ({o.photo.name} as a JPEG), whole process with a warm cache, "
            f"median of {o.one_photo_runs} run(s) in turn:",
            "",
            "| backend | seconds | CPU s | peak MiB |",
            "|---|---:|---:|---:|",
        ]
        for r in report.one_photo:
            lines.append(f"| {_LABELS.get(r.contender, r.contender)} | {r.seconds:.2f} | {r.cpu_seconds:.2f} | "
                         f"{r.peak_mib:.0f} |")
    if report.stages:
        labels = list(report.stages[0].seconds)
        lines += [
            "",
            "Conversion stages, ms, in a warm process (read: flatbuffer parse with dequantise/densify; derive: "
            "dataflow walk and state_dict; save: the .pth; load: `load_model`):",
            "",
            "| variant | " + " | ".join(labels) + " | total |",
            "|---|" + "---:|" * (len(labels) + 1),
        ]
        for s in report.stages:
            cells = " | ".join(f"{s.seconds[label] * 1e3:.1f}" for label in labels)
            lines.append(f"| {s.variant} | {cells} | {sum(s.seconds.values()) * 1e3:.1f} |")
    lines += ["", *format_targets(report), "", f"benchmark run time {report.seconds:.0f} s"]
    return "\n".join(lines)


def _size(photo: Path) -> str:
    from PIL import Image

    with Image.open(photo) as image:
        return f"{image.width}×{image.height}"


def format_targets(report: BenchReport) -> list[str]:
    """Issue 12's targets against this run's figures: what was measured and the ratio to the target."""
    lines = ["Targets (this run):", "", "| target | measured | ratio to target |", "|---|---|---:|"]
    shipped = [c for c in report.backends if c not in ("litert", "fast")]  # what FaceDetector(backend=...) runs
    for row in (r for r in report.networks if r.mode == "1"):
        best = min(shipped, key=lambda c: row.ms[c])
        lines.append(f"| fastest backend ≤ 1.0× LiteRT at batch 1, {row.variant} | {_LABELS[best]} "
                     f"{row.ratio(best):.2f}× | {row.ratio(best):.2f} |")
    for p in (p for p in report.pipelines if p.mediapipe_ms):
        best = min((c for c in p.detect_ms if c != "fast"), key=lambda c: p.detect_ms[c])
        ratio = p.detect_ms[best] / p.mediapipe_ms
        lines.append(f"| FaceDetector ≤ 1.0× MediaPipe end to end, {p.variant} | {_LABELS[best]} "
                     f"{p.detect_ms[best]:.3f} ms vs {p.mediapipe_ms:.3f} ms | {ratio:.2f} |")
    reference = next((r for r in report.folder if r.contender == "mediapipe"), None)
    ours = [r for r in report.folder if r.contender != "mediapipe"]
    if reference and ours:
        best = max(ours, key=lambda r: r.images_per_second)
        speedup = best.images_per_second / reference.images_per_second
        lines.append(f"| detect on {best.images} files ≥ {TARGET_FOLDER_SPEEDUP:g}× MediaPipe's images/s | "
                     f"{_LABELS[best.contender]} {speedup:.2f}× | {TARGET_FOLDER_SPEEDUP / speedup:.2f} |")
        lines.append(f"| … at ≤ {TARGET_FOLDER_PEAK_MIB:g} MiB peak | {best.peak_mib:.0f} MiB | "
                     f"{best.peak_mib / TARGET_FOLDER_PEAK_MIB:.2f} |")
    if report.one_photo:
        best = min(report.one_photo, key=lambda r: r.seconds)
        lines.append(f"| detect one.jpg ≤ {TARGET_ONE_PHOTO_S:g} s (warm cache) | {_LABELS[best.contender]} "
                     f"{best.seconds:.2f} s | {best.seconds / TARGET_ONE_PHOTO_S:.2f} |")
    lines.append("")
    lines.append("Ratio to target: measured / target (≤ 1 meets it; for images/s, target / measured).")
    return lines


def default_options(
    variants: Sequence[str] | None = None, photo: Path | None = None, photos_dir: Path | None = None,
    mediapipe_python: Path | None = None, **kwargs
) -> BenchOptions:
    """Options with the shipped photos (``blazeconv/photos``), every variant whose shipped file is present, and
    MediaPipe's interpreter from ``$BLAZECONV_MEDIAPIPE_PYTHON``, else ``.venv-mediapipe/bin/python`` (relative to
    the current folder)."""
    from .shipped import models_dir
    from .shipped import photos_dir as shipped_photos_dir
    from .variants import VARIANTS, get_variant

    photos_dir = photos_dir or (photo.parent if photo else shipped_photos_dir())  # the throughput run's files
    photo = photo or photos_dir / DEFAULT_PHOTO
    if not photo.is_file():
        raise OptionsError(f"{photo}: no such photo (give --photo, a 512x512 image is the reference case)")
    if variants:
        chosen = tuple(get_variant(v).name for v in variants)
    else:
        chosen = tuple(v.name for v in VARIANTS.values() if (models_dir() / v.tflite_file).is_file())
    if mediapipe_python is None:
        mediapipe_python = Path(os.environ.get(MEDIAPIPE_ENV) or DEFAULT_MEDIAPIPE_PYTHON)
    return BenchOptions(variants=chosen, photo=photo, photos_dir=photos_dir, mediapipe_python=mediapipe_python,
                        **kwargs)
