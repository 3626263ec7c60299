"""Shared paths and fixtures. Tests read only the repository's own copies (tests/data, blazeconv/models/)."""

from __future__ import annotations

import gc
import getpass
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

# Nothing may be left in the temporary folder (issue 11): the suite runs with a folder of its own, which the
# commands it starts inherit through TMPDIR, and fails at the end when anything remains in it
# (``no_temporary_file_left``). pytest's tmp_path folders stay where they were (PYTEST_DEBUG_TEMPROOT).
os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", tempfile.gettempdir())
SUITE_TMP = Path(tempfile.mkdtemp(prefix="bzt-"))
os.environ["TMPDIR"] = str(SUITE_TMP)
tempfile.tempdir = str(SUITE_TMP)

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
MODELS = REPO / "blazeconv" / "models"
IMAGE_PATHS = sorted((DATA / "images").glob("*.png"))
# The 128 and 256 px models of the core toolchain, and every shipped model.
CORE_VARIANTS = ["front", "short_range", "back"]
ALL_VARIANTS = [*CORE_VARIANTS, "full_range", "full_range_sparse"]


def model_path(variant: str) -> Path:
    from blazeconv.variants import get_variant

    return MODELS / get_variant(variant).tflite_file


def litert_outputs(tflite_path: Path, batch_nhwc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run LiteRT (XNNPACK, 1 thread) image by image: ``(regressors (B, N, 16), classificators (B, N, 1))``.

    Outputs are picked by shape, not by index.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite_path), num_threads=1)
    interpreter.allocate_tensors()
    regressors, classificators = [], []
    for image in batch_nhwc:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image[None].astype(np.float32))
        interpreter.invoke()
        by_width = {d["shape"][-1]: interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()}
        regressors.append(by_width[16][0])
        classificators.append(by_width[1][0])
    return np.stack(regressors), np.stack(classificators)


def plain_input(image_path: Path, size: int) -> np.ndarray:
    """``(size, size, 3)`` float32 in [-1, 1]: the photo squashed to the model size (parity needs the same input, not a letterbox)."""
    from PIL import Image

    with Image.open(image_path) as image:
        rgb = image.convert("RGB").resize((size, size), Image.BILINEAR)
    return np.asarray(rgb, dtype=np.float32) / 127.5 - 1.0


# What other libraries keep in the temporary folder by design, reused from run to run (not blazeconv's leftovers):
# ONNX Runtime's telemetry SDK writes ``.ses`` (51 bytes) when it is imported, and torch.export (the ONNX exporter)
# keeps its compile cache in ``torchinductor_<user>``.
THIRD_PARTY_FILES = {".ses", f"torchinductor_{getpass.getuser()}"}


@pytest.fixture(scope="session", autouse=True)
def no_temporary_file_left():
    """After the last test (this session fixture is torn down last): the suite's temporary folder is empty."""
    yield
    gc.collect()  # models whose temporary packages go with them
    left = sorted(p.name for p in SUITE_TMP.iterdir() if p.name not in THIRD_PARTY_FILES)
    shutil.rmtree(SUITE_TMP, ignore_errors=True)
    assert not left, f"left in the temporary folder ({SUITE_TMP}): {', '.join(left)}"


@pytest.fixture(scope="session")
def converted():
    """``converted(variant)`` -> Conversion of the shipped file, converted once per session."""
    from blazeconv.convert import convert_file

    cache = {}

    def get(variant: str):
        if variant not in cache:
            cache[variant] = convert_file(model_path(variant))
        return cache[variant]

    return get


@pytest.fixture
def run_cli(capsys):
    """Run the CLI in-process as a user would: ``run_cli(*args) -> (exit_code, stdout, stderr)``."""
    from blazeconv.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exit_info:
            main([str(a) for a in args])
        captured = capsys.readouterr()
        return exit_info.value.code, captured.out, captured.err

    return run
