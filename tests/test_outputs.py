"""Where outputs go and what they look like.

- Outputs get the mode a plain ``open(path, "w")`` gives under the umask, and are still written atomically.
- No folder is created on the way: a missing folder of ``-o``/``--json``/``--jsonl`` is an error naming it.
- An output that is, or resolves to, one of the command's inputs is refused before any work (exit 2).
- Distinct inputs get distinct annotations (relative paths mirrored); a collision is an error.
- ``detect --jsonl`` streams one object per image; ``--resume`` finishes an interrupted run without duplicates.
- ``detect``'s per-image summary is data (stdout); ``--quiet`` silences it; ``--json -`` leaves only the JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
import torch
from helpers import DATA, assert_one_line_error, jsonl_records, model_path

from blazeconv.errors import OutputError
from blazeconv.io import PathUsageError, atomic_path, mirrored_paths, refuse_overwriting

posix_only = pytest.mark.skipif(os.name != "posix", reason="modes, symlinks and hard links as on POSIX")
PHOTOS = DATA / "images"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    """``umask(value)`` sets the process umask for one test, restored afterwards."""
    before = os.umask(0o022)
    os.umask(before)
    yield os.umask
    os.umask(before)


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def private_cache(module_cache, monkeypatch):
    """Conversions and exports go to this module's own cache, not the user's."""
    monkeypatch.setenv("BLAZECONV_CACHE", str(module_cache))


@pytest.fixture
def weights(tmp_path, converted) -> Path:
    """The short_range weights as a .pth (detect runs without converting into a cache)."""
    path = tmp_path / "weights.pth"
    torch.save(converted("short_range").state_dict, path)
    return path


# ------------------------------------------------------------------------------------------------ modes


@posix_only
@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_atomic_writes_get_the_mode_open_gives(mask, tmp_path, umask):
    umask(mask)
    with open(tmp_path / "plain", "w") as f:
        f.write("x")
    with atomic_path(tmp_path / "artifact") as tmp:
        tmp.write_text("x")
    assert mode_of(tmp_path / "artifact") == mode_of(tmp_path / "plain") == 0o666 & ~mask


@pytest.mark.slow
@posix_only
def test_every_command_output_gets_the_umask_mode(tmp_path, umask, run_cli, weights, monkeypatch):
    umask(0o022)
    monkeypatch.setenv("BLAZECONV_CACHE", str(tmp_path / "cache"))
    outputs = [tmp_path / "front.pth", tmp_path / "a.npy", tmp_path / "d.json", tmp_path / "d.jsonl"]
    assert run_cli("tflite2torch", model_path("front"), "-o", outputs[0])[0] == 0
    assert run_cli("anchors", "--variant", "front", "-o", outputs[1])[0] == 0
    code, _, err = run_cli("detect", PHOTOS / "1face.png", "--json", outputs[2], "--jsonl", outputs[3],
                           "--annotate", tmp_path / "ann", "--backend", "torch")
    assert code == 0, err
    cached = list((tmp_path / "cache").iterdir())  # the shipped model converted on first use for the torch backend
    assert cached
    for path in [*outputs, tmp_path / "ann" / "1face.png", *cached]:
        assert mode_of(path) == 0o644, path
    assert mode_of(tmp_path / "ann") == 0o755


# --------------------------------------------------------------------------------------------- folders


def test_a_missing_folder_is_an_error_naming_it(tmp_path):
    target = tmp_path / "missing" / "deeper" / "x.bin"
    with pytest.raises(OutputError, match=r"folder .*missing/deeper does not exist"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"never")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("option", ["-o", "--json", "--jsonl"])
def test_no_folder_is_created_for_outputs(option, tmp_path, run_cli, weights):
    missing = tmp_path / "nonexistent"
    if option == "-o":
        args = ["tflite2torch", model_path("front"), "-o", missing / "x.pth"]
    else:
        args = ["detect", PHOTOS / "1face.png", "--model", weights, option, missing / "x.json"]
    code, out, err = run_cli(*args)
    assert_one_line_error(code, err, missing, 1)
    assert "does not exist" in err and not missing.exists() and out == ""


@pytest.mark.slow
def test_annotate_creates_its_folder_but_not_its_parents(tmp_path, run_cli, weights):
    code, _, err = run_cli("detect", PHOTOS / "1face.png", "--model", weights, "--annotate", tmp_path / "a" / "b")
    assert_one_line_error(code, err, tmp_path / "a", 1)
    assert not (tmp_path / "a").exists()
    code, _, err = run_cli("detect", PHOTOS / "1face.png", "--model", weights, "--annotate", tmp_path / "a")
    assert code == 0, err
    assert (tmp_path / "a" / "1face.png").is_file()


# ------------------------------------------------------------------------------------ inputs never written


def _link(kind: str, target: Path, link: Path) -> Path:
    if kind == "symlink":
        link.symlink_to(target)
    elif kind == "hardlink":
        os.link(target, link)
    else:
        return target
    return link


@posix_only
@pytest.mark.parametrize("kind", ["same", "symlink", "hardlink"])
def test_refuse_overwriting_sees_through_links(kind, tmp_path):
    source = tmp_path / "input.png"
    source.write_bytes(b"precious")
    output = _link(kind, source, tmp_path / "output.png")
    with pytest.raises(PathUsageError, match="never writes its inputs") as error:
        refuse_overwriting([("--json", output)], [("input", source)])
    assert str(output) in str(error.value) and str(source) in str(error.value)
    refuse_overwriting([("--json", tmp_path / "other.json")], [("input", source)])  # a new file is fine


def test_two_outputs_cannot_be_one_file(tmp_path):
    with pytest.raises(PathUsageError, match="are the same file"):
        refuse_overwriting([("--json", tmp_path / "x"), ("--jsonl", tmp_path / "." / "x")], [])


def _md5s(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@posix_only
@pytest.mark.parametrize(
    "case",
    ["tflite2torch-onto-its-model", "tflite2torch-onto-a-symlink-to-it", "detect-json-onto-an-image",
     "detect-jsonl-onto-a-hardlink-of-an-image", "detect-json-onto-the-weights", "annotate-into-the-png-folder",
     "anchors-onto-its-options", "coreml-onto-its-anchors"],
)
def test_an_output_that_is_an_input_is_refused_before_any_work(case, tmp_path, run_cli, weights):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("1face.png", "3faces.png"):
        shutil.copy(PHOTOS / name, photos)
    model = tmp_path / "front.tflite"
    shutil.copy(model_path("front"), model)
    options = tmp_path / "options.json"
    options.write_text("{}")
    anchors_npy = tmp_path / "anchors.mlmodel"  # an anchors file named like the output the command would write
    anchors_npy.write_bytes(b"anchors")
    image = photos / "1face.png"
    args, culprits = {
        "tflite2torch-onto-its-model": (["tflite2torch", model, "-o", model], [model]),
        "tflite2torch-onto-a-symlink-to-it": (["tflite2torch", model, "-o", _link("symlink", model, tmp_path / "l.pth")],
                                              [tmp_path / "l.pth", model]),
        "detect-json-onto-an-image": (["detect", photos, "--model", weights, "--json", image], [image]),
        "detect-jsonl-onto-a-hardlink-of-an-image": (
            ["detect", photos, "--model", weights, "--jsonl", _link("hardlink", image, tmp_path / "h.jsonl")],
            [tmp_path / "h.jsonl", image]),
        "detect-json-onto-the-weights": (["detect", image, "--model", weights, "--json", weights], [weights]),
        "annotate-into-the-png-folder": (["detect", photos, "--model", weights, "--annotate", photos], [image]),
        "anchors-onto-its-options": (["anchors", "--options", options, "-o", options], [options]),
        "coreml-onto-its-anchors": (["coreml", model, "--format", "neuralnetwork", "--anchors", anchors_npy,
                                     "-o", anchors_npy], [anchors_npy]),
    }[case]
    before = _md5s(tmp_path) | _md5s(photos)
    code, out, err = run_cli(*args)
    assert_one_line_error(code, err, culprits[0], 2)
    assert all(str(c) in err for c in culprits) and out == ""
    assert _md5s(tmp_path) | _md5s(photos) == before  # nothing written, nothing added


@pytest.mark.slow
def test_annotations_are_named_like_their_input_and_never_replace_a_users_file(tmp_path, run_cli, weights):
    from PIL import Image

    photos, annotated = tmp_path / "photos", tmp_path / "annotated"
    photos.mkdir()
    with Image.open(PHOTOS / "3faces.png") as image:
        image.convert("RGB").save(photos / "3faces.jpg", quality=95)
    shutil.copyfile(PHOTOS / "1face.png", photos / "1face.png")
    # A JPEG's annotation is a JPEG of the same name: into the photos' own folder it would be the input itself.
    code, _, err = run_cli("detect", photos, "--model", weights, "--annotate", photos)
    assert_one_line_error(code, err, photos, 2)
    assert "blazeconv never writes its inputs" in err
    code, _, err = run_cli("detect", photos, "--model", weights, "--annotate", annotated)
    assert code == 0, err
    assert sorted(p.name for p in annotated.iterdir()) == ["1face.png", "3faces.jpg"]
    assert Image.open(annotated / "3faces.jpg").format == "JPEG" and Image.open(annotated / "1face.png").format == "PNG"
    # Rerunning replaces blazeconv's own annotations of the same images...
    assert run_cli("detect", photos, "--model", weights, "--annotate", annotated)[0] == 0
    # ...but not a file of the user's that has an annotation's name, unless --overwrite says so.
    holiday = annotated / "1face.png"
    shutil.copyfile(PHOTOS / "4faces.png", holiday)
    mine = holiday.read_bytes()
    code, _, err = run_cli("detect", photos, "--model", weights, "--annotate", annotated)
    assert_one_line_error(code, err, holiday, 2)
    assert "--overwrite" in err and holiday.read_bytes() == mine
    code, _, err = run_cli("detect", photos, "--model", weights, "--annotate", annotated, "--overwrite")
    assert code == 0, err and holiday.read_bytes() != mine


def test_annotate_size_and_quality(tmp_path, run_cli, weights):
    from PIL import Image

    photos, annotated = tmp_path / "photos", tmp_path / "annotated"
    photos.mkdir()
    with Image.open(PHOTOS / "astronaut.png") as image:
        image.convert("RGB").resize((2000, 2000)).save(photos / "big.jpg", quality=95)
    code, _, err = run_cli("detect", photos, "--model", weights, "--annotate", annotated, "--annotate-size", "500",
                           "--annotate-quality", "70")
    assert code == 0, err
    assert Image.open(annotated / "big.jpg").size == (500, 500)
    code, _, err = run_cli("detect", photos, "--model", weights, "--annotate-size", "500")
    assert code == 2 and "apply with --annotate" in err


# ------------------------------------------------------------------------------------ distinct annotations


def test_mirrored_paths_keep_relative_paths(tmp_path):
    out = tmp_path / "out"
    assert mirrored_paths([tmp_path / "a" / "1.png", tmp_path / "b" / "1.jpg"], out) == [out / "a" / "1.png",
                                                                                        out / "b" / "1.png"]
    assert mirrored_paths([tmp_path / "a" / "1.png", tmp_path / "a" / "2.png"], out) == [out / "1.png", out / "2.png"]
    assert mirrored_paths([tmp_path / "a" / "1.png", tmp_path / "a" / "1.png"], out) == [out / "1.png"] * 2
    with pytest.raises(PathUsageError, match=r"1\.jpg and .*1\.png would both be written as"):
        mirrored_paths([tmp_path / "1.jpg", tmp_path / "1.png"], out)


def test_same_names_in_two_folders_give_two_annotations(tmp_path, run_cli, weights):
    for folder, photo in (("a", "1face.png"), ("b", "3faces.png")):
        (tmp_path / folder).mkdir()
        shutil.copy(PHOTOS / photo, tmp_path / folder / "1.png")
    code, _, err = run_cli("detect", tmp_path / "a" / "1.png", tmp_path / "b" / "1.png", "--model", weights,
                           "--annotate", tmp_path / "out")
    assert code == 0, err
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.png")) == ["a/1.png", "b/1.png"]
    assert (tmp_path / "out" / "a" / "1.png").read_bytes() != (tmp_path / "out" / "b" / "1.png").read_bytes()


def test_a_colliding_annotation_is_refused_before_any_work(tmp_path, run_cli, weights):
    from PIL import Image

    with Image.open(PHOTOS / "3faces.png") as image:  # both annotated as x.jpg
        image.convert("RGB").save(tmp_path / "x.jpeg")
        image.convert("RGB").save(tmp_path / "x.jpg")
    code, _, err = run_cli("detect", tmp_path, "--model", weights, "--annotate", tmp_path / "out")
    assert_one_line_error(code, err, tmp_path / "x.jpg", 2)
    assert "x.jpeg" in err and not (tmp_path / "out").exists()


# -------------------------------------------------------------------------------------------- jsonl


def _lines(path: Path) -> list[dict]:
    return jsonl_records(path)


def test_jsonl_has_one_object_per_image_with_the_json_fields(tmp_path, run_cli, weights):
    folder = tmp_path / "photos"
    shutil.copytree(PHOTOS, folder)
    (folder / "broken.png").write_bytes(b"not a picture")
    code, _, err = run_cli("detect", folder, "--model", weights, "--jsonl", tmp_path / "d.jsonl", "--json",
                           tmp_path / "d.json")
    assert code == 6
    lines = _lines(tmp_path / "d.jsonl")
    document = json.loads((tmp_path / "d.json").read_text())
    assert [line for line in lines if "error" not in line] == document["images"]
    errors = [line for line in lines if "error" in line]
    assert [e["path"] for e in errors] == [str(folder / "broken.png")] and errors[0]["error"] == document["errors"][0]
    assert sorted(line["path"] for line in lines) == sorted(str(p) for p in folder.iterdir())


def test_resume_appends_only_what_is_missing_and_redoes_a_torn_line(tmp_path, run_cli, weights):
    images = sorted(PHOTOS.glob("*.png"))
    out = tmp_path / "d.jsonl"
    code, _, err = run_cli("detect", *images, "--model", weights, "--jsonl", out)
    assert code == 0, err
    complete = out.read_text().splitlines(keepends=True)
    # A killed run: the settings line, three whole records and half of the fourth.
    out.write_text("".join(complete[:4]) + complete[4][: len(complete[4]) // 2])
    code, _, err = run_cli("detect", *images, "--model", weights, "--jsonl", out, "--resume")
    assert code == 0, err
    assert "3 of" in err  # says what it skipped
    assert out.read_text() == "".join(complete)
    code, stdout, err = run_cli("detect", *images, "--model", weights, "--jsonl", out, "--resume")
    assert code == 0 and out.read_text() == "".join(complete) and stdout == ""  # nothing left to do


def test_jsonl_without_resume_never_replaces_a_previous_run(tmp_path, run_cli, weights):
    out = tmp_path / "d.jsonl"
    out.write_text('{"path": "earlier.png", "detections": []}\n')
    code, _, err = run_cli("detect", PHOTOS / "1face.png", "--model", weights, "--jsonl", out)
    assert_one_line_error(code, err, out, 2)
    assert "--resume" in err and out.read_text() == '{"path": "earlier.png", "detections": []}\n'


def test_resume_needs_jsonl(run_cli, weights):
    code, _, err = run_cli("detect", PHOTOS / "1face.png", "--model", weights, "--resume")
    assert code == 2 and "--jsonl" in err


def test_json_is_written_even_when_every_image_failed(tmp_path, run_cli, weights):
    (tmp_path / "a.png").write_bytes(b"no")
    (tmp_path / "b.png").write_bytes(b"nope")
    code, out, err = run_cli("detect", tmp_path / "a.png", tmp_path / "b.png", "--model", weights, "--json", "-")
    assert code == 6 and "b.png" in err.splitlines()[-1]
    document = json.loads(out)
    assert document["images"] == [] and len(document["errors"]) == 2


# ---------------------------------------------------------------------------------------------- streams


def test_the_summary_is_data_on_stdout_and_quiet_silences_it(tmp_path, run_cli, weights):
    code, out, err = run_cli("detect", PHOTOS / "3faces.png", PHOTOS / "1face.png", "--model", weights)
    assert code == 0, err
    assert out.startswith(f"{PHOTOS / '3faces.png'}: 3 faces\n  score ") and f"{PHOTOS / '1face.png'}: 1 face\n" in out
    assert "3faces.png" not in err and "2 image(s)" in err
    code, out, err = run_cli("detect", PHOTOS / "3faces.png", "--model", weights, "--quiet")
    assert code == 0 and out == "" and "3faces.png" not in err


def test_json_on_stdout_is_the_only_thing_there(tmp_path, run_cli, weights):
    code, out, err = run_cli("detect", PHOTOS / "3faces.png", "--model", weights, "--json", "-")
    assert code == 0, err
    assert len(json.loads(out)["images"][0]["detections"]) == 3
    code, out, err = run_cli("detect", PHOTOS / "3faces.png", PHOTOS / "1face.png", "--model", weights,
                             "--jsonl", "-")
    assert code == 0, err
    assert [len(json.loads(line)["detections"]) for line in out.splitlines()] == [3, 1]
