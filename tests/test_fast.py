"""The fast path (blazeconv.fast) and the streamed detect: same answers as the plain module and LiteRT.

Speed is measured by ``blazeconv bench``, never here: these tests check that every speed-up keeps the outputs
within the core parity bound, that the rewrites are generic (a module blazeconv has never seen), and that the
benchmark command runs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import (
    ALL_VARIANTS,
    DATA,
    IMAGE_PATHS,
    QUICK_VARIANTS,
    assert_same_outputs,
    litert_outputs,
    model_path,
    plain_input,
    tiered,
)
from torch import nn

from blazeconv.detection import decode, decode_and_suppress, detect_files, detect_images, load_image, weighted_nms
from blazeconv.errors import ImageError
from blazeconv.fast import FastModel, compile_graph, fast_model
from blazeconv.fast_rewrites import max_pool_2x2
from blazeconv.network import model_from_state_dict


@pytest.fixture(scope="module")
def models(converted):
    """``models(variant) -> (module, FastModel)``, each variant converted and wrapped once."""
    cache = {}

    def get(variant: str):
        if variant not in cache:
            module = model_from_state_dict(converted(variant).state_dict)
            cache[variant] = module, fast_model(module)
        return cache[variant]

    return get


# ------------------------------------------------------------------------------------ parity with LiteRT


@pytest.mark.parametrize("variant", tiered(ALL_VARIANTS, QUICK_VARIANTS))
def test_fast_model_matches_litert_on_every_photo(variant, models):
    module, fast = models(variant)
    size = module.input_size
    photos = np.stack([plain_input(p, size) for p in IMAGE_PATHS])  # (B, S, S, 3)
    expected_reg, expected_cls = litert_outputs(model_path(variant), photos)
    with torch.inference_mode():
        for i, photo in enumerate(photos):  # batch 1, the shape detect_image runs
            reg, cls = fast(torch.from_numpy(photo).permute(2, 0, 1)[None])
            # The core issue's bound for the converted model, unchanged by the fast path.
            assert_same_outputs(reg.numpy(), expected_reg[i : i + 1], atol=1e-3, rtol=1e-5)
            assert_same_outputs(cls.numpy(), expected_cls[i : i + 1], atol=1e-3, rtol=1e-5)
    assert not fast.fallbacks, fast.fallbacks  # the compiled graph ran, not the module
    rewrites = fast.compiled[0].rewrites
    # Every BlazeFace form has residual blocks, added in place by the module: the rewrite must have seen them.
    assert rewrites["residual_in_place"] > 0 and rewrites["prepacked_conv"] > 0, rewrites


@pytest.mark.slow
def test_graphs_compiled_inside_inference_mode_keep_whole_operators(models):
    module, fast = models("full_range")
    with torch.inference_mode():  # as detect calls the model; make_fx would decompose upsample_bilinear2d here
        code = str(fast.graph_for((2, 3, 192, 192)).graph)
    assert "upsample_bilinear2d" in code and "_unsafe_index" not in code


@pytest.mark.slow
def test_large_batches_run_in_chunks_and_equal_the_module(converted):
    module = model_from_state_dict(converted("short_range").state_dict)
    fast = FastModel(module, max_batch=3)
    batch = torch.from_numpy(np.stack([plain_input(p, 128) for p in IMAGE_PATHS[:5]])).permute(0, 3, 1, 2)
    with torch.inference_mode():
        expected = module(batch)
        actual = fast(batch)  # a chunk of 3 and a remainder of 2
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, atol=1e-3, rtol=1e-5)
    assert [c.shape for c in fast.compiled] == [(3, 3, 128, 128), (2, 3, 128, 128)]


def test_default_chunks_hold_the_same_number_of_pixels():
    fast = FastModel(nn.Identity())
    assert fast.chunk_size(128, 128) == 16 and fast.chunk_size(256, 256) == 4 and fast.chunk_size(192, 192) == 7
    assert fast.chunk_size(1024, 1024) == 1


def test_fast_model_keeps_the_module_and_its_attributes(models):
    module, fast = models("short_range")
    assert fast.module is module
    assert fast.input_size == module.input_size and fast.architecture == module.architecture
    fast.warm_up()  # compiled here, whichever test ran before
    assert fast.startup_seconds > 0


# ------------------------------------------------------------------------- generic: a module never seen


class _Toy(nn.Module):
    """Every pattern the rewrites look for, in a network that is not BlazeFace: SAME pads (symmetric and not),
    a channel-padded residual, a same-shape residual, a 2x2 max-pool, a 1x1 head, in-place and plain ReLUs."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 8, 3, stride=2)
        self.dw = nn.Conv2d(8, 8, 3, groups=8)
        self.pw = nn.Conv2d(8, 12, 1)
        self.dw2 = nn.Conv2d(12, 12, 3, groups=12)
        self.pw2 = nn.Conv2d(12, 12, 1)
        self.head = nn.Conv2d(12, 5, 1)

    def forward(self, x):
        x = F.relu(self.stem(F.pad(x, (0, 1, 0, 1))))  # asymmetric: stays a pad
        y = self.pw(self.dw(F.pad(x, (1, 1, 1, 1))))  # symmetric: folded into the conv
        x = torch.relu_(y + F.pad(x, (0, 0, 0, 0, 0, 4)))  # channel-padded residual
        x = torch.relu(self.pw2(self.dw2(F.pad(x, (1, 1, 1, 1)))) + x)  # same-shape residual
        x = F.max_pool2d(x, 2)
        return self.head(x).flatten(1), x.mean((2, 3))


