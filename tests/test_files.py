"""Outputs as a Unix tool treats them (devices and FIFOs written through, symlinks followed), and one writer per
JSONL file whose first line records the settings its results were made with."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import DATA, assert_one_line_error, jsonl_records

IMAGES = DATA / "images"
PHOTO = IMAGES / "1face.png"


def _null_device(folder):
    """A character device like /dev/null (major 1, minor 3), made in ``folder``: never the system's."""
    node = folder / "null"
    try:
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("mknod needs root")
    return node


@pytest.mark.parametrize("option", ["--json", "--jsonl"])
def test_a_device_is_written_through_not_replaced(option, tmp_path, run_cli):
    node = _null_device(tmp_path)
    code, _, err = run_cli("detect", PHOTO, option, node, "--quiet")
    assert code == 0, err
    assert stat.S_ISCHR(os.stat(node).st_mode)  # still the device
    assert os.listdir(tmp_path) == ["null"]  # nothing left beside it


def test_a_full_device_is_one_error_line(tmp_path, run_cli):
    full = tmp_path / "full"
    try:
        os.mknod(full, 0o666 | stat.S_IFCHR, os.makedev(1, 7))  # like /dev/full: every write fails with ENOSPC
    except PermissionError:
        pytest.skip("mknod needs root")
    code, _, err = run_cli("detect", PHOTO, "--json", full, "--quiet")
    assert_one_line_error(code, err, full, 1)
    assert stat.S_ISCHR(os.stat(full).st_mode)


@pytest.mark.parametrize("option", ["--json", "--jsonl"])
def test_a_fifo_read_by_another_process_gets_the_output(option, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE, text=True)
    done = subprocess.run([sys.executable, "-m", "blazeconv", "detect", str(PHOTO), option, str(fifo), "--quiet"],
                          capture_output=True, text=True, timeout=120)
    received = reader.communicate(timeout=60)[0]
    assert done.returncode == 0, done.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    records = [json.loads(line) for line in received.splitlines()] if option == "--jsonl" else \
        json.loads(received)["images"]
    assert [r["path"] for r in records] == [str(PHOTO)]  # a pipe gets the records alone, no settings line


def test_resuming_a_fifo_is_refused(tmp_path, run_cli):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    code, _, err = run_cli("detect", PHOTO, "--jsonl", fifo, "--resume")
    assert_one_line_error(code, err, fifo, 2)
    assert "not a regular file" in err


@pytest.mark.parametrize("command", ["json", "tflite2torch"])
def test_a_symlink_is_followed_and_its_target_written(command, tmp_path, run_cli):
    target = tmp_path / "real" / ("out.json" if command == "json" else "out.pth")
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / ("link.json" if command == "json" else "link.pth")
    link.symlink_to(target)
    args = ["detect", PHOTO, "--json", link] if command == "json" else ["tflite2torch", "short_range", "-o", link]
    code, _, err = run_cli(*args)
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() != b"old" and not [p for p in target.parent.iterdir() if p.name != target.name]


def test_dash_is_stdout(run_cli):
    code, out, _ = run_cli("detect", PHOTO, "--jsonl", "-")
    assert code == 0 and [json.loads(line)["path"] for line in out.splitlines()] == [str(PHOTO)]


# -------------------------------------------------------------------------------------- one writer


@pytest.fixture
def folder(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for copy in range(120):  # enough work that a second run starts while the first still writes
        for image in sorted(IMAGES.glob("*.png")):
            (photos / f"{copy:03d}_{image.name}").symlink_to(image)
    return photos


def _detect(*args, cwd=None):
    """``blazeconv detect ARGS`` on MediaPipe's short range at one scale: these runs are about files, kept short."""
    return [sys.executable, "-m", "blazeconv", "detect", *map(str, args), "--model", "short_range", "--exact"]


@pytest.mark.slow
def test_a_second_run_on_the_same_jsonl_is_refused_while_the_first_writes(folder, tmp_path):
    out = tmp_path / "faces.jsonl"
    first = subprocess.Popen(_detect(folder, "--jsonl", out, "--resume", "--quiet", "--backend", "torch"),
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out.is_file() and out.read_text().count("\n") >= 2) and time.monotonic() < deadline:
        assert first.poll() is None, first.stderr.read()
        time.sleep(0.05)
    second = subprocess.run(_detect(folder, "--jsonl", out, "--resume", "--quiet"), capture_output=True, text=True,
                            timeout=120)
    first_err = first.communicate(timeout=300)[1]
    assert first.returncode == 0, first_err
    assert second.returncode == 2 and "another run is writing this file" in second.stderr, second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    paths = [r["path"] for r in jsonl_records(out)]
    assert sorted(paths) == sorted(str(p) for p in folder.iterdir())  # exactly one line per image


@pytest.mark.slow
def test_runs_started_together_write_each_image_once(folder, tmp_path):
    out = tmp_path / "faces.jsonl"
    results = []

    def run():
        results.append(subprocess.run(_detect(folder, "--jsonl", out, "--resume", "--quiet"), capture_output=True,
                                      text=True, timeout=300))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.returncode for r in results) in ([0, 0], [0, 2]), [r.stderr for r in results]
    paths = [r["path"] for r in jsonl_records(out)]
    assert sorted(paths) == sorted(str(p) for p in folder.iterdir())


