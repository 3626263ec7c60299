"""A blurred output identifies no one: every metadata field of each output kind is listed and checked against a
written allow-list, from inputs rich in metadata (issue 25, outcome 1; exiftool's ``-all=`` and MAT2's list of places
metadata hides are the reference for what "no metadata" means).

Photos are read at the byte level (JPEG segments up to the scan, PNG chunks, WebP RIFF chunks: nothing a reader
library hides from us) and through Pillow (``info``, EXIF). Videos through PyAV: container tags, each stream's type
and tags, chapters. Every output is also searched, byte for byte, for its source's path and name and for each
identifying value planted in the input.
"""

from __future__ import annotations

import os
import re
import struct
from fractions import Fraction
from pathlib import Path

import pytest
from helpers import DATA, assert_one_line_error, pyav_frames
from PIL import Image

av = pytest.importorskip("av")

import blazeconv  # noqa: E402
from blazeconv.anonymise import KEPT_EXIF, detector_for  # noqa: E402
from blazeconv.marks import BLURRED  # noqa: E402

PHOTO = DATA / "images" / "3faces.png"
AUDIO = DATA / "videos" / "nasa_13013.mp4"
CLIP = DATA / "videos" / "asl_again.mkv"
SECRET = "JaneDoeSecret"  # in every identifying value planted in an input
GPS = "+48.8577+002.2950/"

# ------------------------------------------------------------------------------------------------ the allow-lists
# Photos: (segment or chunk, what its payload must be) -> allowed. Structural JPEG markers (DQT, SOFn, DHT, DRI,
# SOS) and PNG/WebP image chunks carry pixels, not metadata.
JPEG_STRUCTURE = {0xDB, 0xC0, 0xC1, 0xC2, 0xC4, 0xDD, 0xDA}
PNG_STRUCTURE = {b"IHDR", b"PLTE", b"IDAT", b"IEND"}
WEBP_STRUCTURE = {b"VP8 ", b"VP8L", b"VP8X", b"ALPH"}
# Kept only with --keep-metadata: the EXIF tags of KEPT_EXIF, the ICC profile.
KEPT_PHOTO = {"JPEG": {"APP1 Exif", "APP2 ICC_PROFILE"}, "PNG": {b"eXIf", b"iCCP"}, "WEBP": {b"EXIF", b"ICCP"}}
# Pillow's own readings of the header (JFIF density; WebP's animation defaults, which every WebP reports).
PILLOW_INFO = {"jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi", "comment", "Comment", "loop", "background"}
PILLOW_KEPT_INFO = {"exif", "icc_profile"}
# Videos: tags the muxer writes (the same for every output) and the mark; per stream the language code only.
CONTAINER_TAGS = {"major_brand": r"isom|qt  ", "minor_version": r"\d+", "compatible_brands": r"[a-z0-9 ]+",
                  "encoder": r"Lavf[\d.]*", "comment": re.escape(BLURRED)}
STREAM_TAGS = {"language": r"[a-z]{3}", "handler_name": r"VideoHandler|SoundHandler", "vendor_id": r"FFMP|(\[0\]){4}",
               "duration": r"\d\d:\d\d:\d\d\.\d+"}


# ------------------------------------------------------------------------------------------------ inputs
def _rich_jpeg(path: Path) -> None:
    """A JPEG with EXIF (owner, artist, serial numbers, description, software, GPS), XMP, IPTC (APP13), a COM and an
    ICC profile, each naming ``SECRET`` or the path."""
    from PIL import ImageCms

    exif = Image.Exif()
    exif.update({0x010F: "CameraMaker", 0x0110: "CameraModel", 0x010E: str(path), 0x013B: f"{SECRET} artist",
                 0x8298: f"{SECRET} copyright", 0x0131: f"{SECRET} software", 0x013C: f"{SECRET} host"})
    exif.get_ifd(0x8769).update({0x829D: 2.8, 0xA430: f"{SECRET} owner", 0xA431: f"{SECRET}serial",
                                 0xA420: f"{SECRET}uniqueid", 0xA435: f"{SECRET}lensserial"})
    exif.get_ifd(0x8825).update({1: "N", 2: (48.0, 51.0, 27.7)})
    xmp = f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><dc:creator>{SECRET}</dc:creator><loc>{GPS}</loc></x:xmpmeta>'
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.open(PHOTO).convert("RGB").save(path, exif=exif.tobytes(), xmp=xmp.encode(), comment=str(path).encode(),
                                          icc_profile=icc, quality=95)
    data = path.read_bytes()
    iptc = b"Photoshop 3.0\x008BIM\x04\x04\x00\x00" + struct.pack(">I", 20) + b"\x1c\x02\x50\x00\x0e" + \
        SECRET.encode() + b"x"
    path.write_bytes(data[:2] + b"\xff\xed" + struct.pack(">H", len(iptc) + 2) + iptc + data[2:])


