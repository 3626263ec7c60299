"""Real SIGINT and SIGTERM sent to a running ``blazeconv`` at chosen moments.

Every case must end with exactly one ``Error: interrupted by SIG...`` line, exit 130 (SIGINT) or 143 (SIGTERM),
no traceback, no interpreter abort, no temporary file anywhere (beside the outputs, in TMPDIR), and the artifact
being replaced intact.

The moments are made exact by a harness around the real entry point (``blazeconv.__main__.main``): it stops the
process at a hook (a module about to be imported, an artifact about to be renamed into place, a detection
batch, a coremltools step), prints ``PAUSED`` on stderr and waits; the test then sends the signal. A signal
that blazeconv defers (during a first import of torch, or the swap of a Core ML package) is recorded and the
harness lets the process go on, so the signal is handled where blazeconv handles it; any other signal raises in
the harness's wait, which is the moment chosen.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import DATA, REPO, THIRD_PARTY_FILES, jsonl_records, model_path

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")

HARNESS = r"""
import os, signal, sys, time

where = os.environ.get("PAUSE_AT", "")
kind, _, what = where.partition(":")
what, _, nth = what.partition("#")
nth = int(nth or 1)
seen = [0]


def pause():
    seen[0] += 1
    if seen[0] != nth:
        return
    from blazeconv import interrupts

    sys.__stderr__.write(f"PAUSED {where}\n")  # coremltools' output is captured while it runs
    sys.__stderr__.flush()
    deadline = time.monotonic() + 120
    while interrupts._state.pending is None and time.monotonic() < deadline:
        time.sleep(0.005)  # the signal raises here, or is recorded when deferred


if kind == "import":  # just before a module is found, inside the import that needs it
    class Finder:
        def find_spec(self, name, path=None, target=None):
            if name == what:
                sys.meta_path.remove(self)
                pause()
            return None

    sys.meta_path.insert(0, Finder())
elif kind in ("replace", "rename"):  # an artifact complete beside its target, not yet renamed into place
    real = getattr(os, kind)

    def hooked(src, dst, *args, **kwargs):
        if str(dst).endswith(what):
            pause()
        return real(src, dst, *args, **kwargs)

    setattr(os, kind, hooked)
elif kind == "call":  # after a library function returned: MODULE[.CLASS].NAME
    import importlib

    parts = what.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:split]))
            break
        except ImportError:
            continue
    for part in parts[split:-1]:
        owner = getattr(owner, part)
    name = parts[-1]
    real = getattr(owner, name)

    def hooked(*args, **kwargs):
        result = real(*args, **kwargs)
        pause()
        return result

    setattr(owner, name, hooked)
elif kind == "ready":  # once blazeconv's handlers are installed: the test sends the signal after a delay
    real_signal = signal.signal

    def spy(signum, handler):
        previous = real_signal(signum, handler)
        if signum == signal.SIGTERM and getattr(handler, "__module__", "") == "blazeconv.interrupts" and not seen[0]:
            seen[0] = 1
            sys.stderr.write("READY\n")
            sys.stderr.flush()
        return previous

    signal.signal = spy

sys.argv = ["blazeconv", *sys.argv[1:]]
from blazeconv.__main__ import main

