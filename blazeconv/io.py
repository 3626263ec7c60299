"""Atomic artifact writing: a file is either the old one or the complete new one, never half written.

Every artifact is written to a hidden temporary file beside it, ``.NAME.PID.XXXXXXXX.tmp`` (same folder, so
the final ``os.replace`` is an atomic rename on the same filesystem), flushed to disk, then renamed over
``NAME``. At no moment does ``NAME`` hold a partial file. A process killed outright (SIGKILL, power loss)
cannot remove its temporary file; the hidden name never passes for the artifact, and the next write of the
same artifact deletes the temporary files whose writing process (the PID in the name) no longer runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import BlazeconvError, OutputError


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


def _process_is_gone(pid: int) -> bool:
    """True only when no process ``pid`` exists (POSIX); anything uncertain counts as running."""
    if os.name != "posix" or pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0: existence check, nothing is sent
    except ProcessLookupError:
        return True
    except OSError:  # e.g. PermissionError: the process exists under another user
        return False
    return False


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete the temporary files of ``path`` left by writers that were killed; returns what was removed."""
    path = Path(path)
    prefix, removed = _temporary_prefix(path), []
    with contextlib.suppress(OSError):
        for entry in os.scandir(path.parent):
            name = entry.name
            if not (name.startswith(prefix) and name.endswith(".tmp")):
                continue
            pid = name[len(prefix):].split(".", 1)[0]
            if pid.isdigit() and _process_is_gone(int(pid)) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def _flush_to_disk(path: Path) -> None:
    """fsync a written file so a crash after the rename cannot leave the new name with missing data."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``path``; on success it is renamed onto ``path``, on failure removed.

    An ``OSError`` while writing (no such folder, a file where the folder should be, no space, no permission)
    becomes an ``OutputError`` naming ``path``.
    """
    path = Path(path)
    try:
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise OutputError(f"{path}: cannot write: {blocker} is a file, not a folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        fd, tmp = tempfile.mkstemp(prefix=f"{_temporary_prefix(path)}{os.getpid()}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write: {exc.strerror or exc}") from None
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.is_file():
            _flush_to_disk(tmp_path)
        os.replace(tmp_path, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, BlazeconvError):
            raise OutputError(f"{path}: cannot write: {exc.strerror or exc}") from None
        raise


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
