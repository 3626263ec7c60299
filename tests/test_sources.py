"""One decision of what a model argument is, the same at every entry point: every kind of argument against
``FaceDetector``, ``make_runner`` on each backend, the weights loaders and the commands, with the same error class,
words and exit code wherever the same argument is refused.
"""

from __future__ import annotations

import json

import pytest
import torch
from helpers import DATA, assert_one_line_error, load_model_from, model_path, tiered

from blazeconv import FaceDetector
from blazeconv.backends import BACKENDS, make_runner
from blazeconv.errors import ModelFileError, OptionsError, WeightsError
from blazeconv.sources import load_model, load_state_dict, load_weights, resolve
from blazeconv.variants import VARIANTS

PHOTO = DATA / "images" / "1face.png"
ONNX_BACKENDS = [name for name in ("onnxruntime", "openvino") if BACKENDS[name].installed()]
BACKEND_NAMES = ["torch", *ONNX_BACKENDS]


@pytest.fixture(scope="module")
def files(tmp_path_factory, converted):
    """One file of each kind: a TFLite model, the same bytes named .pth, a state_dict, an ONNX network, a folder."""
    folder = tmp_path_factory.mktemp("kinds")
    tflite = folder / "face.tflite"
    tflite.write_bytes(model_path("full_range").read_bytes())
    disguised = folder / "disguised.pth"
    disguised.write_bytes(model_path("short_range").read_bytes())
    weights = folder / "front.pth"
    torch.save(converted("front").state_dict, weights)
    (folder / "folder.pth").mkdir()
    return {"tflite": tflite, "disguised": disguised, "weights": weights, "folder": folder / "folder.pth",
            "missing.pth": folder / "missing.pth", "missing.tflite": folder / "missing.tflite"}


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    pytest.importorskip("onnx")
    from blazeconv.sources import export_onnx_file

    path = tmp_path_factory.mktemp("onnx") / "back.onnx"
    export_onnx_file("back", path)
    return path


# ------------------------------------------------------------------------------------------ what it is


@pytest.mark.parametrize(("name", "kind", "variant"), [
    ("short_range", "shipped", "short_range"),
    ("tflite", "tflite", None),
    ("disguised", "tflite", None),  # recognised by its content, not its suffix
    ("weights", "weights", None),
])
def test_resolve_says_what_a_file_or_name_is(name, kind, variant, files):
    source = resolve(files.get(name, name))
    assert source.kind == kind
    assert (source.variant.name if source.variant else None) == variant


def test_a_file_named_like_a_variant_is_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "front").write_bytes(model_path("back").read_bytes())
    assert resolve("front").kind == "tflite" and resolve("front").path.name == "front"
    assert resolve(VARIANTS["front"]).kind == "shipped"  # a Variant is always the shipped model


def test_objects_are_modules_runners_or_refused(converted):
    module = load_model_from(converted)
    assert resolve(module).kind == "module"
    runner = make_runner("torch", module)
    assert resolve(runner).kind == "runner"
    with pytest.raises(OptionsError, match="got a int"):
        resolve(42)


# ------------------------------------------------------------------------ as a model, on every backend

# (argument, the variant it runs, or the error class and words every backend gives)
MODEL_CASES = {
    "shipped": ("short_range", "short_range"),
    "tflite": ("tflite", "full_range"),
    "disguised": ("disguised", "short_range"),
    "weights": ("weights", "front"),
    "url": ("https://example.com/face.pth", (ModelFileError, "URLs are not read; download the file first")),
    "unknown-name": ("no_such_model", (OptionsError, "neither a file nor a shipped model")),
    "near-miss": ("short-range", (OptionsError, r"did you mean 'short_range'\?\); shipped: front, short_range")),
    "missing.pth": ("missing.pth", (WeightsError, "missing.pth: no such file")),
    "missing.tflite": ("missing.tflite", (ModelFileError, "missing.tflite: no such file")),
    "folder": ("folder", (WeightsError, "folder.pth: not a file")),
    "number": (42, (OptionsError, "got a int")),
}


@pytest.mark.parametrize("backend", BACKEND_NAMES)
@pytest.mark.parametrize("case", tiered(MODEL_CASES, [c for c in MODEL_CASES if c not in ("disguised", "weights")]))
def test_every_kind_of_model_on_every_backend(case, backend, files):
    argument, expected = MODEL_CASES[case]
    argument = files.get(argument, argument) if isinstance(argument, str) else argument
    if isinstance(expected, str):
        assert make_runner(backend, argument).variant is VARIANTS[expected]
        assert FaceDetector(argument, backend=backend).variant is VARIANTS[expected]
        return
    error, words = expected
    for build in (lambda: make_runner(backend, argument), lambda: FaceDetector(argument, backend=backend)):
        with pytest.raises(error, match=words):
            build()


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_an_onnx_network_runs_on_the_onnx_backends_only(backend, onnx_file):
    if backend == "torch":
        with pytest.raises(OptionsError, match="the torch backend takes .* or a torch module, not the ONNX model .*back.onnx"):
            FaceDetector(onnx_file, backend="torch")
        return
    detector = FaceDetector(onnx_file, backend=backend)
    assert detector.variant is VARIANTS["back"]
    assert detector(PHOTO) == FaceDetector("back", backend=backend)(PHOTO)
    with pytest.raises(OptionsError, match=r"'front' is a blazeface128 model, the weights are blazeface256 \(back\)"):
        FaceDetector(onnx_file, backend=backend, variant="front")


