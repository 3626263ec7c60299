"""Every model argument, everywhere: each kind of model × each command and Python entry point.

The kinds: the shipped name ``short_range``, a renamed copy of its ``.tflite``, the ``.pth`` that ``blazeconv
tflite2torch`` writes of it and the network ``.onnx`` that ``blazeconv onnx`` writes of it. Each is one model, so
where an entry point runs a kind it gives what it gives for the shipped name (the same detections, the same blurred
regions, the same recorded variant and checksum); where it cannot use a kind it says so in the one message
``sources.require_kind`` words (``takes ..., not the ONNX model FILE``), exit 7. ``MATRIX`` is the table the README
repeats.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import DATA, assert_one_line_error, model_path

from blazeconv.variants import VARIANTS

KINDS = ("shipped", "tflite", "pth", "onnx")
PHOTOS = [DATA / "images" / name for name in ("1face.png", "3faces.png", "4faces.png")]
LABELLED = DATA / "labelled"
SHORT_RANGE = VARIANTS["short_range"]

# What each entry point does with each kind: "runs", or the exit code and words of its one-line refusal.
TAKES_FILES = "takes a shipped model name, a .tflite or a .pth state_dict"
BENCH_TAKES = "blazeconv bench takes a shipped model name or a .tflite (LiteRT, the reference, runs TFLite files)"
NOT_TFLITE = "not a TFLite flatbuffer (no 'TFL3' file identifier)"
MATRIX = {
    "detect": dict.fromkeys(KINDS, "runs"),
    "detect --backend torch": {**dict.fromkeys(KINDS[:3], "runs"),
                               "onnx": (7, "the torch backend takes a shipped model name, a .tflite, a .pth "
                                           "state_dict or a torch module, not the ONNX model")},
    "blur": dict.fromkeys(KINDS, "runs"),
    "coreml": {**dict.fromkeys(KINDS[:3], "runs"),
               "onnx": (7, f"blazeconv coreml {TAKES_FILES} (it converts the weights), not the ONNX model")},
    "verify": {**dict.fromkeys(KINDS[:3], "runs"),
               "onnx": (7, f"blazeconv verify {TAKES_FILES} (the weights the Core ML model was built from), not the "
                           "ONNX model")},
    "onnx": {**dict.fromkeys(KINDS[:3], "runs"), "onnx": (7, "already an ONNX network; add --detections")},
    "onnx --detections": {"onnx": "runs"},  # the other kinds: a full export, as ``onnx`` above, with the NMS added
    "bench": {"shipped": "runs", "tflite": "runs", "pth": (7, f"{BENCH_TAKES}, not the weights"),
              "onnx": (7, f"{BENCH_TAKES}, not the ONNX model")},
    # The converter reads its argument as a TFLite file whatever it is, and names what is wrong inside (exit 3).
    "tflite2torch": {"shipped": "runs", "tflite": "runs", "pth": (3, NOT_TFLITE), "onnx": (3, NOT_TFLITE)},
    "eval": dict.fromkeys(KINDS, "runs"),
    "train": {**dict.fromkeys(KINDS[:3], "runs"),
              "onnx": (7, f"blazeconv train {TAKES_FILES} (it fine-tunes the weights), not the ONNX model")},
    "FaceDetector": dict.fromkeys(KINDS, "runs"),
    "blazeconv.blur": dict.fromkeys(KINDS, "runs"),
    "ray.DetectFaces": dict.fromkeys(KINDS, "runs"),
}
CASES = [(command, kind) for command, kinds in MATRIX.items() for kind in kinds]


def _cli(*args) -> tuple[int, str]:
    """The CLI in this process, outside a test (module fixtures): exit code and what it wrote to stderr."""
    import contextlib
    import io

    from blazeconv.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            return exc.code, err.getvalue()
    return 0, err.getvalue()


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    """Each kind of the one model, made once for the module as a user makes them (the .pth and .onnx by the CLI)."""
    pytest.importorskip("onnx")
    folder = tmp_path_factory.mktemp("kinds")
    copy = folder / "my_model.tflite"
    copy.write_bytes(model_path("short_range").read_bytes())
    for args in (("tflite2torch", "short_range", "-o", folder / "my_model.pth"),
                 ("onnx", "short_range", "-o", folder / "my_model.onnx")):
        code, err = _cli(*args)
        assert code == 0, err
    return {"shipped": "short_range", "tflite": str(copy), "pth": str(folder / "my_model.pth"),
            "onnx": str(folder / "my_model.onnx")}


@pytest.fixture(scope="module")
def coreml_model(tmp_path_factory):
    """A Core ML model of short_range (what ``verify`` checks against each kind)."""
    pytest.importorskip("coremltools")
    path = tmp_path_factory.mktemp("coreml") / "short_range.mlmodel"
    code, err = _cli("coreml", "short_range", "--format", "neuralnetwork", "-o", path)
    assert code == 0, err
    return path


def _detections(run_cli, model: str, *options) -> list:
    code, out, err = run_cli("detect", *PHOTOS, "--model", model, "--json", "-", *options)
    assert code == 0, err
    return [image["detections"] for image in json.loads(out)["images"]]


def assert_same_detections(found: list, expected: list, atol: float) -> None:
    """Per photo the same faces, in the same order, scores, boxes and keypoints within ``atol``."""
    assert [len(f) for f in found] == [len(e) for e in expected]
    for faces, wanted in zip(found, expected):
        for face, want in zip(faces, wanted):
            np.testing.assert_allclose(face["score"], want["score"], atol=atol, rtol=0)
            np.testing.assert_allclose(face["box"], want["box"], atol=atol, rtol=0)
            np.testing.assert_allclose(face["keypoints"], want["keypoints"], atol=atol, rtol=0)


def _regions(run_cli, model: str, folder: Path) -> list:
    boxes = folder / f"boxes-{Path(model).name}.jsonl"
    code, _, err = run_cli("blur", *PHOTOS, "-o", folder / f"out-{Path(model).name}", "--model", model,
                           "--boxes-jsonl", boxes, "-q")
    assert code == 0, err
    return [json.loads(line)["regions"] for line in boxes.read_text().splitlines()]


def _raw_outputs(onnx_path) -> list[np.ndarray]:
    """A raw network's outputs on one letterboxed photo (ONNX Runtime)."""
    import onnxruntime as ort

    from blazeconv.detection import letterbox, load_image

    x = letterbox(load_image(PHOTOS[1]), SHORT_RANGE.input_size)[0][None]  # (1, 3, 128, 128)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


