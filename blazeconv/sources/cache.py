"""The cache of conversions and exports: entries keyed by the source's SHA-256 and blazeconv's version, each
checked against the record of its checksum whenever it is used."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import notice
from ..io import atomic_path, sha256_of
from ..resources import cache_dir, cache_location

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


_RECORD = ".sha256"
_ENTRY_NAME = re.compile(r"^[\w.+-]+-[0-9a-f]{16}-[\w.+]+(_detections)?\.(pth|onnx)(\.sha256)?$")
_private_folder: list[Path] = []


def cache_entry(name: str, what: str | None, build: Callable[[Path], None]) -> Path:
    """The cache entry ``name``, built by ``build(path)`` (which writes ``path`` atomically) when it is missing or
    damaged; building a shipped model's entry (``what``: its name, None for a user's file) says so first.

    Each entry is written with a record of its size and SHA-256, checked whenever it is used: a truncated or
    altered entry is rebuilt, with a notice. When the cache folder cannot be created or written, the entry is built
    in a private temporary folder for this process instead, with a notice: never a failure.
    """
    folder = cache_dir()
    if folder is None:
        folder = _private_cache()
    target = folder / name
    record = target.with_name(target.name + _RECORD)
    if target.is_file():
        problem = _damage(target, record)
        if problem is None:
            return target
        notice(f"blazeconv: the cache entry {target} is {problem}; rebuilding it")
    elif what is not None:
        notice(f"blazeconv: preparing {what} for first use (once; kept in {folder})")
    build(target)
    with atomic_path(record) as tmp:
        tmp.write_text(f"{target.stat().st_size} {sha256_of(target)}\n")
    return target


def cached_entry_exists(name: str) -> bool:
    """True when the cache folder holds the entry ``name`` (damaged or not: ``cache_entry`` checks it on use)."""
    folder, _ = cache_location()
    return any((place / name).is_file() for place in (folder, *_private_folder))


def _damage(target: Path, record: Path) -> str | None:
    """What is wrong with a cache entry (None: it is as it was written)."""
    try:
        size, digest = record.read_text().split()
    except (OSError, ValueError):
        return "unverified (no record of its checksum)"
    if target.stat().st_size != int(size):
        return f"truncated or altered ({target.stat().st_size} bytes, {size} when written)"
    if sha256_of(target) != digest:
        return "altered (its checksum differs from the one recorded)"
    return None


def _private_cache() -> Path:
    """A temporary folder for this process's entries when the cache cannot be used; removed at exit."""
    if not _private_folder:
        import atexit
        import shutil
        import tempfile

        location, _ = cache_location()
        _private_folder.append(Path(tempfile.mkdtemp(prefix="blazeconv-cache-")))
        atexit.register(shutil.rmtree, _private_folder[0], True)
        notice(f"blazeconv: the cache folder {location} cannot be created or written; preparing models in "
               f"{_private_folder[0]} for this run only")
    return _private_folder[0]


def cache_entries() -> list[Path]:
    """The files blazeconv keeps in the cache folder (entries and their records), by name."""
    folder, _ = cache_location()
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and _ENTRY_NAME.match(p.name))


def clear_cache() -> tuple[int, int]:
    """Delete blazeconv's entries from the cache folder (nothing else in it); returns (files, bytes) removed."""
    files = size = 0
    for path in cache_entries():
        size += path.stat().st_size
        path.unlink()
        files += 1
    return files, size
