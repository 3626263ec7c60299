"""``blazeconv train`` / ``blazeconv.train``: targets that decode to their faces, augmentation that keeps keypoints
right, a loss that falls, sparse zeros kept, resume equal to an uninterrupted run, and every bad input refused.

Real models and real photos throughout (``tests/data/images``, the hand-labelled ``tests/data/labelled``); labels
made from a model's own detections are the one case where the right answer is known exactly.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import DATA, assert_one_line_error

from blazeconv.detection.postprocess import decode
from blazeconv.training import Augmentation, TrainingError, TrainingOptions, encode, match, model_input, read_samples
from blazeconv.training.loop import batch_targets
from blazeconv.training.loss import loss
from blazeconv.training.targets import Matching
from blazeconv.variants import KEYPOINT_NAMES, VARIANTS

PHOTOS = [DATA / "images" / name for name in ("1face.png", "3faces.png", "4faces.png", "astronaut.png")]
LABELLED = DATA / "labelled"


def _self_labels(variant: str, paths, folder: Path) -> Path:
    """A ``detect --json`` document of ``variant``'s own detections on ``paths`` (boxes and keypoints)."""
    from blazeconv import FaceDetector

    detector = FaceDetector(variant, backend="torch", exact=True)  # the whole picture, as MediaPipe runs it
    images = []
    for path, faces in zip(paths, detector(list(paths))):
        from PIL import Image

        width, height = Image.open(path).size
        images.append({"path": str(path), "width": width, "height": height,
                       "detections": [face.to_dict() for face in faces]})
    labels = folder / f"{variant}-labels.json"
    labels.write_text(json.dumps({"images": images}))
    return labels


@pytest.fixture(scope="module")
def self_labels(tmp_path_factory):
    folder = tmp_path_factory.mktemp("labels")
    return {v: _self_labels(v, PHOTOS, folder) for v in ("short_range", "full_range_sparse")}


# ------------------------------------------------------------------------------------------ targets


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_encode_is_the_inverse_of_decode(variant):
    """encode(decode(x)) == x on every anchor of every variant, for raw values over the range a model outputs."""
    v = VARIANTS[variant]
    anchors = v.anchors()
    rng = np.random.default_rng(0)
    raw = rng.normal(0, v.input_size / 8, (len(anchors), 16)).astype(np.float32)
    raw[:, 2:4] = np.abs(raw[:, 2:4]) + 1  # sizes are positive
    boxes, keypoints, _ = decode(raw, np.zeros(len(anchors)), anchors, v.input_size)
    back = encode(boxes, keypoints, anchors, v.input_size)
    # float32 decoding rounds each value to ~1e-7 of the input; in input pixels that is below 1e-4 (192 px * 6e-8 *
    # a few operations)
    np.testing.assert_allclose(back, raw, atol=2e-4 * v.input_size / 128, rtol=0)


def test_labels_from_the_models_own_detections_are_what_it_already_outputs(self_labels):
    """On its own detections, the matched anchors that fire (score > 0.5) already output the targets: box values
    within 3 % of the face's size on average (what is left is weighted NMS averaging 1-3 anchors into the label),
    against 10 % (the mean over x, y, w, h) for the same faces moved by a fifth of their size; no anchor that fires is trained as a
    negative. (measured: 0.7-1.6 % for full_range_sparse, 1.3-1.7 % for short_range)"""
    from blazeconv.sources import load_module

    for name in ("full_range_sparse", "short_range"):
        model = load_module(name)
        variant, anchors = model.variant, model.variant.anchors()
        made = [model_input(s, variant.input_size) for s in read_samples(self_labels[name], DATA / "images")]
        with torch.no_grad():
            regressors, logits = model(torch.from_numpy(np.stack([t for t, _ in made])))
        fired = torch.sigmoid(logits[..., 0]) > 0.5
        exact = batch_targets([t for _, t in made], variant, anchors, Matching())
        moved = []
        for _, t in made:
            shift = (t.boxes[:, 2:3] - t.boxes[:, 0:1]) / 5  # (M, 1)
            moved.append(type(t)(t.boxes + shift, t.keypoints + shift[:, :, None], t.labelled, t.ignore))
        shifted = batch_targets(moved, variant, anchors, Matching())
        for targets, bound in ((exact, (0, 0.03)), (shifted, (0.05, 1.0))):
            chosen = targets.positive & fired
            assert chosen.sum() >= 4, name
            error = ((regressors - targets.raw)[..., :4].abs() / targets.size[..., None])[chosen].mean()
            assert bound[0] <= float(error) < bound[1], (name, float(error))
        assert not (fired & exact.negative).any()
        # the loss says the same
        assert float(loss(regressors, logits, exact)["box"]) < float(loss(regressors, logits, shifted)["box"])


