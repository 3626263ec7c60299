"""torch2tflite: a state_dict written back into a copy of a BlazeFace .tflite.

The round trip gives every shipped file again byte for byte; new weights run in LiteRT as they run in PyTorch (after
the float16 rounding the file's storage makes); MediaPipe Tasks loads the new file and finds what blazeconv finds with
the .pth; weights that do not fit are refused naming each difference.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch
from helpers import (
    ALL_VARIANTS,
    IMAGE_PATHS,
    QUICK_VARIANTS,
    REPO,
    assert_one_line_error,
    assert_same_faces_as_mediapipe,
    litert_outputs,
    model_path,
    plain_input,
    tiered,
)

from blazeconv import torch2tflite
from blazeconv.convert import convert_file, save_state_dict
from blazeconv.errors import WeightsError
from blazeconv.network import model_from_state_dict

MEDIAPIPE = REPO / ".venv-mediapipe" / "bin" / "python"
# The shipped files MediaPipe Tasks' FaceDetector loads: the others carry no TFLite metadata (no
# NormalizationOptions), which Tasks requires of a float input.
TASKS_VARIANTS = ["short_range", "full_range_sparse"]


def perturbed(state_dict: dict[str, torch.Tensor], seed: int = 0) -> dict[str, torch.Tensor]:
    """Every parameter times (1 + 5 % Gaussian noise): every value changes, zeros stay zeros (a sparse model's
    pattern holds), and the model still finds the faces. (Adding 0.01 to every weight drives the back model's
    logits to 1e5, where a parity check says nothing.)"""
    generator = torch.Generator().manual_seed(seed)
    return {k: v * (1 + 0.05 * torch.randn(v.shape, generator=generator)) for k, v in state_dict.items()}


def as_stored(state_dict: dict[str, torch.Tensor], conversion) -> dict[str, torch.Tensor]:
    """The weights as the file stores them: rounded to float16 where it keeps float16 (behind DEQUANTIZE)."""
    return {k: v.half().float() if conversion.parameters[k].tensor.stored_as.endswith("float16") else v
            for k, v in state_dict.items()}


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_round_trip_is_byte_identical(variant, converted, tmp_path):
    weights, out = tmp_path / f"{variant}.pth", tmp_path / f"{variant}.tflite"
    save_state_dict(converted(variant).state_dict, weights)
    written = torch2tflite(weights, variant, out)
    source = model_path(variant).read_bytes()
    assert out.read_bytes() == source, f"{variant}: {len(source)} bytes, written {out.stat().st_size}"
    assert (written.changed, written.bytes_changed, written.float16_rounding) == (0, 0, 0.0)
    assert written.tensors == len(converted(variant).state_dict) and written.recognised_by == "checksum"


@pytest.mark.parametrize("variant", ["short_range", "full_range_sparse"])
def test_a_file_not_shipped_round_trips_too(variant, converted, tmp_path):
    """A tuned file (recognised by its structure, not its checksum) is given back byte for byte as well."""
    tuned = tmp_path / "tuned.tflite"
    torch2tflite(perturbed(converted(variant).state_dict), variant, tuned)
    again = tmp_path / "again.tflite"
    written = torch2tflite(convert_file(tuned).state_dict, tuned, again)
    assert written.recognised_by == "structure" and written.variant.name == variant
    assert again.read_bytes() == tuned.read_bytes()


@pytest.mark.parametrize("variant", tiered(ALL_VARIANTS, QUICK_VARIANTS))
def test_new_weights_run_in_litert_as_in_pytorch(variant, converted, tmp_path):
    conversion = converted(variant)
    weights = perturbed(conversion.state_dict)
    out = tmp_path / "tuned.tflite"
    written = torch2tflite(weights, variant, out)
    # Every tensor got new bytes but those all zeros (front's file has 16 zero biases), which the noise keeps.
    assert written.changed == sum(bool(v.count_nonzero()) for v in weights.values()) > written.tensors // 2
    source = model_path(variant).read_bytes()
    assert len(out.read_bytes()) == len(source)

    stored = as_stored(weights, conversion)
    # The file reads back as exactly the weights given, rounded as the file stores them.
    back = convert_file(out).state_dict
    for key in stored:
        assert torch.equal(back[key], stored[key]), key

    x = np.stack([plain_input(p, conversion.variant.input_size) for p in IMAGE_PATHS])
    expected_reg, expected_cls = litert_outputs(out, x)
    with torch.no_grad():
        reg, cls = model_from_state_dict(stored)(torch.from_numpy(x).permute(0, 3, 1, 2))
    # The conversion parity bound of test_convert.py (float32 summation order); measured with these weights, the
    # largest difference is 0.53 of the bound (back's logits, which reach 1.6e3), 0.01-0.26 elsewhere.
    np.testing.assert_allclose(reg.numpy(), expected_reg, atol=1e-3, rtol=1e-5)
    np.testing.assert_allclose(cls.numpy(), expected_cls, atol=1e-3, rtol=1e-5)
    # ... and it is not the source's answer: the new weights are what runs (measured: 16 to 78 apart).
    source_reg, _ = litert_outputs(model_path(variant), x[:1])
    assert np.abs(source_reg - expected_reg[:1]).max() > 1.0


def test_the_command_writes_and_summarises(run_cli, converted, tmp_path):
    weights, out = tmp_path / "tuned.pth", tmp_path / "tuned.tflite"
    tuned = perturbed(converted("short_range").state_dict)
    save_state_dict(tuned, weights)
    code, stdout, err = run_cli("torch2tflite", weights, "--like", "short_range", "-o", out)
    assert code == 0, err
    assert stdout == ""
    assert "recognised as short_range by its checksum" in err
    nonzero = sum(bool(v.count_nonzero()) for v in tuned.values())  # 16 biases of the file are zeros, kept by the noise
    assert f"wrote {out}: 74 weight tensors, {nonzero} changed" in err, err
    assert "float16 rounding moved weights by at most" in err
    assert out.read_bytes()[4:8] == b"TFL3"


def test_the_default_output_is_the_weights_with_suffix_tflite(run_cli, converted, tmp_path):
    weights = tmp_path / "front.pth"
    save_state_dict(converted("front").state_dict, weights)
    code, _, err = run_cli("torch2tflite", weights, "--like", "front")
    assert code == 0, err
    assert (tmp_path / "front.tflite").read_bytes() == model_path("front").read_bytes()


@pytest.mark.parametrize("output", ["like", "weights"])
def test_an_input_is_never_written(run_cli, converted, tmp_path, output):
    like = tmp_path / "like.tflite"
    like.write_bytes(model_path("front").read_bytes())
    weights = tmp_path / "w.pth"
    save_state_dict(converted("front").state_dict, weights)
    before = {p: p.read_bytes() for p in (like, weights)}
    target = like if output == "like" else weights
    code, _, err = run_cli("torch2tflite", weights, "--like", like, "-o", target)
    assert_one_line_error(code, err, target, 2)
    assert all(p.read_bytes() == content for p, content in before.items())


# ------------------------------------------------------------------------------------------ refusals (exit 5)


def test_weights_of_another_architecture_are_refused_naming_each_key(run_cli, converted, tmp_path):
    weights = tmp_path / "front.pth"
    save_state_dict(converted("front").state_dict, weights)
    with pytest.raises(WeightsError) as info:
        torch2tflite(weights, "back", tmp_path / "out.tflite")
    message = str(info.value)
    assert "(they are blazeface128 weights)" in message
    for key in converted("back").state_dict.keys() - converted("front").state_dict.keys():
        assert key in message.split("missing ")[1].split(";")[0], key
    for key in converted("front").state_dict.keys() - converted("back").state_dict.keys():
        assert key in message.split("unexpected ")[1].split(";")[0], key
    code, _, err = run_cli("torch2tflite", weights, "--like", "back", "-o", tmp_path / "out.tflite")
    assert_one_line_error(code, err, weights, 5)
    assert not (tmp_path / "out.tflite").exists()


def test_wrong_shapes_are_refused_naming_each_tensor(run_cli, converted, tmp_path):
    weights = dict(converted("short_range").state_dict)
    weights["backbone1.0.weight"] = torch.zeros(24, 3, 3, 3)  # the stem is 24 x 3 x 5 x 5
    weights["classifier_8.bias"] = torch.zeros(3)
    del weights["regressor_16.bias"]
    weights["extra.weight"] = torch.zeros(1)
    path = tmp_path / "w.pth"
    save_state_dict(weights, path)
    code, _, err = run_cli("torch2tflite", path, "--like", "short_range", "-o", tmp_path / "out.tflite")
    assert_one_line_error(code, err, path, 5)
    for difference in ("backbone1.0.weight has shape [24, 3, 3, 3]", "needs [24, 3, 5, 5]",
                       "classifier_8.bias has shape [3]", "needs [2]", "missing regressor_16.bias",
                       "unexpected extra.weight"):
        assert difference in err, difference
    assert not (tmp_path / "out.tflite").exists()


def test_a_sparse_model_whose_zeros_moved_is_refused_naming_each_tensor(run_cli, converted, tmp_path):
    conversion = converted("full_range_sparse")
    sparse = [k for k, p in conversion.parameters.items() if p.tensor.stored_as.startswith("sparse")]
    assert len(sparse) == 46
    weights = dict(conversion.state_dict)
    moved = sparse[:2]
    for key in moved:
        value = weights[key].clone()
        zero = (value == 0).nonzero()[0]
        value[tuple(zero)] = 0.5
        weights[key] = value
    path = tmp_path / "moved.pth"
    save_state_dict(weights, path)
    code, _, err = run_cli("torch2tflite", path, "--like", "full_range_sparse", "-o", tmp_path / "out.tflite")
    assert_one_line_error(code, err, path, 5)
    for key in moved:
        first = [int(i) for i in (weights[key] == 0.5).nonzero()[0]]
        assert f"{key} ('{conversion.parameters[key].tensor.name}'): 1 nonzero values where the file's sparsity " \
               f"pattern has no place (its zeros moved), the first at {first}" in err
    assert err.count("zeros moved") == 2
    assert not (tmp_path / "out.tflite").exists()


def test_a_value_float16_cannot_hold_is_refused(converted, tmp_path):
    weights = dict(converted("short_range").state_dict)
    weights["backbone1.0.bias"] = weights["backbone1.0.bias"] + 1e5
    with pytest.raises(WeightsError, match=r"backbone1\.0\.bias .*beyond the 65504 a float16 constant holds"):
        torch2tflite(weights, "short_range", tmp_path / "out.tflite")


def test_a_dense_model_takes_new_zeros_and_nonzeros_anywhere(converted, tmp_path):
    """Only a sparse file has a pattern to keep: a float32 file stores every value."""
    weights = dict(converted("front").state_dict)
    weights["backbone1.0.weight"] = torch.zeros_like(weights["backbone1.0.weight"])
    out = tmp_path / "out.tflite"
    torch2tflite(weights, "front", out)
    assert torch.count_nonzero(convert_file(out).state_dict["backbone1.0.weight"]) == 0


# ------------------------------------------------------------------------------------------ MediaPipe Tasks


@pytest.mark.skipif(not MEDIAPIPE.is_file(), reason=f"no MediaPipe environment at {MEDIAPIPE} (make mediapipe)")
@pytest.mark.parametrize("variant", TASKS_VARIANTS)
def test_mediapipe_tasks_finds_on_the_new_file_what_blazeconv_finds_with_the_pth(variant, converted, tmp_path):
    from blazeconv import FaceDetector
    from blazeconv.bench import mediapipe_command

    # Weights float16 holds (as after a first export): the file then has exactly the .pth's weights. Unrounded, the
    # rounding alone moves scores by up to 0.0021, keypoints by 0.08 px and boxes by 1 px here (measured).
    conversion = converted(variant)
    weights, out = tmp_path / "tuned.pth", tmp_path / "tuned.tflite"
    save_state_dict(as_stored(perturbed(conversion.state_dict), conversion), weights)
    torch2tflite(weights, variant, out)
    detector = FaceDetector(weights, variant=variant, backend="torch", exact=True)  # MediaPipe's processing
    listing, records = tmp_path / "photos.txt", tmp_path / "mediapipe.jsonl"
    listing.write_text("".join(f"{p}\n" for p in IMAGE_PATHS))
    subprocess.run(mediapipe_command(MEDIAPIPE, out, detector.min_score, "files", str(listing), str(records)),
                   capture_output=True, text=True, check=True)
    theirs = [json.loads(line) for line in records.read_text().splitlines()]
    assert [r["image"] for r in theirs] == [str(p) for p in IMAGE_PATHS]
    assert sum(len(r["detections"]) for r in theirs) >= len(IMAGE_PATHS)  # faces to compare, not empty lists
    for path, record in zip(IMAGE_PATHS, theirs):
        # Measured: boxes equal, keypoints within 7e-5 px, scores within 2.4e-7. A box may still truncate to the next
        # whole pixel where the two runtimes' values straddle an integer (1 px).
        assert_same_faces_as_mediapipe(detector(path), record["detections"], record["width"], record["height"],
                                       path.name, box_px=1.0, keypoint_px=0.01, score=1e-5)
