"""Loading what a model argument names: state_dicts, torch modules, and the weights the exports read."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._version import __version__
from ..errors import ModelFileError, OptionsError, WeightsError, missing_extra, require, require_extra
from ..io import sha256_of
from ..resources import packaged_models_dir
from ..variants import VARIANTS, Variant, default_variant_for, fit_variant
from .cache import cache_entry, cached_entry_exists
from .kinds import FILE_KINDS, ModelSource, require_kind, resolve, shipped_model

if TYPE_CHECKING:
    from ..network import BlazeFaceBase, Weights

log = logging.getLogger(__name__)


def load_state_dict(path: str | Path) -> dict:
    """Load a state_dict with ``weights_only=True`` (no code from the file runs); errors name the file.

    ``path`` is resolved in the weights role (``resolve``): a URL is not fetched, a TFLite or ONNX file is named as
    such. A pickle of other Python objects (a whole pickled module, a malicious payload) is refused in one line of
    our own. Returns ``{name: tensor}``. Without torch: ``MissingDependencyError`` (exit 8) naming ``convert``.
    """
    import pickle

    require("torch", "blazeconv[convert]", f"reading the weights {path}")
    import torch

    path = resolve(path, role="weights").path
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # torch's text brings ANSI codes and the advice to load unsafely: not ours
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        raise WeightsError(
            f"{path}: not a loadable weights-only state_dict: it holds pickled Python objects{what}, which are never "
            "loaded (for a whole saved model, save its state_dict() instead)"
        ) from None
    except Exception as exc:  # zip errors, truncated files, ...: all mean "not plain weights"
        text = _ANSI.sub("", str(exc)).strip()
        first_line = text.splitlines()[0] if text else type(exc).__name__
        raise WeightsError(f"{path}: not a loadable weights-only state_dict ({first_line[:200]})") from None
    if not isinstance(state_dict, dict):
        raise WeightsError(f"{path}: holds a {type(state_dict).__name__}, expected a state_dict (dict of tensors)")
    odd = next((key for key in state_dict if not isinstance(key, str)), None)
    if odd is not None:
        raise WeightsError(f"{path}: a state_dict's keys are names, found the {type(odd).__name__} key {repr(odd)[:60]}")
    return state_dict


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def load_model(weights_path: str | Path, variant: Variant | str | None = None) -> BlazeFaceBase:
    """Load BlazeFace weights saved by ``blazeconv tflite2torch`` (or the original port's .pth files).

    The architecture is inferred from the keys and checked shape by shape. The module's ``variant`` attribute says
    which model the weights are (anchors, input size, default threshold): ``variant`` if given (it must be of the
    weights' architecture), else the shipped variant whose converted ``.tflite`` has exactly these weights, else the
    architecture's default (``short_range`` for 128 px). Returns the module in eval mode; forward takes
    ``(B, 3, S, S)`` float32 RGB in [-1, 1] and returns ``(regressors (B, N, 16), classificators (B, N, 1))``, raw
    logits in the TFLite outputs' layout.
    """
    require("torch", "blazeconv[convert]", f"loading the weights {weights_path}")
    from ..network import model_from_state_dict

    state_dict = load_state_dict(weights_path)
    model = model_from_state_dict(state_dict, str(weights_path))
    if variant is not None:
        model.variant = fit_variant(variant, model.architecture, str(weights_path))
    else:
        model.variant = shipped_variant_of(state_dict, model.architecture) or default_variant_for(model.architecture)
    return model


def shipped_variant_of(state_dict: dict, architecture: str) -> Variant | None:
    """The shipped variant of ``architecture`` whose converted weights (the cached ones ``detect`` uses) equal these."""
    import pickle

    import torch

    from ..errors import BlazeconvError

    for candidate in VARIANTS.values():
        if candidate.architecture != architecture:
            continue
        try:
            shipped = torch.load(cached_weights(candidate), map_location="cpu", weights_only=True)
        except (BlazeconvError, OSError, RuntimeError, pickle.UnpicklingError) as exc:  # no match, not a failure
            log.debug("cannot compare with the shipped %s: %s", candidate.name, exc)
            continue
        if _same_weights(shipped, state_dict):
            return candidate
    return None


def _same_weights(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k].float(), b[k].float()) for k in a)


def load_module(argument: Any, variant: Variant | str | None = None):
    """The torch module of any model argument but an ONNX file, its ``variant`` attribute set: ``variant`` if given
    (it must fit the weights' architecture), else the one the source says (``load_model`` for a ``.pth``).

    A shipped name loads its cached converted weights; a TFLite file is converted in memory; a module is returned
    with ``variant`` set when given.
    """
    source = resolve(argument)
    require("torch", "blazeconv[convert]", f"a torch module of {source.describe()}")
    if source.kind == "module":
        module = source.obj
        if variant is not None:
            module.variant = fit_variant(variant, getattr(module, "architecture", None), source.given)
        return module
    if source.kind == "weights":
        return load_model(source.path, variant)
    if source.kind not in FILE_KINDS:
        raise OptionsError(f"{source.given}: {source.describe()} has no torch module: run it with --backend onnxruntime")
    if source.kind == "shipped":  # the converted weights from the cache
        from ..network import model_from_state_dict

        module = model_from_state_dict(load_state_dict(cached_weights(source.variant)), source.given)
        own = source.variant
    else:
        weights = _file_weights(source)
        module, own = weights.module(), weights.variant
    module.variant = own if variant is None else fit_variant(variant, module.architecture, source.given)
    return module


# ---------------------------------------------------------------------------------- the exports' weights


def load_weights(argument: Any, variant: str | Variant | None = None,
                 source_tflite: str | Path | None = None) -> Weights:
    """The weights to export from a shipped name, a TFLite file (converted here) or a ``.pth`` state_dict.

    A TFLite file tells its variant and SHA-256 itself. For a ``.pth`` the architecture comes from the keys; the
    variant is ``variant`` if given, else the one of ``source_tflite`` (whose weights must equal the ``.pth``'s),
    else the shipped model whose weights are identical, else ``default_variant_for`` the architecture. The SHA-256
    is known when the weights match a ``.tflite`` (given or shipped). A ``variant`` other than the one found drops
    the SHA-256 (it belongs to another file).
    """
    from ..network import Weights, architecture_of, check_state_dict

    source = require_kind(resolve(argument), FILE_KINDS, "an export", "it reads the weights")
    if source.kind != "weights":
        if source_tflite is not None:
            raise OptionsError(f"{source.path}: --source-tflite is only for .pth weights; this is the .tflite itself")
        found = _file_weights(source)
    else:
        path = source.path
        state_dict = load_state_dict(path)
        architecture = architecture_of(state_dict, str(path))
        check_state_dict(state_dict, architecture, str(path))
        if source_tflite is not None:
            tflite = _file_weights(resolve(source_tflite))
            if not _same_weights(state_dict, tflite.state_dict):
                raise WeightsError(f"{path}: weights differ from those converted from {source_tflite}")
            found = Weights(path, tflite.variant, state_dict, tflite.source_sha256, f"weights of {Path(source_tflite).name}")
        else:
            shipped = shipped_variant_of(state_dict, architecture)
            if shipped is not None:
                found = Weights(path, shipped, state_dict, shipped.sha256, f"weights equal to the shipped {shipped.tflite_file}")
            else:
                found = Weights(path, default_variant_for(architecture), state_dict, None,
                                f"default for {architecture} (weights of no known .tflite)")
    if variant is None:
        return found
    named = fit_variant(variant, found.variant.architecture, str(found.path))
    if named is found.variant:
        return found
    return Weights(found.path, named, found.state_dict, None, "--variant")


def _file_weights(source: ModelSource) -> Weights:
    """A TFLite file (or a shipped one) converted in memory (torch and the TFLite reader: the ``convert`` extra)."""
    _require_converter(source.describe())
    from ..convert import convert_file
    from ..network import Weights

    if source.kind not in ("shipped", "tflite"):
        raise ModelFileError(f"{source.given}: not a TFLite model ({source.describe()})")
    conversion = convert_file(source.path)
    return Weights(source.path, conversion.variant, conversion.state_dict, sha256_of(source.path),
                   f"converted from {source.path.name} ({conversion.recognised_by})")


def export_onnx_file(argument: Any, path: str | Path, *, detections: bool = False, variant: str | None = None,
                     source_tflite: str | Path | None = None, min_score: float | None = None,
                     iou_threshold: float | None = None, max_faces: int | None = None) -> Weights:
    """Export a shipped name, a TFLite file or a ``.pth`` to ONNX at ``path`` (``export.onnx.export_onnx``);
    options are checked before any work. Returns the ``Weights`` exported (variant, SHA-256, how it was decided)."""
    require_extra("convert", f"exporting {resolve(argument).describe()} to ONNX")
    from ..export import DEFAULT_MAX_FACES, check_options
    from ..export.onnx import export_onnx, require_onnx
    from ..variants import NMS_IOU_THRESHOLD

    iou_threshold = NMS_IOU_THRESHOLD if iou_threshold is None else iou_threshold
    max_faces = DEFAULT_MAX_FACES if max_faces is None else max_faces
    require_onnx()
    check_options(0.0 if min_score is None else min_score, iou_threshold, max_faces)
    weights = load_weights(argument, variant=variant, source_tflite=source_tflite)
    export_onnx(weights.module(), weights.variant, path, detections=detections, source_sha256=weights.source_sha256,
                min_score=min_score, iou_threshold=iou_threshold, max_faces=max_faces)
    return weights


def _require_converter(what: str) -> None:
    """``MissingDependencyError`` (exit 8) naming ``convert`` unless torch and the TFLite reader are installed."""
    for package in ("torch", "tflite"):
        require(package, "blazeconv[convert]", f"converting {what} to PyTorch")


def cached_weights(variant: Variant) -> Path:
    """Converted weights of the shipped ``variant``, converting once into the cache when needed (``cache_entry``)."""
    _require_converter(f"the shipped model {variant.name}")
    from ..convert import convert_file, save_state_dict

    source = shipped_model(variant)
    return cache_entry(f"{variant.name}-{sha256_of(source)[:16]}-{__version__}.pth", variant.name,
                       lambda target: save_state_dict(convert_file(source).state_dict, target))


def cached_onnx(argument: Any, *, detections: bool = False) -> Path:
    """The ONNX export of a shipped variant, a TFLite file or a ``.pth``, exported once into the cache when needed:
    the raw network, or with ``detections`` the model with decoding and weighted NMS inside (default thresholds;
    ``blazeconv.export.onnx``). Written atomically. When the entry exists, nothing but checksums is computed and
    torch is not imported.
    """
    source = require_kind(resolve(argument), FILE_KINDS, "an ONNX export")
    digest = sha256_of(source.path)
    name = _entry_name(source, digest)
    kind = "_detections" if detections else ""
    entry = f"{name}-{digest[:16]}-{__version__}{kind}.onnx"
    what = name if source.kind == "shipped" else None  # the user's own files are exported without a notice
    if missing_extra("convert") and not cached_entry_exists(entry):  # exit 8 before any notice or work
        require_extra("convert", f"exporting {source.describe()} to ONNX")
    if detections:  # from the cached network: only the decoding and NMS are exported
        from ..export.onnx import export_detections

        network = cached_onnx(source)
        return cache_entry(entry, what and f"{what} (with NMS)", lambda target: export_detections(network, target))
    return cache_entry(entry, what, lambda target: export_onnx_file(source, target))


def _entry_name(source: ModelSource, digest: str) -> str:
    """The name an export's cache entry starts with; the entry is keyed by the file's content (``digest``), never by
    its name: a shipped model's name (also for a copy of a shipped ``.tflite``, which then shares its entry), else
    the kind of file (``tflite``, ``pth``)."""
    if source.kind == "shipped":
        return source.variant.name
    if source.kind == "tflite":
        shipped = next((v for v in VARIANTS.values() if v.sha256 == digest), None)
        if shipped is not None:
            return shipped.name
        return "tflite"
    return "pth"


# A cache entry's record beside it: "SIZE SHA256" of the entry as it was written.


def shipped_onnx_file(variant: Variant) -> Path:
    """Where the raw ONNX network of the shipped ``variant`` travels in the package: ``face_detection_<name>.onnx``
    beside the ``.tflite`` it was exported from (``make onnx-models``; tests/test_install.py checks it equals a fresh
    export), in the package's own ``models/`` whatever ``$BLAZECONV_MODELS`` says."""
    return packaged_models_dir() / Path(variant.tflite_file).with_suffix(".onnx").name


def shipped_onnx(argument: Any) -> Path | None:
    """The packaged ONNX network of a shipped name or of a ``.tflite`` whose content (SHA-256) is a shipped model's,
    None for anything else or when the package lacks it. Reads the file's checksum only: no torch, no export."""
    source = resolve(argument)
    if source.kind not in ("shipped", "tflite"):
        return None
    digest = sha256_of(source.path)
    variant = next((v for v in VARIANTS.values() if v.sha256 == digest), None)
    if variant is None:
        return None
    path = shipped_onnx_file(variant)
    return path if path.is_file() else None


def onnx_network(argument: Any) -> Path:
    """The raw ONNX network the ONNX backends run: an ONNX file as it is; the packaged network of a shipped model (or
    of a copy of its ``.tflite``, ``shipped_onnx``); any other file kind's cached export, which needs the ``convert``
    extra the first time (``MissingDependencyError``, exit 8, before any work, when torch is missing)."""
    source = resolve(argument)
    if source.kind == "onnx":
        return source.path
    return shipped_onnx(source) or cached_onnx(source)
