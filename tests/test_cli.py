"""The CLI as a user meets it: help, happy paths on the real model files, and every error path."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import MODELS, REPO, model_path
from tflite_builder import palm_like_model

from blazeconv.cli import cli


def assert_one_line_error(code: int, err: str, culprit, expected_code: int) -> None:
    """A failure is exactly one ``Error:`` line naming the culprit, a non-zero code, no traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == expected_code, err
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    assert str(culprit) in lines[0]
    assert "Traceback" not in err


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


@pytest.mark.parametrize("variant", ["front", "short_range", "back"])
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
