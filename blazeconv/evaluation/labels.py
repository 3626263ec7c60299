"""Face boxes as label and detection files hold them: WIDER FACE txt (and RetinaFace's variant), COCO JSON, dlib's
imglab XML and blazeconv's own ``detect --json`` / ``--jsonl``, read into one form (``BoxFile``), format found by
content (``detect_format``) unless forced.

What each format is, as read here (pixels unless said otherwise; ``(x, y)`` the box's top left corner):

- ``wider``: WIDER FACE's ``wider_face_*_bbx_gt.txt``: a picture's path, the number of its faces, then one line per
  face ``x y w h blur expression illumination invalid occlusion pose`` (a picture with no face has one line of zeros);
  a face marked ``invalid`` is an ignore region. Lines of ``x y w h`` or ``x y w h score`` (WIDER's result files) are
  read too. RetinaFace's variant (``label.txt`` of its ``retinaface_gt_v1.1``): ``# path [width height]``, then one
  line per face, ``x y w h`` and optionally 5 landmarks (``x y flag`` each) and a quality (20 numbers).
- ``coco``: a COCO dataset (``images`` with ``id``, ``file_name``, ``width``, ``height``; ``annotations`` with
  ``image_id``, ``bbox`` ``[x, y, w, h]``, optional ``score``; ``iscrowd`` or ``ignore``: an ignore region); with
  several ``categories``, those named ``face``. Or a COCO results list (``[{"image_id", "bbox", "score"}]``), whose
  pictures are those of the COCO labels it refers to (``by_id``).
- ``dlib``: ``<dataset><images><image file=… [width=… height=…]><box top=… left=… width=… height=… [ignore='1']/>``
  (dlib's ``tools/imglab``); ``ignore`` boxes are ignore regions.
- ``blazeconv``: ``detect --json``'s document (``images``: ``path``, ``width``, ``height``, ``detections``:
  ``score``, ``box`` ``[xmin, ymin, xmax, ymax]`` in 0..1 of the picture) or ``--jsonl``'s records (the settings
  record and video frames are left out). Any detector's output written this way can serve as labels.

Nothing here opens the pictures: ``evaluation.pictures`` finds them, checks the boxes against their size and turns
``relative`` boxes into pixels. Every error is a ``LabelsError`` (exit 2) naming the file and the line.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LabelsError

FORMATS = ("wider", "coco", "dlib", "blazeconv")
"""The formats ``read_boxes`` reads; ``"auto"`` finds which from the content."""

Where = int | tuple
"""Where an entry is in its file: a line number (text formats), or the path of keys and indices to it in a JSON
document (its line is found only when an error needs it: ``BoxFile.line``)."""


@dataclass(frozen=True)
class FileBox:
    """One box as the file gives it: ``(x, y, w, h)`` with ``(x, y)`` its top left corner, in pixels, or in 0..1 of
    the picture's width and height when its ``FileImage`` is ``relative``. ``score``: None where the format has
    none. ``ignore``: an ignore region (matched detections are neither right nor wrong, ``metrics``)."""

    x: float
    y: float
    w: float
    h: float
    score: float | None
    ignore: bool
    where: Where


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
        return where if isinstance(where, int) else _json_line(self.text, where)

    def error(self, where: Where, message: str) -> LabelsError:
        """The ``LabelsError`` for ``message`` about the entry at ``where``: ``FILE line N: message``."""
        return LabelsError(f"{self.path} line {self.line(where)}: {message}")


def read_boxes(path: str | Path, format: str = "auto") -> BoxFile:
    """Read a label or detection file in ``format`` (``"auto"``: found from its content, ``detect_format``).

    Boxes are checked for what needs no picture (numbers that are finite, sizes not negative); ``LabelsError``
    naming the file and the line otherwise, and for a file that is not in the format (forced or found).
    """
    path = Path(path)
    if format != "auto" and format not in FORMATS:
        raise LabelsError(f"{path}: unknown labels format {format!r}; known: auto, {', '.join(FORMATS)}")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise LabelsError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise LabelsError(f"{path}: is a folder, not a labels file") from None
    except OSError as exc:
        raise LabelsError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if format == "dlib":  # XML states its own encoding (dlib writes ISO-8859-1)
        return BoxFile(path, "dlib", _read_dlib(path, data))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if format == "auto" and data.lstrip().startswith(b"<"):
            return BoxFile(path, "dlib", _read_dlib(path, data))
        line = data[: exc.start].count(b"\n") + 1
        raise LabelsError(f"{path} line {line}: not UTF-8 text, so not {format if format != 'auto' else 'labels'}"
                          ) from None
    found = detect_format(text) if format == "auto" else format
    if found == "dlib":
        return BoxFile(path, "dlib", _read_dlib(path, data))
    if found == "wider":
        return BoxFile(path, "wider", _read_wider(path, text), text=text)
    document = _json_document(path, text, found)
    reader = _read_coco if found == "coco" else _read_blazeconv
    try:
        images, by_id = reader(path, document)
    except _Bad as bad:
        raise BoxFile(path, found, [], text=text).error(bad.where, bad.message) from None
    return BoxFile(path, found, images, by_id, text)


def detect_format(text: str) -> str:
    """Which of ``FORMATS`` ``text`` is in, from its first characters: ``<``: dlib's XML; a JSON document with
    ``annotations`` or a list: COCO; other JSON or JSON lines: blazeconv's; anything else: WIDER FACE's text."""
    start = text.lstrip()[:1]
    if start == "<":
        return "dlib"
    if start == "[":
        return "coco"
    if start == "{":
        try:
            document = json.loads(text)
        except ValueError:
            return "blazeconv"  # JSON lines (a record per line), or broken JSON: the reader says where
        return "coco" if isinstance(document, dict) and "annotations" in document else "blazeconv"
    return "wider"


class _Bad(Exception):
    """An entry that is wrong, at ``where`` (turned into a ``LabelsError`` with the line by ``BoxFile.error``)."""

    def __init__(self, where: Where, message: str):
        super().__init__(message)
        self.where, self.message = where, message


def _number(value, where: Where, what: str) -> float:
    """``value`` as a finite float, else ``_Bad`` naming ``what``."""
    if isinstance(value, bool):
        raise _Bad(where, f"{what} is {value!r}, not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _Bad(where, f"{what} is {value!r}, not a number") from None
    if not math.isfinite(number):
        raise _Bad(where, f"{what} is {value!r}, not a finite number")
    return number


def _size(value, where: Where, what: str) -> int | None:
    """A stated picture side: None when absent, else a whole number >= 1."""
    if value is None:
        return None
    number = _number(value, where, what)
    if number < 1 or number != int(number):
        raise _Bad(where, f"{what} is {value!r}, not a whole number of pixels >= 1")
    return int(number)


def _box(x, y, w, h, where: Where, *, score=None, ignore=False) -> FileBox:
    """A ``FileBox`` from the file's values: numbers checked finite, a negative width or height refused."""
    x, y, w, h = (_number(v, where, name) for v, name in ((x, "x"), (y, "y"), (w, "the width"), (h, "the height")))
    if w < 0 or h < 0:
        raise _Bad(where, f"a box of negative size ({w:g} x {h:g})")
    return FileBox(x, y, w, h, None if score is None else _number(score, where, "the score"), bool(ignore), where)


