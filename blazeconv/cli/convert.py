"""``tflite2torch``, its inverse ``torch2tflite``, and ``anchors``: the conversion stages."""

from __future__ import annotations

from pathlib import Path

import click

from ..variants import get_variant
from .base import VARIANT, check_outputs, cli, needs_extra, output_option, say, source_argument


@cli.command()
@needs_extra("convert")
@source_argument("model")
@output_option("Where to write the state_dict [default: MODEL with suffix .pth; for a variant name, <name>.pth].")
def tflite2torch(model: Path, output: Path | None) -> None:
    """Convert a BlazeFace MODEL (a .tflite file or a shipped variant name) into a PyTorch state_dict (.pth).

    The model is recognised from the file itself (front, short_range, back, full_range,
    full_range_sparse); float16 weights behind DEQUANTIZE and sparse weights behind DENSIFY
    are folded into float32 tensors.

    \b
    Examples:
      blazeconv tflite2torch short_range -o short_range.pth
      blazeconv tflite2torch face_detection_full_range.tflite -o full_range.pth
    """
    from ..convert import convert_file, save_state_dict
    from ..sources import resolve

    source = resolve(model, role="tflite")
    path = source.path or model
    if source.kind not in ("shipped", "tflite"):
        convert_file(path)  # says what is wrong with the file, before any complaint about the output it would get
    output = output or (Path(f"{source.variant.name}.pth") if source.kind == "shipped" else path.with_suffix(".pth"))
    check_outputs([("-o", output)], [("the model", path)])
    conversion = convert_file(path)
    v = conversion.variant
    how = "its checksum" if conversion.recognised_by == "checksum" else "its structure (not a shipped file)"
    say(f"{path}: recognised as {v.name} by {how}: {v.architecture}, {v.input_size}x{v.input_size} input, "
        f"{v.num_anchors} anchors, {conversion.weight_storage} weights")
    save_state_dict(conversion.state_dict, output)
    say(f"wrote {output} ({len(conversion.state_dict)} tensors)")


@cli.command()
@needs_extra("convert")
@click.argument("weights", metavar="WEIGHTS", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--like", "like", metavar="SOURCE", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="The .tflite to copy (a BlazeFace file tflite2torch reads, or a shipped variant name): everything "
                   "but its weights is kept.")
@output_option("Where to write the .tflite [default: WEIGHTS with suffix .tflite].")
def torch2tflite(weights: Path, like: Path, output: Path | None) -> None:
    """Write the weights of a PyTorch state_dict (WEIGHTS, a .pth) back into a copy of a BlazeFace .tflite.

    The inverse of tflite2torch: SOURCE's flatbuffer with each weight replaced, everything else byte for byte
    as it was (operators, float16 storage, sparse storage with its sparsity pattern, TFLite metadata), so
    MediaPipe loads the result as it loads SOURCE. Weights stored as float16 are rounded to float16. The
    weights must be of SOURCE's architecture and shapes, and for a sparse model keep its zeros; every
    difference is named (exit 5). tflite2torch of a file, written back like that file, gives the file again.

    \b
    Examples:
      blazeconv torch2tflite tuned.pth --like short_range -o tuned.tflite
      blazeconv torch2tflite tuned.pth --like face_detection_full_range_sparse.tflite -o tuned_sparse.tflite
    """
    from ..tflite_writer import torch2tflite as write

    written = write(weights, like, output or weights.with_suffix(".tflite"))
    v = written.variant
    how = "its checksum" if written.recognised_by == "checksum" else "its structure (not a shipped file)"
    rounding = ""
    if "float16" in written.weight_storage:
        rounding = f", float16 rounding moved weights by at most {written.float16_rounding:.2g}"
    say(f"{written.like}: recognised as {v.name} by {how}: {v.architecture}, {written.weight_storage} weights")
    say(f"wrote {written.path}: {written.tensors} weight tensors, {written.changed} changed ({written.bytes_changed} "
        f"bytes){rounding}; every other byte as in {written.like}")


@cli.command()
@click.option("--variant", type=VARIANT, help="Anchors of this model.")
@click.option("--options", "options_file", type=click.Path(path_type=Path, dir_okay=False),
              help="JSON object of MediaPipe SsdAnchorsCalculator fields instead of a variant.")
@output_option("Where to write the (N, 4) float32 .npy [default: <variant or options name>_anchors.npy].")
def anchors(variant: str | None, options_file: Path | None, output: Path | None) -> None:
    """Generate SSD anchors exactly as MediaPipe's SsdAnchorsCalculator does.

    Writes an (N, 4) float32 .npy of (x_center, y_center, w, h), normalised to the model input.

    \b
    Examples:
      blazeconv anchors --variant short_range -o build/short_range_anchors.npy
      blazeconv anchors --options my_anchor_options.json -o anchors.npy
    """
    import numpy as np

    from ..anchors import AnchorOptions, generate_anchors
    from ..io import atomic_path

    if (variant is None) == (options_file is None):
        raise click.UsageError("give exactly one of --variant or --options")
    output = output or Path(f"{variant or options_file.stem}_anchors.npy")
    check_outputs([("-o", output)], [("--options", options_file)])
    if variant is not None:
        options = get_variant(variant).anchor_options
    else:
        options = AnchorOptions.from_json(options_file)
    result = generate_anchors(options)
    with atomic_path(output) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, result)
    say(f"wrote {output}: {len(result)} anchors, (x_center, y_center, w, h) float32")
