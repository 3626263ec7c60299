"""What the tests share that is not a fixture: the repository's paths, the reference runtime, assertions."""

from __future__ import annotations

import getpass
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
MODELS = REPO / "blazeconv" / "models"
IMAGE_PATHS = sorted((DATA / "images").glob("*.png"))
# The 128 and 256 px models of the core toolchain, and every shipped model.
CORE_VARIANTS = ["front", "short_range", "back"]
ALL_VARIANTS = [*CORE_VARIANTS, "full_range", "full_range_sparse"]
# What the quick tier (``pytest -m "not slow"``, make test-quick) runs of a parametrisation over every variant: each
# variant costs an export per backend, and the code under test is the same for all of them.
QUICK_VARIANTS = ["short_range"]
# ... and of one over every test photo: the photo of one face.
QUICK_IMAGES = [DATA / "images" / "1face.png"]


def tiered(values, quick) -> list:
    """``values`` for ``pytest.mark.parametrize`` with those not in ``quick`` marked ``slow``: the quick tier runs
    ``quick``, ``make test`` every value. Each value is one argument (a tuple stays one)."""
    import pytest

    return [value if value in quick else pytest.param(value, marks=pytest.mark.slow) for value in values]


def model_path(variant: str) -> Path:
    from blazeconv.variants import get_variant

    return MODELS / get_variant(variant).tflite_file


def litert_outputs(tflite_path: Path, batch_nhwc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run LiteRT (XNNPACK, 1 thread) image by image: ``(regressors (B, N, 16), classificators (B, N, 1))``.

    Outputs are picked by shape, not by index.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite_path), num_threads=1)
    interpreter.allocate_tensors()
    regressors, classificators = [], []
    for image in batch_nhwc:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image[None].astype(np.float32))
        interpreter.invoke()
        by_width = {d["shape"][-1]: interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()}
        regressors.append(by_width[16][0])
        classificators.append(by_width[1][0])
    return np.stack(regressors), np.stack(classificators)


def plain_input(image_path: Path, size: int) -> np.ndarray:
    """``(size, size, 3)`` float32 in [-1, 1]: the photo squashed to the model size (parity needs the same input, not a letterbox)."""
    from PIL import Image

    with Image.open(image_path) as image:
        rgb = image.convert("RGB").resize((size, size), Image.BILINEAR)
    return np.asarray(rgb, dtype=np.float32) / 127.5 - 1.0


def mediapipe_pixel_box(box, width: int, height: int) -> np.ndarray:
    """A 0..1 ``(xmin, ymin, xmax, ymax)`` box as MediaPipe's Tasks API reports it, in pixels ``(xmin, ymin, xmax,
    ymax)``: origin and size each truncated to int and clamped to 0..size (mediapipe/calculators/util/
    detection_transformation_calculator.cc, ``ConvertRelativeBoundingBoxToBoundingBox``)."""
    xmin, ymin, xmax, ymax = box

    def bounded(value: float, upper: int) -> int:
        return min(max(int(value), 0), upper)  # int(): towards zero, as static_cast<int>

    left, top = bounded(xmin * width, width), bounded(ymin * height, height)
    return np.array([left, top, left + bounded((xmax - xmin) * width, width),
                     top + bounded((ymax - ymin) * height, height)], dtype=np.float64)


def assert_same_faces_as_mediapipe(ours, theirs: list[dict], width: int, height: int, where: str, *, box_px: float,
                                   keypoint_px: float, score: float) -> None:
    """``ours`` (``Detection``s) against MediaPipe Tasks' ``theirs`` (the worker's records: ``score``, ``box`` and
    ``keypoints`` in 0..1, the box in whole pixels): the same number of faces; each of MediaPipe's matched to the
    nearest of ours (by keypoints), then boxes (ours through ``mediapipe_pixel_box``) and keypoints within
    ``box_px``/``keypoint_px`` pixels and scores within ``score``."""
    assert len(ours) == len(theirs), f"{where}: {len(ours)} faces, MediaPipe {len(theirs)}"
    scale = np.array([width, height])
    left = list(ours)
    for k, expected in enumerate(theirs):
        points = np.array(expected["keypoints"]) * scale  # (6, 2) pixels
        found = min(left, key=lambda d: np.abs(np.array(d.keypoints) * scale - points).max())
        left.remove(found)
        np.testing.assert_allclose(mediapipe_pixel_box(found.box, width, height),
                                   np.array(expected["box"]) * np.tile(scale, 2), atol=box_px, rtol=0,
                                   err_msg=f"{where}, face {k}: box (px)")
        np.testing.assert_allclose(np.array(found.keypoints) * scale, points, atol=keypoint_px, rtol=0,
                                   err_msg=f"{where}, face {k}: keypoints (px)")
        np.testing.assert_allclose(found.score, expected["score"], atol=score, rtol=0,
                                   err_msg=f"{where}, face {k}: score")


