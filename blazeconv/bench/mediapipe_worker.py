"""MediaPipe's Tasks-API ``FaceDetector`` in a worker process, for ``blazeconv bench``.

Run by path by the interpreter of MediaPipe's own environment (it cannot share ours), so it needs only the
standard library, numpy, mediapipe and (for ``video``) PyAV, and never imports blazeconv::

    python mediapipe_worker.py MODEL MIN_SCORE array FILE.npy CLOCK
    python mediapipe_worker.py MODEL MIN_SCORE files LIST.txt [OUT.jsonl]
    python mediapipe_worker.py MODEL MIN_SCORE video CLIP [OUT.jsonl]

``array``: detect on the array in ``FILE.npy`` (``(H, W, 3)`` uint8 RGB). The first line printed is ``faces
version`` (faces found, mediapipe's version); then each line ``N`` read on stdin is answered by one line of ``N``
durations in seconds, one per call, measured here. ``CLOCK`` ``cpu`` times the process's CPU time (MediaPipe may
compute on threads of its own), anything else elapsed time.

``files``: detect on every file listed in ``LIST.txt`` (one path a line) in turn; print ``images faces``. With
``OUT.jsonl``, one line per image: ``{"image": path, "width": W, "height": H, "detections": [...]}`` (detections as in
``video`` mode below).

``video``: decode the first video stream of ``CLIP`` with PyAV (frame threading, ``rgb24``, turned upright by the
display matrix's ``frame.rotation``, as blazeconv's reader does) and run the detector in ``RunningMode.VIDEO``
(``detect_for_video``, the timestamp in ms from pts × time base, made strictly increasing); print ``frames faces``.
With ``OUT.jsonl``, one line per frame: ``{"frame": k, "time": seconds, "detections": [{"score", "box": [xmin, ymin,
xmax, ymax], "keypoints": [[x, y] x 6]}]}``, coordinates in 0..1 of the upright frame (MediaPipe's pixel bounding
box divided by the frame's width and height; its keypoints are already relative).
"""

import json
import os
import sys
import time


def main(argv: list[str]) -> None:
    import mediapipe as mp
    import numpy as np
    from mediapipe.tasks.python import BaseOptions
    from mediapipe.tasks.python.vision import FaceDetector, FaceDetectorOptions, RunningMode

    model, min_score, mode, data = argv[:4]
    now = time.process_time if argv[4:] == ["cpu"] else time.perf_counter
    options = FaceDetectorOptions(
        base_options=BaseOptions(model_asset_path=model),
        running_mode=RunningMode.VIDEO if mode == "video" else RunningMode.IMAGE,
        min_detection_confidence=float(min_score))
    with FaceDetector.create_from_options(options) as detector:  # closed before the interpreter shuts down
        if mode == "video":
            print(*_detect_video(detector, data, argv[4] if argv[4:] else None))
        elif mode == "files":
            images = faces = 0
            with open(argv[4] if argv[4:] else os.devnull, "w") as lines:
                for path in open(data).read().split("\n"):
                    if path:
                        image = mp.Image.create_from_file(path)
                        found = detector.detect(image).detections
                        faces += len(found)
                        images += 1
                        if argv[4:]:
                            lines.write(json.dumps({"image": path, "width": image.width, "height": image.height,
                                                    "detections": [_relative(d, image.width, image.height) for d in found]})
                                        + "\n")
            print(images, faces)
        else:
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(np.load(data)))
            print(len(detector.detect(image).detections), mp.__version__, flush=True)
            for line in sys.stdin:
                times = []
                for _ in range(int(line)):
                    start = now()
                    detector.detect(image)
                    times.append(now() - start)
                print(" ".join(repr(t) for t in times), flush=True)


def _detect_video(detector, clip: str, out: str | None) -> tuple[int, int]:
    """``detect_for_video`` on every frame of ``clip``'s first video stream; (frames, faces), and the JSON lines."""
    import av
    import mediapipe as mp
    import numpy as np

    frames = faces = 0
    last_ms = -1
    with av.open(clip) as container, open(out or os.devnull, "w") as lines:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame threading, as blazeconv's reader
        for frame in container.decode(stream):
            if frame.pts is None:
                continue  # as blazeconv's reader: a frame without a timestamp is not placed in time
            rgb = frame.to_ndarray(format="rgb24")  # (H, W, 3) uint8, as stored
            turns = round((getattr(frame, "rotation", 0) or 0) / 90) % 4
            rgb = np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb  # upright (H', W', 3)
            height, width = rgb.shape[:2]
            seconds = float(frame.pts * stream.time_base)
            last_ms = max(round(seconds * 1000), last_ms + 1)  # VIDEO mode refuses a timestamp that does not increase
            found = detector.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb), last_ms)
            faces += len(found.detections)
            if out:
                lines.write(json.dumps({"frame": frames, "time": seconds,
                                        "detections": [_relative(d, width, height) for d in found.detections]}) + "\n")
            frames += 1
    return frames, faces

def _relative(detection, width: int, height: int) -> dict:
    """A MediaPipe ``Detection`` as ``{"score", "box": [xmin, ymin, xmax, ymax], "keypoints"}`` in 0..1.

    MediaPipe's box is whole pixels: its DetectionTransformationCalculator truncates xmin * W and width * W (and y)
    to int and clamps them to 0..W, so the box here is that, divided back; keypoints are MediaPipe's own floats.
    """
    box = detection.bounding_box  # whole pixels: origin_x, origin_y, width, height
    return {
        "score": detection.categories[0].score,
        "box": [box.origin_x / width, box.origin_y / height, (box.origin_x + box.width) / width,
                (box.origin_y + box.height) / height],
        "keypoints": [[k.x, k.y] for k in detection.keypoints],
    }


if __name__ == "__main__":
    # Run by path, Python puts this file's folder first on sys.path: its sibling modules must not shadow what
    # numpy and mediapipe import.
    here = os.path.dirname(os.path.realpath(__file__))
    sys.path[:] = [p for p in sys.path if not p or os.path.realpath(p) != here]
    main(sys.argv[1:])
