"""Where the shipped ``.tflite`` files live, and a cache of their converted weights and ONNX exports.

Imports nothing heavy at module level: a cached ONNX file is found without importing torch (the onnxruntime and
OpenVINO backends promise that); converting or exporting imports it inside the function that needs it.
"""

from __future__ import annotations

import logging
import os
from importlib import resources
from pathlib import Path

from . import __version__
from .errors import ModelFileError, OptionsError
from .io import sha256_of
from .variants import Variant

log = logging.getLogger(__name__)


def models_dir() -> Path:
    """``$BLAZECONV_MODELS`` if set, else the ``models/`` package data installed with blazeconv."""
    configured = os.environ.get("BLAZECONV_MODELS")
    return Path(configured) if configured else _package_folder("models")


def photos_dir() -> Path:
    """The small photos that ship with the package (``verify``'s and ``bench``'s defaults; licences in its README)."""
    return _package_folder("photos")


def shipped_photos() -> list[Path]:
    """The shipped photos, sorted by name."""
    return sorted(p for p in photos_dir().iterdir() if p.suffix.lower() == ".png")


def _package_folder(name: str) -> Path:
    # Package data of a regular (not zipped) install: a real folder beside this module.
    return Path(str(resources.files(__package__).joinpath(name)))


def cache_dir() -> Path:
    """``$BLAZECONV_CACHE``, else ``$XDG_CACHE_HOME/blazeconv``, else ``~/.cache/blazeconv``; created if missing.

    The cache is the one folder blazeconv creates with its parents (``io.atomic_path`` creates none); when it
    cannot be created, writing an entry into it says so.
    """
    configured = os.environ.get("BLAZECONV_CACHE")
    if configured:
        folder = Path(configured)
    else:
        folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "blazeconv"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.debug("cannot create the cache folder %s: %s", folder, exc)
    return folder


def shipped_model(variant: Variant) -> Path:
    """Path of the variant's upstream ``.tflite``; ``ModelFileError`` if it is missing."""
    path = models_dir() / variant.tflite_file
    if not path.is_file():
        raise ModelFileError(f"{path}: shipped model for '{variant.name}' not found (set BLAZECONV_MODELS?)")
    return path


def resolve_source(text: str | Path) -> Path:
    """A model argument as a file: a shipped variant name (``short_range``) gives its packaged ``.tflite``.

    Anything else is taken as a path, as given: a file named like a variant still wins when it exists, so
    ``blazeconv tflite2torch front`` reads ``./front`` if there is such a file.
    """
    from .variants import VARIANTS

    name = str(text)
    if name in VARIANTS and not Path(name).exists():
        return shipped_model(VARIANTS[name])
    return Path(text)


def cached_weights(variant: Variant) -> Path:
    """Converted weights of the shipped ``variant``, converting once into the cache when needed.

    The cache entry is keyed by the file's SHA-256 and blazeconv's version, so a changed file or a new
    converter never serves stale weights.
    """
    from .convert import convert_file, save_state_dict

    source = shipped_model(variant)
    digest = sha256_of(source)
    target = cache_dir() / f"{variant.name}-{digest[:16]}-{__version__}.pth"
    if not target.is_file():
        log.info("converting %s into %s", source, target)
        save_state_dict(convert_file(source).state_dict, target)
    return target


def cached_onnx(source: Variant | str | Path, *, detections: bool = False) -> Path:
    """The ONNX export of ``source`` (a shipped ``Variant``, or a ``.tflite`` / ``.pth`` file), exported once into
    the cache when needed: the raw network, or with ``detections`` the model with decoding and weighted NMS inside
    (default thresholds; ``blazeconv.onnx_export``).

    Keyed like ``cached_weights`` by the source file's SHA-256 and blazeconv's version, so a changed file or a new
    exporter never serves a stale model; written atomically. When the entry exists, nothing but the source file's
    checksum is computed and torch is not imported.
    """
    if isinstance(source, Variant):
        name, path = source.name, shipped_model(source)
    else:
        path = Path(source)
        if path.suffix.lower() not in (".tflite", ".pth"):
            raise OptionsError(f"{path}: an ONNX export needs a .tflite or .pth file, not {path.suffix or 'no suffix'}")
        if not path.is_file():
            raise ModelFileError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
        name = path.stem
    digest = sha256_of(path)
    kind = "_detections" if detections else ""
    target = cache_dir() / f"{name}-{digest[:16]}-{__version__}{kind}.onnx"
    if not target.is_file():
        if detections:  # from the cached network: only the decoding and NMS are exported
            from .onnx_export import export_detections

            network = cached_onnx(source)
            log.info("adding decoding and NMS to %s into %s", network, target)
            export_detections(network, target)
        else:
            from .onnx_export import export_source

            log.info("exporting %s into %s", path, target)
            export_source(path, target)
    return target
