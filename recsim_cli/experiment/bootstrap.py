"""Cross-check the delta-method CIs with a Poisson bootstrap over users.

The Poisson bootstrap (Hanley and MacGibbon 2006; Chamandy, Muralidharan,
Najmi and Naidu, "Estimating Uncertainty for Massive Data Streams", Google
2012) gives every user an independent Poisson(1) weight per resample instead
of drawing exactly n users with replacement; for large n the two agree, and
the weights need no knowledge of n, which is what makes the method scale.

Resample b's arm estimate is ``sum_i w_bi x_i / sum_i w_bi y_i`` (minus
``theta sum_i w_bi l^X_i / sum_i w_bi`` with CUPED, ``theta`` held at its
full-sample value). The weights are drawn as a (B, n) matrix, in chunks that
bound the memory, and the weighted sums are one matrix product per chunk.
Paired arms share each user's weight (users, not rows, are resampled);
split arms are resampled independently. The CI is the percentile interval
``[q_{alpha/2}, q_{1-alpha/2}]`` of the resampled difference and relative lift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from recsim_cli.errors import ConfigError
from recsim_cli.experiment.ratio import FloatArray

# Entries of one weight chunk: 4 million float64, 32 MB.
_CHUNK_ENTRIES = 4_000_000


@dataclass(frozen=True)
class BootstrapResult:
    """Percentile-bootstrap CIs of the difference and the relative lift."""

    resamples: int
    ci_low: float
    ci_high: float
    relative_low: float
    relative_high: float
    se: float
    undefined_resamples: int  # resamples where an arm's weighted denominator was 0

    def to_dict(self) -> dict[str, Any]:
        """Return the result as plain JSON-ready values."""
        return {
            "method": "poisson percentile",
            "resamples": self.resamples,
            "ci": [self.ci_low, self.ci_high],
            "relative_ci": [self.relative_low, self.relative_high],
            "se": self.se,
            "undefined_resamples": self.undefined_resamples,
        }


def arm_columns(
    num: FloatArray, den: FloatArray, covariate: FloatArray | None = None
) -> FloatArray:
    """Stack one arm's per-user columns ``[num, den, covariate, 1]`` as an (n, 4) matrix."""
    cov = np.zeros_like(num) if covariate is None else covariate
    return np.column_stack([num, den, cov, np.ones_like(num)])


def _estimates(sums: FloatArray, theta: float) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(sums[:, 0] / sums[:, 1] - theta * sums[:, 2] / sums[:, 3])


def poisson_bootstrap(
    control: FloatArray,
    treatment: FloatArray,
    *,
    resamples: int,
    rng: np.random.Generator,
    alpha: float = 0.05,
    paired: bool = False,
    theta: float = 0.0,
) -> BootstrapResult:
    """Resample users with Poisson(1) weights and return percentile CIs.

    ``control`` and ``treatment`` are :func:`arm_columns` matrices; in the
    paired design their rows are the same users in the same order.
    """
    if resamples < 2:
        raise ConfigError(f"the bootstrap needs at least 2 resamples; got {resamples}.")
    if paired and control.shape[0] != treatment.shape[0]:
        raise ConfigError("a paired bootstrap needs the same users in both arms.")
    n_max = max(control.shape[0], treatment.shape[0], 1)
    chunk = max(1, _CHUNK_ENTRIES // n_max)
    est_c = np.empty(resamples)
    est_t = np.empty(resamples)
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        w_c = rng.poisson(1.0, size=(b, control.shape[0])).astype(np.float64)
        w_t = w_c if paired else rng.poisson(1.0, size=(b, treatment.shape[0])).astype(np.float64)
        est_c[start : start + b] = _estimates(w_c @ control, theta)
        est_t[start : start + b] = _estimates(w_t @ treatment, theta)
    diff = est_t - est_c
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = est_t / est_c - 1.0
    ok = np.isfinite(diff) & np.isfinite(rel)
    if not ok.any():
        nan = float("nan")
        return BootstrapResult(resamples, nan, nan, nan, nan, nan, resamples)
    lo, hi = alpha / 2, 1 - alpha / 2
    d_lo, d_hi = np.quantile(diff[ok], [lo, hi])
    r_lo, r_hi = np.quantile(rel[ok], [lo, hi])
    se = float(np.std(diff[ok], ddof=1)) if ok.sum() > 1 else float("nan")
    return BootstrapResult(
        resamples, float(d_lo), float(d_hi), float(r_lo), float(r_hi), se, int((~ok).sum())
    )
