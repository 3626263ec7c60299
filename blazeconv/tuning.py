"""Process-wide settings blazeconv changes for speed, in one place: what each one is, why, and how it is undone.

Each setting belongs to the whole process, not to a call, so each is applied by the entry point that needs it for
as long as it runs and put back after; the figures behind each choice are in docs/bench.md (*Design figures*, *The
fast path*, *Big photos*), not here. Nothing heavy is imported at module level: torch and Pillow only inside the
setting that changes them.

* **torch's intra-op threads** (``torch_threads``, ``torch_thread_count``, ``with_torch_threads``): a torch runner
  computes with one thread by default while files or frames stream, since the loader threads already keep the cores
  busy and OpenMP threads spinning beside them slow everything down; the thread count can also change the last bits
  of a convolution's sums, so single images run with the same count and give ``detect``'s numbers. The caller's own
  count is back whenever the caller's code runs. Only a runner that computes with torch (``Runner.uses_torch``)
  gets it: with any other, torch is not even imported. A Ray actor, a process of its own, sets it for good
  (``dedicate_torch_threads``).
* **Python's thread switch interval** (``video_switch_interval``, ``with_video_switch_interval``): while a video streams, at most
  ``VIDEO_SWITCH_INTERVAL`` instead of Python's 5 ms. PyAV takes and releases the GIL many times per frame; at the
  default interval the decoding thread waits that long whenever the model's thread holds the GIL, and the two run
  one after the other.
* **Pillow's block cache** (``reused_decode_memory``): while a stream of files decodes, Pillow keeps
  ``REUSED_BLOCKS`` freed 16 MB blocks for the next image (its default keeps none), or every photo's pixels are
  mapped afresh and the kernel's page faults cost as much as the decoding.
* **glibc's free memory after a big decode** (``release_after_decoding``): Pillow's blocks freed by a loader thread
  stay in that thread's malloc arena; after decoding more than ``TRIM_ABOVE_BYTES`` they are handed back
  (``malloc_trim``), or every loader thread would keep the memory of the biggest photo it decoded.
* **glibc's malloc thresholds** (``keep_freed_memory``, applied by the first ``fast.FastModel``): large blocks come
  from the heap and the heap is kept, so a forward pass reuses the pages the previous one touched instead of
  faulting in a fresh ``mmap`` for every activation above 128 KiB. glibc cannot tell what its thresholds were
  (``mallopt`` only sets them, and setting them turns its dynamic threshold off for good), so this one cannot be
  put back: it stays for the rest of the process, at the cost of keeping up to 1 GiB of freed memory.

Settings held by several streams at once (threads, nested streams) are applied by the first and put back by the
last (``_SharedSetting``); torch's thread count is saved and put back around each stretch of computing.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import sys
import threading
from collections.abc import Callable, Iterator

# While a video streams, Python's thread switch interval is at most this (seconds; Python's default is 0.005).
VIDEO_SWITCH_INTERVAL = 0.0002
# Pillow's freed 16 MB blocks kept for the next image while a stream of files decodes.
REUSED_BLOCKS = 16
# After decoding more than this many bytes of pixels, glibc's freed memory is handed back to the system.
TRIM_ABOVE_BYTES = 32 * 1024 * 1024
_MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit
_TRIM_THRESHOLD_BYTES = 1 << 30


class _SharedSetting:
    """A process-wide setting held by any number of users at once: the first to enter applies it, the last to leave
    puts back what it was before the first (if it changed)."""

    def __init__(self, read: Callable[[], object], write: Callable[[object], None]):
        self._read, self._write = read, write
        self._lock = threading.Lock()
        self._holders = 0
        self._before: object = None

    @contextlib.contextmanager
    def held(self, choose: Callable[[object], object]) -> Iterator[None]:
        """Within: the setting is ``choose(value before)``, chosen by the first holder."""
        with self._lock:
            if self._holders == 0:
                self._before = self._read()
                wanted = choose(self._before)
                if wanted != self._before:
                    self._write(wanted)
            self._holders += 1
        try:
            yield
        finally:
            with self._lock:
                self._holders -= 1
                if self._holders == 0 and self._read() != self._before:
                    self._write(self._before)


# ------------------------------------------------------------------------------------------ torch threads


def runs_on_torch(runner) -> bool:
    """True when ``runner`` computes with torch (``Runner.uses_torch``)."""
    return bool(getattr(runner, "uses_torch", False))


def torch_thread_count(runner, count: int | None) -> int | None:
    """The intra-op thread count to give torch while ``runner`` computes: ``count`` for a torch runner, None (leave
    torch alone, do not import it) for any other."""
    return count if runs_on_torch(runner) else None


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Context: torch's intra-op thread count is ``count`` inside (None: untouched, torch not imported), what it was
    before outside."""
    if count is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    if before != count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if before != count:
            torch.set_num_threads(before)


