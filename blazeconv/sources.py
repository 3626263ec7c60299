"""What a model argument is, decided in one place, and the cached conversions and exports it may need.

Every entry point that takes a model (the commands, ``FaceDetector``, ``make_runner`` and the backends, the Core ML
and ONNX exports, Ray's actors) hands the argument to ``resolve``, which says what it is (``ModelSource.kind``):

* ``shipped``: a ``Variant``, or the name of a shipped variant (``short_range``) unless a file of that name exists;
  its ``path`` is the packaged ``.tflite``;
* ``tflite``: a file holding a TFLite flatbuffer, recognised by its content whatever its suffix;
* ``onnx``: an ``.onnx`` file (a network blazeconv exported; the ONNX backends run it as it is);
* ``weights``: any other file, read as a PyTorch state_dict (``.pth``);
* ``module``: a torch module; ``runner``: anything with ``run`` (``backends.runner.Runner``), used as it is.

URLs are never read. What an entry point does with a source is here as well: ``load_module`` (the torch backend),
``onnx_network`` (the ONNX backends), ``load_weights`` (the exports), ``load_model`` and ``load_state_dict`` (a
``.pth``). Converted weights of the shipped models and ONNX exports are cached (``resources.cache_dir``), keyed by
the source file's SHA-256 and blazeconv's version, so a changed file or a new converter never serves a stale entry.

Nothing heavy is imported at module level: a cached ONNX file is found without importing torch (the ONNX backends
promise that); converting, loading or exporting imports torch inside the function that needs it.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import ModelFileError, OptionsError, WeightsError, notice
from .io import atomic_path, image_format, looks_like_url, sha256_of, url_refused
from .resources import cache_dir, cache_location, models_dir
from .variants import VARIANTS, Variant, default_variant_for, did_you_mean, fit_variant

if TYPE_CHECKING:
    from .network import BlazeFaceBase, Weights

log = logging.getLogger(__name__)

KINDS = ("shipped", "tflite", "onnx", "weights", "module", "runner")
ROLES = ("model", "weights", "tflite")
# What the cache and the exporters read: the kinds that are files of weights.
FILE_KINDS = ("shipped", "tflite", "weights")

_EXPECTED = "a variant name, a .tflite, .pth or .onnx path, a torch module or a runner"


@dataclass(frozen=True)
class ModelSource:
    """A model argument, recognised (see the module docstring).

    ``kind``: one of ``KINDS``; ``given``: the argument as written (for messages); ``path``: the file to read (the
    packaged ``.tflite`` of a shipped variant), None for objects; ``variant``: the shipped variant, or a runner's
    own, None where only loading tells; ``obj``: the module or runner.
    """

    kind: str
    given: str
    path: Path | None = None
    variant: Variant | None = None
    obj: Any = field(default=None, repr=False, compare=False)

    def describe(self) -> str:
        """What the argument is, for messages: ``the shipped model short_range``, ``the weights w.pth``, ..."""
        if self.kind == "shipped":
            return f"the shipped model {self.variant.name}"
        if self.kind in ("module", "runner"):
            return f"a {type(self.obj).__name__}"
        return {"tflite": "the TFLite model", "onnx": "the ONNX model", "weights": "the weights"}[self.kind] + f" {self.path}"

    def portable(self) -> str:
        """The argument as another process resolves it to the same model (a Ray worker, a command line): a shipped
        model's name, a file's absolute path. A module or runner lives in this process only: ``OptionsError``."""
        if self.kind == "shipped":
            return self.variant.name
        if self.path is None:
            raise OptionsError(f"{self.describe()} lives in this process: another one needs a shipped name or a "
                               "model file")
        return os.path.abspath(self.path)


# What each kind of model argument is called in messages that list what an entry point takes.
KIND_WORDS = {"shipped": "a shipped model name", "tflite": "a .tflite", "weights": "a .pth state_dict",
              "onnx": "an .onnx network blazeconv exported", "module": "a torch module", "runner": "a runner"}


def kinds_text(kinds: tuple[str, ...]) -> str:
    """``a shipped model name, a .tflite or a .pth state_dict``: the kinds an entry point takes, in words."""
    words = [word for kind, word in KIND_WORDS.items() if kind in kinds]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def require_kind(source: ModelSource, kinds: tuple[str, ...], what: str, why: str = "") -> ModelSource:
    """``source`` when its kind is one of ``kinds``; else the one ``OptionsError`` (exit 7) every entry point gives:
    ``blazeconv coreml takes a shipped model name, a .tflite or a .pth state_dict (why), not the ONNX model x.onnx``.
    ``what``: the entry point; ``why``: what it does with the model, in a few words (optional)."""
    if source.kind in kinds:
        return source
    reason = f" ({why})" if why else ""
    raise OptionsError(f"{what} takes {kinds_text(kinds)}{reason}, not {source.describe()}")


def is_runner(value: object) -> bool:
    """True for anything with a callable ``run``: a runner, used as it is."""
    return callable(getattr(value, "run", None))


def shipped_model(variant: Variant) -> Path:
    """Path of the variant's upstream ``.tflite``; ``ModelFileError`` if it is missing."""
    path = models_dir() / variant.tflite_file
    if not path.is_file():
        raise ModelFileError(f"{path}: shipped model for '{variant.name}' not found (set BLAZECONV_MODELS?)")
    return path


