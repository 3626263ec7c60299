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
  ``score``, ``box`` ``[xmin, ymin, xmax, ymax]`` in 0..1 of the picture, optional ``keypoints`` (``[x, y]`` or
  null each) and ``"ignore": true`` for an ignore region) or ``--jsonl``'s records (the settings record and video
  frames are left out). Any detector's output written this way can serve as labels.

Nothing here opens the pictures: ``evaluation.pictures`` finds them, checks the boxes against their size and turns
``relative`` boxes into pixels. Every error is a ``LabelsError`` (exit 2) naming the file and the line.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import LabelsError
from .boxes import BadEntry, BoxFile, FileBox, FileImage
from .json_formats import json_document, read_blazeconv, read_coco
from .text_formats import read_dlib, read_wider

FORMATS = ("wider", "coco", "dlib", "blazeconv")
"""The formats ``read_boxes`` reads; ``"auto"`` finds which from the content."""


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
        return BoxFile(path, "dlib", read_dlib(path, data))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if format == "auto" and data.lstrip().startswith(b"<"):
            return BoxFile(path, "dlib", read_dlib(path, data))
        line = data[: exc.start].count(b"\n") + 1
        raise LabelsError(f"{path} line {line}: not UTF-8 text, so not {format if format != 'auto' else 'labels'}"
                          ) from None
    found = detect_format(text) if format == "auto" else format
    if found == "dlib":
        return BoxFile(path, "dlib", read_dlib(path, data))
    if found == "wider":
        return BoxFile(path, "wider", read_wider(path, text), text=text)
    document = json_document(path, text, found)
    reader = read_coco if found == "coco" else read_blazeconv
    try:
        images, by_id = reader(path, document)
    except BadEntry as bad:
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



__all__ = ["FORMATS", "BoxFile", "FileBox", "FileImage", "detect_format", "read_boxes"]
