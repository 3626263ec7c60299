"""The SSD loss of a batch: classification (hard-negative mining or focal), box and keypoint regression.

Regression is on the raw regressor values (``targets.encode``: the decoder's own offsets, input pixels), divided by
the face's size in input pixels so that a 10 px face and a 150 px one weigh alike, with a smooth L1 (Huber) of
``beta`` face sizes. Keypoints count only where labelled. Classification is a binary cross-entropy on the logits:
every positive anchor, and either the ``neg_ratio`` x positives hardest negatives of each input (at least
``min_negatives``: a picture with no face still teaches "no face"), or every negative with the focal loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LossWeights:
    """``classification``: ``"ohem"`` (hard-negative mining, SSD's) or ``"focal"`` (RetinaNet's, ``gamma`` and
    ``alpha``); ``box`` and ``keypoints``: weights of the regression terms; ``beta``: the smooth L1's corner, in
    face sizes; ``neg_ratio`` and ``min_negatives``: hard negatives per positive, and at least per input."""

    classification: str = "ohem"
    box: float = 1.0
    keypoints: float = 0.5
    beta: float = 0.05
    neg_ratio: int = 3
    min_negatives: int = 16
    gamma: float = 2.0
    alpha: float = 0.25


@dataclass(frozen=True)
class BatchTargets:
    """What ``loss`` compares a batch's outputs with (all tensors, ``B`` inputs, ``N`` anchors, ``K`` keypoints):
    ``positive`` / ``negative`` ``(B, N)`` bool; ``raw`` ``(B, N, 4 + 2K)`` regressor targets (read at positives);
    ``labelled`` ``(B, N, K)`` bool, keypoints with a label; ``size`` ``(B, N)`` the matched face's longer side in
    input pixels (1 elsewhere)."""

    positive: torch.Tensor
    negative: torch.Tensor
    raw: torch.Tensor
    labelled: torch.Tensor
    size: torch.Tensor

    def to(self, device) -> BatchTargets:
        return BatchTargets(*(t.to(device) for t in (self.positive, self.negative, self.raw, self.labelled, self.size)))


def loss(regressors: torch.Tensor, logits: torch.Tensor, targets: BatchTargets,
         weights: LossWeights = LossWeights()) -> dict[str, torch.Tensor]:
    """The batch's losses: ``{"total", "classification", "box", "keypoints"}`` (scalars; ``total`` the weighted sum).

    ``regressors`` ``(B, N, 4 + 2K)`` and ``logits`` ``(B, N, 1)`` or ``(B, N)``: the model's raw outputs. Each term
    is divided by the batch's positives (at least 1); keypoints by the labelled keypoints (each an x and a y).
    """
    logits = logits.reshape(targets.positive.shape)
    positive, negative = targets.positive, targets.negative
    count = positive.sum().clamp(min=1).to(logits.dtype)
    labels = positive.to(logits.dtype)
    if weights.classification == "focal":
        chosen = positive | negative
        ce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
        p = torch.sigmoid(logits)
        p_true = torch.where(positive, p, 1 - p)
        alpha = torch.where(positive, torch.full_like(p, weights.alpha), torch.full_like(p, 1 - weights.alpha))
        classification = (alpha * (1 - p_true) ** weights.gamma * ce)[chosen].sum() / count
    else:
        ce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")  # (B, N)
        with torch.no_grad():
            hardness = torch.where(negative, ce, torch.full_like(ce, -1.0))
            order = hardness.argsort(dim=1, descending=True).argsort(dim=1)  # rank of each anchor's loss
            allowed = torch.clamp(positive.sum(dim=1, keepdim=True) * weights.neg_ratio, min=weights.min_negatives)
            hard = negative & (order < allowed)
        classification = (ce[positive].sum() + ce[hard].sum()) / count
    scale = targets.size[positive][:, None]  # (P, 1) face sizes in input pixels
    difference = (regressors[positive] - targets.raw[positive]) / scale  # (P, 4 + 2K)
    zero = torch.zeros((), dtype=regressors.dtype, device=regressors.device)
    box = F.smooth_l1_loss(difference[:, :4], torch.zeros_like(difference[:, :4]), beta=weights.beta,
                           reduction="sum") / count if positive.any() else zero
    points = difference[:, 4:].reshape(len(difference), (difference.shape[1] - 4) // 2, 2)  # (P, K, 2)
    labelled = targets.labelled[positive]  # (P, K)
    if labelled.any():
        keypoints = F.smooth_l1_loss(points[labelled], torch.zeros_like(points[labelled]), beta=weights.beta,
                                     reduction="sum") / labelled.sum().clamp(min=1)
    else:
        keypoints = zero
    total = classification + weights.box * box + weights.keypoints * keypoints
    return {"total": total, "classification": classification, "box": box, "keypoints": keypoints}


__all__ = ["BatchTargets", "LossWeights", "loss"]
