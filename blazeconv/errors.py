"""The one error family of blazeconv.

Library code raises these; only the CLI turns them into ``Error: ...`` lines and exit codes.
Every message names the file (or tensor, or key) and what was wrong with it.
"""

from __future__ import annotations


class BlazeconvError(Exception):
    """Base class: a failure the user can cause and fix. ``exit_code`` is what the CLI returns.

    Exit codes (also in the README): 1 other failure, 2 command-line usage (click's own; paths that cannot be used
    together; a labels file ``eval`` cannot use), 3 model file, 4 unsupported model, 5 weights, 6 image, 7 options,
    8 a missing optional dependency (an extra to install),
    70 internal error (a bug: please report it), 130 / 143 interrupted by SIGINT / SIGTERM.
    """

    exit_code = 1


class OutputError(BlazeconvError):
    """An artifact cannot be written (its folder is a file, the disk is full, no permission, ...)."""

    exit_code = 1


class ModelFileError(BlazeconvError):
    """A model file is missing, unreadable, not a TFLite flatbuffer, or malformed."""

    exit_code = 3


class UnsupportedModelError(BlazeconvError):
    """A well-formed TFLite file that is not a BlazeFace model blazeconv supports."""

    exit_code = 4


class WeightsError(BlazeconvError):
    """A state_dict file that is unreadable or does not fit any supported architecture."""

    exit_code = 5


class ImageError(BlazeconvError):
    """An image that cannot be read or decoded."""

    exit_code = 6


class OptionsError(BlazeconvError):
    """Invalid options (anchor options JSON, thresholds, ...)."""

    exit_code = 7


class LabelsError(BlazeconvError):
    """A labels or detections file ``eval`` cannot use: not in a format it reads (or not in the one forced), a
    picture it names that cannot be found, a box outside the picture or of no or negative size, a stated picture
    size that is not the picture's. The message names the file and the line. Exit code 2, as a usage error."""

    exit_code = 2


class MissingDependencyError(BlazeconvError):
    """An optional package a command needs is not installed; the message names the extra to install."""

    exit_code = 8


def notice(message: str) -> None:
    """Tell the user something worth knowing that is not a failure (a first-use conversion, a rebuilt cache entry):
    one line on the ``blazeconv.notice`` logger, which the CLI prints as it is on stderr."""
    import logging

    logging.getLogger("blazeconv.notice").warning(message)


# What each extra of ``pip install 'blazeconv[EXTRA]'`` brings, by import name (pyproject.toml lists the
# distributions; tests/test_install.py checks the two agree). The plain install (numpy, Pillow, click, ONNX Runtime,
# PyAV) detects, blurs, crops and reads videos on the ONNX networks that travel in the package; whatever converts or
# exports a model needs torch and the TFLite reader.
EXTRAS: dict[str, tuple[str, ...]] = {
    "convert": ("torch", "tflite", "onnx", "onnxscript"),  # tflite2torch, torch2tflite, onnx, the torch backends
    "coreml": ("torch", "tflite", "coremltools"),  # coreml, verify
    "train": ("torch", "tflite"),  # training starts from a shipped model's converted weights
    "bench": ("torch", "tflite", "onnx", "onnxscript", "ai_edge_litert"),  # compares with LiteRT and the torch backends
    "video": ("av",),  # in the plain install too; the extra stays for installs that name it
    "eval": ("pycocotools",),
    "track": ("scipy",),
    "ray": ("ray",),
    "openvino": ("openvino",),
}


def missing_extra(extra: str) -> list[str]:
    """The import names of ``EXTRAS[extra]`` that cannot be imported (checked without importing them)."""
    import importlib.util

    return [package for package in EXTRAS[extra] if importlib.util.find_spec(package) is None]


def require_extra(extra: str, purpose: str) -> None:
    """Before any work: ``MissingDependencyError`` (exit 8) unless every package of ``EXTRAS[extra]`` is installed.

    One line naming what needs it, what is missing and the install line, e.g.
    ``blazeconv tflite2torch needs the convert extra (torch, tflite not installed): pip install 'blazeconv[convert]'``.
    A command declares its extra with ``cli.base.needs_extra``; library code calls this at its entry.
    """
    missing = missing_extra(extra)
    if missing:
        raise MissingDependencyError(f"{purpose} needs the {extra} extra ({', '.join(missing)} not installed): "
                                     f"pip install 'blazeconv[{extra}]'")


def require(package: str, extra: str, purpose: str) -> None:
    """Before any work: ``MissingDependencyError`` (exit 8) naming the extra unless ``package`` can be imported.

    ``package`` is the import name (checked without importing it), ``extra`` what to ``pip install``
    (``blazeconv[eval]``, or a plain package name), ``purpose`` what needs it (the message's subject).
    """
    import importlib.util

    if importlib.util.find_spec(package) is None:
        raise MissingDependencyError(f"{purpose} needs the '{package}' package: pip install '{extra}'")
