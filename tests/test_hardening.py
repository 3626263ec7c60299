"""Hostile inputs, one deliberate lie at a time: model files, weights and images from strangers.

Each test builds the smallest file that tells one lie (a shape, a vector length, sparse metadata, a pickle that
runs code, a decompression bomb) and checks the answer: a blazeconv error naming the file, before anything
large is allocated (``tracemalloc`` peak), without work that grows with the lie (a budget of Python lines, counted,
not timed) and before anything in the file is executed. The bounded random search over
the same ground is ``test_fuzz.py``.
"""

from __future__ import annotations

import builtins
import functools
import io
import os
import pickle
import random
import struct
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import DATA, MODELS, assert_one_line_error, model_path
from PIL import Image
from tflite_builder import build_tflite
from tflite_fields import field_map

from blazeconv.detection import load_image
from blazeconv.errors import ImageError, ModelFileError, WeightsError
from blazeconv.sources import load_model
from blazeconv.tflite_reader import read_graph


class WorkBudgetExceeded(BaseException):
    """More Python lines ran than the call's budget; a BaseException so no ``except Exception`` in the product can
    turn it into a refusal that looks right."""


def measure(call, max_lines: int = 1_000_000):
    """Run ``call()``; return ``(its exception or None, peak traced bytes, Python lines executed)``.

    The lines are counted with ``sys.settrace`` in this thread (the calls below run in it): a count, not a time, so
    "the lie is refused without work that grows with it" holds on any machine. Past ``max_lines`` the call is
    stopped with ``WorkBudgetExceeded``, so a loop over a lying length fails the test instead of hanging it.
    """
    lines = 0

    def count(frame, event, arg):
        nonlocal lines
        if event == "line":
            lines += 1
            if lines > max_lines:
                raise WorkBudgetExceeded(f"more than {max_lines} Python lines executed")
        return count

    previous = sys.gettrace()
    tracemalloc.start()
    sys.settrace(count)
    try:
        call()
        error = None
    except Exception as exc:  # noqa: BLE001 - the caller inspects it
        error = exc
    finally:
        sys.settrace(previous)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return error, peak, lines


@functools.cache
def _fields_of(source: Path) -> dict:
    return {f.label: f for f in field_map(source.read_bytes())}


def patched(source: Path, target: Path, edits: dict[str, int]) -> Path:
    """``source`` with the fields labelled in ``edits`` (see ``tflite_fields.field_map``) overwritten."""
    data = bytearray(source.read_bytes())
    fields = _fields_of(source)
    for label, value in edits.items():
        fields[label].write(data, value)
    target.write_bytes(bytes(data))
    return target


# ------------------------------------------------------------------------------------ model files


def _image_model(tensors, operators, **kwargs) -> bytes:
    return build_tflite([("input", (1, 8, 8, 3), None), *tensors], operators, inputs=[0], outputs=[len(tensors)], **kwargs)


@pytest.mark.parametrize(
    ("shape", "fragment"),
    [
        ((1 << 20, 1 << 20), "more than blazeconv accepts"),
        ((0x7FFFFFFF, 0x7FFFFFFF, 0x7FFFFFFF), "more than blazeconv accepts"),  # 2**93: would wrap in int64
        ((1000, 1000), "needs 4000000 bytes, its buffer holds 16"),
    ],
    ids=["2**40-elements", "int64-overflow", "short-buffer"],
)
def test_a_constant_lying_about_its_shape_is_refused_before_allocation(shape, fragment, tmp_path):
    path = tmp_path / "lying_shape.tflite"
    path.write_bytes(_image_model([("weights", shape, np.zeros(4, np.float32))], []))
    error, peak, _ = measure(lambda: read_graph(path))
    assert isinstance(error, ModelFileError) and str(path) in str(error)
    assert fragment in str(error) and "'weights'" in str(error)
    assert peak < 1 << 20, f"{peak} bytes allocated"


