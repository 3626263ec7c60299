"""The iOS guide's geometry (docs/ios.md, ios/BlazeFaceCamera), checked through its Python twin tests/ios_math.py.

No Apple runtime here: the Swift cannot run, so each Swift function has a step-for-step Python twin, tested on
hand-worked cases and against blazeconv's own letterbox and its removal. A check that every twinned Swift name is
still a function in Geometry.swift keeps the two from drifting apart by name.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from ios_math import (
    SWIFT_NAMES,
    Padding,
    Rect,
    aspect_fill_point,
    aspect_fill_rect,
    exif_orientation,
    is_mirrored,
    letterbox_padding,
    remove_letterbox,
    remove_letterbox_point,
    reorient_point,
    reorient_rect,
    sensor_point,
    swap_left_right,
    upright_point,
    upright_size,
    vision_rect_to_top_left,
)

from blazeconv.detection.letterboxing import Letterbox, letterbox
from blazeconv.detection.letterboxing import remove_letterbox as blazeconv_remove_letterbox
from blazeconv.variants import KEYPOINT_NAMES

ROOT = Path(__file__).resolve().parent.parent
SWIFT_SOURCES = ROOT / "ios" / "BlazeFaceCamera" / "Sources" / "BlazeFaceCamera"


def assert_rect(actual: Rect, expected: tuple[float, float, float, float]) -> None:
    """Rects equal to float rounding: the hand-worked cases are exact in decimal."""
    np.testing.assert_allclose(
        [actual.x, actual.y, actual.width, actual.height], expected, atol=1e-9, rtol=0
    )


def test_every_twinned_name_is_a_function_in_the_swift_geometry():
    swift = (SWIFT_SOURCES / "Geometry.swift").read_text()
    defined = set(re.findall(r"\bfunc (\w+)\(", swift))
    missing = sorted(set(SWIFT_NAMES) - defined)
    assert not missing, f"Geometry.swift lacks {missing}; update tests/ios_math.py with it"


def test_keypoint_pairs_follow_mediapipes_order():
    # The swap assumes MediaPipe's order; blazeconv's variants hold the same list.
    assert list(KEYPOINT_NAMES)[:2] == ["right_eye", "left_eye"]
    assert list(KEYPOINT_NAMES)[4:6] == ["right_ear_tragion", "left_ear_tragion"]


@pytest.mark.parametrize(
    "device, camera, expected",
    [
        ("portrait", "back", "right"),
        ("portraitUpsideDown", "back", "left"),
        ("landscapeLeft", "back", "up"),
        ("landscapeRight", "back", "down"),
        ("faceUp", "back", "right"),
        ("portrait", "front", "leftMirrored"),
        ("portraitUpsideDown", "front", "rightMirrored"),
        ("landscapeLeft", "front", "downMirrored"),
        ("landscapeRight", "front", "upMirrored"),
        ("unknown", "front", "leftMirrored"),
    ],
)
def test_exif_orientation_per_device_orientation_and_camera(device, camera, expected):
    assert exif_orientation(device, camera) == expected


def test_a_quarter_turn_swaps_the_sides():
    assert upright_size(1920, 1080, "right") == (1080, 1920)
    assert upright_size(1920, 1080, "leftMirrored") == (1080, 1920)
    assert upright_size(1920, 1080, "up") == (1920, 1080)
    assert upright_size(1920, 1080, "downMirrored") == (1920, 1080)


def test_vision_rect_flips_to_top_left():
    # A face in the top quarter of the picture: Vision says y = 0.65 (from the bottom), 0.25 high.
    assert_rect(vision_rect_to_top_left(Rect(0.2, 0.65, 0.3, 0.25)), (0.2, 0.10, 0.3, 0.25))


def test_a_box_in_a_portrait_back_camera_frame_lands_on_its_uikit_rect():
    """Worked by hand: 1000x2000 px buffer, back camera, portrait; shown aspect-filled in a 400x600 pt view."""
    orientation = exif_orientation("portrait", "back")  # .right
    width, height = upright_size(2000, 1000, orientation)  # buffer is landscape: 2000 wide, 1000 high
    assert (width, height) == (1000, 2000)
    padding = letterbox_padding(width, height)
    assert padding == Padding(x=0.25, y=0.0)  # 1000 wide in a 2000 square: a quarter of the square each side
    # The model saw the face at x 0.375..0.625 of the square, y 0.25..0.5.
    in_picture = remove_letterbox(Rect(0.375, 0.25, 0.25, 0.25), padding)
    assert_rect(in_picture, (0.25, 0.25, 0.5, 0.25))  # (0.375 - 0.25) / 0.5, width 0.25 / 0.5
    # Aspect fill: scale max(400/1000, 600/2000) = 0.4, the picture is 400x800 pt, 100 pt cut off top and bottom.
    assert_rect(aspect_fill_rect(in_picture, (width, height), (400, 600)), (100, 100, 200, 200))


def test_a_vision_observation_in_a_landscape_frame_maps_to_the_view():
    """The Vision pipeline's boundingBox is bottom-left; flip, unpad, then fill. 1600x900 upright, 800x450 view."""
    padding = letterbox_padding(1600, 900)
    np.testing.assert_allclose([padding.x, padding.y], [0.0, 0.21875], atol=1e-12, rtol=0)  # (1 - 900/1600) / 2
    observation = Rect(0.5, 0.5, 0.25, 0.28125)  # square coordinates, y up
    top_left = vision_rect_to_top_left(observation)
    assert_rect(top_left, (0.5, 0.21875, 0.25, 0.28125))
    in_picture = remove_letterbox(top_left, padding)
    assert_rect(in_picture, (0.5, 0.0, 0.25, 0.5))  # 0.28125 / 0.5625 = 0.5
    assert_rect(aspect_fill_rect(in_picture, (1600, 900), (800, 450)), (400, 0, 200, 225))  # same aspect: scale 0.5


