"""The ``blazeconv`` command line: parses arguments, calls one stage, prints a summary. Nothing else.

One module per command group (``convert``: tflite2torch, anchors; ``export``: coreml, onnx, verify; ``detect``; ``blur``; ``eval``;
``cache``; ``bench``; ``train``), options they share in ``base``; here the entry point that turns every failure into one ``Error:``
line and a documented exit code.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import traceback

import click

from ..errors import BlazeconvError
from . import bench, blur, cache, convert, detect, eval, export, train  # noqa: F401 (each registers its commands)
from .base import cli

INTERNAL_ERROR_EXIT = 70


_MAX_MESSAGE = 2000  # characters of an error line; a hostile file can put megabytes into a tensor name


def _one_line(message: object) -> str:
    """A message as one printable line of bounded length.

    A value's repr (a numpy array, say) may bring newlines, a file's strings control characters; overlong
    messages keep their start (the file) and end (the verdict).
    """
    text = re.sub(r"\s*\n\s*", " ", str(message).strip())
    if not text.isprintable():
        text = "".join(c if c.isprintable() else "?" for c in text)
    if len(text) > _MAX_MESSAGE:
        text = f"{text[:_MAX_MESSAGE // 2]} [...] {text[-_MAX_MESSAGE // 2:]}"
    return text


def _os_error_message(exc: OSError) -> str:
    """``FILE: reason`` for an operating-system error the user can fix (permissions, full disk, ...)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{exc.filename}: {reason}" if exc.filename else reason



# Schemes of files on a network: a path argument written like this is a URL, which blazeconv does not download.
_URL = re.compile(r"^(?:https?|ftps?|s3|gs|file)://", re.IGNORECASE)


def _debug_first(args: list[str]) -> list[str]:
    """``--debug`` is accepted anywhere before ``--``: moved in front of the subcommand, where click expects it."""
    end = args.index("--") if "--" in args else len(args)
    if "--debug" not in args[:end]:
        return args
    return ["--debug"] + [a for a in args[:end] if a != "--debug"] + args[end:]


def _refuse_urls(args: list[str]) -> None:
    from ..io import PathUsageError

    for arg in args:
        value = arg.split("=", 1)[1] if arg.startswith("--") and "=" in arg else arg
        if _URL.match(value):
            raise PathUsageError(f"{value}: URLs are not read; download the file first and give its path")


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the CLI and turns every failure into one ``Error:`` line and a documented exit code.

    Exit codes: a ``BlazeconvError``'s own (2 paths that cannot be used together, 3 model file, 4 unsupported
    model, 5 weights, 6 image, 7 options, 8 missing optional dependency, 1 an output that cannot be written or
    another failure), 2 usage (click), 1 an operating-system error outside those (named with its file), 130 / 143
    interrupted by SIGINT / SIGTERM, 70 anything else: a bug, reported as an internal error. ``--debug`` adds the
    traceback.

    SIGINT and SIGTERM raise ``Interrupted`` from the moment the CLI starts (``blazeconv.interrupts``): clean-up
    code runs, temporary files go, and the first import of torch and other native packages is never cut short.
    """
    from ..interrupts import Interrupted, guard_imports, handle_signals

    args = _debug_first(list(sys.argv[1:] if argv is None else argv))
    debug = bool(args) and args[0] == "--debug"
    with handle_signals(), guard_imports():
        try:
            code = _run(args, debug)
        except Interrupted as exc:
            if debug:
                traceback.print_exc()
            click.echo(f"Error: {_one_line(exc)}", err=True)
            code = exc.exit_code
    sys.exit(code)


def _run(args: list[str], debug: bool) -> int:
    """Run the CLI on ``args``; print the one error line of a failure; return the exit code."""
    try:
        _refuse_urls(args)
        cli.main(args=args, prog_name="blazeconv", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort as exc:
        if isinstance(exc.__context__, KeyboardInterrupt):  # a SIGINT under another handler than ours
            click.echo("Error: interrupted by SIGINT", err=True)
            return 130
        click.echo("Aborted.", err=True)
        return 1
    except BlazeconvError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"Error: {_one_line(exc)}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("Error: interrupted by SIGINT", err=True)
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (``--json - | head``): nothing more to say to it, and stop Python
        # from complaining about the failed flush at exit.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:  # the environment, not blazeconv: a file that cannot be read or written
        if debug:
            traceback.print_exc()
        click.echo(f"Error: {_one_line(_os_error_message(exc))}", err=True)
        return 1
    except Exception as exc:  # a bug: say so in one line, keep the traceback for --debug
        if debug:
            traceback.print_exc()
        detail = _one_line(f"{type(exc).__name__}: {exc}")
        click.echo(f"Error: internal error: {detail} (rerun with --debug for the traceback)", err=True)
        return INTERNAL_ERROR_EXIT
    return 0