@pytest.mark.parametrize(
    "label",
    ["model subgraphs[0] tensors length", "model subgraphs[0] operators length", "model buffers length",
     "model operator_codes length", "model subgraphs[0] operators[5] inputs length"],
)
def test_a_vector_longer_than_the_file_is_refused(label, tmp_path):
    path = patched(model_path("short_range"), tmp_path / "long_vector.tflite", {label: 0x3FFFFFFF})
    # Measured: 250 to 101,506 lines (the operators' lengths are read up to the lie); a loop over the declared
    # 1,073,741,823 entries would run a thousand times the budget.
    error, peak, lines = measure(lambda: read_graph(path), max_lines=1_000_000)
    assert isinstance(error, ModelFileError)
    assert "declares 1073741823" in str(error) and "more than fit" in str(error)
    assert peak < 8 << 20, f"{peak} bytes allocated"


SPARSE = "model subgraphs[0] tensors[14] sparsity"


@pytest.mark.parametrize(
    ("edits", "fragment"),
    [
        ({f"{SPARSE} dim_metadata[0] dense_size": 1 << 30}, "dense_size 1073741824 at level 0, expected 8"),
        ({f"{SPARSE} dim_metadata[0] dense_size": 0}, "dense_size 0 at level 0"),
        ({f"{SPARSE} dim_metadata[3] array_indices values[0]": 255}, "index out of range at level 3"),
        ({f"{SPARSE} dim_metadata[3] array_segments values[1]": 200}, "array_segments"),
        ({f"{SPARSE} traversal_order[1]": 0}, "inconsistent traversal order"),
        ({"model subgraphs[0] tensors[14] shape[0]": 16}, "dense_size 8 at level 0, expected 16"),
    ],
    ids=["huge-dense-size", "zero-dense-size", "index-out-of-range", "segments-past-indices", "bad-order",
         "shape-not-covered"],
)
def test_sparse_metadata_that_lies_is_refused_before_expanding(edits, fragment, tmp_path):
    path = patched(MODELS / "face_detection_full_range_sparse.tflite", tmp_path / "sparse.tflite", edits)
    # Measured: 6,528 to 7,572 lines; expanding a dense_size of 2**30 would run ten thousand times the budget.
    error, peak, lines = measure(lambda: read_graph(path), max_lines=100_000)
    assert isinstance(error, ModelFileError), error
    assert "sparse tensor" in str(error) and fragment in str(error)
    assert peak < 16 << 20, f"{peak} bytes allocated"


def test_constants_sharing_one_buffer_count_every_time(tmp_path):
    """Tensors may alias one buffer: 20 tensors of 2**20 elements on a single 4 MB buffer would copy out 80 MB."""
    big = np.zeros(1 << 20, np.float32)
    tensors = [("big", (1 << 20,), big)] + [(f"alias{i}", (1,), np.zeros(1, np.float32)) for i in range(19)]
    data = bytearray(_image_model(tensors, []))
    fields = {f.label: f for f in field_map(bytes(data))}
    big_buffer = fields["model subgraphs[0] tensors[1] buffer"].read(bytes(data))
    for i in range(2, 21):
        fields[f"model subgraphs[0] tensors[{i}] buffer"].write(data, big_buffer)
        fields[f"model subgraphs[0] tensors[{i}] shape[0]"].write(data, 1 << 20)
    path = tmp_path / "aliased.tflite"
    path.write_bytes(bytes(data))
    error, peak, _ = measure(lambda: read_graph(path))
    assert isinstance(error, ModelFileError) and "constants add up to more than" in str(error)
    assert peak < 80 << 20


@pytest.mark.parametrize(
    ("operators", "fragment"),
    [
        ([("RELU", [2], [1]), ("RELU", [1], [2])], "reads 'b' before operator 1 writes it"),
        ([("RELU", [1], [1])], "reads 'a' before operator 0 writes it"),
        ([("RELU", [0], [1]), ("RELU", [0], [1])], "written by operators 0 and 1"),
        ([("RELU", [0], [0])], "writes 'input', a graph input"),
    ],
    ids=["cycle", "self-loop", "two-writers", "writes-input"],
)
def test_graphs_out_of_execution_order_are_refused(operators, fragment, tmp_path):
    """TFLite runs operators in file order; a cycle would otherwise send the converter's walk round forever."""
    path = tmp_path / "cycle.tflite"
    path.write_bytes(build_tflite([("input", (1, 8, 8, 3), None), ("a", (1, 8, 8, 3), None), ("b", (1, 8, 8, 3), None)],
                                  operators, inputs=[0], outputs=[2]))
    with pytest.raises(ModelFileError, match=fragment):
        read_graph(path)


