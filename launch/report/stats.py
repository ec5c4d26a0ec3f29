"""Per-class tests between two regularization settings, and Benjamini-Hochberg control across classes.

``counts`` (the default) compares the pooled correct counts of a class under the two settings with a
quasi-binomial z-test: the binomial variance is inflated by a dispersion factor estimated from the
seed-to-seed spread of *all* classes (Pearson chi-square over replicates, floored at 1), and the p-value
uses a t distribution with that estimate's degrees of freedom. With one seed per setting there is no
spread to estimate, and Fisher's exact test on the pooled 2x2 counts is used. Estimating the spread per
class instead (``paired-t``, ``welch-t``) leaves 4-8 degrees of freedom with 5 seeds: valid, but too weak
to pass a Benjamini-Hochberg threshold over hundreds of classes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

TESTS = ("counts", "paired-t", "welch-t")


@dataclass
class Comparison:
    delta: np.ndarray  # mean accuracy of the setting minus the baseline's, per class
    p_value: np.ndarray
    q_value: np.ndarray  # Benjamini-Hochberg adjusted
    significant: np.ndarray  # q_value <= fdr
    test: str
    dispersion: float | None = None


def benjamini_hochberg(p_values) -> np.ndarray:
    """BH-adjusted p-values (q-values); a missing p-value counts as 1."""
    p = np.nan_to_num(np.asarray(p_values, dtype=float), nan=1.0)
    if p.size == 0:
        return p
    return stats.false_discovery_control(np.clip(p, 0.0, 1.0), method="bh")


def fisher_exact_two_sided(a, n, b, m) -> np.ndarray:
    """Fisher's exact test of a/n against b/m, for arrays of 2x2 tables at once (as scipy's fisher_exact)."""
    a, n, b, m = (np.asarray(v, dtype=int) for v in (a, n, b, m))
    grid = np.arange(int(n.max(initial=0)) + 1)[None, :]
    pmf = stats.hypergeom.pmf(grid, (n + m)[:, None], (a + b)[:, None], n[:, None])
    observed = stats.hypergeom.pmf(a, n + m, a + b, n)
    # the tables at most as likely as the observed one (with scipy's relative tolerance)
    return np.clip(np.where(pmf <= observed[:, None] * (1 + 1e-7), pmf, 0.0).sum(1), 0.0, 1.0)


def dispersion(*groups: tuple[np.ndarray, np.ndarray]) -> tuple[float, int]:
    """Pearson estimate of the extra-binomial variance over seeds, pooled across classes and groups.

    Each group is (correct, total), arrays of shape (seeds, classes). Returns (phi >= 1, degrees of freedom).
    """
    chi2, df = 0.0, 0
    for correct, total in groups:
        if correct.shape[0] < 2:
            continue
        p = correct.sum(0) / np.maximum(total.sum(0), 1)
        var = total * p * (1 - p)
        ok = (p > 0) & (p < 1)
        chi2 += float((((correct - total * p) ** 2)[:, ok] / var[:, ok]).sum())
        df += (correct.shape[0] - 1) * int(ok.sum())
    return (max(1.0, chi2 / df) if df else 1.0), df


def _counts_test(ca, na, cb, nb) -> tuple[np.ndarray, float]:
    phi, df = dispersion((ca, na), (cb, nb))
    xa, ta, xb, tb = ca.sum(0), na.sum(0), cb.sum(0), nb.sum(0)
    if df == 0:
        return fisher_exact_two_sided(xa, ta, xb, tb), None
    pooled = (xa + xb) / np.maximum(ta + tb, 1)
    se = np.sqrt(phi * pooled * (1 - pooled) * (1 / np.maximum(ta, 1) + 1 / np.maximum(tb, 1)))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (xb / np.maximum(tb, 1) - xa / np.maximum(ta, 1)) / se
    p = np.where(se > 0, 2 * stats.t.sf(np.abs(z), df), 1.0)
    return p, phi


def _t_test(acc_a, acc_b, paired: bool) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant samples: handled below
        if paired:
            p = stats.ttest_rel(acc_b, acc_a, axis=0).pvalue
        else:
            p = stats.ttest_ind(acc_b, acc_a, axis=0, equal_var=False).pvalue
    same = np.isclose(acc_a.mean(0), acc_b.mean(0))
    return np.where(np.isnan(p) & same, 1.0, np.nan_to_num(p, nan=0.0))


def compare(
    base: tuple[np.ndarray, np.ndarray],
    other: tuple[np.ndarray, np.ndarray],
    fdr: float,
    test: str = "counts",
    seeds: tuple[list, list] | None = None,
) -> Comparison:
    """Per-class change from ``base`` to ``other``, each (correct, total) of shape (seeds, classes).

    ``paired-t`` pairs the runs by seed (``seeds`` gives the seed of each row) and needs >= 2 shared seeds.
    """
    (ca, na), (cb, nb) = base, other
    acc_a, acc_b = ca / np.maximum(na, 1), cb / np.maximum(nb, 1)
    delta = acc_b.mean(0) - acc_a.mean(0)
    phi = None
    if test == "counts":
        p, phi = _counts_test(ca, na, cb, nb)
        name = "fisher-exact" if phi is None else "quasi-binomial"
    elif test == "paired-t":
        seeds_a, seeds_b = seeds
        shared = [s for s in seeds_a if s in seeds_b]
        if len(shared) < 2:
            raise ValueError(f"paired-t needs at least 2 seeds run under both settings, found {len(shared)}")
        ia, ib = [seeds_a.index(s) for s in shared], [seeds_b.index(s) for s in shared]
        p, name = _t_test(acc_a[ia], acc_b[ib], paired=True), "paired-t"
    elif test == "welch-t":
        if min(len(acc_a), len(acc_b)) < 2:
            raise ValueError("welch-t needs at least 2 seeds per setting")
        p, name = _t_test(acc_a, acc_b, paired=False), "welch-t"
    else:
        raise ValueError(f"unknown test {test!r}; one of {', '.join(TESTS)}")
    q = benjamini_hochberg(p)
    return Comparison(delta, p, q, q <= fdr, name, phi)
