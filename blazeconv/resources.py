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
