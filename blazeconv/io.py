"""Where outputs go and how they are written, so that no user file is ever lost.

Atomic writing: every artifact is written to a hidden temporary file beside it, ``.NAME.PID.XXXXXXXX.tmp``
(same folder, so the final ``os.replace`` is an atomic rename on the same filesystem), flushed to disk, then
renamed over ``NAME``. At no moment does ``NAME`` hold a partial file. The temporary file is created with mode
0o666 less the umask, as ``open(NAME, "w")`` would (0644 under umask 022). A process killed outright (SIGKILL,
power loss) cannot remove its temporary file; the hidden name never passes for the artifact, and the next write
of the same artifact deletes the temporary files whose writing process (the PID in the name) no longer runs.

Folders are never created on the way: a missing folder is an ``OutputError`` naming it.

Inputs are never written: ``refuse_overwriting`` compares every output with every input by device and inode
(so a symlink or a hard link to an input counts as the input) before any work; ``mirrored_paths`` names one
output per input so that distinct inputs never share one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from .errors import BlazeconvError, OutputError

# "scheme://" or, after pathlib collapsed the double slash, "scheme:/"; two letters at least (not a drive "C:/").
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")

def looks_like_url(text: str | Path) -> bool:
    """True for ``http://...``, ``https://...``, ``s3://...`` and the like, also as a ``Path`` (``https:/...``)."""
    return bool(_URL.match(str(text)))


def url_refused(text: str | Path) -> str:
    """The one message for a URL where a file is expected: blazeconv never downloads."""
    return f"{text}: URLs are not read; download the file first"


class PathUsageError(BlazeconvError):
    """Paths on the command line that cannot be used together: an output that is one of the inputs, two inputs
    that would share one output, a URL where a file is expected. Exit code 2, as a usage error."""

    exit_code = 2


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


def check_folder(path: str | Path) -> None:
    """``OutputError`` naming the culprit unless ``path``'s folder exists and can be written: a missing folder, a
    file in its place, a read-only folder (a device or FIFO at ``path`` is written through, its folder untouched)."""
    path = Path(path)
    folder = path.parent
    if folder.is_dir():
        if not os.access(folder, os.W_OK | os.X_OK) and not output_target(path)[1]:
            raise OutputError(f"{path}: cannot write: folder {folder} is not writable (read-only or no permission)")
        return
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise OutputError(f"{path}: cannot write: {blocker} is a file, not a folder")
    raise OutputError(f"{path}: cannot write: folder {folder} does not exist (blazeconv creates no folders on the way)")


def _create_temporary(path: Path) -> Path:
    """A new empty hidden file beside ``path``, mode 0o666 less the umask (what ``open(path, "w")`` gives)."""
    prefix = f"{_temporary_prefix(path)}{os.getpid()}."
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        candidate = path.parent / f"{prefix}{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(candidate, flags, 0o666)  # the kernel applies the umask, as for any new file
        except FileExistsError:
            continue
        os.close(fd)
        return candidate
    raise FileExistsError(f"no free temporary name beside {path}")


def output_target(path: str | Path) -> tuple[Path, bool]:
    """Where writing ``path`` really goes, as a Unix tool sees it: a symlink's final target (followed, never
    replaced), and whether that is a special file (a character or block device, a FIFO, a socket: ``/dev/null``,
    ``/dev/stdout``, a pipe another program reads), which is written through rather than replaced."""
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return path, False
    return path, not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``path``; on success it is renamed onto ``path``, on failure removed.

    A symlink is followed: its target is written this way, the link stays. A special file (a device, a FIFO:
    ``output_target``) is yielded itself and written through. The folder of ``path`` must exist
    (``OutputError`` naming it otherwise). The file appears with the mode a plain ``open(path, "w")`` gives under
    the current umask. An ``OSError`` while writing (no space, no permission) becomes an ``OutputError`` naming
    ``path``. Any exception, an interrupt included, removes the temporary file and leaves whatever was at ``path``
    untouched.
    """
    given = Path(path)
    path, special = output_target(given)
    if special:
        try:
            yield path
        except OSError as exc:
            if isinstance(exc, BlazeconvError):
                raise
            raise OutputError(f"{given}: cannot write: {exc.strerror or exc}") from None
        return
    check_folder(path)
    try:
        remove_stale_temporaries(path)
        tmp_path = _create_temporary(path)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write: {exc.strerror or exc}") from None
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


# ------------------------------------------------------------------------------------ what a file is

# How image files begin (RIFF: a WebP when bytes 8..12 say WEBP).
_IMAGE_MAGIC = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG", "PNG"), (b"GIF8", "GIF"), (b"BM", "BMP"),
                (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))


def image_format(head: bytes) -> str | None:
    """The image format a file's first 12 or more bytes ``head`` show (JPEG, PNG, GIF, BMP, TIFF, WebP), or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in _IMAGE_MAGIC if head.startswith(magic)), None)