main()
"""


def start(args: list, tmp: Path, pause_at: str) -> subprocess.Popen:
    env = dict(os.environ, PAUSE_AT=pause_at, TMPDIR=str(tmp), PYTHONUNBUFFERED="1",
               BLAZECONV_CACHE=str(tmp.parent / "cache"))
    return subprocess.Popen([sys.executable, "-c", HARNESS, *map(str, args)], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_line(proc: subprocess.Popen, prefix: str) -> list[str]:
    """Read stderr up to the line starting with ``prefix`` (the process is then paused or ready)."""
    lines = []
    while True:
        line = proc.stderr.readline()
        assert line, f"the process ended before '{prefix}': {''.join(lines)}"
        lines.append(line)
        if line.startswith(prefix):
            return lines


def interrupt(args: list, tmp: Path, pause_at: str, signum: int, delay: float = 0.0) -> tuple[int, str, str]:
    """Run blazeconv, send ``signum`` at ``pause_at`` (after ``delay`` s), return (code, stdout, stderr)."""
    proc = start(args, tmp, pause_at)
    try:
        before = wait_for_line(proc, "READY" if pause_at == "ready" else "PAUSED")
        time.sleep(delay)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = "".join(line for line in before if not line.startswith(("PAUSED", "READY"))) + err
    return proc.returncode, out, err


def assert_interrupted(code: int, err: str, signum: int, detail: str = "") -> None:
    """Exit 128 + signal, the last stderr line the one error line, nothing else that looks like a failure."""
    name = signal.Signals(signum).name
    assert code == 128 + signum, err
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert errors == [err.strip().splitlines()[-1]] and errors[0].startswith(f"Error: interrupted by {name}"), err
    assert detail in errors[0], err
    for symptom in ("Traceback", "terminate called", "error_already_set", "Aborted", "Exception ignored"):
        assert symptom not in err, err


def hidden_leftovers(*folders: Path) -> list[Path]:
    """Temporary files and staging folders blazeconv would leave: hidden entries, ``tmp*`` packages."""
    return [p for folder in folders for p in folder.rglob("*")
            if p.name.startswith((".", "tmp")) and p.name not in THIRD_PARTY_FILES]


def left_in(tmp: Path) -> list[str]:
    """What the process left in its TMPDIR (other packages' own caches aside: conftest.THIRD_PARTY_FILES)."""
    return sorted(p.name for p in tmp.iterdir() if p.name not in THIRD_PARTY_FILES)


@pytest.fixture
def tmp(tmp_path) -> Path:
    """The TMPDIR of the interrupted process, which must be empty afterwards."""
    (tmp_path / "temp").mkdir()
    return tmp_path / "temp"


@pytest.fixture
def weights(tmp_path, converted) -> list:
    """detect's options for the short_range weights on the torch backend (the code under test; no ONNX export)."""
    path = tmp_path / "short_range.pth"
    torch.save(converted("short_range").state_dict, path)
    return ["--model", path, "--backend", "torch"]


@pytest.fixture
def photos(tmp_path) -> Path:
    """12 photos in one folder (the test photos, three times)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for copy in range(3):
        for photo in sorted((DATA / "images").glob("*.png"))[:4]:
            shutil.copy(photo, folder / f"{copy}_{photo.name}")
    return folder


# ------------------------------------------------------------------------------------------------ start-up


@pytest.mark.slow
@pytest.mark.parametrize(("module", "signum"), [("torch._C", signal.SIGINT), ("torch.nn", signal.SIGTERM),
                                                ("numpy", signal.SIGINT)])
def test_a_signal_during_the_first_heavy_import_is_handled_after_it(module, signum, tmp, tmp_path, weights):
    """torch's pybind11 initialisation aborts the interpreter if an exception is raised inside it: deferred."""
    out = tmp_path / "d.json"
    code, stdout, err = interrupt(["detect", DATA / "images" / "1face.png", *weights, "--json", out],
                                  tmp, f"import:{module}", signum)
    assert_interrupted(code, err, signum)
    assert not out.exists() and stdout == ""
    assert not left_in(tmp) and not hidden_leftovers(tmp_path)


@pytest.mark.slow
def test_a_signal_during_the_import_of_onnxruntime_is_handled_after_it(tmp, tmp_path, weights):
    """ONNX Runtime is a pybind11 module too (the onnxruntime and auto backends import it)."""
    pytest.importorskip("onnxruntime")
    code, stdout, err = interrupt(["detect", DATA / "images" / "1face.png", "--model", weights[1], "--backend",
                                   "onnxruntime"], tmp, "import:onnxruntime.capi._pybind_state", signal.SIGINT)
    assert_interrupted(code, err, signal.SIGINT)
    assert stdout == "" and not left_in(tmp) and not hidden_leftovers(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.3, 1.0, 2.0])
def test_sigint_at_moments_spread_over_start_up(delay, tmp, tmp_path, weights):
    """Real time, from the moment the handlers are installed: every moment gives the same clean end (or a
    finished run, on a fast machine)."""
    out = tmp_path / "d.json"
    code, _, err = interrupt(["detect", DATA / "images" / "1face.png", *weights, "--json", out],
                             tmp, "ready", signal.SIGINT, delay)
    if code != 0:
        assert_interrupted(code, err, signal.SIGINT)
    if code == 0 or out.exists():  # finished, perhaps interrupted while exiting: the JSON is complete
        assert json.loads(out.read_text())["images"]
    assert not left_in(tmp) and not hidden_leftovers(tmp_path)


# ------------------------------------------------------------------------------------------------- detect


