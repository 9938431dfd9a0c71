"""CIs and p-values agree; Fieller's relative CI agrees with the absolute test."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from recsim_cli.errors import UnknownNameError
from recsim_cli.experiment.comparison import Sample, compare
from recsim_cli.experiment.effects import (
    check_relative_method,
    critical_value,
    difference_test,
    relative_interval,
    welch_df,
)

ALPHA = 0.05
# Away from the boundary p = alpha the two must agree exactly; at it, rounding decides.
EDGE = 1e-9


@st.composite
def experiments(draw, design: str, cuped: bool):
    """Small experiments with zeros, heavy tails, effects and missing pre-period users.

    Hypothesis picks the shape; numpy draws the values (much faster than element-wise
    strategies, and still reproducible from the drawn seed).
    """
    n_c = draw(st.integers(3, 40))
    n_t = n_c if design == "paired" else draw(st.integers(3, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    zeros = draw(st.sampled_from([0.0, 0.3, 0.8]))
    tail = draw(st.sampled_from([0.3, 1.0, 2.0]))
    effect = draw(st.sampled_from([0.0, 0.3, 1.0]))
    missing = draw(st.sampled_from([0.0, 0.3, 1.0]))
    base = rng.lognormal(0, tail, max(n_c, n_t))  # a user's taste, shared by paired arms
    samples = []
    for n, shift in ((n_c, 0.0), (n_t, effect)):
        taste = base[:n] if design == "paired" else rng.lognormal(0, tail, n)
        den = rng.poisson(5, n).astype(float)
        # Per-user sums are counts or measured amounts: hundredths, not 1e-300.
        num = np.round(np.exp(shift) * taste * den * rng.lognormal(0, 0.5, n), 2)
        num[rng.random(n) < zeros] = 0.0
        assume(den.sum() > 0)
        if cuped:
            pre_num = np.round(taste * (den + 1) * rng.lognormal(0, 0.5, n), 2)
            pre_num[rng.random(n) < missing] = np.nan
            pre_den = np.where(np.isnan(pre_num), np.nan, den + 1)
            samples.append(Sample.of(num, den, pre_num, pre_den))
        else:
            samples.append(Sample.of(num, den))
    return samples


CASES = [
    (design, cuped, distribution)
    for design in ("split", "paired")
    for cuped in (False, True)
    for distribution in ("t", "normal")
]


@pytest.mark.parametrize(("design", "cuped", "distribution"), CASES)
@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_zero_is_in_the_ci_exactly_when_p_exceeds_alpha(design, cuped, distribution, data) -> None:
    control, treatment = data.draw(experiments(design, cuped))
    r = compare(
        control, treatment, design=design, cuped=cuped, distribution=distribution, alpha=ALPHA
    )
    p = float(r.p_value)
    assume(math.isfinite(p) and float(r.se) > 0 and abs(p - ALPHA) > EDGE)
    zero_inside = r.ci_low <= 0 <= r.ci_high
    assert zero_inside == (p > ALPHA)
    # The CI is built from the very variance and critical value of the test.
    assert (r.ci_high - r.ci_low) / 2 == pytest.approx(r.critical * r.se, rel=1e-9)
    var_diff = r.var_treatment + r.var_control - 2 * r.covariance
    assert r.se**2 == pytest.approx(var_diff, rel=1e-9)
    if design == "split":
        assert r.covariance == 0
    # Fieller's relative CI excludes a lift of 0 exactly when the absolute test rejects.
    if bool(r.relative_defined):
        assert (r.relative_low <= 0 <= r.relative_high) == (p > ALPHA)
        assert r.relative_low <= r.relative <= r.relative_high


def test_the_paired_variance_includes_the_covariance_between_arms() -> None:
    rng = np.random.default_rng(7)
    users = rng.lognormal(0, 1, 200)
    c = users * rng.lognormal(0, 0.2, 200)
    t = users * rng.lognormal(0.05, 0.2, 200)
    paired = compare(Sample.of(c, 1.0), Sample.of(t, 1.0), design="paired")
    assert paired.se**2 == pytest.approx(np.var(t - c, ddof=1) / 200, rel=1e-10)
    split = compare(Sample.of(c, 1.0), Sample.of(t, 1.0))
    assert paired.se < split.se / 3  # the pairing removes the between-user variance


def test_fieller_solves_its_defining_quadratic() -> None:
    t, c, vt, vc, vtc, q = 11.0, 10.0, 0.4, 0.3, 0.1, 1.96
    r = relative_interval(
        t, c, var_treatment=vt, var_control=vc, covariance=vtc, critical=q, method="fieller"
    )
    for rho in (1 + float(r.low), 1 + float(r.high)):
        assert (t - rho * c) ** 2 == pytest.approx(q**2 * (vt - 2 * rho * vtc + rho**2 * vc))
    assert float(r.estimate) == pytest.approx(0.1)
    # Asymmetric around the point estimate, wider above: a ratio's CI.
    assert float(r.high) - 0.1 > 0.1 - float(r.low)


def test_fieller_is_undefined_when_the_control_mean_is_indistinguishable_from_zero() -> None:
    q = 1.96
    # C^2 = 1 <= q^2 v_C = 3.84 * 0.3: the Fieller set is unbounded.
    for method in ("fieller", "delta", "log"):
        r = relative_interval(
            2.0, 1.0, var_treatment=0.1, var_control=0.3, covariance=0.0, critical=q, method=method
        )
        assert not bool(r.defined)
        assert np.isnan(r.estimate) and np.isnan(r.low) and np.isnan(r.high)
    # Just defined: C^2 slightly above q^2 v_C.
    r = relative_interval(
        2.0, 1.0, var_treatment=0.1, var_control=0.99 / q**2, covariance=0.0, critical=q
    )
    assert bool(r.defined) and float(r.high) > 50  # huge, but an honest bounded interval


def test_delta_and_log_intervals_known_answers() -> None:
    t, c, vt, vc, q = 12.0, 10.0, 0.5, 0.4, 2.0
    d = relative_interval(
        t, c, var_treatment=vt, var_control=vc, covariance=0.0, critical=q, method="delta"
    )
    se = math.sqrt(vt / c**2 + t**2 * vc / c**4)
    assert (float(d.low), float(d.high)) == pytest.approx((0.2 - q * se, 0.2 + q * se))
    lg = relative_interval(
        t, c, var_treatment=vt, var_control=vc, covariance=0.0, critical=q, method="log"
    )
    se_log = math.sqrt(vt / t**2 + vc / c**2)
    expected = (1.2 * math.exp(-q * se_log) - 1, 1.2 * math.exp(q * se_log) - 1)
    assert (float(lg.low), float(lg.high)) == pytest.approx(expected)
    negative = relative_interval(
        -1.0, 10.0, var_treatment=vt, var_control=vc, covariance=0.0, critical=q, method="log"
    )
    assert not bool(negative.defined)


def test_welch_df_and_the_critical_value() -> None:
    assert float(welch_df(1.0, 11, 1.0, 11)) == pytest.approx(20.0)
    assert float(welch_df(1.0, 11, 0.0, 11)) == pytest.approx(10.0)
    assert np.isnan(welch_df(1.0, 1, 1.0, 10))
    assert float(critical_value(0.05, np.inf)) == pytest.approx(1.959963985)
    assert float(critical_value(0.05, np.inf, sided=1)) == pytest.approx(1.644853627)
    assert float(critical_value(0.05, 10)) == pytest.approx(2.228138852)


def test_difference_test_known_answer() -> None:
    r = difference_test(1.0, 0.25, np.inf, 0.05)
    assert float(r.se) == 0.5
    assert float(r.p_value) == pytest.approx(0.0455002639)
    assert (float(r.ci_low), float(r.ci_high)) == pytest.approx((0.020018, 1.979982), abs=1e-6)


def test_unknown_relative_method_lists_the_known_ones() -> None:
    with pytest.raises(UnknownNameError) as err:
        check_relative_method("ratio")
    assert str(err.value) == "Unknown relative CI method 'ratio'. Available: delta, fieller, log."
