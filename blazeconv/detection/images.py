"""Images as the pipeline takes them: any file, bytes, Pillow image, array or tensor as ``(H, W, 3)`` uint8 RGB."""

from __future__ import annotations

import contextlib
import io
import math
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageMode, ImageOps, UnidentifiedImageError

from ..errors import ImageError, OptionsError
from ..io import looks_like_url, url_refused
from ..tuning import release_after_decoding
from .files import is_video

ImageSource = str | Path | bytes | bytearray | memoryview | io.IOBase
"""What ``load_image`` reads: a path, the encoded bytes of an image file, or a binary file object."""


# Decoded pixels above this many bytes are refused before decoding (besides Pillow's Image.MAX_IMAGE_PIXELS guard):
# an 85-MP 8-bit RGB photo or a 64-MP RGBA one. With fast decoding a JPEG counts at the size
# it is decoded to.
MAX_DECODED_BYTES = 256 * 1024 * 1024


def load_image(source: ImageSource) -> np.ndarray:
    """Decode an image file into ``(H, W, 3)`` uint8 RGB, upright per its EXIF orientation.

    ``source``: a path (str or ``Path``), the file's bytes (``bytes``, ``bytearray``, ``memoryview``), or a binary
    file object (anything with ``read``; read from its current position). Errors name the path, ``<bytes>``, or the
    file object's ``name``. A path that is a URL is refused: URLs are not read.

    Alpha is dropped, not composited (MediaPipe's reference was made with Pillow's ``convert("RGB")``);
    16-bit grey keeps its top 8 bits. Pillow's ``Image.MAX_IMAGE_PIXELS`` guard stays on and is strict: an
    image over the limit is refused before its pixels are decoded (Pillow itself only warns up to twice the
    limit); so is one whose decoded pixels would take more than ``MAX_DECODED_BYTES``. Pillow's other warnings (a
    corrupt EXIF block it skips, say) are not shown. Any failure, whatever Pillow's decoder raised on a corrupt
    file, is an ``ImageError`` naming the file.
    """
    array = load_reduced(source)[0]
    return array if array.flags.writeable else array.copy()


class DecodeBudget:
    """Bytes of pixels that threads may be decoding at once: ``hold(n)`` waits until ``n`` more fit under ``limit``
    (an image larger than the whole limit decodes alone). Bounds a stream's memory whatever the photos' size."""

    def __init__(self, limit: int):
        self.limit, self.used = limit, 0
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def hold(self, size: int) -> Iterator[None]:
        size = min(size, self.limit)
        with self._changed:
            while self.used + size > self.limit:
                self._changed.wait()
            self.used += size
        try:
            yield
        finally:
            with self._changed:
                self.used -= size
                self._changed.notify_all()


