"""Whole processes side by side, alternating round by round; medians (docs/bench.md, *Every face*).

python docs/every_face/timing.py photos|clip ROUNDS FOLDER_OF_12MP_JPEGS CLIP_640x360
(the photos: bench.measure._cover of the shared and labelled photos to 4000x3000, q90; the clip: the first 300
frames of one-by-one-person-detection.mp4 scaled to 640x360, libx264)."""
import os, statistics, sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
os.environ["PYTHONPATH"] = str(REPO)
from blazeconv.bench.timing import run_measured  # noqa: E402

PY = sys.executable
MP = str(REPO / ".venv-mediapipe" / "bin" / "python")
DEF = str(REPO / ".venv-deface" / "bin" / "python")
WORKER = str(REPO / "blazeconv" / "bench" / "mediapipe_worker.py")
DEFACE_WORKER = str(REPO / "blazeconv" / "bench" / "deface_worker.py")
FR = str(REPO / "blazeconv" / "models" / "face_detection_full_range_sparse.tflite")
folder, clip = sys.argv[3], sys.argv[4]
listing = os.path.join(os.path.dirname(os.path.abspath(folder)), "photos.txt")
open(listing, "w").write("\n".join(sorted(os.path.join(folder, f) for f in os.listdir(folder))) + "\n")
B = [PY, "-m", "blazeconv"]
SETS = {
    "photos": {
        "detect (defaults)": B + ["detect", folder, "-q"],
        "detect --exact": B + ["detect", folder, "-q", "--exact"],
        "detect --model short_range --exact (before)": B + ["detect", folder, "-q", "--model", "short_range", "--exact"],
        "MediaPipe Tasks full range (sparse file, 0.6)": [MP, WORKER, FR, "0.6", "files", listing],
    },
    "clip": {
        "detect (defaults)": B + ["detect", clip, "-q"],
        "blur (defaults)": B + ["blur", clip, "-o", os.path.join(os.path.dirname(os.path.abspath(clip)), "clip_blurred.mp4"), "-q"],
        "detect --exact": B + ["detect", clip, "-q", "--exact"],
        "deface 1.5.0 (its CLI, defaults)": [DEF, DEFACE_WORKER, "anonymise", clip, os.path.join(os.path.dirname(os.path.abspath(clip)), "clip_deface.mp4")],
    },
}
which, rounds = sys.argv[1], int(sys.argv[2])
commands = SETS[which]
for command in commands.values():  # warm-up (caches)
    run_measured(command)
runs = {name: [] for name in commands}
for r in range(rounds):
    for name, command in commands.items():
        runs[name].append(run_measured(command))
    print("round", r + 1, {n: round(v[-1].seconds, 2) for n, v in runs.items()}, flush=True)
for name, rows in runs.items():
    print(f"| {name} | {statistics.median(x.seconds for x in rows):.2f} | {min(x.seconds for x in rows):.2f}–"
          f"{max(x.seconds for x in rows):.2f} | {statistics.median(x.cpu_seconds for x in rows):.2f} | "
          f"{max(x.peak_mib for x in rows):.0f} |")