# ------------------------------------------------------------------------------------ inputs are never written


def _identity(path: Path) -> tuple[int, int] | None:
    """``(device, inode)`` of the file ``path`` is or points to; None when there is none."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


def refuse_overwriting(outputs: Iterable[tuple[str, Path]], inputs: Iterable[tuple[str, Path]]) -> None:
    """``PathUsageError`` if an output is one of the inputs, or two outputs are one file; call before any work.

    ``outputs`` and ``inputs`` are ``(label, path)`` pairs, the label saying what the path is (``-o``,
    ``--json``, ``input image``) for the message. An output is an input when both name the same file, directly,
    through a symlink or as a hard link (same device and inode); an output that does not exist yet is compared by
    its resolved path with the other outputs.
    """
    by_identity: dict[tuple[int, int], tuple[str, Path]] = {}
    for label, path in inputs:
        identity = _identity(path)
        if identity is not None:
            by_identity.setdefault(identity, (label, path))
    written: dict[object, tuple[str, Path]] = {}
    for label, path in outputs:
        identity = _identity(path)
        if identity is not None and identity in by_identity:
            input_label, input_path = by_identity[identity]
            same = "" if os.path.abspath(path) == os.path.abspath(input_path) else " (the same file)"
            raise PathUsageError(f"{label} {path} is {input_label} {input_path}{same}: blazeconv never writes "
                                 "its inputs; choose another output")
        key = identity if identity is not None else os.path.realpath(path)
        if key in written:
            other_label, other = written[key]
            raise PathUsageError(f"{other_label} {other} and {label} {path} are the same file; give each output its own")
        written[key] = (label, path)


def mirrored_paths(inputs: Sequence[str | Path], folder: str | Path,
                   suffix: str | Callable[[Path], str] = ".png") -> list[Path]:
    """One output path per input under ``folder``: the input's path relative to the deepest folder holding every
    input, with ``suffix`` (or ``suffix(input)``) in place of its own (``a/1.jpg``, ``b/1.jpg`` -> ``OUT/a/1.png``,
    ``OUT/b/1.png``; the files of one folder -> ``OUT/NAME.png``).

    Distinct inputs get distinct outputs except when two differ only in their suffix (``x.jpg`` and ``x.png`` in
    one folder): that is a ``PathUsageError`` naming both, before any work. The same file given twice maps to
    one output.
    """
    folder = Path(folder)
    if not inputs:
        return []
    absolute = [Path(os.path.abspath(p)) for p in inputs]
    common = Path(os.path.commonpath([str(p.parent) for p in absolute]))
    outputs = [folder / p.relative_to(common).with_suffix(suffix(p) if callable(suffix) else suffix) for p in absolute]
    owner: dict[Path, tuple[Path, str | Path]] = {}
    for given, source, output in zip(inputs, absolute, outputs):
        first = owner.setdefault(output, (source, given))
        if first[0] != source:
            raise PathUsageError(f"{first[1]} and {given} would both be written as {output}: rename one of them "
                                 "or process them in separate runs")
    return outputs


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
