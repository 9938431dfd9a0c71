"""Health checks: sample-ratio mismatch against scipy, arm sizes, crossover, metric sanity."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsim_cli.experiment.health import (
    EXACT_TEST_MAX_USERS,
    check_metric,
    check_min_users,
    check_one_arm_per_user,
    check_sample_ratio,
    exact_binomial_p_value,
    srm_p_value,
)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 60_000),
    st.integers(0, 60_000),
    st.sampled_from([(0.5, 0.5), (0.9, 0.1), (0.2, 0.8), (1, 2)]),
)
def test_srm_p_value_matches_scipy(n_c, n_t, split) -> None:
    from scipy import stats

    total = n_c + n_t
    p, method = srm_p_value((n_c, n_t), split)
    if total == 0:
        assert (p, method) == (1.0, "none")
        return
    share_c = split[0] / sum(split)
    if total < EXACT_TEST_MAX_USERS:
        assert method == "exact binomial"
        expected = stats.binomtest(n_c, total, share_c).pvalue
    else:
        assert method == "chi-square"
        expected = stats.chisquare([n_c, n_t], [total * share_c, total * (1 - share_c)]).pvalue
    # Relative agreement to 1e-9 wherever a p-value can matter; beyond 1e-12 the sum of
    # pmfs and scipy's cdf + sf differ in the 9th digit of numbers like 1e-257.
    assert p == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_exact_binomial_p_value_known_answers() -> None:
    assert exact_binomial_p_value(5, 10, 0.5) == pytest.approx(1.0)
    assert exact_binomial_p_value(0, 10, 0.5) == pytest.approx(2 / 1024)
    assert exact_binomial_p_value(9, 10, 0.5) == pytest.approx(22 / 1024)


def test_srm_flags_a_mismatch_and_explains_it() -> None:
    bad = check_sample_ratio(5_210, 4_790)
    assert not bad.passed
    assert bad.p_value is not None and bad.p_value < 0.001
    assert bad.detail.startswith(
        "Sample-ratio mismatch: 5,210 control and 4,790 treatment users against the intended "
        "50/50 split (chi-square p = 2.7e-05 < 0.001)"
    )
    good = check_sample_ratio(5_030, 4_970)
    assert good.passed
    assert good.detail == (
        "5,030 control and 4,970 treatment users match the intended 50/50 split "
        "(chi-square p = 0.55 >= 0.001)."
    )
    assert check_sample_ratio(900, 100, (0.9, 0.1)).passed
    assert not check_sample_ratio(500, 500, (0.9, 0.1)).passed


def test_min_users_names_each_small_or_empty_arm() -> None:
    check = check_min_users({"control": 0, "treatment": 12}, 50)
    assert not check.passed
    assert check.detail == (
        "Arm 'control' has no users; arm 'treatment' has only 12 users, fewer than the 50 "
        "needed for the normal approximation; run the experiment longer or on more traffic."
    )
    assert check_min_users({"control": 50, "treatment": 51}, 50).passed


def test_one_arm_per_user() -> None:
    assert check_one_arm_per_user(()).passed
    check = check_one_arm_per_user((3, 17, 99, 100))
    assert not check.passed
    assert check.detail.startswith("4 users appear in both arms (e.g. 3, 17, 99);")


def test_metric_check_catches_zero_denominators_and_zero_variance() -> None:
    ok = check_metric("ctr", {"a": 0.1, "b": 0.1}, {"a": 0.01, "b": 0.02}, {"a": 5.0, "b": 7.0})
    assert ok.passed and ok.name == "metric:ctr"
    no_den = check_metric(
        "ctr", {"a": float("nan"), "b": 0.1}, {"a": 0.0, "b": 0.02}, {"a": 0.0, "b": 7.0}
    )
    assert not no_den.passed
    assert no_den.detail == ("ctr: arm 'a' has a zero denominator sum, so the ratio is undefined.")
    flat = check_metric("ctr", {"a": 0.0, "b": 0.1}, {"a": 0.0, "b": 0.02}, {"a": 5.0, "b": 7.0})
    assert not flat.passed
    assert "arm 'a' has zero variance" in flat.detail
    # Rounding noise around a constant ratio is still zero variance.
    tiny = check_metric("ctr", {"a": 0.3, "b": 0.1}, {"a": 1e-34, "b": 0.02}, {"a": 5.0, "b": 7.0})
    assert not tiny.passed
