"""The pictures of the README and the guides, made from inputs that ship with blazeconv (``make docs``):

    python docs/make_pictures.py detect   docs/images/detect.png    # detect --annotate on photos
    python docs/make_pictures.py blur     docs/images/blur.png      # inputs and blur's outputs, a photo and a frame
    python docs/make_pictures.py crops    docs/images/crops.png     # detect --crops on photos; --track --best on a clip
    python docs/make_pictures.py overview docs/images/overview.png  # one of each, for the README
    python docs/make_pictures.py bench    docs/images/bench.png     # the network table of docs/bench.md as a plot

The commands run as a user runs them (``python -m blazeconv`` of this checkout) in a temporary folder; the pictures
are composed with Pillow, the plot drawn with matplotlib.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = [ROOT / "blazeconv/photos/astronaut.png", ROOT / "blazeconv/photos/sergey.png", ROOT / "tests/data/images/3faces.png"]
CLIP = ROOT / "tests/data/videos/asl_again.mkv"  # CC BY 4.0, Intel IoT Devkit sample videos
CLIP_FRAME = 40
HEIGHT = 240  # each panel's height in a strip
GAP = 8


def _blazeconv(*args: str | Path, cwd: Path) -> None:
    subprocess.run([sys.executable, "-m", "blazeconv", *map(str, args), "--quiet"] if args[0] == "detect"
                   else [sys.executable, "-m", "blazeconv", *map(str, args)], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL)


def _to_height(image: Image.Image, height: int = HEIGHT) -> Image.Image:
    return image.convert("RGB").resize((round(image.width * height / image.height), height), Image.LANCZOS)


def _strip(images: list[Image.Image], gap: int = GAP) -> Image.Image:
    """Images side by side on white, tops aligned."""
    sheet = Image.new("RGB", (sum(i.width for i in images) + gap * (len(images) - 1), max(i.height for i in images)), "white")
    x = 0
    for image in images:
        sheet.paste(image, (x, 0))
        x += image.width + gap
    return sheet


def _stack(rows: list[Image.Image], gap: int = GAP) -> Image.Image:
    sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows) + gap * (len(rows) - 1)), "white")
    y = 0
    for row in rows:
        sheet.paste(row, (0, y))
        y += row.height + gap
    return sheet


def _caption(image: Image.Image, text: str) -> Image.Image:
    framed = Image.new("RGB", (image.width, image.height + 22), "white")
    ImageDraw.Draw(framed).text((6, 5), text, fill="black")
    framed.paste(image, (0, 22))
    return framed


def _clip_frame(index: int = CLIP_FRAME) -> np.ndarray:
    """Frame ``index`` of the shipped clip, (H, W, 3) uint8 RGB."""
    import av

    with av.open(str(CLIP)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                return frame.to_ndarray(format="rgb24")
    raise SystemExit(f"{CLIP}: fewer than {index + 1} frames")


def _photos(work: Path) -> Path:
    """The photos copied into ``work/photos`` (one folder, as a user's photos are)."""
    folder = work / "photos"
    if not folder.exists():
        folder.mkdir()
        for photo in PHOTOS:
            (folder / photo.name).write_bytes(photo.read_bytes())
    return folder


def annotated(work: Path) -> list[Image.Image]:
    """``blazeconv detect photos/ --annotate annotated/`` -> the annotated photos."""
    _blazeconv("detect", _photos(work), "--annotate", work / "annotated", cwd=work)
    return [Image.open(work / "annotated" / f"{p.stem}.png") for p in PHOTOS]


def blurred() -> list[tuple[Image.Image, Image.Image]]:
    """(input, ``blazeconv.blur`` of it) for a photo and a frame of the clip, blur's defaults."""
    import blazeconv

    pairs = []
    for rgb in (np.asarray(Image.open(PHOTOS[0]).convert("RGB")), _clip_frame()):
        pairs.append((Image.fromarray(rgb), Image.fromarray(blazeconv.blur(rgb))))
    return pairs


def photo_crops(work: Path) -> list[Image.Image]:
    """``blazeconv detect photos/ --crops crops/`` -> every crop, in the photos' order."""
    _blazeconv("detect", _photos(work), "--crops", work / "crops", cwd=work)
    return [Image.open(c) for p in PHOTOS for c in sorted((work / "crops" / p.stem).glob("*.png"))]


def track_crops(work: Path, best: int = 4, tracks: int = 1) -> list[list[Image.Image]]:
    """``blazeconv detect CLIP --crops --track --best N`` -> the crops of the ``tracks`` surest tracks (the highest
    mean score in crops/index.jsonl: the detector's short false tracks, which blur keeps, are not what to show)."""
    _blazeconv("detect", CLIP, "--crops", work / "tracks", "--track", "--best", str(best), cwd=work)
    scores: dict[str, list[float]] = {}
    for line in (work / "tracks" / "index.jsonl").read_text().splitlines():
        record = json.loads(line)
        scores.setdefault(str(Path(record["crop"]).parent), []).append(record["score"])
    surest = sorted(scores, key=lambda folder: -sum(scores[folder]) / len(scores[folder]))[:tracks]
    return [[Image.open(work / "tracks" / folder / Path(c).name) for c in sorted(Path(work / "tracks" / folder).glob("*.png"))]
            for folder in surest]


def picture(kind: str, work: Path) -> Image.Image:
    if kind == "detect":
        return _strip([_to_height(i) for i in annotated(work)])
    if kind == "blur":
        return _strip([_strip([_caption(_to_height(a), "input"), _caption(_to_height(b), "blazeconv blur")], 2)
                       for a, b in blurred()], 24)
    if kind == "crops":
        rows = [_caption(_strip([_to_height(c, 112) for c in photo_crops(work)]), "detect photos --crops")]
        for crops in track_crops(work):
            rows.append(_caption(_strip([_to_height(c, 112) for c in crops]), "detect clip --crops --track --best 4: the surest track"))
        return _stack(rows)
    if kind == "overview":
        found = _to_height(annotated(work)[0])
        photo, hidden = blurred()[1]
        crops = photo_crops(work)[:4]
        grid = _stack([_strip([_to_height(c, 116) for c in crops[:2]]), _strip([_to_height(c, 116) for c in crops[2:4]])])
        return _strip([_caption(found, "detect --annotate"), _caption(_to_height(hidden), "blur"),
                       _caption(_to_height(grid), "detect --crops")], 16)
    if kind == "bench":
        return bench_plot(work)
    raise SystemExit(f"unknown picture {kind!r}: detect, blur, crops, overview, bench")


def bench_table(markdown: str) -> tuple[list[str], dict[str, list[float]]]:
    """The batch-1 rows of docs/bench.md's network table: (runtimes, {variant: [ms per runtime]})."""
    start = markdown.index("| variant | batch | LiteRT (XNNPACK) |")
    lines = markdown[start:].split("\n\n")[0].splitlines()
    runtimes = [c.strip() for c in lines[0].strip("|").split("|")[2:]]
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[1] == "1":
            rows[cells[0]] = [float(re.match(r"[\d.]+", c).group()) for c in cells[2:]]
    return runtimes, rows


def bench_plot(work: Path) -> Image.Image:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runtimes, rows = bench_table((ROOT / "docs/bench.md").read_text(encoding="utf-8"))
    figure, axes = plt.subplots(figsize=(8, 3.6), dpi=100)
    width = 0.8 / len(runtimes)
    for i, runtime in enumerate(runtimes):
        axes.bar([v + i * width for v in range(len(rows))], [ms[i] for ms in rows.values()], width, label=runtime)
    axes.set_xticks([v + 0.4 - width / 2 for v in range(len(rows))], list(rows))
    axes.set_ylabel("ms per image (batch 1, one thread)")
    axes.legend(fontsize=8, frameon=False)
    axes.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    path = work / "bench.png"
    figure.savefig(path)
    plt.close(figure)
    return Image.open(path)


if __name__ == "__main__":
    kind, target = sys.argv[1:3]
    with tempfile.TemporaryDirectory() as folder:
        image = picture(kind, Path(folder))
        image.load()
        image.save(target, optimize=True)
    print(f"wrote {target} ({image.width}x{image.height})", file=sys.stderr)