def _first_conv() -> tuple[int, int]:
    """(operator index in the file, output tensor) of the short-range model's first CONV_2D."""
    graph = read_graph(model_path("short_range"))
    op = next(op for op in graph.operators if op.kind == "CONV_2D")
    return op.index, op.outputs[0]


OPERATOR = "model subgraphs[0] operators"


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda op, out: {f"model subgraphs[0] tensors[{out}] shape length": 3}, "expected 4 dimensions"),
        (lambda op, out: {f"{OPERATOR}[{op}] inputs length": 1}, "has 1 inputs, expected 2 to 3"),
        (lambda op, out: {f"{OPERATOR}[{op}] outputs length": 0}, "has 0 outputs, expected 1"),
        (lambda op, out: {f"{OPERATOR}[{op}] inputs[1]": -1}, "leaves a required operand out"),
    ],
    ids=["conv-output-rank", "conv-arity", "no-output", "missing-kernel"],
)
def test_operators_tflite_could_not_run_are_malformed(edit, fragment, tmp_path, run_cli):
    """Found by the fuzzer: these reached the converter's graph walk and crashed it with an IndexError."""
    path = patched(model_path("short_range"), tmp_path / "bad_operator.tflite", edit(*_first_conv()))
    code, _, err = run_cli("tflite2torch", path, "-o", tmp_path / "out.pth")
    assert_one_line_error(code, err, path, 3)
    assert fragment in err


def test_names_with_control_characters_stay_on_one_printable_line(tmp_path, run_cli):
    path = tmp_path / "names.tflite"
    evil = "evil\nname\x1b[2J\x1c\u2028" + "x" * 10000
    path.write_bytes(_image_model([(evil, (3, 3), np.zeros(2, np.float32))], []))
    code, _, err = run_cli("tflite2torch", path)
    assert_one_line_error(code, err, path, 3)
    line = err.strip()
    assert line.isprintable() and "evil?name?[2J" in line and len(line) < 2100
    assert line.endswith("its buffer holds 8")  # an overlong message keeps the verdict at its end


def test_unknown_model_file_converts_with_a_notice(tmp_path, run_cli):
    """A file not in models/SHA256SUMS (one weight changed) converts when its structure passes, and says so."""
    data = bytearray(model_path("short_range").read_bytes())
    data[-1000] ^= 0x01  # inside the last weight buffer
    path = tmp_path / "my_face_detector.tflite"
    path.write_bytes(bytes(data))
    code, _, err = run_cli("tflite2torch", path, "-o", tmp_path / "mine.pth")
    assert code == 0, err
    assert "recognised as short_range by its structure (not a shipped file)" in err
    assert load_model(tmp_path / "mine.pth").architecture == "blazeface128"


# ---------------------------------------------------------------------------------------- weights


