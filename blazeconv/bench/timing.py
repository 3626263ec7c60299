"""Clocks and timing: contenders timed interleaved round by round, a call timed in a loop, and a whole process
measured from outside (wall and CPU seconds, peak resident memory).

Durations are seconds. Clock ``wall`` is ``time.perf_counter``; ``cpu`` the calling thread's CPU time
(``time.thread_time``).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import OptionsError
from .rows import ProcessRow

# Run by path with our interpreter (``-I -S``): see its docstring for why a process of its own starts the command.
LAUNCHER = Path(__file__).with_name("launcher.py")


def _clock(kind: str) -> Callable[[], float]:
    return time.thread_time if kind == "cpu" else time.perf_counter


def time_interleaved(
    contenders: dict[str, Callable[[], object]], rounds: int, warmup: int, clock: str = "wall"
) -> dict[str, float]:
    """Median seconds per call of each contender; every round calls each once, in turn, after ``warmup`` rounds.

    A contender may time itself: when its call returns a float, that is its duration (the MediaPipe worker's own
    measurement, without the round trip to it).
    """
    now = _clock(clock)
    for _ in range(warmup):
        for run in contenders.values():
            run()
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            start = now()
            result = run()
            elapsed = now() - start
            samples[name].append(result if isinstance(result, float) else elapsed)
    return {name: statistics.median(values) for name, values in samples.items()}


def in_a_loop(run: Callable[[], object], calls: int, clock: str = "wall") -> Callable[[], float]:
    """``run`` as a self-timing contender for ``time_interleaved``: each round calls it ``calls`` times in a row and
    reports the mean of all but the first call, which brings its data back into the caches after the others ran
    (as an application calling a detector frame after frame keeps them)."""
    now = _clock(clock)

    def timed() -> float:
        run()
        start = now()
        for _ in range(calls - 1):
            run()
        return (now() - start) / (calls - 1)

    return timed


def run_measured(command: Sequence[str]) -> ProcessRow:
    """Run ``command`` to its end (its output discarded): wall seconds, CPU seconds and peak resident memory of
    the command's process (``ru_maxrss``). A failing command is an ``OptionsError`` with its last error line."""
    with tempfile.TemporaryFile() as errors:
        done = subprocess.run([sys.executable, "-I", "-S", str(LAUNCHER), *map(str, command)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors, text=True)
        seconds, cpu, peak, code = done.stdout.split()
        if done.returncode != 0 or int(code) != 0:
            errors.seek(0)
            tail = errors.read().decode(errors="replace").strip().splitlines()[-1:] or [""]
            raise OptionsError(f"{' '.join(map(str, command[:6]))} ... failed ({code}): {tail[0][:300]}")
    # ru_maxrss: kibibytes on Linux, bytes on macOS.
    peak_mib = int(peak) / (1 << 20 if sys.platform == "darwin" else 1 << 10)
    return ProcessRow("", 0, float(seconds), float(cpu), peak_mib)
