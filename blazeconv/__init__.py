"""blazeconv: MediaPipe BlazeFace TFLite models to PyTorch, Core ML and ONNX, checked against the reference runtime.

Python API::

    import blazeconv
    detector = blazeconv.FaceDetector()                   # full_range_sparse at every scale the picture needs
    exact = blazeconv.FaceDetector("short_range", exact=True)   # MediaPipe's own answers, one scale
    faces = detector("photo.jpg")                         # list[Detection]: score, box, keypoints (0..1)
    faces[0].keypoints.right_eye, faces[0].to_pixels(width, height), faces[0].to_dict()
    crop = detector.crop("photo.jpg", faces[0])           # (112, 112, 3) uint8 RGB, eyes level
    for frame in detector.video("clip.mp4", fps=5):       # FrameResult: frame, time, detections (blazeconv[video])
        ...
    hidden = blazeconv.blur(frame_bgr, channels="bgr")    # the faces hidden, numpy in and out
    blazeconv.blur_video("clip.mp4", "clip_blurred.mp4", detector=blazeconv.anonymise.detector_for())
    scores = blazeconv.evaluate("photos/", "labels.xml")   # recall, precision, ap50 of the defaults

    model = blazeconv.load_model("short_range.pth")      # eval-mode torch.nn.Module; model.variant: a Variant
    regressors, classificators = model(x)                 # x: (B, 3, S, S) float32 RGB in [-1, 1]
    blazeconv.train("labels.jsonl", model="full_range_sparse", output="tuned.pth", epochs=5)  # fine-tune (.pth)
    blazeconv.torch2tflite("tuned.pth", like="short_range", output="tuned.tflite")  # back into MediaPipe's file

Public names are imported on first use, so ``import blazeconv`` (and ``blazeconv --help``) does not load torch.
"""

from ._version import __version__
from .errors import BlazeconvError

# name -> module that defines it, imported lazily by __getattr__ below
_LAZY = {
    "FaceDetector": "detector",
    "Detection": "detection",
    "load_image": "detection",
    "detect_images": "detection",
    "load_model": "sources",
    "blur": "anonymise",
    "blur_video": "anonymise",
    "evaluate": "evaluation",
    "torch2tflite": "tflite_writer",
    "train": "training",
}

# names whose module imports packages of an extra (errors.EXTRAS): checked first, so a plain install says what to install
_NEEDS = {"torch2tflite": "convert", "train": "train"}

__all__ = ["BlazeconvError", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        from .errors import EXTRAS, require

        extra = _NEEDS.get(name)
        for package in EXTRAS.get(extra, ()):
            require(package, f"blazeconv[{extra}]", f"blazeconv.{name}")

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