# ------------------------------------------------------------------------------------ WIDER FACE (and RetinaFace)

# Numbers on a face line: x y w h; with a score (WIDER's result files); WIDER FACE's attributes (the 8th is
# "invalid"); RetinaFace's 5 landmarks (x y flag each) and a quality.
_WIDER_LINE = {4: "x y w h", 5: "x y w h score", 10: "WIDER FACE's x y w h and 6 attributes",
               20: "RetinaFace's x y w h, 5 landmarks and a quality"}
_INVALID = 7


def _read_wider(path: Path, text: str) -> list[FileImage]:
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise LabelsError(f"{path}: empty, no labels")
    try:
        return _read_retinaface(lines) if lines[0][1].startswith("#") else _read_plain_wider(lines)
    except _Bad as bad:
        raise LabelsError(f"{path} line {bad.where}: {bad.message}") from None


def _face_line(number: int, line: str) -> FileBox | None:
    """One face line; None for a zero-size face marked invalid (WIDER FACE's placeholders: nothing to match)."""
    parts = line.split()
    if len(parts) not in _WIDER_LINE:
        raise _Bad(number, f"expected a face line ({'; '.join(f'{k} numbers: {v}' for k, v in _WIDER_LINE.items())}),"
                           f" got {len(parts)} value(s): {line[:80]!r}")
    values = [_number(p, number, "a value") for p in parts]
    invalid = len(values) == 10 and values[_INVALID] != 0
    if invalid and (values[2] == 0 or values[3] == 0):
        return None
    return _box(*values[:4], number, score=values[4] if len(values) == 5 else None, ignore=invalid)