class _OpenPayload:
    """Unpickling calls ``open(marker, "w")``: creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


class _ExecPayload(_OpenPayload):
    """Unpickling runs arbitrary Python source."""

    def __reduce__(self):
        return builtins.exec, (f"open({self.marker!r}, 'w').close()",)


class _SystemPayload(_OpenPayload):
    """Unpickling runs a shell command."""

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def _write_payload(path: Path, payload, container: str) -> None:
    state_dict = {"backbone1.0.weight": torch.zeros(24, 3, 5, 5), "backbone1.0.bias": payload}
    if container == "zip":
        torch.save(state_dict, path)
    elif container == "legacy":
        torch.save(state_dict, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(state_dict, protocol=2))


@pytest.mark.parametrize("container", ["zip", "legacy", "pickle"])
@pytest.mark.parametrize("payload", [_OpenPayload, _ExecPayload, _SystemPayload], ids=["open", "exec", "os.system"])
def test_a_malicious_pickle_is_refused_and_runs_nothing(payload, container, tmp_path, run_cli):
    marker = tmp_path / "payload_ran"
    weights = tmp_path / "evil.pth"
    _write_payload(weights, payload(marker), container)

    with pytest.raises(WeightsError, match="not a loadable weights-only state_dict") as error:
        load_model(weights)
    assert str(weights) in str(error.value)
    code, _, err = run_cli("detect", DATA / "images" / "1face.png", "--model", weights)
    assert_one_line_error(code, err, weights, 5)
    assert not marker.exists(), "the payload ran"

    # The control: the same file does run its payload when loaded without weights_only.
    if container == "pickle":
        loaded = pickle.loads(weights.read_bytes())
    else:
        loaded = torch.load(weights, weights_only=False)
    if hasattr(loaded["backbone1.0.bias"], "close"):
        loaded["backbone1.0.bias"].close()  # the file the open() payload returned
    assert marker.exists(), "the payload is not live, so the test above proves nothing"


def test_wrong_missing_and_extra_keys_are_reported_together(tmp_path, converted, run_cli):
    state_dict = dict(converted("front").state_dict)
    del state_dict["backbone1.0.weight"]
    state_dict["backbone1.0.extra"] = torch.zeros(3)
    state_dict["classifier_8.bias"] = torch.zeros(5)
    state_dict["regressor_8.bias"] = "not a tensor"
    weights = tmp_path / "wrong.pth"
    torch.save(state_dict, weights)
    code, _, err = run_cli("detect", DATA / "images" / "1face.png", "--model", weights)
    assert_one_line_error(code, err, weights, 5)
    for fragment in ("missing backbone1.0.weight", "unexpected backbone1.0.extra",
                     "classifier_8.bias has shape [5], expected [2]", "regressor_8.bias is a str, not a tensor"):
        assert fragment in err


def _lying_tensor_size(path: Path) -> None:
    """A zip .pth whose tensor claims 2**30 elements of a 4-element storage."""
    import zipfile

    buffer = io.BytesIO()
    torch.save({"a": torch.zeros(4)}, buffer)
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename.endswith("data.pkl"):
                lied = data.replace(b"K\x00K\x04\x85", b"K\x00J\x00\x00\x00\x40\x85", 1)  # size (4,) -> (2**30,)
                assert lied != data
                data = lied
            target.writestr(info, data)


@pytest.mark.parametrize(
    ("make", "detect_code"),
    [
        pytest.param(lambda p: p.write_bytes(model_path("front").read_bytes()), 0,  # as the model, by content: it runs
                     marks=pytest.mark.slow),
        (lambda p: p.write_bytes((DATA / "images" / "1face.png").read_bytes()), 3),  # an image, not a model file
        (lambda p: p.write_bytes(b""), 5),
        (lambda p: p.write_bytes((DATA / "seed" / "blazefaceback.pth").read_bytes()[:100000]), 5),
        (_lying_tensor_size, 5),
        (lambda p: torch.save([torch.zeros(3)], p), 5),
        (lambda p: torch.save({1: torch.zeros(1), "a": torch.zeros(1)}, p), 5),
        (lambda p: torch.save({("backbone1.0.weight",): torch.zeros(1)}, p), 5),
    ],
    ids=["a-tflite", "an-image", "empty", "truncated-zip", "lying-tensor-size", "a-list", "int-key", "tuple-key"],
)
def test_files_that_are_not_weights_are_refused(make, detect_code, tmp_path, run_cli):
    weights = tmp_path / "weights.pth"
    make(weights)
    error, peak, _ = measure(lambda: load_model(weights))
    assert isinstance(error, WeightsError) and str(weights) in str(error)
    assert peak < 16 << 20
    code, _, err = run_cli("detect", DATA / "images" / "1face.png", "--model", weights)
    if detect_code == 0:
        assert code == 0, err
    else:
        assert_one_line_error(code, err, weights, detect_code)


# ----------------------------------------------------------------------------------------- images


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png(width: int, height: int, extra: bytes = b"") -> bytes:
    """A PNG header declaring ``width`` x ``height`` RGB pixels, with one row of pixel data at most."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = b"\x00" * (3 * min(width, 4096) + 1)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + extra + _png_chunk(b"IDAT", zlib.compress(row))
            + _png_chunk(b"IEND", b""))


