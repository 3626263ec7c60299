"""Runtime backends (``blazeconv.backends``): every backend against LiteRT and against the torch backend.

One parity test, parametrised over backends x variants x photos: raw outputs within the LiteRT bound, and the
same faces as the torch backend after the whole pipeline. Then what a user meets: the registry, ``auto``, a
missing runtime, the folder path, ``detect --backend``, and no torch import when the ONNX file is cached.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from helpers import (
    ALL_VARIANTS,
    DATA,
    IMAGE_PATHS,
    QUICK_IMAGES,
    QUICK_VARIANTS,
    REPO,
    assert_same_faces,
    assert_same_outputs,
    iou,
    litert_outputs,
    model_path,
    plain_input,
    tiered,
)

from blazeconv.backends import AUTO_ORDER, BACKENDS, make_runner
from blazeconv.errors import MissingDependencyError, OptionsError
from blazeconv.variants import VARIANTS

INSTALLED = [name for name in BACKENDS if BACKENDS[name].installed()]
ONNX_BACKENDS = [name for name in ("onnxruntime", "openvino") if name in INSTALLED]


@pytest.fixture(scope="session")
def litert():
    """``litert(variant, image_path)`` -> (input (S, S, 3), LiteRT's (regressors (N, 16), classificators (N, 1)))."""
    done = {}

    def get(variant: str, image_path):
        if (variant, image_path) not in done:
            x = plain_input(image_path, VARIANTS[variant].input_size)
            regressors, classificators = litert_outputs(model_path(variant), x[None])
            done[variant, image_path] = x, regressors[0], classificators[0]
        return done[variant, image_path]

    return get


@pytest.mark.parametrize("image_path", tiered(IMAGE_PATHS, QUICK_IMAGES), ids=lambda p: p.stem)
@pytest.mark.parametrize("variant", tiered(ALL_VARIANTS, QUICK_VARIANTS))
@pytest.mark.parametrize("backend", INSTALLED)
def test_backend_parity(backend, variant, image_path, runner, litert):
    """Raw outputs against LiteRT under the core bound; detections equal to the torch backend's."""
    from blazeconv.detection import detect_image

    x, expected_regressors, expected_classificators = litert(variant, image_path)
    regressors, classificators = runner(backend, variant).run(np.ascontiguousarray(x.transpose(2, 0, 1))[None])
    assert_same_outputs(regressors[0], expected_regressors, atol=1e-3, rtol=1e-5)
    assert_same_outputs(classificators[0], expected_classificators, atol=1e-3, rtol=1e-5)
    if backend != "torch":
        found = detect_image(runner(backend, variant), image_path, exact=True)  # MediaPipe's processing
        assert_same_faces(found, detect_image(runner("torch", variant), image_path, exact=True), min_iou=0.999)


@pytest.mark.parametrize("backend", ONNX_BACKENDS)
def test_a_batch_is_each_image_alone(backend, runner):
    """A batch (run image by image on the CPU) gives exactly what each image gives alone, in order."""
    size = VARIANTS["short_range"].input_size
    batch = np.stack([plain_input(p, size).transpose(2, 0, 1) for p in IMAGE_PATHS[:3]])  # (3, 3, S, S)
    regressors, classificators = runner(backend, "short_range").run(batch)
    assert regressors.shape == (3, 896, 16) and classificators.shape == (3, 896, 1)
    for i in range(3):
        alone = runner(backend, "short_range").run(batch[i : i + 1])
        np.testing.assert_array_equal(regressors[i], alone[0][0])
        np.testing.assert_array_equal(classificators[i], alone[1][0])


@pytest.mark.parametrize("backend", ONNX_BACKENDS)
def test_folder_streams_through_any_backend(backend, runner):
    """``detect_files`` with a small batch over more files than two batches: same faces as image by image (the
    defaults: each photo's tiles too)."""
    from blazeconv.detection import detect_files, detect_image

    paths = IMAGE_PATHS * 2
    results = list(detect_files(runner(backend, "short_range"), paths, batch_size=3, workers=2))
    assert [p for p, _, _ in results] == paths
    for path, _, found in results:
        assert_same_faces(found, detect_image(runner("torch", "short_range"), path), min_iou=0.999)


@pytest.mark.slow
def test_runners_know_their_variant(runner):
    for backend in INSTALLED:
        assert runner(backend, "back").variant is VARIANTS["back"]


@pytest.mark.slow
def test_a_pth_file_runs_and_its_variant_comes_from_the_export(tmp_path, converted, monkeypatch):
    from blazeconv.convert import save_state_dict

    monkeypatch.setenv("BLAZECONV_CACHE", str(tmp_path / "cache"))
    weights = tmp_path / "mine.pth"
    save_state_dict(converted("back").state_dict, weights)
    for backend in ONNX_BACKENDS:  # exported once, run by each
        made = make_runner(backend, weights)
        assert made.variant.name == "back" and made.backend == backend
        with pytest.raises(OptionsError, match=r"'short_range' is a blazeface128 model, the weights are blazeface256 \(back\)"):
            make_runner(backend, weights, variant="short_range")


def test_auto_takes_the_first_installed_in_the_measured_order(runner, monkeypatch):
    first = next(name for name in AUTO_ORDER if name in INSTALLED)
    assert make_runner("auto", "short_range").backend == first
    monkeypatch.setitem(sys.modules, first, None)  # as if not installed: find_spec gives None
    second = next(name for name in AUTO_ORDER if name in INSTALLED and name != first)
    assert make_runner("auto", "short_range").backend == second


@pytest.mark.parametrize(("backend", "extra"), [("onnxruntime", "onnxruntime"), ("openvino", "blazeconv[openvino]"),
                                              ("torch", "blazeconv[convert]")])
def test_a_missing_runtime_names_its_extra(backend, extra, monkeypatch):
    monkeypatch.setitem(sys.modules, backend, None)
    with pytest.raises(MissingDependencyError, match=re.escape(f"pip install '{extra}'")):
        make_runner(backend, "short_range")
    assert MissingDependencyError.exit_code == 8


def test_unknown_backend_and_device_are_options_errors():
    with pytest.raises(OptionsError, match="unknown backend 'tensorrt'; choices: torch, torch-fast, onnxruntime, openvino, auto"):
        make_runner("tensorrt", "short_range")
    for backend, runtime in (("onnxruntime", "onnxruntime"), ("openvino", "OpenVINO")):
        if backend not in ONNX_BACKENDS:
            continue
        with pytest.raises(OptionsError, match=f"device 'npu7' is not available to {runtime}"):
            make_runner(backend, "short_range", device="npu7")
    with pytest.raises(OptionsError, match="threads must be a positive integer"):
        make_runner("onnxruntime", "short_range", threads=0)


@pytest.mark.parametrize("backend", ONNX_BACKENDS)
def test_no_torch_import_when_the_onnx_file_is_cached(backend, runner):
    """A fresh process runs the cached export end to end without importing torch."""
    runner(backend, "short_range")  # exported into the cache (this process has torch)
    code = (
        "import sys; from blazeconv.backends import make_runner; from blazeconv.detection import detect_image; "
        f"r = make_runner({backend!r}, 'short_range'); faces = detect_image(r, {str(DATA / 'images' / '1face.png')!r}); "
        "assert 'torch' not in sys.modules, 'torch was imported'; print(len(faces))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"


@pytest.mark.parametrize("backend", ONNX_BACKENDS)
def test_detect_command_with_a_backend(backend, run_cli, runner):
    """``detect --backend X`` gives the torch backend's faces (same boxes to IoU 0.999)."""
    photo = DATA / "images" / "3faces.png"
    runner(backend, "short_range")  # cached
    code, out, err = run_cli("detect", photo, "--backend", backend, "--json", "-")
    assert code == 0, err
    mine = json.loads(out)["images"][0]["detections"]
    code, out, err = run_cli("detect", photo, "--backend", "torch", "--json", "-")
    assert code == 0, err
    theirs = json.loads(out)["images"][0]["detections"]
    assert len(mine) == len(theirs) > 0
    for a in theirs:
        assert max(iou(a["box"], b["box"]) for b in mine) >= 0.999


def test_detect_fast_is_the_torch_fast_backend(run_cli):
    """``--fast``, kept as a deprecated alias, selects the torch-fast backend; with another backend it is a usage
    error (the backend is one choice)."""
    photo = DATA / "images" / "1face.png"
    code, _, err = run_cli("detect", photo, "--backend", "onnxruntime", "--fast")
    assert code == 2 and "--fast is the old name of --backend torch-fast: give one of them" in err
    code, _, err = run_cli("detect", photo, "--fast", "--jsonl", "-")
    assert code == 0, err
    assert "blazeconv: --fast is deprecated and will go: use --backend torch-fast" in err.splitlines()


def test_the_torch_fast_backend_wraps_the_compiled_module(runner):
    from blazeconv.fast import FastModel

    made = runner("torch-fast", "short_range")
    assert made.backend == "torch-fast" and isinstance(made.module, FastModel) and made.uses_torch
    assert made.variant is VARIANTS["short_range"]
    with pytest.raises(OptionsError, match="device 'cuda': the torch-fast backend compiles for the CPU"):
        make_runner("torch-fast", "short_range", device="cuda")


def test_face_detector_takes_a_backend(runner):
    from blazeconv.detector import FaceDetector

    photo = DATA / "images" / "4faces.png"
    expected = FaceDetector(runner("torch", "short_range"))(photo)
    for backend in ONNX_BACKENDS:
        runner(backend, "short_range")  # cached
        detector = FaceDetector("short_range", backend=backend)
        assert detector.backend == backend
        assert_same_faces(detector(photo), expected, min_iou=0.999)
    assert FaceDetector(backend="auto").backend == next(name for name in AUTO_ORDER if name in INSTALLED)
    with pytest.raises(OptionsError, match="the onnxruntime backend takes a shipped model name"):
        FaceDetector(runner("torch", "short_range").module, backend="onnxruntime")


@pytest.mark.parametrize("backend", ONNX_BACKENDS)
def test_missing_weights_are_weights_errors_as_with_torch(backend, tmp_path):
    from blazeconv.errors import ModelFileError, WeightsError

    for runtime in (backend, "torch"):  # the same error class and words on every backend
        with pytest.raises(WeightsError, match="missing.pth: no such file"):
            make_runner(runtime, tmp_path / "missing.pth")
        with pytest.raises(ModelFileError, match="URLs are not read"):
            make_runner(runtime, "https://example.com/w.pth")
        with pytest.raises(OptionsError, match="neither a file nor a shipped model"):
            make_runner(runtime, "no_such_model")