def _rich_png(path: Path) -> None:
    """A PNG with tEXt, iTXt and zTXt chunks (the path, ``SECRET``), EXIF with GPS and an ICC profile."""
    from PIL import ImageCms, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Title", str(path))
    info.add_text("Author", f"{SECRET} author", zip=True)  # zTXt
    info.add_itxt("Description", f"{SECRET} description", lang="en", tkey="Description")
    exif = Image.Exif()
    exif.update({0x010F: "CameraMaker", 0x013B: f"{SECRET} artist"})
    exif.get_ifd(0x8825).update({1: "N", 2: (48.0, 51.0, 27.7)})
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.open(PHOTO).convert("RGB").save(path, pnginfo=info, exif=exif.tobytes(), icc_profile=icc)


def _rich_video(path: Path, container_format: str) -> int:
    """A 10-frame H.264 clip of faces with AAC audio and metadata everywhere: container tags (title, comment with the
    path, artist, creation time, GPS ``location``), a chapter, stream titles and handler names; Matroska also gets
    two audio tracks, a WebVTT subtitle stream and an attachment. Returns its number of audio streams."""
    frames = pyav_frames(CLIP)[:10]
    planted = {"title": f"{SECRET} title", "comment": str(path), "artist": f"{SECRET} artist",
               "creation_time": "2020-01-02T03:04:05.000000Z", "location": GPS}
    matroska = container_format == "matroska"
    with av.open(str(AUDIO)) as sound, av.open(str(path), "w", format=container_format) as out:
        out.metadata.update(planted)
        video = out.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = frames[0][1].shape[1], frames[0][1].shape[0], "yuv420p"
        video.metadata.update({"title": f"{SECRET} camera", "handler_name": f"{SECRET} handler", "language": "fra"})
        audios = []
        for k in range(2 if matroska else 1):
            audio = out.add_stream_from_template(sound.streams.audio[0])
            audio.metadata.update({"title": f"{SECRET} voice {k}", "handler_name": f"{SECRET} sound",
                                   "language": "eng"})
            audios.append(audio)
        subtitle = None
        if matroska:
            subtitle = out.add_stream("webvtt")
            subtitle.codec_context.subtitle_header = b"WEBVTT"
            subtitle.metadata.update({"title": f"{SECRET} subtitles", "language": "eng"})
            out.add_attachment(f"{SECRET}.txt", "text/plain", f"{SECRET} notes".encode())
        out.set_chapters([{"id": 1, "start": 0, "end": 400, "time_base": Fraction(1, 1000),
                           "metadata": {"title": f"{SECRET} chapter"}}])
        for index, (_, image) in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = index
            out.mux(video.encode(frame))
        out.mux(video.encode())
        for packet in sound.demux(sound.streams.audio[0]):
            if packet.dts is None or packet.pts * packet.time_base > 0.4:
                break
            for audio in audios:
                copy = av.Packet(bytes(packet))
                copy.pts, copy.dts, copy.time_base, copy.stream = packet.pts, packet.dts, packet.time_base, audio
                out.mux(copy)
        if subtitle is not None:
            cue = av.Packet(f"{SECRET} says hello".encode())
            cue.pts = cue.dts = 0
            cue.duration, cue.time_base, cue.stream = 300, Fraction(1, 1000), subtitle
            out.mux(cue)
    return len(audios)


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    """The rich inputs, in a folder and under names that identify someone (the path must not travel)."""
    folder = tmp_path_factory.mktemp("private") / "jane_doe_patients"
    folder.mkdir()
    made = {".jpg": folder / "john_smith_portrait.jpg", ".png": folder / "john_smith_scan.png"}
    _rich_jpeg(made[".jpg"])
    _rich_png(made[".png"])
    for suffix, container_format in ((".mov", "mov"), (".mp4", "mp4"), (".mkv", "matroska")):
        made[suffix] = folder / f"john_smith_interview{suffix}"
        _rich_video(made[suffix], container_format)
    return made


