"""Where blazeconv's own files are: the package data (shipped models, photos) and the cache folder.

The ground floor: no blazeconv imports but the errors, nothing heavy.
"""

from __future__ import annotations

import logging
import os
from importlib import resources
from pathlib import Path

log = logging.getLogger(__name__)


def models_dir() -> Path:
    """``$BLAZECONV_MODELS`` if set, else the ``models/`` package data installed with blazeconv."""
    configured = os.environ.get("BLAZECONV_MODELS")
    return Path(configured) if configured else _package_folder("models")


def packaged_models_dir() -> Path:
    """The ``models/`` package data itself, whatever ``$BLAZECONV_MODELS`` says: the ONNX networks exported from the
    shipped ``.tflite`` files travel there (``sources.shipped_onnx``)."""
    return _package_folder("models")


def photos_dir() -> Path:
    """The small photos that ship with the package (``verify``'s and ``bench``'s defaults; licences in its README)."""
    return _package_folder("photos")


def shipped_photos() -> list[Path]:
    """The shipped photos, sorted by name."""
    return sorted(p for p in photos_dir().iterdir() if p.suffix.lower() == ".png")


def _package_folder(name: str) -> Path:
    # Package data of a regular (not zipped) install: a real folder beside this module.
    return Path(str(resources.files(__package__).joinpath(name)))


def cache_location() -> tuple[Path, bool]:
    """The cache folder, ``$BLAZECONV_CACHE``, else ``$XDG_CACHE_HOME/blazeconv``, else ``~/.cache/blazeconv``, and
    whether it is one of the defaults (created with its parents) rather than a folder the user named (created
    like any output: only when its parent exists)."""
    configured = os.environ.get("BLAZECONV_CACHE")
    if configured:
        return Path(configured), False
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "blazeconv", True


def cache_dir() -> Path | None:
    """The cache folder (``cache_location``), created if missing; None when it cannot be created or written, and
    then blazeconv converts and exports into a private temporary folder instead (``sources``)."""
    folder, default = cache_location()
    try:
        folder.mkdir(parents=default, exist_ok=True)
    except OSError as exc:
        log.debug("cannot create the cache folder %s: %s", folder, exc)
        return None
    return folder if os.access(folder, os.W_OK | os.X_OK) else None