def with_torch_threads(stream: Iterator, count: int | None) -> Iterator:
    """Yield ``stream``'s items; torch has ``count`` threads while ``stream`` computes, the caller's own between
    items and after (``torch_threads``). Closing this closes ``stream``."""
    try:
        while True:
            with torch_threads(count):
                try:
                    item = next(stream)
                except StopIteration:
                    return
            yield item
    finally:
        stream.close()


def dedicate_torch_threads(runner, count: int) -> None:
    """For a process that exists to run ``runner`` (a Ray actor): torch's thread count set to ``count`` for good,
    when ``runner`` computes with torch."""
    if runs_on_torch(runner):
        import torch

        torch.set_num_threads(count)


# ---------------------------------------------------------------------------------------- switch interval


_switch_interval = _SharedSetting(sys.getswitchinterval, sys.setswitchinterval)


def video_switch_interval(seconds: float = VIDEO_SWITCH_INTERVAL):
    """Context, while a video streams: Python's thread switch interval is at most ``seconds``; what it was after the
    last stream inside one ends."""
    return _switch_interval.held(lambda before: min(before, seconds))


def with_video_switch_interval(stream: Iterator, seconds: float = VIDEO_SWITCH_INTERVAL) -> Iterator:
    """Yield ``stream``'s items (a video's, decoded on a thread of its own) within ``video_switch_interval``: from
    the first item asked for until ``stream`` ends or this is closed (which closes ``stream`` first)."""
    with video_switch_interval(seconds):
        yield from stream


# ---------------------------------------------------------------------------------------- Pillow and glibc


def _blocks_max() -> int:
    from PIL import Image

    return Image.core.get_blocks_max()


def _set_blocks_max(blocks: int) -> None:
    from PIL import Image

    Image.core.set_blocks_max(blocks)  # frees the cached blocks above it


_pillow_blocks = _SharedSetting(_blocks_max, _set_blocks_max)


def reused_decode_memory(blocks: int = REUSED_BLOCKS):
    """Context, while a stream of files decodes: Pillow keeps up to ``blocks`` freed memory blocks for reuse (at
    least: a larger setting is left alone; process-wide, as Pillow's ``PILLOW_BLOCKS_MAX``); after the last such
    block in the process, the setting it had, and the blocks above it freed."""
    return _pillow_blocks.held(lambda before: max(before, blocks))


@functools.cache
def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc
    except (OSError, AttributeError):
        return None


def release_after_decoding(decoded: int) -> None:
    """After a decode of ``decoded`` bytes of pixels, freed: when more than ``TRIM_ABOVE_BYTES``, glibc hands the
    calling thread's freed memory back to the system (nothing off glibc)."""
    if decoded > TRIM_ABOVE_BYTES:
        trim = _malloc_trim()
        if trim is not None:
            trim(0)


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc's malloc reuse freed blocks instead of mapping fresh pages for every large tensor (process-wide,
    for the rest of the process: see the module docstring).

    Large blocks come from the heap rather than ``mmap`` (up to 32 MiB, glibc's ceiling) and the heap is not trimmed
    back below 1 GiB, so a forward pass reuses the pages the previous one touched. The process keeps up to that
    much freed memory. Returns whether the setting took (False off Linux/glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
    return bool(mallopt(m_mmap_threshold, _MMAP_THRESHOLD_BYTES)) and bool(mallopt(m_trim_threshold,
                                                                                   _TRIM_THRESHOLD_BYTES))


__all__ = ["REUSED_BLOCKS", "TRIM_ABOVE_BYTES", "VIDEO_SWITCH_INTERVAL", "dedicate_torch_threads", "keep_freed_memory",
           "release_after_decoding", "reused_decode_memory", "runs_on_torch", "torch_thread_count", "torch_threads",
           "video_switch_interval", "with_torch_threads", "with_video_switch_interval"]
