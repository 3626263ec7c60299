"""The command line's messages: URLs, ``--debug`` anywhere, thresholds, ``verify`` on other files."""

from __future__ import annotations

import pytest
import torch
from helpers import DATA, assert_one_line_error, model_path

PHOTO = DATA / "images" / "1face.png"


@pytest.mark.parametrize(
    "args",
    [
        ["detect", "https://example.com/photo.jpg"],
        ["detect", PHOTO, "--model", "http://example.com/w.pth"],
        ["detect", PHOTO, "--model=s3://bucket/w.pth"],
        ["tflite2torch", "https://storage.googleapis.com/mediapipe-models/face_detector/x.tflite"],
        ["verify", "ftp://example.com/model.mlpackage"],
    ],
    ids=["image", "weights", "option-equals", "model", "verify"],
)
def test_a_url_is_not_read(args, run_cli):
    url = next(str(a).split("=", 1)[-1] for a in args if "://" in str(a))
    code, out, err = run_cli(*args)
    assert_one_line_error(code, err, url, 2)
    assert "URLs are not read" in err and "download" in err and "no such file" not in err


def test_debug_is_accepted_after_the_subcommand(tmp_path, run_cli):
    missing = tmp_path / "missing.tflite"
    for args in (["--debug", "tflite2torch", missing], ["tflite2torch", missing, "--debug"],
                 ["tflite2torch", "--debug", missing]):
        code, _, err = run_cli(*args)
        assert code == 3 and "Traceback" in err and err.strip().splitlines()[-1].startswith("Error: ")


@pytest.mark.parametrize(
    ("option", "value"),
    [("--min-score", "nan"), ("--min-score", "-0.1"), ("--min-score", "1.5"), ("--min-score", "inf"),
     ("--min-score", "often")],
)
def test_bad_detect_thresholds_are_options_errors(option, value, run_cli):
    code, out, err = run_cli("detect", PHOTO, option, value)
    assert_one_line_error(code, err, f"{option} {value}", 7)
    assert out == ""


@pytest.mark.parametrize("option", ["--iou-threshold", "--min-score", "--score-threshold"])
def test_bad_coreml_thresholds_are_options_errors(option, tmp_path, run_cli):
    code, _, err = run_cli("coreml", "front", option, "nan", "-o", tmp_path / "x.mlpackage")
    assert_one_line_error(code, err, f"{option} nan", 7)
    assert not (tmp_path / "x.mlpackage").exists()


@pytest.mark.parametrize(("args", "old", "new"), [
    (["coreml", "front", "--score-threshold", "0.6", "--min-score", "0.5"], "--score-threshold", "--min-score"),
    (["bench", "--batch", "4", "--batch-size", "8"], "--batch", "--batch-size"),
    (["detect", PHOTO, "--fast", "--backend", "torch"], "--fast", "--backend torch-fast"),
    (["detect", PHOTO, "--weights", "front", "--model", "front"], "--weights", "--model"),
])
def test_an_old_option_name_and_its_new_one_together_are_a_usage_error(args, old, new, run_cli):
    """The old names still work, with a one-line notice; given with the new name, one of them must go."""
    code, out, err = run_cli(*args)
    assert code == 2 and f"{old} is the old name of {new}: give one of them" in err and out == ""


def test_verify_on_files_that_are_not_core_ml_says_what_it_expected(tmp_path, run_cli, converted):
    pytest.importorskip("coremltools")
    weights = tmp_path / "front.pth"
    torch.save(converted("front").state_dict, weights)
    folder = tmp_path / "folder"
    folder.mkdir()
    cases = {model_path("front"): "but a TFLite model", weights: "zip archive (PyTorch .pth weights are one)",
             folder: "a folder without Manifest.json", PHOTO: "got .png"}
    for path, fragment in cases.items():
        code, _, err = run_cli("verify", path, PHOTO)
        assert_one_line_error(code, err, path, 3)
        assert "not a Core ML model" in err and "expected an .mlpackage folder or an .mlmodel file" in err, err
        assert fragment in err and "Wire format" not in err
