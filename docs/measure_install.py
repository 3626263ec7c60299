"""Measure what an install costs: venv size, install time, the first (cold) and warm runs on a photo.

Each contender is installed into a new virtual environment under WORK (pip's cache as it is: say whether it was warm),
then run on PHOTO: its first run right after the install, then the median of ``--runs`` more. Prints a Markdown
table (docs/bench.md, *Install*). Standard library only; run it with any Python 3.10+::

    python docs/measure_install.py --wheel dist/blazeconv-0.1.0-py3-none-any.whl --work /tmp/installs \\
        --photo blazeconv/photos/astronaut.png --model blazeconv/models/face_detection_short_range.tflite

Contenders: blazeconv (the plain install), with ``--before WHEEL`` an earlier blazeconv as its plain install was,
blazeconv[convert] (after the CPU torch, as the Makefile does: size and install time only, it runs the same networks),
MediaPipe Tasks (``pip install mediapipe``: its FaceDetector on the same short_range .tflite, which has no command of
its own: a three-line script), deface (``pip install deface``: it blurs, no detection-only output).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

MEDIAPIPE_DETECT = """
import sys
from mediapipe.tasks.python import BaseOptions, vision
import mediapipe as mp
detector = vision.FaceDetector.create_from_options(vision.FaceDetectorOptions(base_options=BaseOptions(model_asset_path=sys.argv[1])))
print(len(detector.detect(mp.Image.create_from_file(sys.argv[2])).detections))
"""


def _timed(command: list[str], cwd: Path) -> tuple[float, int]:
    """Wall seconds and peak resident MB of ``command`` (GNU time's %M), which must succeed."""
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "PEAK %M", *command], cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
    peak = int(done.stderr.rsplit("PEAK ", 1)[1].split()[0]) // 1024
    return seconds, peak


def _size_mb(folder: Path) -> int:
    return int(subprocess.run(["du", "-sm", str(folder)], capture_output=True, text=True, check=True).stdout.split()[0])


def _install(venv: Path, requirements: list[list[str]]) -> float:
    """A new venv at ``venv`` with each pip install of ``requirements`` in turn; the seconds it all took."""
    if venv.exists():
        shutil.rmtree(venv)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    for arguments in requirements:
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *arguments], check=True)
    return time.perf_counter() - start


def _runs(command: list[str], cwd: Path, runs: int) -> tuple[float, float, int]:
    """First run, median of ``runs`` more (seconds), and the first run's peak MB."""
    first, peak = _timed(command, cwd)
    warm = statistics.median(_timed(command, cwd)[0] for _ in range(runs))
    return first, warm, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--photo", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True, help="short_range .tflite for MediaPipe")
    parser.add_argument("--before", type=Path, help="a wheel of an earlier blazeconv (torch in its plain install), "
                        "measured as the plain install was then: the CPU torch first, the first detect exporting")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", nargs="*", help="contenders to measure (default: all)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    wheel, photo, model = args.wheel.resolve(), args.photo.resolve(), args.model.resolve()
    out = args.work / "outputs"
    out.mkdir(exist_ok=True)
    contenders = {
        "blazeconv": ([[str(wheel)]],
                      lambda v: [str(v / "bin" / "blazeconv"), "detect", str(photo), "--json", str(out / "d.json")],
                      lambda v: [str(v / "bin" / "blazeconv"), "blur", str(photo), "-o", str(out / "blazeconv.png")]),
        "blazeconv[convert]": ([["torch==2.13.0"], [f"{wheel}[convert]"]], None, None),
        "mediapipe": ([["mediapipe"]],
                      lambda v: [str(v / "bin" / "python"), "-c", MEDIAPIPE_DETECT, str(model), str(photo)], None),
        "deface": ([["deface"]], None,
                   lambda v: [str(v / "bin" / "deface"), str(photo), "-o", str(out / "deface.png")]),
    }
    if args.before:
        before = args.before.resolve()
        cache = ["env", f"BLAZECONV_CACHE={args.work / 'before-cache'}"]  # empty: its first detect exports the model
        contenders["blazeconv (before)"] = (
            [["torch==2.13.0"], [str(before)]],
            lambda v: [*cache, str(v / "bin" / "blazeconv"), "detect", str(photo), "--json", str(out / "d.json")],
            lambda v: [*cache, str(v / "bin" / "blazeconv"), "blur", str(photo), "-o", str(out / "before.png")])
    rows = []
    for name, (requirements, detect, blur) in contenders.items():
        if args.only and name not in args.only:
            continue
        venv = args.work / name.replace("[", "-").replace("]", "")
        seconds = _install(venv, requirements)
        row = [name, f"{_size_mb(venv)} MB", f"{seconds:.0f} s"]
        for command in (detect, blur):
            if command is None:
                row.append("–")
                continue
            first, warm, peak = _runs(command(venv), args.work, args.runs)
            row.append(f"{first:.2f} s / {warm:.2f} s ({peak} MB)")
        rows.append(row)
        print(" | ".join(row), file=sys.stderr, flush=True)
    print("| install | venv size | install time | detect: first / warm (peak) | blur: first / warm (peak) |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