def test_rewrites_are_generic_and_exact_enough_on_an_unknown_module():
    module = _Toy().eval()
    for size, prepacked in ((32, 3), (128, 5)):
        graph, applied = compile_graph(module, (2, 3, size, size))
        assert applied["fold_padding"] == 2 and applied["pool_as_maximum"] == 1 and applied["residual_in_place"] == 2
        # The stem and both depthwise convs; the 1x1 convs too once they are large (pw2 then carries its residual
        # add and ReLU as oneDNN post-ops); the head on the pooled map stays ATen's GEMM.
        assert applied["prepacked_conv"] == prepacked
        x = torch.randn(2, 3, size, size)
        with torch.inference_mode():
            for a, e in zip(graph(x.contiguous(memory_format=torch.channels_last)), module(x)):
                torch.testing.assert_close(a, e, atol=1e-5, rtol=1e-5)


class _Branchy(nn.Module):
    def forward(self, x):
        return x * 2 if x.sum() > 0 else x - 1  # control flow on a tensor's value: no single graph exists


def test_inputs_the_graphs_do_not_take_go_to_the_module():
    module = _Toy().double().eval()
    fast = FastModel(module)
    x = torch.randn(1, 3, 16, 16, dtype=torch.float64)
    with torch.inference_mode():
        for a, e in zip(fast(x), module(x)):
            torch.testing.assert_close(a, e, rtol=0, atol=0)
    assert not fast.compiled


def test_a_module_that_cannot_be_traced_falls_back_to_itself():
    fast = FastModel(_Branchy())
    x = -torch.ones(1, 3, 4, 4)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), x - 1)
    assert (1, 3, 4, 4) in fast.fallbacks


def test_max_pool_2x2_is_max_pool2d():
    x = torch.randn(3, 5, 8, 6).contiguous(memory_format=torch.channels_last)
    x[0, 0, 0, 0] = float("nan")
    torch.testing.assert_close(max_pool_2x2(x), F.max_pool2d(x, 2), equal_nan=True)


# ------------------------------------------------------------------------------------- post-processing


def _plain_pipeline(raw, logits, anchors, size, min_score):
    """Decode all, then threshold, then weighted NMS: the order MediaPipe's calculators run in."""
    boxes, keypoints, scores = decode(raw, logits, anchors, size)
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    keep = (scores >= np.float32(min_score)) & (width >= 0) & (height >= 0)
    return weighted_nms(boxes[keep], keypoints[keep], scores[keep])


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("variant", ["short_range", "full_range"])
def test_decode_and_suppress_equals_decoding_everything_first(seed, variant):
    from blazeconv.variants import get_variant

    v = get_variant(variant)
    anchors = v.anchors()
    rng = np.random.default_rng(seed)
    raw = rng.normal(0, 0.05 * v.input_size, (len(anchors), 16)).astype(np.float32)
    raw[::7, 2:4] *= -1  # some boxes with negative size: dropped
    logits = rng.normal(-2, 3, (len(anchors), 1)).astype(np.float32)
    actual = decode_and_suppress(raw, logits, anchors, v.input_size, v.min_score)
    expected = _plain_pipeline(raw, logits, anchors, v.input_size, v.min_score)
    for a, e in zip(actual, expected):
        assert a.shape == e.shape
        np.testing.assert_array_equal(a, e)


