"""OpenVINO backend: the model's ONNX export compiled by OpenVINO (extra ``blazeconv[openvino]``).

Compiled with ``INFERENCE_PRECISION_HINT`` f32: OpenVINO's default on CPUs with AMX is bf16, which moves the
outputs far beyond the LiteRT parity allowance. On the CPU the model is reshaped to batch 1 and compiled for it (one
inference thread, one stream, latency hint) and a batch runs as a loop of calls, faster per image than the
dynamic-batch model (docs/bench.md, *Design figures*). No torch import: the ONNX file comes from the cache (``sources.onnx_network``).
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


class OpenVinoRunner:
    """A runner (``backends.runner.Runner``) on an OpenVINO compiled model of a raw BlazeFace export.

    ``run(batch)``: ``(B, 3, S, S)`` float32 -> ``(regressors (B, N, 16), classificators (B, N, 1))`` float32; image
    by image on the CPU (a batch-1 compiled model), in one call with the dynamic batch elsewhere (``per_image``
    overrides). ``variant``: the one the model's metadata names, unless given (``backends.runner.runner_variant``).
    """

    uses_torch = False

    def __init__(self, path: str | Path, variant: Variant | str | None = None, device: str = "cpu", threads: int = 1,
                 source: Any = None, per_image: bool | None = None):
        import openvino as ov

        core = ov.Core()
        target = _device(device, core.available_devices)
        try:
            model = core.read_model(str(path))
        except Exception as exc:  # OpenVINO raises RuntimeError/GeneralFailure with multi-line texts
            raise ModelFileError(f"{path}: OpenVINO cannot read it: {' '.join(str(exc).split())[:300]}") from None
        names = [o.get_any_name() for o in model.outputs]
        if any(name not in names for name in OUTPUTS):
            raise ModelFileError(f"{path}: not a raw BlazeFace export (outputs {names}, expected {list(OUTPUTS)})")
        self.per_image = target == "CPU" if per_image is None else per_image
        if self.per_image:
            dims = model.inputs[0].get_partial_shape()  # (batch, 3, S, S), batch dynamic
            model.reshape([1, *(dims[i].get_length() for i in range(1, 4))])
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        if target == "CPU":
            config.update({"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1})
        key = ["framework", "variant"]  # ONNX metadata_props land in the model's rt_info under "framework"
        known = model.get_rt_info(key).astype(str) if model.has_rt_info(key) else None
        self.compiled = core.compile_model(model, target, config)
        self.request = self.compiled.create_infer_request()
        self.outputs = [self.compiled.output(name) for name in OUTPUTS]
        self.path = Path(path)
        self.variant = runner_variant(known, variant, source)

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        batch = np.ascontiguousarray(batch, np.float32)
        if not self.per_image:
            return self._infer(batch)
        outputs = [self._infer(batch[i : i + 1]) for i in range(len(batch))]
        if len(outputs) == 1:
            return outputs[0]
        return np.concatenate([o[0] for o in outputs]), np.concatenate([o[1] for o in outputs])

    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        results = self.request.infer({0: batch})
        # Copies: the request reuses its output buffers on the next call.
        return tuple(np.array(results[output], np.float32) for output in self.outputs)


def _device(device: str, available: list[str]) -> str:
    """OpenVINO's device name for ``device`` (``cpu`` -> ``CPU``, ``gpu`` / ``gpu.1`` -> ``GPU`` / ``GPU.1``)."""
    target = device.upper()
    if target == "CPU" or target in available:
        return target
    raise OptionsError(f"device {device!r} is not available to OpenVINO (devices: {', '.join(available)}); use 'cpu'")


def make(source: ModelSource, variant: Variant | str | None, device: str, threads: int) -> OpenVinoRunner:
    """The runner of ``source``: an ONNX file as it is, a shipped model's packaged network, any other model's export
    (made and cached on first use)."""
    return OpenVinoRunner(onnx_network(source), variant, device, threads, source)
