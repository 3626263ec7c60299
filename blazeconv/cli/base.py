"""What every command shares: the ``blazeconv`` group, messages on stderr, progress, option types and decorators,
and the output checks made before any work."""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path

import click

from ..variants import VARIANTS


def say(message: str) -> None:
    """Progress and summaries go to stderr so stdout stays clean for data (``--json -``)."""
    click.echo(message, err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="blazeconv")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logging.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Convert MediaPipe BlazeFace face detectors (TFLite) to PyTorch, Core ML and ONNX, and run them.

    Exit codes: 0 success, 1 other failure, 2 usage, 3 model file, 4 unsupported model, 5 weights,
    6 image, 7 options, 8 missing optional dependency, 70 internal error, 130 / 143 interrupted (SIGINT / SIGTERM).
    """
    ctx.obj = {"debug": debug}
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    notices = logging.getLogger("blazeconv.notice")
    if not notices.handlers:  # errors.notice: one plain line on stderr
        notices.addHandler(_NoticeHandler())
        notices.propagate = False


class _NoticeHandler(logging.Handler):
    """A notice as it is, on whatever stderr is now (the CLI may be run in-process with its streams swapped)."""

    def emit(self, record: logging.LogRecord) -> None:
        say(record.getMessage())


class _PlainProgress:
    """Progress for a stderr that is not a terminal: a line at every tenth of a long run, nothing for short ones."""

    def __init__(self, total: int, label: str):
        self.total, self.label, self.done, self.reported = total, label, 0, 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, count: int) -> None:
        self.done += count
        if self.total >= 100 and self.done * 10 // self.total > self.reported:
            self.reported = self.done * 10 // self.total
            say(f"{self.label}: {self.done}/{self.total}")


def progress(total: int, label: str, plain: bool = False):
    """A progress bar on a terminal (unless ``plain``), sparse progress lines otherwise."""
    if sys.stderr.isatty() and not plain:
        return click.progressbar(length=total, label=label, file=sys.stderr)
    return _PlainProgress(total, label)


def needs_extra(extra: str):
    """Declare the extra a command needs (``errors.EXTRAS``): placed under ``@cli.command()``, it checks before the
    command's body runs (before any work) and, when a package is missing, ends with exit 8 and one line on stderr
    naming the command and ``pip install 'blazeconv[EXTRA]'``. The help still works without the extra.

    \b
        @cli.command()
        @needs_extra("train")
        def train(...): ...
    """
    from ..errors import EXTRAS

    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; known: {', '.join(EXTRAS)}")

    def decorate(f):
        @functools.wraps(f)
        def command(*args, **kwargs):
            from ..errors import require_extra

            require_extra(extra, f"blazeconv {click.get_current_context().info_name}")
            return f(*args, **kwargs)

        command.extra = extra  # what tests/test_install.py reads
        return command

    return decorate


def check_outputs(outputs: list[tuple[str, Path]], inputs: list[tuple[str, Path | None]]) -> None:
    """Before any work: each output's folder exists, and no output is (or links to) an input (exit 2).
    Inputs given as None (an option not used) are left out."""
    from ..io import check_folder, refuse_overwriting

    for _, path in outputs:
        check_folder(path)
    refuse_overwriting(outputs, [(label, path) for label, path in inputs if path is not None])


def thresholds_help() -> str:
    """The variants' own score thresholds, for help texts."""
    return ", ".join(f"{v.name} {v.min_score:g}" for v in VARIANTS.values())


class _Fraction(click.ParamType):
    """A threshold from 0 to 1. NaN, anything outside and non-numbers are options errors (exit 7), one line."""

    name = "0..1"

    def convert(self, value, param, ctx):
        from ..errors import OptionsError

        option = param.opts[0] if param is not None and param.opts else "value"
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise OptionsError(f"{option} {value}: not a number (expected one from 0 to 1)") from None
        if not 0.0 <= number <= 1.0:  # false for NaN as well
            raise OptionsError(f"{option} {value}: expected a number from 0 to 1")
        return number


