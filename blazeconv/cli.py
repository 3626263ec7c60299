"""The ``blazeconv`` command line: parses arguments, calls one stage, prints a summary. Nothing else."""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path

import click

from .errors import BlazeconvError
from .variants import DEFAULT_VARIANT, VARIANTS, get_variant

INTERNAL_ERROR_EXIT = 70


def _say(message: str) -> None:
    """Progress and summaries go to stderr so stdout stays clean for data (``--json -``)."""
    click.echo(message, err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="blazeconv")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logging.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Convert MediaPipe BlazeFace face detectors (TFLite) to PyTorch and Core ML, and run them.

    Exit codes: 0 success, 1 other failure, 2 usage, 3 model file, 4 unsupported model, 5 weights,
    6 image, 7 options, 70 internal error.
    """
    ctx.obj = {"debug": debug}
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@cli.command()
@click.argument("model", type=click.Path(path_type=Path, dir_okay=False))
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Where to write the state_dict [default: MODEL with suffix .pth].")
def tflite2torch(model: Path, output: Path | None) -> None:
    """Convert a BlazeFace MODEL.tflite into a PyTorch state_dict (.pth).

    The model is recognised from the file itself (front, short_range, back); float16 weights
    behind DEQUANTIZE and sparse weights are folded into float32 tensors.

    \b
    Example:
      blazeconv tflite2torch models/face_detection_short_range.tflite -o build/short_range.pth
    """
    from .convert import convert_file, save_state_dict

    conversion = convert_file(model)
    v = conversion.variant
    how = "its checksum" if conversion.recognised_by == "checksum" else "its structure (not a shipped file)"
    _say(f"{model}: recognised as {v.name} by {how}: {v.architecture}, {v.input_size}x{v.input_size} input, "
         f"{v.num_anchors} anchors, {conversion.weight_storage} weights")
    output = output or model.with_suffix(".pth")
    save_state_dict(conversion.state_dict, output)
    _say(f"wrote {output} ({len(conversion.state_dict)} tensors)")


@cli.command()
@click.option("--variant", type=click.Choice(list(VARIANTS)), help="Anchors of this model.")
@click.option("--options", "options_file", type=click.Path(path_type=Path, dir_okay=False),
              help="JSON object of MediaPipe SsdAnchorsCalculator fields instead of a variant.")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Where to write the (N, 4) float32 .npy [default: <variant or options name>_anchors.npy].")
def anchors(variant: str | None, options_file: Path | None, output: Path | None) -> None:
    """Generate SSD anchors exactly as MediaPipe's SsdAnchorsCalculator does.

    Writes an (N, 4) float32 .npy of (x_center, y_center, w, h), normalised to the model input.

    \b
    Examples:
      blazeconv anchors --variant short_range -o build/short_range_anchors.npy
      blazeconv anchors --options my_anchor_options.json -o anchors.npy
    """
    import numpy as np

    from .anchors import AnchorOptions, generate_anchors
    from .io import atomic_path

    if (variant is None) == (options_file is None):
        raise click.UsageError("give exactly one of --variant or --options")
    if variant is not None:
        options, name = get_variant(variant).anchor_options, variant
    else:
        options, name = AnchorOptions.from_json(options_file), options_file.stem
    result = generate_anchors(options)
    output = output or Path(f"{name}_anchors.npy")
    with atomic_path(output) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, result)
    _say(f"wrote {output}: {len(result)} anchors, (x_center, y_center, w, h) float32")


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the CLI and turns blazeconv errors into one ``Error:`` line and an exit code."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="blazeconv", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except BlazeconvError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug: say so in one line, keep the traceback for --debug
        if debug:
            traceback.print_exc()
        click.echo(f"Error: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", err=True)
        sys.exit(INTERNAL_ERROR_EXIT)
    sys.exit(0)
