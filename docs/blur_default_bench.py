"""The measurements behind docs/tracks.md, *Blur's default (--fine-every auto)*: ``blur`` under a few option sets
against deface, per clip: the share of CenterFace's faces (score >= 0.5) hidden (``bench.hiding``), the whole
process's time as a multiple of deface's, and peak memory.

    python docs/blur_default_bench.py CLIPS [OPTION_SETS] [--shared /work/shared/videos] [--cache DIR]
                                      [--deface-python P]

CLIPS: comma-separated names of ``CLIPS`` below. OPTION_SETS: blur's options, sets separated by ';' (an empty set
is the defaults); default ``;--fine-every 1;--track``. One round; the order of the runs is reversed from one clip to
the next. Prints Markdown rows: clip, options, CenterFace faces, hidden, seconds, x deface, peak MiB.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ONE_BY_ONE = "one-by-one-person-detection.mp4"


def clips(shared: Path, cache: Path) -> dict:
    from blazeconv.bench.tracks import derived_clip, signers_clip

    source = shared / ONE_BY_ONE
    return {
        "asl_again": lambda: shared / "asl_again.mkv",
        "asl_book": lambda: shared / "asl_book.mkv",
        "asl_sister": lambda: shared / "asl_sister.mkv",
        "signers": lambda: signers_clip(shared, cache),
        "book1080": lambda: derived_clip(shared / "asl_book.mkv", cache, (1440, 1080)),
        "book4k": lambda: derived_clip(shared / "asl_book.mkv", cache, (2880, 2160)),
        "low": lambda: derived_clip(source, cache, (384, 216), 1160, 200),
        "excerpt": lambda: derived_clip(source, cache, (768, 432), 1160, 200),
        "1080p": lambda: derived_clip(source, cache, (1920, 1080), 1300, 60),
        "4k": lambda: derived_clip(source, cache, (3840, 2160), 1330, 30),
        "oneby360": lambda: derived_clip(source, cache, (640, 360)),
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clips")
    parser.add_argument("option_sets", nargs="?", default=";--fine-every 1;--track")
    parser.add_argument("--shared", type=Path, default=Path("/work/shared/videos"))
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "blazeconv-tracks-bench")
    parser.add_argument("--deface-python", type=Path, default=Path(".venv-deface/bin/python"))
    args = parser.parse_args(argv)
    if not args.deface_python.exists():
        parser.error(f"{args.deface_python}: no deface environment (python3 -m venv .venv-deface && "
                     ".venv-deface/bin/pip install deface==1.5.0 av)")

    from blazeconv.bench.anonymise import DEFACE_WORKER, REFERENCE_SCORE, reference
    from blazeconv.bench.hiding import hidden_share
    from blazeconv.bench.timing import run_measured
    from blazeconv.bench.tracks import deface_options
    from blazeconv.detection.video import probe

    known = clips(args.shared, args.cache)
    with tempfile.TemporaryDirectory(prefix="blazeconv-blur-default-") as folder:
        folder = Path(folder)
        for number, name in enumerate(args.clips.split(",")):
            clip = known[name]()
            boxes = reference(args.deface_python, clip, folder)
            faces = sum(int((b[:, 4] >= REFERENCE_SCORE).sum()) for b in boxes)
            runs = [(options or "default", [sys.executable, "-m", "blazeconv", "blur", str(clip), "-o", None, "-q",
                                            *options.split()]) for options in args.option_sets.split(";")]
            runs.append(("deface", [str(args.deface_python), str(DEFACE_WORKER), "anonymise", str(clip), None,
                                    *deface_options(probe(clip).height)]))
            rows = {}
            for index, (label, command) in enumerate(runs[::-1] if number % 2 else runs):
                out = folder / f"out{index}.mp4"
                measured = run_measured([str(out) if part is None else part for part in command])
                rows[label] = (hidden_share(clip, out, boxes, min_score=REFERENCE_SCORE)["share"], measured.seconds,
                               measured.peak_mib)
                out.unlink(missing_ok=True)
            deface = rows["deface"][1]
            for label, (share, seconds, peak) in rows.items():
                print(f"| {name} | {label} | {faces} | {share:.1%} | {seconds:.1f} | {seconds / deface:.2f} | "
                      f"{peak:.0f} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