def test_aspect_fill_point_agrees_with_the_rect_corners():
    rect = Rect(0.1, 0.2, 0.3, 0.4)
    view = aspect_fill_rect(rect, (1080, 1920), (390, 844))
    np.testing.assert_allclose(aspect_fill_point((0.1, 0.2), (1080, 1920), (390, 844)), [view.x, view.y], atol=1e-9)
    np.testing.assert_allclose(
        aspect_fill_point((0.4, 0.6), (1080, 1920), (390, 844)),
        [view.x + view.width, view.y + view.height],
        atol=1e-9,
    )


def test_a_mirrored_front_camera_face_gets_its_keypoints_swapped():
    """Front camera, portrait (.leftMirrored): the picture is a mirror image, as the preview shows it.

    The model labels by position: its "right eye" is the eye on the picture's left, here at x 0.4 — in a mirror
    image that is the subject's LEFT eye. After the swap, index 0 (right eye) is the eye at x 0.6.
    """
    model = [(0.4, 0.4), (0.6, 0.4), (0.5, 0.5), (0.5, 0.6), (0.3, 0.45), (0.7, 0.45)]
    subject = swap_left_right(model)
    assert subject == [(0.6, 0.4), (0.4, 0.4), (0.5, 0.5), (0.5, 0.6), (0.7, 0.45), (0.3, 0.45)]
    assert swap_left_right(subject) == model  # its own inverse
    assert model[0] == (0.4, 0.4)  # the input is left as it was


@pytest.mark.parametrize("width, height", [(1080, 1920), (1920, 1080), (480, 640), (500, 500), (1279, 721)])
@pytest.mark.parametrize("size", [128, 192, 256])
def test_letterbox_removal_equals_blazeconvs(width, height, size):
    """Same padding as blazeconv's letterbox (MediaPipe's ImageToTensorCalculator), same result as its removal."""
    image = np.zeros((height, width, 3), np.uint8)
    _, box = letterbox(image, size)
    padding = letterbox_padding(width, height)
    np.testing.assert_allclose(box.padding, [padding.x, padding.y, padding.x, padding.y], atol=1e-12, rtol=0)

    rng = np.random.default_rng(width * height + size)
    corners = np.sort(rng.uniform(0, 1, size=(5, 2, 2)), axis=1)  # 5 boxes, (min, max) corners in the square
    boxes = corners.reshape(5, 4)[:, [0, 2, 1, 3]]  # (xmin, ymin, xmax, ymax)
    keypoints = rng.uniform(0, 1, size=(5, 6, 2))
    expected_boxes, expected_keypoints = blazeconv_remove_letterbox(boxes, keypoints, box)

    for row, expected in zip(boxes, expected_boxes):
        xmin, ymin, xmax, ymax = row
        rect = remove_letterbox(Rect(xmin, ymin, xmax - xmin, ymax - ymin), padding)
        actual = [rect.x, rect.y, rect.x + rect.width, rect.y + rect.height]
        np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=0)  # blazeconv computes in float32
    for face, expected in zip(keypoints, expected_keypoints):
        actual = [remove_letterbox_point(tuple(p), padding) for p in face]
        np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=0)


