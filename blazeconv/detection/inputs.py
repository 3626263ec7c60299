"""A run over photos and videos together: each input streamed by its kind, the results in the order of the inputs."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

from ..errors import ImageError
from .pipeline import FileResult, Model, stream_files
from .settings import DetectionSettings
from .video import FrameResult, FrameWriter, OpenedVideo, open_video, stream_video


class VideoWriters(Protocol):
    """Writers of whole videos beside a run (``video_annotation.VideoAnnotations``): ``writer_for(index, video)``
    is asked for the writer of input ``index`` once its file is opened (None: nothing to write for it)."""

    def writer_for(self, index: int, video: OpenedVideo) -> FrameWriter | None: ...


def stream_inputs(
    model: Model,
    paths: Sequence[Path],
    videos: set[int],
    settings: DetectionSettings,
    *,
    keep_images: bool = False,
    keep_frames: bool = False,
    after: dict[int, int] | None = None,
    only: Sequence[int] | None = None,
    video_writers: VideoWriters | None = None,
) -> Iterator[tuple[int, FileResult | FrameResult]]:
    """``(index into paths, result)`` for every photo (one ``FileResult``) and every sampled frame of every video
    (``FrameResult``s, the last one ``last``), in the order of ``paths``; ``videos``: the indices that are videos.
    Consecutive photos share one ``stream_files`` (decoded on every core); each video is a ``stream_video``; both
    with ``settings``.

    A video that cannot be read, or stops early, ends with a ``FileResult`` holding its ``ImageError`` (after the
    frames that decoded). ``keep_images``: photos' results hold the decoded image, ``keep_frames``: frames' results
    theirs. ``only``: the indices to read (default: all); ``after``: per video index, the last frame a previous run
    recorded: those are skipped. ``video_writers``: each video's writer (an annotation) is fed by the pass that
    detects it, every frame decoded once for both; a video's error comes while its file is still open, so that the
    writer can be closed with the frames that decoded.
    """
    after = after or {}
    order = range(len(paths)) if only is None else only
    for is_video, group in itertools.groupby(order, key=lambda i: i in videos):
        indices = list(group)
        if not is_video:
            results = stream_files(model, [paths[i] for i in indices], settings, keep_images=keep_images)
            yield from zip(indices, results)
            continue
        for index in indices:
            with contextlib.ExitStack() as stack:
                try:
                    video, writer = paths[index], None
                    if video_writers is not None:
                        video = stack.enter_context(open_video(video, settings.sampling))
                        writer = video_writers.writer_for(index, video)
                    for frame in stream_video(model, video, settings, keep_images=keep_frames, after=after.get(index),
                                              writer=writer):
                        yield index, frame
                except ImageError as exc:
                    yield index, FileResult(paths[index], 0, 0, None, exc)


__all__ = ["VideoWriters", "stream_inputs"]
