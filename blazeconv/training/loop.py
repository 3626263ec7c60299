"""The training loop: batches, the optimizer, checkpoints and ``--resume``, the guards (NaN, frozen backbone, sparse
zeros), and what rounding to float16 at export does to the result.

Repeatable: epoch ``e``'s order and augmentation come from ``numpy.random.default_rng([seed, e])`` and nothing else
draws random numbers, so a run resumed from the checkpoint of epoch ``e`` continues exactly as the uninterrupted run
(same seed, same machine and thread count: float sums may differ across them).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import BlazeconvError, OptionsError
from ..variants import Variant
from .data import Augmentation, Sample, model_input
from .loss import BatchTargets, LossWeights, loss
from .targets import Matching, encode, match

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "blazeconv-training-checkpoint-1"
HEADS = ("classifier", "regressor")  # parameter names of the output heads; everything else is the backbone
_CACHE_PIXELS = 256 * 2**20  # decoded pictures kept in memory between epochs, in bytes


class TrainingError(BlazeconvError):
    """Training cannot go on (a loss that is not finite, a checkpoint that does not fit). Exit code 1."""

    exit_code = 1


@dataclass(frozen=True)
class TrainingOptions:
    """Every knob of a training run (``train``).

    ``epochs``: passes over the labelled pictures; ``batch_size``: model inputs per step; ``learning_rate`` and
    ``weight_decay``: AdamW's (decay only on weights the model keeps nonzero); ``seed``: the run's randomness
    (order, augmentation); ``freeze_backbone``: train only the output heads (``classifier*``, ``regressor*``);
    ``device``: ``"auto"`` (CUDA where torch has it, else CPU), ``"cpu"`` or ``"cuda"``; ``clip_norm``: gradients
    are scaled down to at most this norm; ``checkpoint``: the file written after every epoch (None: the output
    with suffix ``.ckpt``); ``resume``: continue from it; ``augmentation``, ``matching``, ``loss``: see their
    classes.
    """

    epochs: int = 10
    batch_size: int = 8
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    seed: int = 0
    freeze_backbone: bool = False
    device: str = "auto"
    clip_norm: float = 10.0
    checkpoint: Path | None = None
    resume: bool = False
    augmentation: Augmentation = field(default_factory=Augmentation)
    matching: Matching = field(default_factory=Matching)
    loss: LossWeights = field(default_factory=LossWeights)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise OptionsError(f"epochs and batch size must be at least 1, got {self.epochs} and {self.batch_size}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise OptionsError(f"the learning rate must be a positive number, got {self.learning_rate}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise OptionsError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.loss.classification not in ("ohem", "focal"):
            raise OptionsError(f"classification loss must be ohem or focal, got {self.loss.classification!r}")
        a = self.augmentation
        if not 0 < a.min_zoom <= a.max_zoom:
            raise OptionsError(f"zoom range must be 0 < min <= max, got {a.min_zoom} .. {a.max_zoom}")

    def record(self) -> dict:
        """The options that decide the run's numbers, as plain values (kept in the checkpoint)."""
        values = asdict(self)
        for name in ("epochs", "checkpoint", "resume", "device"):
            values.pop(name)
        return values


@dataclass(frozen=True)
class Progress:
    """One step, for a progress display: ``epoch`` (from 1) of ``epochs``, ``step`` (from 1) of ``steps`` in
    the epoch, and the step's ``losses`` (``total``, ``classification``, ``box``, ``keypoints``)."""

    epoch: int
    epochs: int
    step: int
    steps: int
    losses: dict[str, float]


@dataclass(frozen=True)
class TrainingResult:
    """What ``train`` did.

    ``output``: the ``.pth`` (a state_dict every command takes); ``variant``: the model's; ``checkpoint``; ``pictures``
    and ``faces`` trained on; ``epochs``: completed epochs (``resumed_from``: the checkpoint's, 0 for a fresh run);
    ``history``: the mean losses of each epoch; ``seconds``: training time in this process; ``device``;
    ``float16_rounding``: the largest change a weight makes when stored as float16 (how MediaPipe's files store
    them); ``float16_score_change``: the largest change of a face score that rounding makes on the first training
    inputs (model outputs compared before and after rounding).
    """

    output: Path
    variant: Variant
    checkpoint: Path
    pictures: int
    faces: int
    epochs: int
    resumed_from: int
    history: list[dict[str, float]]
    seconds: float
    device: str
    float16_rounding: float
    float16_score_change: float


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise OptionsError("device cuda: torch has no CUDA here (use --device cpu or auto)")
    return torch.device(device)