def _read_plain_wider(lines: list[tuple[int, str]]) -> list[FileImage]:
    images, index = [], 0
    while index < len(lines):
        number, name = lines[index]
        if _all_numbers(name):
            raise _Bad(number, f"expected a picture's path, got a line of numbers: {name[:80]!r}")
        if index + 1 >= len(lines):
            raise _Bad(number, f"{name}: the number of faces is missing after it")
        count_line, count = lines[index + 1]
        if not count.isdigit():
            raise _Bad(count_line, f"expected the number of faces of {name}, got {count[:80]!r}")
        image, count = FileImage(name, number), int(count)
        index += 2
        if count == 0 and index < len(lines) and _all_numbers(lines[index][1]) and not any(
                float(v) for v in lines[index][1].split()):
            index += 1  # the line of zeros WIDER FACE writes for a picture with no face
        for _ in range(count):
            if index >= len(lines) or not _all_numbers(lines[index][1]):
                where = lines[index][0] if index < len(lines) else lines[-1][0]
                raise _Bad(where, f"{name} (line {number}) has {count} faces, found {len(image.boxes)} face lines")
            box = _face_line(*lines[index])
            if box is not None:
                image.boxes.append(box)
            index += 1
        images.append(image)
    return images


def _read_retinaface(lines: list[tuple[int, str]]) -> list[FileImage]:
    images: list[FileImage] = []
    for number, line in lines:
        if line.startswith("#"):
            parts = line[1:].split()
            if not parts:
                raise _Bad(number, "a '#' line without a picture's path")
            width = height = None
            if len(parts) == 3 and _all_numbers(" ".join(parts[1:])):
                width, height = (_size(v, number, what) for v, what in zip(parts[1:], ("the width", "the height")))
            elif len(parts) != 1:
                raise _Bad(number, f"expected '# path' or '# path width height', got {line[:80]!r}")
            images.append(FileImage(parts[0], number, width, height))
        else:
            box = _face_line(number, line)
            if box is not None:
                images[-1].boxes.append(box)
    return images


def _all_numbers(line: str) -> bool:
    try:
        [float(v) for v in line.split()]
    except ValueError:
        return False
    return bool(line.split())


# ------------------------------------------------------------------------------------ dlib imglab XML


def _read_dlib(path: Path, data: bytes) -> list[FileImage]:
    """dlib's imglab XML, read with expat (which knows each element's line; no external entities are fetched)."""
    from xml.parsers import expat

    parser = expat.ParserCreate()
    images: list[FileImage] = []
    stack: list[str] = []

    def start(tag: str, attrs: dict) -> None:
        number = parser.CurrentLineNumber
        if not stack and tag != "dataset":
            raise _Bad(number, f"the root element is <{tag}>, not dlib imglab's <dataset>")
        if tag == "image" and stack[-1:] == ["images"]:
            if "file" not in attrs:
                raise _Bad(number, "an <image> without its file attribute")
            images.append(FileImage(attrs["file"], number, _size(attrs.get("width"), number, "width"),
                                    _size(attrs.get("height"), number, "height")))
        elif tag == "box" and stack[-1:] == ["image"]:
            missing = [a for a in ("top", "left", "width", "height") if a not in attrs]
            if missing:
                raise _Bad(number, f"a <box> without {', '.join(missing)}")
            ignore = attrs.get("ignore", "0").strip() not in ("0", "", "false")
            images[-1].boxes.append(_box(attrs["left"], attrs["top"], attrs["width"], attrs["height"], number,
                                         ignore=ignore))
        stack.append(tag)

    parser.StartElementHandler = start
    parser.EndElementHandler = lambda tag: stack.pop()
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise LabelsError(f"{path} line {exc.lineno}: not well-formed XML ({expat.ErrorString(exc.code)}), "
                          "so not dlib's imglab format") from None
    except _Bad as bad:
        raise LabelsError(f"{path} line {bad.where}: {bad.message}") from None
    return images


# ------------------------------------------------------------------------------------ JSON: COCO and blazeconv's


def _json_document(path: Path, text: str, format: str):
    """The parsed JSON document, or for blazeconv's JSON lines a list of ``(line, record)``."""
    try:
        return json.loads(text)
    except ValueError as exc:
        if format == "blazeconv" and text.lstrip().startswith("{"):
            return _json_lines(path, text)
        raise LabelsError(f"{path} line {exc.lineno}: not JSON ({exc.msg}), so not {format}'s format"
                          if isinstance(exc, json.JSONDecodeError) else f"{path}: not JSON, so not {format}'s format"
                          ) from None


def _json_lines(path: Path, text: str) -> list[tuple[int, dict]]:
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise LabelsError(f"{path} line {number}: not a JSON object, so neither blazeconv's --json document nor "
                              "its --jsonl records") from None
        if not isinstance(record, dict):
            raise LabelsError(f"{path} line {number}: not a JSON object, so not a blazeconv --jsonl record")
        records.append((number, record))
    return records


