"""recall / AP50 / false detections per set for detection configurations, through blazeconv.evaluate.

python docs/every_face/sweep.py SETS CONFIG_NAME[,..] [--sets a,b] [--json out.json]
A config is NAME=key:value;key:value (DetectionSettings fields) or one of the named ones below.
"""
import json, sys, time
from pathlib import Path

import blazeconv
from blazeconv.detection.settings import DetectionSettings

NAMED = {
    "default": {},
    "before": {"model": "short_range", "exact": True},
}
for m in ("short_range", "full_range", "full_range_sparse", "back", "front"):
    NAMED[f"{m}"] = {"model": m}
    NAMED[f"{m}:exact"] = {"model": m, "exact": True}


def parse(spec):
    if spec in NAMED:
        return spec, NAMED[spec]
    name, _, rest = spec.partition("=")
    options = {}
    for item in rest.split(";") if rest else []:
        k, v = item.split(":", 1)
        options[k] = {"True": True, "False": False, "None": None}.get(v, v)
        for cast in (int, float):
            try:
                options[k] = cast(v); break
            except ValueError:
                pass
    return name, options


def main():
    root = Path(sys.argv[1])
    configs = [parse(s) for s in sys.argv[2].split(",")]
    sets = sys.argv[sys.argv.index("--sets") + 1].split(",") if "--sets" in sys.argv else \
        ["group", "phone12", "phone48", "shared", "oneby", "mosaic", "empty"]
    rows = []
    for name, options in configs:
        for s in sets:
            settings = DetectionSettings(**options)
            start = time.perf_counter()
            r = blazeconv.evaluate(root / s, root / s / "labels.json", settings=settings)
            seconds = time.perf_counter() - start
            d = r.to_dict()
            row = {"config": name, "set": s, "images": d["images"], "faces": d["faces"], "found": d["found"],
                   "recall": d["recall"], "false": d["false"], "detections": d["detections"],
                   "ap50": d["ap50"], "seconds": round(seconds, 2),
                   "bands": {k: (v["faces"], v["found"], v["false"]) for k, v in d["bands"].items() if v["faces"] or v["detections"]}}
            rows.append(row)
            rec = "  -  " if row["recall"] is None else f"{row['recall']:.3f}"
            ap = "  -  " if row["ap50"] is None else f"{row['ap50']:.3f}"
            print(f"{name:28s} {s:8s} n={row['images']:3d} faces={row['faces']:4d} found={row['found']:4d} "
                  f"recall={rec} false={row['false']:3d} ap50={ap} {seconds:6.2f}s  {row['bands']}", flush=True)
        mine = [r for r in rows if r["config"] == name]
        faces = sum(r["faces"] for r in mine); found = sum(r["found"] for r in mine)
        false = sum(r["false"] for r in mine); images = sum(r["images"] for r in mine)
        worst = min((r["recall"], r["set"]) for r in mine if r["recall"] is not None and r["set"] != "oneby")
        print(f"TOTAL {name:22s} found {found}/{faces} = {found / faces:.3f}, worst set {worst[1]} {worst[0]:.3f}, "
              f"false {false} ({false / images * 20:.2f} per 20 pictures), {sum(r['seconds'] for r in mine):.1f} s",
              flush=True)
    if "--json" in sys.argv:
        Path(sys.argv[sys.argv.index("--json") + 1]).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