# The same model in every kind: on one runtime the numbers agree exactly (measured: identical bits on ONNX Runtime and
# torch; the .pth's own ONNX export is a separate export of the same weights). A bound above float32 rounding keeps
# a harmless change in the exporter's graph from failing the test.
SAME_MODEL_ATOL = 1e-6


# The quick tier leaves out the cases that build a Core ML model or export the network again (seconds each); the
# shipped kind runs on every other entry point, every kind on detect's neighbours.
SLOW_CASES = {("coreml", "shipped"), ("coreml", "tflite"), ("coreml", "pth"), ("onnx", "tflite"), ("onnx", "pth"),
              ("detect", "pth")}


@pytest.mark.parametrize(("command", "kind"), [pytest.param(*c, marks=pytest.mark.slow) if c in SLOW_CASES else c for c in CASES],
                         ids=[f"{c}-{k}" for c, k in CASES])
def test_every_kind_of_model_with_every_entry_point(command, kind, models, run_cli, tmp_path, request, monkeypatch):
    model, expected = models[kind], MATRIX[command][kind]
    if expected != "runs":
        args = {"detect --backend torch": ("detect", PHOTOS[0], "--model", model, "--backend", "torch"),
                "coreml": ("coreml", model, "-o", tmp_path / "x.mlmodel"),
                "verify": ("verify", request.getfixturevalue("coreml_model") if command == "verify" else None,
                           PHOTOS[0], "--model", model),
                "onnx": ("onnx", model, "-o", tmp_path / "x.onnx"),
                "bench": ("bench", "--model", model),
                "tflite2torch": ("tflite2torch", model, "-o", tmp_path / "x.pth"),
                "train": ("train", "--labels", LABELLED / "training.xml", "--model", model, "-o", tmp_path / "x.pth")
                }[command]
        code, out, err = run_cli(*args)
        exit_code, words = expected
        assert_one_line_error(code, err, model, exit_code)
        assert words in err and out == ""
        assert not list(tmp_path.iterdir())  # refused before any output
        return
    if command in ("detect", "detect --backend torch"):
        options = ("--backend", "torch") if command.endswith("torch") else ()
        assert_same_detections(_detections(run_cli, model, *options), _detections(run_cli, "short_range", *options),
                               SAME_MODEL_ATOL)
    elif command == "blur":
        assert _regions(run_cli, model, tmp_path) == _regions(run_cli, "short_range", tmp_path)
    elif command == "coreml":
        code, _, err = run_cli("coreml", model, "--format", "neuralnetwork", "-o", tmp_path / "x.mlmodel")
        assert code == 0, err
        assert f"short_range ({'weights equal to the shipped' if kind == 'pth' else 'converted from'}" in err
        assert f"source SHA-256 {SHORT_RANGE.sha256}" in err
    elif command == "verify":
        code, _, err = run_cli("verify", request.getfixturevalue("coreml_model"), PHOTOS[1], "--model", model)
        assert code == 0, err
        assert "matches PyTorch on 1 image(s)" in err
    elif command == "onnx":
        out = models["onnx"] if kind == "shipped" else tmp_path / "x.onnx"  # the shipped one: the fixture's
        if kind != "shipped":
            code, _, err = run_cli("onnx", model, "-o", out)
            assert code == 0, err
            assert "short_range (" in err and f"source SHA-256 {SHORT_RANGE.sha256}" in err
        for mine, theirs in zip(_raw_outputs(out), _raw_outputs(models["onnx"])):
            np.testing.assert_allclose(mine, theirs, atol=SAME_MODEL_ATOL, rtol=0)
    elif command == "onnx --detections":
        code, _, err = run_cli("onnx", model, "--detections", "-o", tmp_path / "d.onnx")
        assert code == 0, err
        assert "detections model (weighted NMS inside) from the network" in err
    elif command == "bench":
        import blazeconv.bench
        from blazeconv.bench import BenchReport, machine_summary

        asked = []
        monkeypatch.setattr(blazeconv.bench, "run_bench", lambda options, progress=None: asked.append(options)
                            or BenchReport(options, machine_summary(1)))
        code, _, err = run_cli("bench", "--model", model)
        assert code == 0, err
        assert asked[0].models[0].variant is SHORT_RANGE
        assert asked[0].models[0].path.read_bytes() == model_path("short_range").read_bytes()
    elif command == "tflite2torch":
        import torch

        code, _, err = run_cli("tflite2torch", model, "-o", tmp_path / "x.pth")
        assert code == 0, err
        mine, theirs = (torch.load(p, weights_only=True) for p in (tmp_path / "x.pth", models["pth"]))
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    elif command == "eval":
        def scores(argument):
            code, out, err = run_cli("eval", LABELLED, "--labels", LABELLED / "training.xml", "--model", argument,
                                     "--json", "-")
            assert code == 0, err
            return json.loads(out)

        found, expected = scores(model), scores("short_range")
        for key in ("recall", "precision", "ap50"):
            np.testing.assert_allclose(found[key], expected[key], atol=SAME_MODEL_ATOL, rtol=0)
    elif command == "train":  # one step that moves no weight by more than 1e-30: the model it started from, as a .pth
        import torch

        from blazeconv.sources import load_model

        code, _, err = run_cli("train", "--labels", LABELLED / "training.xml", "--model", model, "-o",
                               tmp_path / "x.pth", "--epochs", "1", "--batch-size", "4", "--lr", "1e-30",
                               "--no-augment", "-q")
        assert code == 0, err
        assert "wrote" in err and "short_range" in err
        tuned, theirs = load_model(tmp_path / "x.pth"), torch.load(models["pth"], weights_only=True)
        assert tuned.variant is SHORT_RANGE
        for key in theirs:  # Adam's first step moves a weight by at most the learning rate: 1e-30
            torch.testing.assert_close(tuned.state_dict()[key], theirs[key], atol=1e-29, rtol=0)
    elif command == "FaceDetector":
        from blazeconv import FaceDetector

        found = [[d.to_dict() for d in faces] for faces in FaceDetector(model)(PHOTOS)]
        expected = [[d.to_dict() for d in faces] for faces in FaceDetector("short_range")(PHOTOS)]
        assert FaceDetector(model).variant is SHORT_RANGE
        assert_same_detections(found, expected, SAME_MODEL_ATOL)
    elif command == "blazeconv.blur":
        import blazeconv

        for photo in PHOTOS:
            np.testing.assert_array_equal(blazeconv.blur(photo, model=model), blazeconv.blur(photo, model="short_range"))
    elif command == "ray.DetectFaces":
        pytest.importorskip("ray")
        from blazeconv.ray import DetectFaces

        def rows(argument):
            table = DetectFaces(argument, threads=1)({"path": np.array([str(p) for p in PHOTOS])})
            return [json.loads(d) for d in table.column("detections").to_pylist()]

        assert_same_detections(rows(model), rows("short_range"), SAME_MODEL_ATOL)
    else:
        raise AssertionError(f"no check for {command}")


def test_the_matrix_covers_every_command_with_a_model():
    """Each command that takes a model is in the matrix (a new one must say what it does with each kind)."""
    from blazeconv.cli import cli

    with_a_model = {name for name, command in cli.commands.items()
                    if any(p.name == "model" for p in command.params)}
    assert with_a_model == {c.split()[0] for c in MATRIX if not c[0].isupper() and "." not in c}
