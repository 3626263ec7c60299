"""``bench``: speed side by side with LiteRT and MediaPipe."""

from __future__ import annotations

from pathlib import Path

import click

from .base import VARIANT, check_outputs, cli, output_option, say


@cli.command()
@click.option("--variant", "variants", multiple=True, type=VARIANT,
              help="Measure this model (repeatable) [default: every shipped model].")
@click.option("--rounds", type=click.IntRange(1, 10000),
              help="Timed rounds per measurement, the median is reported; a quarter as many at the large batch "
                   "[default: 40; --quick: 3].")
@click.option("--warmup", type=click.IntRange(0, 1000), help="Untimed rounds first [default: 5; --quick: 1].")
@click.option("--batch", type=click.IntRange(1, 1024), help="The large batch size [default: 32; --quick: 4].")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1, 256),
              help="torch, LiteRT, ONNX Runtime and OpenVINO threads for the per-image figures (the whole-process "
                   "detect runs use every core, as detect does).")
@click.option("--throughput-images", type=click.IntRange(0, 100000),
              help="Files for the whole-process detect and MediaPipe folder runs, 0 to skip them "
                   "[default: 1000; --quick: 40].")
@click.option("--one-photo-runs", type=click.IntRange(0, 1000),
              help="Whole-process 'detect one.jpg' runs per backend, 0 to skip [default: 5; --quick: 1].")
@click.option("--big-photos", type=click.IntRange(0, 10000),
              help="JPEGs per size (12 MP and 37 MP, made from the photos) for the whole-process big-photo runs "
                   "(exact, --annotate, --fast-decode, --tile, MediaPipe), 0 to skip [default: 12; --quick: 0].")
@click.option("--video", "videos", multiple=True, type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="A clip for the whole-process video runs (repeatable): 'detect CLIP', with --annotate, and 'blur "
                   "CLIP' (seconds, peak memory, frames decoded), against MediaPipe's FaceDetector in VIDEO mode over "
                   "the same frames; needs PyAV (blazeconv[video]) [default: none, skipped].")
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
def bench(variants, rounds, warmup, batch, threads, throughput_images, one_photo_runs, big_photos, videos, blur_clips,
          deface_python, clock, photo, mediapipe_python, quick, output) -> None:
    """Measure speed side by side with LiteRT and MediaPipe and print Markdown tables (stdout).

    For each model: the network alone at batch 1, in one --batch call and as --batch calls at batch 1 (LiteRT/XNNPACK,
    the eager PyTorch module, the fast path blazeconv.fast, and each installed ONNX backend: ONNX Runtime,
    OpenVINO), ms per image and the ratio to LiteRT, with start-ups and output differences; decode + weighted
    NMS per image; FaceDetector end to end on the decoded 512x512 photo per backend, against MediaPipe's own
    FaceDetector on the same array (short_range); each conversion stage. Then whole processes: detect over
    --throughput-images files per backend and MediaPipe over the same files, with peak memory, 'detect
    one.jpg', big photos (12 and 37 MP JPEGs: exact, --annotate, --fast-decode and --tile against MediaPipe), and
    with --video, 'detect CLIP' (plain, annotated) and 'blur CLIP' against MediaPipe's VIDEO mode; with --blur-clip,
    'blur CLIP' against deface. Medians after warm-up, contenders interleaved round by round; the speed targets at
    the end.
    Needs LiteRT (pip install 'blazeconv[bench]').

    \b
    Examples:
      blazeconv bench > bench.md
      blazeconv bench --variant short_range --rounds 100 --clock cpu
      blazeconv bench --quick
      blazeconv bench --variant short_range --throughput-images 0 --one-photo-runs 0 --big-photos 0 --video clip.mp4
    """
    from ..bench import default_options, format_report, run_bench
    from ..io import atomic_path

    if output is not None:
        check_outputs([("-o", output)], [("--photo", photo), *(("--video", v) for v in videos),
                                         *(("--blur-clip", v) for v in blur_clips)])
    defaults = (3, 1, 4, 40, 1, 0) if quick else (40, 5, 32, 1000, 5, 12)
    rounds, warmup, batch, throughput_images, one_photo_runs, big_photos = (
        given if given is not None else default
        for given, default in zip((rounds, warmup, batch, throughput_images, one_photo_runs, big_photos), defaults)
    )
    options = default_options(variants, photo=photo, rounds=rounds, warmup=warmup, batch=batch, threads=threads,
                              throughput_images=throughput_images, one_photo_runs=one_photo_runs,
                              big_photos=big_photos, videos=tuple(videos), blur_clips=tuple(blur_clips),
                              deface_python=deface_python or Path(".venv-deface/bin/python"), clock=clock,
                              mediapipe_python=mediapipe_python)
    table = format_report(run_bench(options, progress=say))
    click.echo(table)
    if output is not None:
        with atomic_path(output) as tmp:
            tmp.write_text(table + "\n")