def sparse_masks(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """For a model whose shipped file stores some weights sparse (``full_range_sparse``): for each such weight, where
    it may be nonzero (``True``) — where it is nonzero now, a subset of the file's sparsity pattern, so
    ``torch2tflite`` can write the trained weights back. Empty for dense models."""
    from ..convert import convert_file
    from ..sources import shipped_model
    from ..variants import VARIANTS

    architecture = getattr(model, "architecture", None)
    shipped = [v for v in VARIANTS.values() if v.architecture == architecture and "sparse" in v.weight_storage]
    if not shipped:
        return {}
    conversion = convert_file(shipped_model(shipped[0]))
    parameters = dict(model.named_parameters())
    return {key: parameters[key].detach() != 0 for key, p in conversion.parameters.items()
            if p.tensor.stored_as.startswith("sparse") and key in parameters}


def batch_targets(samples_targets, variant: Variant, anchors: np.ndarray, matching: Matching) -> BatchTargets:
    """``BatchTargets`` of a batch's ``data.Targets`` (one per model input)."""
    size = variant.input_size
    count = len(anchors)
    positives, negatives, raws, labelled_all, sizes = [], [], [], [], []
    for targets in samples_targets:
        assignment = match(variant, anchors, targets.boxes, targets.ignore, matching)
        keypoint_count = targets.keypoints.shape[1]
        raw = np.zeros((count, 4 + 2 * keypoint_count), np.float32)
        labelled = np.zeros((count, keypoint_count), bool)
        face_size = np.ones(count, np.float32)
        positive = assignment.positive
        if positive.any():
            faces = assignment.face[positive]
            raw[positive] = encode(targets.boxes[faces], targets.keypoints[faces], anchors[positive], size)
            labelled[positive] = targets.labelled[faces]
            sides = targets.boxes[faces, 2:] - targets.boxes[faces, :2]
            face_size[positive] = np.maximum(sides.max(axis=1) * size, 1.0)
        positives.append(positive)
        negatives.append(assignment.negative)
        raws.append(raw)
        labelled_all.append(labelled)
        sizes.append(face_size)
    return BatchTargets(*(torch.from_numpy(np.stack(a)) for a in (positives, negatives, raws, labelled_all, sizes)))


class _Pictures:
    """Decoded pictures, kept between epochs while they fit in ``_CACHE_PIXELS`` bytes."""

    def __init__(self):
        self.kept: dict[Path, np.ndarray] = {}
        self.bytes = 0

    def get(self, sample: Sample) -> np.ndarray:
        from ..detection.images import load_image

        if sample.path in self.kept:
            return self.kept[sample.path]
        image = load_image(sample.path)
        if self.bytes + image.nbytes <= _CACHE_PIXELS:
            self.kept[sample.path] = image
            self.bytes += image.nbytes
        return image


def run(model: torch.nn.Module, samples: list[Sample], output: Path, options: TrainingOptions,
        on_step: Callable[[Progress], None] | None = None, source: str = "") -> TrainingResult:
    """Fine-tune ``model`` (its ``variant`` set) on ``samples``; write the state_dict to ``output`` (atomically) and a
    checkpoint after every epoch. See ``TrainingOptions``; ``source``: the model as given, kept in the checkpoint."""
    from ..convert import save_state_dict
    from ..interrupts import Interrupted
    from ..io import atomic_path

    variant: Variant = model.variant
    device = pick_device(options.device)
    checkpoint = options.checkpoint or output.with_suffix(".ckpt")
    model = model.float().to(device)
    masks = {k: m.to(device) for k, m in sparse_masks(model).items()}
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(not options.freeze_backbone or name.startswith(HEADS))
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise OptionsError(f"{variant.name}: nothing to train (no parameter named {' or '.join(HEADS)}*)")
    decay = [p for n, p in model.named_parameters() if p.requires_grad and n not in masks and p.ndim > 1]
    rest = [p for n, p in model.named_parameters() if p.requires_grad and (n in masks or p.ndim <= 1)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": options.weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=options.learning_rate)
    history: list[dict[str, float]] = []
    start = 0
    if options.resume:
        start, history = _load_checkpoint(checkpoint, model, optimizer, options, variant)
    anchors = variant.anchors()
    pictures = _Pictures()
    steps = math.ceil(len(samples) / options.batch_size)
    began = time.perf_counter()
    epoch = start
    first_inputs = None
    try:
        for epoch in range(start, options.epochs):
            rng = np.random.default_rng([options.seed, epoch])
            order = rng.permutation(len(samples))
            totals: dict[str, float] = {}
            model.train()
            for step in range(steps):
                batch = [samples[i] for i in order[step * options.batch_size:(step + 1) * options.batch_size]]
                made = [model_input(s, variant.input_size, rng, options.augmentation, pictures.get(s)) for s in batch]
                inputs = torch.from_numpy(np.stack([tensor for tensor, _ in made])).to(device)
                if first_inputs is None:
                    first_inputs = inputs[:4].detach().cpu()
                targets = batch_targets([t for _, t in made], variant, anchors, options.matching).to(device)
                regressors, logits = model(inputs)
                losses = loss(regressors, logits, targets, options.loss)
                values = {k: float(v.detach()) for k, v in losses.items()}
                if not all(math.isfinite(v) for v in values.values()):
                    bad = ", ".join(f"{k} {v}" for k, v in values.items() if not math.isfinite(v))
                    kept = (f"the last good checkpoint, {checkpoint} (epoch {len(history)}), is kept: lower the "
                            "learning rate and resume from it with --resume" if history else
                            "no epoch had completed, so there is no checkpoint; lower the learning rate")
                    raise TrainingError(f"epoch {epoch + 1} step {step + 1}: the loss is not finite ({bad}); "
                                        f"training stopped, nothing written to {output}; {kept}")
                optimizer.zero_grad(set_to_none=True)
                losses["total"].backward()
                for name, parameter in model.named_parameters():
                    if name in masks and parameter.grad is not None:
                        parameter.grad.mul_(masks[name])
                torch.nn.utils.clip_grad_norm_(trainable, options.clip_norm)
                optimizer.step()
                with torch.no_grad():
                    for name, parameter in model.named_parameters():
                        if name in masks:
                            parameter.mul_(masks[name])
                for k, v in values.items():
                    totals[k] = totals.get(k, 0.0) + v * len(batch)
                if on_step is not None:
                    on_step(Progress(epoch + 1, options.epochs, step + 1, steps, values))
            history.append({k: v / len(samples) for k, v in totals.items()})
            _save_checkpoint(checkpoint, model, optimizer, options, variant, epoch + 1, history, source)
            log.info("epoch %d/%d: %s", epoch + 1, options.epochs, history[-1])
    except Interrupted as exc:
        done = len(history)
        exc.detail = (f"training stopped in epoch {epoch + 1}; {checkpoint} holds epoch {done}: resume with --resume"
                      if done else "training stopped before its first epoch ended (no checkpoint)")
        raise
    seconds = time.perf_counter() - began
    model.eval()
    state_dict = {k: v.detach().to("cpu").float().clone() for k, v in model.state_dict().items()}  # not views
    rounding, score_change = _float16_effect(model, state_dict, first_inputs, device)
    with atomic_path(output) as tmp:
        save_state_dict(state_dict, tmp)
    faces = int(sum(int((~s.ignore).sum()) for s in samples))
    return TrainingResult(output, variant, checkpoint, len(samples), faces, len(history), start, history, seconds,
                          str(device), rounding, score_change)


def _float16_effect(model, state_dict, inputs, device) -> tuple[float, float]:
    """Largest ``|float16(w) - w|`` over the weights, and largest change of a score on ``inputs`` that it makes."""
    rounded = {k: v.half().float() for k, v in state_dict.items()}
    rounding = max(float((rounded[k] - v).abs().max()) for k, v in state_dict.items())
    if inputs is None:
        return rounding, 0.0
    with torch.no_grad():
        _, before = model(inputs.to(device))
        model.load_state_dict({k: v.to(device) for k, v in rounded.items()})
        _, after = model(inputs.to(device))
        model.load_state_dict({k: v.to(device) for k, v in state_dict.items()})
    change = (torch.sigmoid(after.float()) - torch.sigmoid(before.float())).abs().max()
    return rounding, float(change)


def _save_checkpoint(path: Path, model, optimizer, options: TrainingOptions, variant: Variant, epoch: int,
                     history: list, source: str) -> None:
    from ..io import atomic_path

    record = {"format": CHECKPOINT_FORMAT, "epoch": epoch, "variant": variant.name,
              "architecture": getattr(model, "architecture", ""), "options": _plain(options.record()),
              "history": history, "source": source,
              "state_dict": {k: v.detach().to("cpu") for k, v in model.state_dict().items()},
              "optimizer": optimizer.state_dict()}
    with atomic_path(path) as tmp:
        torch.save(record, tmp)


def _plain(value):
    """Options as JSON-like values (tuples to lists, paths to strings): what ``torch.load(weights_only=True)`` reads."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _load_checkpoint(path: Path, model, optimizer, options: TrainingOptions, variant: Variant
                     ) -> tuple[int, list]:
    """Restore the model and optimizer from ``path``; returns the epochs it had completed and their history."""
    if not path.exists():
        raise TrainingError(f"--resume: no checkpoint {path} (it is written after each epoch; -o names it "
                            "OUT.ckpt unless --checkpoint says otherwise)")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: one line naming it
        raise TrainingError(f"{path}: not a readable training checkpoint ({str(exc).splitlines()[0][:200]})") from None
    if not isinstance(record, dict) or record.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path}: not a blazeconv training checkpoint")
    if record["architecture"] != getattr(model, "architecture", "") or record["variant"] != variant.name:
        raise TrainingError(f"{path}: a checkpoint of {record['variant']} ({record['architecture']}), the model is "
                            f"{variant.name}")
    differ = sorted(k for k, v in _plain(options.record()).items() if record["options"].get(k) != v)
    if differ:
        raise TrainingError(f"{path}: resumed with other options than the run had ({', '.join(differ)}); "
                            "give the same ones (only --epochs may change)")
    model.load_state_dict(record["state_dict"])
    optimizer.load_state_dict(record["optimizer"])
    return int(record["epoch"]), list(record["history"])


__all__ = ["CHECKPOINT_FORMAT", "HEADS", "Progress", "TrainingError", "TrainingOptions", "TrainingResult",
           "batch_targets", "pick_device", "run", "sparse_masks"]
