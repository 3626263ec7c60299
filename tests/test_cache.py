"""The cache of converted weights and ONNX exports heals itself, never stops a run, and can be shown and emptied.

The shipped models' ONNX networks travel in the package, so the default run (ONNX Runtime) writes nothing here; the
torch backend's converted weights show the cache at work."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import DATA

PHOTO = DATA / "images" / "1face.png"


def _detect(env_cache, *args, tmp=None):
    env = {**os.environ, "BLAZECONV_CACHE": str(env_cache)}
    if tmp is not None:
        env["TMPDIR"] = str(tmp)
    return subprocess.run([sys.executable, "-m", "blazeconv", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env)


@pytest.mark.slow
def test_first_use_says_so_once_and_a_damaged_entry_is_rebuilt(tmp_path):
    cache = tmp_path / "cache"
    first = _detect(cache, "detect", PHOTO, "--quiet", "--backend", "torch")
    assert first.returncode == 0, first.stderr
    assert "blazeconv: preparing full_range_sparse for first use" in first.stderr  # the default model
    again = _detect(cache, "detect", PHOTO, "--quiet", "--backend", "torch")
    assert again.returncode == 0 and "preparing" not in again.stderr
    entry = next(p for p in cache.iterdir() if p.suffix == ".pth")
    entry.write_bytes(entry.read_bytes()[:1000])  # a disk that filled up, a copy cut short
    healed = _detect(cache, "detect", PHOTO, "--json", "-", "--backend", "torch")
    assert healed.returncode == 0, healed.stderr
    assert f"the cache entry {entry} is truncated or altered" in healed.stderr and "rebuilding it" in healed.stderr
    assert healed.stdout == _detect(cache, "detect", PHOTO, "--json", "-", "--backend", "torch").stdout


def test_the_default_run_uses_the_packaged_network_and_caches_nothing(tmp_path):
    cache = tmp_path / "cache"
    done = _detect(cache, "detect", PHOTO, "--quiet")
    assert done.returncode == 0, done.stderr
    assert "preparing" not in done.stderr and not cache.exists()


def test_a_cache_that_cannot_be_made_is_a_notice_not_a_failure(tmp_path):
    deeper = tmp_path / "new" / "deeper" / "cache"  # BLAZECONV_CACHE's parents are not created
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    done = _detect(deeper, "detect", PHOTO, "--backend", "torch", "--quiet", tmp=scratch)
    assert done.returncode == 0, done.stderr
    assert "cannot be created or written" in done.stderr and "for this run only" in done.stderr
    assert not (tmp_path / "new").exists() and not list(scratch.iterdir())  # the temporary folder went with the run


@pytest.mark.slow
def test_cache_shows_and_clear_empties_only_blazeconvs_entries(tmp_path):
    cache = tmp_path / "cache"
    assert _detect(cache, "detect", PHOTO, "--quiet", "--backend", "torch").returncode == 0
    (cache / "notes.txt").write_text("mine")
    shown = _detect(cache, "cache")
    assert shown.returncode == 0 and str(cache) in shown.stdout and "full_range_sparse-" in shown.stdout
    assert "1 entry" in shown.stdout
    cleared = _detect(cache, "cache", "clear")
    assert cleared.returncode == 0 and "removed 2 file(s)" in cleared.stderr
    assert [p.name for p in cache.iterdir()] == ["notes.txt"]