# What other libraries keep in the temporary folder by design, reused from run to run (not blazeconv's leftovers):
# ONNX Runtime's telemetry SDK writes ``.ses`` (51 bytes) when it is imported, and torch.export (the ONNX exporter)
# keeps its compile cache in ``torchinductor_<user>``.
THIRD_PARTY_FILES = {".ses", f"torchinductor_{getpass.getuser()}"}


def assert_same_outputs(actual: np.ndarray, expected: np.ndarray, atol: float, rtol: float) -> None:
    """Shapes first, then an elementwise bound that prints the worst elements on failure."""
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, atol=atol, rtol=rtol)


def iou(a, b) -> float:
    """Intersection over union of two ``(xmin, ymin, xmax, ymax)`` boxes (any one unit); 0 when neither has area.

    A plain reference for the tests, apart from the library's vectorised ``iou_matrix``."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def assert_same_faces(found, expected, min_iou: float, max_score_difference: float | None = None) -> None:
    """The same number of faces (``Detection``s), each expected face matched one to one with the found face whose
    box overlaps it most: box IoU at least ``min_iou`` and, unless None, scores within ``max_score_difference``."""
    assert len(found) == len(expected), f"{len(found)} faces found, {len(expected)} expected: {found}, {expected}"
    unmatched = list(found)
    for k, face in enumerate(expected):
        best = max(unmatched, key=lambda f: iou(f.box, face.box))
        unmatched.remove(best)
        overlap = iou(best.box, face.box)
        assert overlap >= min_iou, f"face {k}: box {best.box} vs {face.box}, IoU {overlap}"
        if max_score_difference is not None:
            assert abs(best.score - face.score) <= max_score_difference, f"face {k}: score {best.score} vs {face.score}"


def load_model_from(converted, variant: str = "front"):
    """The PyTorch module of ``converted(variant)`` (the session fixture's conversion), its variant attached."""
    from blazeconv.network import model_from_state_dict
    from blazeconv.variants import VARIANTS

    module = model_from_state_dict(converted(variant).state_dict)
    module.variant = VARIANTS[variant]
    return module


def assert_one_line_error(code: int, err: str, culprit, expected_code: int) -> None:
    """A failure is exactly one ``Error:`` line naming the culprit, a non-zero code, no traceback (notices such as
    ``blazeconv: preparing short_range for first use`` may come before it)."""
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("blazeconv: ")]
    assert code == expected_code, err
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    assert str(culprit) in lines[0]
    assert "Traceback" not in err


def jsonl_records(path) -> list[dict]:
    """The per-image records of a ``detect --jsonl`` file (its first line, the settings record, left out)."""
    import json

    lines = [json.loads(line) for line in Path(path).read_text().splitlines()]
    return [line for line in lines if "blazeconv_settings" not in line]


def pyav_frames(path) -> list[tuple[float, np.ndarray]]:
    """Every frame of the first video stream as PyAV gives it: ``(pts x time base, (H, W, 3) uint8 RGB)``."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [(float(f.pts * stream.time_base), f.to_ndarray(format="rgb24")) for f in container.decode(stream)]


def copy_audio(source, out, audio) -> None:
    """Mux the packets of the first audio stream of the open PyAV container ``source``, undecoded, into ``out`` as
    its stream ``audio`` (made with ``out.add_stream_from_template`` before the first packet was muxed)."""
    for packet in source.demux(source.streams.audio[0]):
        if packet.dts is not None:  # the demuxer's final flush packet
            packet.stream = audio
            out.mux(packet)


def write_clip(path, frames, pts, time_base=None, audio_from=None) -> None:
    """An H.264 clip of ``frames`` (``(H, W, 3)`` uint8 RGB) at ``pts`` (in ``time_base``, default 1/1000 s), with
    the first audio stream of the file ``audio_from`` copied (PyAV)."""
    import av

    time_base = time_base or Fraction(1, 1000)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.time_base = stream.codec_context.time_base = time_base
        audio = source = None
        if audio_from is not None:
            source = av.open(str(audio_from))
            audio = out.add_stream_from_template(source.streams.audio[0])
        for image, stamp in zip(frames, pts):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = stamp, time_base
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if source is not None:
            copy_audio(source, out, audio)
            source.close()
