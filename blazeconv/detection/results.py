"""Results of a run over many files as JSON Lines: one record per photo or video frame, written as they come,
resumable.

What ``detect --jsonl FILE --resume`` does, for Python users too::

    with JsonlResults("faces.jsonl", resume=True, settings={"model": "short_range"}) as results:
        todo = [paths[i] for i in results.todo(paths)]   # the paths not in the file yet, in order
        for result in stream_files(runner, todo):
            results.write(result_record(result))

The first line records the settings (``{"blazeconv_settings": {...}}``); then a record per photo:
``detections_to_json``'s dict for an image that was read, ``{"path", "error"}`` for one that was not; and per sampled
video frame: ``{"path", "frame", "time", "width", "height", "detections"}``, the video's last one with ``"last":
true`` (a video that stopped early ends with its ``{"path", "error"}`` record instead). A kill leaves at most one
torn last line, which resuming cuts and redoes; a video is continued after its last recorded frame.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from ..errors import OutputError
from ..io import PathUsageError, check_folder, output_target
from .pipeline import FileResult
from .records import detections_to_json
from .video import FrameResult


def result_record(result: FileResult | FrameResult) -> dict:
    """One result's record: ``detections_to_json`` for an image that was read, ``{"path", "error"}`` for a failure,
    ``{"path", "frame", "time", "width", "height", "detections"}`` (and ``"last": true``) for a video frame."""
    if isinstance(result, FrameResult):
        record = detections_to_json(result.path, result.width, result.height, result.detections)
        record = {"path": record.pop("path"), "frame": result.frame, "time": round(result.time, 6), **record}
        return {**record, "last": True} if result.last else record
    if result.error is not None:
        return {"path": str(result.path), "error": str(result.error)}
    return detections_to_json(result.path, result.width, result.height, result.detections)


SETTINGS_KEY = "blazeconv_settings"


def read_jsonl(path: str | Path) -> tuple[list[dict], int, dict | None]:
    """The records of a results file, how many bytes its complete lines take, and its settings record (None in a
    file written before blazeconv recorded them).

    The settings record is the first line, ``{"blazeconv_settings": {...}}``; every other line is one input's
    record. A last line without its newline was cut short (the writer was killed) and is not returned; the caller
    truncates the file to the returned length before appending. Any other line that is not a JSON object with a
    ``path`` is an ``OutputError`` naming the file and the line: such a file is not continued.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise OutputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    end = data.rfind(b"\n") + 1
    records, settings = [], None
    for number, line in enumerate(data[:end].split(b"\n")[:-1], 1):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if number == 1 and isinstance(record, dict) and isinstance(record.get(SETTINGS_KEY), dict):
            settings = record[SETTINGS_KEY]
            continue
        if not isinstance(record, dict) or not isinstance(record.get("path"), str):
            raise OutputError(f"{path}: line {number} is not a detect --jsonl record; not continuing this file")
        records.append(record)
    return records, end, settings


def _same_input(path: str | Path) -> str:
    """What identifies an input across runs: its resolved path (``photos/a.jpg`` and ``$PWD/photos/a.jpg`` alike)."""
    return os.path.realpath(path)