def test_the_inputs_are_rich_in_metadata(sources):
    """The test inputs hold what the outputs must not: otherwise the checks below prove nothing."""
    with Image.open(sources[".jpg"]) as image:
        exif = image.getexif()
        assert exif.get_ifd(0x8825) and exif.get_ifd(0x8769)[0xA430].startswith(SECRET)
        assert "xmp" in image.info and image.info["comment"] and "icc_profile" in image.info
    assert {"APP13 Photoshop 3.0", "APP1 Exif", "COM"} <= {name for name, _ in _jpeg_segments(sources[".jpg"])}
    assert {b"tEXt", b"zTXt", b"iTXt", b"eXIf"} <= {kind for kind, _ in _png_chunks(sources[".png"])}
    with av.open(str(sources[".mkv"])) as container:
        assert [s.type for s in container.streams] == ["video", "audio", "audio", "subtitle", "attachment"]
        assert container.chapters() and container.metadata["LOCATION"] == GPS
    with av.open(str(sources[".mov"])) as container:
        assert container.chapters() and container.metadata["location"] == GPS


# ------------------------------------------------------------------------------------------------ readers
def _jpeg_segments(path: Path) -> list[tuple[str, bytes]]:
    """Every segment before the scan that is not pixel structure: ``("APPn <identifier>", payload)``, ``("COM",
    payload)``, or ``("marker 0xNN", payload)`` for any other."""
    data = path.read_bytes()
    assert data[:2] == b"\xff\xd8"
    found, at = [], 2
    while at < len(data):
        assert data[at] == 0xFF, f"{path}: no marker at byte {at}"
        marker = data[at + 1]
        length = struct.unpack(">H", data[at + 2: at + 4])[0]
        payload = data[at + 4: at + 2 + length]
        if marker == 0xDA:  # the scan: pixels until EOI
            break
        if 0xE0 <= marker <= 0xEF:
            identifier = payload.split(b"\0")[0].decode("latin-1")
            found.append((f"APP{marker - 0xE0} {identifier}", payload))
        elif marker == 0xFE:
            found.append(("COM", payload))
        elif marker not in JPEG_STRUCTURE:
            found.append((f"marker 0x{marker:02X}", payload))
        at += 2 + length
    return found


def _png_chunks(path: Path) -> list[tuple[bytes, bytes]]:
    """Every chunk of a PNG: ``(type, data)``."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    found, at = [], 8
    while at < len(data):
        length = struct.unpack(">I", data[at: at + 4])[0]
        found.append((data[at + 4: at + 8], data[at + 8: at + 8 + length]))
        at += 12 + length
    return found


def _webp_chunks(path: Path) -> list[bytes]:
    """Every chunk type of a WebP's RIFF container."""
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    found, at = [], 12
    while at + 8 <= len(data):
        kind, size = data[at: at + 4], struct.unpack("<I", data[at + 4: at + 8])[0]
        found.append(kind)
        at += 8 + size + (size & 1)
    return found


