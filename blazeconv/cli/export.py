"""``coreml``, ``onnx`` and ``verify``: the exports and the check of a Core ML model."""

from __future__ import annotations

from pathlib import Path

import click

from .base import (
    FRACTION,
    check_outputs,
    cli,
    iou_option,
    max_faces_option,
    model_argument,
    model_option,
    needs_extra,
    output_option,
    renamed,
    say,
    source_tflite_option,
    thresholds_help,
    variant_option,
)

# The model is coreml's and onnx's first argument, not an option: it is what they convert (as tflite2torch's), always
# given, and ``blazeconv onnx short_range`` reads as what it does. It takes what ``--model`` takes, alike refused.


@cli.command()
@needs_extra("coreml")
@model_argument("coreml")
@output_option("Where to write the model [default: MODEL with suffix .mlpackage (mlprogram) or .mlmodel "
                   "(neuralnetwork); with --landmarks, <stem>_landmarks.<suffix>].", dir_okay=True)
@click.option("--landmarks", is_flag=True,
              help="Build the landmarks model (decoding and MediaPipe's weighted NMS inside; boxes, 6 keypoints and "
                   "scores out) instead of the Vision pipeline.")
@click.option("--format", "model_format", type=click.Choice(["mlprogram", "neuralnetwork"]), default="mlprogram",
              show_default=True, help="mlprogram: .mlpackage for iOS 15+; neuralnetwork: .mlmodel for iOS 14.")
@click.option("--precision", type=click.Choice(["float16", "float32"]),
              help="float16 (the network computes in float16; decoding and NMS stay float32) or float32 "
                   "[default: float16 for mlprogram, float32 for neuralnetwork, where float16 stores the "
                   "convolution weights as float16].")
@iou_option("NMS overlap threshold (MediaPipe's face graphs use 0.3).")
@click.option("--min-score", type=FRACTION,
              help=f"Minimum face score [default: the variant's: {thresholds_help()}].")
@renamed("--score-threshold", "min_score", type=FRACTION)
@max_faces_option("Most faces a model returns (rows of the landmarks model; Vision's upper bound). The landmarks "
                  "model repeats its NMS step per row, so more rows convert more slowly.")
@variant_option()
@source_tflite_option()
@click.option("--anchors", "anchors_file", type=click.Path(path_type=Path, dir_okay=False),
              help="An (N, 4) .npy of anchors (x_center, y_center, w, h) instead of the variant's generated ones.")
def coreml(model, output, landmarks, model_format, precision, iou_threshold, min_score, max_faces,
           variant_name, source_tflite, anchors_file) -> None:
    """Convert BlazeFace (MODEL: a shipped model name, a .tflite or a .pth state_dict) to a Core ML model.

    By default a pipeline for Vision: image in (RGB at the model's size, normalised inside), boxes decoded
    inside, then Core ML's NonMaximumSuppression; outputs 'confidence' (N x 1) and 'coordinates'
    (N x 4: x_center, y_center, width, height, normalised), optional Double inputs 'iouThreshold' and
    'confidenceThreshold', class label 'face'. VNCoreMLRequest returns VNRecognizedObjectObservations.

    With --landmarks: one model with MediaPipe's weighted NMS inside, outputs 'detections'
    (max-faces x 17: xmin, ymin, xmax, ymax, 6 keypoints (x, y), score; normalised; zero rows after the
    last face) and 'count'.

    A .tflite is converted on the fly and knows its variant and SHA-256. For a .pth the variant is
    --variant, else the one of --source-tflite, else the shipped model with identical weights, else the
    architecture's default; the metadata records the source SHA-256 when it is known, "unknown" otherwise.
    Check the result with 'blazeconv verify'.

    \b
    Examples:
      blazeconv coreml short_range -o ShortRange.mlpackage
      blazeconv coreml build/back.pth --landmarks -o build/back_landmarks.mlpackage
      blazeconv coreml build/front.pth --format neuralnetwork --precision float16 -o front.mlmodel
    """
    from ..errors import OptionsError
    from ..export.coreml import CoreMLOptions, build_coreml, coreml_source, default_output, save_coreml
    from ..sources import load_weights

    options = CoreMLOptions(
        kind="landmarks" if landmarks else "vision",
        format=model_format,
        precision=precision,
        iou_threshold=iou_threshold,
        score_threshold=min_score,
        max_faces=max_faces,
    )
    path = model.path
    output = output or default_output(Path(model.variant.name) if model.kind == "shipped" else path, options)
    if output.suffix.lower() != options.suffix:
        raise OptionsError(f"{output}: a {model_format} model is saved as {options.suffix}, not {output.suffix or 'no suffix'}")
    check_outputs([("-o", output)], [("the model", path), ("--source-tflite", source_tflite), ("--anchors", anchors_file)])
    loaded = coreml_source(load_weights(model, variant=variant_name, source_tflite=source_tflite), anchors_file)
    options = options.resolved(loaded.variant)
    v = loaded.variant
    say(f"{path}: {v.name} ({loaded.recognised_by}), {v.input_size}x{v.input_size}, {len(loaded.anchors)} anchors")
    built = build_coreml(loaded, options)
    save_coreml(built, output)
    what = "landmarks model (weighted NMS inside)" if landmarks else "Vision pipeline (detector + NMS)"
    say(f"wrote {output}: {what}, {options.format} {options.precision}, IoU {options.iou_threshold:g}, "
        f"score {options.score_threshold:g}, up to {options.max_faces} faces, "
        f"source SHA-256 {loaded.source_sha256 or 'unknown'}")


