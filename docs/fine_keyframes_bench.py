"""The measurements behind docs/tracks.md, *Fine scales on keyframes*: ``--fine-every K`` for K = 1, 2, 4, 8 on
the shared clips, against every level on every frame (K = 1, today's default) and against deface.

    python docs/fine_keyframes_bench.py [--shared /work/shared/videos] [--cache DIR] [--deface-python P]
                                        [--only detect,blur] [--fine 1,2,4,8] [--rounds 2]

Per clip: ``detect --jsonl`` for each K, whole process, the K's run alternated (the order reversed every round),
its faces matched to K = 1's on each frame (IoU >= 0.5, one to one: Hungarian on 1 - IoU) — *found* is the share of
K = 1's faces K finds, *extra* its faces K = 1 does not have, *filled* those carried along tracks; then ``blur`` for
each K and deface's CLI (``--scale 640x360`` from HD up), one round, the order reversed from one clip to the next,
the share hidden of CenterFace's faces scoring >= 0.5 (``bench.hiding``). Derived clips (``bench.tracks.derived_clip``,
made once into ``--cache``): one-by-one-person-detection.mp4 at 640x360 and its frames 1160-1359 at 384x216 (faces
12-20 px). Prints Markdown tables; on a shared machine times are noisy, the ratios on one clip less so.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

ONE_BY_ONE = "one-by-one-person-detection.mp4"
IOU = 0.5


def matched(reference: list, candidate: list) -> int:
    """How many of ``reference``'s boxes ``(xmin, ymin, xmax, ymax)`` one of ``candidate``'s matches at IoU >=
    ``IOU``, one to one."""
    from scipy.optimize import linear_sum_assignment

    from blazeconv.detection.tracking import iou_matrix

    if not reference or not candidate:
        return 0
    iou = iou_matrix(np.asarray(reference, np.float64), np.asarray(candidate, np.float64))
    rows, cols = linear_sum_assignment(1.0 - iou)
    return int((iou[rows, cols] >= IOU).sum())


def read_jsonl(path: Path) -> dict[int, list]:
    """frame -> its detections (records with ``detections``) of a ``detect --jsonl`` file."""
    frames = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if "detections" in record:
            frames[record["frame"]] = record["detections"]
    return frames


def _box(detection: dict) -> list:
    box = detection["box"]
    return [box["xmin"], box["ymin"], box["xmax"], box["ymax"]] if isinstance(box, dict) else list(box)


def measure_detect(clip: Path, fine: list[int], rounds: int, folder: Path, progress) -> list[dict]:
    from blazeconv.bench.timing import run_measured

    seconds: dict[int, list[float]] = {k: [] for k in fine}
    for round_ in range(rounds):
        for k in (fine if round_ % 2 == 0 else fine[::-1]):
            progress(f"detect: {clip.name}: --fine-every {k} (round {round_ + 1})")
            out = folder / f"{clip.stem}.k{k}.jsonl"
            out.unlink(missing_ok=True)
            row = run_measured([sys.executable, "-m", "blazeconv", "detect", str(clip), "--jsonl", str(out), "-q",
                                *(("--fine-every", str(k)) if k > 1 else ())])
            seconds[k].append(row.seconds)
    base = read_jsonl(folder / f"{clip.stem}.k{fine[0]}.jsonl")
    total = sum(len(d) for d in base.values())
    rows = []
    for k in fine:
        found = read_jsonl(folder / f"{clip.stem}.k{k}.jsonl")
        hits = sum(matched([_box(d) for d in base.get(f, [])], [_box(d) for d in found.get(f, [])]) for f in base)
        count = sum(len(d) for d in found.values())
        filled = sum(bool(d.get("filled")) for ds in found.values() for d in ds)
        rows.append({"clip": clip.name, "k": k, "frames": len(found), "faces_k1": total, "found": hits,
                     "extra": count - hits, "filled": filled, "seconds": statistics.median(seconds[k]),
                     "all_seconds": seconds[k]})
    return rows


def measure_blur(clip: Path, fine: list[int], deface_python: Path, folder: Path, reverse: bool, progress) -> list[dict]:
    from blazeconv.bench.anonymise import DEFACE_WORKER, REFERENCE_SCORE, reference
    from blazeconv.bench.hiding import FrameCountMismatch, hidden_share
    from blazeconv.bench.timing import run_measured
    from blazeconv.bench.tracks import deface_options
    from blazeconv.detection.video import probe

    progress(f"blur: {clip.name}: deface's detector for the reference boxes")
    boxes = reference(deface_python, clip, folder)
    count = sum(int((b[:, 4] >= REFERENCE_SCORE).sum()) for b in boxes)
    runs = [(f"--fine-every {k}", [sys.executable, "-m", "blazeconv", "blur", str(clip), "-o", None, "-q",
                                   *(("--fine-every", str(k)) if k > 1 else ())]) for k in fine]
    advice = deface_options(probe(clip).height)
    runs.append((f"deface ({' '.join(advice) or 'its defaults'})",
                 [str(deface_python), str(DEFACE_WORKER), "anonymise", str(clip), None, *advice]))
    rows = []
    for number, (label, command) in (reversed(list(enumerate(runs))) if reverse else enumerate(runs)):
        progress(f"blur: {clip.name}: {label}")
        out = folder / f"{clip.stem}.{number}.mp4"
        measured = run_measured([str(out) if part is None else part for part in command])
        try:
            share = hidden_share(clip, out, boxes, min_score=REFERENCE_SCORE)["share"]
        except FrameCountMismatch:
            share = None
        rows.append({"clip": clip.name, "who": label, "frames": len(boxes), "faces": count, "share": share,
                     "seconds": measured.seconds, "peak_mib": measured.peak_mib})
        out.unlink(missing_ok=True)
    return sorted(rows, key=lambda r: r["who"])


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=Path("/work/shared/videos"))
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "blazeconv-tracks-bench")
    parser.add_argument("--deface-python", type=Path, default=Path(".venv-deface/bin/python"))
    parser.add_argument("--only", default="detect,blur")
    parser.add_argument("--fine", default="1,2,4,8")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clips", default="")
    args = parser.parse_args(argv)
    fine = [int(k) for k in args.fine.split(",")]

    from blazeconv.bench.tracks import derived_clip

    source = args.shared / ONE_BY_ONE
    clips = [args.shared / name for name in ("asl_again.mkv", "asl_book.mkv", "asl_sister.mkv")]
    clips += [derived_clip(source, args.cache, (384, 216), 1160, 200), derived_clip(source, args.cache, (640, 360)),
              source]
    if args.clips:
        clips = [c for c in clips if any(part in c.name for part in args.clips.split(","))]

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="blazeconv-fine-") as folder:
        folder = Path(folder)
        if "detect" in args.only:
            print("| clip | K | frames | K=1 faces | found (IoU>=0.5) | extra | filled | detect s (each round) |")
            print("|---|---|---|---|---|---|---|---|", flush=True)
            for clip in clips:
                for r in measure_detect(clip, fine, args.rounds, folder, progress):
                    print(f"| {r['clip']} | {r['k']} | {r['frames']} | {r['faces_k1']} | {r['found']} "
                          f"({r['found'] / max(r['faces_k1'], 1):.1%}) | {r['extra']} | {r['filled']} | "
                          f"{r['seconds']:.1f} ({', '.join(f'{s:.1f}' for s in r['all_seconds'])}) |", flush=True)
        if "blur" in args.only:
            print("\n| clip | who | frames | CenterFace faces | hidden | s | x deface | peak MiB |")
            print("|---|---|---|---|---|---|---|---|", flush=True)
            for number, clip in enumerate(clips):
                rows = measure_blur(clip, fine, args.deface_python, folder, number % 2 == 1, progress)
                deface = next(r["seconds"] for r in rows if r["who"].startswith("deface"))
                for r in rows:
                    share = "n/a" if r["share"] is None else f"{r['share']:.1%}"
                    print(f"| {r['clip']} | {r['who']} | {r['frames']} | {r['faces']} | {share} | {r['seconds']:.1f} "
                          f"| {r['seconds'] / deface:.2f} | {r['peak_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main(sys.argv[1:])
