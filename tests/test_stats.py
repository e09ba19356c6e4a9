"""The statistics every study uses, against independent implementations: statsmodels' Holm, TOST, power and
confidence interval, scipy's paired t-test, and a Holm adjustment worked by hand."""
import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import DescrStatsW, ttost_paired

from lossnb import stats

RNG = np.random.default_rng(7)


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04: 3 x 0.01 = 0.03; 2 x 0.03 = 0.06; 1 x 0.04 = 0.04, raised to the running 0.06
    np.testing.assert_allclose(stats.holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(stats.holm([0.5, 0.9]), [1.0, 1.0])


@pytest.mark.parametrize("m", [1, 4, 16])
def test_holm_matches_statsmodels_and_keeps_nans_out(m):
    p = RNG.uniform(0, 0.2, m)
    np.testing.assert_allclose(stats.holm(p), multipletests(p, method="holm")[1])
    with_nan = np.append(p, np.nan)
    adjusted = stats.holm(with_nan)
    assert np.isnan(adjusted[-1])
    np.testing.assert_allclose(adjusted[:-1], multipletests(p, method="holm")[1])


def test_paired_t_is_scipys_paired_test():
    a, b = RNG.normal(0.9, 0.01, 8), RNG.normal(0.9, 0.01, 8)
    assert stats.paired_t(a - b) == pytest.approx(sps.ttest_rel(a, b).pvalue)
    assert np.isnan(stats.paired_t([0.01, 0.02]))


@pytest.mark.parametrize("shift", [0.0, 0.002, 0.004, 0.02])
def test_tost_matches_statsmodels(shift):
    a = RNG.normal(0.9, 0.002, 10)
    b = a - shift + RNG.normal(0, 0.002, 10)
    want = ttost_paired(a, b, -0.005, 0.005)[0]
    assert stats.tost(a - b, 0.005) == pytest.approx(want)


def test_tost_says_equivalent_only_when_the_interval_fits_the_margin():
    tight = np.array([0.001, -0.001, 0.0005, 0.0, -0.0005, 0.001, -0.001, 0.0])
    assert stats.tost(tight, 0.005) < 0.001
    assert stats.tost(tight + 0.02, 0.005) > 0.5  # far outside the margin
    assert stats.tost(tight * 50, 0.005) > 0.05  # centred, but too noisy to show it


def test_mean_ci_is_the_t_interval():
    diff = RNG.normal(0.003, 0.004, 9)
    mean, low, high = stats.mean_ci(diff)
    want = DescrStatsW(diff).tconfint_mean(alpha=0.05)
    assert (mean, low, high) == pytest.approx((diff.mean(), *want))


def test_an_accuracy_interval_is_the_t_interval_cut_at_0_and_100():
    accs = np.array([87.5, 86.9, 12.0, 88.1, 59.5])  # a run at chance widens the t interval past 100
    low, high = DescrStatsW(accs).tconfint_mean(alpha=0.05)
    assert high > 100 and low > 0
    assert stats.mean_ci(accs, bounds=(0, 100)) == pytest.approx((accs.mean(), low, 100))
    from lossnb.study import percent_ci
    assert percent_ci(accs / 100) == f"{accs.mean():.2f} [{low:.2f},\u00a0100.00]"
    assert percent_ci(accs[:2] / 100) == f"{accs[:2].mean():.2f}"  # no interval from two seeds


@pytest.mark.parametrize("n, alpha", [(5, 0.05), (10, 0.05 / 16), (20, 0.01)])
def test_detectable_difference_matches_statsmodels_power(n, alpha):
    effect = TTestPower().solve_power(nobs=n, alpha=alpha, power=0.8, alternative="two-sided")
    assert stats.detectable_difference(0.017, n, alpha) == pytest.approx(0.017 * effect, rel=1e-4)  # statsmodels solves to ~1e-6
    assert stats.paired_power(effect, n, alpha) == pytest.approx(0.8, abs=1e-5)


def test_more_seeds_detect_smaller_differences():
    sizes = [stats.detectable_difference(1.0, n, 0.05) for n in (5, 10, 20)]
    assert sizes[0] > sizes[1] > sizes[2]


def test_the_upper_confidence_limit_of_a_standard_deviation_covers_it_as_often_as_its_level():
    """Simulated: of many small samples (7 values, sigma 1), the 80% upper limit of their sd is at or above the
    true sigma in 80% of them."""
    rng = np.random.default_rng(0)
    sds = rng.normal(size=(40_000, 7)).std(axis=1, ddof=1)
    covered = np.mean([stats.sd_upper_limit(s, 6, 0.8) >= 1.0 for s in sds])
    assert covered == pytest.approx(0.8, abs=0.01)
    assert stats.sd_upper_limit(0.5, 6, 0.5) == pytest.approx(0.5 * np.sqrt(6 / 5.348), rel=1e-3)  # chi2 median
