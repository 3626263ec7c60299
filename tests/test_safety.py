"""What blazeconv leaves behind when things go wrong: artifacts, temporary files, make targets, error lines.

- Artifacts are written to a hidden temporary file and renamed (``blazeconv.io.atomic_path``). A conversion
  killed with SIGKILL -- frozen in the middle of its write, or at moments spread over its run -- leaves the
  previous artifact byte for byte; the killed writer's partial data exists only under the hidden temporary
  name, which the next write of the same artifact removes.
- ``make`` deletes a target whose recipe failed (``.DELETE_ON_ERROR``) and stops before converting models that do
  not match ``models/SHA256SUMS``.
- Every failure a user can cause is one ``Error:`` line naming the file, with the exit code docs/design.md lists;
  ``--debug`` adds the traceback.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import DATA, REPO, assert_one_line_error, model_path, tiered

from blazeconv import errors
from blazeconv.cli import INTERNAL_ERROR_EXIT
from blazeconv.errors import OutputError
from blazeconv.io import atomic_path, remove_stale_temporaries

posix_only = pytest.mark.skipif(os.name != "posix", reason="signals and make are POSIX")


def temporaries(artifact: Path) -> list[Path]:
    """The hidden temporary files of ``artifact`` (``.NAME.PID.XXXXXXXX.tmp``)."""
    return sorted(artifact.parent.glob(f".{artifact.name}.*.tmp"))


# ----------------------------------------------------------------------------------- atomic_path


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "artifact.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half of the new")
            assert tmp.name.startswith(".artifact.bin.") and tmp.parent == tmp_path
            raise RuntimeError("disk on fire")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifact.bin"]


def test_an_unwritable_destination_is_an_output_error_naming_it(tmp_path):
    (tmp_path / "folder").write_text("a file where a folder should be")
    target = tmp_path / "folder" / "artifact.bin"
    with pytest.raises(OutputError, match="cannot write") as error:
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"never")
    assert str(target) in str(error.value)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@posix_only
def test_temporaries_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    target = tmp_path / "artifact.bin"
    dead = tmp_path / f".artifact.bin.{_dead_pid()}.abc123xy.tmp"
    alive = tmp_path / f".artifact.bin.{os.getppid()}.abc123xy.tmp"  # a writer that still runs: left alone
    unrelated = [tmp_path / ".artifact.bin.notapid.tmp", tmp_path / ".other.bin.1.abc.tmp", tmp_path / "artifact.bin.tmp"]
    for path in [dead, alive, *unrelated]:
        path.write_bytes(b"partial")
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert not dead.exists()
    assert alive.exists() and all(p.exists() for p in unrelated)
    assert remove_stale_temporaries(target) == []


# ------------------------------------------------------------------------------ SIGKILL mid-way


def _conversion(out: Path) -> list[str]:
    return [sys.executable, "-m", "blazeconv", "tflite2torch", str(model_path("back")), "-o", str(out)]


def _assert_old_or_complete(out: Path, previous: bytes, expected: dict) -> str:
    """The artifact is the previous one byte for byte, or the complete new one (loads and equals the conversion)."""
    data = out.read_bytes()
    if data == previous:
        return "previous"
    state_dict = torch.load(out, weights_only=True)
    assert state_dict.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(state_dict[key], value, rtol=0, atol=0)
    return "new"


@pytest.fixture
def previous_artifact(tmp_path, converted):
    """An existing ``weights.pth`` (the front model's weights) that a conversion of the back model will replace."""
    out = tmp_path / "out" / "weights.pth"
    out.parent.mkdir()
    torch.save(converted("front").state_dict, out)
    return out, out.read_bytes(), converted("back").state_dict


@pytest.mark.slow
@posix_only
def test_sigkill_while_writing_leaves_the_previous_artifact(previous_artifact):
    """Freeze the converter (SIGSTOP) the moment its temporary file appears, look, then SIGKILL it."""
    out, previous, expected = previous_artifact
    for _attempt in range(5):
        proc = subprocess.Popen(_conversion(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
        frozen = False
        while proc.poll() is None:
            if temporaries(out):
                os.kill(proc.pid, signal.SIGSTOP)
                frozen = True
                break
            time.sleep(0.0002)
        if frozen:
            break
        proc.wait()  # the write finished between two looks: start over from the previous artifact
        out.write_bytes(previous)
    else:
        pytest.fail("never caught the converter while it was writing")

    # Frozen in the middle of the write: the artifact is untouched, the new bytes are in a hidden file.
    assert out.read_bytes() == previous
    (partial,) = temporaries(out)
    assert partial.name.startswith(".") and partial.name.endswith(".tmp")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert out.read_bytes() == previous
    assert sorted(out.parent.iterdir()) == sorted([out, partial])  # nothing under the artifact's own name but it

    # The next conversion of the same artifact completes it and removes the killed writer's temporary file.
    finished = subprocess.run(_conversion(out), capture_output=True, text=True, cwd=REPO)
    assert finished.returncode == 0, finished.stderr
    assert _assert_old_or_complete(out, previous, expected) == "new"
    assert list(out.parent.iterdir()) == [out]


@pytest.mark.slow
@posix_only
def test_sigkill_at_moments_spread_over_a_conversion_never_leaves_a_partial_artifact(previous_artifact):
    """Kill at 80%, 95% and 100% (+-5%) of a full run's time, when the conversion finishes and writes."""
    out, previous, expected = previous_artifact
    start = time.perf_counter()
    subprocess.run(_conversion(out), check=True, capture_output=True, cwd=REPO)
    duration = time.perf_counter() - start
    out.write_bytes(previous)
    rng = random.Random(1234)
    seen = []
    for fraction in (0.8, 0.95, 1.0):
        proc = subprocess.Popen(_conversion(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
        time.sleep(duration * fraction * rng.uniform(0.95, 1.05))
        proc.kill()
        proc.wait()
        seen.append(_assert_old_or_complete(out, previous, expected))
        assert all(p == out or p in temporaries(out) for p in out.parent.iterdir())
        out.write_bytes(previous)
    finished = subprocess.run(_conversion(out), capture_output=True, text=True, cwd=REPO)
    assert finished.returncode == 0, finished.stderr
    assert list(out.parent.iterdir()) == [out]
    print(f"a run took {duration:.1f} s; after each kill the artifact was: {seen}")


# ------------------------------------------------------------------------------------------ make


@pytest.fixture
def make_tree(tmp_path):
    """A copy of what the Makefile reads (Makefile, pyproject.toml, blazeconv/ with its models/) with a .venv whose
    ``python`` and ``blazeconv`` run this checkout's, so make can run in a scratch folder."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("Makefile", "pyproject.toml"):
        shutil.copyfile(REPO / name, tree / name)
    for folder in ("blazeconv", "blazeconv/models"):
        (tree / folder).mkdir()
        for path in (REPO / folder).iterdir():
            if path.is_file():
                shutil.copyfile(path, tree / folder / path.name)
    bin_dir = tree / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for tool, target in (("python", Path(sys.executable)), ("blazeconv", Path(sys.executable).parent / "blazeconv")):
        wrapper = bin_dir / tool
        wrapper.write_text(f'#!/bin/sh\nexec "{target}" "$@"\n')
        wrapper.chmod(0o755)
    (tree / ".venv" / ".installed").touch()
    return tree


def _make(tree: Path, *targets: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", *targets], cwd=tree, capture_output=True, text=True, timeout=300)


@posix_only
def test_make_deletes_a_target_whose_recipe_failed(make_tree):
    """A converter that wrote half a file and failed: .DELETE_ON_ERROR removes the half file."""
    half_writer = make_tree / ".venv" / "bin" / "blazeconv"
    half_writer.write_text('#!/bin/sh\nwhile [ $# -gt 0 ]; do [ "$1" = -o ] && printf half > "$2"; shift; done\nexit 3\n')
    result = _make(make_tree, "build/front.pth")
    assert result.returncode != 0
    assert "Deleting file 'build/front.pth'" in result.stderr
    assert not (make_tree / "build" / "front.pth").exists()


@posix_only
def test_make_stops_before_converting_a_model_that_fails_its_checksum(make_tree):
    model = make_tree / "blazeconv" / "models" / "face_detection_front.tflite"
    data = bytearray(model.read_bytes())
    data[-100] ^= 1
    model.write_bytes(bytes(data))
    result = _make(make_tree, "build/front.pth")
    assert result.returncode != 0
    assert "face_detection_front.tflite: SHA-256 differs" in result.stderr
    assert "tflite2torch" not in result.stdout
    assert not (make_tree / "build" / "front.pth").exists() and not (make_tree / "build" / "models.verified").exists()


# ---------------------------------------------------------------------------------------- errors


def _file_in_place_of_folder(tmp_path: Path) -> Path:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    return blocker


USER_ERRORS = {
    "output-folder-is-a-file": (lambda t: ["tflite2torch", model_path("front"), "-o", _file_in_place_of_folder(t) / "x.pth"],
                                1, lambda t: t / "blocker" / "x.pth"),
    "anchors-output-folder-is-a-file": (lambda t: ["anchors", "--variant", "front", "-o", _file_in_place_of_folder(t) / "a.npy"],
                                        1, lambda t: t / "blocker" / "a.npy"),
    "weights-missing": (lambda t: ["detect", DATA / "images" / "1face.png", "--model", t / "missing.pth"], 5,
                        lambda t: t / "missing.pth"),
    "json-folder-is-a-file": (lambda t: ["detect", DATA / "images" / "1face.png", "--model", t / "w.pth", "--json",
                                         _file_in_place_of_folder(t) / "d.json"], 1, lambda t: t / "blocker" / "d.json"),
    "annotate-folder-under-a-file": (lambda t: ["detect", DATA / "images" / "1face.png", "--model", t / "w.pth",
                                                "--annotate", _file_in_place_of_folder(t) / "out"], 1, lambda t: t / "blocker"),
    "image-missing": (lambda t: ["detect", t / "missing.png", "--model", t / "w.pth"], 6, lambda t: t / "missing.png"),
    "options-not-json": (lambda t: ["anchors", "--options", DATA / "images" / "1face.png"], 7, lambda t: "1face.png"),
}


@pytest.mark.parametrize("case", tiered(sorted(USER_ERRORS), [c for c in USER_ERRORS if c != "image-missing"]))
def test_every_user_error_is_one_line_with_a_documented_code(case, tmp_path, run_cli, converted):
    torch.save(converted("front").state_dict, tmp_path / "w.pth")
    args, code, culprit = USER_ERRORS[case]
    exit_code, _, err = run_cli(*args(tmp_path))
    if case == "output-folder-is-a-file":  # the conversion's own progress line comes first
        err = err.splitlines()[-1]
    assert_one_line_error(exit_code, err, culprit(tmp_path), code)
    assert f" {code} " in _documented_exit_codes() or code == 1


def test_debug_adds_the_traceback_to_the_same_error_line(tmp_path, run_cli):
    blocker = _file_in_place_of_folder(tmp_path)
    code, _, err = run_cli("--debug", "anchors", "--variant", "front", "-o", blocker / "a.npy")
    assert code == 1 and "Traceback" in err
    assert err.strip().splitlines()[-1].startswith(f"Error: {blocker / 'a.npy'}: cannot write")


@pytest.mark.parametrize(
    ("raised", "code", "line"),
    [
        (RuntimeError("first line\nsecond line"), INTERNAL_ERROR_EXIT,
         "Error: internal error: RuntimeError: first line second line (rerun with --debug for the traceback)"),
        (PermissionError(13, "Permission denied", "/some/where/model.tflite"), 1,
         "Error: /some/where/model.tflite: Permission denied"),
        (errors.UnsupportedModelError("m.tflite: expected [[0 0]\n [0 8]]"), 4, "Error: m.tflite: expected [[0 0] [0 8]]"),
    ],
    ids=["bug", "os-error", "multi-line-message"],
)
def test_unexpected_failures_are_still_one_line(raised, code, line, monkeypatch, run_cli):
    import blazeconv.convert

    def fail(path):
        raise raised

    monkeypatch.setattr(blazeconv.convert, "convert_file", fail)
    exit_code, _, err = run_cli("tflite2torch", model_path("front"))
    assert exit_code == code and err.strip() == line
    exit_code, _, err = run_cli("--debug", "tflite2torch", model_path("front"))
    assert exit_code == code and "Traceback" in err and err.strip().splitlines()[-1] == line


@posix_only
def test_a_closed_stdout_ends_quietly():
    """``blazeconv ... | head -c0``: the reader of stdout is gone; exit 1, no traceback, no 'Exception ignored'."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run([sys.executable, "-m", "blazeconv", "--version"], stdout=write_end,
                                stderr=subprocess.PIPE, text=True, cwd=REPO, timeout=120)
    finally:
        os.close(write_end)
    assert result.returncode == 1 and result.stderr == ""


def _documented_exit_codes() -> str:
    text = (REPO / "docs" / "design.md").read_text()
    section = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    return " " + " ".join(section.split()) + " "


def test_the_design_notes_list_every_exit_code():
    documented = _documented_exit_codes()
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.BlazeconvError)]
    codes = {c.exit_code for c in classes} | {2, INTERNAL_ERROR_EXIT, 130}
    for code in sorted(codes):
        assert re.search(rf"[ ·(]{code} ", documented), f"exit code {code} is not in docs/design.md's Exit codes section"
    for cls in classes:
        if cls is not errors.BlazeconvError:
            assert cls.__doc__, cls


def test_a_model_file_that_is_not_readable_is_a_model_file_error(tmp_path, run_cli):
    if os.name != "posix" or os.geteuid() == 0:
        pytest.skip("root reads any file")
    path = tmp_path / "secret.tflite"
    path.write_bytes(model_path("front").read_bytes())
    path.chmod(0)
    code, _, err = run_cli("tflite2torch", path)
    assert_one_line_error(code, err, path, 3)


def test_anchors_written_atomically_beside_the_target(tmp_path, run_cli):
    out = tmp_path / "anchors.npy"
    out.write_bytes(b"old")
    code, _, err = run_cli("anchors", "--variant", "front", "-o", out)
    assert code == 0, err
    assert np.load(out).shape == (896, 4) and list(tmp_path.iterdir()) == [out]
