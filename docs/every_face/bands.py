"""python docs/every_face/bands.py MODEL[,..] SIZE[,..]: detection rate vs face size in model-input pixels, per model: each labelled face placed in a square tile whose
side makes the face s model pixels, at three offsets; the tile is cut from the photo (outside: black)."""
import sys, xml.etree.ElementTree as ET
import numpy as np
from PIL import Image
from blazeconv import FaceDetector

root = str(__import__("pathlib").Path(__file__).resolve().parents[2] / "tests/data/labelled") + "/"
faces = []
for image in ET.parse(root + "training.xml").getroot().iter("image"):
    rgb = np.asarray(Image.open(root + image.get("file")).convert("RGB"))
    for box in image.iter("box"):
        t, l, w, h = (int(box.get(k)) for k in ("top", "left", "width", "height"))
        faces.append((rgb, (l, t, l + w, t + h)))


def iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0])); iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    i = ix * iy
    return i / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - i)


def cut(rgb, x0, y0, side):
    out = np.zeros((side, side, 3), np.uint8)
    H, W = rgb.shape[:2]
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(W, x0 + side), min(H, y0 + side)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0: sy1 - y0, sx0 - x0: sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
    return out


models = sys.argv[1].split(",")
sizes = [int(s) for s in sys.argv[2].split(",")]
for name in models:
    det = FaceDetector(model=name, min_score=0.05)
    S = det.variant.input_size
    print(name, S, flush=True)
    for s in sizes:
        best = []
        for rgb, (x0, y0, x1, y1) in faces:
            side_face = max(x1 - x0, y1 - y0)
            T = max(1, round(side_face * S / s))
            for fx, fy in ((0.5, 0.5), (0.25, 0.35), (0.7, 0.65)):
                cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
                tx, ty = round(cx - fx * T), round(cy - fy * T)
                tile = cut(rgb, tx, ty, T)
                found = det(tile)
                sc = 0.0
                for d in found:
                    b = [d.box[0] * T + tx, d.box[1] * T + ty, d.box[2] * T + tx, d.box[3] * T + ty]
                    if iou(b, (x0, y0, x1, y1)) >= 0.3:
                        sc = max(sc, d.score)
                best.append(sc)
        best = np.array(best)
        print(f"  s={s:4d}  " + "  ".join(f"@{t}:{(best >= t).mean():.2f}" for t in (0.3, 0.4, 0.5, 0.6, 0.75)), flush=True)
