"""The one form every label and detection file is read into (``BoxFile``: ``FileImage`` entries holding
``FileBox`` boxes), with the checks that need no picture and the line an entry is on, for messages."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LabelsError

Where = int | tuple
"""Where an entry is in its file: a line number (text formats), or the path of keys and indices to it in a JSON
document (its line is found only when an error needs it: ``BoxFile.line``)."""


@dataclass(frozen=True)
class FileBox:
    """One box as the file gives it: ``(x, y, w, h)`` with ``(x, y)`` its top left corner, in pixels, or in 0..1 of
    the picture's width and height when its ``FileImage`` is ``relative``. ``score``: None where the format has
    none. ``ignore``: an ignore region (matched detections are neither right nor wrong, ``metrics``).
    ``keypoints``: None where the format gives none, else one entry per keypoint in MediaPipe's order
    (``variants.KEYPOINT_NAMES``, the subject's sides), each ``(x, y)`` in the box's units or None where that point is
    not labelled (eval ignores them; ``training`` learns the labelled ones)."""

    x: float
    y: float
    w: float
    h: float
    score: float | None
    ignore: bool
    where: Where
    keypoints: tuple | None = None


@dataclass
class FileImage:
    """One picture's entry: ``name`` (its path as written; None in a COCO results list, which has ``image_id``
    only), the ``width`` and ``height`` the file states (None where it says nothing), its ``boxes``, whether they
    are ``relative`` (0..1 of the picture), and ``error``: why the run that wrote the file could not read it."""

    name: str | None
    where: Where
    width: int | None = None
    height: int | None = None
    boxes: list[FileBox] = field(default_factory=list)
    relative: bool = False
    image_id: int | None = None
    error: str | None = None


@dataclass
class BoxFile:
    """A whole file: its ``path``, ``format`` (one of ``FORMATS``), its ``images`` in file order, and ``by_id``: a
    COCO results list, whose pictures are named by the ``image_id`` of the COCO labels (a picture it does not
    mention has no detections)."""

    path: Path
    format: str
    images: list[FileImage]
    by_id: bool = False
    text: str = field(default="", repr=False)

    def line(self, where: Where) -> int:
        """The line number of ``where`` (for a JSON path: the line where the innermost object on it starts)."""
        return where if isinstance(where, int) else json_line(self.text, where)

    def error(self, where: Where, message: str) -> LabelsError:
        """The ``LabelsError`` for ``message`` about the entry at ``where``: ``FILE line N: message``."""
        return LabelsError(f"{self.path} line {self.line(where)}: {message}")


class BadEntry(Exception):
    """An entry that is wrong, at ``where`` (turned into a ``LabelsError`` with the line by ``BoxFile.error``)."""

    def __init__(self, where: Where, message: str):
        super().__init__(message)
        self.where, self.message = where, message


def finite(value, where: Where, what: str) -> float:
    """``value`` as a finite float, else ``BadEntry`` naming ``what``."""
    if isinstance(value, bool):
        raise BadEntry(where, f"{what} is {value!r}, not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadEntry(where, f"{what} is {value!r}, not a number") from None
    if not math.isfinite(number):
        raise BadEntry(where, f"{what} is {value!r}, not a finite number")
    return number


def stated_size(value, where: Where, what: str) -> int | None:
    """A stated picture side: None when absent, else a whole number >= 1."""
    if value is None:
        return None
    number = finite(value, where, what)
    if number < 1 or number != int(number):
        raise BadEntry(where, f"{what} is {value!r}, not a whole number of pixels >= 1")
    return int(number)


def file_box(x, y, w, h, where: Where, *, score=None, ignore=False, keypoints=None) -> FileBox:
    """A ``FileBox`` from the file's values: numbers checked finite, a negative width or height refused;
    ``keypoints``: None, or a sequence of ``[x, y]`` pairs or None (not labelled), checked finite."""
    x, y, w, h = (finite(v, where, name) for v, name in ((x, "x"), (y, "y"), (w, "the width"), (h, "the height")))
    if w < 0 or h < 0:
        raise BadEntry(where, f"a box of negative size ({w:g} x {h:g})")
    if keypoints is not None:
        if not isinstance(keypoints, (list, tuple)):
            raise BadEntry(where, f"keypoints are {keypoints!r}, not a list of [x, y] pairs")
        points = []
        for point in keypoints:
            if point is None:
                points.append(None)
            elif isinstance(point, (list, tuple)) and len(point) == 2:
                points.append((finite(point[0], where, "a keypoint's x"), finite(point[1], where, "a keypoint's y")))
            else:
                raise BadEntry(where, f"a keypoint is {point!r}, not [x, y] or null")
        keypoints = tuple(points)
    return FileBox(x, y, w, h, None if score is None else finite(score, where, "the score"), bool(ignore), where,
                   keypoints)



def json_line(text: str, where: tuple) -> int:
    """The line on which the innermost JSON object along ``where`` (keys and indices from the top) starts.

    The text is parsed again with the pure-Python scanner, whose object parser is wrapped to note where each
    object starts; only an error needs this, so the usual parse stays the fast one.
    """
    from json import decoder as json_decoder
    from json import scanner

    starts: dict[int, int] = {}

    def parse_object(s_and_end, *args, **kwargs):
        value, end = json_decoder.JSONObject(s_and_end, *args, **kwargs)
        starts[id(value)] = s_and_end[1] - 1
        return value, end

    decoder = json.JSONDecoder()
    decoder.parse_object = parse_object
    decoder.scan_once = scanner.py_make_scanner(decoder)
    value = decoder.decode(text)
    position = starts.get(id(value), 0)
    for step in where:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            break
        position = starts.get(id(value), position)
    return text.count("\n", 0, position) + 1



__all__ = ["BadEntry", "BoxFile", "FileBox", "FileImage", "Where", "file_box", "finite", "json_line", "stated_size"]
