"""MediaPipe's Tasks-API ``FaceDetector`` in a worker process, for ``blazeconv bench``.

Run by path by the interpreter of MediaPipe's own environment (it cannot share ours), so it needs only the
standard library, numpy and mediapipe, and never imports blazeconv::

    python mediapipe_worker.py MODEL MIN_SCORE array FILE.npy CLOCK
    python mediapipe_worker.py MODEL MIN_SCORE files LIST.txt

``array``: detect on the array in ``FILE.npy`` (``(H, W, 3)`` uint8 RGB). The first line printed is ``faces
version`` (faces found, mediapipe's version); then each line ``N`` read on stdin is answered by one line of ``N``
durations in seconds, one per call, measured here. ``CLOCK`` ``cpu`` times the process's CPU time (MediaPipe may
compute on threads of its own), anything else elapsed time.

``files``: detect on every file listed in ``LIST.txt`` (one path a line) in turn; print ``images faces``.
"""

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
    detector = FaceDetector.create_from_options(FaceDetectorOptions(
        base_options=BaseOptions(model_asset_path=model), running_mode=RunningMode.IMAGE,
        min_detection_confidence=float(min_score)))
    if mode == "files":
        images = faces = 0
        for path in open(data).read().split("\n"):
            if path:
                faces += len(detector.detect(mp.Image.create_from_file(path)).detections)
                images += 1
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


if __name__ == "__main__":
    # Run by path, Python puts this file's folder first on sys.path: its sibling modules must not shadow what
    # numpy and mediapipe import.
    here = os.path.dirname(os.path.realpath(__file__))
    sys.path[:] = [p for p in sys.path if not p or os.path.realpath(p) != here]
    main(sys.argv[1:])