def _photo_fields(path: Path) -> set:
    """The metadata fields of a photo output, by its format, as a set of names (pixel structure left out)."""
    with Image.open(path) as image:
        kind = image.format
    if kind == "JPEG":
        fields = set()
        for name, payload in _jpeg_segments(path):
            if name == "COM" or name.startswith("APP0 "):
                assert payload.rstrip(b"\0") == BLURRED.encode() if name == "COM" else payload[:5] == b"JFIF\0", name
            fields.add(name)
        return fields - {"COM", "APP0 JFIF"}
    if kind == "PNG":
        fields = set()
        for chunk, payload in _png_chunks(path):
            if chunk == b"tEXt":
                assert payload == b"Comment\0" + BLURRED.encode(), payload
            elif chunk not in PNG_STRUCTURE:
                fields.add(chunk)
        return fields
    return set(_webp_chunks(path)) - WEBP_STRUCTURE


def _assert_kept_exif_only(path: Path) -> None:
    with Image.open(path) as image:
        exif = image.getexif()
        assert set(exif) <= set(KEPT_EXIF["IFD0"]) | {0x8769}, sorted(set(exif) - set(KEPT_EXIF["IFD0"]))
        assert set(exif.get_ifd(0x8769)) <= set(KEPT_EXIF["Exif"])
        assert not exif.get_ifd(0x8825) and exif.get(0x0112, 1) == 1


def _assert_nothing_telling(target: Path, source: Path) -> None:
    """Neither the source's path nor its name nor any planted value appears in ``target``, in any usual encoding."""
    telling = [str(source), os.path.realpath(source), source.name, source.stem, source.parent.name, SECRET, GPS,
               "48.8577"]
    data = target.read_bytes()
    for text in telling:
        for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
            assert text.encode(encoding) not in data, f"{target} holds {text!r} ({encoding})"


# ------------------------------------------------------------------------------------------------ photos
@pytest.mark.parametrize("keep", [False, True], ids=["default", "keep-metadata"])
@pytest.mark.parametrize("out_suffix", [".jpg", ".png", ".webp"])
@pytest.mark.parametrize("in_suffix", [".jpg", ".png"])
def test_a_blurred_photo_holds_only_the_allowed_metadata(in_suffix, out_suffix, keep, sources, run_cli, tmp_path):
    source, target = sources[in_suffix], tmp_path / f"out{out_suffix}"
    code, _, err = run_cli("blur", source, "-o", target, "-q", "--no-tile", *(["--keep-metadata"] if keep else []))
    assert code == 0, err
    with Image.open(target) as image:
        kind, info = image.format, set(image.info)
    fields = _photo_fields(target)
    allowed = KEPT_PHOTO[kind] if keep else set()
    assert fields <= allowed, f"{target}: {sorted(map(str, fields - allowed))} outside the allow-list"
    assert info <= PILLOW_INFO | (PILLOW_KEPT_INFO if keep else set()), info
    if keep:
        assert fields == allowed  # the camera's EXIF and the ICC profile are kept: both inputs have them
        _assert_kept_exif_only(target)
    else:
        with Image.open(target) as image:
            assert not image.getexif()
    _assert_nothing_telling(target, source)


# ------------------------------------------------------------------------------------------------ videos
def _video_fields(path: Path) -> dict:
    """Container tags, chapters and per stream (type, tags) of a video."""
    with av.open(str(path)) as container:
        return {"tags": dict(container.metadata), "chapters": container.chapters(),
                "streams": [(s.type, dict(s.metadata)) for s in container.streams]}


def _assert_allowed(tags: dict, allowed: dict, where: str) -> None:
    for key, value in tags.items():
        pattern = allowed.get(key.lower())
        assert pattern is not None, f"{where}: tag {key}={value!r} outside the allow-list"
        assert re.fullmatch(pattern, value), f"{where}: tag {key}={value!r} does not match {pattern!r}"