def _read_coco(path: Path, document) -> tuple[list[FileImage], bool]:
    if isinstance(document, list):
        return _read_coco_results(document), True
    if not isinstance(document, dict) or not isinstance(document.get("images"), list) or not isinstance(
            document.get("annotations"), list):
        raise _Bad((), "not a COCO dataset (an object with 'images' and 'annotations' lists) nor a COCO results list")
    faces = _face_categories(document)
    images, by_id = [], {}
    for index, entry in enumerate(document["images"]):
        where = ("images", index)
        if not isinstance(entry, dict) or not isinstance(entry.get("file_name"), str) or "id" not in entry:
            raise _Bad(where, "a COCO image needs 'id' and 'file_name'")
        if entry["id"] in by_id:
            raise _Bad(where, f"image id {entry['id']!r} is given twice")
        image = FileImage(entry["file_name"], where, _size(entry.get("width"), where, "width"),
                          _size(entry.get("height"), where, "height"), image_id=entry["id"])
        images.append(image)
        by_id[entry["id"]] = image
    for index, annotation in enumerate(document["annotations"]):
        where = ("annotations", index)
        if not isinstance(annotation, dict):
            raise _Bad(where, "an annotation is not an object")
        if faces is not None and annotation.get("category_id") not in faces:
            continue
        image = by_id.get(annotation.get("image_id"))
        if image is None:
            raise _Bad(where, f"image_id {annotation.get('image_id')!r} is none of the file's images")
        image.boxes.append(_coco_box(annotation, where))
    return images, False


def _face_categories(document: dict) -> set | None:
    """The category ids that are faces: None (every annotation) with at most one category, else those named face."""
    categories = document.get("categories") or []
    if len(categories) <= 1:
        return None
    faces = {c.get("id") for c in categories if isinstance(c, dict) and str(c.get("name", "")).lower() == "face"}
    if not faces:
        names = ", ".join(str(c.get("name")) for c in categories if isinstance(c, dict))
        raise _Bad(("categories",), f"several categories ({names}) and none named 'face'")
    return faces


def _coco_box(annotation: dict, where: Where) -> FileBox:
    bbox = annotation.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise _Bad(where, f"'bbox' is {bbox!r}, not [x, y, width, height]")
    ignore = bool(annotation.get("iscrowd")) or bool(annotation.get("ignore"))
    return _box(*bbox, where, score=annotation.get("score"), ignore=ignore)


def _read_coco_results(document: list) -> list[FileImage]:
    images: dict = {}
    for index, result in enumerate(document):
        where = (index,)
        if not isinstance(result, dict) or "image_id" not in result:
            raise _Bad(where, "not a COCO result (an object with 'image_id', 'bbox' and 'score')")
        image = images.setdefault(result["image_id"], FileImage(None, where, image_id=result["image_id"]))
        image.boxes.append(_coco_box(result, where))
    return list(images.values())


def _read_blazeconv(path: Path, document) -> tuple[list[FileImage], bool]:
    if isinstance(document, list):  # JSON lines
        records = [(number, record) for number, record in document if "blazeconv_settings" not in record]
    elif isinstance(document, dict) and isinstance(document.get("images"), list):
        records = [(("images", index), record) for index, record in enumerate(document["images"])]
    elif isinstance(document, dict) and "path" in document:  # one --jsonl record alone
        records = [(1, document)]
    else:
        raise _Bad((), "neither COCO (images, annotations) nor blazeconv's detect --json (images with detections)")
    images = []
    for where, record in records:
        if not isinstance(record, dict) or not isinstance(record.get("path"), str):
            raise _Bad(where, "not a blazeconv record (an object with 'path')")
        if "frame" in record:
            continue  # a video frame: eval scores photos
        if "error" in record:
            images.append(FileImage(record["path"], where, error=str(record["error"])))
            continue
        detections = record.get("detections")
        if not isinstance(detections, list):
            raise _Bad(where, f"{record['path']}: no 'detections' list")
        image = FileImage(record["path"], where, _size(record.get("width"), where, "width"),
                          _size(record.get("height"), where, "height"), relative=True)
        for index, detection in enumerate(detections):
            box = detection.get("box") if isinstance(detection, dict) else None
            inner = where + ("detections", index) if isinstance(where, tuple) else where
            if not isinstance(box, list) or len(box) != 4:
                raise _Bad(inner, f"{record['path']}: a detection's 'box' is {box!r}, not [xmin, ymin, xmax, ymax]")
            xmin, ymin, xmax, ymax = (_number(v, inner, "a box value") for v in box)
            image.boxes.append(_box(xmin, ymin, xmax - xmin, ymax - ymin, inner, score=detection.get("score")))
        images.append(image)
    if not images and records:
        raise _Bad(records[0][0], "no photo records (video frames are not scored)")
    return images, False


def _json_line(text: str, where: tuple) -> int:
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


__all__ = ["FORMATS", "BoxFile", "FileBox", "FileImage", "detect_format", "read_boxes"]
