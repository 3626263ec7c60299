"""What a bench run is asked (``BenchOptions``) and what it finds: one row per measurement, gathered in a
``BenchReport``. Times in the rows are medians; ``ms`` fields are milliseconds per image, ``seconds`` fields
seconds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import OptionsError
from ..variants import Variant

CLOCKS = ("wall", "cpu")


@dataclass(frozen=True)
class BenchModel:
    """A model the bench measures: ``name`` labels its rows (a shipped model's name, else the file's name), ``path``
    is its ``.tflite`` (LiteRT, the reference, runs it; the other contenders are converted from it), ``variant`` what
    it is (input size, anchors, threshold), ``shipped`` whether ``name`` is a shipped model's."""

    name: str
    path: Path
    variant: Variant
    shipped: bool = True

    def argument(self) -> str:
        """What ``detect --model`` is given for it: the shipped name, else the file's absolute path."""
        return self.name if self.shipped else str(self.path.resolve())


@dataclass(frozen=True)
class BenchOptions:
    """What to measure and how often.

    ``models``: the models measured (``BenchModel``). ``rounds``: timed rounds per measurement (the median is
    reported), after ``warmup`` untimed ones; ``batch_size`` rounds are fewer (``max(3, rounds // 4)``). ``threads``: torch, LiteRT, ONNX Runtime and OpenVINO
    threads for the per-image figures (``detect`` runs as it runs). ``clock``: ``wall`` (elapsed time) or ``cpu``
    (the calling thread's CPU time, steadier on a shared machine; only meaningful with one thread; MediaPipe's
    worker then times its whole process's CPU time, its own threads included). ``throughput_images``: files for
    the whole-process ``detect`` runs (0: skip them); ``one_photo_runs``: whole-process ``detect one.jpg`` runs
    per backend (0: skip). ``big_photos``: JPEGs per size (12 MP and 37 MP, made from the photos) for the
    whole-process big-photo runs (0: skip). ``videos``: clips for the whole-process video runs (empty: skip).
    ``blur_clips``: clips (or photos) for ``blazeconv blur`` against deface (empty: skip), with deface's interpreter
    ``deface_python``.
    ``mediapipe_python``: the interpreter of an environment with ``mediapipe`` (None: skipped with a note).
    """

    models: tuple[BenchModel, ...]
    photo: Path
    photos_dir: Path
    rounds: int = 40
    warmup: int = 5
    batch_size: int = 32
    threads: int = 1
    throughput_images: int = 1000
    one_photo_runs: int = 5
    big_photos: int = 12
    videos: tuple[Path, ...] = ()
    blur_clips: tuple[Path, ...] = ()
    deface_python: Path | None = None
    clock: str = "wall"
    mediapipe_python: Path | None = None

    def __post_init__(self):
        if self.rounds < 1 or self.warmup < 0 or self.batch_size < 1 or self.threads < 1 or self.throughput_images < 0 \
                or self.one_photo_runs < 0 or self.big_photos < 0:
            raise OptionsError("rounds, batch and threads must be positive; warmup, throughput images and one-photo "
                               "runs not negative")
        if self.clock not in CLOCKS:
            raise OptionsError(f"clock must be one of {', '.join(CLOCKS)}, got {self.clock!r}")


# ``--quick``'s settings: a smoke test (the other fields keep BenchOptions' defaults).
QUICK = {"rounds": 3, "warmup": 1, "batch_size": 4, "throughput_images": 40, "one_photo_runs": 1, "big_photos": 0}


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
    """One whole process: ``blazeconv detect`` with a backend, or MediaPipe's loop, over ``images`` files (for a
    video: its frames)."""

    contender: str
    images: int
    seconds: float  # wall, start to exit (median over runs for the one-photo rows)
    cpu_seconds: float  # the child's user + system time
    peak_mib: float  # the child's ru_maxrss
    decoded: int | None = None  # video frames the process decoded (video rows; None: not counted)

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
    big_photos: dict[str, list[ProcessRow]] = field(default_factory=dict)  # size label -> exact, fast, tile, MediaPipe
    videos: dict[str, list[ProcessRow]] = field(default_factory=dict)  # clip label -> detect, annotate, MediaPipe
    blur: list = field(default_factory=list)  # anonymise.BlurRow: each option set and deface, per clip
    notes: list[str] = field(default_factory=list)
    fast_init_s: float = 0.0  # the first compile of a process (tracer imports, dispatcher caches), on a tiny module
    seconds: float = 0.0
