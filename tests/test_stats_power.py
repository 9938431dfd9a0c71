"""Minimum detectable effects and sample sizes, checked by formula and by simulation."""

from __future__ import annotations

import numpy as np
import pytest

from recsim_cli.errors import ConfigError
from recsim_cli.experiment.comparison import Sample, compare
from recsim_cli.experiment.power import (
    minimum_detectable_effect,
    plan_users_per_arm,
    users_per_arm,
)


def test_textbook_sample_size() -> None:
    # sigma = 1 per arm, delta = 0.2: n = (1.96 + 0.8416)^2 * 2 / 0.04 = 392.4.
    assert users_per_arm(0.2, 2.0) == 393
    assert users_per_arm(0.2, 2.0, power=0.9) == 526
    assert users_per_arm(0.2, 2.0, sided=1) == 310
    assert users_per_arm(0.0, 2.0) is None
    assert users_per_arm(float("nan"), 2.0) is None


def test_mde_inverts_the_sample_size() -> None:
    n = users_per_arm(0.2, 2.0)
    assert n is not None
    mde = float(minimum_detectable_effect(np.sqrt(2.0 / n)))
    assert mde == pytest.approx(0.2, rel=2e-3)
    assert float(minimum_detectable_effect(1.0)) == pytest.approx(1.959964 + 0.841621, rel=1e-6)


def test_plan_for_a_relative_mde() -> None:
    # 5% of a baseline of 10 is 0.5; sigma^2 = 4 per arm.
    assert plan_users_per_arm(0.05, 10.0, var_per_user_control=4.0) == users_per_arm(0.5, 8.0)
    with pytest.raises(ConfigError, match=r"relative_mde must be > 0; got -0\.1\."):
        plan_users_per_arm(-0.1, 10.0, var_per_user_control=4.0)
    with pytest.raises(ConfigError, match=r"power must be in \(0, 1\); got 1\.5\."):
        users_per_arm(0.5, 8.0, power=1.5)


def test_the_planned_sample_size_has_the_promised_power() -> None:
    """At the planned n per arm, 4,000 simulated experiments reject about 80% of the time."""
    rng = np.random.default_rng(21)
    sigma, delta = 2.0, 0.3
    n = users_per_arm(delta, 2 * sigma**2)
    assert n is not None
    control = rng.normal(0, sigma, (4_000, n))
    treatment = rng.normal(delta, sigma, (4_000, n))
    result = compare(Sample.of(control, 1.0), Sample.of(treatment, 1.0))
    power = (result.p_value < 0.05).mean()
    assert abs(power - 0.8) < 3 * np.sqrt(0.8 * 0.2 / 4_000) + 0.005
    # And the unit variance the engine reports reproduces the plan.
    assert np.median(result.unit_variance) == pytest.approx(2 * sigma**2, rel=0.02)
