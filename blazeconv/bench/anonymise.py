"""``blazeconv blur`` against deface: the share of deface's faces hidden in the output pixels, and the speed.

For each clip: deface's own detector (CenterFace, through ``deface_worker.py detect`` in deface's environment) gives
the reference boxes, those scoring at least ``REFERENCE_SCORE``; each option set of ``blazeconv blur`` is run as a
whole process (``run_measured``) and its output measured with ``hiding.hidden_share`` (the detail inside each
reference box is gone); deface's own CLI (``deface_worker.py anonymise``, its defaults) is timed and measured the same
way. Frames per second are the clip's frames over the whole process's wall seconds.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .hiding import FrameCountMismatch, hidden_share, read_reference
from .timing import run_measured

DEFACE_WORKER = Path(__file__).with_name("deface_worker.py")
REFERENCE_SCORE = 0.5
# (label, blazeconv blur options): the defaults first, then the other settings the README reports.
OPTION_SETS = (
    ("default (full_range_sparse, 0.4, the scales min face needs, hold 5)", ()),
    ("--no-tile", ("--no-tile",)),
    ("--no-tile --hold 0", ("--no-tile", "--hold", "0")),
    ("short_range 0.5, --no-tile --hold 0", ("--model", "short_range", "--min-score", "0.5", "--no-tile", "--hold", "0")),
)


@dataclass(frozen=True)
class BlurRow:
    """One run on one clip: who, the clip's frames, whole-process seconds and peak MiB, the reference boxes and the
    share hidden (None when the output's frame count differs from the input's: ``note`` says so)."""

    clip: str
    contender: str
    frames: int
    seconds: float
    peak_mib: float
    boxes: int
    share: float | None
    note: str = ""

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def reference(deface_python: Path, clip: Path, folder: Path) -> list:
    """CenterFace's boxes on every frame of ``clip`` (``deface_worker.py detect``), per frame."""
    out = folder / f"{clip.stem}.reference.jsonl"
    subprocess.run([str(deface_python), str(DEFACE_WORKER), "detect", str(clip), str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    return read_reference(out)


def measure_blur(clips: Sequence[Path], deface_python: Path, option_sets=OPTION_SETS, blazeconv=("blazeconv",),
                 progress=lambda message: None) -> list[BlurRow]:
    """Rows for every clip: each option set of ``blazeconv blur`` (``blazeconv``: the command that runs it) and
    deface's CLI."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="blazeconv-blur-") as folder:
        folder = Path(folder)
        for clip in clips:
            progress(f"blur: {clip.name}: deface's detector for the reference boxes")
            boxes = reference(deface_python, clip, folder)
            count = sum(int((b[:, 4] >= REFERENCE_SCORE).sum()) for b in boxes)
            runs = [(label, [*blazeconv, "blur", str(clip), "-o", None, "-q", *options]) for label, options in option_sets]
            runs.append(("deface 1.5.0 (its defaults)", [str(deface_python), str(DEFACE_WORKER), "anonymise", str(clip), None]))
            for number, (label, command) in enumerate(runs):
                progress(f"blur: {clip.name}: {label}")
                out = folder / f"{clip.stem}.{number}.mp4"
                measured = run_measured([str(out) if part is None else part for part in command])
                try:
                    share = hidden_share(clip, out, boxes, min_score=REFERENCE_SCORE)["share"]
                    note = ""
                except FrameCountMismatch as exc:
                    share, note = None, str(exc)
                rows.append(BlurRow(clip.name, label, len(boxes), measured.seconds, measured.peak_mib, count, share, note))
                out.unlink(missing_ok=True)
    return rows


def blur_table(rows: Sequence[BlurRow]) -> list[str]:
    """The Markdown table of ``measure_blur``'s rows, with each run's speed over deface's on the same clip."""
    lines = ["| clip | run | frames | seconds | frames/s | × deface's frames/s | peak MiB | faces (CenterFace ≥ 0.5) | hidden |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    deface = {r.clip: r for r in rows if r.contender.startswith("deface")}
    for r in rows:
        versus = f"{r.frames_per_second / deface[r.clip].frames_per_second:.1f}×" if r.clip in deface else "—"
        hidden = f"{100 * r.share:.0f} %" if r.share is not None else f"— ({r.note})"
        lines.append(f"| {r.clip} | {r.contender} | {r.frames} | {r.seconds:.2f} | {r.frames_per_second:.0f} | {versus} | "
                     f"{r.peak_mib:.0f} | {r.boxes} | {hidden} |")
    return lines


__all__ = ["OPTION_SETS", "REFERENCE_SCORE", "BlurRow", "blur_table", "measure_blur", "reference"]
