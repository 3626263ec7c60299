"""The measurements behind docs/tracks.md: blur with tracks and keyframes against deface, tracks against people,
``detect --track`` against MediaPipe's VIDEO mode, on the shared clips and clips derived from one of them.

    python docs/tracks_bench.py [--shared /work/shared/videos] [--cache DIR] [--deface-python P]
                                [--mediapipe-python P] [--only blur,tracks,speed]

Derived clips (``bench.tracks.derived_clip``, made once into ``--cache``): from one-by-one-person-detection.mp4
(768x432, people walking through a room): an excerpt of frames 1160-1359 (three people crossing, small fast
faces), the same excerpt at 384x216 (faces 12-20 px), frames 1300-1359 at 1920x1080 and frames 1330-1359 at
3840x2160. Every figure is one whole process, side by side in one run; on a shared machine the times are noisy,
the ratios on one clip less so. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ONE_BY_ONE = "one-by-one-person-detection.mp4"
# name -> (first frame, frame count, size or None for the source's), option sets measured (None: all)
DERIVED = {
    "excerpt": (1160, 200, None, None),
    "low": (1160, 200, (384, 216), None),
    "1080p": (1300, 60, (1920, 1080), 2),
    "4k": (1330, 30, (3840, 2160), 2),
}
PEOPLE = {"asl_again.mkv": 1, "asl_book.mkv": 1, "asl_sister.mkv": 1, "head-pose-face-detection-female-and-male.gif": 2}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=Path("/work/shared/videos"))
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "blazeconv-tracks-bench")
    parser.add_argument("--deface-python", type=Path, default=Path(".venv-deface/bin/python"))
    parser.add_argument("--mediapipe-python", type=Path, default=Path(".venv-mediapipe/bin/python"))
    parser.add_argument("--only", default="blur,tracks,speed")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))

    from blazeconv.bench.anonymise import TRACK_OPTION_SETS, blur_table, measure_blur
    from blazeconv.bench.tracks import derived_clip, measure_detect_track, track_counts, track_speed_table, tracks_table
    from blazeconv.detection.video import probe
    from blazeconv.resources import models_dir
    from blazeconv.variants import get_variant

    shared = [args.shared / name for name in ("asl_again.mkv", "asl_book.mkv", "asl_sister.mkv")]
    derived = {}
    for name, (first, count, size, _) in DERIVED.items():
        source = args.shared / ONE_BY_ONE
        size = size or (probe(source).width, probe(source).height)
        derived[name] = derived_clip(source, args.cache, size, first, count)
        print(f"derived {name}: {derived[name]}", file=sys.stderr, flush=True)

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    if "blur" in only:
        rows = measure_blur(shared + [derived["excerpt"], derived["low"]], args.deface_python,
                            option_sets=TRACK_OPTION_SETS, blazeconv=(sys.executable, "-m", "blazeconv"),
                            progress=progress)
        big = [derived[name] for name in ("1080p", "4k")]
        rows += measure_blur(big, args.deface_python, option_sets=TRACK_OPTION_SETS[:2],
                             blazeconv=(sys.executable, "-m", "blazeconv"), progress=progress)
        print("\n".join(blur_table(rows)) + "\n", flush=True)
    if "tracks" in only:
        counts = [track_counts(clip, PEOPLE.get(clip.name)) for clip in
                  shared + [args.shared / "head-pose-face-detection-female-and-male.gif", args.shared / ONE_BY_ONE,
                            derived["excerpt"]]]
        print("\n".join(tracks_table(counts)) + "\n", flush=True)
    if "speed" in only:
        mediapipe = args.mediapipe_python if args.mediapipe_python.is_file() else None
        variant = get_variant("short_range")  # MediaPipe's Tasks FaceDetector runs this model
        rows = measure_detect_track(shared + [derived["excerpt"]], mediapipe, models_dir() / variant.tflite_file,
                                    variant.min_score, ("--model", "short_range"))
        print("\n".join(track_speed_table(rows)) + "\n", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main(sys.argv[1:])
