"""Winsorisation: capped on the same users, pooled thresholds, never more variance for means."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from recsim_cli.errors import ConfigError
from recsim_cli.experiment.winsor import winsorize

values = st.integers(2, 60).flatmap(
    lambda n: arrays(np.float64, n, elements=st.floats(0, 1e6, allow_subnormal=False))
)


@settings(max_examples=150, deadline=None)
@given(values, values, st.floats(0.51, 0.999))
def test_winsorising_a_plain_mean_never_increases_its_variance(x_c, x_t, level) -> None:
    capped = winsorize(x_c, np.ones_like(x_c), x_t, np.ones_like(x_t), level)
    # den = 1 everywhere: the pooled denominator quantile is 1, nothing else changes.
    assert (capped.den_control == 1).all() and (capped.den_treatment == 1).all()
    for raw, new in ((x_c, capped.num_control), (x_t, capped.num_treatment)):
        assert np.var(new) <= np.var(raw) * (1 + 1e-12) + 1e-9
        assert (new <= raw).all()
        assert (new <= capped.num_threshold).all()


def test_numerator_and_denominator_are_capped_on_the_same_users() -> None:
    num_c = np.array([1.0, 2.0, 3.0, 1000.0, 5.0])
    den_c = np.array([1.0, 1.0, 100.0, 100.0, 1.0])
    num_t = np.array([2.0, 4.0, 6.0, 8.0, 10.0])
    den_t = np.array([2.0, 2.0, 2.0, 2.0, 2.0])
    capped = winsorize(num_c, den_c, num_t, den_t, 0.9)
    pooled_num = np.concatenate([num_c, num_t])
    pooled_den = np.concatenate([den_c, den_t])
    assert capped.num_threshold == pytest.approx(np.quantile(pooled_num, 0.9))
    assert capped.den_threshold == pytest.approx(np.quantile(pooled_den, 0.9))
    # Only the user above the numerator threshold is capped, in both columns.
    assert capped.capped_control == 1 and capped.capped_treatment == 0
    assert capped.num_control.tolist() == [1, 2, 3, capped.num_threshold, 5]
    assert capped.den_control.tolist() == [1, 1, 100, min(100.0, capped.den_threshold), 1]
    # The heavy-session user below the numerator threshold keeps their denominator.
    assert capped.den_control[2] == 100
    assert capped.num_treatment.tolist() == num_t.tolist()


def test_missing_pre_period_values_stay_missing() -> None:
    x = np.array([1.0, np.nan, 3.0, 100.0])
    capped = winsorize(x, x, x, x, 0.75)
    assert np.isnan(capped.num_control[1]) and np.isnan(capped.den_control[1])


def test_the_level_must_be_an_upper_percentile() -> None:
    with pytest.raises(ConfigError, match=r"^winsorize must be a percentile level in \(0\.5, 1\)"):
        winsorize(np.ones(3), np.ones(3), np.ones(3), np.ones(3), 99.0)
