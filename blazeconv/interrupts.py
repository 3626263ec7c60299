"""SIGINT and SIGTERM as one clean exception, and the few moments that must not be cut short.

Under ``handle_signals()`` (the CLI's ``main``) the first SIGINT or SIGTERM raises ``Interrupted`` in the main
thread wherever it is, so ``finally`` blocks and context managers run: temporary files are removed and the
artifact being replaced stays as it was. The CLI then prints one ``Error: interrupted ...`` line and exits with
128 + the signal number (130 for SIGINT, 143 for SIGTERM), as shells report a process killed by that signal.
Signals that follow the first are ignored, so they cannot interrupt the clean-up.

Two kinds of moment must not be interrupted, and ``deferred()`` only records a signal that arrives during them,
raising it when the outermost deferred block ends:

* the first import of a package with compiled extensions: an exception raised while torch's pybind11 modules
  initialise aborts the interpreter (``terminate called after throwing an instance of
  'pybind11::error_already_set'``, exit 134). ``guard_imports()`` defers every first import of the packages
  in ``HEAVY_PACKAGES``, wherever in the program it happens.
* a step made of two operations that must both happen, such as moving an old Core ML package aside and the new
  one into its place.

``Interrupted`` derives from ``BaseException`` (as ``KeyboardInterrupt`` does), so ``except Exception`` in a
library cannot swallow it, and not from ``KeyboardInterrupt``, which click turns into a bare ``Aborted.``.
"""

from __future__ import annotations

import atexit
import builtins
import contextlib
import importlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Top-level packages whose first import runs native initialisation code (pybind11, C++ static constructors).
HEAVY_PACKAGES = frozenset({
    "torch", "torchvision", "coremltools", "onnx", "onnxruntime", "onnxscript", "openvino", "ray", "cv2",
    "ai_edge_litert", "numpy", "PIL", "scipy", "pyarrow", "pandas", "tflite", "flatbuffers", "executorch",
})


class Interrupted(BaseException):
    """A SIGINT or SIGTERM. ``exit_code``: 128 + the signal number; ``detail``: what was done, for the message."""

    def __init__(self, signum: int, detail: str = ""):
        super().__init__(signum)
        self.signum = signum
        self.detail = detail

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    def __str__(self) -> str:
        return f"interrupted by {self.signal_name}" + (f": {self.detail}" if self.detail else "")


class _State:
    """Main-thread bookkeeping of the handler: installed, already raised once, a signal waiting, nesting depth."""

    def __init__(self) -> None:
        self.installed = False
        self.raised = False
        self.pending: int | None = None
        self.depth = 0


_state = _State()


def _handler(signum: int, frame) -> None:
    if _state.raised:  # the first signal is being handled: let the clean-up finish
        return
    if _state.depth > 0:
        if _state.pending is None:
            _state.pending = signum
        return
    _state.raised = True
    raise Interrupted(signum)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _exit_now(signum: int, frame) -> None:
    """After the command: the process is exiting (threads joined, files closed); a signal ends it at once."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(Exception):
        os.write(2, f"Error: interrupted by {signal.Signals(signum).name} while exiting\n".encode())
    os._exit(128 + signum)


@contextlib.contextmanager
def handle_signals(final: bool = False) -> Iterator[None]:
    """Within: the first SIGINT or SIGTERM raises ``Interrupted`` (main thread only); handlers restored after.

    ``final`` (the process's entry point): afterwards, while the interpreter shuts down, a signal writes its line and
    ends the process with 128 + its number at once, instead of Python's ``KeyboardInterrupt`` during shutdown; after
    the last exit handler (Python then resets its handlers to the defaults, which would kill the process silently)
    signals are ignored for the few milliseconds left.
    """
    if not _in_main_thread():
        yield
        return
    if final:  # registered first, so it runs last
        atexit.register(lambda: [signal.signal(signum, signal.SIG_IGN) for signum in SIGNALS])
    previous = {signum: signal.signal(signum, _handler) for signum in SIGNALS}
    outer = (_state.installed, _state.raised, _state.pending, _state.depth)
    _state.installed, _state.raised, _state.pending, _state.depth = True, False, None, 0
    try:
        yield
    finally:
        raised, _state.raised = _state.raised, True  # a signal from here on is not raised any more
        for signum, handler in previous.items():
            signal.signal(signum, _exit_now if final else handler)
        _state.installed, _state.raised, _state.pending, _state.depth = outer
        _state.raised = _state.raised or raised  # an enclosing handle_signals does not raise a second time


def reclaim() -> None:
    """Put the handlers of ``handle_signals`` back after a library replaced them: ``ray.init`` installs a SIGTERM
    handler that exits with status 15 and no message, skipping the ``Error:`` line and exit code 143."""
    if _state.installed and _in_main_thread():
        for signum in SIGNALS:
            signal.signal(signum, _handler)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Within: a SIGINT or SIGTERM is recorded, then raised when the outermost deferred block ends.

    Under ``handle_signals`` that is ``Interrupted``. Without it (blazeconv used as a library) a SIGINT with
    Python's default handler is deferred the same way and raised as ``KeyboardInterrupt``. Other threads: no effect
    (Python runs signal handlers in the main thread only).
    """
    if not _in_main_thread():
        yield
        return
    temporary = {}
    if not _state.installed and _state.depth == 0:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            temporary[signal.SIGINT] = signal.signal(signal.SIGINT, _handler)
            _state.raised, _state.pending = False, None
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
        if _state.depth == 0:
            for signum, handler in temporary.items():
                signal.signal(signum, handler)
            pending, _state.pending = _state.pending, None
            if pending is not None and not _state.raised:
                if _state.installed:
                    _state.raised = True
                    raise Interrupted(pending)
                raise KeyboardInterrupt


@contextlib.contextmanager
def guard_imports() -> Iterator[None]:
    """Within: the first import of any module of ``HEAVY_PACKAGES`` runs ``deferred()`` (see the module notes)."""
    original_import = builtins.__import__
    original_import_module = importlib.import_module

    def needs_guard(name: str) -> bool:
        return name.partition(".")[0] in HEAVY_PACKAGES and name not in sys.modules

    def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0 and needs_guard(name):
            with deferred():
                return original_import(name, globals, locals, fromlist, level)
        return original_import(name, globals, locals, fromlist, level)

    def guarded_import_module(name, package=None):
        if not name.startswith(".") and needs_guard(name):
            with deferred():
                return original_import_module(name, package)
        return original_import_module(name, package)

    builtins.__import__ = guarded_import
    importlib.import_module = guarded_import_module
    try:
        yield
    finally:
        builtins.__import__ = original_import
        importlib.import_module = original_import_module
