"""The contenders: the networks timed side by side (LiteRT, the eager PyTorch module, ``blazeconv.fast``, each
installed ONNX backend) and the client of MediaPipe's ``FaceDetector``, which runs in a worker process of its own
environment (``mediapipe_worker.py``, run by path)."""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import OptionsError
from .rows import BenchModel, BenchOptions

# The ONNX backends measured when installed, in the order of the tables.
ONNX_BACKENDS = ("onnxruntime", "openvino")
# Run by path by MediaPipe's interpreter (standard library, numpy and mediapipe only); its docstring has the protocol.
MEDIAPIPE_WORKER = Path(__file__).with_name("mediapipe_worker.py")


def installed_onnx_backends() -> list[str]:
    """The ONNX backends whose runtime is installed."""
    from ..backends import BACKENDS

    return [name for name in ONNX_BACKENDS if BACKENDS[name].installed()]


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


def mediapipe_command(python: Path, model: Path, min_score: float, *args: str) -> list[str]:
    """The command line of MediaPipe's worker: ``args`` are its mode and that mode's arguments."""
    return [str(python), str(MEDIAPIPE_WORKER), str(model), str(min_score), *args]


class _MediaPipeWorker:
    """MediaPipe's FaceDetector on one decoded photo in a worker process; ``time()`` runs it once and returns the
    seconds it took, measured in the worker: elapsed, or with ``clock="cpu"`` the worker's CPU time (all its threads)."""

    def __init__(self, python: Path, model: Path, min_score: float, array_file: Path, clock: str = "wall"):
        self.process = subprocess.Popen(
            mediapipe_command(python, model, min_score, "array", str(array_file), clock),
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


@dataclass
class _Contender:
    """A network to time: ``one(x)`` runs a batch in one call, ``each(x)`` as batch-1 calls; ``runner`` for the
    end-to-end ``FaceDetector``."""

    one: Callable[[np.ndarray], object]
    each: Callable[[np.ndarray], object]
    runner: object


def _contenders(subject: BenchModel, model, onnx: list[str], options: BenchOptions):
    """Every network for ``subject`` (LiteRT on its .tflite, ``model`` eager and fast, the ONNX backends) and the
    seconds each took to build."""
    import torch

    from ..backends.onnxruntime import OnnxRuntimeRunner
    from ..backends.openvino import OpenVinoRunner
    from ..backends.torch import TorchRunner
    from ..fast import fast_model
    from ..sources import cached_onnx

    variant = subject.variant
    startup: dict[str, float] = {}

    def timed(label: str, make: Callable[[], object]):
        start = time.perf_counter()
        made = make()
        startup[label] = time.perf_counter() - start
        return made

    litert = timed("litert", lambda: _LiteRT(subject.path, options.threads))
    fast = fast_model(model)
    size = variant.input_size
    for batch in (1, options.batch_size):  # compile both shapes now: reported as start-up, never timed
        timed(f"fast{batch}", lambda b=batch: fast(torch.zeros(b, 3, size, size)))
    startup["fast"] = startup.pop("fast1") + startup.pop(f"fast{options.batch_size}")

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
        path = cached_onnx(subject.path)  # a copy of a shipped file shares its entry
    if "onnxruntime" in onnx:
        ort = timed("onnxruntime", lambda: OnnxRuntimeRunner(path, variant, threads=options.threads))
        one = OnnxRuntimeRunner(path, variant, threads=options.threads, per_image=False)
        contenders["onnxruntime"] = _Contender(one.run, ort.run, ort)
    if "openvino" in onnx:
        ov = timed("openvino", lambda: OpenVinoRunner(path, variant, threads=options.threads))
        dynamic = OpenVinoRunner(path, variant, threads=options.threads, per_image=False)
        contenders["openvino"] = _Contender(dynamic.run, ov.run, ov)
    return contenders, startup
