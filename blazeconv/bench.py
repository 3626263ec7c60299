"""``blazeconv bench``: our PyTorch models side by side with LiteRT, measured in one run on one machine.

A benchmark is a program, not a test: it measures, it asserts nothing. Every figure is a median over repeated
rounds after warm-up, and contenders that are compared are measured *interleaved* — each round times every
contender once — so a machine that gets busier half-way slows all of them alike and the ratios stay honest.

What is measured, per variant (its shipped ``.tflite`` converted on the spot):

* the network alone, ms per image at batch 1 and batch ``batch``: LiteRT (XNNPACK, its graph has batch 1
  fixed by a RESHAPE, so batch ``n`` is ``n`` invocations), the PyTorch module as ``load_model`` returns it
  (eager, NCHW) and ``blazeconv.fast`` (compiled per input shape); ratios to LiteRT at the same batch; the fast
  model's one-time start-up; the largest difference of each from LiteRT's outputs on the photo;
* post-processing per image: ``decode_and_suppress`` (decode, score threshold, weighted NMS) of the photo's
  raw outputs, alone (repeated: its own cost) and in turn with the networks (after them: cold caches), and
  ``detect_image`` end to end on the decoded photo (letterbox, fast model, post-processing, letterbox removal)
  against LiteRT's network time plus our post-processing (alone);
* the conversion stages: checksum, reading the flatbuffer (with dequantising/densifying), deriving the
  state_dict, saving it, ``load_model``, anchors;

and once: ``detect_files`` over ``throughput_images`` files (the photos repeated through symbolic links in a
temporary folder) as the ``detect`` command runs it (a loader thread per core, the model on one torch thread),
eager and fast, in images per second including image decoding.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import OptionsError

DEFAULT_PHOTO = "astronaut.png"  # 512x512, in the repository's tests/data/images
CLOCKS = ("wall", "cpu")


@dataclass(frozen=True)
class BenchOptions:
    """What to measure and how often.

    ``rounds``: timed rounds per measurement (the median is reported), after ``warmup`` untimed ones; batch
    ``batch`` rounds are fewer (``max(3, rounds // 4)``). ``threads``: torch and LiteRT threads for the per-image
    figures (the throughput run uses every core). ``clock``: ``wall`` (elapsed time) or ``cpu`` (the calling
    thread's CPU time, steadier on a shared machine; only meaningful with one thread).
    """

    variants: tuple[str, ...]
    photo: Path
    photos_dir: Path
    rounds: int = 40
    warmup: int = 5
    batch: int = 32
    threads: int = 1
    throughput_images: int = 1000
    clock: str = "wall"

    def __post_init__(self):
        if self.rounds < 1 or self.warmup < 0 or self.batch < 1 or self.threads < 1 or self.throughput_images < 0:
            raise OptionsError("rounds, batch and threads must be positive; warmup and throughput images not negative")
        if self.clock not in CLOCKS:
            raise OptionsError(f"clock must be one of {', '.join(CLOCKS)}, got {self.clock!r}")


@dataclass(frozen=True)
class ModelRow:
    """The network alone at one batch size: ms per image, and the fast model's start-up for that shape."""

    variant: str
    batch: int
    litert_ms: float
    eager_ms: float
    fast_ms: float
    fast_startup_s: float


@dataclass(frozen=True)
class PipelineRow:
    """Per image on the photo: post-processing, end-to-end detect, the reference it is held to, output parity."""

    variant: str
    anchors: int
    candidates: int  # anchors at or above the variant's min score on the photo
    post_ms: float  # decode + NMS repeated alone
    post_in_turn_ms: float  # the same, timed in turn with LiteRT and detect
    detect_ms: float
    litert_ms: float
    eager_max_diff: float
    fast_max_diff: float

    @property
    def detect_ratio(self) -> float:
        """End-to-end detect over (LiteRT network + our post-processing)."""
        return self.detect_ms / (self.litert_ms + self.post_ms)


@dataclass(frozen=True)
class StageRow:
    """Seconds per conversion stage of one variant."""

    variant: str
    seconds: dict[str, float]


@dataclass(frozen=True)
class ThroughputRow:
    """``detect`` over many files with every core: images per second."""

    mode: str
    images: int
    seconds: float
    batch: int
    workers: int  # threads decoding and letterboxing files; the model runs beside them on one torch thread

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds


@dataclass
class BenchReport:
    """Everything one ``run_bench`` measured, and the machine it ran on."""

    options: BenchOptions
    machine: dict[str, str]
    models: list[ModelRow] = field(default_factory=list)
    pipelines: list[PipelineRow] = field(default_factory=list)
    stages: list[StageRow] = field(default_factory=list)
    throughput: list[ThroughputRow] = field(default_factory=list)
    fast_init_s: float = 0.0  # the first compile of a process (tracer imports, dispatcher caches), on a tiny module
    seconds: float = 0.0


# ------------------------------------------------------------------------------------------- timing


def _clock(kind: str) -> Callable[[], float]:
    return time.thread_time if kind == "cpu" else time.perf_counter


def time_interleaved(
    contenders: dict[str, Callable[[], object]], rounds: int, warmup: int, clock: str = "wall"
) -> dict[str, float]:
    """Median seconds per call of each contender; every round calls each once, in turn, after ``warmup`` rounds."""
    now = _clock(clock)
    for _ in range(warmup):
        for run in contenders.values():
            run()
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            start = now()
            run()
            samples[name].append(now() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


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

    def outputs(self, image_nhwc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(regressors (N, 16), classificators (N, 1))`` of one ``(S, S, 3)`` image."""
        self.run(image_nhwc[None])
        by_width = {d["shape"][-1]: self.interpreter.get_tensor(d["index"]) for d in self.interpreter.get_output_details()}
        return by_width[16][0], by_width[1][0]


# ------------------------------------------------------------------------------------------ the run


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
        "pillow": version("pillow"),
        "blazeconv": version("blazeconv"),
    }


def run_bench(options: BenchOptions, progress: Callable[[str], None] = lambda message: None) -> BenchReport:
    """Measure everything ``options`` asks for; ``progress`` receives a line before each step."""
    started = time.perf_counter()
    report = BenchReport(options, machine_summary(options.threads))
    report.fast_init_s = _fast_initialisation()
    models = {}
    with torch_threads(options.threads):
        for name in options.variants:
            progress(f"{name}: converting")
            models[name], stages = _convert_timed(name)
            report.stages.append(stages)
            progress(f"{name}: network, batch 1 and {options.batch}")
            report.models += _measure_network(name, models[name], options)
            progress(f"{name}: post-processing and detect")
            report.pipelines.append(_measure_pipeline(name, models[name], options))
    if options.throughput_images:
        name = "short_range" if "short_range" in options.variants else options.variants[0]
        progress(f"detect on {options.throughput_images} files ({name}), eager and fast")
        report.throughput += _measure_throughput(name, models[name], options)
    report.seconds = time.perf_counter() - started
    return report


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
            model = stage("load", load_model, weights)
            stage("anchors", generate_anchors, variant.anchor_options)
    return model, StageRow(name, {label: statistics.median(values[1:]) for label, values in samples.items()})


def _photo_input(photo: Path, size: int) -> np.ndarray:
    """The photo letterboxed as ``detect`` does: ``(3, S, S)`` float32 in [-1, 1]."""
    from .detect import letterbox, load_image

    return letterbox(load_image(photo), size)[0]


def _measure_network(name: str, model, options: BenchOptions) -> list[ModelRow]:
    from .shipped import shipped_model
    from .variants import get_variant

    variant = get_variant(name)
    litert = _LiteRT(shipped_model(variant), options.threads)
    image = _photo_input(options.photo, variant.input_size)  # (3, S, S)
    return [
        _network_row(name, model, litert, image, batch, rounds, options)
        for batch, rounds in ((1, options.rounds), (options.batch, max(3, options.rounds // 4)))
    ]


def _network_row(name: str, model, litert: _LiteRT, image: np.ndarray, batch: int, rounds: int,
                 options: BenchOptions) -> ModelRow:
    import torch

    from .fast import fast_model

    x = torch.from_numpy(np.repeat(image[None], batch, axis=0))  # (B, 3, S, S): the photo B times
    x_nhwc = np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy())  # (B, S, S, 3)
    fast = fast_model(model)
    with torch.inference_mode():
        fast(x)  # compile (and first run) outside the timing: reported as start-up
        medians = time_interleaved(
            {"litert": lambda: litert.run(x_nhwc), "eager": lambda: model(x), "fast": lambda: fast(x)},
            rounds, options.warmup, options.clock,
        )
    per_image = [medians[k] * 1e3 / batch for k in ("litert", "eager", "fast")]
    return ModelRow(name, batch, *per_image, fast.startup_seconds)


def _measure_pipeline(name: str, model, options: BenchOptions) -> PipelineRow:
    import torch

    from .detect import _anchors, decode_and_suppress, detect_image, letterbox, load_image
    from .fast import fast_model
    from .shipped import shipped_model
    from .variants import get_variant

    variant = get_variant(name)
    litert = _LiteRT(shipped_model(variant), options.threads)
    photo = load_image(options.photo)
    tensor, _ = letterbox(photo, variant.input_size)
    x = torch.from_numpy(tensor)[None]  # (1, 3, S, S)
    x_nhwc = np.ascontiguousarray(tensor.transpose(1, 2, 0))[None]  # (1, S, S, 3)
    anchors = _anchors(variant.anchor_options)
    fast = fast_model(model)
    with torch.inference_mode():
        raw, logits = (t[0].numpy() for t in fast(x))
        eager_outputs = [t[0].numpy() for t in model(x)]
    litert_outputs = litert.outputs(x_nhwc[0])
    fast_outputs = (raw, logits)
    def post():
        return decode_and_suppress(raw, logits, anchors, variant.input_size, variant.min_score)

    # Alone: the post-processing's own cost, repeated on the same outputs (10 calls per round, warm caches).
    alone = time_interleaved({"post": post}, 10 * options.rounds, options.warmup, options.clock)["post"]
    # In turn with the networks and detect, as in a real pipeline: caches hold the network's data, not ours.
    medians = time_interleaved(
        {"litert": lambda: litert.run(x_nhwc), "post": post, "detect": lambda: detect_image(fast, photo, variant)},
        options.rounds, options.warmup, options.clock,
    )
    candidates = int((1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -100, 100))) >= variant.min_score).sum())
    return PipelineRow(
        variant=name,
        anchors=len(anchors),
        candidates=candidates,
        post_ms=alone * 1e3,
        post_in_turn_ms=medians["post"] * 1e3,
        detect_ms=medians["detect"] * 1e3,
        litert_ms=medians["litert"] * 1e3,
        eager_max_diff=max(float(np.abs(a - e).max()) for a, e in zip(eager_outputs, litert_outputs)),
        fast_max_diff=max(float(np.abs(a - e).max()) for a, e in zip(fast_outputs, litert_outputs)),
    )


def _measure_throughput(name: str, model, options: BenchOptions) -> list[ThroughputRow]:
    """``detect_files`` over ``throughput_images`` links to the photos, all cores, eager then fast."""
    from .detect import detect_files
    from .fast import fast_model
    from .variants import get_variant

    sources = sorted(p for p in options.photos_dir.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not sources:
        raise OptionsError(f"{options.photos_dir}: no photos (.png, .jpg) to run detect on")
    variant = get_variant(name)
    cores = os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory(prefix="blazeconv-bench-") as folder:
        paths = []
        for i in range(options.throughput_images):
            source = sources[i % len(sources)]
            link = Path(folder) / f"{i:05d}{source.suffix}"
            link.symlink_to(source.resolve())
            paths.append(link)
        for mode in ("eager", "fast"):
            start = time.perf_counter()
            runner = fast_model(model) if mode == "fast" else model  # the fast model compiles inside the timing
            found = detect_files(runner, paths, variant, batch_size=32, workers=cores)  # as the detect command runs
            count = sum(1 for _, _, detections in found if detections is not None)
            rows.append(ThroughputRow(mode, count, time.perf_counter() - start, 32, cores))
    return rows


# ------------------------------------------------------------------------------------------- report


def _ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}×"


def format_report(report: BenchReport) -> str:
    """The report as Markdown: a header, then one table per kind of measurement."""
    o, m = report.options, report.machine
    lines = [
        f"blazeconv bench — {m['date']}, {m['cpu']}, {m['cores']} cores; {m['threads']} thread(s) unless stated",
        f"python {m['python']}, torch {m['torch']}, numpy {m['numpy']}, ai-edge-litert {m['ai-edge-litert']}, "
        f"pillow {m['pillow']}, blazeconv {m['blazeconv']}",
        f"medians of {o.rounds} rounds (batch {o.batch}: {max(3, o.rounds // 4)}) after {o.warmup} warm-up, "
        f"{o.clock} clock, contenders interleaved; input: {o.photo.name} letterboxed; fast start-up: compiling "
        f"for that input shape, after the process's one-time {report.fast_init_s:.1f} s (first compile ever)",
        "",
        f"Network, ms per image (× LiteRT at the same batch). LiteRT's graph has batch 1 fixed: batch {o.batch} "
        f"is {o.batch} invocations.",
        "",
        "| variant | batch | LiteRT (XNNPACK) | eager PyTorch | fast | fast start-up |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in report.models:
        lines.append(
            f"| {r.variant} | {r.batch} | {r.litert_ms:.3f} | {r.eager_ms:.3f} ({_ratio(r.eager_ms, r.litert_ms)}) | "
            f"{r.fast_ms:.3f} ({_ratio(r.fast_ms, r.litert_ms)}) | {r.fast_startup_s:.2f} s |"
        )
    lines += [
        "",
        f"Per image on {o.photo.name}: decode + score threshold + weighted NMS of the photo's raw outputs (candidates: "
        "anchors above the score threshold), alone (repeated, warm caches) and in turn with the networks (cold); "
        "`detect_image` end to end on the decoded photo (letterbox, fast model, post-processing) against LiteRT's "
        "network + our post-processing (alone); largest |difference| of the raw outputs from LiteRT's.",
        "",
        "| variant | anchors | candidates | decode + NMS ms | in turn | detect ms | LiteRT + post ms | ratio | "
        "max diff eager | max diff fast |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report.pipelines:
        lines.append(
            f"| {r.variant} | {r.anchors} | {r.candidates} | {r.post_ms:.3f} | {r.post_in_turn_ms:.3f} | "
            f"{r.detect_ms:.3f} | {r.litert_ms + r.post_ms:.3f} | {r.detect_ratio:.2f}× | {r.eager_max_diff:.1e} | "
            f"{r.fast_max_diff:.1e} |"
        )
    if report.throughput:
        lines += [
            "",
            f"`detect` on {report.throughput[0].images} files (the photos repeated, {o.photos_dir.name}/), "
            f"decoding included, batch {report.throughput[0].batch}: {report.throughput[0].workers} loader threads "
            "and the model on one torch thread, as the `detect` command runs:",
            "",
            "| model | images/s | seconds (fast: start-up included) |",
            "|---|---:|---:|",
        ]
        for t in report.throughput:
            lines.append(f"| {t.mode} | {t.images_per_second:.0f} | {t.seconds:.2f} |")
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
    lines += ["", f"benchmark run time {report.seconds:.0f} s"]
    return "\n".join(lines)


def default_options(
    variants: Sequence[str] | None = None, photo: Path | None = None, photos_dir: Path | None = None, **kwargs
) -> BenchOptions:
    """Options with the repository's photos and every variant whose shipped file is present."""
    from .shipped import models_dir
    from .variants import VARIANTS, get_variant

    repo_images = Path(__file__).resolve().parent.parent / "tests" / "data" / "images"
    photos_dir = photos_dir or (photo.parent if photo else repo_images)  # the throughput run's files
    photo = photo or photos_dir / DEFAULT_PHOTO
    if not photo.is_file():
        raise OptionsError(f"{photo}: no such photo (give --photo, a 512x512 image is the reference case)")
    if variants:
        chosen = tuple(get_variant(v).name for v in variants)
    else:
        chosen = tuple(v.name for v in VARIANTS.values() if (models_dir() / v.tflite_file).is_file())
    return BenchOptions(variants=chosen, photo=photo, photos_dir=photos_dir, **kwargs)
