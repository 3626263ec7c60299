"""Fixtures, and the suite's private folders. Tests read only the repository's own copies (tests/data,
blazeconv/models/); shared paths and helpers are in helpers.py."""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Nothing may be left in the temporary folder: the suite runs with a folder of its own, which the commands it
# starts inherit through TMPDIR, and fails at the end when anything remains in it (``no_temporary_file_left``).
# pytest's tmp_path folders stay where they were (PYTEST_DEBUG_TEMPROOT).
os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", tempfile.gettempdir())
SUITE_TMP = Path(tempfile.mkdtemp(prefix="bzt-"))
# The cache starts empty, as on a fresh machine, and is never the user's (~/.cache/blazeconv): converted weights
# and ONNX exports are made by the suite itself, once, and removed with it. Child processes inherit it.
SUITE_CACHE = Path(tempfile.mkdtemp(prefix="bzc-"))
os.environ["BLAZECONV_CACHE"] = str(SUITE_CACHE / "blazeconv")
os.environ["XDG_CACHE_HOME"] = str(SUITE_CACHE / "xdg")
os.environ["TMPDIR"] = str(SUITE_TMP)
tempfile.tempdir = str(SUITE_TMP)

from helpers import THIRD_PARTY_FILES, model_path  # noqa: E402 (after TMPDIR is set)


@pytest.fixture(scope="session", autouse=True)
def no_temporary_file_left():
    """After the last test (this session fixture is torn down last): the suite's temporary folder is empty."""
    yield
    gc.collect()  # models whose temporary packages go with them
    left = sorted(p.name for p in SUITE_TMP.iterdir() if p.name not in THIRD_PARTY_FILES)
    shutil.rmtree(SUITE_TMP, ignore_errors=True)
    shutil.rmtree(SUITE_CACHE, ignore_errors=True)
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


@pytest.fixture(scope="session")
def runner():
    """``runner(backend, variant)`` -> the backend's runner for the shipped model, made once per session."""
    from blazeconv.backends import make_runner

    made = {}

    def get(backend: str, variant: str):
        if (backend, variant) not in made:
            made[backend, variant] = make_runner(backend, variant)
        return made[backend, variant]

    return get
