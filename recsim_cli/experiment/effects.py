"""Test a difference between arms and put confidence intervals on it.

Absolute effect ``Delta = T - C`` (treatment minus control) with
``Var(Delta) = v_T + v_C - 2 v_TC`` (``v_TC = 0`` for independent arms). The
test statistic ``Delta / SE`` is referred to Student's t with

* Welch–Satterthwaite degrees of freedom for independent arms (Welch 1947;
  Satterthwaite 1946), ``df = (v_T + v_C)^2 / (v_T^2/(n_T-1) + v_C^2/(n_C-1))``,
  applied to the delta-method variances of the two arm estimates;
* ``n - 1`` for the paired design;
* or the standard normal (``df = inf``) when asked.

The p-value and the CI use the *same* variance and the same critical value
``q = t_{1-alpha/2, df}``, so ``0`` lies inside the CI exactly when
``p >= alpha``.

Relative lift ``T / C - 1`` has three intervals:

* ``fieller`` (default; Fieller 1954): the set of ``rho`` with
  ``(T - rho C)^2 <= q^2 (v_T - 2 rho v_TC + rho^2 v_C)``, i.e. the roots of
  ``a rho^2 - 2 b rho + c = 0`` with ``a = C^2 - q^2 v_C``,
  ``b = T C - q^2 v_TC``, ``c = T^2 - q^2 v_T``. At ``rho = 1`` the inequality
  is the absolute test itself, so the Fieller interval excludes a lift of 0
  exactly when the absolute test rejects.
* ``delta``: ``T/C - 1 +- q sqrt(v_T/C^2 - 2 T v_TC/C^3 + T^2 v_C/C^4)``.
* ``log``: ``exp(log(T/C) +- q sqrt(v_T/T^2 - 2 v_TC/(T C) + v_C/C^2)) - 1``.

Whatever the method, the relative lift is *undefined* when ``a <= 0``, i.e.
when the control mean is not distinguishable from 0 at the test's level
(``C^2 <= q^2 v_C``): the Fieller set is then unbounded, and the delta and
log intervals would print a precise-looking number that means nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from recsim_cli.errors import UnknownNameError
from recsim_cli.experiment.ratio import FloatArray, as_float

Distribution = Literal["t", "normal"]
DISTRIBUTIONS: tuple[Distribution, ...] = ("t", "normal")
RelativeMethod = Literal["fieller", "delta", "log"]
RELATIVE_METHODS: tuple[RelativeMethod, ...] = ("fieller", "delta", "log")


def check_distribution(name: str) -> Distribution:
    """Return ``name`` as a distribution name or raise ``UnknownNameError``."""
    for known in DISTRIBUTIONS:
        if name == known:
            return known
    raise UnknownNameError("distribution", name, DISTRIBUTIONS)


def check_relative_method(name: str) -> RelativeMethod:
    """Return ``name`` as a relative-CI method or raise ``UnknownNameError``."""
    for known in RELATIVE_METHODS:
        if name == known:
            return known
    raise UnknownNameError("relative CI method", name, RELATIVE_METHODS)


def welch_df(
    var_treatment: npt.ArrayLike, n_treatment: int, var_control: npt.ArrayLike, n_control: int
) -> FloatArray:
    """Return the Welch–Satterthwaite degrees of freedom of ``T - C``.

    ``var_*`` are the variances of the arm *estimates* (already divided by n).
    NaN when an arm has fewer than two users.
    """
    vt = as_float(var_treatment)
    vc = as_float(var_control)
    if n_treatment < 2 or n_control < 2:
        return np.full(np.broadcast_shapes(vt.shape, vc.shape), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray((vt + vc) ** 2 / (vt**2 / (n_treatment - 1) + vc**2 / (n_control - 1)))


def critical_value(alpha: float, df: npt.ArrayLike, sided: int = 2) -> FloatArray:
    """Return ``q = t_{1 - alpha/sided, df}`` (the normal quantile where df is infinite)."""
    from scipy import stats

    return np.asarray(stats.t.ppf(1.0 - alpha / sided, as_float(df)), dtype=np.float64)


@dataclass(frozen=True)
class DifferenceTest:
    """A two-sided test of ``estimate = 0`` and the matching CI (arrays)."""

    estimate: FloatArray
    se: FloatArray
    df: FloatArray
    critical: FloatArray
    statistic: FloatArray
    p_value: FloatArray
    ci_low: FloatArray
    ci_high: FloatArray


def difference_test(
    estimate: npt.ArrayLike, variance: npt.ArrayLike, df: npt.ArrayLike, alpha: float
) -> DifferenceTest:
    """Test ``estimate = 0`` given its variance and df; return p-value and (1 - alpha) CI."""
    from scipy import stats

    est = as_float(estimate)
    var = as_float(variance)
    dof = np.broadcast_to(as_float(df), est.shape).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(var)
        stat = est / se
        p = np.asarray(2.0 * stats.t.sf(np.abs(stat), dof), dtype=np.float64)
    q = critical_value(alpha, dof)
    return DifferenceTest(est, se, dof, q, stat, p, est - q * se, est + q * se)


@dataclass(frozen=True)
class RelativeInterval:
    """Relative lift ``T/C - 1`` and its interval; NaN where ``defined`` is False."""

    estimate: FloatArray
    low: FloatArray
    high: FloatArray
    defined: npt.NDArray[np.bool_]


def relative_interval(
    treatment: npt.ArrayLike,
    control: npt.ArrayLike,
    *,
    var_treatment: npt.ArrayLike,
    var_control: npt.ArrayLike,
    covariance: npt.ArrayLike,
    critical: npt.ArrayLike,
    method: RelativeMethod = "fieller",
) -> RelativeInterval:
    """Return the relative lift and its interval at critical value ``q`` by ``method``.

    With ``q`` the two-sided critical value the interval is the (1 - alpha) CI;
    with the one-sided one its ends are the one-sided (1 - alpha) bounds.
    """
    t, c, vt, vc, vtc, q = np.broadcast_arrays(
        as_float(treatment),
        as_float(control),
        as_float(var_treatment),
        as_float(var_control),
        as_float(covariance),
        as_float(critical),
    )
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        q2 = q * q
        a = c * c - q2 * vc
        defined = np.asarray(a > 0)  # False for NaN too
        ratio = t / c
        if method == "fieller":
            b = t * c - q2 * vtc
            cc = t * t - q2 * vt
            # a > 0 makes the discriminant >= 0 in exact arithmetic (rho = T/C lies
            # inside the set); clip the rounding error.
            root = np.sqrt(np.maximum(b * b - a * cc, 0.0))
            low = (b - root) / a - 1.0
            high = (b + root) / a - 1.0
        elif method == "delta":
            se = np.sqrt(np.maximum(vt / c**2 - 2 * t * vtc / c**3 + t**2 * vc / c**4, 0.0))
            low = ratio - 1.0 - q * se
            high = ratio - 1.0 + q * se
        elif method == "log":
            defined = defined & (t > 0) & (c > 0)
            se = np.sqrt(np.maximum(vt / t**2 - 2 * vtc / (t * c) + vc / c**2, 0.0))
            low = np.exp(np.log(ratio) - q * se) - 1.0
            high = np.exp(np.log(ratio) + q * se) - 1.0
        else:
            raise UnknownNameError("relative CI method", str(method), RELATIVE_METHODS)
    nan = np.nan
    return RelativeInterval(
        np.where(defined, ratio - 1.0, nan),
        np.where(defined, low, nan),
        np.where(defined, high, nan),
        defined,
    )