def resolve(argument: Any, *, role: str = "model") -> ModelSource:
    """Say what ``argument`` is (``ModelSource``), or raise the one error every entry point gives for it.

    ``role``: ``"model"`` (anything in ``KINDS``: every command's model argument), ``"weights"`` (where only a
    state_dict file is meant: ``load_model``; variant names are plain paths there, a TFLite or ONNX file is refused) or
    ``"tflite"`` (``tflite2torch``: the converter reads the file and names what is wrong with it).
    Errors for a URL, a missing file or a folder: ``WeightsError`` in the weights role, ``ModelFileError`` in the
    tflite role, and in the model role ``ModelFileError`` for a ``.tflite`` / ``.onnx``, ``WeightsError`` for anything
    else; a name without suffix that is neither a file nor a shipped variant is an ``OptionsError`` (exit 7) listing
    the shipped names, with a suggestion for a near miss. An image file is named as one. An object that is no
    model: ``OptionsError``.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if isinstance(argument, ModelSource):
        return argument
    if isinstance(argument, Variant):
        return ModelSource("shipped", argument.name, shipped_model(argument), argument)
    if not isinstance(argument, (str, Path)):
        if is_runner(argument):
            return ModelSource("runner", type(argument).__name__, None, getattr(argument, "variant", None), argument)
        if hasattr(argument, "state_dict"):
            return ModelSource("module", type(argument).__name__, None, None, argument)
        raise OptionsError(f"model must be {_EXPECTED}; got a {type(argument).__name__}")
    name, path = str(argument), Path(argument)
    exists = path.exists()
    model_file = role == "tflite" or (role == "model" and path.suffix.lower() in ("", ".tflite", ".onnx"))
    error = ModelFileError if model_file else WeightsError
    if not exists and looks_like_url(name):
        raise (WeightsError if role == "weights" else ModelFileError)(url_refused(name))
    if role != "weights" and name in VARIANTS and not exists:
        variant = VARIANTS[name]
        return ModelSource("shipped", name, shipped_model(variant), variant)
    if not exists:
        if role != "weights" and path.suffix == "":
            raise OptionsError(f"{name}: neither a file nor a shipped model{did_you_mean(name)}; "
                               f"shipped: {', '.join(VARIANTS)}")
        raise error(f"{path}: no such file")
    if not path.is_file():
        raise error(f"{path}: not a file")
    kind = _kind_of(path)
    if kind.startswith("image"):
        what = f"{path}: an image ({kind.split(':')[1]}), not "
        raise WeightsError(what + "PyTorch weights") if role == "weights" else ModelFileError(what + "a model file")
    if role == "weights" and kind != "weights":
        what = "a TFLite model" if kind == "tflite" else "an ONNX model"
        advice = f"convert it with 'blazeconv tflite2torch {path}', or give" if kind == "tflite" else "give"
        raise WeightsError(f"{path}: {what}, not PyTorch weights: {advice} it as the model (FaceDetector, --model), "
                           "which runs it as it is")
    return ModelSource(kind, name, path)


def _kind_of(path: Path) -> str:
    """``tflite`` when the file carries TFLite's identifier ``TFL3`` at bytes 4..8 (schema.fbs ``file_identifier``),
    ``image:FORMAT`` for an image file's signature, ``onnx`` for the ``.onnx`` suffix (protobuf has no identifier),
    else ``weights``."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        head = b""  # unreadable: the loader that opens it next names the reason
    if head[4:8] == b"TFL3":
        return "tflite"
    image = image_format(head)
    if image is not None:
        return f"image:{image}"
    return "onnx" if path.suffix.lower() == ".onnx" else "weights"


# ------------------------------------------------------------------------------------------ PyTorch