def load_reduced(source: ImageSource, long_side: Callable[[int, int], int] | None = None,
                 budget: DecodeBudget | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """``load_image``, decoding a JPEG at a reduced size when ``long_side`` says it may be smaller.

    ``long_side(width, height)`` (the file's stored size) is the longer side the decoded image must keep at least;
    a JPEG is then decoded with DCT-domain scaling (Pillow's ``draft``: 1/2, 1/4 or 1/8) to the smallest such size.
    Other formats, and None, decode in full. ``budget``: decode only while twice the decoded pixels' bytes (the
    decoder's image and the array made of it) fit in it. Returns the upright ``(h, w, 3)`` uint8 RGB array (read-only
    where that spares a copy) and the full upright size ``(width, height)`` of the image (what its detections'
    coordinates are relative to).
    """
    name, opened = _opened(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(opened) as image:
                full = image.size
                if long_side is not None and image.format == "JPEG":
                    wanted = long_side(*full)
                    if wanted < max(full):
                        scale = wanted / max(full)
                        image.draft(image.mode if image.mode in ("L", "CMYK") else "RGB",
                                    (math.ceil(full[0] * scale), math.ceil(full[1] * scale)))
                decoded = _check_decoded_size(image, name)
                rotated = image.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8)
                with budget.hold(2 * decoded) if budget is not None else contextlib.nullcontext():
                    array = _upright_rgb(image, copy=False)
                    image.close()  # the decoder's pixels go now, not when the loader's frame is collected
                    release_after_decoding(decoded)  # a big photo's freed blocks go back to the system
    except FileNotFoundError:
        if isinstance(name, Path) and name.is_symlink():
            raise ImageError(f"{name}: a broken symbolic link (to {os.readlink(name)})") from None
        raise ImageError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{name}: is a directory, not an image") from None
    except PermissionError:
        raise ImageError(f"{name}: permission denied") from None
    except UnidentifiedImageError:
        if isinstance(name, Path) and is_video(name):
            raise ImageError(f"{name}: a video, not an image (FaceDetector.video reads videos; detect reads both)"
                             ) from None
        raise ImageError(f"{name}: not an image Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(
            f"{name}: image too large (more than Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS} pixels)"
        ) from None
    except (MemoryError, ImageError):
        raise
    except Exception as exc:  # OSError, SyntaxError, ValueError, EOFError, struct.error, ...: a corrupt file
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ImageError(f"{name}: cannot decode image: {reason}") from None
    if array.size == 0:
        raise ImageError(f"{name}: empty image ({array.shape[1]}x{array.shape[0]} pixels)")
    return array, (full[1], full[0]) if rotated else full


_ORIENTATION = 0x0112  # the EXIF tag
_STRIP_BYTES = 8 * 1024 * 1024  # bigger RGB images are copied out of Pillow in strips of about this size


def _opened(source: ImageSource) -> tuple[str | Path, Any]:
    """The name errors use and what ``Image.open`` reads, for any ``ImageSource``."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>", io.BytesIO(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if looks_like_url(source) and not path.exists():
            raise ImageError(url_refused(source))
        return path, path
    if callable(getattr(source, "read", None)):
        return str(getattr(source, "name", None) or f"<{type(source).__name__}>"), source
    raise ImageError(f"expected a path, bytes or a binary file object, got {_describe(source)}")


def _check_decoded_size(image: Image.Image, name) -> int:
    """The bytes ``image``'s pixels will take decoded (at the size it will decode to); ``ImageError`` before
    decoding when they exceed ``MAX_DECODED_BYTES``."""
    mode = ImageMode.getmode(image.mode)
    per_pixel = max(1, len(mode.bands) * np.dtype(mode.typestr).itemsize) if image.mode != "1" else 1
    width, height = image.size
    if width * height * per_pixel > MAX_DECODED_BYTES:
        raise ImageError(f"{name}: image too large to decode ({width}x{height} {image.mode}, more than "
                         f"{MAX_DECODED_BYTES >> 20} MiB of pixels)")
    return width * height * per_pixel


_EXPECTED_IMAGE = (
    "a path, bytes, a binary file, a PIL image, a uint8 numpy array (H, W), (H, W, 3) or (H, W, 4), "
    "or a uint8 torch tensor (H, W, 3) or (3, H, W)"
)


def check_channels(channels: str) -> str:
    """``channels`` when it is ``"rgb"`` or ``"bgr"`` (the order of arrays and tensors), else ``OptionsError``."""
    if channels not in ("rgb", "bgr"):
        raise OptionsError(f"channels must be 'rgb' or 'bgr', got {channels!r}")
    return channels


def as_rgb(image: Any, channels: str = "rgb") -> np.ndarray:
    """Any image a user holds as ``(H, W, 3)`` uint8 RGB: the one form the pipeline works on.

    - a path, bytes or binary file object: ``load_image`` (EXIF orientation applied);
    - a ``PIL.Image`` of any mode: EXIF orientation applied and converted exactly as ``load_image`` does for files;
    - a uint8 numpy array ``(H, W)`` grey (repeated), ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` (alpha dropped);
    - a uint8 torch tensor ``(H, W, 3)`` or ``(3, H, W)`` (or the array shapes above), on any device.

    ``channels``: ``"rgb"``, or ``"bgr"`` for arrays and tensors in OpenCV's order (BGR, BGRA); files and Pillow
    images carry their own order and ignore it. Anything else is an ``ImageError`` saying what was expected.
    """
    check_channels(channels)
    if isinstance(image, (str, Path, bytes, bytearray, memoryview)) or callable(getattr(image, "read", None)):
        return load_image(image)
    if isinstance(image, Image.Image):
        array = _upright_rgb(image)
        if array.size == 0:
            raise ImageError(f"empty image ({array.shape[1]}x{array.shape[0]} pixels)")
        return array
    torch = sys.modules.get("torch")  # a tensor can only exist once torch is imported
    if torch is not None and isinstance(image, torch.Tensor):
        if image.dtype != torch.uint8:
            raise ImageError(f"expected {_EXPECTED_IMAGE}; got a {image.dtype} tensor of shape {tuple(image.shape)}")
        array = image.detach().to("cpu").numpy()
        if array.ndim == 3 and array.shape[2] not in (1, 3, 4) and array.shape[0] in (1, 3, 4):
            array = array.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
        return _array_to_rgb(array, channels)
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image, channels)
    raise ImageError(f"expected {_EXPECTED_IMAGE}; got {_describe(image)}")


def _array_to_rgb(array: np.ndarray, channels: str) -> np.ndarray:
    """``(H, W)``, ``(H, W, 1|3|4)`` uint8 in ``channels`` order -> ``(H, W, 3)`` uint8 RGB (a view when it can be)."""
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise ImageError(f"expected {_EXPECTED_IMAGE}; got {_describe(array)}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ImageError(f"empty image of shape {array.shape}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[2] == 1:
        return np.repeat(array, 3, axis=2)
    rgb = array[:, :, :3]  # alpha dropped, as load_image drops it
    return rgb[:, :, ::-1] if channels == "bgr" else rgb


def _describe(value: Any) -> str:
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        return f"a {type(value).__name__} of shape {tuple(shape)} and dtype {dtype}"
    return f"a {type(value).__module__}.{type(value).__qualname__}".replace("builtins.", "")


def _upright_rgb(image: Image.Image, copy: bool = True) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB of a Pillow image turned upright per its EXIF orientation (what ``load_image`` does);
    without ``copy`` an RGB image's array is a read-only view of one copy of its pixels."""
    return _to_rgb_array(ImageOps.exif_transpose(image), copy)


def _to_rgb_array(image: Image.Image, copy: bool = True) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB from any Pillow mode."""
    if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        # Pillow's own convert clips 16-bit samples at 255; keep the top 8 bits instead.
        grey = np.asarray(image).astype(np.int64)
        grey = (np.clip(grey, 0, 65535) >> 8).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode == "La":  # premultiplied grey + alpha has no direct route to RGB
        image = image.convert("LA")
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    width, height = rgb.size
    rows = max(1, _STRIP_BYTES // (3 * width))
    if height <= rows:
        array = np.frombuffer(rgb.tobytes(), np.uint8).reshape(height, width, 3)
        return array.copy() if copy else array
    # Strip by strip: Pillow's tobytes holds its pieces and their join at once, three times the pixels in all.
    array = np.empty((height, width, 3), np.uint8)
    for top in range(0, height, rows):
        strip = rgb.crop((0, top, width, min(height, top + rows)))
        array[top : top + strip.height] = np.frombuffer(strip.tobytes(), np.uint8).reshape(strip.height, width, 3)
    return array


def _check_rgb(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ImageError(f"expected an (H, W, 3) uint8 RGB array, got shape {shape} dtype {dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ImageError(f"empty image of shape {image.shape}")