@pytest.mark.slow
def test_auto_runs_an_onnx_file_on_an_onnx_runtime(onnx_file):
    if not ONNX_BACKENDS:
        pytest.skip("no ONNX runtime installed")
    assert FaceDetector(onnx_file).backend == ONNX_BACKENDS[0]


@pytest.mark.parametrize("backend", ONNX_BACKENDS)
def test_a_module_has_no_onnx_file(backend, converted):
    with pytest.raises(OptionsError, match=f"the {backend} backend takes a shipped model name, .*, not a BlazeFace128"):
        make_runner(backend, load_model_from(converted))


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_a_runner_is_used_as_it_is(backend, converted):
    runner = make_runner("torch", load_model_from(converted))
    assert make_runner(backend, runner) is runner


@pytest.mark.parametrize("backend", tiered(BACKEND_NAMES, ["torch"]))
def test_a_variant_that_does_not_fit_is_refused_on_every_backend(backend, files):
    with pytest.raises(OptionsError, match="'back' is .*blazeface256"):
        FaceDetector(files["weights"], backend=backend, variant="back")


# ------------------------------------------------------------------------------------------- as weights


@pytest.mark.parametrize(("argument", "words"), [
    ("tflite", "a TFLite model, not PyTorch weights: convert it with 'blazeconv tflite2torch .*', or give it as the "
               r"model \(FaceDetector, --model\)"),
    ("disguised", "a TFLite model, not PyTorch weights"),
    ("missing.pth", "missing.pth: no such file"),
    ("folder", "not a file"),
    ("short_range", "short_range: no such file"),  # a variant name is not weights
    ("https://example.com/w.pth", "URLs are not read"),
])
def test_what_is_not_a_state_dict_is_a_weights_error(argument, words, files):
    argument = files.get(argument, argument)
    for load in (load_model, load_state_dict):
        with pytest.raises(WeightsError, match=words):
            load(argument)


@pytest.mark.slow
def test_an_onnx_file_is_not_weights(onnx_file):
    with pytest.raises(WeightsError, match="an ONNX model, not PyTorch weights"):
        load_model(onnx_file)


@pytest.mark.parametrize("backend", BACKEND_NAMES)
@pytest.mark.parametrize(("argument", "code", "words"), [
    ("missing.pth", 5, "no such file"),
    ("missing.tflite", 3, "no such file"),
    ("folder", 5, "not a file"),
    ("https://example.com/w.pth", 2, "URLs are not read"),
])
def test_detect_model_gives_one_error_whatever_the_backend(argument, code, words, backend, files, run_cli):
    argument = files.get(argument, argument)
    exit_code, out, err = run_cli("detect", PHOTO, "--model", argument, "--backend", backend)
    assert_one_line_error(exit_code, err, argument, code)
    assert words in err and out == ""


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_detect_runs_a_tflite_named_pth_on_every_backend(backend, files, run_cli):
    """Recognised by content: the old ``--weights`` refused a TFLite file (a dead end); ``--model`` runs it."""
    code, out, err = run_cli("detect", PHOTO, "--model", files["disguised"], "--backend", backend, "--json", "-")
    assert code == 0, err
    assert "model short_range" in err and len(json.loads(out)["images"][0]["detections"]) == 1


@pytest.mark.slow
def test_weights_is_a_deprecated_alias_of_model(files, run_cli):
    code, out, err = run_cli("detect", PHOTO, "--weights", files["weights"], "--json", "-")
    assert code == 0, err
    assert "blazeconv: --weights is deprecated and will go: use --model" in err.splitlines()
    code, _, err = run_cli("detect", PHOTO, "--weights", files["weights"], "--model", "short_range")
    assert code == 2 and "--weights is the old name of --model: give one of them" in err


@pytest.mark.parametrize("backend", tiered(BACKEND_NAMES, ["torch"]))
def test_detect_weights_that_do_not_fit_the_variant(backend, files, run_cli):
    code, _, err = run_cli("detect", PHOTO, "--model", files["weights"], "--variant", "back", "--backend", backend)
    assert_one_line_error(code, err, "variant 'back' is a blazeface256 model, the weights are blazeface128", 7)


