"""The ReaL reanalysis (Kirichenko et al. 2023): how much of a class's drop is label ambiguity.

Per class, the change in accuracy on the original labels and under ImageNet ReaL's multi-labels (an answer
is right when it is any of the image's plausible labels). For a class significantly lowered on the original
labels, the share of its drop that remains under ReaL is ``real change / change``: near 0, the drop was
ambiguous images (the model now names another plausible label); near 1, the class really got worse.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from launch.report.stats import Comparison


def lowered(comp: Comparison) -> np.ndarray:
    return np.flatnonzero(comp.significant & (comp.delta < 0))


def drop_remaining(comp: Comparison, real: Comparison) -> np.ndarray:
    """Per class: the share of its drop left under ReaL (real change / change); NaN unless significantly lowered."""
    out = np.full(len(comp.delta), np.nan)
    hit = lowered(comp)
    out[hit] = real.delta[hit] / comp.delta[hit]
    return out


@dataclass
class RealSummary:
    tested: bool  # False: an exploratory comparison, changes only
    lowered: int  # classes significantly lowered on the original labels
    drop: float  # their mean change on the original labels (NaN when none)
    real_drop: float  # their mean change under ReaL
    remaining: float  # real_drop / drop: the share of the drop left under ReaL
    still_lowered: int  # of them, also significantly lowered under ReaL
    mean_change: float  # mean over classes, original labels
    real_mean_change: float  # mean over classes, ReaL

    def sentence(self, base: str, other: str) -> str:
        both = (
            f"mean class change {100 * self.mean_change:+.1f} points on the original labels, "
            f"{100 * self.real_mean_change:+.1f} under ReaL"
        )
        if not self.tested:
            return f"ReaL labels, {base} -> {other} (exploratory, not tested): {both}."
        if not self.lowered:
            return f"ReaL labels, {base} -> {other}: no class is significantly lowered; {both}."
        n = f"{self.lowered} class{'es' if self.lowered != 1 else ''}"
        drops = (
            f"the {n} significantly lowered from {base} to {other} change by {100 * self.drop:+.1f} points on "
            f"average on the original labels and by {100 * self.real_drop:+.1f} under ReaL"
        )
        if self.real_drop >= 0:
            share = "all of the drop disappears with ambiguous labels"
        elif self.remaining > 1:
            share = "the drop is larger under ReaL: none of it is label ambiguity"
        else:
            share = (
                f"{100 * (1 - self.remaining):.0f}% of the drop disappears with ambiguous labels, "
                f"{100 * self.remaining:.0f}% remains"
            )
        return (
            f"ReaL labels: {drops}: {share}; {self.still_lowered} of the {self.lowered} "
            f"{'is' if self.still_lowered == 1 else 'are'} significantly lowered under ReaL too ({both})."
        )


def summarise(comp: Comparison, real: Comparison) -> RealSummary:
    hit = lowered(comp)
    drop = float(np.mean(comp.delta[hit])) if len(hit) else float("nan")
    real_drop = float(np.mean(real.delta[hit])) if len(hit) else float("nan")
    still = int((real.significant[hit] & (real.delta[hit] < 0)).sum())
    return RealSummary(
        not comp.exploratory,
        len(hit),
        drop,
        real_drop,
        real_drop / drop if len(hit) else float("nan"),
        still,
        float(np.nanmean(comp.delta)),
        float(np.nanmean(real.delta)),
    )
