"""The mark of blazeconv's outputs (``blazeconv.marks``): written where each format holds it, read back whole.

The files the commands write carry it (annotations, crops: ``test_outputs.py``, ``test_video_outputs.py``; blurred
outputs, which name nothing of their source: ``test_blur.py``); here the module alone, on small synthetic files.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from blazeconv.marks import ANNOTATION, BLURRED, CROP, has_mark, mark_container, photo_save_options, read_mark, source_mark

PICTURE = np.full((8, 8, 3), 120, np.uint8)


def test_a_source_mark_holds_the_real_path_of_its_source(tmp_path):
    (tmp_path / "real.jpg").write_bytes(b"")
    (tmp_path / "link.jpg").symlink_to(tmp_path / "real.jpg")
    expected = f"blazeconv annotation of {os.path.realpath(tmp_path / 'real.jpg')}"
    assert source_mark(ANNOTATION, tmp_path / "link.jpg") == source_mark(ANNOTATION, tmp_path / "real.jpg") == expected
    assert source_mark(CROP, "x.png").startswith("blazeconv crop of /")
    assert BLURRED == "blazeconv blurred output"


@pytest.mark.parametrize(("suffix", "kind"), [(".jpg", "JPEG"), (".png", "PNG")])
def test_a_photo_mark_is_read_back_whole(suffix, kind, tmp_path):
    path = tmp_path / f"marked{suffix}"
    mark = source_mark(ANNOTATION, "/photos/é one.jpg")  # not ASCII, with a space
    Image.fromarray(PICTURE).save(path, format=kind, **photo_save_options(kind, mark))
    assert read_mark(path) == mark and has_mark(path, mark)
    assert not has_mark(path, mark[:-1]) and not has_mark(path, mark + "x")  # compared whole, not as a prefix
    plain = tmp_path / f"plain{suffix}"
    Image.fromarray(PICTURE).save(plain, format=kind)
    assert read_mark(plain) is None


@pytest.mark.parametrize("kind", ["WEBP", "TIFF", "BMP"])
def test_formats_without_a_mark_are_never_taken_for_blazeconvs(kind, tmp_path):
    assert photo_save_options(kind, BLURRED) == {}
    path = tmp_path / f"photo.{kind.lower()}"
    Image.fromarray(PICTURE).save(path, format=kind)
    assert read_mark(path) is None


def test_a_video_mark_is_the_containers_comment_tag(tmp_path):
    av = pytest.importorskip("av")
    path = tmp_path / "marked.mp4"
    with av.open(str(path), "w") as out:
        mark_container(out, BLURRED)
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        for _ in range(2):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")))
        out.mux(stream.encode(None))
    assert read_mark(path) == BLURRED and has_mark(path, BLURRED)


@pytest.mark.parametrize("content", [b"", b"mine", b"\xff\xd8\xff\xe0 not really a JPEG"])
def test_anything_else_has_no_mark(content, tmp_path):
    path = tmp_path / "file.jpg"
    path.write_bytes(content)
    assert read_mark(path) is None and not has_mark(path, BLURRED)
    assert read_mark(tmp_path / "missing.png") is None
