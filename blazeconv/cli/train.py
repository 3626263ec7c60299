"""``train``: fine-tune a model on labelled faces (``blazeconv.training``)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..variants import DEFAULT_MODEL
from .base import cli, model_option, needs_extra, say, variant_option

_FORMATS = click.Choice(["auto", "wider", "coco", "dlib", "blazeconv"])


@cli.command("train")
@needs_extra("train")
@click.option("--labels", "labels_path", required=True, type=click.Path(path_type=Path),
              help="The labelled faces, in any format eval reads: WIDER FACE txt (RetinaFace's variant with landmarks "
                   "too), COCO JSON, dlib imglab XML, or blazeconv detect --json/--jsonl output (with keypoints). A "
                   "picture listed without faces is a negative.")
@click.option("--images", "images", multiple=True, type=click.Path(path_type=Path),
              help="Where the labelled pictures are (a folder, or files; repeatable) [default: the labels' folder].")
@click.option("--labels-format", type=_FORMATS, default="auto", show_default=True,
              help="The format of --labels (auto: by its content).")
@model_option("train", default=DEFAULT_MODEL)
@variant_option()
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Where to write the tuned weights (.pth: a state_dict every command takes).")
@click.option("--epochs", type=click.IntRange(1), default=10, show_default=True, help="Passes over the pictures.")
@click.option("--batch-size", type=click.IntRange(1, 1024), default=8, show_default=True, help="Pictures per step.")
@click.option("--lr", "learning_rate", type=click.FloatRange(0, min_open=True), default=1e-4, show_default=True,
              help="AdamW's learning rate.")
@click.option("--weight-decay", type=click.FloatRange(0), default=0.0, show_default=True,
              help="AdamW's weight decay (not on biases nor sparse weights).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the picture order and the augmentation: the same seed gives the same weights.")
@click.option("--freeze-backbone", is_flag=True, help="Train only the output heads (classifier and regressor).")
@click.option("--loss", "classification", type=click.Choice(["ohem", "focal"]), default="ohem", show_default=True,
              help="Classification loss: cross-entropy with hard-negative mining (3 per positive), or focal loss.")
@click.option("--min-zoom", type=click.FloatRange(0, min_open=True), default=0.3, show_default=True,
              help="Scale jitter: the smallest square cut out, as a share of the picture's longer side (tiles).")
@click.option("--max-zoom", type=click.FloatRange(0, min_open=True), default=1.3, show_default=True,
              help="Scale jitter: the largest (above 1: the picture smaller inside a border).")
@click.option("--no-augment", is_flag=True,
              help="No flip, no scale jitter, no brightness change: the whole pictures as detect sees them.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where to train (auto: CUDA where torch has it, else the CPU).")
@click.option("--checkpoint", type=click.Path(path_type=Path, dir_okay=False),
              help="The checkpoint written after every epoch [default: OUTPUT with suffix .ckpt].")
@click.option("--resume", is_flag=True,
              help="Continue from the checkpoint (same options; --epochs may grow): an interrupted or stopped run "
                   "goes on as if it had not stopped.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
def train_command(labels_path, images, labels_format, model, variant_name, output, epochs, batch_size, learning_rate,
                  weight_decay, seed, freeze_backbone, classification, min_zoom, max_zoom, no_augment, device,
                  checkpoint, resume, quiet) -> None:
    """Fine-tune a face detector on labelled faces and write its weights (.pth).

    SSD training in the model's own terms: anchors matched to each face near its centre, box and keypoint
    regression in the decoder's offsets (keypoints only where labelled), classification with hard-negative
    mining or focal loss, horizontal flips that swap left and right keypoints, and scale jitter covering the scales
    detect's tiles feed the model. Sparse models (full_range_sparse) keep their zeros, so torch2tflite can write the
    result back into the original .tflite; the float16 rounding that file applies is reported.

    Losses go to stderr; a checkpoint is written after every epoch (--resume continues from it). A loss that is
    not finite stops the run (exit 1) and keeps the last good checkpoint. Labels eval would refuse are refused the
    same way (exit 2, naming the file and line).

    \b
    Examples:
      blazeconv train --labels frames/train.jsonl --model full_range_sparse -o tuned.pth --epochs 5
      blazeconv train --labels wider_face_train_bbx_gt.txt --images WIDER_train/images -o tuned.pth --freeze-backbone
      blazeconv torch2tflite tuned.pth --like full_range_sparse -o tuned.tflite
    """
    from ..training import Augmentation, LossWeights, TrainingOptions, train

    augmentation = Augmentation.none() if no_augment else Augmentation(min_zoom=min_zoom, max_zoom=max_zoom)
    options = TrainingOptions(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                              weight_decay=weight_decay, seed=seed, freeze_backbone=freeze_backbone, device=device,
                              checkpoint=checkpoint, resume=resume, augmentation=augmentation,
                              loss=LossWeights(classification=classification))
    terminal = sys.stderr.isatty()

    def show(progress) -> None:
        losses = progress.losses
        line = (f"epoch {progress.epoch}/{progress.epochs} step {progress.step}/{progress.steps}: loss "
                f"{losses['total']:.4f} (classification {losses['classification']:.4f}, box {losses['box']:.4f}, "
                f"keypoints {losses['keypoints']:.4f})")
        if terminal:
            click.echo("\r" + line + ("\n" if progress.step == progress.steps else ""), err=True, nl=False)
        elif progress.step == progress.steps:
            say(line)

    result = train(labels_path, list(images) or None, output=output, model=model or DEFAULT_MODEL,
                   variant=variant_name, options=options, labels_format=labels_format,
                   on_step=None if quiet else show)
    if result.history:
        mean = result.history[-1]
        say(f"epoch {result.epochs} mean loss {mean['total']:.4f} (classification {mean['classification']:.4f}, "
            f"box {mean['box']:.4f}, keypoints {mean['keypoints']:.4f})")
    say(f"wrote {result.output} ({result.variant.name}; {result.epochs - result.resumed_from} epoch(s) on "
        f"{result.pictures} picture(s), {result.faces} face(s), in {result.seconds:.1f} s on {result.device}; "
        f"checkpoint {result.checkpoint})")
    say(f"float16 storage (MediaPipe's files) moves the weights by up to {result.float16_rounding:.2g} and face "
        f"scores by up to {result.float16_score_change:.2g}; back into the .tflite: blazeconv torch2tflite "
        f"{result.output} --like {result.variant.name}")
