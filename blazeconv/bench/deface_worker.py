"""deface's CenterFace detector, and deface's own CLI, in a worker process, for measuring ``blazeconv blur``.

Run by path by the interpreter of deface's own environment (``.venv-deface``: ``pip install deface==1.5.0 av``), so
it needs only the standard library, numpy, PyAV and deface (with what deface itself pulls in: OpenCV, imageio,
Pillow) and never imports blazeconv::

    python deface_worker.py detect CLIP OUT.jsonl [--threshold T] [--scale WxH] [--backend B]
    python deface_worker.py detect-image IMAGE OUT.json [--threshold T] [--scale WxH] [--backend B]
    python deface_worker.py anonymise CLIP OUT.mp4 [DEFACE_OPTION...]

``detect``: decode the first video stream of ``CLIP`` with PyAV (frame threading, ``rgb24``, frames without a
timestamp skipped, turned upright by the display matrix's ``frame.rotation`` with ``np.rot90``: blazeconv's reader
does the same) and run ``deface.centerface.CenterFace`` on every frame as deface's CLI does: one ``CenterFace(in_shape,
backend)`` built once (``in_shape`` None unless ``--scale``, backend ``auto``), called ``centerface(frame_rgb,
threshold=T)`` on the ``(H, W, 3)`` uint8 RGB frame (deface's CLI passes imageio's RGB frames unchanged). ``T``
defaults to deface's CLI default, 0.2. One JSON line per frame: ``{"frame": k, "time": seconds, "boxes": [[x1, y1, x2,
y2, score], ...]}``, pixels of the upright frame (continuous coordinates, x right, y down), every detection whose
CenterFace heatmap score is above ``T`` after CenterFace's own NMS. Frame ``k`` counts decoded frames from 0, ``time``
is pts x time base. Printed: ``frames boxes backend``.

Because CenterFace's NMS (IoU >= 0.3, greedy by descending score) runs after its threshold, a box scoring at least
``s >= T`` can only be suppressed by a higher-scoring one: keeping the boxes with score >= ``s`` from a run at ``T``
gives exactly a run at ``s`` (up to the strict ``>`` CenterFace applies to its threshold).

Differences from what deface's CLI sees, by design: deface reads videos through imageio-ffmpeg's ``ffmpeg`` pipe,
which resamples to the stream's nominal constant frame rate (duplicating or dropping frames) and whose RGB conversion
is that of imageio-ffmpeg's own FFmpeg build; here every decoded frame is seen once, as blazeconv sees it.

``detect-image``: the same on one photo read with Pillow, turned upright by its EXIF orientation and converted to RGB;
writes ``{"image": path, "width": W, "height": H, "frame": 0, "boxes": [...]}``. (deface's CLI reads photos with
``imageio.v2.imread``; a grey or RGBA photo reaches CenterFace as RGB either way, alpha dropped.)

``anonymise``: run deface's own CLI on ``CLIP``, exactly ``deface CLIP -o OUT.mp4 [DEFACE_OPTION...]`` (the
``deface`` console script beside this interpreter), so a bench can time deface whole-process. With no options these
are deface 1.5.0's defaults: ``--thresh 0.2 --mask-scale 1.3 --replacewith blur`` (ellipse masks), the network on
the full frame rounded up to multiples of 32, ``--ffmpeg-config '{"codec": "libx264"}'``, output at the input's
nominal fps, audio dropped unless ``--keep-audio``. Exits with deface's exit code, or 1 when deface exits 0 but
wrote no output (it skips a file whose type ``mimetypes`` cannot tell with a message only).

CenterFace's preprocessing (deface 1.5.0 ``centerface.py``): ``cv2.dnn.blobFromImage(img, scalefactor=1.0,
size=(w, h), mean=(0, 0, 0), swapRB=False)``: the frame's channels in the order given (RGB from deface's CLI), raw 0..255
values, no mean or scale, resized with OpenCV's bilinear ``cv2.resize`` (a stretch, no letterbox, no crop) to ``w =
ceil(W / 32) * 32``, ``h = ceil(H / 32) * 32`` (``W x H``: the frame, or ``--scale``); boxes are mapped back by
dividing x by ``w / W`` and y by ``h / H``.
"""