@pytest.mark.slow
def test_sigterm_mid_folder_keeps_the_finished_images_and_resume_completes_the_run(tmp, tmp_path, weights, photos,
                                                                                   run_cli):
    jsonl, document, annotated = tmp_path / "d.jsonl", tmp_path / "d.json", tmp_path / "annotated"
    args = ["detect", photos, *weights, "--exact", "--batch-size", "4", "--jsonl", jsonl, "--json", document,
            "--annotate", annotated]
    # --exact: one model input per image. Stopped in the model on the third batch: two batches (8 images) are
    # detected; an image's line is written once
    # its annotation is (drawn on a thread of their own, at most two ahead): 6 to 8 are done.
    code, stdout, err = interrupt(args, tmp, "call:blazeconv.detection.pipeline.detect_prepared#3", signal.SIGTERM)
    lines = jsonl_records(jsonl)
    assert len(lines) in (6, 7, 8) and not document.exists()
    assert_interrupted(code, err, signal.SIGTERM, f"{len(lines)} of 12 images done; their results are in {jsonl}")
    assert len(stdout.split("\n  score")) > 1  # the summary of the finished images came as they finished
    assert sorted(p.stem for p in annotated.iterdir()) == sorted(Path(r["path"]).stem for r in lines)
    assert not left_in(tmp) and not hidden_leftovers(tmp_path)

    code, _, err = run_cli(*args, "--resume")
    assert code == 0, err
    assert f"{len(lines)} of 12 images already done" in err
    resumed = jsonl_records(jsonl)
    assert resumed[:len(lines)] == lines and sorted(r["path"] for r in resumed) == sorted(str(p) for p in photos.iterdir())
    assert json.loads(document.read_text())["images"] == resumed  # --json covers the whole run
    code, _, err = run_cli("detect", photos, *weights, "--exact", "--jsonl", tmp_path / "straight.jsonl")
    assert code == 0, err
    straight = jsonl_records(tmp_path / "straight.jsonl")
    assert sorted(resumed, key=lambda r: r["path"]) == sorted(straight, key=lambda r: r["path"])


@pytest.mark.slow
def test_sigint_while_an_annotation_is_written_keeps_the_previous_one(tmp, tmp_path, weights):
    annotated = tmp_path / "annotated"
    annotated.mkdir()
    (annotated / "3faces.png").write_bytes(b"previous annotation")
    code, _, err = interrupt(["detect", DATA / "images" / "3faces.png", *weights, "--annotate", annotated, "--overwrite"],
                             tmp, "replace:3faces.png", signal.SIGINT)
    assert_interrupted(code, err, signal.SIGINT, "0 of 1 images done")
    assert [p.name for p in annotated.iterdir()] == ["3faces.png"]
    assert (annotated / "3faces.png").read_bytes() == b"previous annotation"
    assert not left_in(tmp) and not hidden_leftovers(tmp_path)


@pytest.mark.slow
def test_sigterm_while_the_json_is_written_keeps_the_previous_one(tmp, tmp_path, weights):
    out = tmp_path / "d.json"
    out.write_text('{"previous": true}\n')
    code, _, err = interrupt(["detect", DATA / "images" / "1face.png", *weights, "--json", out],
                             tmp, "replace:d.json", signal.SIGTERM)
    assert_interrupted(code, err, signal.SIGTERM)
    assert out.read_text() == '{"previous": true}\n'
    assert not left_in(tmp) and not hidden_leftovers(tmp_path)


# ------------------------------------------------------------------------------------ the other commands


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_tflite2torch_interrupted_while_writing_keeps_the_previous_weights(signum, tmp, tmp_path):
    out = tmp_path / "front.pth"
    out.write_bytes(b"previous weights")
    code, _, err = interrupt(["tflite2torch", model_path("front"), "-o", out], tmp, "replace:front.pth", signum)
    assert_interrupted(code, err, signum)
    assert out.read_bytes() == b"previous weights"
    assert not left_in(tmp) and not hidden_leftovers(tmp_path)


def test_anchors_interrupted_while_writing(tmp, tmp_path):
    out = tmp_path / "a.npy"
    code, _, err = interrupt(["anchors", "--variant", "front", "-o", out], tmp, "replace:a.npy", signal.SIGINT)
    assert_interrupted(code, err, signal.SIGINT)
    assert not out.exists() and not left_in(tmp) and not hidden_leftovers(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("pause_at", "signum", "replaced"),
    [
        ("call:coremltools.models.utils.make_pipeline", signal.SIGINT, False),  # mid-conversion
        ("call:coremltools.models.MLModel.save", signal.SIGTERM, False),  # the new package staged beside the old
        ("rename:front.mlpackage", signal.SIGINT, True),  # the swap: deferred, completed, then interrupted
    ],
    ids=["mid-conversion", "mid-save", "mid-swap"],
)
def test_coreml_interrupted_leaves_no_package_behind(pause_at, signum, replaced, tmp, tmp_path):
    pytest.importorskip("coremltools")
    out = tmp_path / "out" / "front.mlpackage"
    out.mkdir(parents=True)
    (out / "previous").write_text("the package being replaced")
    code, _, err = interrupt(["coreml", model_path("front"), "-o", out], tmp, pause_at, signum)
    assert_interrupted(code, err, signum)
    assert sorted(p.name for p in out.parent.iterdir()) == ["front.mlpackage"]  # no staging folder beside it
    if replaced:
        assert (out / "Manifest.json").is_file() and not (out / "previous").exists()
    else:
        assert [p.name for p in out.iterdir()] == ["previous"]
    assert not left_in(tmp), left_in(tmp)  # no tmp*.mlpackage from coremltools


