"""blazeconv.ray and ``detect --ray`` on a local Ray cluster: the same answers as the single-process ``detect``.

One local cluster (2 CPUs, its own short temporary folder) serves the module and is shut down after it; the
teardown checks that no Ray process is left. The data: the repository's photos repeated to 210 files plus two broken
ones (a truncated PNG, a text file named .png), and a missing file given through the path column.
Equality is exact: the same faces with identical numbers (JSON floats round-trip float64 exactly).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import ray
from helpers import DATA, IMAGE_PATHS, REPO, jsonl_records

from blazeconv.detection import detect_files, detect_images, detections_to_json, load_image
from blazeconv.detection.settings import DetectionSettings
from blazeconv.errors import BlazeconvError, ModelFileError, OptionsError, WeightsError
from blazeconv.ray import DetectFaces, detect_paths, map_batches_options

pytestmark = pytest.mark.slow  # not in the quick tier (make test-quick)

COPIES = 30  # 7 photos x 30 = 210 files


@pytest.fixture(scope="module")
def cluster():
    """A 2-CPU local Ray cluster for this module; afterwards no process of it may remain."""
    temp_dir = tempfile.mkdtemp(prefix="ray")  # short: Ray's socket paths must stay under ~107 characters
    auth_mode = os.environ.get("RAY_AUTH_MODE")  # ray.init sets it for the process; the suite gets it back
    ray.init(num_cpus=2, _temp_dir=temp_dir, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
        if auth_mode is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = auth_mode
        left = _processes_mentioning(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, f"Ray processes left after ray.shutdown(): {left}"


def _processes_mentioning(text: str, wait_s: float = 10.0) -> list[str]:
    """Command lines of live processes that mention ``text`` (after waiting up to ``wait_s`` for them to end)."""
    deadline = time.monotonic() + wait_s
    while True:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                if text in command:
                    found.append(f"{entry.name}: {command[:120]}")
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """210 copies of the repository's photos and two broken files, in one folder."""
    folder = tmp_path_factory.mktemp("photos")
    for copy in range(COPIES):
        for source in IMAGE_PATHS:
            shutil.copyfile(source, folder / f"{copy:02d}_{source.name}")
    data = IMAGE_PATHS[0].read_bytes()
    (folder / "broken_truncated.png").write_bytes(data[: len(data) // 2])
    (folder / "broken_text.png").write_text("not an image\n")
    return folder


def _reference(paths: list[Path], backend: str = "auto", batch_size: int = 32, keyed: bool = True, **options):
    """The single-process pipeline (``detect``'s ``detect_files``) with ``detect``'s defaults (``options``: other
    settings): path -> ``--json`` entry, or ``{"error"}`` (a list in the order of ``paths`` unless ``keyed``)."""
    results = []
    settings = DetectionSettings(backend=backend, batch_size=batch_size, **options)
    runner = settings.make_runner()
    for path, image, found in detect_files(runner, paths, settings.replace(variant=runner.variant)):
        if found is None:
            results.append((str(path), {"error": str(image)}))
        else:
            results.append((str(path), detections_to_json(path, image.shape[1], image.shape[0], found)))
    return dict(results) if keyed else [entry for _, entry in results]


def _as_entry(row: dict) -> dict:
    """A ``DetectFaces`` row in the form of ``_reference``'s values."""
    if row["error"] is not None:
        assert row["width"] is None and row["height"] is None and row["detections"] is None
        return {"error": row["error"]}
    detections = row["detections"] if isinstance(row["detections"], list) else json.loads(row["detections"])
    return {"path": row["path"], "width": row["width"], "height": row["height"], "detections": detections}


# The 210-photo runs use MediaPipe's short range at its one scale (one model input per photo, cheap); the scales of
# the defaults are checked on Ray by the image-column, detect_paths and local-cluster tests and the video test.
EXACT = {"model": "short_range", "exact": True}


@pytest.fixture(scope="module")
def bytes_run(cluster, photos):
    """``read_binary_files`` -> ``DetectFaces`` (default backend, ``EXACT``) over the folder, materialised once."""
    dataset = ray.data.read_binary_files(str(photos), include_paths=True)
    mapped = dataset.map_batches(DetectFaces, fn_constructor_kwargs=EXACT, **map_batches_options(batch_size=32))
    return mapped.materialize()


def test_bytes_column_equals_detect(bytes_run, photos):
    rows = bytes_run.take_all()
    expected = _reference(sorted(photos.iterdir()), **EXACT)
    assert len(rows) == len(expected) == 7 * COPIES + 2
    got = {str(Path(row["path"])): _as_entry(row) for row in rows}
    assert got.keys() == expected.keys()
    for path, entry in expected.items():
        assert got[path] == entry, path
    faces = sum(len(e.get("detections", [])) for e in expected.values())
    assert faces >= 7 * COPIES  # every photo has a face: the comparison is not between empty lists
    errors = {Path(p).name: e["error"] for p, e in got.items() if "error" in e}
    assert sorted(errors) == ["broken_text.png", "broken_truncated.png"]
    assert "not an image Pillow can read" in errors["broken_text.png"]


def test_output_round_trips_through_parquet_and_json(bytes_run, tmp_path):
    """The JSON-string column comes back bit for bit from both sinks."""
    rows = {row["path"]: row for row in bytes_run.take_all()}
    bytes_run.write_parquet(str(tmp_path / "parquet"))
    bytes_run.write_json(str(tmp_path / "json"))
    for folder in ("parquet", "json"):
        reader = ray.data.read_parquet if folder == "parquet" else ray.data.read_json
        back = {row["path"]: row for row in reader(str(tmp_path / folder)).take_all()}
        assert back.keys() == rows.keys()
        for path, row in rows.items():
            assert _as_entry(back[path]) == _as_entry(row), (folder, path)


def test_path_column_nested_torch(cluster, photos):
    """Paths (one missing, one a file:// URI) on the torch backend, nested output, an id column carried through."""
    paths = sorted(photos.glob("0[0-2]_*.png")) + [photos / "broken_text.png"]
    items = [{"path": str(p), "id": i} for i, p in enumerate(paths)]
    missing = str(photos / "missing.png")
    items += [{"path": missing, "id": len(items)}, {"path": paths[0].as_uri(), "id": len(items) + 1}]
    constructor = {"backend": "torch", "nested": True, **EXACT}  # one input per photo: batches of one make-up
    mapped = ray.data.from_items(items).map_batches(
        DetectFaces, fn_constructor_kwargs=constructor, **map_batches_options(batch_size=8)
    )
    rows = sorted(mapped.take_all(), key=lambda row: row["id"])
    assert [row["id"] for row in rows] == list(range(len(items)))
    # The same images in one batch of the same make-up (the URI's file read from its path): torch's sums can move
    # in the last bit with the batch's size.
    expected = _reference([*paths, Path(missing), paths[0]], backend="torch", batch_size=8, keyed=False, **EXACT)
    for row, path, want in zip(rows[:-1], [*paths, Path(missing)], expected):
        assert row["path"] == str(path)
        assert _as_entry(row) == want, path
    assert rows[-2]["error"] == f"{missing}: no such file"
    uri = _as_entry(rows[-1])
    assert uri["detections"] == expected[-1]["detections"] and uri["path"] == paths[0].as_uri()


def test_image_column_from_read_images(cluster):
    """``read_images(mode="RGB")`` arrays (the repository's photos carry no EXIF rotation): ``detect``'s answers."""
    dataset = ray.data.read_images(str(REPO / "tests" / "data" / "images"), mode="RGB", include_paths=True)
    rows = dataset.map_batches(DetectFaces, **map_batches_options(batch_size=4)).take_all()
    settings = DetectionSettings()  # the defaults, as DetectFaces has them: every scale the photos need
    runner = settings.make_runner()
    expected = detect_images(runner, [load_image(p) for p in IMAGE_PATHS], settings.replace(variant=runner.variant))
    by_name = {Path(row["path"]).name: row for row in rows}
    assert sorted(by_name) == [p.name for p in IMAGE_PATHS]
    for path, found in zip(IMAGE_PATHS, expected):
        row = by_name[path.name]
        assert json.loads(row["detections"]) == [d.to_dict() for d in found], path
        assert (row["width"], row["height"]) == load_image(path).shape[1::-1]


def test_detect_paths_in_order(cluster, photos):
    """``detect_paths`` (what ``detect --ray`` runs) yields one row per path, in the order given."""
    paths = sorted(photos.iterdir(), reverse=True)[:40] + [photos / "missing.png"]
    rows = list(detect_paths(paths, batch_size=16))
    assert [row["path"] for row in rows] == [str(p) for p in paths]
    expected = _reference(paths)
    assert [_as_entry(row) for row in rows] == [expected[str(p)] for p in paths]


def test_model_that_cannot_load_fails_the_job_with_its_own_error(cluster, tmp_path):
    """Every row would fail alike: the actor's error ends the run, as the error ``detect`` would give (not a hang)."""
    with pytest.raises(BlazeconvError, match="w.pth: no such file") as raised:
        list(detect_paths(IMAGE_PATHS, model=tmp_path / "w.pth"))
    assert isinstance(raised.value, (ModelFileError, WeightsError))  # with its exit code, not a generic failure


@pytest.mark.parametrize("extra", [[], ["--jsonl", "{tmp}/out.jsonl"]])
def test_cli_ray_equals_plain_detect(cluster, photos, tmp_path, run_cli, extra):
    """``detect --ray`` (on the module's cluster) writes the same --json (and --jsonl) as plain ``detect``."""
    inputs = [photos / "00_1face.png", photos, photos / "missing.png"]
    outputs = {}
    for mode in ("plain", "ray"):
        (tmp_path / mode).mkdir()
        arguments = [a.format(tmp=tmp_path / mode) for a in extra]
        command = ["detect", *inputs, "--json", tmp_path / mode / "out.json", "--quiet", "--model", "short_range",
                   "--exact", *arguments]
        code, stdout, stderr = run_cli(*command, *(["--ray"] if mode == "ray" else []))
        assert code == 6, stderr  # the broken and missing files are reported, not fatal
        assert stdout == ""
        outputs[mode] = [(tmp_path / mode / name).read_text() for name in ("out.json", "out.jsonl")[: 1 + len(extra) // 2]]
    assert outputs["ray"] == outputs["plain"]
    document = json.loads(outputs["ray"][0])
    assert len(document["images"]) == 7 * COPIES + 1 and len(document["errors"]) == 3
    if extra:  # an interrupted --ray run continued with --resume: the same file as one plain run
        lines = outputs["ray"][1].splitlines()
        jsonl = tmp_path / "ray" / "out.jsonl"
        jsonl.write_text("\n".join(lines[:101]) + "\n" + lines[101][:20])  # the settings, 100 records, a torn one
        code, _, stderr = run_cli("detect", *inputs, "--jsonl", jsonl, "--resume", "--quiet", "--model", "short_range",
                                  "--exact", "--ray")
        assert code == 6 and "100 of 214 images already done" in stderr, stderr
        assert jsonl.read_text() == outputs["plain"][1]


def test_cli_ray_starts_and_stops_a_local_cluster(tmp_path):
    """``detect --ray`` without a cluster starts a local one, prints only JSON on stdout, and leaves no process."""
    temp_dir = tempfile.mkdtemp(prefix="rayc")
    env = {**os.environ, "RAY_TMPDIR": temp_dir}
    try:
        command = [sys.executable, "-m", "blazeconv", "detect", *map(str, IMAGE_PATHS[:2]), "--json", "-", "--ray"]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        expected = _reference(IMAGE_PATHS[:2])
        assert json.loads(done.stdout) == {"images": [expected[str(p)] for p in IMAGE_PATHS[:2]]}
        assert not _processes_mentioning(temp_dir)
        assert not os.listdir(temp_dir)  # the cluster's own folder inside it is gone
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_cli_ray_sigterm_is_clean(photos, tmp_path):
    """SIGTERM mid-run (ray.init installs its own handler, exit 15): one line, exit 143, finished lines kept, no
    Ray process or folder left."""
    temp_dir = tempfile.mkdtemp(prefix="rayt")
    jsonl, many = tmp_path / "out.jsonl", tmp_path / "many"
    many.mkdir()  # ten links to each photo: the run cannot finish between its first line and the signal
    sources = sorted(photos.iterdir())
    for k in range(10 * len(sources)):
        (many / f"{k:05d}_{sources[k % len(sources)].name}").symlink_to(sources[k % len(sources)])
    command = [sys.executable, "-m", "blazeconv", "detect", str(many), "--jsonl", str(jsonl), "--quiet", "--ray"]
    try:
        process = subprocess.Popen(command, env={**os.environ, "RAY_TMPDIR": temp_dir}, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 240
        while not (jsonl.is_file() and jsonl.read_text().count("\n") >= 2) and time.monotonic() < deadline:
            assert process.poll() is None, process.stderr.read()
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        stderr = process.communicate(timeout=120)[1]
        assert process.returncode == 143, stderr
        assert "Error: interrupted by SIGTERM" in stderr
        records = jsonl_records(jsonl)
        assert 1 <= len(records) < 10 * len(sources)
        expected = _reference([Path(record["path"]) for record in records])
        assert records == [{"path": p, **e} if "error" in e else e for p, e in expected.items()]
        assert not _processes_mentioning(temp_dir)
        assert not os.listdir(temp_dir)
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_cli_ray_refusals(photos, monkeypatch, tmp_path, run_cli):
    image = photos / "00_1face.png"
    code, _, stderr = run_cli("detect", image, "--ray", "--annotate", tmp_path / "a")
    assert code == 2 and "--annotate" in stderr
    code, _, stderr = run_cli("detect", "--ray", image, image)  # the first input taken as the address
    assert code == 2 and "not a Ray address" in stderr
    code, _, stderr = run_cli("detect", image, "--ray-actors", "2")
    assert code == 2 and "with --ray" in stderr
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    code, _, stderr = run_cli("detect", image, "--ray")
    assert code == 8 and "pip install 'blazeconv[ray]'" in stderr


@pytest.mark.parametrize(
    ("cpus", "reserve", "actor_cpus", "actors"),
    [(1, None, 1, 1), (2, None, 1, 1), (4, None, 1, 3), (16, None, 1, 14), (64, None, 1, 56), (16, None, 2, 7),
     (2, 0, 1, 2), (2, 0.25, 0.875, 2), (8, 0, 3, 2)],
)
def test_map_batches_options_leave_cpus_for_reading(cpus, reserve, actor_cpus, actors):
    options = map_batches_options(actor_cpus=actor_cpus, batch_size=16, cluster_cpus=cpus, reserve_cpus=reserve)
    assert options["compute"].min_size == options["compute"].max_size == actors
    assert options["num_cpus"] == actor_cpus and options["batch_size"] == 16


@pytest.mark.parametrize(
    "bad", [{"actors": 0}, {"actor_cpus": 0}, {"actor_cpus": float("nan")}, {"batch_size": 0}, {"reserve_cpus": -1}]
)
def test_map_batches_options_refuse_bad_values(bad):
    with pytest.raises(OptionsError):
        map_batches_options(cluster_cpus=2, **bad)


def test_cli_ray_reads_videos_one_task_each_with_the_same_output(cluster, tmp_path, run_cli):
    """Videos on Ray (a task per video) beside photos: the same --jsonl and --json as plain ``detect``, a truncated
    video's frames and error included, and --resume inside a video."""
    pytest.importorskip("av")
    videos = DATA / "videos"
    cut = tmp_path / "cut.mkv"
    data = (videos / "asl_again.mkv").read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    inputs = [videos / "asl_book.mkv", IMAGE_PATHS[0], cut, videos / "asl_again.mkv"]
    outputs = {}
    for mode in ("plain", "ray"):
        jsonl, document = tmp_path / f"{mode}.jsonl", tmp_path / f"{mode}.json"
        code, _, stderr = run_cli("detect", *inputs, "--every", "3", "--jsonl", jsonl, "--json", document, "-q",
                                  *(["--ray"] if mode == "ray" else []))
        assert code == 6 and "cut.mkv: stopped at frame" in stderr, stderr
        outputs[mode] = (jsonl.read_text(), document.read_text())
    assert outputs["ray"] == outputs["plain"]
    lines = outputs["ray"][0].splitlines()
    ray_jsonl = tmp_path / "ray.jsonl"
    ray_jsonl.write_text("\n".join(lines[:20]) + "\n")  # cut inside asl_book.mkv
    code, _, stderr = run_cli("detect", *inputs, "--every", "3", "--jsonl", ray_jsonl, "-q", "--resume", "--ray")
    assert code == 6, stderr
    assert ray_jsonl.read_text() == outputs["plain"][0]
