"""The CLI as a user meets it: help, happy paths on the real model files, and every error path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ALL_VARIANTS, MODELS, REPO, assert_one_line_error, iou, model_path
from tflite_builder import palm_like_model

from blazeconv.cli import cli


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_every_command_has_help(command, run_cli):
    code, out, _ = run_cli(command, "--help")
    assert code == 0
    assert "Usage: blazeconv" in out and "Example" in out


def test_top_level_help_lists_commands_and_exit_codes(run_cli):
    code, out, _ = run_cli("--help")
    assert code == 0
    for command in cli.commands:
        assert command in out
    assert "Exit codes" in out


def test_python_dash_m_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "blazeconv", "--version"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0 and "version" in result.stdout


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_tflite2torch_writes_a_weights_only_state_dict(variant, tmp_path, run_cli):
    out = tmp_path / f"{variant}.pth"
    code, _, err = run_cli("tflite2torch", model_path(variant), "-o", out)
    assert code == 0, err
    assert f"recognised as {variant}" in err
    state_dict = torch.load(out, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state_dict.values())
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left beside it


def test_tflite2torch_default_output_is_beside_the_model(tmp_path, run_cli):
    model = tmp_path / "face_detection_front.tflite"
    model.write_bytes(model_path("front").read_bytes())
    code, _, err = run_cli("tflite2torch", model)
    assert code == 0, err
    assert (tmp_path / "face_detection_front.pth").is_file()


def _missing(tmp_path):
    return tmp_path / "missing.tflite"


def _not_flatbuffer(tmp_path):
    path = tmp_path / "notes.tflite"
    path.write_text("this is not a model\n")
    return path


def _truncated(tmp_path):
    path = tmp_path / "truncated.tflite"
    path.write_bytes((MODELS / "face_detection_short_range.tflite").read_bytes()[:20000])
    return path


def _palm(tmp_path):
    path = tmp_path / "palm_detection.tflite"
    path.write_bytes(palm_like_model())
    return path


@pytest.mark.parametrize(
    ("make_input", "expected_code", "fragment"),
    [
        (_missing, 3, "no such file"),
        (_not_flatbuffer, 3, "not a TFLite flatbuffer"),
        (_truncated, 3, "malformed or truncated"),
        (_palm, 4, "not a supported BlazeFace face detector"),
    ],
    ids=["missing", "not-flatbuffer", "truncated", "non-face-model"],
)
def test_tflite2torch_errors(make_input, expected_code, fragment, tmp_path, run_cli):
    model = make_input(tmp_path)
    out = tmp_path / "out" / "weights.pth"
    out.parent.mkdir()  # a missing output folder is refused before the model is read (test_outputs.py)
    code, _, err = run_cli("tflite2torch", model, "-o", out)
    assert_one_line_error(code, err, model, expected_code)
    assert fragment in err
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_failed_conversion_keeps_the_previous_artifact(tmp_path, run_cli):
    out = tmp_path / "weights.pth"
    out.write_bytes(b"previous artifact")
    code, _, err = run_cli("tflite2torch", _truncated(tmp_path), "-o", out)
    assert code == 3
    assert out.read_bytes() == b"previous artifact"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["truncated.tflite", "weights.pth"]


def test_debug_shows_the_traceback(tmp_path, run_cli):
    code, _, err = run_cli("--debug", "tflite2torch", _missing(tmp_path))
    assert code == 3 and "Traceback" in err and err.strip().splitlines()[-1].startswith("Error: ")


def test_anchors_for_a_variant(tmp_path, run_cli):
    out = tmp_path / "a.npy"
    code, _, err = run_cli("anchors", "--variant", "back", "-o", out)
    assert code == 0, err
    anchors = np.load(out)
    assert anchors.shape == (896, 4) and anchors.dtype == np.float32


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(None, "no such file"), ("{not json", "not valid JSON"), ("[1, 2]", "expected a JSON object"),
     ('{"num_layers": 1}', "missing anchor option")],
    ids=["missing", "bad-json", "not-object", "incomplete"],
)
def test_anchors_bad_options_file(content, fragment, tmp_path, run_cli):
    options = tmp_path / "options.json"
    if content is not None:
        options.write_text(content)
    out = tmp_path / "a.npy"
    code, _, err = run_cli("anchors", "--options", options, "-o", out)
    assert_one_line_error(code, err, options, 7)
    assert fragment in err and not out.exists()


def test_anchors_needs_exactly_one_source(run_cli):
    code, _, err = run_cli("anchors")
    assert code == 2 and "exactly one of --variant or --options" in err


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """detect converts the shipped model into this session's own cache, not the user's."""
    monkeypatch.setenv("BLAZECONV_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# --exact: the model at its one scale, decoded in full, as MediaPipe runs it.
# MediaPipe's Python solution was run with min_detection_confidence=0.5. For short range that is the decoder's
# threshold; the full-range graph keeps its own 0.6 before NMS (0.5 only filters afterwards), which is why
# full_range_sparse runs with its default threshold here: at 0.5 extra candidates join the weighted clusters.
@pytest.mark.parametrize(("variant", "options"), [("short_range", ["--min-score", "0.5"]),
                                                  pytest.param("full_range_sparse", [], marks=pytest.mark.slow)])
def test_detect_matches_mediapipe_on_every_photo(variant, options, tmp_path, run_cli, private_cache):
    import json

    from helpers import DATA

    out = tmp_path / "detections.json"
    code, _, err = run_cli("detect", DATA / "images", "--model", variant, "--exact", *options, "--json", out)
    assert code == 0, err
    assert not private_cache.exists()  # the packaged ONNX network: nothing converted or exported
    reference = json.loads((DATA / "mediapipe_detections.json").read_text())
    images = json.loads(out.read_text())["images"]
    assert sorted(Path(i["path"]).name for i in images) == sorted(reference)
    for image in images:
        expected = reference[Path(image["path"]).name]
        assert [image["width"], image["height"]] == expected["size"]
        ours, theirs = image["detections"], expected[variant]
        assert len(ours) == len(theirs), image["path"]
        for det, ref in zip(ours, sorted(theirs, key=lambda d: -d["score"])):
            x, y, w, h = ref["box_xywh"]
            assert iou(det["box"], [x, y, x + w, y + h]) >= 0.98
            np.testing.assert_allclose(det["keypoints"], ref["keypoints"], atol=0.005, rtol=0)
            assert abs(det["score"] - ref["score"]) <= 0.005


@pytest.mark.slow
def test_detect_annotates_and_prints_a_summary(tmp_path, run_cli, private_cache):
    from helpers import DATA
    from PIL import Image

    code, out, err = run_cli("detect", DATA / "images" / "3faces.png", "--annotate", tmp_path / "ann")
    assert code == 0, err
    assert "3faces.png: 3 faces" in out  # the summary is data: stdout
    with Image.open(tmp_path / "ann" / "3faces.png") as annotated:
        assert annotated.size == (128, 128)


@pytest.mark.slow
def test_detect_with_weights_and_json_on_stdout(tmp_path, run_cli, converted):
    import json

    from helpers import DATA

    from blazeconv.convert import save_state_dict

    weights = tmp_path / "back.pth"
    save_state_dict(converted("back").state_dict, weights)
    code, out, err = run_cli("detect", DATA / "images" / "astronaut.png", "--model", weights, "--json", "-")
    assert code == 0, err
    document = json.loads(out)
    assert len(document["images"][0]["detections"]) == 1
    assert "model back" in err


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["missing", "not-an-image", "truncated"])
def test_detect_unreadable_image(kind, tmp_path, run_cli, private_cache):
    import json

    from helpers import DATA

    image = tmp_path / "photo.png"
    if kind == "not-an-image":
        image.write_text("hello")
    elif kind == "truncated":
        image.write_bytes((DATA / "images" / "astronaut.png").read_bytes()[:3000])
    out = tmp_path / "out.json"
    code, _, err = run_cli("detect", image, "--json", out)
    assert_one_line_error(code, err, image, 6)
    document = json.loads(out.read_text())  # written even when every image failed
    assert document["images"] == [] and str(image) in document["errors"][0]


def test_detect_bad_weights(tmp_path, run_cli):
    weights = tmp_path / "w.pth"
    torch.save({"conv.weight": torch.zeros(3)}, weights)
    code, _, err = run_cli("detect", REPO / "tests" / "data" / "images" / "1face.png", "--model", weights)
    assert_one_line_error(code, err, weights, 5)


@pytest.mark.slow
def test_detect_one_bad_file_does_not_stop_the_others(tmp_path, run_cli, private_cache):
    import json
    import shutil

    from helpers import DATA

    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(DATA / "images" / "1face.png", folder)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    out = tmp_path / "out.json"
    code, _, err = run_cli("detect", folder, "--json", out)
    assert code == 6 and "broken.jpg" in err.splitlines()[-1]
    document = json.loads(out.read_text())
    assert [Path(i["path"]).name for i in document["images"]] == ["1face.png"]
    assert "broken.jpg" in document["errors"][0]


def test_a_picture_without_faces_gets_a_hint_only_where_small_faces_were_not_looked_for(tmp_path, run_cli):
    import json

    from PIL import Image

    blank = tmp_path / "wall.png"
    Image.new("RGB", (480, 270), (128, 128, 128)).save(blank)
    code, out, err = run_cli("detect", blank, "--exact")
    hints = [line for line in err.splitlines() if line.startswith("hint:")]
    assert code == 0 and "0 faces" in out and len(hints) == 1, err
    assert f"hint: {blank}: no face found; full_range_sparse as MediaPipe runs it (--exact) looks for faces of " \
           "about 41 px and larger on this 480x270 picture: to find faces down to 11 px, run without --exact" == hints[0]
    code, out, err = run_cli("detect", blank, "--exact", "--json", "-")
    assert code == 0 and json.loads(out)["images"][0]["detections"] == [] and "hint:" in err  # never in the JSON
    for options in ((), ("--exact", "--quiet"), ("--model", "short_range", "--exact", "--min-score", "0.99", "--quiet")):
        code, _, err = run_cli("detect", blank, *options)
        assert code == 0 and "hint:" not in err, (options, err)  # the defaults look for small faces; --quiet: quiet
    code, _, err = run_cli("blur", blank, "-o", tmp_path / "out.png", "--no-tile")
    assert code == 0 and "hint:" in err and "run without --no-tile" in err
