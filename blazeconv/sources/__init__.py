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
``onnx_network`` (the ONNX backends; the shipped models' ONNX networks travel in the package: ``shipped_onnx``),
``load_weights`` (the exports), ``load_model`` and ``load_state_dict`` (a ``.pth``). Converted weights of the
shipped models and ONNX exports are cached (``resources.cache_dir``), keyed by the source file's SHA-256 and
blazeconv's version, so a changed file or a new converter never serves a stale entry.

Nothing heavy is imported at module level: a packaged or cached ONNX file is found without importing torch (the ONNX
backends promise that; the plain install has no torch); converting, loading or exporting imports torch inside the
function that needs it.

One module per part: ``kinds`` (``resolve``, ``ModelSource``), ``loading`` (state_dicts, modules, the exports'
weights), ``cache`` (the cached conversions and exports).
"""

from .cache import cache_entries, cache_entry, clear_cache
from .kinds import (
    FILE_KINDS,
    KIND_WORDS,
    KINDS,
    ModelSource,
    is_runner,
    kinds_text,
    require_kind,
    resolve,
    shipped_model,
)
from .loading import (
    cached_onnx,
    cached_weights,
    export_onnx_file,
    load_model,
    load_module,
    load_state_dict,
    load_weights,
    onnx_network,
    shipped_onnx,
    shipped_onnx_file,
    shipped_variant_of,
)

__all__ = [
    "FILE_KINDS", "KINDS", "KIND_WORDS", "ModelSource", "cache_entries", "cache_entry", "cached_onnx", "cached_weights",
    "clear_cache", "export_onnx_file", "is_runner", "kinds_text",
    "load_model", "load_module", "load_state_dict", "load_weights", "onnx_network", "require_kind", "resolve",
    "shipped_model", "shipped_onnx", "shipped_onnx_file", "shipped_variant_of",
]
