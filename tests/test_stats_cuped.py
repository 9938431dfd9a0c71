"""CUPED: the pre-period adjustment against OLS, with missing users kept and counted."""

from __future__ import annotations

import numpy as np
import pytest

from recsim_cli.experiment.comparison import Sample, compare
from recsim_cli.experiment.cuped import linearise_covariate, pooled_theta
from recsim_cli.experiment.ratio import estimate_ratio


def correlated_users(rng: np.random.Generator, n: int, lift: float = 0.0):
    pre = rng.lognormal(0, 0.8, n)
    post = (1 + lift) * (0.7 * pre + 0.5 * rng.lognormal(0, 0.8, n))
    return post, pre


def test_cuped_equals_ols_on_the_arm_dummy_and_the_imputed_covariate() -> None:
    """With theta pooled within arms, the adjusted difference is OLS's arm coefficient."""
    import statsmodels.api as sm

    rng = np.random.default_rng(11)
    y_c, x_c = correlated_users(rng, 300)
    y_t, x_t = correlated_users(rng, 320, lift=0.05)
    x_c[rng.random(300) < 0.25] = np.nan  # new users without pre-period data
    x_t[rng.random(320) < 0.25] = np.nan
    result = compare(
        Sample.of(y_c, 1.0, x_c, np.where(np.isnan(x_c), np.nan, 1.0)),
        Sample.of(y_t, 1.0, x_t, np.where(np.isnan(x_t), np.nan, 1.0)),
        cuped=True,
    )
    pooled_mean = np.nanmean(np.concatenate([x_c, x_t]))
    x = np.concatenate([x_c, x_t])
    x = np.where(np.isnan(x), pooled_mean, x)  # the documented imputation
    arm = np.concatenate([np.zeros(300), np.ones(320)])
    fit = sm.OLS(np.concatenate([y_c, y_t]), np.column_stack([np.ones(620), arm, x])).fit()
    assert result.difference == pytest.approx(fit.params[1], rel=1e-10)
    assert result.theta == pytest.approx(fit.params[2], rel=1e-10)
    assert result.pre_missing_control == np.isnan(x_c).sum()
    assert result.pre_missing_treatment == np.isnan(x_t).sum()
    assert result.n_control == 300 and result.n_treatment == 320  # nobody dropped
    assert 0.3 < result.variance_reduction < 1


def test_the_adjusted_variance_includes_theta_and_the_covariance() -> None:
    rng = np.random.default_rng(12)
    y_c, x_c = correlated_users(rng, 200)
    y_t, x_t = correlated_users(rng, 200)
    r = compare(Sample.of(y_c, 1.0, x_c, 1.0), Sample.of(y_t, 1.0, x_t, 1.0), cuped=True)
    theta = float(r.theta)
    for y, x, var in ((y_c, x_c, r.var_control), (y_t, x_t, r.var_treatment)):
        by_hand = (
            np.var(y, ddof=1) - 2 * theta * np.cov(y, x)[0, 1] + theta**2 * np.var(x, ddof=1)
        ) / 200
        assert var == pytest.approx(by_hand, rel=1e-10)
    raw = compare(Sample.of(y_c, 1.0), Sample.of(y_t, 1.0))
    assert r.variance_reduction == pytest.approx(1 - r.se**2 / raw.se**2, rel=1e-10)


def test_theta_for_ratio_metrics_uses_the_linearisations() -> None:
    rng = np.random.default_rng(13)
    n = 400
    sessions = 1 + rng.poisson(3, (2, n)).astype(float)
    pre_sessions = 1 + rng.poisson(3, (2, n)).astype(float)
    taste = rng.lognormal(0, 1, (2, n))
    watch = sessions * taste * rng.lognormal(0, 0.5, (2, n))
    pre_watch = pre_sessions * taste * rng.lognormal(0, 0.5, (2, n))
    r = compare(
        Sample.of(watch[0], sessions[0], pre_watch[0], pre_sessions[0]),
        Sample.of(watch[1], sessions[1], pre_watch[1], pre_sessions[1]),
        cuped=True,
    )
    ly = [estimate_ratio(watch[a], sessions[a]).linearised for a in (0, 1)]
    # The covariate's linearisation around the ratio pooled over both arms.
    pooled = pre_watch.sum() / pre_sessions.sum()
    lx = [(pre_watch[a] - pooled * pre_sessions[a]) / pre_sessions.mean() for a in (0, 1)]
    sxy = sum(np.sum((ly[a] - ly[a].mean()) * (lx[a] - lx[a].mean())) for a in (0, 1))
    sxx = sum(np.sum((lx[a] - lx[a].mean()) ** 2) for a in (0, 1))
    assert r.theta == pytest.approx(sxy / sxx, rel=1e-10)
    raw = [estimate_ratio(watch[a], sessions[a]).ratio for a in (0, 1)]
    assert r.control == pytest.approx(raw[0] - r.theta * lx[0].mean(), rel=1e-10)
    assert r.variance_reduction > 0.1


def test_without_any_pre_period_data_cuped_changes_nothing() -> None:
    rng = np.random.default_rng(14)
    y_c, _ = correlated_users(rng, 100)
    y_t, _ = correlated_users(rng, 100)
    nan = np.full(100, np.nan)
    adjusted = compare(Sample.of(y_c, 1.0, nan, nan), Sample.of(y_t, 1.0, nan, nan), cuped=True)
    plain = compare(Sample.of(y_c, 1.0), Sample.of(y_t, 1.0))
    assert adjusted.theta == 0
    assert adjusted.p_value == pytest.approx(plain.p_value, rel=1e-12)
    assert adjusted.pre_missing_control == 100
    assert adjusted.variance_reduction == pytest.approx(0, abs=1e-12)


def test_a_missing_users_covariate_sits_at_the_pooled_value() -> None:
    cov = linearise_covariate(
        np.array([1.0, np.nan, 3.0]),
        np.array([1.0, np.nan, 1.0]),
        np.array([2.0, 6.0]),
        np.array([1.0, 2.0]),
    )
    # Pooled ratio 12 / 5 = 2.4 over mean denominator 5 / 4.
    assert cov.control.tolist() == pytest.approx([(1 - 2.4) / 1.25, 0.0, (3 - 2.4) / 1.25])
    assert cov.treatment.tolist() == pytest.approx([(2 - 2.4) / 1.25, (6 - 4.8) / 1.25])
    assert int(cov.missing_control) == 1 and int(cov.missing_treatment) == 0


def test_theta_is_zero_when_the_covariate_does_not_vary() -> None:
    y = np.array([1.0, 2.0, 3.0])
    zero = np.zeros(3)
    assert float(pooled_theta(y, zero, y, zero)) == 0.0