def test_decode_and_suppress_names_mismatched_shapes():
    from blazeconv.errors import OptionsError

    with pytest.raises(OptionsError, match="anchors"):
        decode_and_suppress(np.zeros((10, 16), np.float32), np.zeros(10, np.float32), np.zeros((9, 4)), 128, 0.5)


def test_weighted_nms_keeps_an_infinite_non_member_out_of_other_clusters():
    boxes = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [5, 5, np.inf, 6]], np.float32)
    keypoints = np.zeros((3, 6, 2), np.float32)
    out_boxes, _, out_scores = weighted_nms(boxes, keypoints, np.array([0.9, 0.8, 0.7], np.float32))
    np.testing.assert_array_equal(out_boxes[0], [0, 0, 1, 1])
    np.testing.assert_array_equal(out_scores, np.array([0.9, 0.7], np.float32))


# ----------------------------------------------------------------------------------- streamed detect


def test_detect_files_streams_in_order_with_errors_in_place(tmp_path, converted):
    module = model_from_state_dict(converted("short_range").state_dict)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    paths = [IMAGE_PATHS[0], broken, *IMAGE_PATHS[1:], IMAGE_PATHS[0]]
    streamed = list(detect_files(module, paths, variant="short_range", batch_size=3, workers=2))
    assert [p for p, _, _ in streamed] == paths
    assert streamed[1][2] is None and isinstance(streamed[1][1], ImageError)
    readable = [p for p in paths if p != broken]
    expected = detect_images(module, [load_image(p) for p in readable], variant="short_range")
    found = [d for _, _, d in streamed if d is not None]
    assert [len(d) for d in found] == [len(d) for d in expected]
    for mine, theirs in zip(found, expected):  # batches of 3 against one of 32: oneDNN sums in another order
        for a, b in zip(mine, theirs):
            assert abs(a.score - b.score) < 1e-5
            np.testing.assert_allclose(a.box, b.box, atol=1e-5)
            np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-5)


# ---------------------------------------------------------------------------------------------- CLI


@pytest.mark.slow
def test_detect_fast_and_plain_agree(run_cli, converted, tmp_path):
    from blazeconv.convert import save_state_dict

    weights = tmp_path / "short_range.pth"
    save_state_dict(converted("short_range").state_dict, weights)
    image = DATA / "images" / "3faces.png"
    outputs = {}
    for backend in ("torch-fast", "torch"):
        code, out, err = run_cli("detect", image, "--model", weights, "--json", "-", "--backend", backend)
        assert code == 0, err
        outputs[backend] = out
    import json

    fast, plain = (json.loads(outputs[b])["images"][0]["detections"] for b in ("torch-fast", "torch"))
    assert len(fast) == len(plain) == 3
    for a, b in zip(fast, plain):
        assert abs(a["score"] - b["score"]) < 1e-4
        np.testing.assert_allclose(a["box"], b["box"], atol=1e-4)


@pytest.mark.slow
def test_bench_smoke(run_cli, tmp_path):
    table = tmp_path / "bench.md"
    code, out, err = run_cli("bench", "--quick", "--model", "short_range", "--rounds", "1", "--warmup", "0",
                             "--batch-size", "2", "--throughput-images", "6", "-o", table)
    assert code == 0, err
    for heading in ("LiteRT (XNNPACK)", "eager PyTorch", "fast start-up", "decode + NMS ms", "images/s",
                    "Conversion stages", "torch ", "cores"):
        assert heading in out
    assert "| short_range | 1 |" in out and table.read_text().strip() == out.strip()
