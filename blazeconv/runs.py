"""A whole ``detect`` run over files, for the command and for Python alike: outputs checked before any work, the
results file continued where an interrupted run stopped, annotations and crops written as results come, photos and
videos streamed in this process or on Ray, and the ``--json`` document with the failures at the end.

    from blazeconv.detection.settings import DetectionSettings
    from blazeconv.runs import DetectOutputs, DetectRun

    run = DetectRun(["photos/"], DetectionSettings(model="full_range_sparse"), DetectOutputs(jsonl="faces.jsonl"))
    for done in run:                       # an ``InputDone`` per input, in order, once its outputs are written
        print(done.path, len(done.records))
    report = run.report                    # the document, the failures, the counts

The run reads the inputs once; what it prints is the caller's (the library logs, the CLI prints).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .detection.settings import DetectionSettings, Sampling
from .errors import ImageError, notice
from .io import PathUsageError
from .run_outputs import DetectOutputs, check_crops, check_outputs, crop_writer

NOUN_IMAGES, NOUN_INPUTS = "images", "inputs"


@dataclass(frozen=True)
class RayOptions:
    """Where and how a run goes to Ray: ``address`` (``"local"``: a cluster for this run; ``"auto"``,
    ``HOST:PORT``, ``ray://HOST:PORT``), ``actors`` (None: as many as fit) of ``actor_cpus`` CPUs each."""

    address: str = "local"
    actors: int | None = None
    actor_cpus: float = 1.0


@dataclass(frozen=True)
class InputDone:
    """One input finished, its outputs written: ``path`` as found, ``video``, ``records`` (a photo's one record, a
    video's frame records), ``error`` (the message of an input that could not be read or stopped early)."""

    path: Path
    video: bool
    records: list[dict]
    error: str | None = None


@dataclass
class RunReport:
    """What a finished run found: the ``document`` (``--json``'s), the ``failures`` (messages), how many ``images``
    and ``videos`` had results, the model's ``variant`` name and ``min_score``, and ``noun`` (what counts count)."""

    document: dict
    failures: list[str]
    images: int
    videos: int
    variant: str
    min_score: float
    noun: str

    def failure(self) -> ImageError | None:
        """The ``ImageError`` (exit 6) that ends a run with failures: the last message, and how many failed."""
        if not self.failures:
            return None
        last = self.failures[-1]
        return ImageError(last if len(self.failures) == 1 else f"{last} ({len(self.failures)} {self.noun} failed)")


@dataclass
class _Progress:
    done: int = 0
    finished: collections.deque = field(default_factory=collections.deque)


class DetectRun:
    """A detect run: ``inputs`` (files and folders; ``recursive`` reads subfolders) with ``settings``, writing
    ``outputs``, in this process or on ``ray``. Everything that can be refused is refused when it is made (before
    any model is loaded or input read): no input found, outputs that would replace an input or a file that is not
    blazeconv's, a results file another run holds or written with other settings. Iterating runs it, yielding an
    ``InputDone`` per input; ``report`` then holds the ``RunReport``. An interrupt (``interrupts.Interrupted``)
    says how many inputs were done and where their results are. Notices (a resumed file's state) go to
    ``errors.notice``."""

    def __init__(self, inputs: Sequence[str | Path], settings: DetectionSettings | None = None,
                 outputs: DetectOutputs | None = None, *, recursive: bool = False, ray: RayOptions | None = None):
        from .detection.files import find_images, nothing_found_hint
        from .detection.results import JsonlResults
        from .detection.video import is_video, require_video

        self.settings = settings or DetectionSettings()
        self.outputs = outputs = outputs or DetectOutputs()
        self.ray = ray
        if ray is not None:
            _check_ray(ray, outputs)
        self.paths = find_images([Path(i) for i in inputs], recursive=recursive)
        if not self.paths:
            raise PathUsageError("no image or video files found in " + ", ".join(str(i) for i in inputs) +
                                 nothing_found_hint(inputs))
        self.videos = {i for i, path in enumerate(self.paths) if is_video(path)}
        if self.settings.sampling != Sampling() and not self.videos:
            raise PathUsageError("--every, --fps, --frames, --start and --end choose video frames: none of the "
                                 "inputs is a video")
        if self.settings.track and not self.videos:
            raise PathUsageError("--track follows faces through video frames: none of the inputs is a video")
        if self.videos:
            require_video()
        if self.settings.track:
            from .detection.tracking import require_tracking

            require_tracking()
        self.results = JsonlResults(outputs.jsonl, resume=outputs.resume)
        self.annotations = check_outputs(self.paths, self.videos, self.settings.model, outputs)
        self.crop_names = check_crops(self.paths, outputs.crops, outputs.overwrite) if outputs.crops else {}
        self.results.check()
        self.noun = NOUN_INPUTS if self.videos else NOUN_IMAGES  # what the counts in messages count
        self.report: RunReport | None = None
        self.todo = list(range(len(self.paths)))
        if (self.annotations or self.crop_names) and self.settings.fast_decode is None:
            # Annotations and crops are made of the decoded pictures: photos are decoded in full for them.
            self.settings = self.settings.replace(fast_decode=False)
        self.runner = self.settings.make_runner()
        self.variant = self.runner.variant
        self.settings = self.settings.replace(variant=self.variant)
        backend = getattr(self.runner, "backend", self.settings.backend)
        self.results.settings = self.settings.record(self.variant, backend)
        if self.videos:
            self.results.settings["video_sampling"] = self.settings.sampling.settings()
        if self.videos and self.settings.tracked:
            from .detection.tracking import LOST_TRACK_BUFFER, MAX_SHIFT, MIN_IOU

            lost = LOST_TRACK_BUFFER + (self.settings.fine_every - 1) * self.settings.sampling.every
            self.results.settings["video_tracking"] = {"lost_track_buffer": lost, "min_iou": MIN_IOU,
                                                       "max_shift": MAX_SHIFT,
                                                       "detect_every": self.settings.detect_every,
                                                       "fine_every": self.settings.fine_every}

    def __iter__(self) -> Iterator[InputDone]:
        from .interrupts import Interrupted

        progress = _Progress()
        try:
            yield from self._run(progress)
        except Interrupted as exc:
            total, jsonl = len(self.paths), self.outputs.jsonl
            exc.detail = f"{total - len(self.todo) + progress.done} of {total} {self.noun} done"
            if jsonl is not None and str(jsonl) != "-":
                exc.detail += f"; their results are in {jsonl} (rerun with --resume to continue)"
            raise

    def _run(self, progress: _Progress) -> Iterator[InputDone]:
        from .detection.drawing import AnnotationWriter
        from .detection.inputs import stream_inputs
        from .detection.results import result_record
        from .detection.video import FrameResult
        from .detection.video_annotation import VideoAnnotations

        paths, videos, results, outputs = self.paths, self.videos, self.results, self.outputs
        frames_of: dict[int, list[dict]] = {}  # a video's frame records, for --json and its summary
        with _ray_session(self.ray), results:
            # With --resume, what the interrupted run finished comes from the file: its inputs are not read again.
            self.todo = todo = results.todo(paths)
            position = {os.path.realpath(p): i for i, p in enumerate(paths)}
            entries = [r for r in results.finished if "error" not in r and "frame" not in r]
            failures = [r["error"] for r in results.finished if "error" in r]
            for record in results.finished:
                if "frame" in record and os.path.realpath(record["path"]) in position:
                    frames_of.setdefault(position[os.path.realpath(record["path"])], []).append(record)
            after = {position[key]: frame for key, frame in results.last_frames().items() if key in position}
            # A tracked video continued after its recorded frames: its new tracks get ids after the recorded ones.
            first_track = {i: 1 + max((d.get("track", -1) for r in frames_of.get(i, []) for d in r["detections"]),
                                      default=-1) for i in after} if self.settings.track else {}
            for message in results.notices:
                notice(message)
            if results.finished:
                notice(f"resuming {outputs.jsonl}: {len(paths) - len(todo)} of {len(paths)} {self.noun} already done")

            def finish(index, result, record):  # once the input's annotation is written
                found = result.detections
                video = index in videos
                if video and found is not None:
                    frames_of.setdefault(index, []).append(record)
                results.write(record)
                if video and found is not None and not result.last:
                    return  # the video goes on
                error = record.get("error")
                progress.finished.append(InputDone(paths[index], video, frames_of.get(index, []) if video else [record],
                                                   error))
                progress.done += 1

            with AnnotationWriter(_write_annotation, jpeg_quality=outputs.annotate_quality,
                                  max_side=outputs.annotate_size) as drawer, \
                    VideoAnnotations(self.annotations, videos, {i: list(f) for i, f in frames_of.items()}) as video_drawer, \
                    crop_writer(outputs, self.crop_names) as cropper:
                # Images are decoded and letterboxed on every core while the model runs; annotations are drawn and
                # encoded on a thread of their own; outputs are written here, as they come.
                if self.ray is not None:
                    results_in = _ray_inputs(paths, todo, videos, after, self.settings, self.runner, self.ray)
                else:
                    keep = bool(self.annotations or self.crop_names)
                    results_in = stream_inputs(self.runner, paths, videos, self.settings, keep_images=keep,
                                               keep_frames=bool(self.crop_names), after=after, only=todo,
                                               video_writers=video_drawer if self.annotations else None)
                for index, result in results_in:
                    if first_track.get(index) and isinstance(result, FrameResult):
                        result = _renumbered(result, first_track[index])
                    record = result_record(result)
                    if result.detections is None:
                        failures.append(record["error"])
                    elif not isinstance(result, FrameResult):
                        entries.append(record)
                    then = functools.partial(finish, index, result, record)
                    if cropper is not None and result.detections:
                        frame = result if isinstance(result, FrameResult) else None
                        cropper.add(result.path, result.image, result.detections, frame and frame.frame,
                                    frame and frame.time)
                    if cropper is not None and index in videos and (result.detections is None or result.last):
                        cropper.finish(result.path)  # a video's best crops per track
                    if index in videos:
                        video_drawer.add(index, result)
                        drawer.then(then)
                    elif self.annotations and result.detections is not None:
                        drawer.submit(result.image, result.detections, self.annotations[index], result.path, then)
                    else:
                        drawer.then(then)
                    while progress.finished:
                        yield progress.finished.popleft()
            while progress.finished:
                yield progress.finished.popleft()

        document = {"images": entries}
        if videos:
            document["videos"] = [_video_entry(paths[i], frames_of[i]) for i in sorted(frames_of)]
        if failures:
            document["errors"] = failures
        if outputs.json is not None and str(outputs.json) != "-":
            from .io import atomic_path

            with atomic_path(Path(outputs.json)) as tmp:
                tmp.write_text(json.dumps(document, indent=2) + "\n")
        self.report = RunReport(document, failures, len(entries), len(frames_of), self.variant.name,
                                self.settings.score_for(self.variant), self.noun)


def _renumbered(result, offset: int):
    """``result`` (a ``FrameResult``) with ``offset`` added to its detections' track ids (a resumed video)."""
    import dataclasses

    return dataclasses.replace(result, detections=[dataclasses.replace(d, track=d.track + offset)
                                                   for d in result.detections])


def no_face_hint(run: DetectRun, done: InputDone) -> str | None:
    """``hint: PATH: no face found; ...`` for an input (a photo, or a video in none of whose frames) where nothing
    was found while the run cannot see the small faces a default run looks for (``small_faces_hint``), else None."""
    records = done.records
    if done.error is not None or not records or any(r["detections"] for r in records):
        return None
    hint = run.settings.small_faces_hint(run.variant, records[0]["width"], records[0]["height"])
    return None if hint is None else f"hint: {done.path}: no face found; {hint}"


def video_summary(path: Path, frames: list[dict]) -> str:
    """``clip.mp4: 275 frames, faces in 270, at most 2 per frame`` (and ``, 3 tracks`` when tracked)."""
    counts = [len(f["detections"]) for f in frames]
    tracks = {d["track"] for f in frames for d in f["detections"] if "track" in d}
    return (f"{path}: {len(frames)} {'frame' if len(frames) == 1 else 'frames'}, faces in {sum(1 for c in counts if c)}"
            f", at most {max(counts, default=0)} per frame" +
            (f", {len(tracks)} {'track' if len(tracks) == 1 else 'tracks'}" if tracks else ""))


def _video_entry(path: Path, frames: list[dict]) -> dict:
    """A video's ``--json`` entry: its size, nominal rate and duration, and its sampled frames."""
    from .detection.video import probe

    try:
        info = probe(path)
        fps, duration = info.fps, info.duration
    except Exception:  # the frames were read; a second look that fails only loses the nominal figures
        fps = duration = None
    first = frames[0] if frames else {}
    return {"path": str(path), "width": first.get("width"), "height": first.get("height"), "fps": fps,
            "duration": duration,
            "frames": [{"frame": f["frame"], "time": f["time"], "detections": f["detections"]} for f in frames]}


def _write_annotation(path: Path, data: bytes) -> None:
    """An annotation's bytes written to ``path`` atomically; its folder (inside the annotation folder) made first."""
    from .io import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _check_ray(ray: RayOptions, outputs: DetectOutputs) -> None:
    """Ray's address and what cannot go with it, and ray installed (exit 8), before any work."""
    import re

    from .ray import require_ray

    if not re.fullmatch(r"local|auto|(ray://)?[A-Za-z0-9_.\-\[\]:]+:[0-9]+", ray.address):
        raise PathUsageError(f"--ray {ray.address}: not a Ray address (local, auto, HOST:PORT or ray://HOST:PORT); "
                             "a word right after --ray is taken as its address: put --ray after the inputs")
    if outputs.annotate is not None:
        raise PathUsageError("--annotate needs the decoded images, which stay on the Ray workers: not with --ray")
    if outputs.crops is not None:
        raise PathUsageError("--crops needs the decoded images, which stay on the Ray workers: not with --ray")
    require_ray()


@contextlib.contextmanager
def _ray_session(ray: RayOptions | None):
    """Connected to Ray for the run (a local cluster started and stopped), or nothing without Ray."""
    if ray is None:
        yield
        return
    from .interrupts import reclaim
    from .ray import connected

    with connected(ray.address):
        reclaim()  # ray.init replaced the SIGTERM handler with its own (exit 15, no message)
        yield


def _ray_inputs(paths, todo, videos, after, settings: DetectionSettings, runner, ray: RayOptions):
    """``(index, result)`` of the inputs ``todo`` computed on Ray, in order: the photos by the model actors
    (``ray.stream_files``), each video by a task of its own (``ray.stream_videos``), all videos submitted first."""
    import dataclasses

    from .ray import stream_files, stream_videos

    photos = [i for i in todo if i not in videos]
    clips = [i for i in todo if i in videos]
    # The workers build the model the way this process did: by name or absolute path, on the backend chosen here.
    settings = settings.replace(variant=settings.variant.name, backend=getattr(runner, "backend", settings.backend))
    by_video = iter(stream_videos([Path(paths[i]).resolve() for i in clips], settings=settings,
                                  after=[after.get(i) for i in clips], task_cpus=ray.actor_cpus)) if clips else iter(())
    by_photo = iter(stream_files([paths[i] for i in photos], settings=settings, actors=ray.actors,
                                 actor_cpus=ray.actor_cpus)) if photos else iter(())
    for index in todo:
        if index in videos:
            for result in next(by_video):
                yield index, dataclasses.replace(result, path=paths[index])  # named as given, not resolved
        else:
            yield index, next(by_photo)


__all__ = ["DetectOutputs", "DetectRun", "InputDone", "RayOptions", "RunReport", "no_face_hint", "video_summary"]
