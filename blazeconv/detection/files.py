"""Which files a run reads: the paths given, and the image and video files of the folders given; which are videos."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..io import image_format

# What a folder's image and video files are, by suffix (a file given by name is read whatever its suffix; whether a
# file is a video is decided by its content: ``is_video``).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi")


# ISO base media brands of still images (HEIF, AVIF): an ``ftyp`` box with one of these is a photo, not a video.
_IMAGE_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"mif1", b"msf1", b"avif", b"avis"}


def is_video(path: str | Path) -> bool:
    """True when the file's first bytes are those of a video container (MP4/MOV/M4V, Matroska/WebM, AVI), or when it
    is named as a video (``VIDEO_SUFFIXES``) and its bytes are not those of an image (an empty or damaged video then
    reports what is wrong with it); False for photos whatever their name, HEIF/AVIF stills, GIF and WebP (read as
    images), and a file that cannot be opened."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(16)
    except OSError:
        return False
    if head[4:8] == b"ftyp":
        return head[8:12] not in _IMAGE_BRANDS
    if image_format(head) is not None:
        return False
    if Path(path).suffix.lower() in VIDEO_SUFFIXES:  # named as a video, not an image: reading it says what is wrong
        return True
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip"):  # QuickTime files without an ftyp box
        return True
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: Matroska, WebM
        return True
    return head[:4] == b"RIFF" and head[8:12] == b"AVI "



def find_images(inputs: Sequence[str | Path], *, recursive: bool = False) -> list[Path]:
    """The files to read: each input that is not a folder as given; a folder's image and video files (by suffix), sorted,
    with ``recursive`` those of its subfolders too. Hidden files and folders (a name starting with ``.``, such as
    macOS's ``._photo.jpg``) are skipped; a symbolic link that leads nowhere is kept, so that reading it reports it."""
    paths: list[Path] = []
    for item in map(Path, inputs):
        if not item.is_dir():
            paths.append(item)
            continue
        walk = os.walk(item) if recursive else [(str(item), [], os.listdir(item))]
        found = []
        for folder, subfolders, names in walk:
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            for name in names:
                path = Path(folder) / name
                if name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
                    continue
                if path.is_file() or (path.is_symlink() and not path.exists()):
                    found.append(path)
        paths += sorted(found)
    return paths


def nothing_found_hint(inputs: Sequence[str | Path]) -> str:
    """Why ``find_images`` found nothing, when a folder holds images in subfolders: a hint to ``--recursive``."""
    for item in map(Path, inputs):
        if item.is_dir() and find_images([item], recursive=True):
            return f" ({item} holds images or videos only in subfolders: add --recursive)"
    return ""


__all__ = ["IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "find_images", "is_video", "nothing_found_hint"]
