"""Which files a run reads: the paths given, and the image files of the folders given."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

# What a folder's image and video files are, by suffix (a file given by name is read whatever its suffix; whether a
# file is a video is decided by its content: ``video.is_video``).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi")


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


__all__ = ["IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "find_images", "nothing_found_hint"]