def test_a_face_is_matched_on_the_grid_of_its_size():
    """short_range: a 20 px face goes to the 8 px grid (512 anchors), a 72 px face to the 16 px one (as the model's
    own firing anchors were measured: module docstring of ``targets``)."""
    v = VARIANTS["short_range"]
    anchors = v.anchors()
    small = np.array([[0.40, 0.40, 0.40 + 20 / 128, 0.40 + 20 / 128]], np.float32)
    large = np.array([[0.20, 0.20, 0.20 + 72 / 128, 0.20 + 72 / 128]], np.float32)
    for boxes, grid in ((small, slice(0, 512)), (large, slice(512, 896))):
        assignment = match(v, anchors, boxes, np.zeros(1, bool))
        assert assignment.positive.sum() >= 1
        assert assignment.positive[grid].sum() == assignment.positive.sum()


# ------------------------------------------------------------------------------------------ data


def test_a_flip_swaps_left_and_right_keypoints_as_the_model_sees_them(self_labels):
    """Mirrored, the face shows its left eye where its right eye was: the mirrored left eye becomes the right eye
    (on the image's left again, as on every upright face looking at the camera). The model run on the flipped
    input finds its keypoints where the flipped targets put them (each keypoint by name, within 2 px of the input)."""
    from blazeconv.detection.postprocess import decode_and_suppress
    from blazeconv.sources import load_module

    model = load_module("short_range")
    size = model.variant.input_size
    sample = next(s for s in read_samples(self_labels["short_range"], DATA / "images") if s.path.name == "1face.png")
    flip = Augmentation(flip=1.0, min_zoom=1.0, max_zoom=1.0, brightness=0.0)
    plain_input, plain = model_input(sample, size)
    flipped_input, flipped = model_input(sample, size, np.random.default_rng(0), flip)
    right, left = KEYPOINT_NAMES.index("right_eye"), KEYPOINT_NAMES.index("left_eye")
    assert plain.keypoints[0, right, 0] < plain.keypoints[0, left, 0]  # the subject's right eye: the image's left
    assert flipped.keypoints[0, right, 0] < flipped.keypoints[0, left, 0]
    np.testing.assert_allclose(flipped.keypoints[0, right, 0], 1 - plain.keypoints[0, left, 0], atol=1e-6)
    with torch.no_grad():
        raw, logits = model(torch.from_numpy(flipped_input)[None])
    _, points, _ = decode_and_suppress(raw[0].numpy(), logits[0].numpy(), model.variant.anchors(), size, 0.5)
    assert len(points) == 1
    np.testing.assert_allclose(points[0] * size, flipped.keypoints[0] * size, atol=2.0)


def test_scale_jitter_keeps_faces_where_they_are_in_the_picture(self_labels):
    """A zoomed crop letterboxed to the input: each face's target box is its box in the crop (checked by running
    the model on the crop: it finds the faces where the targets say, IoU > 0.6)."""
    from blazeconv.detection.postprocess import decode_and_suppress, iou_matrix
    from blazeconv.sources import load_module

    model = load_module("full_range_sparse")
    size = model.variant.input_size
    sample = next(s for s in read_samples(self_labels["full_range_sparse"], DATA / "images")
                  if s.path.name == "3faces.png")
    zoom = Augmentation(flip=0.0, min_zoom=0.6, max_zoom=0.6, brightness=0.0, min_visible=1.0)
    for seed in range(4):
        tensor, targets = model_input(sample, size, np.random.default_rng(seed), zoom)
        with torch.no_grad():
            raw, logits = model(torch.from_numpy(tensor)[None])
        boxes, _, _ = decode_and_suppress(raw[0].numpy(), logits[0].numpy(), model.variant.anchors(), size, 0.5)
        for box in targets.boxes[~targets.ignore]:
            assert max(iou_matrix(np.stack([box, b]))[0, 1] for b in boxes) > 0.6


def test_the_hand_labelled_photos_are_read_with_evals_reader():
    samples = read_samples(LABELLED / "training.xml")
    assert len(samples) == 4 and sum(len(s.boxes) for s in samples) == 18
    assert all(not s.labelled.any() for s in samples)  # dlib boxes carry no keypoints: none are trained


def test_blazeconv_json_keypoints_and_ignore_regions_are_read(tmp_path):
    labels = tmp_path / "labels.jsonl"
    face = {"box": [0.3, 0.2, 0.6, 0.5], "keypoints": [[0.4, 0.3], [0.5, 0.3], None, None, None, [0.58, 0.35]]}
    unsure = {"box": [0.7, 0.7, 0.8, 0.8], "ignore": True}
    labels.write_text(json.dumps({"path": "1face.png", "width": 128, "height": 128, "detections": [face, unsure]}))
    sample = read_samples(labels, DATA / "images")[0]
    assert sample.ignore.tolist() == [False, True]
    assert sample.labelled[0].tolist() == [True, True, False, False, False, True]
    np.testing.assert_allclose(sample.keypoints[0, 5], [0.58 * 128, 0.35 * 128], rtol=1e-6)