import json
import os
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] not in ("detect", "detect-image", "anonymise"):
        usage = next(block for block in __doc__.split("\n\n") if "python deface_worker.py" in block)
        print(f"usage:\n{usage}", file=sys.stderr)
        return 2
    mode, source, out, rest = argv[0], argv[1], argv[2], argv[3:]
    if mode == "anonymise":
        return _anonymise(source, out, rest)
    options = _options(rest)
    from deface.centerface import CenterFace

    centerface = CenterFace(in_shape=options["scale"], backend=options["backend"])
    if mode == "detect":
        frames, boxes = _detect_video(centerface, source, out, options["threshold"])
    else:
        frames, boxes = 1, _detect_image(centerface, source, out, options["threshold"])
    print(frames, boxes, centerface.backend)
    return 0


def _options(rest: list[str]) -> dict:
    """``--threshold T`` (0.2: deface's CLI default), ``--scale WxH`` (None: the frame's size), ``--backend``."""
    options = {"threshold": 0.2, "scale": None, "backend": "auto"}
    names = {"--threshold": "threshold", "--scale": "scale", "--backend": "backend"}
    if len(rest) % 2 or any(name not in names for name in rest[::2]):
        raise SystemExit(f"deface_worker: unknown options {rest!r} (known: {', '.join(names)})")
    for name, value in zip(rest[::2], rest[1::2]):
        options[names[name]] = value
    options["threshold"] = float(options["threshold"])
    if options["scale"] is not None:  # as deface's CLI parses --scale
        width, height = options["scale"].split("x")
        options["scale"] = int(width), int(height)
    return options


def _boxes(centerface, rgb, threshold: float) -> list[list[float]]:
    """CenterFace's detections on one ``(H, W, 3)`` uint8 RGB frame as ``[x1, y1, x2, y2, score]`` in its pixels."""
    dets, _ = centerface(rgb, threshold=threshold)  # (N, 5) float32, landmarks dropped as deface's CLI does
    return [[float(v) for v in det[:5]] for det in dets]


def _detect_video(centerface, clip: str, out: str, threshold: float) -> tuple[int, int]:
    """CenterFace on every frame of ``clip``'s first video stream; (frames, boxes), and the JSON lines."""
    import av
    import numpy as np

    frames = boxes = 0
    with av.open(clip) as container, open(out, "w") as lines:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame threading, as blazeconv's reader
        for frame in container.decode(stream):
            if frame.pts is None:
                continue  # as blazeconv's reader: a frame without a timestamp is not placed in time
            rgb = frame.to_ndarray(format="rgb24")  # (H, W, 3) uint8, as stored
            turns = round((getattr(frame, "rotation", 0) or 0) / 90) % 4
            rgb = np.ascontiguousarray(np.rot90(rgb, turns) if turns else rgb)  # upright (H', W', 3)
            found = _boxes(centerface, rgb, threshold)
            boxes += len(found)
            lines.write(json.dumps({"frame": frames, "time": float(frame.pts * stream.time_base), "boxes": found}) + "\n")
            frames += 1
    return frames, boxes


def _detect_image(centerface, path: str, out: str, threshold: float) -> int:
    """CenterFace on one photo, upright by EXIF, as RGB; the number of boxes, and the JSON file."""
    import numpy as np
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        rgb = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))  # (H, W, 3) uint8, upright
    found = _boxes(centerface, np.ascontiguousarray(rgb), threshold)
    height, width = rgb.shape[:2]
    with open(out, "w") as stream:
        json.dump({"image": path, "width": width, "height": height, "frame": 0, "boxes": found}, stream)
        stream.write("\n")
    return len(found)


def _anonymise(clip: str, out: str, extra: list[str]) -> int:
    """``deface CLIP -o OUT [extra...]``, deface's console script beside this interpreter; its exit code."""
    script = os.path.join(os.path.dirname(sys.executable), "deface")
    command = [script] if os.path.exists(script) else [sys.executable, "-m", "deface.deface"]
    if os.path.exists(out):
        os.remove(out)  # so that "deface wrote nothing" cannot pass for a stale file
    start = time.perf_counter()
    code = subprocess.call([*command, clip, "-o", out, *extra])
    seconds = time.perf_counter() - start
    if code == 0 and not os.path.exists(out):
        print(f"deface_worker: deface exited 0 but wrote no {out}", file=sys.stderr)
        return 1
    print(f"deface {seconds:.3f} s exit {code}", file=sys.stderr)
    return code


if __name__ == "__main__":
    # Run by path, Python puts this file's folder first on sys.path: its sibling modules must not shadow what
    # numpy, cv2 and deface import.
    here = os.path.dirname(os.path.realpath(__file__))
    sys.path[:] = [p for p in sys.path if not p or os.path.realpath(p) != here]
    sys.exit(main(sys.argv[1:]))