def test_resume_with_other_settings_is_refused_naming_them(tmp_path, run_cli):
    out = tmp_path / "faces.jsonl"
    assert run_cli("detect", PHOTO, "--jsonl", out)[0] == 0
    settings = json.loads(out.read_text().splitlines()[0])["blazeconv_settings"]
    assert settings["model"] == "full_range_sparse" and settings["min_score"] == 0.6 and "blazeconv" in settings
    assert settings["exact"] is False and settings["scales"] == {"min_face": None, "tile_size": None, "overlap": None}
    code, _, err = run_cli("detect", PHOTO, IMAGES / "3faces.png", "--jsonl", out, "--resume", "--model",
                           "short_range", "--min-score", "0.7")
    assert_one_line_error(code, err, out, 2)
    assert "model 'full_range_sparse' in the file, 'short_range' now" in err and "min_score 0.6" in err
    code, _, err = run_cli("detect", PHOTO, "--jsonl", out, "--resume", "--min-face", "30")
    assert code == 2 and "scales" in err  # other scales, other results: refused
    assert len(jsonl_records(out)) == 1


def test_resume_matches_inputs_by_resolved_path(tmp_path, run_cli, monkeypatch):
    photos = tmp_path / "photos"
    shutil.copytree(IMAGES, photos)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "faces.jsonl"
    assert run_cli("detect", "photos", "--jsonl", out, "--quiet")[0] == 0
    before = out.read_text()
    code, _, err = run_cli("detect", photos.resolve(), "--jsonl", out, "--resume", "--quiet")
    assert code == 0, err
    assert out.read_text() == before and "already done" in err


def test_a_file_from_before_the_settings_record_resumes_with_a_notice(tmp_path, run_cli):
    out = tmp_path / "faces.jsonl"
    assert run_cli("detect", PHOTO, "--jsonl", out)[0] == 0
    old = "".join(out.read_text().splitlines(keepends=True)[1:])  # as an older blazeconv wrote it
    out.write_text(old)
    code, _, err = run_cli("detect", PHOTO, IMAGES / "3faces.png", "--jsonl", out, "--resume", "--quiet")
    assert code == 0, err
    assert "records no settings" in err
    assert [r["path"] for r in jsonl_records(out)] == [str(PHOTO), str(IMAGES / "3faces.png")]


# ------------------------------------------------------------------------------------------- folders


def test_folders_recursive_hidden_files_and_broken_links(tmp_path, run_cli):
    library = tmp_path / "library"
    (library / "2023").mkdir(parents=True)
    shutil.copyfile(PHOTO, library / "2023" / "a.png")
    code, _, err = run_cli("detect", library)
    assert code == 2 and "holds images or videos only in subfolders: add --recursive" in err
    (library / "2023" / "._a.png").write_bytes(b"\0\0macOS resource fork")  # hidden: skipped
    (library / "2023" / ".thumbs").mkdir()
    shutil.copyfile(PHOTO, library / "2023" / ".thumbs" / "t.png")  # a hidden folder: skipped
    (library / "2023" / "gone.png").symlink_to(tmp_path / "nowhere.png")  # broken: reported
    out = tmp_path / "faces.json"
    code, _, err = run_cli("detect", library, "--recursive", "--json", out, "--quiet")
    document = json.loads(out.read_text())
    assert [Path(r["path"]).name for r in document["images"]] == ["a.png"]
    assert code == 6 and document["errors"] == [f"{library / '2023' / 'gone.png'}: a broken symbolic link (to "
                                                f"{tmp_path / 'nowhere.png'})"]
