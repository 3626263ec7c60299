"""ONNX export: LiteRT parity through ONNX Runtime, the detections model against our own pipeline, the cache, the CLI.

Every model is exported once per session through ``shipped.cached_onnx`` (the path the backends use) into a
session cache folder; ONNX Runtime runs on the CPU with one thread, as LiteRT does here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import (
    ALL_VARIANTS,
    IMAGE_PATHS,
    QUICK_IMAGES,
    QUICK_VARIANTS,
    REPO,
    assert_same_outputs,
    litert_outputs,
    model_path,
    plain_input,
    tiered,
)

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")

import onnx  # noqa: E402

from blazeconv.detection import decode_and_suppress, letterbox, load_image  # noqa: E402
from blazeconv.export.onnx import DetectionHead  # noqa: E402
from blazeconv.network import model_from_state_dict  # noqa: E402
from blazeconv.variants import KEYPOINT_NAMES, VARIANTS  # noqa: E402

# Shapes of the network's graph that must not come back: ScatterND is the in-place residual exported as
# slice_scatter (half ONNX Runtime's speed), Shape the SAME padding computed at run time.
SLOW_OPS = {"ScatterND", "Shape", "Slice"}


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory):
    """A session-wide ``BLAZECONV_CACHE``: ``cached_onnx`` exports each model once into it."""
    folder = tmp_path_factory.mktemp("onnx-cache")
    saved = os.environ.get("BLAZECONV_CACHE")
    os.environ["BLAZECONV_CACHE"] = str(folder)
    yield folder
    if saved is None:
        os.environ.pop("BLAZECONV_CACHE", None)
    else:
        os.environ["BLAZECONV_CACHE"] = saved


@pytest.fixture(scope="session")
def exported(onnx_cache):
    """``exported(variant, detections=False)`` -> path of the shipped model's ONNX export (``cached_onnx``)."""
    from blazeconv.sources import cached_onnx

    def get(variant: str, detections: bool = False):
        return cached_onnx(VARIANTS[variant], detections=detections)

    return get


_SESSIONS: dict = {}


def session(path) -> ort.InferenceSession:
    """ONNX Runtime on the CPU, one thread, warnings off (the threshold initializers' notice)."""
    if path not in _SESSIONS:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        _SESSIONS[path] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return _SESSIONS[path]


def letterboxed(image_path, size: int) -> np.ndarray:
    """``(3, size, size)`` float32 in [-1, 1]: the photo as ``detect`` feeds it to the network."""
    return letterbox(load_image(image_path), size)[0]


def pipeline_rows(model, image: np.ndarray, variant, min_score: float | None = None, iou: float = 0.3) -> np.ndarray:
    """Our own pipeline on ``image (3, S, S)``: the torch model's raw outputs through ``decode_and_suppress``,
    as ``(D, 17)`` rows ``(box corners, keypoints, score)``."""
    with torch.no_grad():
        regressors, classificators = model(torch.from_numpy(image)[None])
    boxes, keypoints, scores = decode_and_suppress(
        regressors[0].numpy(), classificators[0].numpy(), variant.anchors(), variant.input_size,
        variant.min_score if min_score is None else min_score, iou,
    )
    return np.concatenate([boxes, keypoints.reshape(len(boxes), 2 * len(KEYPOINT_NAMES)), scores[:, None]], axis=1)


def assert_same_detections(detections: np.ndarray, count: int, expected: np.ndarray) -> None:
    """``detections (M, 17)`` with ``count`` faces: the same faces in the same order as ``expected (D, 17)``,
    boxes, keypoints and scores within 1e-4; zero rows after the last face."""
    assert count == len(expected), f"{count} faces, expected {len(expected)}"
    np.testing.assert_allclose(detections[:count], expected, atol=1e-4, rtol=0)
    assert not detections[count:].any(), "rows after the last face must be zero"


# ---------------------------------------------------------------------------------------------- network


