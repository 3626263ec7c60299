"""python docs/every_face/curve.py ROUNDS SETS: recall / false / time over the strategy's knobs, in-process (blazeconv.evaluate), alternating knob by knob per round."""
import statistics, sys, time
from pathlib import Path
import blazeconv
import blazeconv.detection.scales as S
from blazeconv.detection.settings import DetectionSettings
root = Path(sys.argv[2] if len(sys.argv) > 2 else "every-face-sets")
SETS = ["group", "phone12", "phone48", "shared", "mosaic", "lowclip", "empty"]
KNOBS = [
    ("whole picture only (--no-tile)", None, {"tile": False}),
    ("min face 1/12 of shorter side", 1 / 12, {}),
    ("min face 1/16", 1 / 16, {}),
    ("min face 1/24 (default)", 1 / 24, {}),
    ("min face 1/32", 1 / 32, {}),
    ("min face 1/48", 1 / 48, {}),
    ("1/24, overlap 0.5", 1 / 24, {"tile_overlap": 0.5}),
]
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2
results = {k[0]: {"times": [], "rows": None} for k in KNOBS}
for r in range(rounds):
    for name, share, options in KNOBS:
        if share is not None:
            S.MIN_FACE_SHARE = share
        rows, total = [], 0.0
        for s in SETS:
            start = time.perf_counter()
            d = blazeconv.evaluate(root / s, root / s / "labels.json", settings=DetectionSettings(**options)).to_dict()
            total += time.perf_counter() - start
            rows.append((s, d["images"], d["faces"], d["found"], d["false"]))
        S.MIN_FACE_SHARE = 1 / 24
        results[name]["times"].append(total)
        results[name]["rows"] = rows
        print(r, name, round(total, 2), flush=True)
print("| knobs | " + " | ".join(SETS) + " | false / 20 | seconds (all sets, median) |")
print("|---|" + "---:|" * (len(SETS) + 2))
for name, v in results.items():
    rows = v["rows"]
    cells = [f"{found / faces:.2f}" if faces else "–" for s, n, faces, found, false in rows]
    false = sum(x[4] for x in rows); images = sum(x[1] for x in rows)
    print(f"| {name} | " + " | ".join(cells) + f" | {false / images * 20:.2f} | {statistics.median(v['times']):.1f} |")
