"""Per-class validation counts, exact across ranks: integer counts summed with one all-reduce.

Ties between scores are broken towards the lower class index (as ``argmax`` does), for top-1 and top-5 alike:
an image is top-k correct when fewer than k classes outrank its label. An image whose logits are not all finite
(a diverged model) is never correct, predicts no class, and is counted in ``nonfinite``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

TOP_K = 5


COUNT_NAMES = ("correct", "total", "predicted", "top5_correct", "real_correct", "real_total", "nonfinite")


def label_rank(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Number of classes that outrank each sample's label (0 = top-1): higher score, or equal score and lower index."""
    label_score = logits.gather(1, labels[:, None])
    index = torch.arange(logits.shape[1], device=logits.device)
    tied_before = (logits == label_score) & (index[None, :] < labels[:, None])
    return (logits > label_score).sum(1) + tied_before.sum(1)


@dataclass
class PerClassResult:
    """Counts of one validation, summed over all ranks (numpy int64 arrays, one entry per class)."""

    class_names: list[str]
    correct: np.ndarray
    total: np.ndarray
    predicted: np.ndarray  # how often each class was the top-1 prediction (images with finite logits)
    top5_correct: np.ndarray
    real_correct: Optional[np.ndarray] = None  # None when ReaL labels are off
    real_total: Optional[np.ndarray] = None  # images of the class with a non-empty ReaL set
    confusion: Optional[np.ndarray] = None  # [true, predicted], images with finite logits
    nonfinite: Optional[np.ndarray] = None  # images of the class whose logits were not all finite

    @staticmethod
    def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        """num / den per class, NaN where den == 0."""
        out = np.full(len(num), np.nan)
        np.divide(num, den, out=out, where=den > 0)
        return out

    @property
    def accuracy(self) -> np.ndarray:
        return self._ratio(self.correct, self.total)

    @property
    def top5_accuracy(self) -> np.ndarray:
        return self._ratio(self.top5_correct, self.total)

    @property
    def precision(self) -> np.ndarray:
        return self._ratio(self.correct, self.predicted)

    @property
    def recall(self) -> np.ndarray:
        return self.accuracy

    @property
    def real_accuracy(self) -> Optional[np.ndarray]:
        return None if self.real_correct is None else self._ratio(self.real_correct, self.real_total)

    def summary(self, worst_fraction: float = 0.1) -> dict:
        """Overall and across-class numbers; classes without validation images are left out."""
        seen = self.total > 0
        acc = self.accuracy[seen]
        names = [n for n, s in zip(self.class_names, seen) if s]
        samples = int(self.total.sum())
        out = {
            "accuracy": float(self.correct.sum() / samples) if samples else 0.0,
            "mean_class_accuracy": float(acc.mean()) if seen.any() else None,
            "worst_class_accuracy": float(acc.min()) if seen.any() else None,
            "worst_class": names[int(acc.argmin())] if seen.any() else None,
            "samples": samples,
            "classes_evaluated": int(seen.sum()),
            "worst_fraction": worst_fraction,
            "worst_fraction_mean_accuracy": None,
            "class_accuracy_std": float(acc.std()) if seen.any() else None,  # population std across classes
            "top5_accuracy": float(self.top5_correct.sum() / samples) if samples else 0.0,
            "mean_class_top5_accuracy": float(self.top5_accuracy[seen].mean()) if seen.any() else None,
        }
        if self.nonfinite is not None:
            out["nonfinite_samples"] = int(self.nonfinite.sum())
        if seen.any():
            n_worst = max(1, math.ceil(worst_fraction * len(acc)))
            out["worst_fraction_mean_accuracy"] = float(np.sort(acc)[:n_worst].mean())
        if self.real_correct is not None:
            real_seen = self.real_total > 0
            real_samples = int(self.real_total.sum())
            out["real_accuracy"] = float(self.real_correct.sum() / real_samples) if real_samples else None
            out["real_mean_class_accuracy"] = float(self.real_accuracy[real_seen].mean()) if real_seen.any() else None
            out["real_samples"] = real_samples
        return out


class PerClassCounts(nn.Module):
    """Accumulates per-class integer counts over a validation; ``reduce`` sums them over ranks and resets.

    The counts are non-persistent buffers: they follow the module to its device and stay out of checkpoints.
    """

    def __init__(self, num_classes: int, confusion_matrix: bool = False, real_labels: bool = False):
        super().__init__()
        self.num_classes, self.with_confusion, self.with_real = num_classes, confusion_matrix, real_labels
        for name in COUNT_NAMES:
            self.register_buffer(name, torch.zeros(num_classes, dtype=torch.long), persistent=False)
        shape = (num_classes, num_classes) if confusion_matrix else (0,)
        self.register_buffer("confusion", torch.zeros(shape, dtype=torch.long), persistent=False)

    def _count(self, labels: torch.Tensor) -> torch.Tensor:
        return torch.bincount(labels, minlength=self.num_classes)

    @torch.no_grad()
    def update(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        real_target: Optional[torch.Tensor] = None,
        real_valid: Optional[torch.Tensor] = None,
    ) -> None:
        """``real_target``: [batch, classes] bool, the ReaL set of each image; ``real_valid``: [batch] bool,
        False for images whose ReaL set is empty (they are skipped)."""
        labels = labels.long()
        finite = torch.isfinite(logits).all(1)
        rank = torch.where(finite, label_rank(logits, labels), self.num_classes)  # NaN would outrank nothing
        predicted = logits.argmax(1)
        self.total += self._count(labels)
        self.correct += self._count(labels[rank == 0])
        self.predicted += self._count(predicted[finite])
        self.top5_correct += self._count(labels[rank < TOP_K])
        self.nonfinite += self._count(labels[~finite])
        if self.with_confusion:
            flat = labels[finite] * self.num_classes + predicted[finite]
            self.confusion += torch.bincount(flat, minlength=self.num_classes**2).view_as(self.confusion)
        if self.with_real:
            if real_target is None or real_valid is None:
                raise ValueError("ReaL evaluation is on but the batch carries no ReaL targets")
            hit = real_target.gather(1, predicted[:, None]).squeeze(1) & real_valid & finite
            self.real_total += self._count(labels[real_valid])
            self.real_correct += self._count(labels[hit])

    def reset(self) -> None:
        for buf in self.buffers():
            buf.zero_()

    def reduce(
        self, sum_across_ranks: Callable[[torch.Tensor], torch.Tensor], class_names: list[str]
    ) -> PerClassResult:
        """Sum every count over all ranks in ONE collective (``sum_across_ranks``, e.g.
        ``lambda t: trainer.strategy.reduce(t, reduce_op="sum")``), reset, and return the totals."""
        names = [*COUNT_NAMES, "confusion"]
        tensors = [getattr(self, n) for n in names]
        packed = sum_across_ranks(torch.cat([t.flatten() for t in tensors]))
        parts = dict(
            zip(
                names,
                (
                    p.view_as(t).cpu().numpy().copy()
                    for p, t in zip(packed.split([t.numel() for t in tensors]), tensors)
                ),
            )
        )
        self.reset()
        return PerClassResult(
            class_names=list(class_names),
            correct=parts["correct"],
            total=parts["total"],
            predicted=parts["predicted"],
            top5_correct=parts["top5_correct"],
            real_correct=parts["real_correct"] if self.with_real else None,
            real_total=parts["real_total"] if self.with_real else None,
            confusion=parts["confusion"] if self.with_confusion else None,
            nonfinite=parts["nonfinite"],
        )
