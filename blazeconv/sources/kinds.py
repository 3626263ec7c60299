"""What a model argument is (``resolve`` -> ``ModelSource``), and the words every refusal uses."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelFileError, OptionsError, WeightsError
from ..io import image_format, looks_like_url, url_refused
from ..resources import models_dir
from ..variants import VARIANTS, Variant, did_you_mean

if TYPE_CHECKING:
    pass

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
