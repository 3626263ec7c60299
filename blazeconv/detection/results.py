"""Results of a run over many files as JSON Lines: one record per input, written as they come, resumable.

What ``detect --jsonl FILE --resume`` does, for Python users too::

    with JsonlResults("faces.jsonl", resume=True) as results:
        todo = [paths[i] for i in results.todo(paths)]   # the paths not in the file yet, in order
        for result in stream_files(runner, todo):
            results.write(result_record(result))

A record is ``detections_to_json``'s dict for an image that was read, ``{"path", "error"}`` for one that was not.
A kill leaves at most one torn last line, which resuming cuts and redoes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from ..errors import OutputError
from ..io import PathUsageError
from .pipeline import FileResult
from .records import detections_to_json


def result_record(result: FileResult) -> dict:
    """One file's record: ``detections_to_json`` for an image that was read, ``{"path", "error"}`` for a failure."""
    if result.error is not None:
        return {"path": str(result.path), "error": str(result.error)}
    return detections_to_json(result.path, result.width, result.height, result.detections)


def read_jsonl(path: str | Path) -> tuple[list[dict], int]:
    """The records of a results file, and how many bytes its complete lines take.

    A last line without its newline was cut short (the writer was killed) and is not returned; the caller
    truncates the file to the returned length before appending. Any other line that is not a JSON object with a
    ``path`` is an ``OutputError`` naming the file and the line: such a file is not continued.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise OutputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    end = data.rfind(b"\n") + 1
    records = []
    for number, line in enumerate(data[:end].split(b"\n")[:-1], 1):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("path"), str):
            raise OutputError(f"{path}: line {number} is not a detect --jsonl record; not continuing this file")
        records.append(record)
    return records, end


class JsonlResults:
    """A results file (``path``; ``"-"``: stdout; None: no file, records are only counted) for one run.

    ``resume``: continue a file that holds results (its records are ``finished``, their inputs skipped by ``todo``);
    without it a non-empty file is refused (``PathUsageError``, exit 2), checked by ``check`` before any work and
    again on entering. Inputs are matched by the path as written.
    """

    def __init__(self, path: str | Path | None, *, resume: bool = False, option: str = "--jsonl"):
        self.path = None if path is None else Path(path)
        self.to_stdout = path is not None and str(path) == "-"
        self.resume, self.option = resume, option
        self.finished: list[dict] = []
        self._stream: IO[str] | None = None

    def check(self) -> None:
        """Refuse before any work to add to a file that holds results, unless resuming."""
        if self.path is None or self.to_stdout or self.resume:
            return
        if self.path.is_file() and self.path.stat().st_size > 0:
            raise PathUsageError(f"{self.option} {self.path} already holds results: add --resume to continue that "
                                 "run, or remove the file")

    def __enter__(self) -> JsonlResults:
        self.check()
        if self.path is None:
            return self
        if self.to_stdout:
            self._stream = sys.stdout
            return self
        keep = 0
        if self.resume and self.path.is_file():
            self.finished, keep = read_jsonl(self.path)
        self._stream = open(self.path, "a", encoding="utf-8")
        self._stream.truncate(keep)  # a line torn by a kill is redone
        return self

    def __exit__(self, *exc) -> bool:
        if self._stream is not None and not self.to_stdout:
            self._stream.close()
        self._stream = None
        return False

    @property
    def done(self) -> set[str]:
        """The paths (as written) the file already has a record of."""
        return {record["path"] for record in self.finished}

    def todo(self, paths: Sequence[str | Path]) -> list[int]:
        """Indices of ``paths`` without a record yet, in order."""
        done = self.done
        return [i for i, path in enumerate(paths) if str(path) not in done]

    def write(self, record: dict) -> None:
        """Append one record as a line, flushed at once (an interrupted run keeps every finished input)."""
        if self._stream is not None:
            self._stream.write(json.dumps(record) + "\n")
            self._stream.flush()


__all__ = ["JsonlResults", "read_jsonl", "result_record"]