def test_retinaface_landmarks_become_keypoints(tmp_path):
    """RetinaFace's label.txt: 5 landmarks (image order: left eye first) -> MediaPipe's right eye, left eye, nose,
    mouth centre; ears not labelled; -1 (not labelled) kept out."""
    photo = DATA / "images" / "1face.png"
    labels = tmp_path / "label.txt"
    labels.write_text(f"# {photo.name}\n40 30 30 30 50.0 40.0 0.0 62.0 40.0 0.0 56.0 48.0 0.0 50.0 54.0 0.0 "
                      "62.0 54.0 0.0 0.9\n45 35 20 20 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1\n")
    sample = read_samples(labels, DATA / "images")[0]
    np.testing.assert_allclose(sample.keypoints[0, :4], [[50, 40], [62, 40], [56, 48], [56, 54]])
    assert sample.labelled[0].tolist() == [True, True, True, True, False, False]
    assert not sample.labelled[1].any()


# ------------------------------------------------------------------------------------------ the loop


def _train(labels, out, **options):
    from blazeconv.training import train

    defaults = {"epochs": 2, "batch_size": 4, "augmentation": Augmentation(brightness=0.0), "device": "cpu"}
    return train(labels, DATA / "images", output=out, model=options.pop("model", "short_range"),
                 **{**defaults, **options})


def test_the_loss_falls_over_a_few_steps(self_labels, tmp_path):
    """Labels moved off the model's answers (boxes a tenth larger): a few steps on four photos bring the loss down."""
    document = json.loads(self_labels["short_range"].read_text())
    for image in document["images"]:
        for face in image["detections"]:
            x0, y0, x1, y1 = face["box"]
            grow = (x1 - x0) / 20
            face["box"] = [x0 - grow, y0 - grow, x1 + grow, y1 + grow]
    labels = tmp_path / "moved.json"
    labels.write_text(json.dumps(document))
    result = _train(labels, tmp_path / "out.pth", epochs=6, batch_size=4, learning_rate=1e-3,
                    augmentation=Augmentation.none())
    totals = [epoch["total"] for epoch in result.history]
    assert totals[-1] < 0.7 * totals[0], totals


def test_resuming_an_interrupted_run_gives_the_uninterrupted_weights(self_labels, tmp_path):
    from blazeconv.interrupts import Interrupted

    straight = _train(self_labels["short_range"], tmp_path / "straight.pth", learning_rate=1e-3)

    def interrupt(progress):
        if progress.epoch == 2:
            raise Interrupted(signal.SIGINT)

    with pytest.raises(Interrupted, match="resume with --resume"):
        _train(self_labels["short_range"], tmp_path / "cut.pth", learning_rate=1e-3, on_step=interrupt)
    assert not (tmp_path / "cut.pth").exists() and (tmp_path / "cut.ckpt").exists()
    resumed = _train(self_labels["short_range"], tmp_path / "cut.pth", learning_rate=1e-3, resume=True)
    assert resumed.resumed_from == 1 and resumed.epochs == 2
    a, b = (torch.load(p, weights_only=True) for p in (straight.output, resumed.output))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], atol=0, rtol=0)  # same seed, same machine: the same bits


def test_resume_with_other_options_is_refused(self_labels, tmp_path):
    _train(self_labels["short_range"], tmp_path / "out.pth", epochs=1)
    with pytest.raises(TrainingError, match="other options than the run had .*learning_rate"):
        _train(self_labels["short_range"], tmp_path / "out.pth", epochs=2, learning_rate=5e-3, resume=True)


def test_a_sparse_model_keeps_its_zeros_and_goes_back_into_its_tflite(self_labels, tmp_path):
    from blazeconv import torch2tflite
    from blazeconv.sources import load_module

    before = load_module("full_range_sparse").state_dict()
    result = _train(self_labels["full_range_sparse"], tmp_path / "out.pth", model="full_range_sparse", epochs=1,
                    learning_rate=1e-3)
    after = torch.load(result.output, weights_only=True)
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert moved  # it trained
    for key in before:
        zeros = before[key] == 0
        if zeros.float().mean() > 0.5:  # the sparse tensors (70 % zeros)
            assert torch.count_nonzero(after[key][zeros]) == 0, key
    written = torch2tflite(result.output, "full_range_sparse", tmp_path / "out.tflite")
    assert written.changed > 0
    assert 0 < result.float16_rounding < 1e-2 and 0 <= result.float16_score_change < 0.05


