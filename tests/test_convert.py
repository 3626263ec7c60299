"""tflite2torch: recognition, the checked derivation, parity with LiteRT, compatibility with the original port."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from helpers import (
    ALL_VARIANTS,
    DATA,
    IMAGE_PATHS,
    QUICK_IMAGES,
    assert_same_outputs,
    litert_outputs,
    model_path,
    plain_input,
    tiered,
)
from tflite_builder import palm_like_model

from blazeconv.convert import convert_graph
from blazeconv.errors import ModelFileError, UnsupportedModelError
from blazeconv.network import model_from_state_dict
from blazeconv.sources import load_model
from blazeconv.tflite_reader import read_graph


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_recognised_by_checksum_and_by_structure(variant, converted):
    conversion = converted(variant)
    assert conversion.variant.name == variant
    assert conversion.recognised_by == "checksum"
    # Without the checksum (a file we have never seen) the structure and weight storage still tell.
    anonymous = convert_graph(read_graph(model_path(variant)), sha256=None)
    assert anonymous.variant.name == variant
    assert anonymous.recognised_by == "structure"


@pytest.mark.parametrize("variant", ALL_VARIANTS)
@pytest.mark.parametrize("image_path", tiered(IMAGE_PATHS, QUICK_IMAGES), ids=lambda p: p.stem)
def test_parity_with_litert(variant, image_path, converted):
    conversion = converted(variant)
    model = model_from_state_dict(conversion.state_dict)
    x = plain_input(image_path, conversion.variant.input_size)
    expected_reg, expected_cls = litert_outputs(model_path(variant), x[None])
    with torch.no_grad():
        reg, cls = model(torch.from_numpy(x).permute(2, 0, 1)[None])
    # Background logits reach hundreds, where float32 summation order alone moves the third decimal.
    assert_same_outputs(reg.numpy(), expected_reg, atol=1e-3, rtol=1e-5)
    assert_same_outputs(cls.numpy(), expected_cls, atol=1e-3, rtol=1e-5)


def test_batched_forward_equals_single_images(converted):
    model = model_from_state_dict(converted("short_range").state_dict)
    batch = torch.from_numpy(np.stack([plain_input(p, 128) for p in IMAGE_PATHS])).permute(0, 3, 1, 2)
    with torch.no_grad():
        reg, cls = model(batch)
        singles = [model(image[None]) for image in batch]
    assert reg.shape == (len(IMAGE_PATHS), 896, 16) and cls.shape == (len(IMAGE_PATHS), 896, 1)
    # Batch size changes oneDNN's convolution algorithm and so the summation order: the core parity bound.
    torch.testing.assert_close(reg, torch.cat([s[0] for s in singles]), atol=1e-3, rtol=1e-5)
    torch.testing.assert_close(cls, torch.cat([s[1] for s in singles]), atol=1e-3, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["short_range", "back", "full_range", "full_range_sparse"])
def test_gradients_flow_through_the_in_place_operations(variant, converted):
    """The modules add residuals and apply ReLUs in place (for speed); fine-tuning must still get true gradients.

    Reverse mode (backward) and forward mode (dual numbers, derived independently) must agree on the loss's
    derivative along a random direction. A finite difference cannot be the reference here: with thousands of
    ReLUs, a step of any useful size crosses kinks (measured: off by 1e-4 to 4e-3 relative).
    """
    import torch.autograd.forward_ad as forward_ad

    model = model_from_state_dict(converted(variant).state_dict).double().train()
    size = model.input_size
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, size, size, generator=generator, dtype=torch.float64) * 2 - 1
    direction = torch.randn(x.shape, generator=generator, dtype=torch.float64)

    def loss(inputs):
        regressors, classificators = model(inputs)
        return regressors.square().mean() + classificators.sigmoid().mean()

    leaf = x.clone().requires_grad_(True)
    loss(leaf).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    with forward_ad.dual_level():
        forward = forward_ad.unpack_dual(loss(forward_ad.make_dual(x, direction))).tangent
    # float64: the two modes differ only by summation order (measured 1e-14 relative)
    torch.testing.assert_close((leaf.grad * direction).sum(), forward, rtol=1e-9, atol=0)


@pytest.mark.parametrize(("variant", "seed_file"), [("front", "blazeface.pth"), ("back", "blazefaceback.pth")])
def test_conversion_reproduces_the_original_port_exactly(variant, seed_file, converted):
    seed = torch.load(DATA / "seed" / seed_file, weights_only=True)
    ours = converted(variant).state_dict
    assert sorted(ours) == sorted(seed)
    for key in seed:
        assert torch.equal(ours[key], seed[key]), key


@pytest.mark.parametrize(("variant", "seed_file"), [("front", "blazeface.pth"), ("back", "blazefaceback.pth")])
def test_original_port_weights_load_and_compute_the_same(variant, seed_file, converted):
    seed_model = load_model(DATA / "seed" / seed_file)
    ours = model_from_state_dict(converted(variant).state_dict)
    x = torch.from_numpy(plain_input(IMAGE_PATHS[0], seed_model.input_size)).permute(2, 0, 1)[None]
    with torch.no_grad():
        for a, b in zip(seed_model(x), ours(x)):
            assert torch.equal(a, b)


def test_converted_weights_are_plain_float32_state_dict(tmp_path, converted):
    from blazeconv.convert import save_state_dict

    path = tmp_path / "w.pth"
    save_state_dict(converted("short_range").state_dict, path)
    loaded = torch.load(path, weights_only=True)
    assert all(isinstance(v, torch.Tensor) and v.dtype == torch.float32 for v in loaded.values())
    assert load_model(path).training is False


def test_wrong_tensor_shapes_are_all_reported_together():
    graph = read_graph(model_path("front"))
    tensors = list(graph.tensors)
    spoiled = []
    for t in tensors:
        if t.name in ("conv2d_3/Bias", "regressor_16/Bias"):
            tensors[t.index] = dataclasses.replace(t, shape=(7,), data=np.zeros(7, np.float32))
            spoiled.append(t.name)
    with pytest.raises(UnsupportedModelError) as info:
        convert_graph(dataclasses.replace(graph, tensors=tuple(tensors)))
    message = str(info.value)
    for name in spoiled:
        assert f"'{name}'" in message
    assert "backbone1.4.convs.1.bias" in message and "regressor_16.bias" in message


def test_non_face_detector_is_refused_with_what_was_expected(tmp_path):
    path = tmp_path / "palm_detection.tflite"
    path.write_bytes(palm_like_model())
    with pytest.raises(UnsupportedModelError) as info:
        convert_graph(read_graph(path))
    message = str(info.value)
    assert str(path) in message and "[1, N, 16]" in message and "[1, 2016, 18]" in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "not a TFLite flatbuffer"),
        (b"PK\x03\x04 not a model at all", "not a TFLite flatbuffer"),
        ("truncated", "malformed or truncated"),
    ],
)
def test_bad_files_raise_model_file_errors(tmp_path, content, expected):
    path = tmp_path / "bad.tflite"
    if content == "truncated":
        content = model_path("front").read_bytes()[:5000]
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=expected) as info:
        read_graph(path)
    assert str(path) in str(info.value)


def test_sparse_weights_densify_to_what_litert_computes():
    """Every DENSIFY output equals the tensor LiteRT's own DENSIFY kernel writes (read back as an intermediate).

    The XNNPACK delegate folds weights away without filling the intermediates, so LiteRT runs its builtin kernels.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    path = model_path("full_range_sparse")
    graph = read_graph(path)
    interpreter = Interpreter(
        model_path=str(path), num_threads=1, experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], np.zeros((1, 192, 192, 3), np.float32))
    interpreter.invoke()
    # The outputs of the 46 DENSIFY operators and of the DEQUANTIZE operators after them.
    densified = [t for t in graph.tensors if t.stored_as == "sparse float16" and t.dtype == np.dtype("<f4")]
    assert len(densified) == 2 * 46
    for tensor in densified:
        expected = interpreter.get_tensor(tensor.index).astype(np.float32)
        assert np.count_nonzero(expected) > 0, tensor.name
        np.testing.assert_array_equal(tensor.data, expected, err_msg=tensor.name)