class JsonlResults:
    """A results file (``path``; ``"-"``: stdout; None: no file, records are only counted) for one run.

    The file starts with a settings record (``settings``: what shapes the results, such as model, backend and
    thresholds, with blazeconv's version) and holds one record per input. ``resume``: continue a file that holds
    results (its records are ``finished``, their inputs skipped by ``todo``, matched by resolved path); with
    settings that differ from the file's it is refused, naming the difference; a file without a settings record
    (an older blazeconv's) is continued, with a notice in ``notices``. Without ``resume`` a non-empty file is
    refused. A regular file is locked (``fcntl.flock``) from ``check`` to the end of the run: a second run on it is
    refused at once. Refusals are ``PathUsageError`` (exit 2), made by ``check`` before any work. A device
    or FIFO is written through: nothing is read from it, so it cannot be resumed.
    """

    def __init__(self, path: str | Path | None, *, resume: bool = False, settings: dict | None = None,
                 option: str = "--jsonl"):
        self.path = None if path is None else Path(path)
        self.to_stdout = path is not None and str(path) == "-"
        self.resume, self.option = resume, option
        self.settings = dict(settings or {})
        self.finished: list[dict] = []
        self.notices: list[str] = []
        self._stream: IO[str] | None = None
        self._created = False
        self._special = self.path is not None and not self.to_stdout and output_target(self.path)[1]

    def check(self) -> None:
        """Refuse before any work what entering would refuse; a regular file is opened and locked here already,
        so that a second run is refused at once (``close`` or leaving the context releases it)."""
        if self.path is None or self.to_stdout:
            return
        if self._special:
            if self.resume:
                raise PathUsageError(f"{self.option} {self.path}: not a regular file, so there is nothing to resume")
            return
        if self._stream is None:
            check_folder(self.path)
            self._created = not self.path.exists()
            stream = open(self.path, "a", encoding="utf-8")
            try:
                fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                stream.close()
                raise PathUsageError(f"{self.option} {self.path}: another run is writing this file; wait for it to "
                                     "finish (then --resume), or write to another file") from None
            self._stream = stream
        if not self.resume and self.path.stat().st_size > 0:
            self.close()
            raise PathUsageError(f"{self.option} {self.path} already holds results: add --resume to continue that "
                                 "run, or remove the file")

    def __enter__(self) -> JsonlResults:
        if self.path is None:
            return self
        if self.to_stdout:
            self._stream = sys.stdout
        elif self._special:
            self.check()
            self._stream = open(self.path, "w", encoding="utf-8")  # a device or a pipe: written through
        else:
            self.check()
            self._continue()
        return self

    def close(self) -> None:
        """Close the file (releasing the lock); stdout stays open. A file this object created and never wrote to (the
        run failed before its first line) is removed."""
        if self._stream is not None and not self.to_stdout:
            self._stream.close()
            if self._created and not self._special and self.path.stat().st_size == 0:
                self.path.unlink(missing_ok=True)
        self._stream = None

    def __del__(self) -> None:
        self.close()

    def _continue(self) -> None:
        """Under the lock: read what the file holds, refuse other settings, cut a torn last line."""
        keep, found = 0, None
        if self.resume and self.path.stat().st_size > 0:
            self.finished, keep, found = read_jsonl(self.path)
            if found is None:
                self.notices.append(f"{self.path} records no settings (written by an older blazeconv): resuming "
                                    "without checking that they match")
            elif found != self.settings:
                differences = ", ".join(f"{key} {found.get(key)!r} in the file, {self.settings.get(key)!r} now"
                                        for key in sorted(set(found) | set(self.settings))
                                        if found.get(key) != self.settings.get(key))
                self.close()
                raise PathUsageError(f"{self.option} {self.path} was written with other settings ({differences}): "
                                     "resume with the same options, or write to another file")
        self._stream.truncate(keep)  # a line torn by a kill is redone
        if keep == 0 and self.settings:  # regular files only: a pipe or stdout gets the records alone
            self._stream.write(json.dumps({SETTINGS_KEY: self.settings}) + "\n")
            self._stream.flush()

    def __exit__(self, *exc) -> bool:
        self.close()  # closing releases the lock
        return False

    @property
    def done(self) -> set[str]:
        """The inputs (resolved paths) the file has a complete record of: a photo's record, an error, a video's
        frame record marked ``last``."""
        return {_same_input(record["path"]) for record in self.finished
                if "frame" not in record or record.get("last")}

    def todo(self, paths: Sequence[str | Path]) -> list[int]:
        """Indices of ``paths`` without a complete record yet, in order (matched by resolved path)."""
        done = self.done
        return [i for i, path in enumerate(paths) if _same_input(path) not in done]

    def last_frames(self) -> dict[str, int]:
        """For each video the file holds frame records of but not its end: the last frame recorded (resolved path
        -> frame index); a resumed run continues after it."""
        done, last = self.done, {}
        for record in self.finished:
            key = _same_input(record["path"])
            if "frame" in record and key not in done:
                last[key] = max(last.get(key, -1), int(record["frame"]))
        return last

    def write(self, record: dict) -> None:
        """Append one record as a line, flushed at once (an interrupted run keeps every finished input)."""
        if self._stream is not None:
            self._stream.write(json.dumps(record) + "\n")
            self._stream.flush()


__all__ = ["SETTINGS_KEY", "JsonlResults", "read_jsonl", "result_record"]
