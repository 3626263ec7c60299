"""Anchors against MediaPipe's golden files and the original port's anchors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import DATA

from blazeconv.anchors import AnchorOptions, generate_anchors
from blazeconv.errors import OptionsError
from blazeconv.variants import VARIANTS

# The configurations of MediaPipe's ssd_anchors_calculator_test.cc for its two golden files.
GOLDEN_OPTIONS = {
    "anchor_golden_file_0.txt": dict(
        num_layers=5, min_scale=0.1171875, max_scale=0.75, input_size_height=256, input_size_width=256,
        anchor_offset_x=0.5, anchor_offset_y=0.5, strides=[8, 16, 32, 32, 32], aspect_ratios=[1.0],
        fixed_anchor_size=True,
    ),
    "anchor_golden_file_1.txt": dict(
        num_layers=6, min_scale=0.2, max_scale=0.95, input_size_height=300, input_size_width=300,
        anchor_offset_x=0.5, anchor_offset_y=0.5, strides=[16, 32, 64, 128, 256, 512],
        aspect_ratios=[1.0, 2.0, 0.5, 3.0, 0.3333], reduce_boxes_in_lowest_layer=True,
    ),
}


def assert_matches_golden(anchors: np.ndarray, golden_name: str) -> None:
    golden = np.loadtxt(DATA / "reference" / golden_name, dtype=np.float64).reshape(-1, 4)
    assert anchors.shape == golden.shape and anchors.dtype == np.float32
    # 1e-6 absolute; the golden text holds 6 significant digits, so values >= 1 are only known to
    # half a unit of the sixth digit (rtol 5e-6).
    np.testing.assert_allclose(anchors, golden, atol=1e-6, rtol=5e-6)


@pytest.mark.parametrize("golden_name", sorted(GOLDEN_OPTIONS))
def test_golden_files(golden_name):
    options = AnchorOptions.from_dict(GOLDEN_OPTIONS[golden_name])
    assert_matches_golden(generate_anchors(options), golden_name)


@pytest.mark.parametrize("golden_name", sorted(GOLDEN_OPTIONS))
def test_cli_options_file_reproduces_golden_files(golden_name, tmp_path, run_cli):
    options_file = tmp_path / "options.json"
    options_file.write_text(json.dumps(GOLDEN_OPTIONS[golden_name]))
    out = tmp_path / "anchors.npy"
    code, _, err = run_cli("anchors", "--options", options_file, "-o", out)
    assert code == 0, err
    assert_matches_golden(np.load(out), golden_name)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_anchor_counts(variant):
    v = VARIANTS[variant]
    anchors = v.anchors()
    assert anchors.shape == (v.num_anchors, 4)
    assert np.all((anchors[:, :2] > 0) & (anchors[:, :2] < 1)) and np.all(anchors[:, 2:] == 1.0)


def test_front_anchors_equal_the_original_ports():
    # The original port (hollance/BlazeFace-PyTorch) published anchors.npy for the 128 px model.
    seed = np.load(DATA / "seed" / "anchors.npy")
    np.testing.assert_array_equal(VARIANTS["front"].anchors(), seed)


def test_grids_run_row_by_row_finer_grid_first():
    anchors = VARIANTS["short_range"].anchors()
    # 16x16 cells with 2 anchors, then 8x8 cells with 6 anchors.
    assert np.allclose(anchors[0, :2], [0.5 / 16, 0.5 / 16]) and np.allclose(anchors[2, :2], [1.5 / 16, 0.5 / 16])
    assert np.allclose(anchors[512, :2], [0.5 / 8, 0.5 / 8]) and np.allclose(anchors[518, :2], [1.5 / 8, 0.5 / 8])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"strides": [8, 16]}, "one entry per layer"),
        ({"aspect_ratios": []}, "aspect_ratios is empty"),
        ({"bogus_field": 1}, "unknown anchor option"),
        ({"strides": "8"}, "expected a list"),
        ({"num_layers": 0}, "at least 1"),
    ],
)
def test_bad_options_are_reported(change, message):
    fields = {**GOLDEN_OPTIONS["anchor_golden_file_0.txt"], **change}
    with pytest.raises(OptionsError, match=message):
        AnchorOptions.from_dict(fields)


def test_missing_required_option_is_named():
    fields = dict(GOLDEN_OPTIONS["anchor_golden_file_0.txt"])
    del fields["min_scale"]
    with pytest.raises(OptionsError, match="missing anchor option.*min_scale"):
        AnchorOptions.from_dict(fields)
