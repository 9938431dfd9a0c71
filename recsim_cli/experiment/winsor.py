"""Cap extreme users of a ratio metric at a pooled percentile (winsorisation).

Heavy-tailed metrics (watch time) let a handful of users dominate the
variance. Winsorisation at level ``p`` (e.g. 0.999) trades a small, known bias
for a large variance reduction:

1. ``c_num`` and ``c_den`` are the ``p``-quantiles (numpy's default linear
   interpolation) of the per-user numerators and denominators, *pooled over
   both arms* so both arms are capped by the same rule;
2. the capped users are those whose numerator exceeds ``c_num``;
3. for them, and only them, ``num <- c_num`` and ``den <- min(den, c_den)``.

Capping numerator and denominator on the *same* users keeps a heavy but
ordinary user's ratio roughly intact (a user with 100 sessions and 1,000
minutes becomes ``c_num`` minutes over at most ``c_den`` sessions) instead of
shrinking only their numerator, which would bias every heavy user's ratio
down; a user with many sessions but ordinary watch time is left alone, which
avoids biasing ratios up by capping only their denominator. For a plain mean
(``den = 1`` for every user) ``c_den = 1`` and the rule is the classical
one-sided winsorisation ``min(x, c)``, a contraction, so it never increases
the sample variance. The same rule, with its own thresholds, is applied to
the pre-period covariate when CUPED is on; missing (NaN) values stay missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from recsim_cli.errors import ConfigError
from recsim_cli.experiment.ratio import FloatArray


@dataclass(frozen=True)
class Winsorized:
    """Capped per-user sums of both arms and what was capped."""

    num_control: FloatArray
    den_control: FloatArray
    num_treatment: FloatArray
    den_treatment: FloatArray
    num_threshold: float
    den_threshold: float
    capped_control: int
    capped_treatment: int

    def summary(self, level: float) -> dict[str, Any]:
        """Return the thresholds and capped-user counts as JSON-ready values."""
        return {
            "level": level,
            "num_threshold": self.num_threshold,
            "den_threshold": self.den_threshold,
            "capped_control": self.capped_control,
            "capped_treatment": self.capped_treatment,
        }


def check_level(level: float) -> float:
    """Return ``level`` if it is a usable winsorisation percentile in (0.5, 1)."""
    if not 0.5 < level < 1.0:
        raise ConfigError(
            f"winsorize must be a percentile level in (0.5, 1), e.g. 0.999; got {level}."
        )
    return level


def winsorize(
    num_control: FloatArray,
    den_control: FloatArray,
    num_treatment: FloatArray,
    den_treatment: FloatArray,
    level: float,
) -> Winsorized:
    """Cap the users whose numerator exceeds the pooled ``level``-quantile (see module doc)."""
    check_level(level)
    pooled_num = np.concatenate([num_control, num_treatment])
    pooled_den = np.concatenate([den_control, den_treatment])
    if np.all(np.isnan(pooled_num)):
        return Winsorized(
            num_control, den_control, num_treatment, den_treatment, np.nan, np.nan, 0, 0
        )
    c_num = float(np.nanquantile(pooled_num, level))
    c_den = float(np.nanquantile(pooled_den, level))

    def cap(num: FloatArray, den: FloatArray) -> tuple[FloatArray, FloatArray, int]:
        over = num > c_num  # False for NaN: missing stays missing
        return (
            np.where(over, c_num, num),
            np.where(over, np.minimum(den, c_den), den),
            int(over.sum()),
        )

    nc, dc, kc = cap(num_control, den_control)
    nt, dt, kt = cap(num_treatment, den_treatment)
    return Winsorized(nc, dc, nt, dt, c_num, c_den, kc, kt)
