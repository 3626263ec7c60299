"""The plain install: ``pip install blazeconv`` detects, blurs, crops and reads videos on ONNX Runtime with no torch and
no export on first use, and every command that needs more names its extra (exit 8) before any work.

* The shipped models' ONNX networks travel in the package (``blazeconv/models/*.onnx``, ``make onnx-models``): each
  must be byte for byte what a fresh export of its ``.tflite`` gives (the export is deterministic: same graph, same
  weights, same metadata), so a change of the exporter without ``make onnx-models`` fails here.
* ``errors.EXTRAS`` (what the commands check) and pyproject.toml (what pip installs) agree.
* In a process where torch, the TFLite reader and the ONNX exporter cannot be imported, detect, blur and the Python
  API run on the packaged networks, import none of them and write nothing to the cache; a model that would need a
  conversion (a ``.pth``, a ``.tflite`` that is no shipped file) exits 8 naming ``convert``.
* Slow: the wheel installed into a fresh virtual environment without torch (its dependencies from the package
  index), run from another folder.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from helpers import ALL_VARIANTS, DATA, QUICK_VARIANTS, REPO, tiered
from test_packaging import built  # noqa: F401  (the wheel built from a copy of the sdist's files)

from blazeconv.cli import cli
from blazeconv.errors import EXTRAS
from blazeconv.variants import VARIANTS

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PHOTO = REPO / "blazeconv" / "photos" / "astronaut.png"  # a shipped photo: one face for every model

# The import name of each package an extra is checked for, and the distribution pip installs it from.
DISTRIBUTION = {"torch": "torch", "tflite": "tflite", "onnx": "onnx", "onnxscript": "onnxscript", "av": "av",
                "coremltools": "coremltools", "ai_edge_litert": "ai-edge-litert", "pycocotools": "pycocotools",
                "scipy": "scipy", "ray": "ray", "openvino": "openvino"}
# What a plain install must not hold: the exporter and everything it pulls in.
NOT_IN_THE_PLAIN_INSTALL = ("torch", "tflite", "onnx", "onnxscript", "flatbuffers")
# Hidden from the processes that play a plain install inside this (full) environment.
HIDDEN = ("torch", "tflite", "onnx", "onnxscript")

# Every command, and the extra it declares (cli.base.needs_extra); None: the plain install runs it. A new command
# adds its line here (a test below fails until it does).
COMMAND_EXTRAS = {
    "detect": None, "blur": None, "anchors": None, "cache": None,
    "tflite2torch": "convert", "torch2tflite": "convert", "onnx": "convert",
    "coreml": "coreml", "verify": "coreml", "bench": "bench", "eval": "eval", "train": "train",
}


def _name(requirement: str) -> str:
    """``ray[data]>=2.60`` -> ``ray``; ``blazeconv[convert]`` -> ``blazeconv``."""
    return re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower()


def _distributions(extra: str | None) -> set[str]:
    """The distributions pyproject.toml installs for ``extra`` (None: the plain install), self-references followed."""
    requirements = PYPROJECT["project"]["dependencies"] if extra is None else PYPROJECT["project"]["optional-dependencies"][extra]
    found = set()
    for requirement in requirements:
        if _name(requirement) == "blazeconv":
            for inner in re.search(r"\[(.*)\]", requirement).group(1).split(","):
                found |= _distributions(inner.strip())
        else:
            found.add(_name(requirement))
    return found


def test_the_plain_install_holds_no_torch_and_no_exporter():
    assert not _distributions(None) & set(NOT_IN_THE_PLAIN_INSTALL)
    assert {"numpy", "pillow", "click", "onnxruntime", "av"} <= _distributions(None)


@pytest.mark.parametrize("extra", sorted(EXTRAS))
def test_each_extra_the_commands_check_installs_what_they_check(extra):
    assert extra in PYPROJECT["project"]["optional-dependencies"], f"pyproject.toml lacks the extra {extra}"
    assert {DISTRIBUTION[package] for package in EXTRAS[extra]} <= _distributions(extra) | _distributions(None)


def test_all_holds_every_extra_and_test_holds_all():
    everything = set().union(*(_distributions(extra) for extra in EXTRAS))
    assert everything <= _distributions("all") | _distributions(None)
    assert _distributions("all") <= _distributions("test")


# ------------------------------------------------------------------------------------ the packaged networks


@pytest.mark.parametrize("variant", tiered(ALL_VARIANTS, QUICK_VARIANTS))
def test_each_packaged_network_is_a_fresh_export_byte_for_byte(variant, tmp_path):
    from blazeconv.sources import export_onnx_file, shipped_onnx_file

    packaged = shipped_onnx_file(VARIANTS[variant])
    assert packaged.is_file(), f"{packaged} missing: run make onnx-models"
    fresh = export_onnx_file(variant, tmp_path / "fresh.onnx")
    assert fresh.source_sha256 == VARIANTS[variant].sha256
    assert (tmp_path / "fresh.onnx").read_bytes() == packaged.read_bytes(), \
        f"{packaged} is not what the exporter writes today: run make onnx-models"


def test_a_shipped_model_or_a_copy_of_its_file_runs_the_packaged_network(tmp_path):
    from blazeconv.sources import onnx_network, shipped_onnx, shipped_onnx_file

    packaged = shipped_onnx_file(VARIANTS["front"])
    copy = tmp_path / "renamed.bin"  # recognised by content, whatever its name
    shutil.copyfile(REPO / "blazeconv" / "models" / VARIANTS["front"].tflite_file, copy)
    assert onnx_network("front") == onnx_network(copy) == packaged
    changed = tmp_path / "changed.tflite"
    data = bytearray(copy.read_bytes())
    data[-100] ^= 1
    changed.write_bytes(bytes(data))
    assert shipped_onnx(changed) is None


# ------------------------------------------------------------------------------------ extras, exit 8


def test_every_command_says_which_extra_it_needs():
    """A new command declares its extra with ``@needs_extra("...")`` (or none) and gets a line in COMMAND_EXTRAS."""
    assert sorted(cli.commands) == sorted(COMMAND_EXTRAS)
    for name, command in cli.commands.items():
        assert getattr(command.callback, "extra", None) == COMMAND_EXTRAS[name], name


def _arguments(command: str, tmp: Path) -> list:
    """A command line of ``command`` that would run (and write under ``tmp``) if its extra were installed."""
    return {
        "tflite2torch": ["front", "-o", tmp / "out.pth"],
        "torch2tflite": [tmp / "w.pth", "--like", "front", "-o", tmp / "out.tflite"],
        "onnx": ["front", "-o", tmp / "out.onnx"],
        "coreml": ["front", "-o", tmp / "out.mlpackage"],
        "verify": [tmp / "in.mlpackage"],
        "bench": ["--quick", "--model", "short_range", "-o", tmp / "out.json"],
        "eval": [DATA / "labelled", "--labels", DATA / "labelled" / "training.xml", "--json", tmp / "out.json"],
        "train": ["--labels", DATA / "labelled" / "training.xml", "-o", tmp / "tuned.pth", "--epochs", "1"],
    }[command]


@pytest.mark.parametrize("command", [c for c, extra in COMMAND_EXTRAS.items() if extra])
def test_a_missing_extra_is_one_line_and_exit_8_before_any_work(command, run_cli, monkeypatch, tmp_path):
    extra = COMMAND_EXTRAS[command]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in EXTRAS[extra] else real(name, *a))
    code, out, err = run_cli(command, *_arguments(command, tmp_path))
    assert code == 8, err
    assert err == f"Error: blazeconv {command} needs the {extra} extra ({', '.join(EXTRAS[extra])} not installed): " \
                  f"pip install 'blazeconv[{extra}]'\n"
    assert out == "" and list(tmp_path.iterdir()) == []


def test_needs_extra_refuses_an_unknown_extra():
    from blazeconv.cli.base import needs_extra

    with pytest.raises(ValueError, match="unknown extra 'gpu'"):
        needs_extra("gpu")


# A plain install played inside this environment: the packages only the extras bring cannot be imported.
_PLAIN = f"""
import sys
for name in {HIDDEN!r}:
    sys.modules[name] = None  # as if not installed: importing it fails, find_spec gives None
