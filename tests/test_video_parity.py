"""Videos against MediaPipe: ``stream_video`` frame for frame against MediaPipe's Tasks FaceDetector in VIDEO mode
(golden answers in ``tests/data/mediapipe_video.json``), against ``FaceDetector`` on the same PyAV frames, and on a
clip whose display matrix turns it upright.

MediaPipe's Tasks API reports whole-pixel boxes: its DetectionTransformationCalculator truncates ``xmin * W`` and
``width * W`` (and y) to int and clamps them to 0..W, so its ``xmax`` can be up to 2 px short of the box it
computed. Our boxes are put through the same conversion before they are compared (``helpers.mediapipe_pixel_box``);
keypoints and scores are MediaPipe's own floats.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import DATA, QUICK_VARIANTS, assert_same_faces_as_mediapipe, tiered

av = pytest.importorskip("av")

from blazeconv import FaceDetector  # noqa: E402 (after the skip)
from blazeconv.detection.settings import Sampling  # noqa: E402
from blazeconv.detection.video import stream_video  # noqa: E402

GOLDEN = json.loads((DATA / "mediapipe_video.json").read_text())["clips"]
CASES = [(clip, variant) for clip, variants in GOLDEN.items() for variant in variants]
BACKENDS = ["torch", "onnxruntime"]
# The tolerances against MediaPipe: pixels of the frame, and score. Measured on both backends, every clip and
# variant: boxes (MediaPipe's whole pixels) within 1 px, keypoints within 4e-4 px, scores equal.
BOX_PX, KEYPOINT_PX, SCORE = 1.5, 1.5, 0.002


def decoded_frames(path) -> list[np.ndarray]:
    """Every frame of the first video stream as PyAV stores it: ``(H, W, 3)`` uint8 RGB, no rotation applied."""
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("clip", "variant"), [case if case[1] in QUICK_VARIANTS else pytest.param(*case, marks=pytest.mark.slow)
                                              for case in CASES])
def test_stream_video_matches_mediapipe_video_mode(runner, clip, variant, backend):
    expected = GOLDEN[clip][variant]
    results = list(stream_video(runner(backend, variant), DATA / "videos" / clip, exact=True))
    assert [r.frame for r in results] == list(range(len(expected)))
    for result, theirs in zip(results, expected):
        assert_same_faces_as_mediapipe(result.detections, theirs, result.width, result.height, f"{clip} frame {result.frame}",
                                       box_px=BOX_PX, keypoint_px=KEYPOINT_PX, score=SCORE)


def test_the_golden_file_has_faces_to_compare():
    """Each clip and model of the golden file has frames with faces (a file of empty frames would prove nothing)."""
    for clip, variant in CASES:
        assert sum(map(len, GOLDEN[clip][variant])) >= len(GOLDEN[clip][variant]) // 2, (clip, variant)


# torch's batched convolutions can differ from batch 1 in the last bit (full_range_sparse: 1-2e-7), so torch is
# compared at batch 1 here; the ONNX runners run every image as a batch-1 call whatever the batch size.
@pytest.mark.parametrize(("backend", "batch_size"), [("torch", 1), ("onnxruntime", 32)])
@pytest.mark.parametrize("variant", tiered(["short_range", "full_range_sparse"], QUICK_VARIANTS))
def test_frame_k_is_face_detector_on_frame_k(runner, variant, backend, batch_size):
    clip = DATA / "videos" / "asl_again.mkv"
    model = runner(backend, variant)
    # The defaults on both sides: the scales each frame needs, a frame's tiles run batch_size at a time.
    detector = FaceDetector(model, variant=variant, batch_size=batch_size)
    frames = decoded_frames(clip)
    results = list(stream_video(model, clip, batch_size=batch_size, sampling=Sampling(every=5)))  # 16 frames, 13 inputs each
    assert [r.frame for r in results] == list(range(0, len(frames), 5))
    for result in results:
        frame = frames[result.frame]
        assert (result.width, result.height) == (frame.shape[1], frame.shape[0])
        assert result.detections == detector(frame), f"frame {result.frame}"


@pytest.fixture(scope="module")
def rotated_clip(tmp_path_factory):
    """The first 12 frames of asl_again.mkv stored sideways (turned clockwise, 480x640) in an MP4 whose display
    matrix turns them back (90 degrees counter-clockwise), as phones store portrait video."""
    path = tmp_path_factory.mktemp("rotated") / "rotated.mp4"
    with av.open(str(DATA / "videos" / "asl_again.mkv")) as source, av.open(str(path), "w") as output:
        stream = output.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 480, 640, "yuv420p"
        stream.set_display_rotation(90)
        for k, frame in enumerate(source.decode(video=0)):
            if k == 12:
                break
            sideways = np.ascontiguousarray(np.rot90(frame.to_ndarray(format="rgb24"), -1))  # (640, 480, 3)
            for packet in stream.encode(av.VideoFrame.from_ndarray(sideways, format="rgb24")):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return path


def test_a_rotated_clip_is_detected_upright(runner, rotated_clip):
    model = runner("onnxruntime", "short_range")
    detector = FaceDetector(model, variant="short_range", exact=True)
    stored = decoded_frames(rotated_clip)  # (640, 480, 3): as stored, sideways
    results = list(stream_video(model, rotated_clip, exact=True))
    assert len(results) == len(stored) == 12
    for result, frame in zip(results, stored):
        assert (result.width, result.height) == (frame.shape[0], frame.shape[1]) == (640, 480)
        assert result.detections == detector(np.rot90(frame, 1)), f"frame {result.frame}"
        assert len(result.detections) == 1, f"frame {result.frame}: the signer's face, upright"
