"""Runtimes behind one small interface: a *runner* per backend, found through a registry, imported lazily.

A runner follows ``backends.runner.Runner``: ``run(batch)`` on numpy, TFLite's raw outputs, and its ``variant``.
``make_runner`` builds one from any model argument (``sources.resolve`` says what it is):

* ``torch``: the PyTorch module (``backends.torch.TorchRunner``);
* ``torch-fast``: the PyTorch module compiled for the CPU by ``blazeconv.fast`` (``backends.torch_fast``; a second
  or so to start, then faster per call; never chosen by ``auto``);
* ``onnxruntime`` (in the plain install) and ``openvino`` (extra ``blazeconv[openvino]``): an ONNX file given as the
  model, the packaged ONNX network of a shipped model (``sources.shipped_onnx``), or another model's ONNX export
  (``sources.cached_onnx``: exported once into the cache, which needs ``blazeconv[convert]``). Neither imports torch
  when the ONNX file is packaged or already cached;
* ``auto``: the first of ``AUTO_ORDER`` that is installed and can be built, fastest first by measurement
  (README, *Speed*).

Each backend module defines ``make(source, variant, device, threads) -> runner``; ``register`` refuses a name twice.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError, OptionsError, require
from ..sources import FILE_KINDS, ModelSource, is_runner, require_kind, resolve
from ..variants import Variant
from .runner import Runner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backend:
    """A runtime: ``module`` (imported on first use) defines ``make``; ``package`` is the import name that must
    be installed for it; ``install`` what to ``pip install`` for it; ``kinds``: the model arguments it runs
    (``sources.KINDS``); ``summary``: what it runs, in a few words (help texts)."""

    name: str
    module: str
    package: str
    install: str
    kinds: tuple[str, ...]
    summary: str = ""

    def runs(self, kind: str) -> bool:
        """True when this runtime runs a model argument of ``kind`` (``sources.KINDS``)."""
        return kind in self.kinds

    def installed(self) -> bool:
        """True when the runtime's package can be imported (checked without importing it)."""
        return importlib.util.find_spec(self.package) is not None

    def require(self) -> None:
        """``MissingDependencyError`` (exit 8) naming the extra unless the runtime is installed."""
        require(self.package, self.install, f"the {self.name} backend")


BACKENDS: dict[str, Backend] = {}


def register(backend: Backend) -> Backend:
    """Add ``backend`` to ``BACKENDS``; a name registered twice is a bug (``ValueError``)."""
    if backend.name in BACKENDS or backend.name == "auto":
        raise ValueError(f"backend {backend.name!r} is already registered")
    BACKENDS[backend.name] = backend
    return backend


register(Backend("torch", f"{__name__}.torch", "torch", "blazeconv[convert]", (*FILE_KINDS, "module"), "the PyTorch module"))
register(Backend("torch-fast", f"{__name__}.torch_fast", "torch", "blazeconv[convert]", (*FILE_KINDS, "module"),
                 "the PyTorch module compiled for the CPU (blazeconv.fast; 1-3 s to start, then faster per call)"))
register(Backend("onnxruntime", f"{__name__}.onnxruntime", "onnxruntime", "onnxruntime", (*FILE_KINDS, "onnx"),
                 "ONNX Runtime on the packaged ONNX network of a shipped model, another model's export (made once "
                 "into the cache; extra blazeconv[convert]) or an .onnx given"))
register(Backend("openvino", f"{__name__}.openvino", "openvino", "blazeconv[openvino]", (*FILE_KINDS, "onnx"),
                 "OpenVINO on the same ONNX file (extra blazeconv[openvino])"))

# ``auto`` tries these in turn, fastest first by measurement (README, Speed; docs/bench.md): the ONNX runtimes run the
# network at about LiteRT's speed and torch slower; ONNX Runtime starts sooner than OpenVINO (import and compile),
# which a `detect` on one photo or a short folder never wins back.
AUTO_ORDER = ("onnxruntime", "openvino", "torch")
CHOICES = (*BACKENDS, "auto")


def installed_backends() -> list[str]:
    """The registered backends whose runtime is installed, in ``AUTO_ORDER``."""
    return [name for name in AUTO_ORDER if BACKENDS[name].installed()]


def make_runner(
    backend: str,
    source: Variant | str | Path | Any,
    variant: Variant | str | None = None,
    device: str = "cpu",
    *,
    threads: int = 1,
) -> Runner:
    """A runner for ``source`` on ``backend`` (one of ``CHOICES``).

    ``source``: any model argument (``sources.resolve``): a ``Variant`` or shipped variant name, a ``.tflite``,
    ``.pth`` or ``.onnx`` file (recognised by content), a torch module (torch only), or a runner (returned as it is).
    ``variant`` overrides the one the source says; it must be of the model's architecture. ``device``: ``"cpu"``,
    or the runtime's accelerator (torch ``"cuda"``, ONNX Runtime ``"cuda"``, OpenVINO ``"gpu"``). ``threads``:
    intra-op threads of ONNX Runtime and OpenVINO (1: batch-1 calls gain nothing from more, and ``detect_files``
    keeps the other cores busy decoding). Unknown backend or device: ``OptionsError``; a runtime that is not
    installed: ``MissingDependencyError`` naming the extra.
    """
    if backend not in CHOICES:
        raise OptionsError(f"unknown backend {backend!r}; choices: {', '.join(CHOICES)}")
    if not isinstance(threads, int) or threads < 1:
        raise OptionsError(f"threads must be a positive integer, got {threads!r}")
    model = resolve(source)
    if model.kind == "runner":
        return model.obj
    if backend == "auto":
        return _auto(model, variant, device, threads)
    chosen = BACKENDS[backend]
    chosen.require()
    require_kind(model, chosen.kinds, f"the {backend} backend")
    runner = importlib.import_module(chosen.module).make(model, variant, device, threads)
    runner.backend = backend
    return runner


def _auto(model: ModelSource, variant, device, threads) -> Runner:
    """The first backend of ``AUTO_ORDER`` that is installed, runs this kind of model and builds a runner."""
    skipped, missing = [], []
    for name in installed_backends():
        if not BACKENDS[name].runs(model.kind):
            continue  # a torch module has no ONNX file to run elsewhere; an ONNX file no torch module
        try:
            runner = make_runner(name, model, variant, device, threads=threads)
        except MissingDependencyError as exc:  # e.g. the model is not exported yet and the exporter is missing
            skipped.append(f"{name}: {exc}")
            missing.append(exc)
            continue
        except OptionsError as exc:  # e.g. device="cuda" without the runtime's GPU build: the next one may have it
            if name == "torch":
                raise
            skipped.append(f"{name}: {exc}")
            continue
        log.info("backend auto: %s", name)
        return runner
    if missing and len(missing) == len(skipped):  # each runtime lacks the same extra: say it once, as the first did
        raise missing[0]
    detail = "; ".join(skipped) or "none of " + ", ".join(AUTO_ORDER) + " is installed"
    raise MissingDependencyError(f"no backend can run the model ({detail}): pip install onnxruntime")


__all__ = ["AUTO_ORDER", "BACKENDS", "CHOICES", "Backend", "Runner", "installed_backends", "is_runner", "make_runner", "register"]
