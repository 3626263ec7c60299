"""The documentation cannot drift (sqlite-utils' tests/test_docs.py is the model):

- every shell and Python example of the README and of docs/*.md runs, in a temporary folder holding photos and
  clips that ship with the repository, with the ``blazeconv`` of this checkout;
- docs/cli.md equals what docs/gen_cli_reference.py makes from the click commands now;
- the site builds with ``mkdocs build --strict`` (a broken link, anchor or API reference fails it);
- the README stays short.

Which blocks run (docs/design.md, *How the examples in these pages are checked*): fences tagged ``sh`` (bash),
``python`` and ``console`` (each ``$ `` line; the output shown is not compared), every command exiting 0. A block
preceded by ``<!-- docs-test: skip (reason) -->`` is not run, one preceded by ``<!-- docs-test: slow -->`` only in
the full suite. The blocks of one page run in order in one folder; a block first runs the earlier blocks of its page
that have not run (a quick block only the quick ones).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
DATA = REPO / "tests" / "data"
README_MAX_LINES = 250  # issue 29: a README of at most about 250 lines; the rest lives in docs/
RUN_LANGUAGES = {"sh", "console", "python"}
MARKER = re.compile(r"<!--\s*docs-test:\s*(skip|slow)\b\s*(.*?)\s*-->")
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
BLOCK_TIMEOUT_S = 600  # a Core ML conversion on a busy 2-core machine; never a measurement


@dataclass(frozen=True)
class Block:
    """One fenced code block: its page (relative to the repository), the line of its opening fence, its language,
    its code (indentation of a list item removed) and its docs-test marker ("", "skip" or "slow") with the reason."""

    page: str
    line: int
    language: str
    code: str
    marker: str = ""
    reason: str = ""

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def _pages() -> list[Path]:
    """The README and every page of the site except the generated reference."""
    return [REPO / "README.md", *sorted(p for p in DOCS.glob("*.md") if p.name != "cli.md")]


def parse_blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, language = opening.group(1), opening.group(2)
        end = i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        code = "\n".join(line[len(indent):] if line.startswith(indent) else line for line in lines[i + 1:end])
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = MARKER.search(before)
        blocks.append(Block(str(path.relative_to(REPO)), i + 1, language, code,
                            marker.group(1) if marker else "", marker.group(2).strip("() ") if marker else ""))
        i = end + 1
    return blocks


BLOCKS = [b for page in _pages() for b in parse_blocks(page)]
RUNNABLE = [b for b in BLOCKS if b.language in RUN_LANGUAGES]


def _param(block: Block):
    marks = [pytest.mark.slow] if block.marker == "slow" else []
    return pytest.param(block, id=block.id, marks=marks)


# --- the folder the examples run in ------------------------------------------------------------------------------


def _as_mp4(source: Path, target: Path) -> None:
    """``source``'s frames written as an H.264 MP4 (the clip users call clip.mp4): re-encoded, since a copy of the
    Matroska packets into MP4 leaves PyAV's stream without the decoder's configuration."""
    import av

    with av.open(str(source)) as inp, av.open(str(target), "w") as out:
        stream = inp.streams.video[0]
        encoder = out.add_stream("libx264", rate=stream.average_rate)
        encoder.width, encoder.height, encoder.pix_fmt = stream.width, stream.height, "yuv420p"
        encoder.options = {"crf": "20", "preset": "veryfast"}
        encoder.time_base = stream.time_base  # the frames keep their timestamps
        for frame in inp.decode(stream):
            out.mux(encoder.encode(frame))
        out.mux(encoder.encode())


@pytest.fixture(scope="session")
def example_inputs(tmp_path_factory) -> Path:
    """What the examples name: photos/ (the test photos), photo.jpg (the astronaut as a JPEG), clip.mp4 (a person
    signing, 77 frames), clips/ (two clips), labelled/ (four group photos with hand-drawn boxes)."""
    from PIL import Image

    base = tmp_path_factory.mktemp("doc-inputs")
    shutil.copytree(DATA / "images", base / "photos")
    Image.open(DATA / "images" / "astronaut.png").convert("RGB").save(base / "photo.jpg", quality=90)
    _as_mp4(DATA / "videos" / "asl_again.mkv", base / "clip.mp4")
    (base / "clips").mkdir()
    for name in ("asl_again.mkv", "asl_book.mkv"):
        shutil.copyfile(DATA / "videos" / name, base / "clips" / name)
    shutil.copytree(DATA / "labelled", base / "labelled")
    bin_dir = base.parent / f"{base.name}-bin"  # `blazeconv` and `python` of this checkout, first on PATH
    bin_dir.mkdir()
    for name, command in (("blazeconv", f'"{sys.executable}" -m blazeconv'), ("python", f'"{sys.executable}"')):
        (bin_dir / name).write_text(f'#!/bin/sh\nexec {command} "$@"\n')
        (bin_dir / name).chmod(0o755)
    return base


class _Pages:
    """One folder per page (a copy of the inputs), and which of its blocks have run."""

    def __init__(self, inputs: Path, root: Path):
        self.inputs, self.root, self.folders, self.ran = inputs, root, {}, set()

    def folder(self, page: str) -> Path:
        if page not in self.folders:
            folder = self.root / re.sub(r"\W", "_", page)
            shutil.copytree(self.inputs, folder)
            self.folders[page] = folder
        return self.folders[page]


@pytest.fixture(scope="session")
def pages(example_inputs, tmp_path_factory) -> _Pages:
    return _Pages(example_inputs, tmp_path_factory.mktemp("doc-pages"))


def _environment(inputs: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{inputs.parent / (inputs.name + '-bin')}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["NO_MKDOCS_2_WARNING"] = "1"
    return env


def _commands(block: Block) -> list[list[str]]:
    """The processes that run a block."""
    if block.language == "python":
        return [[sys.executable, "-c", block.code]]
    if block.language == "sh":
        return [["bash", "-euo", "pipefail", "-c", block.code]]
    return [["bash", "-euo", "pipefail", "-c", line[2:]] for line in block.code.splitlines() if line.startswith("$ ")]


def _run(block: Block, pages: _Pages) -> None:
    folder = pages.folder(block.page)
    env = _environment(pages.inputs)
    for command in _commands(block):
        result = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
        if result.returncode != 0:
            pytest.fail(f"{block.id}: the {block.language} example exited {result.returncode}\n--- example:\n"
                        f"{command[-1]}\n--- stdout:\n{result.stdout[-3000:]}\n--- stderr:\n{result.stderr[-3000:]}",
                        pytrace=False)
    pages.ran.add(block.id)


@pytest.mark.parametrize("block", [_param(b) for b in RUNNABLE])
def test_example_runs(block: Block, pages):
    if block.marker == "skip":
        pytest.skip(f"{block.id}: marked not to run ({block.reason})")
    earlier = [b for b in RUNNABLE if b.page == block.page and b.line < block.line and b.marker != "skip"
               and b.id not in pages.ran and (block.marker == "slow" or b.marker != "slow")]
    for before in earlier:  # what this block may use: files the earlier blocks of its page wrote
        _run(before, pages)
    _run(block, pages)


def test_examples_are_found_and_skips_say_why():
    assert len(RUNNABLE) >= 30, [b.id for b in RUNNABLE]
    assert {b.page for b in RUNNABLE} >= {"README.md", "docs/detect.md", "docs/anonymise.md", "docs/python.md"}
    unexplained = [b.id for b in BLOCKS if b.marker == "skip" and not b.reason]
    assert not unexplained, f"a docs-test skip needs its reason in parentheses: {unexplained}"
    stray = [b.id for b in BLOCKS if b.marker and b.language not in RUN_LANGUAGES]
    assert not stray, f"docs-test markers before blocks that never run (not sh, console or python): {stray}"


# --- the generated reference, the site, the README -----------------------------------------------------------------


def _generator():
    spec = importlib.util.spec_from_file_location("gen_cli_reference", DOCS / "gen_cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_current():
    fresh = _generator().render()
    assert (DOCS / "cli.md").read_text(encoding="utf-8") == fresh, (
        "docs/cli.md differs from the commands' --help: run `python docs/gen_cli_reference.py` (or `make docs`) "
        "and commit docs/cli.md")


def _command_words():
    from blazeconv.cli import cli

    return [" ".join(words) for words, _ in _generator()._commands(cli)]


@pytest.mark.parametrize("words", _command_words())
def test_every_command_is_in_the_cli_reference(words):
    assert f"\n## blazeconv {words}\n" in (DOCS / "cli.md").read_text(encoding="utf-8"), (
        f"blazeconv {words} is not in docs/cli.md: run `python docs/gen_cli_reference.py`")


def test_site_builds_strictly(tmp_path):
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]'): the site's strict build is not checked")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=REPO, env=_environment(REPO), capture_output=True, text=True, timeout=600)
    problems = [line for line in result.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert result.returncode == 0, "mkdocs build --strict failed:\n" + "\n".join(problems or [result.stderr[-3000:]])
    assert (tmp_path / "site" / "index.html").exists() and (tmp_path / "site" / "cli" / "index.html").exists()


# Pages the nav names before they land (mkdocs.yml reports a missing nav file instead of failing on it, so this
# list is the only exception): docs/every_face.md, written with the every-face work (issue 26).
PENDING_PAGES = {"every_face.md"}


def _nav_files(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [f for item in node for f in _nav_files(item)]
    if isinstance(node, dict):
        return [f for value in node.values() for f in _nav_files(value)]
    return []


def test_the_nav_names_every_page_and_only_pages_that_exist():
    yaml = pytest.importorskip("yaml", reason="PyYAML comes with mkdocs (pip install -e '.[docs]')")
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    named = set(_nav_files(config["nav"]))
    missing = sorted(f for f in named - PENDING_PAGES if not (DOCS / f).exists())
    assert not missing, f"mkdocs.yml's nav names pages that do not exist: {missing}"
    left_out = sorted(p.name for p in DOCS.glob("*.md") if p.name not in named)
    assert not left_out, f"pages not in mkdocs.yml's nav: {left_out}"


def test_readme_is_short_and_links_into_the_docs():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES, "the README grows: move the detail into a page of docs/"
    for target in re.findall(r"\]\((docs/[^)#]+)", text):
        assert (REPO / target).exists(), f"README.md links to {target}, which does not exist"