FRACTION = _Fraction()


class _EveryOrAuto(click.ParamType):
    """A spacing in frames, a whole number >= 1, or ``auto`` (the library chooses). Anything else: exit 2."""

    name = "K|auto"

    def convert(self, value, param, ctx):
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = 0
        if number < 1:
            self.fail(f"{value!r} is neither a whole number >= 1 nor 'auto'", param, ctx)
        return number


EVERY_OR_AUTO = _EveryOrAuto()


class _VariantName(click.ParamType):
    """A shipped model's name; anything else is the options error every command gives (exit 7), with the names and
    a suggestion for a near miss (``variants.get_variant``)."""

    name = "variant"

    def get_metavar(self, param, ctx=None) -> str:
        return "[" + "|".join(VARIANTS) + "]"

    def convert(self, value, param, ctx):
        from ..variants import get_variant

        return get_variant(value).name


VARIANT = _VariantName()

# ------------------------------------------------------------------------------------ the model argument


class _ModelArgument(click.ParamType):
    """A model argument, the same for every command (``sources.resolve``): a shipped model's name, a ``.tflite``, a
    ``.pth`` state_dict or an ``.onnx`` network blazeconv exported, recognised by content. Converts to a
    ``ModelSource``; a kind the command cannot use (``kinds``) is refused in one line (``sources.require_kind``,
    exit 7), as are unknown names (exit 7) and missing or unreadable files (exit 3 or 5)."""

    name = "model"

    def __init__(self, kinds: tuple[str, ...], command: str = "", why: str = ""):
        self.kinds, self.command, self.why = kinds, command, why

    def get_metavar(self, param, ctx=None) -> str:
        return "MODEL"

    def convert(self, value, param, ctx):
        from ..sources import ModelSource, require_kind, resolve

        if isinstance(value, ModelSource):
            return value
        what = f"blazeconv {self.command or (ctx.info_name if ctx is not None else '')}".strip()
        return require_kind(resolve(value), self.kinds, what, self.why)


# What each command takes as its model (``sources.KINDS``), and what it does with it, for its refusals.
MODEL_KINDS = {
    "detect": (("shipped", "tflite", "weights", "onnx"), ""),
    "blur": (("shipped", "tflite", "weights", "onnx"), ""),
    "coreml": (("shipped", "tflite", "weights"), "it converts the weights"),
    "onnx": (("shipped", "tflite", "weights", "onnx"), ""),
    "verify": (("shipped", "tflite", "weights"), "the weights the Core ML model was built from"),
    "bench": (("shipped", "tflite", "weights", "onnx"), ""),  # bench.bench_model refuses what LiteRT cannot run
    "eval": (("shipped", "tflite", "weights", "onnx"), ""),
    "train": (("shipped", "tflite", "weights"), "it fine-tunes the weights"),
}


def model_type(command: str) -> _ModelArgument:
    """The model argument's type for ``command`` (``MODEL_KINDS``)."""
    kinds, why = MODEL_KINDS[command]
    return _ModelArgument(kinds, command, why)


def model_help(command: str, default: str | None) -> str:
    """The one help text of a model argument: what it may be, and its default."""
    from ..sources import kinds_text

    kinds, _ = MODEL_KINDS[command]
    return (f"The model: {kinds_text(kinds)}, recognised by content; its variant is inferred (--variant overrides)"
            + (f" [default: {default}]." if default else "."))


def _given(ctx: click.Context, name: str) -> bool:
    """Whether the parameter ``name`` was given (command line or environment), not left at its default."""
    source = ctx.get_parameter_source(name)
    return source is not None and source not in (click.core.ParameterSource.DEFAULT,
                                                 click.core.ParameterSource.DEFAULT_MAP)


def given_options(*params: str) -> list[str]:
    """Those of the current command's parameters ``params`` that the user gave (click's parameter source), not left
    at their defaults."""
    ctx = click.get_current_context()
    return [name for name in params if _given(ctx, name)]


