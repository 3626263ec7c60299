"""Process-wide tuning (``blazeconv.tuning``): each setting applied while its entry point runs, and put back after.

Pillow's block cache under ``stream_files`` is covered in ``test_photos.py``, torch's thread count under
``detect_files`` and ``FaceDetector`` in ``test_detector.py``; here the switch interval under ``stream_video``, the
sharing of a setting by overlapping holders, and what each helper does alone.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import DATA, REPO

from blazeconv import tuning
from blazeconv.variants import VARIANTS


class _NoFaces:
    """A runner that finds nothing, without torch."""

    uses_torch = False
    variant = VARIANTS["short_range"]

    def run(self, batch):
        anchors = self.variant.num_anchors
        return np.zeros((len(batch), anchors, 16), np.float32), np.full((len(batch), anchors, 1), -10, np.float32)


def microseconds() -> int:
    """Python's switch interval in microseconds, the unit Python stores it in (it reads back as 0.00019999...)."""
    return round(sys.getswitchinterval() * 1e6)


VIDEO = round(tuning.VIDEO_SWITCH_INTERVAL * 1e6)


@pytest.fixture
def switch_interval():
    """Python's switch interval (in microseconds), set to its default for the test and put back after."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    yield 5000
    sys.setswitchinterval(before)


def test_a_streaming_video_lowers_the_switch_interval_and_puts_it_back(switch_interval):
    pytest.importorskip("av")
    from blazeconv.detection.video import Sampling, stream_video

    clip = DATA / "videos" / "asl_again.mkv"
    seen = [microseconds() for _ in stream_video(_NoFaces(), clip, sampling=Sampling(every=20))]
    assert len(seen) == 4 and seen == [VIDEO] * 4
    assert microseconds() == switch_interval
    stream = stream_video(_NoFaces(), clip)
    next(stream)
    stream.close()  # a loop left early
    assert microseconds() == switch_interval


def test_a_setting_held_by_overlapping_streams_is_put_back_by_the_last(switch_interval):
    first, second = tuning.video_switch_interval(), tuning.video_switch_interval(0.001)
    first.__enter__()
    second.__enter__()  # the setting is the first holder's
    assert microseconds() == VIDEO
    first.__exit__(None, None, None)  # not the last: still held
    assert microseconds() == VIDEO
    second.__exit__(None, None, None)
    assert microseconds() == switch_interval
    sys.setswitchinterval(0.0001)  # a caller's lower interval is left as it is, and kept after
    with tuning.video_switch_interval():
        assert microseconds() == 100
    assert microseconds() == 100


@pytest.mark.parametrize(("uses_torch", "expected"), [(True, 3), (False, None), ("absent", None)])
def test_only_a_torch_runner_gets_torch_threads(uses_torch, expected):
    runner = type("Runner", (), {} if uses_torch == "absent" else {"uses_torch": uses_torch})()
    assert tuning.torch_thread_count(runner, 3) == expected
    assert tuning.runs_on_torch(runner) is (expected is not None)


def test_freed_memory_goes_back_only_after_a_big_decode(monkeypatch):
    calls = []
    monkeypatch.setattr(tuning, "_malloc_trim", lambda: calls.append)
    tuning.release_after_decoding(tuning.TRIM_ABOVE_BYTES)
    assert calls == []
    tuning.release_after_decoding(tuning.TRIM_ABOVE_BYTES + 1)
    assert calls == [0]


@pytest.mark.skipif(not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"), reason="glibc only")
def test_malloc_keeps_freed_memory_on_glibc():
    assert tuning.keep_freed_memory() is True


def test_importing_the_ground_floor_modules_loads_nothing_heavy():
    script = textwrap.dedent("""
        import sys
        import blazeconv.marks, blazeconv.tuning
        heavy = sorted({"torch", "PIL", "av", "numpy"} & {name.split(".")[0] for name in sys.modules})
        print(heavy)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr + result.stdout
