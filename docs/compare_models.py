"""Draw what each shipped model finds on one photo, side by side: ``make docs`` writes docs/model_comparison.png.

Usage: python docs/compare_models.py IMAGE OUT.png [VARIANT ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw

from blazeconv.detection import annotate, detect_image, load_image
from blazeconv.sources import cached_weights, load_model
from blazeconv.variants import get_variant


def compare(image_path: Path, variants: list[str], width: int = 420) -> Image.Image:
    image = load_image(image_path)
    panels = []
    for name in variants:
        variant = get_variant(name)
        found = detect_image(load_model(cached_weights(variant)), image, variant=variant)
        panel = annotate(image, found)
        panel = panel.resize((width, round(panel.height * width / panel.width)), Image.LANCZOS)
        caption = Image.new("RGB", (width, 28), "white")
        ImageDraw.Draw(caption).text(
            (8, 8), f"{name}: {len(found)} face(s), min score {variant.min_score:g}", fill="black"
        )
        framed = Image.new("RGB", (width, panel.height + 28), "white")
        framed.paste(caption, (0, 0))
        framed.paste(panel, (0, 28))
        panels.append(framed)
    sheet = Image.new("RGB", (sum(p.width for p in panels) + 8 * (len(panels) - 1), max(p.height for p in panels)), "white")
    x = 0
    for panel in panels:
        sheet.paste(panel, (x, 0))
        x += panel.width + 8
    return sheet


if __name__ == "__main__":
    source, target, *names = sys.argv[1:]
    compare(Path(source), names or ["short_range", "full_range", "full_range_sparse"]).save(target)
