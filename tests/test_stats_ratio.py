"""The delta-method ratio estimator against its formula and independent implementations."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from recsim_cli.experiment.comparison import Sample, compare
from recsim_cli.experiment.ratio import delta_method_variance, estimate_ratio


def impression_log(rng: np.random.Generator, users: int) -> tuple[np.ndarray, np.ndarray]:
    """Return impression-level (user, click) arrays with very different users."""
    impressions = rng.poisson(rng.gamma(0.8, 12.0, users))  # some users have none
    click_rate = rng.beta(0.4, 6.0, users)
    user = np.repeat(np.arange(users), impressions)
    click = (rng.random(user.size) < click_rate[user]).astype(float)
    return user, click


def per_user_sums(user: np.ndarray, value: np.ndarray, users: int) -> tuple[np.ndarray, ...]:
    num = np.bincount(user, weights=value, minlength=users)
    den = np.bincount(user, minlength=users).astype(float)
    return num, den


def test_linearised_variance_equals_the_papers_formula() -> None:
    rng = np.random.default_rng(1)
    user, click = impression_log(rng, 500)
    num, den = per_user_sums(user, click, 500)
    for ddof in (0, 1):
        est = estimate_ratio(num, den, ddof)
        assert est.ratio == pytest.approx(click.mean(), rel=1e-12)
        assert est.variance == pytest.approx(delta_method_variance(num, den, ddof), rel=1e-10)
        assert abs(est.linearised.mean()) < 1e-12


def test_delta_variance_equals_cluster_robust_ols_for_one_arm() -> None:
    """Deng et al. (KDD 2018): the ratio is the OLS intercept, its CR0 variance the delta one."""
    import statsmodels.api as sm

    rng = np.random.default_rng(2)
    users = 400
    user, click = impression_log(rng, users)
    num, den = per_user_sums(user, click, users)
    fit = sm.OLS(click, np.ones((click.size, 1))).fit(
        cov_type="cluster", cov_kwds={"groups": user, "use_correction": False}
    )
    est = estimate_ratio(num, den, ddof=0)
    assert est.ratio == pytest.approx(fit.params[0], rel=1e-12)
    assert est.variance == pytest.approx(fit.bse[0] ** 2, rel=1e-9)


def test_delta_variance_of_a_difference_equals_cluster_robust_ols_on_an_arm_dummy() -> None:
    import statsmodels.api as sm

    rng = np.random.default_rng(3)
    users_c, users_t = 300, 350
    user_c, click_c = impression_log(rng, users_c)
    user_t, click_t = impression_log(rng, users_t)
    # Session-level watch time for a second, continuous metric with heavy tails.
    y = np.concatenate([click_c, click_t])
    arm = np.concatenate([np.zeros(click_c.size), np.ones(click_t.size)])
    groups = np.concatenate([user_c, user_t + users_c])
    x = np.column_stack([np.ones(y.size), arm])
    fit = sm.OLS(y, x).fit(cov_type="cluster", cov_kwds={"groups": groups, "use_correction": False})
    num_c, den_c = per_user_sums(user_c, click_c, users_c)
    num_t, den_t = per_user_sums(user_t, click_t, users_t)
    result = compare(Sample.of(num_c, den_c), Sample.of(num_t, den_t), ddof=0)
    assert result.difference == pytest.approx(fit.params[1], rel=1e-10)
    assert result.se**2 == pytest.approx(fit.bse[1] ** 2, rel=1e-9)


def test_watch_time_per_session_matches_cluster_robust_ols_on_sessions() -> None:
    import statsmodels.api as sm

    rng = np.random.default_rng(4)
    users = 300
    sessions = 1 + rng.poisson(rng.gamma(0.6, 7.0, users))
    user = np.repeat(np.arange(users), sessions)
    watch = rng.lognormal(0.0, 1.5, user.size) * rng.lognormal(0.0, 1.0, users)[user]
    num, den = per_user_sums(user, watch, users)
    fit = sm.OLS(watch, np.ones((watch.size, 1))).fit(
        cov_type="cluster", cov_kwds={"groups": user, "use_correction": False}
    )
    est = estimate_ratio(num, den, ddof=0)
    assert est.ratio == pytest.approx(fit.params[0], rel=1e-12)
    assert est.variance == pytest.approx(fit.bse[0] ** 2, rel=1e-9)


def test_plain_means_match_scipys_welch_and_paired_t_tests() -> None:
    from scipy import stats

    rng = np.random.default_rng(5)
    c = rng.lognormal(0, 1, 80)
    t = rng.lognormal(0.2, 1.3, 95)
    split = compare(Sample.of(c, 1.0), Sample.of(t, 1.0))
    welch = stats.ttest_ind(t, c, equal_var=False)
    assert split.p_value == pytest.approx(welch.pvalue, rel=1e-10)
    assert split.difference / split.se == pytest.approx(welch.statistic, rel=1e-10)
    assert split.df == pytest.approx(welch.df, rel=1e-10)
    lo, hi = welch.confidence_interval(0.95)
    assert (split.ci_low, split.ci_high) == pytest.approx((lo, hi), rel=1e-9)

    t_same = c * rng.lognormal(0.1, 0.3, 80)
    paired = compare(Sample.of(c, 1.0), Sample.of(t_same, 1.0), design="paired")
    rel = stats.ttest_rel(t_same, c)
    assert paired.p_value == pytest.approx(rel.pvalue, rel=1e-10)
    assert paired.df == 79
    assert paired.covariance > 0  # the same users: the pairing matters


def test_the_vectorised_core_equals_one_experiment_at_a_time() -> None:
    rng = np.random.default_rng(6)
    num = rng.poisson(3.0, (5, 60)).astype(float)
    den = num + rng.poisson(20.0, (5, 60))
    batch = compare(Sample.of(num[:, :30], den[:, :30]), Sample.of(num[:, 30:], den[:, 30:]))
    for i in range(5):
        one = compare(Sample.of(num[i, :30], den[i, :30]), Sample.of(num[i, 30:], den[i, 30:]))
        assert one.p_value == pytest.approx(batch.p_value[i], rel=1e-12)
        assert one.relative_low == pytest.approx(batch.relative_low[i], rel=1e-12)


def test_an_empty_arm_gives_nan_not_an_error() -> None:
    est = estimate_ratio(np.array([]), np.array([]))
    assert est.n == 0 and np.isnan(est.ratio) and np.isnan(est.variance)
    zero_den = estimate_ratio(np.zeros(5), np.zeros(5))
    assert np.isnan(zero_den.ratio)


user_sums = st.integers(2, 40).flatmap(
    lambda n: st.tuples(
        arrays(np.float64, n, elements=st.floats(0, 1e3)),
        arrays(np.float64, n, elements=st.floats(1, 1e3)),
        st.randoms(use_true_random=False),
    )
)


@settings(max_examples=100, deadline=None)
@given(user_sums)
def test_the_ratio_and_its_variance_do_not_depend_on_user_order(case) -> None:
    num, den, random = case
    order = list(range(num.size))
    random.shuffle(order)
    a = estimate_ratio(num, den)
    b = estimate_ratio(num[order], den[order])
    assert b.ratio == pytest.approx(a.ratio, rel=1e-12, abs=1e-300)
    assert b.variance == pytest.approx(a.variance, rel=1e-9, abs=1e-300)


@settings(max_examples=100, deadline=None)
@given(user_sums, st.floats(1e-3, 1e3))
def test_the_ratio_scales_with_its_numerator_and_ignores_the_denominators_unit(case, c) -> None:
    num, den, _ = case
    base = estimate_ratio(num, den)
    assert estimate_ratio(c * num, den).ratio == pytest.approx(c * base.ratio, rel=1e-9)
    assert estimate_ratio(num, c * den).ratio == pytest.approx(base.ratio / c, rel=1e-9)
    scaled = estimate_ratio(c * num, den).variance
    assert scaled == pytest.approx(
        c**2 * base.variance, rel=1e-7, abs=1e-20 * (c * base.ratio) ** 2
    )
