"""The mark that says a file is blazeconv's: its text, where each format holds it, and how it is read back.

Files blazeconv writes beside the user's (annotations, crops, blurred outputs) carry a mark, so that a later run
replaces what blazeconv wrote and never a user's file of the same name (the no-clobber rule of ``detect --annotate``,
``detect --crops`` and ``blur``). The text:

* ``blazeconv annotation of <source>`` and ``blazeconv crop of <source>`` (``source_mark``), ``<source>`` being the
  real path of the input (``os.path.realpath``): a rerun replaces only its annotations and crops of the same input.
  They are the user's working files, kept beside the inputs, and may name them.
* ``blazeconv blurred output`` (``BLURRED``), the same for every blurred photo and video: an anonymised file must
  reveal nothing about its source, so its mark holds no path, no file name and nothing derived from them (not even
  a hash). A blurred output is replaced by any later blurred output.

Where it goes (``photo_save_options``, ``mark_container``):

* JPEG: a COM segment (Pillow's ``comment``), UTF-8;
* PNG: a ``tEXt`` chunk with the keyword ``Comment``;
* a video (MP4/MOV, Matroska): the container's ``comment`` tag (MP4's ``©cmt``);
* other photo formats (WebP, TIFF, BMP) hold none: such a file is never taken for blazeconv's.

``read_mark`` reads it back from any of them (None when the file has none or is not an image or video), and
``has_mark`` compares it whole. Pillow and PyAV are imported only when a mark is written or read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

ANNOTATION = "annotation"
CROP = "crop"
BLURRED = "blazeconv blurred output"
_PNG_KEYWORD = "Comment"  # PNG's registered keyword for a comment (PNG specification, 11.3.4.2)
_VIDEO_TAG = "comment"


def source_mark(kind: str, source: str | Path) -> str:
    """The mark of blazeconv's ``kind`` (``ANNOTATION``, ``CROP``) of the input ``source``:
    ``blazeconv <kind> of <real path of source>``."""
    return f"blazeconv {kind} of {os.path.realpath(source)}"


def photo_save_options(image_format: str, mark: str) -> dict[str, Any]:
    """Keywords for Pillow's ``Image.save`` that write ``mark`` into a photo of ``image_format`` (Pillow's format
    name: ``JPEG``, ``PNG``, ...); empty for a format that holds no mark."""
    if image_format == "JPEG":
        return {"comment": mark.encode()}
    if image_format == "PNG":
        from PIL import PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_text(_PNG_KEYWORD, mark)
        return {"pnginfo": info}
    return {}


def mark_container(container, mark: str) -> None:
    """Write ``mark`` into a PyAV output ``container`` (before its header is written: before the first ``mux``)."""
    container.metadata[_VIDEO_TAG] = mark


def read_mark(path: str | Path) -> str | None:
    """The mark of the file at ``path``: a photo's comment (JPEG COM, PNG ``Comment``), else a video's ``comment``
    tag; None when it has none or cannot be read as either."""
    try:
        from PIL import Image

        with Image.open(path) as image:
            mark = image.info.get("comment", image.info.get(_PNG_KEYWORD))
    except Exception:  # not a photo Pillow reads (or no such file): perhaps a video
        return _video_mark(path)
    if isinstance(mark, bytes):
        mark = mark.decode("utf-8", "replace")
    return mark if isinstance(mark, str) else None


def _video_mark(path: str | Path) -> str | None:
    try:
        import av

        with av.open(str(path), metadata_errors="ignore") as container:
            tags = {key.lower(): value for key, value in container.metadata.items()}
    except Exception:  # not a media file at all, or no PyAV: no mark
        return None
    return tags.get(_VIDEO_TAG)


def has_mark(path: str | Path, mark: str) -> bool:
    """True when the file at ``path`` carries exactly ``mark``."""
    return read_mark(path) == mark


__all__ = ["ANNOTATION", "BLURRED", "CROP", "has_mark", "mark_container", "photo_save_options", "read_mark",
           "source_mark"]
