"""A generative model of per-class results over training seeds, for testing `launch.report.stats`.

It is deliberately *not* the model any test in `stats` assumes (normal seed-to-seed noise with a variance
drawn from a scaled inverse chi-square, on a variance-stabilised scale). Each simulated report has two
settings (a baseline and an "other" regularisation), ``seeds`` runs of each, and ``classes`` classes with
``images`` test images each. Every class draws, once per report:

* a kind: ``stable`` (most), ``swinging`` (a fraction ``swing``) or ``ceiling`` (a fraction ``ceiling``);
* a latent accuracy: stable classes have a logit-normal one (logit ~ N(1.0, 1.1), i.e. median 73%, kept in
  [5%, 95%]); ceiling classes one uniform in [96%, 99.5%], where counts out of 50 are a few discrete values
  (50/50, 49/50, ...) and equal counts over seeds (zero variance) are common; swinging classes one uniform in
  [45%, 75%];
* a training-noise size: stable and ceiling classes a logit jitter whose sd is log-uniform in ``jitter``
  (a class-specific seed-to-seed spread: from next to nothing to well above the binomial noise of 50 images);
  swinging classes are bimodal: each run lands in one of two modes ``swing_gap`` apart in accuracy (by default
  20/50 against 40/50 for a class at 60%), each with probability 1/2, plus a small logit jitter (sd 0.05).

Each run (setting, seed) then draws its own training noise and its correct count is binomial over the
``images`` test images at the run's accuracy. Under no effect, both settings share the same distribution;
a planted effect (a shift in accuracy, e.g. -0.2 on ``hit`` classes) moves the class's latent accuracy (both
modes of a swinging class) under the other setting, before the training noise.

``pairing`` is the correlation, between the two settings, of the training noise of runs sharing a seed number
(0: the seed number shares nothing, as when a regulariser changes the whole training trajectory; 1: the same
noise). The swinging mode is the sign of a correlated normal, so it is shared in the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Reports:
    base: tuple[np.ndarray, np.ndarray]  # (correct, total), each reps x seeds x classes
    other: tuple[np.ndarray, np.ndarray]
    kind: np.ndarray  # reps x classes: 0 stable, 1 swinging, 2 ceiling
    effect: np.ndarray  # reps x classes: the planted shift (0 where none)

    def report(self, r: int):
        """(base, other) of report ``r``, as `compare` takes them."""
        return (self.base[0][r], self.base[1][r]), (self.other[0][r], self.other[1][r])


STABLE, SWINGING, CEILING = 0, 1, 2


def _logit(p):
    return np.log(p) - np.log1p(-p)


def _expit(x):
    return 1.0 / (1.0 + np.exp(-x))


def simulate(
    rng: np.random.Generator,
    reps: int,
    classes: int,
    seeds: int,
    images: int = 50,
    hit: int = 0,
    drop: float = 0.0,
    swing: float = 0.02,
    ceiling: float = 0.1,
    jitter=(0.03, 0.5),
    swing_gap: float = 0.4,
    pairing: float = 0.0,
) -> Reports:
    """``reps`` independent reports; in each, ``hit`` classes drawn at random among those whose latent accuracy
    is at least ``|drop| + 0.1`` (so the drop is not clipped) get the shift ``drop`` under the other setting."""
    shape = (reps, classes)
    u = rng.random(shape)
    kind = np.where(u < swing, SWINGING, np.where(u < swing + ceiling, CEILING, STABLE))
    acc = np.clip(_expit(rng.normal(1.0, 1.1, shape)), 0.05, 0.95)
    acc = np.where(kind == CEILING, rng.uniform(0.96, 0.995, shape), acc)
    acc = np.where(kind == SWINGING, rng.uniform(0.45, 0.75, shape), acc)
    sd = np.exp(rng.uniform(*np.log(jitter), shape))
    sd = np.where(kind == SWINGING, 0.05, sd)
    priority = np.where(acc >= abs(drop) + 0.1, rng.random(shape), 2.0)
    chosen = np.argsort(priority, axis=1)[:, :hit]
    effect = np.zeros(shape)
    np.put_along_axis(effect, chosen, drop, axis=1)

    # training noise of the runs: (reps, setting, seed, class), correlated across settings by seed number
    z = rng.standard_normal((2, reps, 2, seeds, classes))
    if pairing:
        z[:, :, 1] = pairing * z[:, :, 0] + np.sqrt(1 - pairing**2) * z[:, :, 1]
    noise, mode = z[0], z[1] > 0
    # the run's logit before its jitter: per (report, setting, class) and swinging mode (low, high)
    centre = acc[:, None, :] + np.stack([np.zeros(shape), effect], 1)
    half = np.where(kind == SWINGING, swing_gap / 2, 0.0)[:, None, :]
    low, high = (_logit(np.clip(centre + sign * half, 0.005, 0.995))[:, :, None, :] for sign in (-1, 1))
    p = _expit(np.where(mode, high, low) + sd[:, None, None, :] * noise)
    correct = rng.binomial(images, p)
    total = np.full_like(correct, images)
    return Reports((correct[:, 0], total[:, 0]), (correct[:, 1], total[:, 1]), kind, effect)