def load_state_dict(path: str | Path) -> dict:
    """Load a state_dict with ``weights_only=True`` (no code from the file runs); errors name the file.

    ``path`` is resolved in the weights role (``resolve``): a URL is not fetched, a TFLite or ONNX file is named as
    such. A pickle of other Python objects (a whole pickled module, a malicious payload) is refused in one line of
    our own. Returns ``{name: tensor}``.
    """
    import pickle

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
    from .network import model_from_state_dict

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

    from .errors import BlazeconvError

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
        from .network import model_from_state_dict

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
    from .network import Weights, architecture_of, check_state_dict

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
    """A TFLite file (or a shipped one) converted in memory."""
    from .convert import convert_file
    from .network import Weights

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
    from .export import DEFAULT_MAX_FACES, check_options
    from .export.onnx import export_onnx, require_onnx
    from .variants import NMS_IOU_THRESHOLD

    iou_threshold = NMS_IOU_THRESHOLD if iou_threshold is None else iou_threshold
    max_faces = DEFAULT_MAX_FACES if max_faces is None else max_faces
    require_onnx()
    check_options(0.0 if min_score is None else min_score, iou_threshold, max_faces)
    weights = load_weights(argument, variant=variant, source_tflite=source_tflite)
    export_onnx(weights.module(), weights.variant, path, detections=detections, source_sha256=weights.source_sha256,
                min_score=min_score, iou_threshold=iou_threshold, max_faces=max_faces)
    return weights


# ---------------------------------------------------------------------------------------------- cache


def cached_weights(variant: Variant) -> Path:
    """Converted weights of the shipped ``variant``, converting once into the cache when needed (``cache_entry``)."""
    from .convert import convert_file, save_state_dict

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
    if detections:  # from the cached network: only the decoding and NMS are exported
        from .export.onnx import export_detections

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
_RECORD = ".sha256"
_ENTRY_NAME = re.compile(r"^[\w.+-]+-[0-9a-f]{16}-[\w.+]+(_detections)?\.(pth|onnx)(\.sha256)?$")
_private_folder: list[Path] = []


def cache_entry(name: str, what: str | None, build: Callable[[Path], None]) -> Path:
    """The cache entry ``name``, built by ``build(path)`` (which writes ``path`` atomically) when it is missing or
    damaged; building a shipped model's entry (``what``: its name, None for a user's file) says so first.

    Each entry is written with a record of its size and SHA-256, checked whenever it is used: a truncated or
    altered entry is rebuilt, with a notice. When the cache folder cannot be created or written, the entry is built
    in a private temporary folder for this process instead, with a notice: never a failure.
    """
    folder = cache_dir()
    if folder is None:
        folder = _private_cache()
    target = folder / name
    record = target.with_name(target.name + _RECORD)
    if target.is_file():
        problem = _damage(target, record)
        if problem is None:
            return target
        notice(f"blazeconv: the cache entry {target} is {problem}; rebuilding it")
    elif what is not None:
        notice(f"blazeconv: preparing {what} for first use (once; kept in {folder})")
    build(target)
    with atomic_path(record) as tmp:
        tmp.write_text(f"{target.stat().st_size} {sha256_of(target)}\n")
    return target


def _damage(target: Path, record: Path) -> str | None:
    """What is wrong with a cache entry (None: it is as it was written)."""
    try:
        size, digest = record.read_text().split()
    except (OSError, ValueError):
        return "unverified (no record of its checksum)"
    if target.stat().st_size != int(size):
        return f"truncated or altered ({target.stat().st_size} bytes, {size} when written)"
    if sha256_of(target) != digest:
        return "altered (its checksum differs from the one recorded)"
    return None


def _private_cache() -> Path:
    """A temporary folder for this process's entries when the cache cannot be used; removed at exit."""
    if not _private_folder:
        import atexit
        import shutil
        import tempfile

        location, _ = cache_location()
        _private_folder.append(Path(tempfile.mkdtemp(prefix="blazeconv-cache-")))
        atexit.register(shutil.rmtree, _private_folder[0], True)
        notice(f"blazeconv: the cache folder {location} cannot be created or written; preparing models in "
               f"{_private_folder[0]} for this run only")
    return _private_folder[0]


def cache_entries() -> list[Path]:
    """The files blazeconv keeps in the cache folder (entries and their records), by name."""
    folder, _ = cache_location()
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and _ENTRY_NAME.match(p.name))


def clear_cache() -> tuple[int, int]:
    """Delete blazeconv's entries from the cache folder (nothing else in it); returns (files, bytes) removed."""
    files = size = 0
    for path in cache_entries():
        size += path.stat().st_size
        path.unlink()
        files += 1
    return files, size


def onnx_network(argument: Any) -> Path:
    """The raw ONNX network the ONNX backends run: an ONNX file as it is, any other file kind's cached export."""
    source = resolve(argument)
    return source.path if source.kind == "onnx" else cached_onnx(source)


__all__ = [
    "FILE_KINDS", "KINDS", "KIND_WORDS", "ModelSource", "cache_entries", "cache_entry", "cached_onnx", "cached_weights",
    "clear_cache", "export_onnx_file", "is_runner", "kinds_text",
    "load_model", "load_module", "load_state_dict", "load_weights", "onnx_network", "require_kind", "resolve",
    "shipped_model", "shipped_variant_of",
]