def renamed(old: str, new: str, *, to=None, **attrs):
    """Keep the option ``old`` (hidden) for command lines written before it was renamed: given, it prints a one-line
    notice on stderr and sets the parameter ``new`` (to ``to(value)`` when ``to`` is given), unless that was given
    too (a usage error). ``attrs``: the old option's click attributes (its type, ``is_flag``...); a flag's False is
    the same as not giving it."""
    param = f"renamed_{old.lstrip('-').split('/')[0].replace('-', '_')}"
    new_option = "--" + new.replace("_", "-")

    def decorate(f):
        @functools.wraps(f)
        def command(*args, **kwargs):
            value = kwargs.pop(param)
            if value is None or value is False:
                return f(*args, **kwargs)
            ctx = click.get_current_context()
            shown = new_option if to is None else f"{new_option} {to(value)}"
            if _given(ctx, new):
                raise click.UsageError(f"{old.split('/')[0]} is the old name of {shown}: give one of them")
            say(f"blazeconv: {old.split('/')[0]} is deprecated and will go: use {shown}")
            kwargs[new] = value if to is None else to(value)
            return f(*args, **kwargs)

        return click.option(old, param, hidden=True, **attrs)(command)

    return decorate


def model_option(command: str, *, default: str | None = None, multiple: bool = False, help_text: str | None = None):
    """``--model MODEL`` for ``command`` (its kinds: ``MODEL_KINDS``), with ``--weights``, its old name, kept as a
    deprecated alias. The parameter is ``model``: a ``ModelSource`` (a tuple of them with ``multiple``), or None when
    not given (``default``, a shipped name, is only shown in the help; the command applies it)."""
    kind = model_type(command)

    def decorate(f):
        f = renamed("--weights", "model", type=kind)(f) if not multiple else f
        return click.option("--model", "model", type=kind, multiple=multiple,
                            help=help_text or model_help(command, default))(f)

    return decorate


def model_argument(command: str):
    """The model as a command's first argument (``MODEL``), of the same type as ``--model``."""
    return click.argument("model", metavar="MODEL", type=model_type(command))


def variant_option(help_text: str | None = None):
    """``--variant NAME``: which model the given one is, overriding what is inferred."""
    return click.option(
        "--variant", "variant_name", type=VARIANT,
        help=help_text or "Which model the given one is (anchors, input size, default threshold), overriding what is "
                          "inferred; it must be of the weights' architecture [default: a shipped name's own; a .tflite's "
                          "or .onnx's recorded variant; for a .pth the shipped model with identical weights, else "
                          "short_range (128 px) or back (256 px)].")


def backend_option():
    """``--backend``: where the model runs, one of the registry's backends or ``auto``."""
    from ..backends import AUTO_ORDER, BACKENDS, CHOICES

    described = "; ".join(f"{b.name}: {b.summary}" for b in BACKENDS.values())
    return click.option("--backend", type=click.Choice(CHOICES), default="auto", show_default=True,
                        help=f"Where the model runs. {described}; auto: the first installed of "
                             f"{', '.join(AUTO_ORDER)} (fastest first, docs/bench.md: Speed).")


# ------------------------------------------------------------------------------------ shared options


def output_option(help_text: str, *, dir_okay: bool = False):
    """``-o/--output PATH``."""
    return click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=dir_okay), help=help_text)


def source_tflite_option():
    """``--source-tflite FILE``: the .tflite a .pth came from."""
    return click.option("--source-tflite", type=click.Path(path_type=Path, dir_okay=False),
                        help="With a .pth: the .tflite it was converted from (its weights must match); recorded by SHA-256.")


def iou_option(help_text: str):
    """``--iou-threshold``, MediaPipe's by default."""
    from ..variants import NMS_IOU_THRESHOLD

    return click.option("--iou-threshold", type=FRACTION, default=NMS_IOU_THRESHOLD, show_default=True, help=help_text)


