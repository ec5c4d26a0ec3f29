"""The report's statistics on simulated per-class results whose truth is known."""

import numpy as np
import pytest
from scipy import stats

from launch.report.stats import benjamini_hochberg, compare, dispersion, fisher_exact_two_sided
from tests.synthetic_runs import simulate_counts

IMAGES, CLASSES, SEEDS, FDR = 50, 100, 5, 0.1


def _pair(rng, shift, seeds=SEEDS):
    base = rng.uniform(0.5, 0.95, CLASSES)
    a = simulate_counts(rng, base, 0.0, seeds, IMAGES)
    b = simulate_counts(rng, base, shift, seeds, IMAGES)
    n = np.full_like(a, IMAGES)
    return (a, n), (b, n[: len(b)])


def test_benjamini_hochberg_matches_the_step_up_rule():
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.5, 0.2])
    q = benjamini_hochberg(p)
    order = np.argsort(p)
    m = len(p)
    expected = np.minimum.accumulate((p[order] * m / np.arange(1, m + 1))[::-1])[::-1]
    np.testing.assert_allclose(q[order], expected)
    assert set(np.flatnonzero(q <= 0.05)) == {0, 3}  # 0.03 > 3 * 0.05 / 6 and 0.04 > 4 * 0.05 / 6
    # step-up: p_(2) = 0.06 misses its threshold 2 * 0.1 / 4, but p_(3) = 0.07 <= 3 * 0.1 / 4 rejects all three
    assert set(np.flatnonzero(benjamini_hochberg([0.001, 0.06, 0.07, 0.9]) <= 0.1)) == {0, 1, 2}
    assert benjamini_hochberg([np.nan, 0.001])[0] == 1.0


@pytest.mark.parametrize("seeds", [5, 1])
def test_no_effect_flags_any_class_in_about_fdr_of_simulations(seeds):
    rng = np.random.default_rng(1)
    sims = 300 if seeds > 1 else 150
    flagged = sum(compare(*_pair(rng, 0.0, seeds), fdr=FDR).significant.any() for _ in range(sims))
    # under the global null, BH's FDR is the chance of flagging any class: at most the level
    assert flagged / sims <= FDR + 0.04
    if seeds > 1:
        assert flagged / sims >= FDR / 3  # near the level, not a test that never flags anything


def test_planted_20_point_drop_on_3_of_100_classes_over_5_seeds_is_found():
    rng = np.random.default_rng(2)
    shift = np.zeros(CLASSES)
    shift[[7, 42, 90]] = -0.20
    all_found, false_flags, sims = 0, 0, 40
    for _ in range(sims):
        comp = compare(*_pair(rng, shift), fdr=FDR)
        assert comp.test == "quasi-binomial"
        all_found += comp.significant[[7, 42, 90]].all()
        false_flags += comp.significant.sum() - comp.significant[[7, 42, 90]].sum()
        assert (comp.delta[[7, 42, 90]] < -0.05).all()
    assert all_found / sims >= 0.8
    assert false_flags / (sims * 3) <= 0.2  # false discoveries among discoveries stay below ~FDR


def test_dispersion_estimates_extra_seed_to_seed_spread():
    rng = np.random.default_rng(3)
    base = rng.uniform(0.3, 0.7, 400)
    binomial = simulate_counts(rng, base, 0.0, 5, IMAGES)
    assert dispersion((binomial, np.full_like(binomial, IMAGES)))[0] == pytest.approx(1.0, abs=0.1)
    jitter = rng.normal(0, 0.1, (5, 400))  # training noise: sd 0.1 on top of the binomial sd ~0.07
    noisy = simulate_counts(rng, base, jitter, 5, IMAGES)
    phi, df = dispersion((noisy, np.full_like(noisy, IMAGES)))
    assert df == 4 * 400 and 2.0 < phi < 4.0


def test_paired_and_welch_t_tests_and_single_seed_fisher():
    rng = np.random.default_rng(4)
    shift = np.zeros(CLASSES)
    shift[:3] = -0.5
    base, other = _pair(rng, shift)
    for test in ("paired-t", "welch-t"):
        comp = compare(base, other, FDR, test, seeds=(list(range(5)), list(range(5))))
        assert comp.test == test and comp.significant[:3].all()
    with pytest.raises(ValueError, match="2 seeds"):
        compare(base, other, FDR, "paired-t", seeds=(list(range(5)), [10, 11, 12, 13, 14]))
    one = compare((base[0][:1], base[1][:1]), (other[0][:1], other[1][:1]), FDR)
    assert one.test == "fisher-exact" and one.dispersion is None


def test_vectorised_fisher_exact_agrees_with_scipy():
    rng = np.random.default_rng(5)
    n, m = rng.integers(1, 60, 200), rng.integers(1, 60, 200)
    a, b = rng.integers(0, n + 1), rng.integers(0, m + 1)
    ours = fisher_exact_two_sided(a, n, b, m)
    theirs = [stats.fisher_exact([[x, nx - x], [y, my - y]]).pvalue for x, nx, y, my in zip(a, n, b, m)]
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-12)
