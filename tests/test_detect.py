"""detect: MediaPipe's face pipeline (letterbox, decode, weighted NMS, letterbox removal) and image loading.

Slow plain-Python references of the decoder and the weighted NMS check the vectorised ones; the end-to-end
tests compare against MediaPipe 0.10.21's own answers for the shipped images.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import DATA
from PIL import Image

from blazeconv.detection import (
    Detection,
    annotate,
    decode,
    detect_image,
    detect_images,
    detections_to_json,
    iou_matrix,
    letterbox,
    letterboxing,
    load_image,
    remove_letterbox,
    weighted_nms,
)
from blazeconv.errors import ImageError, OptionsError
from blazeconv.variants import NMS_IOU_THRESHOLD, VARIANTS

F = np.float32
REFERENCE = json.loads((DATA / "mediapipe_detections.json").read_text())
CROPS = json.loads((DATA / "mediapipe_crops.json").read_text())["crops"]


# ------------------------------------------------------------------------------- slow references


def reference_decode(raw, logits, anchors, size):
    """TensorsToDetectionsCalculator's DecodeBoxes and score, one anchor at a time (float32 like the C++)."""
    s = F(size)
    boxes, keypoints, scores = [], [], []
    for r, logit, anchor in zip(raw, np.reshape(logits, -1), anchors):
        r = [F(v) for v in r]
        ax, ay, aw, ah = (F(v) for v in anchor)
        x = r[0] / s * aw + ax
        y = r[1] / s * ah + ay
        w = r[2] / s * aw
        h = r[3] / s * ah
        boxes.append([x - w / F(2), y - h / F(2), x + w / F(2), y + h / F(2)])
        keypoints.append([[r[4 + 2 * k] / s * aw + ax, r[5 + 2 * k] / s * ah + ay] for k in range((len(r) - 4) // 2)])
        clipped = min(max(float(logit), -100.0), 100.0)
        scores.append(1.0 / (1.0 + math.exp(-clipped)))
    return np.array(boxes, F), np.array(keypoints, F).reshape(len(boxes), -1, 2), np.array(scores, F)


def reference_iou(a, b):
    """MediaPipe's OverlapSimilarity for two (xmin, ymin, xmax, ymax) rectangles, in float32."""
    inter_w = max(F(0), min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(F(0), min(a[3], b[3]) - max(a[1], b[1]))
    intersection = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection
    return intersection / union if union > 0 else F(0)


def reference_weighted_nms(boxes, keypoints, scores, threshold):
    """NonMaxSuppressionCalculator's WeightedNonMaxSuppression, written as plainly as the C++."""
    boxes = [[F(v) for v in b] for b in boxes]
    remaining = sorted(range(len(scores)), key=lambda i: -scores[i])  # stable: equal scores keep index order
    out_boxes, out_keypoints, out_scores = [], [], []
    while remaining:
        best = remaining[0]
        cluster = [i for i in remaining if reference_iou(boxes[i], boxes[best]) > F(threshold)]
        rest = [i for i in remaining if i not in cluster]
        total = sum(float(scores[i]) for i in cluster)
        if total > 0:
            box = [sum(float(scores[i]) * float(boxes[i][c]) for i in cluster) / total for c in range(4)]
            points = [
                [sum(float(scores[i]) * float(keypoints[i][k][d]) for i in cluster) / total for d in range(2)]
                for k in range(len(keypoints[best]))
            ]
        else:
            box, points = boxes[best], keypoints[best]
        out_boxes.append(box)
        out_keypoints.append(points)
        out_scores.append(scores[best])
        if len(rest) == len(remaining):  # nothing removed: MediaPipe stops here
            break
        remaining = rest
    k = np.shape(keypoints)[1]
    return np.array(out_boxes, F).reshape(-1, 4), np.array(out_keypoints, F).reshape(-1, k, 2), np.array(out_scores, F)


def assert_same_nms(actual, expected, atol=1e-6, rtol=1e-6):
    """Same number of detections in the same order, same scores; boxes and keypoints to float32 rounding."""
    for a, e in zip(actual, expected):
        assert a.shape == e.shape, f"shape {a.shape} != {e.shape}"
    np.testing.assert_array_equal(actual[2], expected[2])
    np.testing.assert_allclose(actual[0], expected[0], atol=atol, rtol=rtol)
    np.testing.assert_allclose(actual[1], expected[1], atol=atol, rtol=rtol)


def random_detections(seed: int, count: int = 80, tied_scores: bool = False):
    """Boxes scattered around a few faces, as a detector's raw output looks before NMS."""
    rng = np.random.default_rng(seed)
    faces = rng.uniform(0.2, 0.8, (6, 2))
    centre = faces[rng.integers(0, len(faces), count)] + rng.normal(0, 0.04, (count, 2))
    size = rng.uniform(0.05, 0.3, (count, 1)) * rng.uniform(0.8, 1.25, (count, 2))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1).astype(F)
    keypoints = (centre[:, None] + rng.normal(0, 0.05, (count, 6, 2))).astype(F)
    scores = rng.uniform(0.5, 1.0, count)
    if tied_scores:
        scores = np.round(scores, 1)  # many exactly equal scores
    return boxes, keypoints, scores.astype(F)


# ----------------------------------------------------------------------------------------- decode


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("variant", ["short_range", "back"])
def test_decode_matches_reference(seed, variant):
    v = VARIANTS[variant]
    anchors = v.anchors()
    rng = np.random.default_rng(seed)
    raw = rng.normal(0, 0.1 * v.input_size, (len(anchors), 16)).astype(F)
    logits = rng.normal(0, 30, (len(anchors), 1)).astype(F)
    logits[:4, 0] = [-1e4, -100.5, 100.5, 1e4]  # beyond the clipping threshold
    boxes, keypoints, scores = decode(raw, logits, anchors, v.input_size)
    ref_boxes, ref_keypoints, ref_scores = reference_decode(raw, logits, anchors, v.input_size)
    count = len(anchors)
    assert boxes.shape == (count, 4) and keypoints.shape == (count, 6, 2) and scores.shape == (count,)
    np.testing.assert_allclose(boxes, ref_boxes, atol=1e-6, rtol=0)
    np.testing.assert_allclose(keypoints, ref_keypoints, atol=1e-6, rtol=0)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-6, rtol=0)


def test_decode_reads_x_first_and_scales_by_anchor():
    anchors = np.array([[0.25, 0.75, 1.0, 1.0], [0.5, 0.5, 0.5, 2.0]], F)
    raw = np.zeros((2, 16), F)
    raw[0, :4] = [64, 0, 32, 16]  # x offset half the input, box 1/4 wide and 1/8 high (size 128)
    raw[1, 4:6] = [128, -64]  # first keypoint: one input-width right (times anchor w 0.5), half up (times h 2)
    boxes, keypoints, scores = decode(raw, np.zeros(2, F), anchors, 128)
    np.testing.assert_allclose(boxes[0], [0.75 - 0.125, 0.75 - 0.0625, 0.75 + 0.125, 0.75 + 0.0625], atol=1e-7)
    np.testing.assert_allclose(keypoints[1, 0], [0.5 + 0.5, 0.5 - 1.0], atol=1e-7)
    np.testing.assert_allclose(keypoints[1, 1:], 0.5, atol=1e-7)  # zero offsets sit on the anchor centre
    np.testing.assert_array_equal(scores, [0.5, 0.5])


def test_decode_scores_clip_without_warnings_and_accept_both_logit_shapes():
    anchors = VARIANTS["short_range"].anchors()[:5]
    logits = np.array([-1e30, -100.0, 0.0, 100.0, 1e30], F)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, _, flat = decode(np.zeros((5, 16), F), logits, anchors, 128)
        _, _, column = decode(np.zeros((5, 16), F), logits[:, None], anchors, 128)
    np.testing.assert_array_equal(flat, column)
    assert flat[0] == flat[1] and flat[3] == flat[4] == 1.0 and flat[2] == 0.5
    assert 0.0 <= flat[0] < 1e-30


def test_decode_refuses_mismatched_shapes():
    with pytest.raises(OptionsError, match="anchors"):
        decode(np.zeros((10, 16), F), np.zeros(10, F), np.zeros((9, 4), F), 128)


# -------------------------------------------------------------------------------------------- NMS


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("threshold", [0.1, 0.3, 0.5, 0.8])
@pytest.mark.parametrize("tied_scores", [False, True], ids=["distinct", "tied"])
def test_weighted_nms_matches_reference(seed, threshold, tied_scores):
    boxes, keypoints, scores = random_detections(seed, tied_scores=tied_scores)
    actual = weighted_nms(boxes, keypoints, scores, threshold)
    assert_same_nms(actual, reference_weighted_nms(boxes, keypoints, scores, threshold))


def _pair(width: float):
    """Box A = [0, 0, 10, 1] and B = [0, 0, width, 1] inside it: IoU = width / 10."""
    boxes = np.array([[0, 0, 10, 1], [0, 0, width, 1]], F)
    keypoints = np.stack([np.zeros((6, 2), F), np.ones((6, 2), F)])
    return boxes, keypoints, np.array([0.9, 0.6], F)


def _width_for_iou_one_ulp(direction: float) -> F:
    """The width nearest 3 whose pair IoU is the float32 next to 0.3 in ``direction``."""
    target = np.nextafter(F(0.3), F(direction))
    width = F(3)
    while iou_matrix(_pair(width)[0])[0, 1] != target:
        width = np.nextafter(width, F(10 * direction))
    return width


@pytest.mark.parametrize(
    ("width", "merged"),
    [
        (3.0, False),
        (3.001, True),
        (2.999, False),
        (_width_for_iou_one_ulp(1), True),
        (_width_for_iou_one_ulp(0), False),
    ],
    ids=["exactly-0.3", "above", "below", "iou-one-ulp-above", "iou-one-ulp-below"],
)
def test_weighted_nms_threshold_is_strict(width, merged):
    boxes, keypoints, scores = _pair(width)
    iou = iou_matrix(boxes)[0, 1]
    assert (iou > F(NMS_IOU_THRESHOLD)) == merged  # the case is what its name says
    out_boxes, out_keypoints, out_scores = weighted_nms(boxes, keypoints, scores)
    assert_same_nms((out_boxes, out_keypoints, out_scores), reference_weighted_nms(boxes, keypoints, scores, 0.3))
    if merged:
        assert len(out_scores) == 1
        assert out_scores[0] == F(0.9)  # the best one's score, not the mean
        np.testing.assert_allclose(out_boxes[0], [0, 0, (0.9 * 10 + 0.6 * width) / 1.5, 1], atol=1e-6)
        np.testing.assert_allclose(out_keypoints[0], np.full((6, 2), 0.6 / 1.5), atol=1e-6)
    else:
        assert len(out_scores) == 2
        np.testing.assert_array_equal(out_boxes, boxes)


def test_weighted_nms_equal_scores_prefer_the_earlier_detection():
    boxes = np.array([[0.6, 0.6, 0.8, 0.8], [0.0, 0.0, 0.2, 0.2], [0.01, 0.0, 0.21, 0.2]], F)
    keypoints = np.arange(36, dtype=F).reshape(3, 6, 2)
    scores = np.array([0.7, 0.7, 0.7], F)
    out = weighted_nms(boxes, keypoints, scores)
    assert_same_nms(out, reference_weighted_nms(boxes, keypoints, scores, 0.3))
    np.testing.assert_array_equal(out[0][0], boxes[0])  # index 0 first, alone
    np.testing.assert_allclose(out[0][1], (boxes[1] + boxes[2]) / 2, atol=1e-7)  # equal weights: the plain mean


def test_weighted_nms_clusters_around_the_best_not_transitively():
    # A overlaps B, B overlaps C, A does not overlap C.
    a, b, c = [0.0, 0, 1, 1], [0.4, 0, 1.4, 1], [0.8, 0, 1.8, 1]
    boxes = np.array([a, b, c], F)
    keypoints = np.zeros((3, 6, 2), F)
    assert iou_matrix(boxes)[0, 1] > 0.3 and iou_matrix(boxes)[1, 2] > 0.3 and iou_matrix(boxes)[0, 2] < 0.3
    by_a = weighted_nms(boxes, keypoints, np.array([0.9, 0.8, 0.7], F))
    assert len(by_a[2]) == 2  # {A, B} then {C}
    by_b = weighted_nms(boxes, keypoints, np.array([0.8, 0.9, 0.7], F))
    assert len(by_b[2]) == 1  # B's cluster takes both neighbours
    np.testing.assert_allclose(by_b[0][0], (0.8 * boxes[0] + 0.9 * boxes[1] + 0.7 * boxes[2]) / 2.4, atol=1e-6)


def test_weighted_nms_stops_at_a_box_without_area_like_mediapipe():
    boxes = np.array([[0.5, 0.5, 0.5, 0.7], [0.1, 0.1, 0.3, 0.3], [0.6, 0.6, 0.9, 0.9]], F)
    keypoints = np.zeros((3, 6, 2), F)
    scores = np.array([0.95, 0.9, 0.8], F)
    out = weighted_nms(boxes, keypoints, scores)
    assert_same_nms(out, reference_weighted_nms(boxes, keypoints, scores, 0.3))
    assert len(out[2]) == 1  # the zero-width best box is output and the loop ends


def test_weighted_nms_of_nothing():
    boxes, keypoints, scores = weighted_nms(np.zeros((0, 4), F), np.zeros((0, 6, 2), F), np.zeros(0, F))
    assert boxes.shape == (0, 4) and keypoints.shape == (0, 6, 2) and scores.shape == (0,)


# -------------------------------------------------------------------------------------- letterbox


def pattern(height: int, width: int) -> np.ndarray:
    """A deterministic busy (H, W, 3) uint8 image: any misplaced sample changes the result."""
    values = np.arange(height * width * 3, dtype=np.uint64).reshape(height, width, 3) * 2654435761 % 251
    return values.astype(np.uint8)


def as_uint8(tensor: np.ndarray) -> np.ndarray:
    """Undo the -1..1 mapping of a (3, S, S) letterbox tensor: (S, S, 3) uint8 (exact for mapped uint8 values)."""
    return np.rint((tensor.transpose(1, 2, 0) + 1) * 127.5).astype(np.uint8)


def reference_warp(image: np.ndarray, size: int) -> np.ndarray:
    """OpenCV's warpPerspective from its description, one output pixel at a time, with exact source points.

    Source point of output (x, y): ((W - L)/2 + x*L/size, (H - L)/2 + y*L/size), L = max(W, H), rounded to
    1/32 pixel; bilinear weights in 32nds; neighbours outside the image are 0; (sum*32 + 2**14) >> 15.
    """
    height, width = image.shape[:2]
    side = max(width, height)
    out = np.zeros((size, size, 3), np.uint8)
    for y in range(size):
        for x in range(size):
            fx = round((Fraction(width - side, 2) + Fraction(x * side, size)) * 32)
            fy = round((Fraction(height - side, 2) + Fraction(y * side, size)) * 32)
            total = [0, 0, 0]
            for row, wy in ((fy // 32, 32 - fy % 32), (fy // 32 + 1, fy % 32)):
                for col, wx in ((fx // 32, 32 - fx % 32), (fx // 32 + 1, fx % 32)):
                    if 0 <= row < height and 0 <= col < width:
                        for c in range(3):
                            total[c] += wy * wx * int(image[row, col, c])
            out[y, x] = [(t * 32 + (1 << 14)) >> 15 for t in total]
    return out


def has_rounding_ties(height: int, width: int, size: int) -> bool:
    side = max(width, height)
    points = (Fraction(n - side, 2) + Fraction(i * side, size) for n in (width, height) for i in range(size))
    return any((point * 32).denominator == 2 for point in points)


@pytest.mark.parametrize(
    ("height", "width", "size"),
    [(12, 20, 10), (20, 12, 10), (7, 9, 6), (9, 9, 7), (30, 11, 16), (5, 1, 3), (1, 5, 3), (1, 1, 4), (3, 40, 9)]
    + [(50, 50, 50)],
)
def test_warp_matches_reference_sampler(height, width, size):
    assert not has_rounding_ties(height, width, size)  # ties are OpenCV's float noise: see the golden test
    image = pattern(height, width)
    np.testing.assert_array_equal(letterboxing._warp(image, size), reference_warp(image, size))


# sha256 (first 16 hex digits) of cv2.warpPerspective's output, called as MediaPipe's ImageToTensorCalculator calls it
# (getPerspectiveTransform from the ROI's boxPoints, INTER_LINEAR, BORDER_CONSTANT), OpenCV 4.14, on pattern(H, W).
# These sizes put sample points exactly between two 1/32 steps, where OpenCV's rounding follows its float noise.
OPENCV_GOLDEN = {
    (1, 7, 128): "e1e0eac21a886643",
    (7, 1, 256): "d30b64b48b683f89",
    (3, 5, 192): "718d1875cca2a216",
    (129, 128, 192): "d4900dc0adffedb1",
    (77, 130, 128): "1732df333b4b65f6",
    (300, 2, 256): "aa479d377a1ed156",
    (379, 363, 128): "f5cae60dc5f634ef",
    (512, 853, 128): "7f163eb76db41ae2",
}


@pytest.mark.parametrize("case", OPENCV_GOLDEN, ids=lambda c: "x".join(map(str, c)))
def test_warp_matches_opencv_golden(case):
    height, width, size = case
    assert has_rounding_ties(height, width, size)
    warped = letterboxing._warp(pattern(height, width), size)
    assert hashlib.sha256(warped.tobytes()).hexdigest()[:16] == OPENCV_GOLDEN[case]


@pytest.mark.parametrize(
    ("height", "width", "size"), [(129, 128, 192), (333, 1000, 128), (1000, 333, 256), (1, 7, 128)]
)
def test_warp_matches_opencv_when_installed(height, width, size):
    cv2 = pytest.importorskip("cv2")
    image = pattern(height, width)
    side = float(max(width, height))
    corners = cv2.boxPoints(((width / 2, height / 2), (side, side), 0.0)).astype(np.float32)
    target = np.array([[0, size], [0, 0], [size, 0], [size, size]], np.float32)
    matrix = cv2.getPerspectiveTransform(corners, target)
    expected = cv2.warpPerspective(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    np.testing.assert_array_equal(letterboxing._warp(image, size), expected)


def test_letterbox_wide_image_samples_every_fifth_pixel_and_pads_rows():
    image = pattern(20, 40)  # L = 40 onto 8: step 5, the image spans input rows 2..5
    tensor, box = letterbox(image, 8)
    assert tensor.shape == (3, 8, 8) and tensor.dtype == np.float32
    expected = np.zeros((8, 8, 3), np.uint8)
    for y in range(2, 6):
        expected[y] = image[5 * y - 10, ::5]
    np.testing.assert_array_equal(as_uint8(tensor), expected)
    np.testing.assert_array_equal(tensor[:, [0, 1, 6, 7]], -1.0)  # the border is exactly -1
    np.testing.assert_allclose(tensor, expected.transpose(2, 0, 1) * F(2 / 255) - 1, atol=1e-7)
    assert box.padding == (0.0, 0.25, 0.0, 0.25)
    assert (box.image_width, box.image_height, box.input_size) == (40, 20, 8)


def test_letterbox_tall_image_pads_columns():
    image = pattern(40, 20)
    tensor, box = letterbox(image, 8)
    expected = np.zeros((8, 8, 3), np.uint8)
    for x in range(2, 6):
        expected[:, x] = image[::5, 5 * x - 10]
    np.testing.assert_array_equal(as_uint8(tensor), expected)
    assert box.padding == (0.25, 0.0, 0.25, 0.0)


def test_letterbox_square_image_at_model_size_is_the_image():
    image = pattern(16, 16)
    tensor, box = letterbox(image, 16)
    np.testing.assert_array_equal(as_uint8(tensor), image)
    assert tensor.min() >= -1.0 and tensor.max() <= 1.0
    assert box.padding == (0.0, 0.0, 0.0, 0.0)


def test_letterbox_one_pixel_wide_image_mixes_with_the_black_border():
    # L = 10 onto 5: columns sample x = -4.5, -2.5, -0.5, 1.5, 3.5; only -0.5 touches the pixel, at half weight.
    image = pattern(10, 1)
    warped = as_uint8(letterbox(image, 5)[0])
    expected = np.zeros((5, 5, 3), np.uint8)
    expected[:, 2] = (image[::2, 0].astype(int) * 512 + 512) >> 10
    np.testing.assert_array_equal(warped, expected)


def test_letterbox_padding_of_a_shipped_wide_image():
    _, box = letterbox(np.zeros((512, 900, 3), np.uint8), 128)
    assert box.padding[0] == box.padding[2] == 0.0
    assert box.padding[1] == box.padding[3] == pytest.approx((1 - 512 / 900) / 2, abs=1e-12)


@pytest.mark.parametrize(("height", "width"), [(512, 900), (600, 360), (300, 300), (1, 250), (250, 1)])
def test_remove_letterbox_inverts_the_letterbox_geometry(height, width):
    side = max(width, height)
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 1, (10, 6, 2))  # in 0..1 of the image
    # Where the letterbox puts an image point: (image pixel - region corner) / L, in 0..1 of the input.
    corner = np.array([(width - side) / 2, (height - side) / 2])
    on_input = (points * [width, height] - corner) / side
    boxes = np.concatenate([on_input[:, 0], on_input[:, 1]], axis=1)  # any two points make a box
    _, box = letterbox(np.zeros((height, width, 3), np.uint8), 128)
    back_boxes, back_points = remove_letterbox(boxes, on_input, box)
    np.testing.assert_allclose(back_points, points, atol=1e-5)
    np.testing.assert_allclose(back_boxes, np.concatenate([points[:, 0], points[:, 1]], axis=1), atol=1e-5)


def test_a_bright_square_comes_back_where_it_was():
    image = np.zeros((150, 400, 3), np.uint8)
    image[40:80, 250:290] = 255  # centre at pixel (269.5, 59.5)
    tensor, box = letterbox(image, 128)
    weight = tensor[0] + 1
    ys, xs = np.mgrid[0:128, 0:128]
    centroid = np.array([[(xs * weight).sum(), (ys * weight).sum()]]) / weight.sum() / 128
    _, back = remove_letterbox(np.zeros((1, 4)), centroid[:, None], box)
    step = 400 / 128  # source pixels between two samples: the centroid of a sampled square is good to half that
    np.testing.assert_allclose(back[0, 0] * [400, 150], [269.5, 59.5], atol=step / 2)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 4), np.uint8),
        np.zeros((4, 4, 4), np.uint8),
        np.zeros((4, 4, 3), np.float32),
        np.zeros((0, 4, 3), np.uint8),
    ],
    ids=["2d", "4-channels", "float", "empty"],
)
def test_letterbox_refuses_what_is_not_an_rgb_image(bad):
    with pytest.raises(ImageError, match="RGB|empty"):
        letterbox(bad, 128)


# ------------------------------------------------------------------------------------ load_image


def test_load_rgb_png_exactly(tmp_path):
    image = pattern(9, 13)
    path = tmp_path / "rgb.png"
    Image.fromarray(image).save(path)
    loaded = load_image(path)
    assert loaded.dtype == np.uint8 and loaded.shape == (9, 13, 3)
    np.testing.assert_array_equal(loaded, image)


def test_load_rgba_drops_alpha_without_compositing(tmp_path):
    rgba = np.concatenate([pattern(8, 8), np.zeros((8, 8, 1), np.uint8)], axis=2)  # fully transparent
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    np.testing.assert_array_equal(load_image(path), rgba[:, :, :3])


@pytest.mark.parametrize("mode", ["L", "LA", "1"])
def test_load_grey_images_repeat_the_grey(tmp_path, mode):
    grey = pattern(6, 10)[:, :, 0]
    image = Image.fromarray(grey, "L").convert(mode)
    path = tmp_path / f"grey_{mode}.png"
    image.save(path)
    loaded = load_image(path)
    expected = np.asarray(image.convert("L"))
    np.testing.assert_array_equal(loaded, np.repeat(expected[:, :, None], 3, axis=2))


@pytest.mark.parametrize("transparency", [False, True])
def test_load_palette_image(tmp_path, transparency):
    rgb = pattern(8, 8) // 64 * 64  # few colours, so the palette is exact
    image = Image.fromarray(rgb).quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    if transparency:
        image.info["transparency"] = 0
    path = tmp_path / "palette.png"
    image.save(path)
    assert Image.open(path).mode == "P"
    np.testing.assert_array_equal(load_image(path), np.asarray(image.convert("RGB")))


def test_load_16_bit_grey_keeps_the_top_byte(tmp_path):
    values = np.array([[0, 255, 256, 40000, 65535]], np.uint16)
    path = tmp_path / "grey16.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    loaded = load_image(path)
    np.testing.assert_array_equal(loaded[0, :, 0], [0, 0, 1, 156, 255])
    np.testing.assert_array_equal(loaded[..., 0], loaded[..., 2])


def test_load_cmyk_jpeg(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, quality=100)  # pure red in CMYK
    loaded = load_image(path)
    assert loaded.shape == (16, 16, 3)
    assert loaded[..., 0].min() > 240 and loaded[..., 1:].max() < 15


def test_load_applies_exif_orientation(tmp_path):
    stored = np.zeros((16, 32, 3), np.uint8)
    stored[:, :16] = (255, 0, 0)  # left half red
    stored[:, 16:] = (0, 0, 255)
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=95)
    loaded = load_image(path)
    assert loaded.shape == (32, 16, 3)  # upright: tall
    assert loaded[:12, :, 0].min() > 200 and loaded[:12, :, 2].max() < 60  # the red half is now on top
    assert loaded[20:, :, 2].min() > 200 and loaded[20:, :, 0].max() < 60


def _truncated_png(path):
    Image.fromarray(pattern(64, 64)).save(path)
    path.write_bytes(path.read_bytes()[:300])


def _truncated_jpeg(path):
    Image.fromarray(pattern(64, 64)).save(path, quality=95)
    path.write_bytes(path.read_bytes()[:600])


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("missing.png", lambda p: None, "no such file"),
        ("folder.png", lambda p: p.mkdir(), "directory"),
        ("notes.png", lambda p: p.write_text("not an image\n"), "not an image"),
        ("empty.jpg", lambda p: p.write_bytes(b""), "not an image"),
        ("truncated.png", _truncated_png, "cannot decode"),
        ("truncated.jpg", _truncated_jpeg, "cannot decode"),
    ],
)
def test_load_errors_name_the_file(tmp_path, name, make, message):
    path = tmp_path / name
    make(path)
    with pytest.raises(ImageError, match=message) as error:
        load_image(path)
    assert str(path) in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("side", [11, 15], ids=["warning-size", "error-size"])