@cli.command()
@needs_extra("convert")
@model_argument("onnx")
@output_option("Where to write the model [default: MODEL with suffix .onnx; with --detections, "
               "<stem>_detections.onnx; for a variant name, in the current folder].")
@click.option("--detections", is_flag=True,
              help="Also decode and run MediaPipe's weighted NMS inside: outputs 'detections' (batch x max-faces x 17: "
                   "xmin, ymin, xmax, ymax, 6 keypoints (x, y), score; 0..1 of the input) and 'count'.")
@click.option("--min-score", type=FRACTION,
              help=f"With --detections: the default of the 'min_score' input [default: the variant's: {thresholds_help()}].")
@iou_option("With --detections: the default of the 'iou_threshold' input (MediaPipe's face graphs use 0.3).")
@max_faces_option("With --detections: rows of 'detections' (the NMS step is repeated per row).")
@variant_option()
@source_tflite_option()
def onnx(model, output, detections, min_score, iou_threshold, max_faces, variant_name, source_tflite) -> None:
    """Export BlazeFace (MODEL: a shipped model name, a .tflite or a .pth state_dict) to ONNX.

    The network: input 'image' (batch x 3 x S x S float32 RGB in -1..1, batch dynamic), outputs
    'regressors' (batch x N x 16) and 'classificators' (batch x N x 1), TFLite's raw outputs.
    With --detections the model also decodes (anchors inside) and runs MediaPipe's weighted NMS; optional
    float32 scalar inputs 'min_score' and 'iou_threshold' override the defaults written into it.
    The metadata records the variant, anchor options, thresholds, keypoint names and the source SHA-256.
    With --detections MODEL may also be a network .onnx this command wrote: only the decoding and NMS are
    added (a second instead of a full export).

    \b
    Examples:
      blazeconv onnx short_range                      # -> short_range.onnx
      blazeconv onnx short_range --detections         # -> short_range_detections.onnx
      blazeconv onnx short_range.onnx --detections    # the same, from the network
      blazeconv onnx build/back.pth --detections --min-score 0.7 -o back_faces.onnx
    """
    from ..errors import OptionsError
    from ..export.onnx import OPSET, default_output, export_detections
    from ..sources import export_onnx_file

    path = model.path
    output = output or default_output(Path(f"{model.variant.name}.onnx") if model.kind == "shipped" else path, detections)
    check_outputs([("-o", output)], [("the model", path), ("--source-tflite", source_tflite)])
    if model.kind == "onnx":
        if not detections:
            raise OptionsError(f"{path}: already an ONNX network; add --detections to add the decoding and NMS to it")
        if source_tflite:
            raise OptionsError(f"{path}: --source-tflite is only for .pth weights; an .onnx records its source")
        export_detections(path, output, min_score=min_score, iou_threshold=iou_threshold, max_faces=max_faces,
                          variant=variant_name)
        say(f"wrote {output}: detections model (weighted NMS inside) from the network {path}, IoU {iou_threshold:g}, "
            f"up to {max_faces} faces")
        return
    loaded = export_onnx_file(model, output, detections=detections, variant=variant_name, source_tflite=source_tflite,
                              min_score=min_score, iou_threshold=iou_threshold, max_faces=max_faces)
    v = loaded.variant
    say(f"{path}: {v.name} ({loaded.recognised_by}), {v.input_size}x{v.input_size}, {v.num_anchors} anchors")
    if detections:
        score = v.min_score if min_score is None else min_score
        what = f"detections model (weighted NMS inside), min score {score:g}, IoU {iou_threshold:g}, up to {max_faces} faces"
    else:
        what = "network (raw outputs)"
    say(f"wrote {output}: {what}, dynamic batch, opset {OPSET}, source SHA-256 {loaded.source_sha256 or 'unknown'}")