def _bmp(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "BMP")
    data = bytearray(buffer.getvalue())
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def _gif(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "GIF")
    data = bytearray(buffer.getvalue())
    data[6:10] = struct.pack("<HH", width, height)
    start = data.index(b"\x2c")  # the image descriptor: the frame's own size
    data[start + 5:start + 9] = struct.pack("<HH", width, height)
    return bytes(data)


def _jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    start = data.index(b"\xff\xc0")  # start of frame: precision, height, width
    data[start + 5:start + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("bomb.png", lambda: _png(100_000, 100_000)),  # 10**10 pixels: Pillow's own error
        ("just_over.png", lambda: _png(10_000, 9_000)),  # 9 * 10**7: Pillow would only warn
        ("bomb.bmp", lambda: _bmp(60_000, 60_000)),
        ("bomb.gif", lambda: _gif(65_535, 65_535)),
        ("bomb.jpg", lambda: _jpeg(65_000, 65_000)),
    ],
)
def test_real_decompression_bombs_are_refused_before_decoding(name, content, tmp_path):
    """Files of a few hundred bytes declaring billions of pixels, with Pillow's default limit untouched."""
    path = tmp_path / name
    path.write_bytes(content())
    assert path.stat().st_size < 2000
    # Measured: 366 to 727 lines (Pillow's header parsing); decoding would allocate the pixels (the peak) in C.
    error, peak, lines = measure(lambda: load_image(path), max_lines=20_000)
    assert isinstance(error, ImageError) and "image too large" in str(error) and str(path) in str(error)
    assert peak < 4 << 20, f"{peak} bytes allocated"


@functools.lru_cache(maxsize=1)
def _deflate_bomb() -> bytes:
    return zlib.compress(b"\0" * (64 << 20), 9)  # 64 KB inflating to 64 MB


@pytest.mark.parametrize("chunk", [b"zTXt", b"iCCP", b"iTXt"])
def test_png_text_and_profile_bombs_are_refused(chunk, tmp_path):
    """A 64 KB chunk that inflates to 64 MB (Pillow caps text chunks at PngImagePlugin.MAX_TEXT_CHUNK)."""
    bomb = _deflate_bomb()
    prefix = {b"zTXt": b"comment\0\0", b"iCCP": b"icc\0\0", b"iTXt": b"key\0\1\0\0\0"}[chunk]
    path = tmp_path / "text_bomb.png"
    path.write_bytes(_png(4, 4, extra=_png_chunk(chunk, prefix + bomb)))
    error, peak, _ = measure(lambda: load_image(path))
    assert isinstance(error, ImageError) and str(path) in str(error)
    assert peak < 16 << 20


@pytest.mark.parametrize(
    ("name", "content"),
    [("zero_width.png", lambda: _png(0, 10)), ("zero_height.png", lambda: _png(10, 0)), ("zero.bmp", lambda: _bmp(0, 8)),
     ("zero.jpg", lambda: _jpeg(0, 8))],
)
def test_zero_size_images_are_refused(name, content, tmp_path):
    path = tmp_path / name
    path.write_bytes(content())
    with pytest.raises(ImageError) as error:
        load_image(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


_MODES = ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "I", "I;16",
          "I;16B", "F"]


@pytest.mark.parametrize("mode", _MODES)
def test_every_pillow_mode_is_read_as_rgb_or_refused_clearly(mode, tmp_path):
    """Whatever mode a file decodes to (saved in each format that takes it), the result is RGB or an ImageError."""
    rng = np.random.default_rng(0)
    image = Image.fromarray((rng.random((6, 5, 3)) * 255).astype(np.uint8)).convert("RGB")
    try:
        image = image.convert(mode)
    except ValueError:
        image = Image.new(mode, (5, 6))
    written = 0
    for fmt in ["PNG", "TIFF", "WEBP", "JPEG", "BMP", "GIF"]:
        path = tmp_path / f"image.{fmt.lower()}"
        try:
            image.save(path, fmt)
        except (OSError, ValueError, KeyError):
            continue
        written += 1
        try:
            loaded = load_image(path)
        except ImageError as error:
            assert str(path) in str(error) and "\n" not in str(error)
            continue
        assert loaded.dtype == np.uint8 and loaded.shape == (6, 5, 3), (fmt, loaded.shape)
    assert written, f"no format took mode {mode}"