@pytest.mark.parametrize("variant", tiered(ALL_VARIANTS, QUICK_VARIANTS))
@pytest.mark.parametrize("image_path", tiered(IMAGE_PATHS, QUICK_IMAGES), ids=lambda p: p.stem)
def test_parity_with_litert(variant, image_path, exported):
    size = VARIANTS[variant].input_size
    x = plain_input(image_path, size)  # (S, S, 3)
    expected_reg, expected_cls = litert_outputs(model_path(variant), x[None])
    reg, cls = session(exported(variant)).run(None, {"image": x.transpose(2, 0, 1)[None]})
    # The core parity bound: background logits reach hundreds, where float32 summation order moves the third decimal.
    assert_same_outputs(reg, expected_reg, atol=1e-3, rtol=1e-5)
    assert_same_outputs(cls, expected_cls, atol=1e-3, rtol=1e-5)


@pytest.mark.parametrize("variant", tiered(ALL_VARIANTS, QUICK_VARIANTS))
def test_dynamic_batch_equals_single_images(variant, exported):
    v = VARIANTS[variant]
    batch = np.stack([plain_input(p, v.input_size).transpose(2, 0, 1) for p in IMAGE_PATHS])
    runner = session(exported(variant))
    reg, cls = runner.run(None, {"image": batch})
    assert reg.shape == (len(batch), v.num_anchors, 16) and cls.shape == (len(batch), v.num_anchors, 1)
    for k in (0, len(batch) - 1):
        single_reg, single_cls = runner.run(None, {"image": batch[k:k + 1]})
        # Another batch size may pick another convolution algorithm: the core parity bound.
        assert_same_outputs(reg[k:k + 1], single_reg, atol=1e-3, rtol=1e-5)
        assert_same_outputs(cls[k:k + 1], single_cls, atol=1e-3, rtol=1e-5)


@pytest.mark.parametrize("variant", tiered(ALL_VARIANTS, QUICK_VARIANTS))
def test_network_graph_is_export_friendly(variant, exported):
    model = onnx.load(exported(variant))
    ops = {node.op_type for node in model.graph.node}
    assert not ops & SLOW_OPS, f"slow ops in the exported network: {sorted(ops & SLOW_OPS)}"
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["regressors", "classificators"]
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.HasField("dim_value"), "the batch dimension must be dynamic"


@pytest.mark.parametrize("variant", tiered(ALL_VARIANTS, QUICK_VARIANTS))
def test_metadata_describes_the_model(variant, exported):
    from blazeconv import __version__
    from blazeconv.anchors import AnchorOptions, generate_anchors

    v = VARIANTS[variant]
    meta = {p.key: p.value for p in onnx.load(exported(variant)).metadata_props}
    assert meta["variant"] == variant and meta["kind"] == "raw"
    assert meta["source_sha256"] == v.sha256
    assert meta["blazeconv_version"] == __version__
    assert json.loads(meta["keypoint_names"]) == list(KEYPOINT_NAMES)
    assert float(meta["min_score"]) == v.min_score and float(meta["iou_threshold"]) == 0.3
    assert int(meta["input_size"]) == v.input_size and int(meta["num_anchors"]) == v.num_anchors
    fields = json.loads(meta["anchor_options"])
    options = AnchorOptions(**{k: tuple(x) if isinstance(x, list) else x for k, x in fields.items()})
    np.testing.assert_array_equal(generate_anchors(options), v.anchors())


# ------------------------------------------------------------------------------------------- detections


@pytest.fixture(scope="session")
def torch_model(converted):
    cache = {}

    def get(variant: str):
        if variant not in cache:
            cache[variant] = model_from_state_dict(converted(variant).state_dict)
        return cache[variant]

    return get


