"""The report as Markdown: a header (machine, libraries, options), one table per kind of measurement, and the
targets with each figure's ratio to its target.

Tables give milliseconds per image or seconds, and ratios as ``N.NN×`` (a contender's figure over the reference's).
"""

from __future__ import annotations

from pathlib import Path

from .rows import BenchReport

# The targets, checked at the end of the report.
TARGET_FOLDER_SPEEDUP = 2.0
TARGET_FOLDER_PEAK_MIB = 300.0
TARGET_ONE_PHOTO_S = 0.7


def _ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}×"


_LABELS = {"litert": "LiteRT (XNNPACK)", "eager": "eager PyTorch", "fast": "fast", "onnxruntime": "ONNX Runtime",
           "openvino": "OpenVINO", "torch": "torch", "mediapipe": "MediaPipe FaceDetector",
           "mediapipe video": "MediaPipe FaceDetector, VIDEO mode"}
_MODES = {"1": "1", "B": "{b}", "Bx1": "{b} × 1"}


def format_report(report: BenchReport) -> str:
    """The report as Markdown: a header, then one table per kind of measurement, then the targets."""
    o, m = report.options, report.machine
    lines = [
        f"blazeconv bench — {m['date']}, {m['cpu']}, {m['cores']} cores; {m['threads']} thread(s) unless stated",
        f"python {m['python']}, torch {m['torch']}, numpy {m['numpy']}, ai-edge-litert {m['ai-edge-litert']}, "
        f"onnxruntime {m['onnxruntime']}, openvino {m['openvino']}, pillow {m['pillow']}, blazeconv {m['blazeconv']}",
        f"medians of {o.rounds} rounds (batch {o.batch_size}: {max(3, o.rounds // 4)}) after {o.warmup} warm-up, "
        f"{o.clock} clock, contenders interleaved; input: {o.photo.name} letterboxed; fast start-up: compiling "
        f"for batch 1 and {o.batch_size}, after the process's one-time {report.fast_init_s:.1f} s (first compile ever)",
        *(f"note: {note}" for note in report.notes),
    ]
    others = [c for c in report.backends if c != "litert"]
    lines += [
        "",
        f"Network, ms per image (× LiteRT). Batch: 1; {o.batch_size} in one call; {o.batch_size} × 1: {o.batch_size} calls at batch 1 "
        f"(how the ONNX runners run a batch on the CPU). LiteRT's graph has batch 1 fixed: its batch {o.batch_size} is "
        f"{o.batch_size} invocations.",
        "",
        "| variant | batch | " + " | ".join(_LABELS[c] for c in report.backends) + " |",
        "|---|---:|" + "---:|" * len(report.backends),
    ]
    for r in report.networks:
        cells = [f"{r.ms['litert']:.3f}"] + [f"{r.ms[c]:.3f} ({_ratio(r.ms[c], r.ms['litert'])})" for c in others]
        lines.append(f"| {r.variant} | {_MODES[r.mode].format(b=r.batch)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Start-up per model, seconds (LiteRT: interpreter; fast start-up: compiling both shapes; ONNX Runtime: "
        "session from the cached export; OpenVINO: read and compile), and the largest |difference| of the raw "
        f"outputs from LiteRT's on {o.photo.name}:",
        "",
        "| variant | " + " | ".join(f"{_LABELS[c].replace('fast', 'fast start-up')}" for c in report.backends)
        + " | " + " | ".join(f"max diff {c}" for c in others) + " |",
        "|---|" + "---:|" * (len(report.backends) + len(others)),
    ]
    for p in report.pipelines:
        cells = [f"{p.startup_s[c]:.2f} s" if c in p.startup_s else "—" for c in report.backends]
        cells += [f"{p.max_diff[c]:.1e}" for c in others]
        lines.append(f"| {p.variant} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Per image on {o.photo.name} (decoded, {_size(o.photo)}): decode + score threshold + weighted NMS of the raw "
        "outputs (candidates: anchors above the score threshold), alone (repeated, warm caches) and in turn with the "
        "others; `FaceDetector` end to end on the decoded array (letterbox, network, post-processing) per backend, "
        "× LiteRT's network + our post-processing (alone) and × MediaPipe's Tasks-API FaceDetector on the same array "
        "(short_range's file; its own process, timed in turn with ours, round by round).",
        "",
        "| variant | anchors | candidates | decode + NMS ms | in turn | LiteRT + post ms | MediaPipe ms | "
        + " | ".join(f"{_LABELS[c]} detect ms" for c in others) + " |",
        "|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(others),
    ]
    for p in report.pipelines:
        mp = f"{p.mediapipe_ms:.3f}" if p.mediapipe_ms else "—"
        cells = []
        for c in others:
            cell = f"{p.detect_ms[c]:.3f} ({_ratio(p.detect_ms[c], p.reference_ms)}"
            cell += f"; {_ratio(p.detect_ms[c], p.mediapipe_ms)} MP)" if p.mediapipe_ms else ")"
            cells.append(cell)
        lines.append(f"| {p.variant} | {p.anchors} | {p.candidates} | {p.post_ms:.3f} | {p.post_in_turn_ms:.3f} | "
                     f"{p.reference_ms:.3f} | {mp} | " + " | ".join(cells) + " |")
    faces = {p.variant: p.faces for p in report.pipelines}
    lines += ["", "Faces found on the photo: " + "; ".join(
        f"{v}: " + ", ".join(f"{_LABELS.get(c, c)} {n}" for c, n in f.items()) for v, f in faces.items())]
    if report.folder:
        reference = next((r for r in report.folder if r.contender == "mediapipe"), None)
        lines += [
            "",
            f"`blazeconv detect FOLDER --backend X` on {report.folder[0].images} files (the photos of "
            f"{o.photos_dir.name}/ repeated), whole process (start-up and decoding included), one process each, in "
            "turn; MediaPipe: its FaceDetector over the same files one after another in a plain loop. Peak memory: "
            "the process's maximum resident set.",
            "",
            "| process | seconds | images/s | CPU s | peak MiB | × MediaPipe images/s |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in report.folder:
            versus = f"{r.images_per_second / reference.images_per_second:.2f}×" if reference else "—"
            lines.append(f"| {_LABELS.get(r.contender, r.contender)} | {r.seconds:.2f} | {r.images_per_second:.0f} | "
                         f"{r.cpu_seconds:.2f} | {r.peak_mib:.0f} | {versus} |")
    if report.big_photos:
        backend = "the fastest installed backend"
        lines += [
            "",
            f"Big photos: `blazeconv detect FOLDER` ({backend}) on {o.big_photos} JPEGs per size, made from the photos "
            "(scaled up to cover the size, quality 90), whole process, one process each, in turn; MediaPipe: its "
            "FaceDetector over the same files one after another. exact: MediaPipe's own processing (--exact); "
            "default: detect's defaults (the scales the picture needs, JPEG DCT scaling); annotate: the defaults and "
            "--annotate (a JPEG with boxes per photo, quality 90); no-tile: the whole picture only, DCT scaling.",
            "",
        ]
        lines += _process_table("size", "images/s", ".1f", report.big_photos, "mediapipe")
    lines += _video_lines(report)
    lines += _blur_lines(report)
    if report.one_photo:
        lines += [
            "",
            f"`blazeconv detect one.jpg --backend X` ({o.photo.name} as a JPEG), whole process with a warm cache, "
            f"median of {o.one_photo_runs} run(s) in turn:",
            "",
            "| backend | seconds | CPU s | peak MiB |",
            "|---|---:|---:|---:|",
        ]
        for r in report.one_photo:
            lines.append(f"| {_LABELS.get(r.contender, r.contender)} | {r.seconds:.2f} | {r.cpu_seconds:.2f} | "
                         f"{r.peak_mib:.0f} |")
    if report.stages:
        labels = list(report.stages[0].seconds)
        lines += [
            "",
            "Conversion stages, ms, in a warm process (read: flatbuffer parse with dequantise/densify; derive: "
            "dataflow walk and state_dict; save: the .pth; load: `load_model`):",
            "",
            "| variant | " + " | ".join(labels) + " | total |",
            "|---|" + "---:|" * (len(labels) + 1),
        ]
        for s in report.stages:
            cells = " | ".join(f"{s.seconds[label] * 1e3:.1f}" for label in labels)
            lines.append(f"| {s.variant} | {cells} | {sum(s.seconds.values()) * 1e3:.1f} |")
    lines += ["", *format_targets(report), "", f"benchmark run time {report.seconds:.0f} s"]
    return "\n".join(lines)


def _blur_lines(report: BenchReport) -> list[str]:
    """The blur-against-deface table (none without its rows)."""
    if not report.blur:
        return []
    from .anonymise import blur_table

    return ["", "Anonymise: `blazeconv blur CLIP -o OUT.mp4` with each option set, and deface's own CLI (its defaults, "
            "from its environment), whole process each, in turn; faces: deface's detector (CenterFace) with score >= "
            "0.5 on the input; hidden: their share whose detail is gone from the output (`bench.hiding`).", "",
            *blur_table(report.blur)]


def _video_lines(report: BenchReport) -> list[str]:
    """The video table (none without video rows): per clip, each process's seconds, frames/s, CPU, peak memory and
    its time over MediaPipe's."""
    if not report.videos:
        return []
    lines = [
        "",
        "Videos: `blazeconv detect CLIP --quiet` (the fastest installed backend), whole process (start-up, decoding "
        "and writing included), one process each, in turn; detect: every frame, detect's defaults (the scales the "
        "frame needs); exact: --exact (MediaPipe's processing); annotate: the defaults with --annotate "
        "DIR (what detect writes there for a video); blur: `blazeconv blur CLIP -o OUT.mp4` with its defaults; "
        "MediaPipe: its FaceDetector in VIDEO mode (`detect_for_video`) over the same PyAV frames (decoded with frame "
        "threading, RGB, turned upright), one after another. Decoded: the video frames the process decoded "
        "(`video.frames_decoded`; one pass decodes each frame once).",
        "",
    ]
    return lines + _process_table("clip", "frames/s", ".0f", report.videos, "mediapipe video", decoded=True)


def _process_table(group: str, rate: str, rate_format: str, groups: dict, reference: str,
                   decoded: bool = False) -> list[str]:
    """A whole-process table: per group (a photo size, a clip) each process's seconds, rate (``rate_format``), CPU
    seconds, peak memory, with ``decoded`` the frames it decoded, and its time over the ``reference`` contender's in
    the same group."""
    extra = (" decoded |", "---:|") if decoded else ("", "")
    lines = [f"| {group} | process | seconds | {rate} | CPU s | peak MiB |{extra[0]} × MediaPipe's time |",
             f"|---|---|---:|---:|---:|---:|{extra[1]}---:|"]
    for label, rows in groups.items():
        base = next((r for r in rows if r.contender == reference), None)
        for r in rows:
            versus = f"{r.seconds / base.seconds:.2f}×" if base else "—"
            count = (f" {r.decoded} |" if r.decoded is not None else " — |") if decoded else ""
            lines.append(f"| {label} | {_LABELS.get(r.contender, r.contender)} | {r.seconds:.2f} | "
                         f"{format(r.images_per_second, rate_format)} | {r.cpu_seconds:.2f} | {r.peak_mib:.0f} |{count} "
                         f"{versus} |")
    return lines


def _size(photo: Path) -> str:
    from PIL import Image

    with Image.open(photo) as image:
        return f"{image.width}×{image.height}"


def format_targets(report: BenchReport) -> list[str]:
    """The targets against this run's figures: what was measured and the ratio to the target."""
    lines = ["Targets (this run):", "", "| target | measured | ratio to target |", "|---|---|---:|"]
    shipped = [c for c in report.backends if c not in ("litert", "fast")]  # what FaceDetector(backend=...) runs
    for row in (r for r in report.networks if r.mode == "1"):
        best = min(shipped, key=lambda c: row.ms[c])
        lines.append(f"| fastest backend ≤ 1.0× LiteRT at batch 1, {row.variant} | {_LABELS[best]} "
                     f"{row.ratio(best):.2f}× | {row.ratio(best):.2f} |")
    for p in (p for p in report.pipelines if p.mediapipe_ms):
        best = min((c for c in p.detect_ms if c != "fast"), key=lambda c: p.detect_ms[c])
        ratio = p.detect_ms[best] / p.mediapipe_ms
        lines.append(f"| FaceDetector ≤ 1.0× MediaPipe end to end, {p.variant} | {_LABELS[best]} "
                     f"{p.detect_ms[best]:.3f} ms vs {p.mediapipe_ms:.3f} ms | {ratio:.2f} |")
    reference = next((r for r in report.folder if r.contender == "mediapipe"), None)
    ours = [r for r in report.folder if r.contender != "mediapipe"]
    if reference and ours:
        best = max(ours, key=lambda r: r.images_per_second)
        speedup = best.images_per_second / reference.images_per_second
        lines.append(f"| detect on {best.images} files ≥ {TARGET_FOLDER_SPEEDUP:g}× MediaPipe's images/s | "
                     f"{_LABELS[best.contender]} {speedup:.2f}× | {TARGET_FOLDER_SPEEDUP / speedup:.2f} |")
        lines.append(f"| … at ≤ {TARGET_FOLDER_PEAK_MIB:g} MiB peak | {best.peak_mib:.0f} MiB | "
                     f"{best.peak_mib / TARGET_FOLDER_PEAK_MIB:.2f} |")
    if report.one_photo:
        best = min(report.one_photo, key=lambda r: r.seconds)
        lines.append(f"| detect one.jpg ≤ {TARGET_ONE_PHOTO_S:g} s (warm cache) | {_LABELS[best.contender]} "
                     f"{best.seconds:.2f} s | {best.seconds / TARGET_ONE_PHOTO_S:.2f} |")
    lines.append("")
    lines.append("Ratio to target: measured / target (≤ 1 meets it; for images/s, target / measured).")
    return lines
