"""``bench``: speed side by side with LiteRT and MediaPipe."""

from __future__ import annotations

from pathlib import Path

import click

from .base import check_outputs, cli, model_option, needs_extra, output_option, renamed, say


def _counts(quick: bool) -> dict:
    """The counts a bench uses unless given: ``BenchOptions``' defaults, or ``--quick``'s (``bench.rows.QUICK``)."""
    from ..bench.rows import QUICK, BenchOptions

    return {name: QUICK[name] if quick else BenchOptions.__dataclass_fields__[name].default for name in QUICK}


class _CountOption(click.Option):
    """An option whose help ends with its two defaults, read from the bench package when help is shown: importing it
    costs ``blazeconv --help`` time for nothing."""

    def get_help_record(self, ctx):
        if not getattr(self, "_completed", False):
            self.help = f"{self.help} [default: {_counts(False)[self.name]}; --quick: {_counts(True)[self.name]}]."
            self._completed = True
        return super().get_help_record(ctx)


@cli.command()
@needs_extra("bench")
@model_option("bench", multiple=True,
              help_text="Measure this model (repeatable): a shipped model name or a .tflite (LiteRT, the reference, "
                        "runs TFLite files) [default: every shipped model].")
@click.option("--rounds", cls=_CountOption, type=click.IntRange(1, 10000),
              help="Timed rounds per measurement, the median is reported; a quarter as many at the large batch")
@click.option("--warmup", cls=_CountOption, type=click.IntRange(0, 1000), help="Untimed rounds first")
@click.option("--batch-size", cls=_CountOption, type=click.IntRange(1, 1024), help="The large batch size")
@renamed("--batch", "batch_size", type=click.IntRange(1, 1024))
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1, 256),
              help="torch, LiteRT, ONNX Runtime and OpenVINO threads for the per-image figures (the whole-process "
                   "detect runs use every core, as detect does).")
@click.option("--throughput-images", cls=_CountOption, type=click.IntRange(0, 100000),
              help="Files for the whole-process detect and MediaPipe folder runs, 0 to skip them")
@click.option("--one-photo-runs", cls=_CountOption, type=click.IntRange(0, 1000),
              help="Whole-process 'detect one.jpg' runs per backend, 0 to skip")
@click.option("--big-photos", cls=_CountOption, type=click.IntRange(0, 10000),
              help="JPEGs per size (12 MP and 37 MP, made from the photos) for the whole-process big-photo runs "
                   "(--exact, the defaults, --annotate, --no-tile, MediaPipe), 0 to skip")
@click.option("--video", "videos", multiple=True, type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="A clip for the whole-process video runs (repeatable): 'detect CLIP', with --exact and with "
                   "--annotate, and 'blur CLIP' (seconds, peak memory, frames decoded), against MediaPipe's "
                   "FaceDetector in VIDEO mode over the same frames; needs PyAV (blazeconv[video]) [default: none, "
                   "skipped].")
@click.option("--blur-clip", "blur_clips", multiple=True, type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="A clip for 'blazeconv blur' against deface (repeatable): each option set and deface's own CLI, "
                   "whole process, and the share of deface's faces hidden in each output [default: none, skipped].")
@click.option("--deface-python", type=click.Path(path_type=Path, dir_okay=False),
              help="Python of an environment with deface 1.5.0 and PyAV, for --blur-clip [default: "
                   ".venv-deface/bin/python].")
@click.option("--clock", type=click.Choice(["wall", "cpu"]), default="wall", show_default=True,
              help="Elapsed time, or the thread's CPU time (steadier on a busy machine; one thread only).")
@click.option("--photo", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="The photo the per-image figures use; the folder runs repeat the photos of its folder "
                   "[default: the shipped blazeconv/photos/astronaut.png, 512x512].")
@click.option("--mediapipe-python", type=click.Path(path_type=Path, dir_okay=False),
              help="Python of an environment with mediapipe 1.2.x, for MediaPipe's FaceDetector as the reference "
                   "(skipped with a note when missing) [default: $BLAZECONV_MEDIAPIPE_PYTHON, else "
                   ".venv-mediapipe/bin/python].")
@click.option("--quick", is_flag=True, help="A smoke test: fewer rounds, a small batch, few files.")
@output_option("Also write the table to this file (Markdown).")
def bench(model, rounds, warmup, batch_size, threads, throughput_images, one_photo_runs, big_photos, videos, blur_clips,
          deface_python, clock, photo, mediapipe_python, quick, output) -> None:
    """Measure speed side by side with LiteRT and MediaPipe and print Markdown tables (stdout).

    For each model: the network alone at batch 1, in one --batch-size call and as --batch-size calls at batch 1
    (LiteRT/XNNPACK,
    the eager PyTorch module, the fast path blazeconv.fast, and each installed ONNX backend: ONNX Runtime,
    OpenVINO), ms per image and the ratio to LiteRT, with start-ups and output differences; decode + weighted
    NMS per image; FaceDetector end to end on the decoded 512x512 photo per backend, against MediaPipe's own
    FaceDetector on the same array (short_range); each conversion stage. Then whole processes: detect over
    --throughput-images files per backend and MediaPipe over the same files, with peak memory, 'detect
    one.jpg' (both --exact), big photos (12 and 37 MP JPEGs: --exact, the defaults, --annotate and --no-tile
    against MediaPipe), and with --video, 'detect CLIP' (the defaults, --exact, annotated) and 'blur CLIP' against
    MediaPipe's VIDEO mode; with --blur-clip, 'blur CLIP' against deface. Medians after warm-up, contenders
    interleaved round by round; the speed targets at the end.
    Needs LiteRT (pip install 'blazeconv[bench]').

    \b
    Examples:
      blazeconv bench > bench.md
      blazeconv bench --model short_range --rounds 100 --clock cpu
      blazeconv bench --quick --model my_model.tflite
      blazeconv bench --model short_range --throughput-images 0 --one-photo-runs 0 --big-photos 0 --video clip.mp4
    """
    from ..bench import default_options, format_report, run_bench
    from ..io import atomic_path

    if output is not None:
        check_outputs([("-o", output)], [("--photo", photo), *(("--video", v) for v in videos),
                                         *(("--blur-clip", v) for v in blur_clips)])
    given = {"rounds": rounds, "warmup": warmup, "batch_size": batch_size, "throughput_images": throughput_images,
             "one_photo_runs": one_photo_runs, "big_photos": big_photos}
    counts = {name: _counts(quick)[name] if value is None else value for name, value in given.items()}
    options = default_options(model, photo=photo, threads=threads, **counts, videos=tuple(videos),
                              blur_clips=tuple(blur_clips), deface_python=deface_python or Path(".venv-deface/bin/python"), clock=clock,
                              mediapipe_python=mediapipe_python)
    table = format_report(run_bench(options, progress=say))
    click.echo(table)
    if output is not None:
        with atomic_path(output) as tmp:
            tmp.write_text(table + "\n")
