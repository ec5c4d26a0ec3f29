"""Per-class tests of a change between two regularization settings over training seeds, with Benjamini-Hochberg.

API (the report calls only this; docs/statistics.md has the method, its assumptions and the simulations)::

    compare(base, other, fdr, test=DEFAULT_TEST, seeds=None) -> Comparison

``base`` and ``other`` are ``(correct, total)`` integer arrays of shape (seeds, classes), one row per run.
``test`` is one of ``TESTS``: ``"moderated"`` (default) compares the runs of the two settings;
``"moderated-paired"`` pairs them by seed number (``seeds`` = (base's seeds, other's seeds), one per row).
A :class:`Comparison` holds, per class, ``delta`` (mean accuracy over seeds, other minus base), ``p_value``,
``q_value`` (BH over classes), ``significant`` (q <= fdr), ``df`` (degrees of freedom of the moderated t:
``residual_df + prior_df``); and ``test``, ``exploratory`` / ``reason`` (no test possible, e.g. one seed),
``prior_df`` / ``prior_var`` (the variance prior), ``relabellings`` and ``p_floor`` (the p-value resolution).

Method: accuracies go to the Anscombe arcsine scale, where binomial noise has a variance near 1/(4 images)
whatever the accuracy. Each class's seed-to-seed variance is shrunk towards a scaled inverse chi-square prior
fitted over classes (Smyth 2004, limma's moderated t). The p-value of the moderated t is *not* read from a t
distribution: it is its rank among the statistics of every relabelling of the runs (which run belongs to which
setting; sign flips of the seed pairs when paired), pooled over classes. Under no effect the runs of a class
are exchangeable, so this holds for classes whose seed-to-seed spread is bimodal or discrete, where the t
distribution does not; the p-values are uniform on average over the classes, which is what BH needs (the
simulations of tests/test_report_stats.py check it). A class is untestable (p NaN, q 1) when a run has no
test image of it; a comparison is exploratory (no p-values) when a setting has a single seed (or fewer than
2 seed pairs when paired).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations, product

import numpy as np
from scipy import special, stats

TESTS = ("moderated", "moderated-paired")
DEFAULT_TEST = "moderated"
MAX_RELABELLINGS = 500  # beyond this many, a fixed random sample of relabellings (plus the observed one)


@dataclass
class Comparison:
    delta: np.ndarray  # per class: mean accuracy over seeds, other minus base (NaN: no test images)
    p_value: np.ndarray  # NaN where untested
    q_value: np.ndarray  # Benjamini-Hochberg over the classes (1 where untested)
    significant: np.ndarray  # q_value <= fdr; all False when exploratory
    test: str
    df: np.ndarray  # per class: residual_df + prior_df of the moderated t (NaN where untested)
    exploratory: bool = False
    reason: str = ""  # why no test was possible (exploratory)
    residual_df: int = 0  # per class: runs of both settings - 2 (paired: pairs - 1)
    prior_df: float = math.nan  # d0 of the variance prior (inf: every class gets the common variance)
    prior_var: float = math.nan  # its scale s0^2, on the arcsine scale (paired: of a pair's difference)
    relabellings: int = 0  # relabellings of the runs the p-values rank against, the observed one included
    p_floor: float = math.nan  # the smallest p-value these data allow


def benjamini_hochberg(p_values) -> np.ndarray:
    """BH-adjusted p-values (q-values); a missing p-value counts as 1."""
    p = np.nan_to_num(np.asarray(p_values, dtype=float), nan=1.0)
    if p.size == 0:
        return p
    return stats.false_discovery_control(np.clip(p, 0.0, 1.0), method="bh")


def anscombe(correct, total) -> np.ndarray:
    """Anscombe's variance-stabilising arcsine of correct/total: variance ~ 1/(4 total) for binomial counts."""
    return np.arcsin(np.sqrt((np.asarray(correct) + 3 / 8) / (np.asarray(total) + 3 / 4)))


def _trigamma_inverse(x: float) -> float:
    y = 0.5 + 1 / x  # Newton's method as in limma's trigammaInverse
    for _ in range(50):
        tri = special.polygamma(1, y)
        step = tri * (1 - tri / x) / special.polygamma(2, y)
        y += step
        if -step / y < 1e-8:
            break
    return float(y)


def fit_prior(s2: np.ndarray, df: int) -> tuple[float, float]:
    """(d0, s0^2) of a scaled inverse chi-square prior, by Smyth's (2004) moments of log s^2 (limma's fitFDist).

    Zero variances (discrete counts) are offset to 1e-5 x the median variance, as limma does.
    """
    positive = s2[s2 > 0]
    if positive.size == 0:
        return math.inf, 0.0
    s2 = np.maximum(s2, 1e-5 * np.median(s2 if np.median(s2) > 0 else positive))
    e = np.log(s2) - special.digamma(df / 2) + np.log(df / 2)
    excess = (e.var(ddof=1) if e.size > 1 else 0.0) - special.polygamma(1, df / 2)
    if excess <= 0:
        return math.inf, float(np.exp(e.mean()))
    d0 = 2 * _trigamma_inverse(excess)
    return d0, float(np.exp(e.mean() + special.digamma(d0 / 2) - np.log(d0 / 2)))


@lru_cache(maxsize=32)
def _relabellings(n: int, na: int, paired: bool) -> np.ndarray:
    rows = _enumerate_relabellings(n, na, paired)
    rows.flags.writeable = False  # cached: shared by every call
    return rows