@pytest.mark.parametrize("variant", tiered(ALL_VARIANTS, QUICK_VARIANTS))
@pytest.mark.parametrize("image_path", tiered(IMAGE_PATHS, QUICK_IMAGES), ids=lambda p: p.stem)
def test_detections_equal_our_pipeline(variant, image_path, exported, torch_model):
    v = VARIANTS[variant]
    image = letterboxed(image_path, v.input_size)
    detections, count = session(exported(variant, detections=True)).run(None, {"image": image[None]})
    assert detections.shape == (1, 16, 17) and count.shape == (1,) and count.dtype == np.int64
    assert_same_detections(detections[0], int(count[0]), pipeline_rows(torch_model(variant), image, v))


def test_detections_batch_equals_single_images(exported):
    batch = np.stack([letterboxed(p, 128) for p in IMAGE_PATHS])
    runner = session(exported("short_range", detections=True))
    detections, count = runner.run(None, {"image": batch})
    assert detections.shape == (len(batch), 16, 17) and count.shape == (len(batch),)
    assert count.sum() >= len(batch) - 1  # the photos do have faces: not a vacuous comparison
    for k, image in enumerate(batch):
        single, single_count = runner.run(None, {"image": image[None]})
        assert int(single_count[0]) == int(count[k])
        np.testing.assert_allclose(detections[k], single[0], atol=1e-4, rtol=0)


@pytest.mark.parametrize(("min_score", "iou"), [(0.05, 0.3), (0.3, 0.6), (0.9, 0.1), (0.5, 1.0)])
def test_threshold_inputs_override_the_defaults(min_score, iou, exported, torch_model):
    v = VARIANTS["short_range"]
    image = letterboxed(IMAGE_PATHS[2], v.input_size)  # 4faces.png
    feeds = {"image": image[None], "min_score": np.array(min_score, np.float32), "iou_threshold": np.array(iou, np.float32)}
    detections, count = session(exported("short_range", detections=True)).run(None, feeds)
    expected = pipeline_rows(torch_model("short_range"), image, v, min_score, iou)[:16]
    assert_same_detections(detections[0], int(count[0]), expected)


@pytest.mark.parametrize("detections", [False, True], ids=["network", "detections"])
def test_an_export_reveals_nothing_of_the_machine_that_made_it(detections, exported):
    """The exporters record each node's stack trace (absolute paths of the source files and the environment) unless
    blazeconv removes them: an ONNX file a user hands on must not carry their folders."""
    import blazeconv

    data = exported("front", detections=detections).read_bytes()
    places = {str(REPO), str(REPO.parent), sys.prefix, str(Path(blazeconv.__file__).parent), str(Path(torch.__file__).parent)}
    assert not [place for place in places if place.encode() in data]
    model = onnx.load_from_string(data)
    assert not [p.key for node in model.graph.node for p in node.metadata_props]
    assert not [node.name for node in model.graph.node if node.doc_string]


def test_detections_model_interface(exported):
    model = onnx.load(exported("front", detections=True))
    assert [i.name for i in model.graph.input] == ["image", "min_score", "iou_threshold"]
    defaults = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer if t.name in ("min_score", "iou_threshold")}
    assert defaults == {"min_score": np.float32(0.75), "iou_threshold": np.float32(0.3)}
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["kind"] == "detections" and meta["max_faces"] == "16"
    assert len(json.loads(meta["detection_columns"])) == 17
    # The NMS is a Loop that ends after the last face (unrolled it costs 3x the time), not max_faces copies.
    assert sum(node.op_type == "Loop" for node in model.graph.node) == 1
    # Only the image is required: the thresholds are overridable initializers.
    assert [i.name for i in session(exported("front", detections=True)).get_inputs()] == ["image"]


