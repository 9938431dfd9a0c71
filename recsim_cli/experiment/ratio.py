"""Estimate a ratio metric and its delta-method variance from per-user sums.

For one arm with ``n`` users, user ``i`` contributes a numerator sum ``x_i``
and a denominator sum ``y_i``. With ``M = mean(x)`` and ``D = mean(y)`` the
metric is ``R = sum(x) / sum(y) = M / D``; its variance by the delta method
(Deng, Knoblich and Lu, "Applying the Delta Method in Metric Analytics",
KDD 2018, eq. 4) is

    Var(R) = (1/n) [ s_M^2 / D^2 - 2 M s_MD / D^3 + M^2 s_D^2 / D^4 ]

where ``s_M^2``, ``s_D^2``, ``s_MD`` are the per-user sample (co)variances.
The bracket equals ``var(l) `` for the *linearised* per-user values
``l_i = (x_i - R y_i) / D``, so ``Var(R) = var(l) / n``. The engine carries the
linearised values because the paired design and CUPED need them: covariances
between arms or with a covariate are covariances of ``l``.

``ddof = 1`` (the default) divides the (co)variances by ``n - 1``; ``ddof = 0``
reproduces the cluster-robust (CR0) OLS variance exactly, which the tests check
against statsmodels.

Every function works on the last axis and broadcasts over leading ones, so the
same code analyses one experiment (shape ``(n,)``) or ten thousand simulated
ones at once (shape ``(10_000, n)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class RatioEstimate:
    """A ratio metric in one arm: value, variance, and per-user linearisation."""

    n: int
    ratio: FloatArray  # shape (...)
    mean_den: FloatArray  # D, shape (...)
    linearised: FloatArray  # l_i = (x_i - R y_i) / D, shape (..., n); mean exactly 0
    variance: FloatArray  # Var(R) = var(l, ddof) / n, shape (...)


def as_float(values: npt.ArrayLike) -> FloatArray:
    """Return ``values`` as a float64 array (no copy if it already is one)."""
    return np.asarray(values, dtype=np.float64)


def sample_variance(values: FloatArray, ddof: int) -> FloatArray:
    """Return the variance over the last axis, NaN (not a warning) when n <= ddof."""
    n = values.shape[-1]
    if n <= ddof:
        return np.full(values.shape[:-1], np.nan)
    centred = values - values.mean(axis=-1, keepdims=True)
    return np.asarray(np.einsum("...i,...i->...", centred, centred) / (n - ddof))


def sample_covariance(a: FloatArray, b: FloatArray, ddof: int) -> FloatArray:
    """Return the covariance of ``a`` and ``b`` over the last axis (NaN when n <= ddof)."""
    n = a.shape[-1]
    if n <= ddof:
        return np.full(np.broadcast_shapes(a.shape, b.shape)[:-1], np.nan)
    ac = a - a.mean(axis=-1, keepdims=True)
    bc = b - b.mean(axis=-1, keepdims=True)
    return np.asarray(np.einsum("...i,...i->...", ac, bc) / (n - ddof))


def estimate_ratio(num: npt.ArrayLike, den: npt.ArrayLike, ddof: int = 1) -> RatioEstimate:
    """Estimate ``R = sum(num) / sum(den)`` per row and its delta-method variance.

    Users are the rows' last axis; a user with ``den = 0`` still counts in ``n``
    (they were randomised) and contributes ``l_i = x_i / D``. An arm whose
    denominators sum to 0 has an undefined ratio: NaN, reported by the health
    checks rather than raised here, so a batch of simulations never stops.
    """
    x = as_float(num)
    y = as_float(den)
    n = x.shape[-1]
    if n == 0:
        shape = x.shape[:-1]
        nan = np.full(shape, np.nan)
        return RatioEstimate(0, nan, nan.copy(), np.zeros(x.shape), nan.copy())
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_num = x.mean(axis=-1)
        mean_den = y.mean(axis=-1)
        ratio = mean_num / mean_den
        lin = (x - ratio[..., None] * y) / mean_den[..., None]
        variance = sample_variance(lin, ddof) / n
    return RatioEstimate(n, ratio, mean_den, lin, variance)


def delta_method_variance(num: npt.ArrayLike, den: npt.ArrayLike, ddof: int = 1) -> FloatArray:
    """Return Var(sum(num)/sum(den)) by the explicit formula of Deng et al. (KDD 2018).

    ``(1/n) [s_M^2/D^2 - 2 M s_MD/D^3 + M^2 s_D^2/D^4]``: the textbook form,
    kept beside :func:`estimate_ratio` (which uses the equivalent linearised
    form) so a test can show the two agree.
    """
    x = as_float(num)
    y = as_float(den)
    n = x.shape[-1]
    m = x.mean(axis=-1)
    d = y.mean(axis=-1)
    s_mm = sample_variance(x, ddof)
    s_dd = sample_variance(y, ddof)
    s_md = sample_covariance(x, y, ddof)
    return np.asarray((s_mm / d**2 - 2 * m * s_md / d**3 + m**2 * s_dd / d**4) / n)
