"""Fine-tuning BlazeFace on labelled faces: ``train`` (``blazeconv train``).

    import blazeconv
    result = blazeconv.train("labels.jsonl", images="frames/", model="full_range_sparse", output="tuned.pth",
                             epochs=5, learning_rate=1e-4)
    result.history[-1], result.seconds, result.float16_score_change
    blazeconv.torch2tflite("tuned.pth", like="full_range_sparse", output="tuned.tflite")   # back into MediaPipe's file

SSD training as usual for this family, in the shipped models' own terms: ``data`` (label files read with
``evaluation``'s readers, augmentation that keeps keypoints right, letterboxing as ``detect`` does), ``targets``
(anchor matching, ``encode``: the inverse of the decoder), ``loss`` (hard-negative mining or focal loss, box and
keypoint regression, keypoints only where labelled), ``loop`` (optimizer, checkpoints and resume, NaN guard,
frozen backbone, sparse zeros kept, float16 rounding reported).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from ..errors import OptionsError
from ..variants import DEFAULT_MODEL
from .data import Augmentation, Sample, model_input, read_samples
from .loop import Progress, TrainingError, TrainingOptions, TrainingResult
from .loss import LossWeights
from .targets import Matching, encode, match


def train(
    labels: str | Path,
    images: str | Path | Sequence[str | Path] | None = None,
    *,
    output: str | Path,
    model: Any = DEFAULT_MODEL,
    variant: str | None = None,
    options: TrainingOptions | None = None,
    labels_format: str = "auto",
    on_step: Callable[[Progress], None] | None = None,
    **option_fields: Any,
) -> TrainingResult:
    """Fine-tune ``model`` on the faces labelled in ``labels`` and write its weights to ``output`` (a ``.pth`` that
    every command and ``load_model`` take; ``torch2tflite`` writes it back into the source ``.tflite``).

    ``labels``: a file ``blazeconv eval`` reads (WIDER FACE txt, RetinaFace's variant with landmarks, COCO JSON,
    dlib XML, blazeconv's ``detect --json``/``--jsonl`` with keypoints); ``images``: where its pictures are (None:
    beside the labels). ``model``: any model argument with weights (a shipped name, a ``.tflite``, a ``.pth``, a
    module); ``variant`` overrides the one inferred. ``options``: a ``TrainingOptions``, or its fields as keywords
    (``epochs=``, ``batch_size=``, ``learning_rate=``, ``seed=``, ``freeze_backbone=``, ``resume=`` ...).
    ``on_step(Progress)`` is called after every step.

    Errors: ``LabelsError`` (exit 2) for labels eval would refuse (naming file and line), ``TrainingError`` (exit
    1) for a loss that is not finite (the last epoch's checkpoint is kept) or a checkpoint that does not fit;
    ``Interrupted`` leaves the last epoch's checkpoint for ``resume=True``.
    """
    from ..io import check_folder, refuse_overwriting
    from ..sources import load_module

    known = {f.name for f in fields(TrainingOptions)}
    unknown = sorted(set(option_fields) - known)
    if unknown:
        raise OptionsError(f"unknown training option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    options = replace(options or TrainingOptions(), **option_fields)
    output = Path(output)
    check_folder(output)
    inputs = [("--labels", Path(labels))]
    if isinstance(model, (str, Path)) and Path(model).is_file():
        inputs.append(("--model", Path(model)))
    checkpoint = options.checkpoint or output.with_suffix(".ckpt")
    refuse_overwriting([("-o", output), ("--checkpoint", checkpoint)], inputs)
    samples = read_samples(labels, images, labels_format)  # every label checked before the model is loaded
    module = load_module(model, variant)
    from .loop import run

    return run(module, samples, output, options, on_step, str(model))


__all__ = ["Augmentation", "LossWeights", "Matching", "Progress", "Sample", "TrainingError", "TrainingOptions",
           "TrainingResult", "encode", "match", "model_input", "read_samples", "train"]