@cli.command()
@needs_extra("coreml")
@click.argument("coreml_model", metavar="COREML_MODEL", type=click.Path(path_type=Path))
@click.argument("images", nargs=-1, type=click.Path(path_type=Path, dir_okay=False))
@model_option("verify", help_text="The model the Core ML model was built from: a shipped model name, a .tflite or a "
                                  ".pth state_dict [default: the shipped model whose SHA-256 the Core ML model records].")
@click.option("--anchors", "anchors_file", type=click.Path(path_type=Path, dir_okay=False),
              help="The anchors .npy the model was built with, if it was built with --anchors.")
@click.option("--atol", type=FRACTION,
              help="Tolerance for boxes and keypoints [default: 1e-4 for float32 models, 2e-3 for float16].")
def verify(coreml_model, images, model, anchors_file, atol) -> None:
    """Check a COREML_MODEL (.mlpackage or .mlmodel) numerically against the PyTorch model it was built from, on
    any OS.

    Evaluates every operation of the saved model (its NMS stage included) with numpy on each of IMAGES
    (squashed to the model's input size) [default: the photos that ship with blazeconv], runs the PyTorch model
    and MediaPipe's decoding on the same input, and compares: decoded boxes and keypoints within the
    tolerance (normalised units), and the same faces after NMS. Exits non-zero on any difference, or if
    the model holds an operation the evaluator does not know.

    \b
    Examples:
      blazeconv verify build/short_range.mlpackage
      blazeconv verify front.mlmodel photo.jpg --model build/front.pth
    """
    from ..verify.coreml import VerificationError, default_images, verify_coreml

    images = list(images) or default_images()
    if not images:
        raise click.UsageError("give IMAGES to verify on (the photos that ship with blazeconv are not here)")
    result = verify_coreml(coreml_model, images, weights=model, anchors=anchors_file, tolerance=atol)
    say(f"{coreml_model}: {result.kind} model, {result.variant}, {result.format} {result.precision}, "
         f"tolerance {result.tolerance:g}")
    say(f"  {'image':<28} {'faces':>5} {'torch':>5} {'same':>4} {'box err':>9} {'kpt err':>9} {'score err':>9}")
    for c in result.checks:
        keypoints = "-" if c.keypoint_error != c.keypoint_error else f"{c.keypoint_error:.2e}"
        say(f"  {Path(c.image).name:<28} {c.faces:>5} {c.reference_faces:>5} {'yes' if c.same_faces else 'NO':>4} "
             f"{c.box_error:>9.2e} {keypoints:>9} {c.score_error:>9.2e}")
    every_anchor = [c.all_anchors_box_error for c in result.checks if c.all_anchors_box_error == c.all_anchors_box_error]
    if every_anchor:
        say(f"  (box err: detection candidates; over all anchors, for information: {max(every_anchor):.2e})")
    total = sum(n for key, n in result.operations.items() if not key.startswith("model:"))
    kinds = sorted(key for key in result.operations if not key.startswith("model:"))
    models = ", ".join(sorted(key.split(":", 1)[1] for key in result.operations if key.startswith("model:")))
    say(f"  evaluated {total} operations of {len(kinds)} kinds in models: {models}")
    if not result.passed:
        failures = result.failures()
        raise VerificationError(f"{coreml_model}: differs from PyTorch on {len(failures)} image(s): " + " | ".join(failures))
    say(f"{coreml_model}: matches PyTorch on {len(result.checks)} image(s)")