@pytest.mark.parametrize("out_suffix", [".mp4", ".mov", ".mkv"])
@pytest.mark.parametrize("in_suffix", [".mov", ".mp4", ".mkv"])
def test_a_blurred_video_holds_only_the_allowed_metadata(in_suffix, out_suffix, sources, run_cli, tmp_path):
    source, target = sources[in_suffix], tmp_path / f"out{out_suffix}"
    code, _, err = run_cli("blur", source, "-o", target, "-q", "--no-tile")
    assert code == 0, err
    fields = _video_fields(target)
    _assert_allowed(fields["tags"], CONTAINER_TAGS, f"{target}")
    assert {k.lower(): v for k, v in fields["tags"].items()}["comment"] == BLURRED
    assert fields["chapters"] == []
    audios = 2 if in_suffix == ".mkv" else 1
    assert [kind for kind, _ in fields["streams"]] == ["video"] + ["audio"] * audios  # no subtitle, data, attachment
    for index, (kind, tags) in enumerate(fields["streams"]):
        _assert_allowed(tags, STREAM_TAGS, f"{target} stream {index}")
        if kind == "audio":
            assert tags["language"] == "eng"
    _assert_nothing_telling(target, source)


def test_no_audio_drops_every_audio_stream(sources, run_cli, tmp_path):
    target = tmp_path / "silent.mkv"
    code, _, err = run_cli("blur", sources[".mkv"], "-o", target, "-q", "--no-tile", "--no-audio")
    assert code == 0, err
    with av.open(str(target)) as container:
        assert [s.type for s in container.streams] == ["video"]
    done = blazeconv.blur_video(sources[".mov"], tmp_path / "silent.mp4", detector=detector_for(tile=False),
                                audio=False)
    assert done.frames == 10 and done.error is None
    with av.open(str(tmp_path / "silent.mp4")) as container:
        assert [s.type for s in container.streams] == ["video"]
    code, out, _ = run_cli("blur", "--help")
    assert "--no-audio" in out and "voices identify people" in " ".join(out.split())


# ------------------------------------------------------------------------------------------------ no-clobber, summaries
def test_o_file_refuses_an_existing_file_that_is_not_a_blurred_output(run_cli, tmp_path):
    mine = tmp_path / "existing.jpg"
    Image.new("RGB", (32, 32), "red").save(mine)
    before = mine.read_bytes()
    code, _, err = run_cli("blur", PHOTO, "-o", mine, "--no-tile")
    assert_one_line_error(code, err, mine, 2)
    assert "--overwrite" in err and mine.read_bytes() == before
    assert run_cli("blur", PHOTO, "-o", mine, "--no-tile", "-q")[0] != 0  # -q changes nothing
    code, _, err = run_cli("blur", PHOTO, "-o", mine, "--no-tile", "-q", "--overwrite")
    assert code == 0, err
    code, _, err = run_cli("blur", PHOTO, "-o", mine, "--no-tile", "-q")  # now a blurred output: replaced
    assert code == 0, err


def test_progress_counts_frames_written_and_errors_come_before_one_summary(run_cli, tmp_path):
    """A truncated clip and a whole one: the progress never counts frames that were not written (the truncated
    clip's header announces them all), the error comes first, then one summary line counting written and failed."""
    cut, garbage = tmp_path / "a_cut.mkv", tmp_path / "b_garbage.mkv"
    data = CLIP.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    garbage.write_bytes(b"not a video" * 1000)
    out = tmp_path / "out"
    code, _, err = run_cli("blur", cut, garbage, CLIP, "-o", out, "-q", "--no-tile")
    assert code == 6, err
    written = sum(len(pyav_frames(p)) for p in out.rglob("*.mp4"))
    assert len(list(out.rglob("*.mp4"))) == 2 and written < 2 * 77
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("blazeconv: ")]
    progress = [tuple(map(int, m.groups())) for m in map(re.compile(r"frames written: (\d+)/(\d+)").fullmatch, lines)
                if m]
    assert progress and all(done <= written for done, _ in progress), (progress, written)
    others = [line for line in lines if not line.startswith("frames written:")]
    assert others[0].startswith("Error: ") and "stopped at frame" in others[0] and "a_cut.mkv" in others[0]
    assert "cannot read video" in others[1] and "b_garbage.mkv" in others[1]
    assert len(others) == 3 and others[2].startswith("Error: 2 of 3 input(s) written, 1 of them stopped early, "
                                                     "1 failed; model ")