def test_load_keeps_pillows_decompression_bomb_guard(tmp_path, monkeypatch, side):
    path = tmp_path / "big.png"
    Image.fromarray(pattern(side, side)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 121 px only warns in Pillow, 225 px is an error
    with pytest.raises(ImageError, match="too large") as error:
        load_image(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("name", ["sergey.png", "astronaut.png"])
def test_load_bytes_and_file_objects_like_files(name, tmp_path):
    path = DATA / "images" / name
    expected = load_image(path)
    data = path.read_bytes()
    with open(path, "rb") as f:
        from_file = load_image(f)
    for loaded in (load_image(data), load_image(bytearray(data)), load_image(memoryview(data)),
                   load_image(io.BytesIO(data)), from_file):
        np.testing.assert_array_equal(loaded, expected)
    # EXIF orientation from bytes too: the sideways-stored JPEG of test_load_applies_exif_orientation.
    stored = Image.fromarray(np.zeros((16, 32, 3), np.uint8))
    exif = stored.getexif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    stored.save(buffer, format="JPEG", exif=exif)
    assert load_image(buffer.getvalue()).shape == (32, 16, 3)


def test_load_errors_name_bytes_and_file_objects(tmp_path, monkeypatch):
    with pytest.raises(ImageError, match=r"^<bytes>: not an image Pillow can read$"):
        load_image(b"not an image")
    broken = tmp_path / "broken.png"
    _truncated_png(broken)
    with pytest.raises(ImageError, match=r"^<bytes>: cannot decode image"):
        load_image(broken.read_bytes())
    with open(broken, "rb") as f, pytest.raises(ImageError, match=rf"^{re.escape(str(broken))}: cannot decode image"):
        load_image(f)
    with pytest.raises(ImageError, match=r"^<BytesIO>: not an image Pillow can read$"):
        load_image(io.BytesIO(b""))
    big = io.BytesIO()
    Image.fromarray(pattern(15, 15)).save(big, format="PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageError, match=r"^<bytes>: image too large"):
        load_image(big.getvalue())
    with pytest.raises(ImageError, match="expected a path, bytes or a binary file object, got a int"):
        load_image(42)


@pytest.mark.parametrize("url", ["https://example.com/a.jpg", "http://example.com/a.png", "s3://bucket/a.png",
                                 "gs://bucket/a.png", "ftp://host/a.png"])
def test_load_refuses_urls(url):
    for given in (url, Path(url)):  # pathlib turns "https://" into "https:/"
        with pytest.raises(ImageError, match="URLs are not read; download the file first"):
            load_image(given)


def test_a_file_named_like_a_url_is_still_a_file(tmp_path, monkeypatch):
    (tmp_path / "http:").mkdir()
    Image.fromarray(pattern(8, 8)).save(tmp_path / "http:" / "x.png")
    monkeypatch.chdir(tmp_path)
    assert load_image("http://x.png").shape == (8, 8, 3)  # the path exists: it is read
    assert load_image("http:/x.png").shape == (8, 8, 3)


# --------------------------------------------------------------------- the pipeline vs MediaPipe


@pytest.fixture(scope="module")
def short_range_model(converted):
    """blazeconv's PyTorch short-range detector, converted from the shipped .tflite (what ``detect`` runs)."""
    from blazeconv.network import model_from_state_dict

    return model_from_state_dict(converted("short_range").state_dict)


def as_corners(box_xywh):
    x, y, w, h = box_xywh
    return [x, y, x + w, y + h]


def assert_matches_mediapipe(detections, expected, iou_min, keypoint_atol, score_atol):
    """Same number of faces; each MediaPipe face paired with the detection overlapping it most."""
    assert len(detections) == len(expected), f"{len(detections)} faces, MediaPipe found {len(expected)}"
    if not expected:
        return
    ours = np.array([d.box for d in detections], F)
    theirs = np.array([as_corners(e["box_xywh"]) for e in expected], F)
    iou = iou_matrix(np.concatenate([ours, theirs]))[: len(ours), len(ours) :]
    pairing = iou.argmax(axis=0)
    assert len(set(pairing)) == len(expected), f"two MediaPipe faces paired with one detection: {iou}"
    for j, e in enumerate(expected):
        d = detections[pairing[j]]
        assert iou[pairing[j], j] >= iou_min, f"face {j}: IoU {iou[pairing[j], j]:.5f}"
        np.testing.assert_allclose(np.array(d.keypoints), np.array(e["keypoints"]), atol=keypoint_atol, rtol=0)
        np.testing.assert_allclose(d.score, e["score"], atol=score_atol, rtol=0)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_short_range_matches_mediapipe(short_range_model, name):
    image = load_image(DATA / "images" / name)
    assert [image.shape[1], image.shape[0]] == REFERENCE[name]["size"]
    detections = detect_image(short_range_model, image, variant="short_range", min_score=0.5, exact=True)
    expected = REFERENCE[name]["short_range"]
    assert_matches_mediapipe(detections, expected, iou_min=0.98, keypoint_atol=0.005, score_atol=0.005)


@pytest.mark.parametrize("crop", CROPS, ids=lambda c: f"{c['image'].split('.')[0]}-{c['size'][0]}x{c['size'][1]}")
def test_short_range_matches_mediapipe_on_crops_with_rounding_ties(short_range_model, crop):
    # Sizes that are not multiples of 4: rounding the letterbox's sample points exactly instead of the way
    # OpenCV does moved these detections by up to 3.5e-3; OpenCV's way agrees with MediaPipe to 3e-7.
    with Image.open(DATA / "images" / crop["image"]) as source:
        image = np.asarray(source.convert("RGB").crop(tuple(crop["crop"])))
    assert [image.shape[1], image.shape[0]] == crop["size"]
    detections = detect_image(short_range_model, image, variant="short_range", min_score=0.5, exact=True)
    assert_matches_mediapipe(detections, crop["short_range"], iou_min=0.999, keypoint_atol=1e-4, score_atol=1e-4)


def test_batches_give_the_same_detections_as_single_images(short_range_model):
    images = [load_image(DATA / "images" / name) for name in sorted(REFERENCE)]
    batched = detect_images(short_range_model, images, variant="short_range", batch_size=3)
    single = [detect_image(short_range_model, image, variant="short_range") for image in images]
    # The batch size changes the convolution's summation order (raw outputs move by up to ~1e-3 at logit
    # magnitudes of hundreds, ~2e-4 on box values): the same faces, coordinates to 1e-5, scores to 1e-4.
    assert_same_detections(batched, single)
    paths = detect_images(short_range_model, [DATA / "images" / name for name in sorted(REFERENCE)], variant="short_range")
    assert_same_detections(paths, single)


def assert_same_detections(actual: list[list[Detection]], expected: list[list[Detection]]) -> None:
    assert [len(d) for d in actual] == [len(d) for d in expected]
    for got, want in zip(actual, expected):
        for a, b in zip(got, want):
            np.testing.assert_allclose(a.box, b.box, atol=1e-5, rtol=0)
            np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-5, rtol=0)
            np.testing.assert_allclose(a.score, b.score, atol=1e-4, rtol=0)


# ------------------------------------------------------------------ the pipeline on a stub model


class OneFaceModel(torch.nn.Module):
    """Fires anchor ``index`` with score sigmoid(logit); box 1/4 of the input, keypoints on the anchor centre."""

    def __init__(self, variant: str, index: int, logit: float):
        super().__init__()
        self.size = VARIANTS[variant].input_size
        self.count = VARIANTS[variant].num_anchors
        self.index, self.logit = index, logit
        self.scale = torch.nn.Parameter(torch.ones(()))  # so that the pipeline looks for the module's device
        self.inputs: list[torch.Tensor] = []

    def forward(self, x):
        self.inputs.append(x)
        batch = x.shape[0]
        regressors = torch.zeros(batch, self.count, 16)
        regressors[:, self.index, 2:4] = self.size / 4 * self.scale
        classificators = torch.full((batch, self.count, 1), -20.0)
        classificators[:, self.index] = self.logit
        return regressors, classificators


def test_pipeline_maps_an_anchor_back_to_the_original_image():
    variant = VARIANTS["short_range"]
    index = 300
    anchor = variant.anchors()[index]  # fixed anchor size: w = h = 1
    model = OneFaceModel("short_range", index, 3.0)
    image = np.zeros((100, 200, 3), np.uint8)  # wide: input rows 32..95 hold the image
    (detection,) = detect_image(model, image, variant="short_range", exact=True)
    assert model.inputs[0].shape == (1, 3, 128, 128) and model.inputs[0].dtype == torch.float32
    x, y = anchor[0], (anchor[1] - 0.25) / 0.5
    np.testing.assert_allclose(detection.box, [x - 0.125, y - 0.25, x + 0.125, y + 0.25], atol=1e-6)
    np.testing.assert_allclose(detection.keypoints, [(x, y)] * 6, atol=1e-6)
    assert detection.score == pytest.approx(1 / (1 + math.exp(-3.0)), abs=1e-6)


def test_min_score_defaults_to_the_variant_and_is_inclusive():
    logit = math.log(0.6 / 0.4)  # score 0.6: above short_range's 0.5, below front's 0.75
    model = OneFaceModel("short_range", 10, logit)
    assert len(detect_image(model, pattern(64, 64), variant="short_range")) == 1
    assert len(detect_image(model, pattern(64, 64), variant=VARIANTS["front"])) == 0
    assert len(detect_image(model, pattern(64, 64), variant="front", min_score=0.5)) == 1
    score = detect_image(model, pattern(64, 64), variant="short_range")[0].score
    assert len(detect_image(model, pattern(64, 64), variant="short_range", min_score=score)) == 1


def test_model_that_does_not_fit_the_variant_is_refused():
    model = OneFaceModel("short_range", 0, 5.0)
    model.count = 2304
    with pytest.raises(OptionsError, match="short_range"):
        detect_image(model, pattern(32, 32), variant="short_range")


# ------------------------------------------------------------------------------------------ output


def test_detections_to_json_is_plain_json():
    detection = Detection(0.9, (0.1, 0.2, 0.3, 0.4), tuple((0.1 * k, 0.2) for k in range(6)))
    result = detections_to_json("images/a.png", 640, 480, [detection])
    assert json.loads(json.dumps(result)) == {
        "path": "images/a.png",
        "width": 640,
        "height": 480,
        "detections": [{"score": 0.9, "box": [0.1, 0.2, 0.3, 0.4], "keypoints": [[0.1 * k, 0.2] for k in range(6)]}],
    }
    assert detections_to_json("b.png", 1, 1, [])["detections"] == []


@pytest.mark.parametrize(("height", "width"), [(128, 128), (1200, 1600), (40, 300)])
def test_annotate_draws_on_a_copy(height, width):
    image = np.full((height, width, 3), 128, np.uint8)
    detection = Detection(0.87, (0.25, 0.25, 0.75, 0.75), tuple((0.3 + 0.08 * k, 0.5) for k in range(6)))
    out = annotate(image, [detection])
    assert out.size == (width, height) and out.mode == "RGB"
    drawn = np.asarray(out)
    assert (image == 128).all()  # the input is untouched
    assert (drawn[int(0.5 * height), int(0.25 * width)] == (0, 220, 0)).all()  # the box's left edge
    assert (drawn != 128).any(axis=2).mean() < 0.5
    edge = Detection(0.5, (-0.2, -0.2, 0.3, 1.2), detection.keypoints)  # a box past the borders still draws
    assert annotate(Image.fromarray(image), [edge]).size == (width, height)


def test_annotation_markers_are_sized_by_the_face_not_the_image():
    image = np.full((2000, 2000, 3), 128, np.uint8)
    small = Detection(0.9, (0.5, 0.5, 0.51, 0.51), tuple((0.502 + 0.001 * k, 0.505) for k in range(6)))  # 20 px
    big = Detection(0.9, (0.1, 0.1, 0.4, 0.4), tuple((0.15 + 0.04 * k, 0.25) for k in range(6)))  # 600 px
    drawn = (np.asarray(annotate(image, [small])) != 128).any(axis=2)
    # Outline, six dots and a 9 px score label: a few hundred pixels, not the 8 px lines and 16 px dots that the
    # image's size would give.
    assert drawn.sum() < 4 * 20 * 20 and drawn[:950].sum() == 0 and drawn[1100:].sum() == 0
    row = np.asarray(annotate(image, [big]))[500]
    green = np.flatnonzero((row == (0, 220, 0)).all(axis=1))
    assert 10 <= np.sum(green < 400) <= 20  # the big face's left edge: 600 / 40 = 15 px wide


def test_annotation_writer_writes_in_order_each_before_its_callback_and_drops_the_rest_on_an_error(tmp_path):
    from blazeconv.detection.drawing import AnnotationWriter, is_annotation_of

    image = np.asarray(Image.open(DATA / "images" / "sergey.png").convert("RGB"))
    events = []

    def write(path, data):
        path.write_bytes(data)
        events.append(path.name)

    with AnnotationWriter(write) as writer:
        for i in range(5):
            writer.submit(image, [], tmp_path / f"{i}.png", f"source{i}.png",
                          then=lambda i=i: events.append(f"line {i}") or events.count(f"{i}.png") == 1 or events.append("!"))
            writer.then(lambda i=i: events.append(f"after {i}"))
    assert events == [e for i in range(5) for e in (f"{i}.png", f"line {i}", f"after {i}")]
    assert all(is_annotation_of(tmp_path / f"{i}.png", f"source{i}.png") for i in range(5))

    written, at_the_error = [], []
    with pytest.raises(KeyboardInterrupt), AnnotationWriter(lambda path, data: written.append(path), ahead=8) as writer:
        for i in range(3):
            writer.submit(image, [], tmp_path / f"late{i}.png", "x.png")
        at_the_error.extend(written)
        raise KeyboardInterrupt
    assert written == at_the_error and len(written) < 3  # the pending annotations were dropped, none written after
