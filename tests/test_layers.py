"""The package is a house with floors: each module imports only its own floor and those below, and no import cycles.

Every module's imports are read from its source (the ones inside functions too), plus the two kinds of import the
source cannot show: the backend registry's modules and the package's lazily imported public names.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
from helpers import REPO

PACKAGE = REPO / "blazeconv"

# From the ground up; a module is on the floor of its top-level name (``blazeconv.detection.pipeline``: detection).
LAYERS = [
    ("ground: errors, safe files, signals, package data and cache folder, output marks, process tuning",
     ["_version", "errors", "io", "interrupts", "resources", "checksums", "marks", "tuning"]),
    ("spec: MediaPipe's anchors and the variants", ["anchors", "variants"]),
    ("reading: the TFLite flatbuffer", ["tflite_reader", "tflite_checks", "tflite_sparsity"]),
    ("network: the torch modules and state_dict checks", ["network", "fast", "fast_rewrites"]),
    ("convert: TFLite graph to state_dict", ["convert"]),
    ("export: Core ML and ONNX", ["export"]),
    ("sources: what a model argument is, the cache of conversions and exports", ["sources"]),
    ("write-back: a state_dict written into a copy of a .tflite (torch2tflite)", ["tflite_writer"]),
    ("backends: runners on torch, ONNX Runtime, OpenVINO", ["backends"]),
    ("detection: images, letterbox, decoding, NMS, records, the pipeline", ["detection"]),
    ("verify: the Core ML evaluator and check", ["verify"]),
    ("detector: FaceDetector", ["detector"]),
    ("anonymise: faces hidden in photos and videos", ["anonymise"]),
    ("ray: scale-out", ["ray"]),
    ("runs: whole detect and blur runs over files, for the commands and Python", ["runs", "run_outputs", "blurring"]),
    ("evaluation: detections scored against labelled faces (pycocotools)", ["evaluation"]),
    ("training: fine-tuning on labelled faces (blazeconv train)", ["training"]),
    ("bench: measurements", ["bench"]),
    ("cli: the commands", ["cli", "__main__"]),
    ("api: the package's names", ["__init__"]),
]
FLOOR = {name: index for index, (_, names) in enumerate(LAYERS) for name in names}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def floor_of(module: str) -> int:
    parts = module.split(".")
    return FLOOR["__init__"] if len(parts) == 1 else FLOOR[parts[1]]


def _imports(module: str, path: Path) -> set[str]:
    """The blazeconv modules ``module`` imports anywhere in its source."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # ``from . import errors`` imports the module blazeconv.errors; ``from .x import name`` the module .x
            found.update(f"{target}.{alias.name}" if f"{target}.{alias.name}" in MODULES else target
                         for alias in node.names)
    return {name for name in found if name in MODULES and name != module}


def import_graph() -> dict[str, set[str]]:
    graph = {module: _imports(module, path) for module, path in MODULES.items()}
    backends = importlib.import_module("blazeconv.backends")
    graph["blazeconv.backends"] |= {backend.module for backend in backends.BACKENDS.values()}
    package = importlib.import_module("blazeconv")
    graph["blazeconv"] |= {f"blazeconv.{module}" for module in package._LAZY.values()}
    return graph


def test_every_module_is_on_a_floor():
    unknown = sorted(m for m in MODULES if len(m.split(".")) > 1 and m.split(".")[1] not in FLOOR)
    assert not unknown, f"put these modules on a floor in LAYERS: {unknown}"


def test_no_module_imports_a_higher_floor():
    graph = import_graph()
    upward = sorted(
        f"{module} ({LAYERS[floor_of(module)][0].split(':')[0]}) imports {target} "
        f"({LAYERS[floor_of(target)][0].split(':')[0]})"
        for module, targets in graph.items() for target in targets if floor_of(target) > floor_of(module)
    )
    assert not upward, "\n".join(upward)


def test_there_is_no_import_cycle():
    graph = import_graph()
    cycles, state = [], {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(trail[trail.index(target):] + [target]))
            elif target not in state:
                visit(target, trail + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize(("source", "expected"), [
    ("from .detection import load_image\n", {"blazeconv.detection"}),
    ("def f():\n    from ..sources import resolve\n", {"blazeconv.sources"}),
    ("from . import errors\n", {"blazeconv.errors"}),
])
def test_the_parser_sees_imports_at_module_level_and_inside_functions(source, expected, tmp_path):
    path = tmp_path / "probe.py"
    path.write_text(source)
    module = "blazeconv.backends.probe" if source.startswith("def") else "blazeconv.probe"
    assert _imports(module, path) == expected


def test_the_floor_check_would_catch_an_upward_import():
    assert floor_of("blazeconv.sources") > floor_of("blazeconv.network")
    assert floor_of("blazeconv.detection.pipeline") > floor_of("blazeconv.backends.torch")
    assert floor_of("blazeconv.cli.detect") > floor_of("blazeconv.detector")


@pytest.mark.parametrize(("old", "name", "home"), [
    ("blazeconv.detection", "detect_image", "blazeconv.detection.pipeline"),
    ("blazeconv.detection", "detect_files", "blazeconv.detection.pipeline"),
    ("blazeconv.detection", "letterbox", "blazeconv.detection.letterboxing"),
    ("blazeconv.detection", "decode", "blazeconv.detection.postprocess"),
    ("blazeconv.detection", "weighted_nms", "blazeconv.detection.postprocess"),
    ("blazeconv.detection", "remove_letterbox", "blazeconv.detection.letterboxing"),
    ("blazeconv.detection", "annotate", "blazeconv.detection.drawing"),
    ("blazeconv.detection", "load_image", "blazeconv.detection.images"),
    ("blazeconv", "load_model", "blazeconv.sources"),
    ("blazeconv", "Detection", "blazeconv.detection.records"),
    ("blazeconv", "FaceDetector", "blazeconv.detector"),
    ("blazeconv", "load_image", "blazeconv.detection.images"),
    ("blazeconv", "detect_images", "blazeconv.detection.pipeline"),
    ("blazeconv", "blur", "blazeconv.anonymise"),
    ("blazeconv", "blur_video", "blazeconv.anonymise"),
    ("blazeconv.fast", "fast_model", "blazeconv.fast"),
    ("blazeconv.convert", "convert_file", "blazeconv.convert"),
    ("blazeconv.backends", "make_runner", "blazeconv.backends"),
    ("blazeconv.anchors", "generate_anchors", "blazeconv.anchors"),
])
def test_the_public_names_keep_their_old_module_paths(old, name, home):
    assert getattr(importlib.import_module(old), name) is getattr(importlib.import_module(home), name)


@pytest.mark.parametrize("shim", ["detect", "model"])
def test_the_old_shim_modules_are_gone(shim):
    """Their names live in their real homes (``blazeconv.detection``, ``blazeconv.sources``, ``blazeconv.network``,
    ``blazeconv.backends.torch``), which the README and docs name. (Read from the tree: an editable install of another
    checkout would still find the module.)"""
    assert f"blazeconv.{shim}" not in MODULES and not (PACKAGE / f"{shim}.py").exists()
