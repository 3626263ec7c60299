"""A whole ``blur`` run over files, for the command and for Python alike: each input's output path chosen and checked
before any work, photos and videos blurred in turn (``anonymise``), the masked regions written as JSON Lines, the
frames written counted as they come, and the failures reported at the end.

    from blazeconv.blurring import BlurRun

    run = BlurRun(["clips/"], "anonymised/", audio=False)
    for done in run:                     # an ``InputBlurred`` per input, in order, once its output is written
        print(done.path, "->", done.target)
    print(run.summary())                 # "2 of 2 input(s) written; model full_range_sparse, min score 0.4, hold 5"

The library logs; what is printed is the caller's.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .anonymise import DEFAULT_HOLD, PHOTO_FORMATS, Blurred, blur_photo, blur_video, detector_for, is_blurred_output
from .detection.masking import DEFAULT_MASKING, Masking
from .detection.settings import DetectionSettings
from .detection.video_annotation import DEFAULT_CRF, FORMATS
from .errors import ImageError, OptionsError
from .io import PathUsageError


@dataclass(frozen=True)
class InputBlurred:
    """One input done: its ``path``, the ``target`` written (or not, with ``error``), whether it is a ``video``, and
    what ``blur_photo`` / ``blur_video`` did (``done``; None when the input could not be read), and the picture's
    upright ``(width, height)`` (``size``; None when nothing was written)."""

    path: Path
    target: Path
    video: bool
    done: Blurred | None
    error: str | None = None
    size: tuple[int, int] | None = None


class BlurRun:
    """A blur run: ``inputs`` (files and folders; ``recursive`` reads subfolders) written to ``output`` (one input
    file: the file to write; otherwise a folder, the inputs' paths mirrored below it, videos as ``.mp4``). Detection
    with ``settings`` (blur's own by default, ``anonymise.BLUR_SETTINGS``; ``options``: its fields as keywords),
    ``masking``, ``hold`` frames of videos, H.264 at ``crf``, audio copied unless ``audio`` is False, photos'
    metadata kept (the allow-list) with ``keep_metadata``, the masked regions as JSON Lines in ``boxes_jsonl``.
    ``track``: videos' masks follow the faces' tracks; ``detect_every`` N > 1 (implies ``track``): the model runs on
    every N-th frame of a video only, the frames between masked along the tracks; the settings' ``fine_every``
    (blur's default ``"auto"``): the tile levels on every K-th frame only (``anonymise.blur_video``; docs/tracks.md
    says what each guarantees and what not).

    Everything that can be refused is refused when it is made (exit 2, ``PathUsageError``): no input found, an
    output that would replace an input or the model file, an existing file that is not a blazeconv blurred output
    (unless ``overwrite``), ``hold``, ``track`` or ``detect_every`` without a video. Iterating runs it, yielding an
    ``InputBlurred`` per input;
    ``on_frames(written, announced)`` is called as frames are written (a photo is one frame; a video announces what
    its header says when it is opened, and the difference when it ends), for a progress display.
    """

    def __init__(self, inputs: Sequence[str | Path], output: str | Path, *, settings: DetectionSettings | None = None,
                 masking: Masking = DEFAULT_MASKING, hold: int | None = None, crf: float = DEFAULT_CRF,
                 audio: bool = True, keep_metadata: bool = False, boxes_jsonl: str | Path | None = None,
                 overwrite: bool = False, recursive: bool = False, track: bool = False, detect_every: int = 1,
                 **options: Any):
        from .detection.files import find_images, nothing_found_hint
        from .detection.video import is_video, require_video

        self.paths = find_images([Path(i) for i in inputs], recursive=recursive)
        if not self.paths:
            raise PathUsageError("no image or video files found in " + ", ".join(str(i) for i in inputs) +
                                 nothing_found_hint(inputs))
        self.videos = {i for i, path in enumerate(self.paths) if is_video(path)}
        if self.videos:
            require_video()
        if not self.videos and hold is not None:
            raise PathUsageError("--hold applies to videos: none of the inputs is a video")
        if not isinstance(detect_every, int) or isinstance(detect_every, bool) or detect_every < 1:
            raise OptionsError(f"detect_every must be a whole number >= 1, got {detect_every!r}")
        if not self.videos and (track or detect_every > 1):
            raise PathUsageError(f"--{'track' if track else 'detect-every'} applies to videos: none of the inputs is "
                                 "a video")
        if not self.videos and isinstance(options.get("fine_every"), int) and options["fine_every"] > 1:
            raise PathUsageError("--fine-every applies to videos: none of the inputs is a video")
        if track or detect_every > 1:
            from .detection.tracking import require_tracking

            require_tracking()
        self.track, self.detect_every = track or detect_every > 1, detect_every
        self.boxes_jsonl = None if boxes_jsonl is None else Path(boxes_jsonl)
        model = options.get("model") if options.get("model") is not None else (settings.model if settings else None)
        self.targets = _targets(self.paths, self.videos, inputs, Path(output), self.boxes_jsonl, overwrite, model)
        self.masking = masking.check()
        self.detector = detector_for(settings, **options)
        self.hold = DEFAULT_HOLD if hold is None else hold
        self.crf, self.audio, self.keep_metadata = crf, audio, keep_metadata
        self.written: list[InputBlurred] = []
        self.failures: list[str] = []
        self.stopped = 0

    def run(self, on_frames: Callable[[int, int], None] | None = None) -> Iterator[InputBlurred]:
        """Blur every input in turn (see the class docstring); ``on_frames(written, announced)`` for progress."""
        report = on_frames or (lambda written, announced: None)
        with _boxes_file(self.boxes_jsonl) as boxes:
            for index, (path, target) in enumerate(zip(self.paths, self.targets)):
                yield self._one(index, path, target, boxes, report)

    __iter__ = run

    def _one(self, index: int, path: Path, target: Path, boxes, report) -> InputBlurred:
        from .detection.video import open_video

        target.parent.mkdir(parents=True, exist_ok=True)  # inside the output folder only (checked before any work)
        counted, announced, size = [0], [1], []

        def on_regions(record):  # per photo or frame (the writer's thread)
            size[:] = [record["width"], record["height"]]
            if boxes is not None:
                boxes.write(json.dumps(record) + "\n")
            counted[0] += 1
            grown = 1 if counted[0] > announced[0] else 0  # more frames than the header announced
            announced[0] += grown
            report(1, grown)

        video = index in self.videos
        try:
            if video:
                with open_video(path) as opened:  # opened once: its header's frame count, then the pass
                    announced[0] = _frames_announced(opened.info)
                    report(0, announced[0])
                    done = blur_video(opened, target, detector=self.detector, masking=self.masking, hold=self.hold,
                                      crf=self.crf, on_regions=on_regions, audio=self.audio, track=self.track,
                                      detect_every=self.detect_every)
            else:
                report(0, 1)
                done = blur_photo(path, target, detector=self.detector, masking=self.masking,
                                  keep_metadata=self.keep_metadata, on_regions=on_regions)
        except ImageError as exc:
            self.failures.append(str(exc))
            return InputBlurred(path, target, video, None, str(exc))
        finally:
            report(0, counted[0] - announced[0])  # announced frames that were not written leave the total
        if done.error is not None:
            self.failures.append(str(done.error))
            self.stopped += 1
        result = InputBlurred(path, target, video, done, None if done.error is None else str(done.error),
                              tuple(size) or None)
        self.written.append(result)
        return result

    def no_face_hint(self, done: InputBlurred) -> str | None:
        """``hint: PATH: no face found; ...`` for an input written with no face hidden while the run cannot see the
        small faces a default run looks for (``DetectionSettings.small_faces_hint``), else None."""
        if done.done is None or done.done.regions or done.size is None:
            return None
        hint = self.detector.settings.small_faces_hint(self.detector.variant, *done.size)
        return None if hint is None else f"hint: {done.path}: no face found; {hint}"

    def summary(self) -> str:
        """One line: the inputs written, stopped early and failed; the model, its threshold and the hold."""
        failed = len(self.failures) - self.stopped
        return (f"{len(self.written)} of {len(self.paths)} input(s) written"
                + (f", {self.stopped} of them stopped early" if self.stopped else "")
                + (f", {failed} failed" if failed else "")
                + f"; model {self.detector.variant.name}, min score {self.detector.min_score:g}"
                + (f", hold {self.hold}" if self.videos else "")
                + (", masks along tracks" if self.videos and self.track else "")
                + (f", detected every {self.detect_every} frames" if self.videos and self.detect_every > 1 else ""))

    def failure(self) -> ImageError | None:
        """The ``ImageError`` (exit 6) that ends a run with failures, worded as ``summary``; None without failures."""
        return ImageError(self.summary()) if self.failures else None


def _frames_announced(info) -> int:
    """The frames a video's header announces (``VideoInfo``: its count, else duration x rate), at least 1."""
    if info.frame_count:
        return info.frame_count
    return max(1, round((info.duration or 0) * (info.fps or 0)))


@contextlib.contextmanager
def _boxes_file(path: Path | None):
    """The JSON Lines file of masked regions, written atomically (nothing of it after a failure), or None."""
    if path is None:
        yield None
        return
    from .io import atomic_path

    with atomic_path(path) as temporary, open(temporary, "w", encoding="utf-8") as stream:
        yield stream


def _targets(paths, videos, inputs, output: Path, boxes_jsonl, overwrite: bool, model=None) -> list[Path]:
    """Each input's output path, checked before any work: one input file -> ``output`` itself; otherwise ``output``
    is a folder and each path is mirrored below it. No output may be an input, and an existing file (``-o FILE`` or
    of a mirrored name) is replaced only when it is a blazeconv blurred output, or with ``overwrite`` (exit 2)."""
    from .io import check_folder, mirrored_paths, refuse_overwriting
    from .sources import resolve

    single = len(paths) == 1 and len(inputs) == 1 and not Path(inputs[0]).is_dir()
    if single:
        if output.is_dir():
            raise PathUsageError(f"-o {output}: is a folder; for one input file give the file to write")
        formats = FORMATS if videos else PHOTO_FORMATS
        if output.suffix.lower() not in formats:
            kind = "a video" if videos else "a photo"
            raise PathUsageError(f"-o {output}: {kind} is written as {', '.join(formats)}, not "
                                 f"{output.suffix or 'a file without a suffix'}")
        check_folder(output)
        targets = [output]
    else:
        if output.exists() and not output.is_dir():
            raise PathUsageError(f"-o {output}: not a folder; several inputs are written into a folder")
        if not output.is_dir():
            check_folder(output)
        video_paths = {Path(os.path.abspath(paths[i])) for i in videos}  # mirrored_paths passes absolute paths
        targets = mirrored_paths(paths, output, lambda p: ".mp4" if p in video_paths else
                                 (p.suffix.lower() if p.suffix.lower() in PHOTO_FORMATS else ".png"))
    outputs = [("output", t) for t in targets] + ([("--boxes-jsonl", boxes_jsonl)] if boxes_jsonl else [])
    if boxes_jsonl is not None:
        check_folder(boxes_jsonl)
    source = resolve(model) if model is not None else None
    model_file = [("--model", source.path)] if source is not None and source.kind not in ("shipped", "module",
                                                                                         "runner") else []
    refuse_overwriting(outputs, [("input", p) for p in paths] + model_file)
    if not overwrite:
        elsewhere = "choose another file name" if single else "write into another folder"
        for target in targets:
            if target.exists() and not is_blurred_output(target):
                raise PathUsageError(f"{target}: exists and is not a blazeconv blurred output; add --overwrite to "
                                     f"replace it, or {elsewhere}")
    return targets


__all__ = ["BlurRun", "InputBlurred"]
