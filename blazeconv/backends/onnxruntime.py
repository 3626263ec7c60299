"""ONNX Runtime backend (in the plain install): the model's ONNX network on an ``InferenceSession``.

Session settings, chosen by measurement (docs/bench.md, *Design figures*): one intra-op and one inter-op thread,
sequential execution, every graph optimisation. BlazeFace at batch 1 is too small to gain from more threads, and in
``detect_files`` the other cores decode and letterbox the next images. On the CPU a batch runs as a loop of batch-1
calls, which is faster per image than one call on the whole batch. No torch import: the ONNX file comes with the
package for a shipped model, else from the cache (``sources.onnx_network``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelFileError, OptionsError
from ..export import RAW_OUTPUTS as OUTPUTS
from ..sources import ModelSource, onnx_network
from ..variants import Variant
from .runner import runner_variant


class OnnxRuntimeRunner:
    """A runner (``backends.runner.Runner``) on an ONNX Runtime session of a raw BlazeFace export.

    ``run(batch)``: ``(B, 3, S, S)`` float32 -> ``(regressors (B, N, 16), classificators (B, N, 1))`` float32;
    image by image on the CPU, in one call on an accelerator (``per_image`` overrides). ``variant``: the one the
    model's metadata names, unless given (``backends.runner.runner_variant``).
    """

    uses_torch = False

    def __init__(self, path: str | Path, variant: Variant | str | None = None, device: str = "cpu", threads: int = 1,
                 source: Any = None, per_image: bool | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # warnings about unused initialisers and the like are not the user's concern
        providers = _providers(device, ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph / RuntimeException types
            raise ModelFileError(f"{path}: ONNX Runtime cannot load it: {' '.join(str(exc).split())[:300]}") from None
        names = [o.name for o in self.session.get_outputs()]
        if any(name not in names for name in OUTPUTS):
            raise ModelFileError(f"{path}: not a raw BlazeFace export (outputs {names}, expected {list(OUTPUTS)})")
        self.input = self.session.get_inputs()[0].name
        self.per_image = device == "cpu" if per_image is None else per_image
        self.path = Path(path)
        self.variant = runner_variant(self.session.get_modelmeta().custom_metadata_map.get("variant"), variant, source)

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        batch = np.ascontiguousarray(batch, np.float32)
        if not self.per_image or len(batch) == 1:
            regressors, classificators = self.session.run(OUTPUTS, {self.input: batch})
            return regressors, classificators
        outputs = [self.session.run(OUTPUTS, {self.input: batch[i : i + 1]}) for i in range(len(batch))]
        return np.concatenate([o[0] for o in outputs]), np.concatenate([o[1] for o in outputs])


def _providers(device: str, available: list[str]) -> list[str]:
    """Execution providers for ``device``: ``cpu``, or ``cuda`` / ``cuda:N`` with the CPU as fallback for odd ops."""
    kind, _, index = device.lower().partition(":")
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    if kind == "cuda" and "CUDAExecutionProvider" in available:
        return [("CUDAExecutionProvider", {"device_id": int(index or 0)}), "CPUExecutionProvider"]
    raise OptionsError(
        f"device {device!r} is not available to onnxruntime (providers: {', '.join(available)}); use 'cpu'"
        + (", or install onnxruntime-gpu for 'cuda'" if kind == "cuda" else "")
    )


def make(source: ModelSource, variant: Variant | str | None, device: str, threads: int) -> OnnxRuntimeRunner:
    """The runner of ``source``: an ONNX file as it is, a shipped model's packaged network, any other model's export
    (made and cached on first use)."""
    return OnnxRuntimeRunner(onnx_network(source), variant, device, threads, source)