def test_letterbox_round_trip():
    """Padding a picture point into the square and removing the letterbox gives the point back."""
    box = Letterbox(1080, 1920, 128, (0.21875, 0.0, 0.21875, 0.0))
    padding = letterbox_padding(1080, 1920)
    picture = np.array([[0.0, 0.0], [1.0, 1.0], [0.3, 0.7]])
    square = picture * [1 - 2 * padding.x, 1 - 2 * padding.y] + [padding.x, padding.y]
    np.testing.assert_allclose(square[1], [0.78125, 1.0], atol=1e-12, rtol=0)
    back = [remove_letterbox_point(tuple(p), padding) for p in square]
    np.testing.assert_allclose(back, picture, atol=1e-12, rtol=0)
    _, theirs = blazeconv_remove_letterbox(np.zeros((1, 4)), square[None], box)
    np.testing.assert_allclose(theirs[0], picture, atol=1e-6, rtol=0)


ORIENTATIONS = ["up", "upMirrored", "down", "downMirrored", "leftMirrored", "right", "rightMirrored", "left"]


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_sensor_point_undoes_upright_point(orientation):
    rng = np.random.default_rng(ORIENTATIONS.index(orientation))
    for point in rng.uniform(0, 1, size=(20, 2)):
        back = sensor_point(upright_point(tuple(point), orientation), orientation)
        np.testing.assert_allclose(back, point, atol=1e-12, rtol=0)


def test_upright_point_follows_the_exif_meaning():
    """The buffer's top-left corner (first row, first column) lands where EXIF says, per orientation."""
    top_left = (0.0, 0.0)
    assert upright_point(top_left, "right") == (1.0, 0.0)  # first row on the right, first column at the top
    assert upright_point(top_left, "left") == (0.0, 1.0)  # first row on the left, first column at the bottom
    assert upright_point(top_left, "leftMirrored") == (0.0, 0.0)  # transpose
    assert upright_point(top_left, "rightMirrored") == (1.0, 1.0)
    assert upright_point(top_left, "upMirrored") == (1.0, 0.0)
    assert upright_point(top_left, "downMirrored") == (0.0, 1.0)
    # Portrait back camera: a point a quarter across and a tenth down the landscape buffer.
    assert upright_point((0.25, 0.1), "right") == (0.9, 0.25)


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_mirrored_orientations_are_the_ones_that_flip(orientation):
    # A turn keeps the buffer's handedness; a flip reverses it: the sign of the corners' cross product tells.
    o, a, b = (upright_point(p, orientation) for p in [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)])
    cross = (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
    assert is_mirrored(orientation) == (cross < 0)


def test_front_camera_detection_in_landscape_drawn_on_a_portrait_preview():
    """Device held landscapeLeft, interface locked to portrait: detect upright (.downMirrored), draw on .leftMirrored.

    Worked by hand: the sensor point (s, t) is upright (s, 1 - t) for .downMirrored and (t, s) for .leftMirrored.
    """
    detect = exif_orientation("landscapeLeft", "front")
    display = exif_orientation("portrait", "front")
    assert (detect, display) == ("downMirrored", "leftMirrored")
    # (0.2, 0.3) in the detector's picture is sensor (0.2, 0.7), drawn at (0.7, 0.2).
    np.testing.assert_allclose(reorient_point((0.2, 0.3), detect, display), (0.7, 0.2), atol=1e-12, rtol=0)
    # A face box 0.2..0.4 across, 0.3..0.6 down: corners (0.7, 0.2) and (0.4, 0.4) on the preview.
    assert_rect(reorient_rect(Rect(0.2, 0.3, 0.2, 0.3), detect, display), (0.4, 0.2, 0.3, 0.2))
    # Same orientation: nothing moves.
    assert_rect(reorient_rect(Rect(0.2, 0.3, 0.2, 0.3), display, display), (0.2, 0.3, 0.2, 0.3))
