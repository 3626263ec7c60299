"""What a pip user gets: the wheel and sdist carry the models and photos, and the installed package works alone.

The wheel is built from a copy of the files a source distribution holds (no network, no build isolation: setuptools
from this environment), installed with ``pip --target`` (no dependencies: they come from this environment), and run
from a folder outside the repository. Start-up: ``--help``/``--version`` of every command must not import torch.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from helpers import tiered

from blazeconv.cli import cli
from blazeconv.variants import VARIANTS

REPO = Path(__file__).resolve().parent.parent
IMAGES = REPO / "tests" / "data" / "images"

# Files the package must carry, relative to the package folder.
PACKAGE_DATA = (
    [f"models/{v.tflite_file}" for v in VARIANTS.values()]
    + [f"models/{Path(v.tflite_file).with_suffix('.onnx')}" for v in VARIANTS.values()]  # run without torch
    + ["models/SHA256SUMS", "models/README.md", "py.typed", "photos/README.md"]
    + ["photos/astronaut.png", "photos/sergey.png", "photos/1face.png"]
)


def _run_hook(tree: Path, hook: str, out: Path) -> Path:
    """Call a PEP 517 hook of setuptools in ``tree``; returns the built file."""
    code = f"import sys; from setuptools import build_meta; print(build_meta.{hook}(sys.argv[1]))"
    result = subprocess.run([sys.executable, "-c", code, str(out)], cwd=tree, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return out / result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """The sdist built from a copy of the checkout's package files, and the wheel built from that sdist."""
    work = tmp_path_factory.mktemp("packaging")
    tree = work / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(REPO / name, tree / name)
    shutil.copytree(REPO / "blazeconv", tree / "blazeconv", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = work / "dist"
    dist.mkdir()
    sdist = _run_hook(tree, "build_sdist", dist)
    # Build the wheel from the unpacked sdist, as pip does for a source install: the sdist must hold everything.
    with tarfile.open(sdist) as archive:
        archive.extractall(work / "unpacked", filter="data")
    wheel = _run_hook(next((work / "unpacked").iterdir()), "build_wheel", dist)
    return {"sdist": sdist, "wheel": wheel, "work": work}


def test_wheel_carries_models_photos_and_licences(built):
    names = set(zipfile.ZipFile(built["wheel"]).namelist())
    missing = [f for f in PACKAGE_DATA if f"blazeconv/{f}" not in names]
    assert not missing, f"not in the wheel: {missing}"
    assert not any(n.startswith(("tests/", "build/", "docs/")) for n in names)
    assert any(n.endswith("entry_points.txt") for n in names)


def test_sdist_carries_models_photos_and_licences(built):
    with tarfile.open(built["sdist"]) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    missing = [f for f in PACKAGE_DATA if f"blazeconv/{f}" not in names]
    assert not missing, f"not in the sdist: {missing}"


def test_shipped_model_checksums_in_the_wheel(built, tmp_path):
    """The packaged models are the ones SHA256SUMS lists, byte for byte."""
    from blazeconv.checksums import verify

    zipfile.ZipFile(built["wheel"]).extractall(tmp_path)
    assert verify(tmp_path / "blazeconv" / "models" / "SHA256SUMS") == []


@pytest.fixture(scope="module")
def installed(built) -> dict:
    """The wheel installed into a folder of its own; the environment a command outside the repository runs in."""
    target = built["work"] / "site"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target", str(target),
         str(built["wheel"])], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    outside = built["work"] / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLAZECONV_")}
    env.update(PYTHONPATH=str(target), BLAZECONV_CACHE=str(built["work"] / "cache"))
    return {"target": target, "cwd": outside, "env": env}


def _blazeconv(installed: dict, *args: str) -> subprocess.CompletedProcess:
    script = installed["target"] / "bin" / "blazeconv"
    return subprocess.run([str(script), *args], cwd=installed["cwd"], env=installed["env"], capture_output=True,
                          text=True, timeout=600)


def test_installed_package_is_the_wheel_not_the_checkout(installed):
    result = subprocess.run([sys.executable, "-c", "import blazeconv; print(blazeconv.__file__)"],
                            cwd=installed["cwd"], env=installed["env"], capture_output=True, text=True, timeout=60)
    assert Path(result.stdout.strip()).is_relative_to(installed["target"]), result.stdout + result.stderr


@pytest.mark.slow
def test_installed_detect_runs_outside_the_repository(installed):
    """`blazeconv detect photo` with no other argument: the packaged default model (full_range_sparse), converted into
    the cache."""
    photo = installed["cwd"] / "photo.png"
    shutil.copyfile(IMAGES / "3faces.png", photo)
    result = _blazeconv(installed, "detect", "photo.png", "--json", "-")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert [len(entry["detections"]) for entry in document["images"]] == [3]


@pytest.mark.slow
def test_installed_verify_uses_the_shipped_photos(installed, tmp_path):
    """`verify` without IMAGES works outside a clone (on a Core ML model converted from the packaged file)."""
    pytest.importorskip("coremltools")
    out = tmp_path / "front_landmarks.mlpackage"
    built = _blazeconv(installed, "coreml", "front", "--landmarks", "-o", str(out))
    assert built.returncode == 0, built.stderr
    result = _blazeconv(installed, "verify", str(out))
    assert result.returncode == 0, result.stderr
    assert "matches PyTorch on 3 image(s)" in result.stderr + result.stdout


COMMANDS = sorted(cli.commands)  # every command, present and future


# A Python start-up each: the quick tier runs the group's own and detect's.
@pytest.mark.parametrize("args", tiered([["--help"], ["--version"]] + [[c, "--help"] for c in COMMANDS],
                                        [["--help"], ["detect", "--help"]]), ids=lambda a: " ".join(a))
def test_help_and_version_do_not_import_torch(args):
    """Start-up stays light: the CLI imports torch only inside a command that runs a model."""
    code = ("import sys; from blazeconv.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as exc:\n    code = exc.code\n"
            "heavy = sorted(m for m in ('torch', 'coremltools', 'onnxruntime', 'openvino', 'ray') if m in sys.modules)\n"
            "print('HEAVY', heavy, code, file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert "HEAVY [] 0" in result.stderr, result.stderr[-2000:]