def _enumerate_relabellings(n: int, na: int, paired: bool) -> np.ndarray:
    """Rows: the observed labelling first, then the others; 1 = base (or +1/-1 sign flips of pairs when paired).

    A relabelling and its mirror image (complement, all signs flipped) give the same statistic: one of each.
    """
    count = 2 ** (n - 1) if paired else math.comb(n, na) // (2 if 2 * na == n else 1)
    if count <= MAX_RELABELLINGS:
        if paired:
            return np.array([(1, *s) for s in product((1, -1), repeat=n - 1)], float)
        rows = np.zeros((count, n))
        for i, c in enumerate(c for c in combinations(range(n), na) if 2 * na != n or 0 in c):
            rows[i, list(c)] = 1
        return rows
    rng = np.random.default_rng(0)
    if paired:
        return np.vstack([np.ones(n), rng.choice((1.0, -1.0), (MAX_RELABELLINGS, n))])
    random = np.argsort(rng.random((MAX_RELABELLINGS, n)), 1) < na
    return np.vstack([np.arange(n) < na, random]).astype(float)


def compare(
    base: tuple[np.ndarray, np.ndarray],
    other: tuple[np.ndarray, np.ndarray],
    fdr: float,
    test: str = DEFAULT_TEST,
    seeds: tuple[list, list] | None = None,
) -> Comparison:
    """Per-class change from ``base`` to ``other`` (module docstring); BH at ``fdr`` across classes."""
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; one of {', '.join(TESTS)}")
    (ca, na), (cb, nb) = ((np.atleast_2d(np.asarray(a)) for a in pair) for pair in (base, other))
    with np.errstate(divide="ignore", invalid="ignore"):
        acc_a, acc_b = ca / np.where(na > 0, na, np.nan), cb / np.where(nb > 0, nb, np.nan)
    classes = ca.shape[1]
    delta = np.full(classes, np.nan)
    seen = ~np.isnan(acc_a).all(0) & ~np.isnan(acc_b).all(0)
    delta[seen] = np.nanmean(acc_b[:, seen], 0) - np.nanmean(acc_a[:, seen], 0)
    paired = test == "moderated-paired"
    if paired:
        if seeds is None:
            raise ValueError("moderated-paired needs the seed of every run (seeds=)")
        shared = [s for s in dict.fromkeys(seeds[0]) if s in seeds[1]]
        ia, ib = [list(seeds[0]).index(s) for s in shared], [list(seeds[1]).index(s) for s in shared]
        ca, na, cb, nb = ca[ia], na[ia], cb[ib], nb[ib]
    nan = np.full(classes, np.nan)
    result = Comparison(delta, nan, np.ones(classes), np.zeros(classes, bool), test, nan.copy())
    runs = (len(ca),) if paired else (len(ca), len(cb))
    if min(runs) < 2:
        result.exploratory = True
        single = [name for name, c in (("the baseline", ca), ("the other setting", cb)) if len(c) < 2]
        result.reason = (
            f"only {len(ca)} seed(s) run under both settings"
            if paired
            else f"{' and '.join(single)} {'have' if len(single) > 1 else 'has'} one seed"
        ) + ": no seed-to-seed variance can be estimated, so no change can be called significant"
        return result
    ok = (na > 0).all(0) & (nb > 0).all(0)
    if not ok.any():
        result.exploratory, result.reason = True, "no class has test images in every run"
        return result
    ya, yb = anscombe(ca[:, ok], na[:, ok]), anscombe(cb[:, ok], nb[:, ok])
    if paired:
        y = yb - ya  # pairs x classes; under no effect each difference is symmetric about 0
        labels, dof, scale = _relabellings(len(y), 0, True), len(y) - 1, 1 / len(y)
        total = (y * y).sum(0)  # the same under every sign flip: the prior is fitted on it (pairs df)
        d0, s02 = fit_prior(total / len(y), len(y))
    else:
        y = np.vstack([ya, yb])
        y = y - y.mean(0)  # centred per class: the other setting's sum is minus the base's
        n, k = len(y), len(ya)
        labels, dof, scale = _relabellings(n, k, False), n - 2, 1 / k + 1 / (n - k)
        total = (y * y).sum(0)  # the same under every relabelling: the prior is fitted on it (runs - 1 df)
        d0, s02 = fit_prior(total / (n - 1), n - 1)
    # per relabelling and class: the squared change over its variance factor (delta^2 / scale), i.e. the
    # between-settings sum of squares; what is left of the total is the within-settings one (dof df)
    between = scale * np.einsum("rn,nc->rc", labels, y) ** 2  # (einsum: no BLAS threads for this small product)
    within = np.maximum(total - between, 0.0)
    post = np.full_like(within, s02) if math.isinf(d0) else (d0 * s02 + within) / (d0 + dof)  # moderated
    stat = np.divide(between, post, out=np.zeros_like(post), where=post > 0)  # moderated t squared
    pool = np.sort(stat[1:].ravel())
    beaten = pool.size - np.searchsorted(pool, stat[0] * (1 - 1e-9), side="left")  # ties count against
    p = result.p_value = nan.copy()
    p[ok] = (1 + beaten) / (1 + pool.size)
    result.q_value = benjamini_hochberg(p)
    result.significant = result.q_value <= fdr
    result.df[ok] = dof + d0
    result.residual_df, result.prior_df, result.prior_var = dof, d0, s02
    result.relabellings, result.p_floor = len(labels), 1 / (1 + pool.size)
    return result
