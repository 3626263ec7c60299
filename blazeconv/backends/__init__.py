"""Runtimes behind one small interface: a *runner* per backend, found through a registry, imported lazily.

A runner (``blazeconv.detect``'s docstring) has ``run(batch)``: ``batch`` ``(B, 3, S, S)`` float32 RGB in [-1, 1]
-> ``(regressors (B, N, 16), classificators (B, N, 1))`` float32 numpy, TFLite's raw outputs; and ``variant``
(a ``Variant``, or None when the caller must name it). ``make_runner`` builds one:

* ``torch``: the PyTorch module (``FaceDetector``'s torch runner);
* ``onnxruntime`` (extra ``blazeconv[onnx]``) and ``openvino`` (extra ``blazeconv[openvino]``): the ONNX export
  of the model (``shipped.cached_onnx``: exported once into the cache, never again while up to date). Neither
  imports torch when the ONNX file is already cached;
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

from ..errors import MissingDependencyError, ModelFileError, OptionsError, WeightsError
from ..variants import VARIANTS, Variant, get_variant

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backend:
    """A runtime: ``module`` (imported on first use) defines ``make``; ``package`` is the import name that must
    be installed for it; ``install`` what to ``pip install`` for it."""

    name: str
    module: str
    package: str
    install: str

    def installed(self) -> bool:
        """True when the runtime's package can be imported (checked without importing it)."""
        return importlib.util.find_spec(self.package) is not None

    def require(self) -> None:
        """``MissingDependencyError`` (exit 8) naming the extra unless the runtime is installed."""
        if not self.installed():
            raise MissingDependencyError(
                f"the {self.name} backend needs the '{self.package}' package: pip install '{self.install}'"
            )


BACKENDS: dict[str, Backend] = {}


def register(backend: Backend) -> Backend:
    """Add ``backend`` to ``BACKENDS``; a name registered twice is a bug (``ValueError``)."""
    if backend.name in BACKENDS or backend.name == "auto":
        raise ValueError(f"backend {backend.name!r} is already registered")
    BACKENDS[backend.name] = backend
    return backend


register(Backend("torch", f"{__name__}.torch", "torch", "torch"))
register(Backend("onnxruntime", f"{__name__}.onnxruntime", "onnxruntime", "blazeconv[onnx]"))
register(Backend("openvino", f"{__name__}.openvino", "openvino", "blazeconv[openvino]"))

# ``auto`` tries these in turn. Measured in one `blazeconv bench` run (README, Speed): ONNX Runtime and OpenVINO run
# the network at about LiteRT's speed, torch 2-3.5x slower; ONNX Runtime starts in 0.6 s, OpenVINO in about 2 s
# (import and compile), which a `detect` on one photo or a short folder never wins back.
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
) -> Any:
    """A runner for ``source`` on ``backend`` (one of ``CHOICES``).

    ``source``: a ``Variant`` or shipped variant name, a path to a ``.tflite`` or ``.pth``, or (torch only) a torch
    module. ``variant`` overrides the one the source says (it must be of the weights' architecture for torch).
    ``device``: ``"cpu"``, or the runtime's accelerator (torch ``"cuda"``, ONNX Runtime ``"cuda"``, OpenVINO
    ``"gpu"``). ``threads``: intra-op threads of ONNX Runtime and OpenVINO (1: batch-1 calls gain nothing from more,
    and ``detect_files`` keeps the other cores busy decoding). Unknown backend or device: ``OptionsError``; a
    runtime that is not installed: ``MissingDependencyError`` naming the extra.
    """
    if not isinstance(threads, int) or threads < 1:
        raise OptionsError(f"threads must be a positive integer, got {threads!r}")
    if backend == "auto":
        return _auto(source, variant, device, threads)
    if backend not in BACKENDS:
        raise OptionsError(f"unknown backend {backend!r}; choices: {', '.join(CHOICES)}")
    chosen = BACKENDS[backend]
    chosen.require()
    if backend != "torch":
        source = _onnx_source(source, backend)
    runner = importlib.import_module(chosen.module).make(source, variant, device, threads)
    runner.backend = backend
    return runner


def _auto(source, variant, device, threads) -> Any:
    """The first backend of ``AUTO_ORDER`` that is installed and builds a runner for ``source``."""
    skipped = []
    for name in installed_backends():
        if name != "torch" and not isinstance(source, (str, Path, Variant)):
            continue  # a torch module has no ONNX file to run elsewhere
        try:
            runner = make_runner(name, source, variant, device, threads=threads)
        except MissingDependencyError as exc:  # e.g. the model is not exported yet and the exporter is missing
            skipped.append(f"{name}: {exc}")
            continue
        except OptionsError as exc:  # e.g. device="cuda" without the runtime's GPU build: the next one may have it
            if name == "torch":
                raise
            skipped.append(f"{name}: {exc}")
            continue
        log.info("backend auto: %s", name)
        return runner
    detail = "; ".join(skipped) or "none of " + ", ".join(AUTO_ORDER) + " is installed"
    raise MissingDependencyError(f"no backend can run the model ({detail}): pip install 'blazeconv[onnx]'")


def _onnx_source(source: Any, backend: str) -> Variant | Path:
    """``source`` as what ``shipped.cached_onnx`` takes: a ``Variant`` or a ``.tflite`` / ``.pth`` path."""
    if isinstance(source, Variant):
        return source
    if isinstance(source, (str, Path)):
        name = str(source)
        if name in VARIANTS and not Path(name).exists():
            return get_variant(name)
        path = Path(source)
        if not path.is_file():  # the errors the torch backend gives for the same argument
            from ..detect import looks_like_url

            if looks_like_url(name):
                raise ModelFileError(f"{name}: URLs are not read; download the file first")
            if not path.exists() and path.suffix == "":
                raise ModelFileError(f"{name}: no such file, and not a shipped model ({', '.join(VARIANTS)})")
            if path.suffix.lower() != ".tflite":
                raise WeightsError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
        return path
    raise OptionsError(
        f"the {backend} backend runs a shipped variant name, a .tflite or a .pth file; got a {type(source).__name__}"
    )


def runner_variant(known: str | None, variant: Variant | str | None, source: Any) -> Variant | None:
    """The variant of an ONNX runner: ``variant`` if given (``OptionsError`` unless it has the architecture of the
    one the file names), else the source's own ``Variant``, else the one the file's metadata names (``known``)."""
    from_file = VARIANTS.get(known or "")
    if isinstance(source, Variant):
        from_file = source
    if variant is None:
        return from_file
    chosen = get_variant(variant) if isinstance(variant, str) else variant
    if from_file is not None and from_file.architecture != chosen.architecture:
        raise OptionsError(
            f"variant {chosen.name!r} is a {chosen.architecture} model, the model is {from_file.name!r} "
            f"({from_file.architecture})"
        )
    return chosen


__all__ = ["AUTO_ORDER", "BACKENDS", "CHOICES", "Backend", "installed_backends", "make_runner", "register"]