def random_raw_outputs(seed: int, anchors: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw outputs with many overlapping candidates around a few centres, some boxes without area, equal scores."""
    rng = np.random.default_rng(seed)
    count = len(anchors)
    regressors = rng.normal(0, 2, (count, 16)).astype(np.float32)
    regressors[:, 2:4] = rng.uniform(10, 40, (count, 2))
    regressors[rng.random(count) < 0.05, 2] = 0.0  # boxes without area: a round that removes nothing ends the loop
    logits = rng.normal(-1, 3, (count, 1)).astype(np.float32)
    logits[rng.random(count) < 0.05] = 2.0  # ties: the first of equal scores wins, as in MediaPipe
    return regressors, logits


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("iou", [0.0, 0.3, 0.7])
def test_detection_head_equals_decode_and_suppress(seed, iou):
    """The torch module that is exported, against the vectorised numpy pipeline, on adversarial raw outputs."""
    v = VARIANTS["short_range"]
    anchors = v.anchors()
    regressors, logits = random_raw_outputs(seed, anchors, v.input_size)
    head = DetectionHead(anchors, v.input_size, max_faces=100)
    with torch.no_grad():
        detections, count = head(torch.from_numpy(regressors)[None], torch.from_numpy(logits)[None],
                                 torch.tensor(0.4), torch.tensor(iou))
    boxes, keypoints, scores = decode_and_suppress(regressors, logits, anchors, v.input_size, 0.4, iou)
    expected = np.concatenate([boxes, keypoints.reshape(len(boxes), 2 * len(KEYPOINT_NAMES)), scores[:, None]], axis=1)[:100]
    assert_same_detections(detections[0].numpy(), int(count[0]), expected)


def test_max_faces_keeps_the_best_rows(torch_model):
    v = VARIANTS["short_range"]
    image = letterboxed(IMAGE_PATHS[2], v.input_size)  # 4faces.png
    head = DetectionHead(v.anchors(), v.input_size, max_faces=2)
    with torch.no_grad():
        detections, count = head(*torch_model("short_range")(torch.from_numpy(image)[None]), torch.tensor(0.3), torch.tensor(0.3))
    expected = pipeline_rows(torch_model("short_range"), image, v, 0.3)
    assert len(expected) > 2
    assert_same_detections(detections[0].numpy(), int(count[0]), expected[:2])


# ------------------------------------------------------------------------------------------------ cache


def test_cached_onnx_is_found_without_torch(exported, onnx_cache):
    path = exported("short_range")
    before = path.stat().st_mtime_ns
    code = (
        "import sys; from blazeconv.sources import cached_onnx; from blazeconv.variants import VARIANTS; "
        "print(cached_onnx(VARIANTS['short_range'])); assert 'torch' not in sys.modules, 'torch was imported'"
    )
    env = {**os.environ, "BLAZECONV_CACHE": str(onnx_cache)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(path)
    assert path.stat().st_mtime_ns == before, "an up-to-date export must not be written again"
    assert path.name.startswith(f"short_range-{VARIANTS['short_range'].sha256[:16]}-")


def test_cached_onnx_refuses_other_files(tmp_path):
    from blazeconv.errors import ModelFileError, OptionsError
    from blazeconv.sources import cached_onnx

    network = tmp_path / "model.onnx"
    network.write_bytes(b"an ONNX file is already an export")
    with pytest.raises(OptionsError, match="an ONNX export takes a shipped model name, a .tflite or a .pth "
                                           "state_dict, not the ONNX model"):
        cached_onnx(network)
    with pytest.raises(ModelFileError, match="no such file"):
        cached_onnx(tmp_path / "missing.tflite")


# -------------------------------------------------------------------------------------------------- CLI


@pytest.mark.slow
def test_cli_exports_a_pth_with_detections(tmp_path, run_cli, converted):
    weights = tmp_path / "weights.pth"
    torch.save(converted("front").state_dict, weights)
    output = tmp_path / "out" / "faces.onnx"
    (tmp_path / "out").mkdir()
    code, _, err = run_cli("onnx", weights, "--detections", "--min-score", "0.6", "--max-faces", "4", "-o", output)
    assert code == 0, err
    assert "front (weights equal to the shipped face_detection_front.tflite)" in err
    assert f"wrote {output}: detections model" in err and "min score 0.6" in err
    model = onnx.load(output)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["variant"] == "front" and meta["source_sha256"] == VARIANTS["front"].sha256
    assert meta["min_score"] == "0.6" and meta["max_faces"] == "4"
    image = letterboxed(IMAGE_PATHS[0], 128)
    detections, count = session(output).run(None, {"image": image[None]})
    assert detections.shape == (1, 4, 17) and count[0] == 1
    expected = pipeline_rows(model_from_state_dict(converted("front").state_dict), image, VARIANTS["front"], 0.6)
    assert_same_detections(detections[0], int(count[0]), expected)
    assert not list(tmp_path.glob("out/.*.tmp")), "no temporary file left behind"


def test_cli_default_output_for_a_variant_name(tmp_path, run_cli, monkeypatch, onnx_cache):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("blazeconv.export.onnx.export_onnx", lambda model, variant, path, **kw: path.write_bytes(b"x"))
    code, _, err = run_cli("onnx", "short_range", "--detections")
    assert code == 0, err
    assert (tmp_path / "short_range_detections.onnx").is_file()


def test_cli_without_onnxscript_names_the_extra(tmp_path, run_cli, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    code, _, err = run_cli("onnx", "short_range", "-o", tmp_path / "x.onnx")
    assert code == 8
    assert "blazeconv onnx needs the convert extra (onnxscript not installed): pip install 'blazeconv[convert]'" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        (["missing.tflite"], 3, "missing.tflite: no such file"),
        (["short_range", "--max-faces", "0"], 2, "max-faces"),
        (["short_range", "--min-score", "1.5"], 7, "--min-score 1.5: expected a number from 0 to 1"),
        (["short_range", "--detections", "--iou-threshold", "nan"], 7, "--iou-threshold nan"),
        (["net.onnx", "-o", "out.onnx"], 7, "net.onnx: already an ONNX network; add --detections"),
        (["net.onnx", "--detections", "--source-tflite", "net.onnx"], 7, "--source-tflite is only for .pth weights"),
        (["net.onnx", "--detections"], 3, "net.onnx: not a readable ONNX model"),
    ],
)
def test_cli_errors(args, exit_code, message, run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.onnx").write_bytes(b"not an ONNX model")
    code, _, err = run_cli("onnx", *args)
    assert code == exit_code, err
    assert message in err


def test_cli_help(run_cli):
    code, out, _ = run_cli("onnx", "--help")
    assert code == 0 and "--detections" in out and "blazeconv onnx short_range" in out


def test_export_detections_needs_a_raw_network(exported, tmp_path):
    from blazeconv.errors import ModelFileError
    from blazeconv.export.onnx import export_detections

    with pytest.raises(ModelFileError, match="not a raw BlazeFace network exported by blazeconv"):
        export_detections(exported("front", detections=True), tmp_path / "twice.onnx")
    assert not list(tmp_path.iterdir())


def test_export_detections_takes_a_variant_override(exported, tmp_path, run_cli):
    """``--variant`` overrides what the network's metadata names, for an .onnx as for any other model file: it must
    fit the architecture, and the source SHA-256 (of another model's file) is dropped."""
    import onnx

    network = exported("short_range")
    out = tmp_path / "as_front.onnx"
    code, _, err = run_cli("onnx", network, "--detections", "--variant", "front", "-o", out)
    assert code == 0, err
    meta = {p.key: p.value for p in onnx.load_model(str(out)).metadata_props}
    assert meta["variant"] == "front" and meta["source_sha256"] == "unknown"
    code, _, err = run_cli("onnx", network, "--detections", "--variant", "back", "-o", tmp_path / "x.onnx")
    assert code == 7 and "variant 'back' is a blazeface256 model, the weights are blazeface128 (short_range)" in err