def _image_seeds() -> list[tuple[str, bytes]]:
    rng = np.random.default_rng(1)
    image = Image.fromarray((rng.random((12, 16, 3)) * 255).astype(np.uint8))
    seeds = []
    for fmt, options in [("PNG", {}), ("JPEG", {"quality": 90}), ("GIF", {}), ("BMP", {}), ("TIFF", {}),
                         ("TIFF", {"compression": "tiff_lzw"}), ("WEBP", {})]:
        if fmt == "JPEG":
            exif = image.getexif()
            exif[0x0112] = 6
            options = dict(options, exif=exif)
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        seeds.append((fmt.lower(), buffer.getvalue()))
    return seeds


def test_mutated_images_load_or_fail_cleanly(tmp_path):
    """600 corrupted images (bytes changed, cut, inserted; mostly in the headers): RGB or one ImageError line."""
    rng = random.Random(4711)
    seeds = _image_seeds()
    outcomes = {"loaded": 0, "refused": 0}
    for number in range(600):
        suffix, data = rng.choice(seeds)
        data = bytearray(data)
        for _ in range(rng.choice([1, 1, 2, 3])):
            roll, pos = rng.random(), rng.randrange(min(len(data), 256) if rng.random() < 0.7 else max(len(data), 1))
            if roll < 0.5 and data:
                data[min(pos, len(data) - 1)] = rng.randrange(256)
            elif roll < 0.7:
                del data[rng.randrange(len(data) + 1):]
            elif roll < 0.85:
                data[pos:pos + 4] = rng.choice([b"\xff\xff\xff\x7f", b"\0\0\0\0", b"\0\1\0\0", b"\x7f\xff\0\0"])
            else:
                data[pos:pos] = rng.randbytes(rng.choice([1, 4, 16]))
        path = tmp_path / f"case{number}.{suffix}"
        path.write_bytes(bytes(data))
        try:
            loaded = load_image(path)
        except ImageError as error:
            assert str(path) in str(error) and str(error).isprintable(), (number, str(error))
            outcomes["refused"] += 1
        else:
            assert loaded.dtype == np.uint8 and loaded.ndim == 3 and loaded.shape[2] == 3 and loaded.size, number
            outcomes["loaded"] += 1
        path.unlink()
    assert outcomes["loaded"] > 50 and outcomes["refused"] > 50, outcomes


@pytest.mark.slow
def test_bad_images_in_a_folder_do_not_stop_the_good_ones(tmp_path, run_cli, monkeypatch):
    import json

    monkeypatch.setenv("BLAZECONV_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "photos"
    folder.mkdir()
    good = {"1face.png": (DATA / "images" / "1face.png").read_bytes()}
    rgb = np.asarray(Image.open(DATA / "images" / "1face.png").convert("RGB"))
    buffer = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(buffer, "JPEG")
    good["cmyk.jpg"] = buffer.getvalue()
    bad = {"bomb.png": _png(100_000, 100_000), "zero.png": _png(0, 10), "notes.png": b"not an image",
           "truncated.jpg": good["cmyk.jpg"][:400], "empty.gif": b""}
    for name, content in {**good, **bad}.items():
        (folder / name).write_bytes(content)
    out = tmp_path / "detections.json"
    code, _, err = run_cli("detect", folder, "--json", out)
    assert code == 6
    error_lines = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert len(error_lines) == len(bad) and "Traceback" not in err
    for name in bad:
        assert sum(name in line for line in error_lines) == 1, name
    assert f"({len(bad)} images failed)" in error_lines[-1]
    document = json.loads(out.read_text())
    assert sorted(Path(i["path"]).name for i in document["images"]) == sorted(good)
    assert len(document["errors"]) == len(bad)