from blazeconv.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    loaded = sorted(m for m in {HIDDEN!r} if sys.modules.get(m) is not None)
    print("LOADED", loaded, file=sys.stderr)
    raise
"""


def _plain(tmp: Path, *args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLAZECONV_")}
    env.update(BLAZECONV_CACHE=str(tmp / "cache"), PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", _PLAIN, *map(str, args)], cwd=tmp, env=env, capture_output=True,
                          text=True, timeout=300)


# short_range at MediaPipe's one scale (on the defaults' tiles it also takes two patches of the suit for faces);
# full_range_sparse at the defaults' scales.
@pytest.mark.parametrize(("variant", "scales"), [("short_range", ["--exact"]), ("full_range_sparse", [])])
def test_detect_and_blur_run_without_torch_and_write_nothing_to_the_cache(variant, scales, tmp_path):
    found = _plain(tmp_path, "detect", PHOTO, "--model", variant, *scales, "--json", "-", "--crops", tmp_path / "crops")
    assert found.returncode == 0, found.stderr
    assert "LOADED []" in found.stderr
    assert len(json.loads(found.stdout)["images"][0]["detections"]) == 1
    hidden = _plain(tmp_path, "blur", PHOTO, "--model", variant, "-o", tmp_path / "blurred.png")
    assert hidden.returncode == 0 and "LOADED []" in hidden.stderr, hidden.stderr
    assert (tmp_path / "blurred.png").is_file() and any((tmp_path / "crops").rglob("*.png"))
    assert not (tmp_path / "cache").exists()


def test_a_video_runs_without_torch(tmp_path):
    video = DATA / "videos" / "asl_again.mkv"
    found = _plain(tmp_path, "detect", video, "--json", tmp_path / "faces.json")
    assert found.returncode == 0 and "LOADED []" in found.stderr, found.stderr
    assert json.loads((tmp_path / "faces.json").read_text())["videos"]
    assert not (tmp_path / "cache").exists()


def test_the_python_api_runs_without_torch(tmp_path):
    code = f"""
