"""Minimum detectable effects and sample sizes for a two-sided test.

With ``SE`` the standard error of the difference, the minimum detectable
effect at power ``1 - beta`` and two-sided level ``alpha`` is

    MDE = (z_{1 - alpha/2} + z_{1 - beta}) SE

(the normal approximation, e.g. Kohavi, Tang and Xu 2020, ch. 17; it ignores
the tiny chance of rejecting in the wrong direction). With ``n`` users per arm,
``SE^2 = sigma^2 / n`` where ``sigma^2`` is the *unit variance*: the sum of the
two arms' per-user variances of the linearised metric for a split experiment
(``sigma_T^2 + sigma_C^2``), the per-user variance of the paired differences
for a paired one. The users per arm needed to detect an absolute effect
``delta`` are therefore

    n = ceil((z_{1 - alpha/2} + z_{1 - beta})^2 sigma^2 / delta^2).

A relative MDE ``m`` on a baseline value ``C`` is the absolute ``m |C|``.
The normal quantiles (not Student's) are used: planning is approximate, and
the engine refuses arms below 50 users where the two differ.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from recsim_cli.errors import ConfigError
from recsim_cli.experiment.ratio import FloatArray, as_float

DEFAULT_POWER = 0.8


def _z_sum(alpha: float, power: float, sided: int) -> float:
    from scipy import stats

    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1); got {alpha}.")
    if not 0 < power < 1:
        raise ConfigError(f"power must be in (0, 1); got {power}.")
    if sided not in (1, 2):
        raise ConfigError(f"sided must be 1 or 2; got {sided}.")
    return float(stats.norm.ppf(1 - alpha / sided) + stats.norm.ppf(power))


def minimum_detectable_effect(
    se: npt.ArrayLike, alpha: float = 0.05, power: float = DEFAULT_POWER, sided: int = 2
) -> FloatArray:
    """Return the absolute MDE ``(z_{1-alpha/sided} + z_power) SE``."""
    return np.asarray(_z_sum(alpha, power, sided) * as_float(se))


def users_per_arm(
    effect: float,
    unit_variance: float,
    alpha: float = 0.05,
    power: float = DEFAULT_POWER,
    sided: int = 2,
) -> int | None:
    """Return the users per arm to detect absolute ``effect`` (None if it cannot be known).

    ``unit_variance`` is ``n Var(Delta)`` with ``n`` users per arm (see the
    module docstring). None when the effect is 0 or either input is not finite.
    """
    if not (math.isfinite(effect) and math.isfinite(unit_variance)) or effect == 0:
        return None
    if unit_variance < 0:
        raise ConfigError(f"unit_variance must be >= 0; got {unit_variance}.")
    n = _z_sum(alpha, power, sided) ** 2 * unit_variance / effect**2
    return max(2, math.ceil(n))


def plan_users_per_arm(
    relative_mde: float,
    baseline: float,
    *,
    var_per_user_control: float,
    var_per_user_treatment: float | None = None,
    alpha: float = 0.05,
    power: float = DEFAULT_POWER,
) -> int | None:
    """Return the users per arm of a split test to detect ``relative_mde`` on ``baseline``.

    ``var_per_user_*`` are the per-user variances of the metric (for a ratio
    metric, of its linearisation ``(x - R y) / D``: ``n Var(R)`` of a past
    experiment); the treatment's defaults to the control's.
    """
    if relative_mde <= 0:
        raise ConfigError(f"relative_mde must be > 0; got {relative_mde}.")
    treatment = var_per_user_control if var_per_user_treatment is None else var_per_user_treatment
    unit_variance = var_per_user_control + treatment
    return users_per_arm(relative_mde * abs(baseline), unit_variance, alpha, power)