# ------------------------------------------------------------------------------------ the mechanism itself


# These two send signals to the process they run in: each runs in a fresh interpreter of its own, so that nothing an
# earlier test of the suite left in this process (native libraries' threads and handlers) stands between the signal
# and the handler under test. In the full suite, in this process, the SIGTERM of the first one once ended pytest with
# a segmentation fault that neither test alone nor this file alone shows (not explained yet: see the notes).
_SIGNAL_SELF = """
import os, signal, time

def signal_self(signum):
    os.kill(os.getpid(), signum)
    for _ in range(100):  # Python runs the handler between bytecodes of the main thread: give it a few
        time.sleep(0.001)
"""

_FIRST_SIGNAL_RAISES = _SIGNAL_SELF + """
from blazeconv.interrupts import Interrupted, handle_signals

cleaned, caught = [], None
with handle_signals():
    try:
        try:
            signal_self(signal.SIGTERM)
            cleaned.append("not reached")
        finally:
            signal_self(signal.SIGINT)  # ignored: the clean-up goes on
            cleaned.append("cleaned")
    except Interrupted as exc:
        caught = exc
assert cleaned == ["cleaned"], cleaned
assert caught is not None and caught.exit_code == 143 and str(caught) == "interrupted by SIGTERM", caught
assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler before is back
print("ok")
"""

_DEFERRED_HOLDS = _SIGNAL_SELF + """
from blazeconv.interrupts import Interrupted, deferred, handle_signals

steps, caught = [], None
with handle_signals():
    try:
        with deferred():
            signal_self(signal.SIGINT)
            steps.append("the block finished")
    except Interrupted as exc:
        caught = exc
assert steps == ["the block finished"] and caught is not None and caught.exit_code == 130, (steps, caught)
try:  # used as a library: Python's own SIGINT, deferred the same way
    with deferred():
        signal_self(signal.SIGINT)
        steps.append("finished again")
    raise AssertionError("no KeyboardInterrupt")
except KeyboardInterrupt:
    pass
assert steps[-1] == "finished again", steps
print("ok")
"""


@pytest.mark.parametrize("script", [_FIRST_SIGNAL_RAISES, _DEFERRED_HOLDS], ids=["first-signal", "deferred"])
def test_the_signal_mechanism(script):
    """The first signal raises and later ones never cut the clean-up short; ``deferred`` holds a signal until its
    block ends (also as a library, with Python's own SIGINT)."""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_mid_video_leaves_no_half_annotation_and_resume_finishes_it(signum, tmp, tmp_path, run_cli):
    pytest.importorskip("av")
    clip = DATA / "videos" / "asl_again.mkv"
    jsonl, annotated = tmp_path / "v.jsonl", tmp_path / "annotated"
    args = ["detect", clip, "--jsonl", jsonl, "--annotate", annotated, "--batch-size", "4"]
    # Stopped while the annotation of the twentieth frame is being encoded.
    code, _, err = interrupt(args, tmp, "call:blazeconv.detection.video_annotation.VideoAnnotation.add#20", signum)
    lines = jsonl_records(jsonl)
    assert_interrupted(code, err, signum, f"0 of 1 inputs done; their results are in {jsonl}")
    assert 0 < len(lines) < 77 and [r["frame"] for r in lines] == list(range(len(lines)))
    assert list(annotated.rglob("*")) == []  # no half video, no temporary file
    assert not left_in(tmp) and not hidden_leftovers(tmp_path)
    code, _, err = run_cli(*args, "--resume")
    assert code == 0, err
    assert [r["frame"] for r in jsonl_records(jsonl)] == list(range(77))
    import av

    with av.open(str(annotated / "asl_again.mp4")) as video:
        assert sum(1 for _ in video.decode(video=0)) == 77


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_mid_blur_leaves_no_output_and_no_temporary_file(signum, tmp, tmp_path):
    pytest.importorskip("av")
    out = tmp_path / "out"
    out.mkdir()
    args = ["blur", DATA / "videos" / "asl_again.mkv", "-o", out / "blurred.mp4", "--no-tile"]
    code, _, err = interrupt(args, tmp, "call:blazeconv.detection.video_annotation.VideoAnnotation.add#30", signum)
    assert_interrupted(code, err, signum)
    assert list(out.iterdir()) == []  # no half video, no temporary file
    assert not left_in(tmp) and not hidden_leftovers(tmp_path)