def max_faces_option(help_text: str):
    """``--max-faces``: rows of a model with NMS inside."""
    from ..export import DEFAULT_MAX_FACES, MAX_FACES_LIMIT

    return click.option("--max-faces", type=click.IntRange(1, MAX_FACES_LIMIT), default=DEFAULT_MAX_FACES,
                        show_default=True, help=help_text)


def source_argument(name: str = "source"):
    """A model argument: a file or a shipped variant name (``sources.resolve`` says which)."""
    return click.argument(name, metavar=name.upper(), type=click.Path(path_type=Path, dir_okay=False))


# ------------------------------------------------------------------------------------ scales


def scale_options(*, min_face_help: str):
    """The scale options every detecting command shares (``DetectionSettings``, ``detection.scales``): ``--exact``,
    ``--tile/--no-tile``, ``--min-face`` (its meaning for the command's own outputs in ``min_face_help``),
    ``--tile-size``, ``--tile-overlap`` and ``--fast-decode/--full-decode``. Parameters: ``exact``, ``tile`` (None:
    not given), ``min_face``, ``tile_size``, ``tile_overlap``, ``fast_decode`` (None: not given)."""
    from ..detection.scales import MIN_FACE_FLOOR, MIN_FACE_LIMIT, MIN_FACE_SHARE

    options = [
        click.option("--exact", is_flag=True,
                     help="MediaPipe's answers exactly: the model on the whole picture decoded in full, as MediaPipe "
                          "runs it (at --min-score, default the model's own). Faces smaller than about a tenth of the "
                          "picture are missed. Not with the other scale options."),
        click.option("--tile/--no-tile", default=None,
                     help="--no-tile: the whole picture only (faster; misses small faces) [default: tiles where faces "
                          "down to --min-face need them]."),
        click.option("--min-face", type=click.FloatRange(MIN_FACE_LIMIT), metavar="PX",
                     help="The smallest face that matters, in pixels (a face box's longer side): the picture is also "
                          "looked at on overlapping tiles (upscaled where needed) so that faces down to PX are found"
                          f"{min_face_help} [default: 1/{1 / MIN_FACE_SHARE:g} of the picture's shorter side, at least "
                          f"{MIN_FACE_FLOOR:g}: 11 px at 480x270, 125 px at 4000x3000]."),
        click.option("--tile-size", type=click.IntRange(16), metavar="PX",
                     help="Expert override: tiles of this side (pixels of the picture) as the one finer level, "
                          "instead of tiles chosen from --min-face."),
        click.option("--tile-overlap", type=click.FloatRange(0, 0.9), metavar="F",
                     help="Expert override: the share of a tile's side its neighbours overlap [default: what each "
                          "level needs to keep its faces whole in one tile]."),
        click.option("--fast-decode/--full-decode", "fast_decode", default=None,
                     help="--fast-decode: decode JPEGs with DCT scaling to twice the finest level's model resolution "
                          "(several times faster on big photos, not bit-exact with MediaPipe); --full-decode: decode "
                          "in full [default: fast, full with --exact]. Other formats decode in full."),
    ]

    def decorate(f):
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def check_scale_options(exact: bool, tile, min_face, tile_size, tile_overlap, fast_decode) -> None:
    """Usage errors (exit 2) for scale options that cannot go together, named as the user gave them."""
    given = [name for name, value in (("--min-face", min_face), ("--tile-size", tile_size),
                                      ("--tile-overlap", tile_overlap)) if value is not None]
    if exact and (given or tile is not None or fast_decode):
        names = given + (["--tile/--no-tile"] if tile is not None else []) + (["--fast-decode"] if fast_decode else [])
        raise click.UsageError(f"--exact runs the model as MediaPipe does: not with {', '.join(names)}")
    if tile is False and given:
        raise click.UsageError(f"{', '.join(given)}: apply with tiles, not with --no-tile")
    if min_face is not None and tile_size is not None:
        raise click.UsageError("--tile-size fixes the tiles, --min-face chooses them: give one of them")
