"""The statistics every study uses, on paired seeds: a paired t-test, two one-sided tests of equivalence (TOST)
within a margin, Holm's correction within a family of comparisons, and the power of the paired t-test.
Written on scipy (statsmodels, which has each of them, is the tests' independent reference and not a
dependency of the library)."""
from __future__ import annotations

import numpy as np
from scipy import optimize, stats


def holm(p) -> np.ndarray:
    """Holm-Bonferroni step-down adjustment (NaNs kept and not counted); by hand because scipy offers only
    Benjamini-Hochberg."""
    p = np.asarray(p, dtype=float)
    ok = ~np.isnan(p)
    adjusted = np.full_like(p, np.nan)
    m = int(ok.sum())
    ranked = np.argsort(p[ok])
    values = np.empty(m)
    running = 0.0
    for rank, i in enumerate(ranked):
        running = max(running, min(1.0, (m - rank) * p[ok][i]))
        values[i] = running
    adjusted[ok] = values
    return adjusted


LEAST_PAIRS = 3  # the fewest seeds a test (and a drawn interval) is computed from: from 2, t has 1 degree of freedom


def paired_t(diff) -> float:
    """Two-sided p of the paired t-test on differences a - b (scipy.stats.ttest_1samp against 0); NaN below 3."""
    diff = np.asarray(diff, dtype=float)
    return float(stats.ttest_1samp(diff, 0.0).pvalue) if len(diff) >= LEAST_PAIRS else np.nan


def tost(diff, margin: float) -> float:
    """p of two one-sided paired t-tests that the mean difference lies inside (-margin, +margin): the larger of
    the two one-sided p-values (Schuirmann 1987). Small p: equivalent within the margin. NaN below 3 pairs."""
    diff = np.asarray(diff, dtype=float)
    if len(diff) < LEAST_PAIRS:
        return np.nan
    above = stats.ttest_1samp(diff, -margin, alternative="greater").pvalue
    below = stats.ttest_1samp(diff, margin, alternative="less").pvalue
    return float(max(above, below))


def mean_ci(diff, level: float = 0.95, bounds: tuple[float, float] | None = None) -> tuple[float, float, float]:
    """(mean, low, high): the t confidence interval of a mean difference (NaN bounds below 2 values), cut at
    ``bounds`` where the quantity cannot leave them (an accuracy in %: (0, 100)). A mean inside the bounds stays
    inside the cut interval whenever it was inside the t interval, so the cut keeps the interval's coverage."""
    diff = np.asarray(diff, dtype=float)
    mean = float(diff.mean()) if len(diff) else np.nan
    if len(diff) < 2:
        return mean, np.nan, np.nan
    half = stats.t.ppf(0.5 + level / 2, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return mean, low, high


def paired_power(effect: float, n: int, alpha: float) -> float:
    """Power of the two-sided paired t-test at standardized effect ``effect`` (mean / sd of the differences)
    with n pairs: the non-central t's mass beyond the critical values."""
    df = n - 1
    crit = stats.t.ppf(1 - alpha / 2, df)
    nc = effect * np.sqrt(n)
    # the far tail underflows to NaN in scipy for large nc; its mass there is 0
    return float(stats.nct.sf(crit, df, nc) + np.nan_to_num(stats.nct.cdf(-crit, df, nc)))


def detectable_difference(sd: float, n: int, alpha: float, power: float = 0.8) -> float:
    """The smallest true mean difference (in the unit of ``sd``) that a two-sided paired t-test at ``alpha``
    with n pairs detects with probability ``power``, when the differences have standard deviation ``sd``."""
    high = 1.0
    while paired_power(high, n, alpha) < power:
        high *= 2
    return float(optimize.brentq(lambda e: paired_power(e, n, alpha) - power, 0.0, high, xtol=1e-10)) * sd


def sd_upper_limit(sd: float, dof: int, level: float) -> float:
    """The one-sided upper confidence limit at ``level`` of a standard deviation estimated with ``dof`` degrees
    of freedom (chi-square): the spread to plan on when the estimate comes from a small pilot (Browne 1995,
    Statistics in Medicine 14, 1933-1940, plans on the 80% limit)."""
    return float(sd * np.sqrt(dof / stats.chi2.ppf(1 - level, dof)))
