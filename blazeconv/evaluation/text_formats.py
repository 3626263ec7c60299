"""The text formats: WIDER FACE's (and RetinaFace's variant of it) and dlib's imglab XML (``labels`` describes
both)."""

from __future__ import annotations

from pathlib import Path

from ..errors import LabelsError
from .boxes import BadEntry, FileBox, FileImage, file_box, finite, stated_size

# ------------------------------------------------------------------------------------ WIDER FACE (and RetinaFace)

# Numbers on a face line: x y w h; with a score (WIDER's result files); WIDER FACE's attributes (the 8th is
# "invalid"); RetinaFace's 5 landmarks (x y flag each) and a quality.
_WIDER_LINE = {4: "x y w h", 5: "x y w h score", 10: "WIDER FACE's x y w h and 6 attributes",
               20: "RetinaFace's x y w h, 5 landmarks and a quality"}
_INVALID = 7


def read_wider(path: Path, text: str) -> list[FileImage]:
    """WIDER FACE's text (``path``'s ``text``), or RetinaFace's variant when its first line starts with ``#``."""
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise LabelsError(f"{path}: empty, no labels")
    try:
        return _read_retinaface(lines) if lines[0][1].startswith("#") else _read_plain_wider(lines)
    except BadEntry as bad:
        raise LabelsError(f"{path} line {bad.where}: {bad.message}") from None


def _face_line(number: int, line: str) -> FileBox | None:
    """One face line; None for a zero-size face marked invalid (WIDER FACE's placeholders: nothing to match)."""
    parts = line.split()
    if len(parts) not in _WIDER_LINE:
        raise BadEntry(number, f"expected a face line ({'; '.join(f'{k} numbers: {v}' for k, v in _WIDER_LINE.items())}),"
                           f" got {len(parts)} value(s): {line[:80]!r}")
    values = [finite(p, number, "a value") for p in parts]
    invalid = len(values) == 10 and values[_INVALID] != 0
    if invalid and (values[2] == 0 or values[3] == 0):
        return None
    keypoints = _retinaface_keypoints(values[4:19]) if len(values) == 20 else None
    return file_box(*values[:4], number, score=values[4] if len(values) == 5 else None, ignore=invalid,
                    keypoints=keypoints)


def _retinaface_keypoints(values: list[float]) -> list | None:
    """RetinaFace's 5 landmarks (``x y flag`` each; -1 where not labelled) in the image's order (left eye, right eye,
    nose, left and right mouth corner; the image's left eye is the subject's right) as MediaPipe's 6 keypoints:
    right eye, left eye, nose tip, mouth centre (the corners' mean), and no ear tragions (None)."""
    points = [(values[3 * i], values[3 * i + 1]) if values[3 * i] >= 0 and values[3 * i + 1] >= 0 else None
              for i in range(5)]
    if not any(points):
        return None
    mouth = None
    if points[3] is not None and points[4] is not None:
        mouth = ((points[3][0] + points[4][0]) / 2, (points[3][1] + points[4][1]) / 2)
    return [points[0], points[1], points[2], mouth, None, None]


def _read_plain_wider(lines: list[tuple[int, str]]) -> list[FileImage]:
    images, index = [], 0
    while index < len(lines):
        number, name = lines[index]
        if _all_numbers(name):
            raise BadEntry(number, f"expected a picture's path, got a line of numbers: {name[:80]!r}")
        if index + 1 >= len(lines):
            raise BadEntry(number, f"{name}: the number of faces is missing after it")
        count_line, count = lines[index + 1]
        if not count.isdigit():
            raise BadEntry(count_line, f"expected the number of faces of {name}, got {count[:80]!r}")
        image, count = FileImage(name, number), int(count)
        index += 2
        if count == 0 and index < len(lines) and _all_numbers(lines[index][1]) and not any(
                float(v) for v in lines[index][1].split()):
            index += 1  # the line of zeros WIDER FACE writes for a picture with no face
        for _ in range(count):
            if index >= len(lines) or not _all_numbers(lines[index][1]):
                where = lines[index][0] if index < len(lines) else lines[-1][0]
                raise BadEntry(where, f"{name} (line {number}) has {count} faces, found {len(image.boxes)} face lines")
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
                raise BadEntry(number, "a '#' line without a picture's path")
            width = height = None
            if len(parts) == 3 and _all_numbers(" ".join(parts[1:])):
                width, height = (stated_size(v, number, what) for v, what in zip(parts[1:], ("the width", "the height")))
            elif len(parts) != 1:
                raise BadEntry(number, f"expected '# path' or '# path width height', got {line[:80]!r}")
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


def read_dlib(path: Path, data: bytes) -> list[FileImage]:
    """dlib's imglab XML (``path``'s bytes ``data``), read with expat, which knows each element's line (and fetches
    no external entity)."""
    from xml.parsers import expat

    parser = expat.ParserCreate()
    images: list[FileImage] = []
    stack: list[str] = []

    def start(tag: str, attrs: dict) -> None:
        number = parser.CurrentLineNumber
        if not stack and tag != "dataset":
            raise BadEntry(number, f"the root element is <{tag}>, not dlib imglab's <dataset>")
        if tag == "image" and stack[-1:] == ["images"]:
            if "file" not in attrs:
                raise BadEntry(number, "an <image> without its file attribute")
            images.append(FileImage(attrs["file"], number, stated_size(attrs.get("width"), number, "width"),
                                    stated_size(attrs.get("height"), number, "height")))
        elif tag == "box" and stack[-1:] == ["image"]:
            missing = [a for a in ("top", "left", "width", "height") if a not in attrs]
            if missing:
                raise BadEntry(number, f"a <box> without {', '.join(missing)}")
            ignore = attrs.get("ignore", "0").strip() not in ("0", "", "false")
            images[-1].boxes.append(file_box(attrs["left"], attrs["top"], attrs["width"], attrs["height"], number,
                                         ignore=ignore))
        stack.append(tag)

    parser.StartElementHandler = start
    parser.EndElementHandler = lambda tag: stack.pop()
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise LabelsError(f"{path} line {exc.lineno}: not well-formed XML ({expat.ErrorString(exc.code)}), "
                          "so not dlib's imglab format") from None
    except BadEntry as bad:
        raise LabelsError(f"{path} line {bad.where}: {bad.message}") from None
    return images



__all__ = ["read_dlib", "read_wider"]