import sys
for name in {HIDDEN!r}:
    sys.modules[name] = None
import blazeconv
detector = blazeconv.FaceDetector()
faces = detector({str(PHOTO)!r})
crop = detector.crop({str(PHOTO)!r}, faces[0])
hidden = blazeconv.blur(crop)
print(len(faces), detector.backend, crop.shape, hidden.shape, [m for m in {HIDDEN!r} if sys.modules.get(m)])
"""
    env = {**os.environ, "BLAZECONV_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("(")[0].split() == ["1", "onnxruntime"] and done.stdout.rstrip().endswith("[]")
    assert not (tmp_path / "cache").exists()


def test_the_python_api_names_the_extra_where_it_needs_torch(tmp_path):
    """What a plain install cannot do from Python ends in the exit-8 error naming its extra, not an ImportError."""
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"not read")
    code = f"""
import sys
for name in {HIDDEN!r}:
    sys.modules[name] = None
import blazeconv
from blazeconv.errors import MissingDependencyError
calls = [lambda: blazeconv.load_model({str(weights)!r}), lambda: blazeconv.FaceDetector("front", backend="torch"),
         lambda: blazeconv.FaceDetector({str(weights)!r}), lambda: blazeconv.torch2tflite, lambda: blazeconv.train]
for call in calls:
    try:
        call()
        print("no error")
    except MissingDependencyError as exc:
        print(exc)
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "BLAZECONV_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 5, done.stdout
    assert all(line.endswith("pip install 'blazeconv[convert]'") for line in lines[:4]), done.stdout
    assert lines[4].endswith("pip install 'blazeconv[train]'"), done.stdout


@pytest.mark.parametrize("kind", ["pth", "tflite"])
def test_a_model_that_needs_a_conversion_names_the_convert_extra(kind, tmp_path):
    if kind == "pth":
        model, describe = tmp_path / "tuned.pth", "the weights"
        model.write_bytes(b"not read: torch would be needed to read it")
    else:  # a .tflite that is no shipped file (one byte changed)
        model, describe = tmp_path / "tuned.tflite", "the TFLite model"
        data = bytearray((REPO / "blazeconv" / "models" / VARIANTS["front"].tflite_file).read_bytes())
        data[-100] ^= 1
        model.write_bytes(bytes(data))
    done = _plain(tmp_path, "detect", PHOTO, "--model", model, "--json", tmp_path / "out.json")
    assert done.returncode == 8, done.stderr
    assert done.stderr.splitlines()[0] == (f"Error: exporting {describe} {model} to ONNX needs the convert extra (torch, "
                                           "tflite, onnx, onnxscript not installed): pip install 'blazeconv[convert]'")
    assert not (tmp_path / "out.json").exists() and not (tmp_path / "cache").exists()


# ------------------------------------------------------------------------------------ the wheel in a fresh venv


@pytest.fixture(scope="module")
def fresh_venv(built, tmp_path_factory):  # noqa: F811
    """The wheel installed with its dependencies from the package index into a new virtual environment (pip's cache
    kept: a second run takes seconds)."""
    folder = tmp_path_factory.mktemp("venv") / "plain"
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=300)
    python = folder / "bin" / "python"
    # Not this process's PYTHONPATH: pip would take the checkout on it for blazeconv already installed.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(built["wheel"])], capture_output=True,
                          text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


def _installed(venv: Path, cwd: Path, *args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BLAZECONV_", "PYTHON", "VIRTUAL_ENV"))}
    env["BLAZECONV_CACHE"] = str(cwd / "cache")
    return subprocess.run([str(venv / "bin" / "blazeconv"), *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_the_wheel_in_a_fresh_venv_detects_and_blurs_without_torch(fresh_venv, tmp_path):
    probe = subprocess.run([str(fresh_venv / "bin" / "python"), "-c",
                            "import importlib.util as u; print([m for m in ('torch', 'tflite', 'onnx', 'onnxscript') "
                            "if u.find_spec(m)])"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert probe.stdout.strip() == "[]", probe.stdout + probe.stderr
    photo = tmp_path / "photo.png"
    shutil.copyfile(PHOTO, photo)
    found = _installed(fresh_venv, tmp_path, "detect", "photo.png", "--json", "-")
    assert found.returncode == 0, found.stderr
    assert len(json.loads(found.stdout)["images"][0]["detections"]) == 1
    hidden = _installed(fresh_venv, tmp_path, "blur", "photo.png", "-o", "blurred.png")
    assert hidden.returncode == 0, hidden.stderr
    assert (tmp_path / "blurred.png").is_file() and not (tmp_path / "cache").exists()
    refused = _installed(fresh_venv, tmp_path, "tflite2torch", "front", "-o", "front.pth")
    assert refused.returncode == 8
    assert refused.stderr.strip().endswith("pip install 'blazeconv[convert]'") and refused.stderr.count("\n") == 1
    assert not (tmp_path / "front.pth").exists()