# ------------------------------------------------------------------------------------------ for export


@pytest.mark.parametrize(("argument", "variant", "recognised"), [
    ("short_range", "short_range", "converted from face_detection_short_range.tflite (checksum)"),
    ("disguised", "short_range", "converted from disguised.pth (checksum)"),
    ("weights", "front", "weights equal to the shipped face_detection_front.tflite"),
])
def test_the_exports_read_every_kind_of_weights(argument, variant, recognised, files):
    weights = load_weights(files.get(argument, argument))
    assert weights.variant is VARIANTS[variant] and weights.recognised_by == recognised
    assert weights.source_sha256 == VARIANTS[variant].sha256


@pytest.mark.parametrize("command", ["coreml", "onnx", "tflite2torch"])
@pytest.mark.parametrize(("argument", "code", "words"), [
    ("no_such_model", 7, "neither a file nor a shipped model"),
    ("short-range", 7, "did you mean 'short_range'?"),
    ("missing.tflite", 3, "no such file"),
    ("https://example.com/face.tflite", 2, "URLs are not read"),
])
def test_the_commands_refuse_a_model_argument_alike(command, argument, code, words, files, tmp_path, run_cli):
    if command == "coreml":
        pytest.importorskip("coremltools")
    if command == "onnx":
        pytest.importorskip("onnx")
    argument = files.get(argument, argument)
    exit_code, _, err = run_cli(command, argument, "-o", tmp_path / {"coreml": "x.mlpackage", "onnx": "x.onnx",
                                                                     "tflite2torch": "x.pth"}[command])
    assert_one_line_error(exit_code, err, argument, code)
    assert words in err


@pytest.mark.slow
def test_export_commands_read_a_tflite_named_pth(files, tmp_path, run_cli):
    pytest.importorskip("onnx")
    out = tmp_path / "disguised.onnx"
    code, _, err = run_cli("onnx", files["disguised"], "-o", out)
    assert code == 0, err
    assert "short_range" in err and out.is_file()
    code, _, err = run_cli("tflite2torch", files["disguised"], "-o", tmp_path / "w.pth")
    assert code == 0 and "recognised as short_range" in err


@pytest.mark.parametrize("command", [["detect", PHOTO, "--model"], ["anchors", "--variant"],
                                     ["detect", PHOTO, "--model", "short_range", "--variant"]])
def test_a_mistyped_variant_is_one_options_error_with_a_suggestion(command, run_cli, tmp_path):
    code, _, err = run_cli(*command, "short-range")
    assert_one_line_error(code, err, "short-range", 7)
    assert "did you mean 'short_range'?" in err and "front, short_range, back" in err


def test_an_image_given_as_a_model_or_weights_says_it_is_an_image(run_cli):
    code, _, err = run_cli("detect", PHOTO, "--model", PHOTO)
    assert_one_line_error(code, err, PHOTO, 3)
    assert "an image (PNG), not a model file" in err
    with pytest.raises(ModelFileError, match=r"1face.png: an image \(PNG\), not a model file"):
        FaceDetector(PHOTO)
    with pytest.raises(WeightsError, match=r"1face.png: an image \(PNG\), not PyTorch weights"):
        load_model(PHOTO)


# ---------------------------------------------------------------------------------------- cache, workers


@pytest.mark.slow
def test_a_copy_of_a_shipped_tflite_shares_its_cache_entry(files, tmp_path, monkeypatch):
    """Entries are keyed by content: a renamed copy of a shipped .tflite (or its bytes named .pth) runs the shipped
    model's export, made once."""
    from blazeconv import sources

    monkeypatch.setenv("BLAZECONV_CACHE", str(tmp_path / "cache"))
    exports = []
    export = sources.export_onnx_file
    monkeypatch.setattr(sources.loading, "export_onnx_file", lambda *a, **k: exports.append(a[0]) or export(*a, **k))
    copy = tmp_path / "renamed.tflite"
    copy.write_bytes(model_path("short_range").read_bytes())
    entry = sources.cached_onnx(copy)
    assert sources.cached_onnx("short_range") == entry and sources.cached_onnx(files["disguised"]) == entry
    assert entry.name.startswith(f"short_range-{VARIANTS['short_range'].sha256[:16]}-")
    assert len(exports) == 1
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [entry.name, f"{entry.name}.sha256"]


def test_portable_is_the_model_as_another_process_finds_it(files, converted, monkeypatch):
    monkeypatch.chdir(files["weights"].parent)
    assert resolve("front.pth").portable() == str(files["weights"])  # absolute: workers run in other folders
    assert resolve("short_range").portable() == "short_range"
    with pytest.raises(OptionsError, match="a BlazeFace128 lives in this process"):
        resolve(load_model_from(converted)).portable()