def test_a_frozen_backbone_stays_as_it_was(self_labels, tmp_path):
    from blazeconv.sources import load_module

    before = load_module("short_range").state_dict()
    result = _train(self_labels["short_range"], tmp_path / "out.pth", epochs=1, learning_rate=1e-3,
                    freeze_backbone=True)
    after = torch.load(result.output, weights_only=True)
    for key in before:
        changed = not torch.equal(before[key], after[key])
        assert changed == key.startswith(("classifier", "regressor")) or not changed and key.startswith(
            ("classifier", "regressor")), key
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("regressor"))


def test_a_loss_that_turns_nan_stops_and_keeps_the_last_good_checkpoint(self_labels, tmp_path, monkeypatch, run_cli):
    import blazeconv.training.loop as loop

    calls = []

    def poisoned(*args, **kwargs):
        losses = loss(*args, **kwargs)
        calls.append(1)
        if len(calls) > 1:  # the second step: epoch 2 (one step an epoch)
            losses["total"] = losses["total"] * float("nan")
        return losses

    monkeypatch.setattr(loop, "loss", poisoned)
    out = tmp_path / "out.pth"
    code, _, err = run_cli("train", "--labels", self_labels["short_range"], "--images", DATA / "images", "-o", out,
                           "--epochs", "3", "--batch-size", "8", "-q")
    assert_one_line_error(code, err, "epoch 2 step 1: the loss is not finite", 1)
    assert "last good checkpoint" in err and "(epoch 1)" in err
    assert not out.exists()
    assert torch.load(tmp_path / "out.ckpt", weights_only=True)["epoch"] == 1


# ------------------------------------------------------------------------------------------ the command and bad input


@pytest.mark.slow
def test_the_command_writes_weights_every_command_takes(self_labels, tmp_path, run_cli):
    out = tmp_path / "tuned.pth"
    code, _, err = run_cli("train", "--labels", self_labels["short_range"], "--images", DATA / "images", "-o", out,
                           "--epochs", "1", "--batch-size", "4")
    assert code == 0, err
    assert "epoch 1/1 step 1/1: loss" in err and f"wrote {out}" in err and "float16 storage" in err
    code, stdout, err = run_cli("detect", PHOTOS[0], "--model", out, "--json", "-")
    assert code == 0, err
    assert json.loads(stdout)["images"][0]["detections"]


def test_a_picture_without_faces_is_a_negative(tmp_path, run_cli):
    labels = tmp_path / "none.jsonl"
    labels.write_text(json.dumps({"path": str(PHOTOS[0]), "width": 128, "height": 128, "detections": []}) + "\n")
    code, _, err = run_cli("train", "--labels", labels, "-o", tmp_path / "out.pth", "--epochs", "1", "-q")
    assert code == 0, err
    assert "0 face(s)" in err


@pytest.mark.parametrize(("content", "words"), [
    ('{"path": "nowhere.png", "detections": []}\n', "picture nowhere.png not found"),
    ('{"path": "1face.png", "detections": [{"box": [1.5, 1.5, 1.8, 1.8], "score": 1}]}\n', "a box outside the picture"),
    ("this is not a label file\n", "line 1"),
    ('{"path": "1face.png", "detections": [{"box": [0.1, 0.1, 0.5, 0.5], "keypoints": [[0.2, 0.2]]}]}\n',
     "1 keypoints, expected 6"),
], ids=["missing picture", "box outside", "wrong format", "keypoints"])
def test_bad_labels_are_refused_naming_file_and_line(content, words, tmp_path, run_cli):
    labels = tmp_path / "labels.jsonl"
    labels.write_text(content)
    out = tmp_path / "out.pth"
    code, _, err = run_cli("train", "--labels", labels, "--images", DATA / "images", "-o", out, "-q")
    assert_one_line_error(code, err, str(labels), 2)
    assert words in err
    assert not out.exists()


def test_resume_without_a_checkpoint_says_where_it_looked(self_labels, tmp_path, run_cli):
    out = tmp_path / "out.pth"
    code, _, err = run_cli("train", "--labels", self_labels["short_range"], "--images", DATA / "images", "-o", out,
                           "--resume", "-q")
    assert_one_line_error(code, err, f"no checkpoint {tmp_path / 'out.ckpt'}", 1)


def test_options_are_checked():
    with pytest.raises(Exception, match="zoom range"):
        TrainingOptions(augmentation=Augmentation(min_zoom=2.0, max_zoom=1.0))
    from blazeconv.errors import OptionsError
    from blazeconv.training import train

    with pytest.raises(OptionsError, match="unknown training option.*epoch_count"):
        train("x.json", output="y.pth", epoch_count=3)
