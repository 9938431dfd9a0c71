"""Compare one metric between two arms: the vectorised core of the engine.

:func:`compare` takes each arm's per-user numerator and denominator sums as
arrays whose last axis is the users, and returns every statistic as an array
over the leading axes. ``analyse`` calls it with one experiment (shape
``(n,)``); the validation suite calls it with thousands of simulated
experiments at once (shape ``(E, n)``), so the code that is validated is the
code that gates.

Designs:

* ``split``: independent arms (users randomised to one arm).
  ``Var(Delta) = Var(T) + Var(C)``, Welch–Satterthwaite df.
* ``paired``: both arms measured on the same users, aligned position by
  position (an offline replay of two models on the same logged sessions).
  ``Var(Delta) = Var(T) + Var(C) - 2 Cov(T, C)``, with
  ``Cov(T, C) = cov(l^T, l^C) / n`` from the users' linearised values; df n - 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from recsim_cli.errors import ConfigError, UnknownNameError
from recsim_cli.experiment.cuped import linearise_covariate, pooled_theta
from recsim_cli.experiment.effects import (
    Distribution,
    RelativeMethod,
    difference_test,
    relative_interval,
    welch_df,
)
from recsim_cli.experiment.ratio import (
    FloatArray,
    as_float,
    estimate_ratio,
    sample_covariance,
    sample_variance,
)

Design = Literal["split", "paired"]
DESIGNS: tuple[Design, ...] = ("split", "paired")


def check_design(name: str) -> Design:
    """Return ``name`` as a design or raise ``UnknownNameError``."""
    for known in DESIGNS:
        if name == known:
            return known
    raise UnknownNameError("design", name, DESIGNS)


@dataclass(frozen=True)
class Sample:
    """One arm's per-user sums for one metric; pre-period arrays hold NaN where missing."""

    num: FloatArray  # (..., n)
    den: FloatArray  # (..., n)
    pre_num: FloatArray | None = None
    pre_den: FloatArray | None = None

    @classmethod
    def of(
        cls,
        num: npt.ArrayLike,
        den: npt.ArrayLike,
        pre_num: npt.ArrayLike | None = None,
        pre_den: npt.ArrayLike | None = None,
    ) -> Sample:
        """Build a sample from array-likes (``den`` may be a scalar such as 1)."""
        x = as_float(num)
        y = np.broadcast_to(as_float(den), x.shape)
        if (pre_num is None) != (pre_den is None):
            raise ConfigError("give both pre_num and pre_den, or neither.")
        if pre_num is None or pre_den is None:
            return cls(x, y)
        px = as_float(pre_num)
        py = np.broadcast_to(as_float(pre_den), px.shape)
        return cls(x, y, px, py)

    @property
    def n(self) -> int:
        """Number of users (the last axis)."""
        return int(self.num.shape[-1])


@dataclass(frozen=True)
class Comparison:
    """Every statistic of one metric's treatment-versus-control comparison (arrays)."""

    design: Design
    n_control: int
    n_treatment: int
    control_raw: FloatArray  # the plain ratio in each arm
    treatment_raw: FloatArray
    control: FloatArray  # the estimate compared (CUPED-adjusted when CUPED is on)
    treatment: FloatArray
    var_control: FloatArray  # Var of the arm estimates, and their covariance (paired)
    var_treatment: FloatArray
    covariance: FloatArray
    unit_variance: FloatArray  # n x Var(Delta) with n users per arm: for sample-size plans
    difference: FloatArray
    se: FloatArray
    df: FloatArray
    critical: FloatArray
    p_value: FloatArray
    ci_low: FloatArray
    ci_high: FloatArray
    relative: FloatArray  # NaN where undefined
    relative_low: FloatArray
    relative_high: FloatArray
    relative_defined: npt.NDArray[np.bool_]
    theta: FloatArray | None  # CUPED only
    variance_reduction: FloatArray | None  # 1 - Var_adj(Delta) / Var(Delta)
    pre_missing_control: npt.NDArray[np.int64] | None
    pre_missing_treatment: npt.NDArray[np.int64] | None


Numbers = FloatArray | float
"""An estimate or variance: per metric (arrays, `compare`) or one number (`compare_moments`)."""
Counts = npt.NDArray[np.int64] | int


def compare(
    control: Sample,
    treatment: Sample,
    *,
    design: Design = "split",
    alpha: float = 0.05,
    relative_method: RelativeMethod = "fieller",
    distribution: Distribution = "t",
    cuped: bool = False,
    ddof: int = 1,
) -> Comparison:
    """Estimate treatment minus control, its CI and p-value, and the relative lift.

    ``cuped=True`` needs both samples' pre-period arrays. In the ``paired``
    design the two samples must list the same users in the same order.
    """
    if design == "paired" and control.n != treatment.n:
        raise ConfigError(
            f"the paired design needs the same users in both arms; got {control.n} control "
            f"and {treatment.n} treatment users."
        )
    rc = estimate_ratio(control.num, control.den, ddof)
    rt = estimate_ratio(treatment.num, treatment.den, ddof)
    lin_c, lin_t = rc.linearised, rt.linearised
    est_c, est_t = rc.ratio, rt.ratio
    theta = miss_c = miss_t = None
    if cuped:
        if (
            control.pre_num is None
            or control.pre_den is None
            or treatment.pre_num is None
            or treatment.pre_den is None
        ):
            raise ConfigError("CUPED needs pre-period numerator and denominator in both arms.")
        cov = linearise_covariate(
            control.pre_num, control.pre_den, treatment.pre_num, treatment.pre_den
        )
        theta = pooled_theta(lin_c, cov.control, lin_t, cov.treatment)
        mean_xc = _mean(cov.control)
        mean_xt = _mean(cov.treatment)
        # Centre the covariate within arm so the adjusted linearisation keeps mean 0.
        lin_c = lin_c - theta[..., None] * (cov.control - mean_xc[..., None])
        lin_t = lin_t - theta[..., None] * (cov.treatment - mean_xt[..., None])
        est_c = est_c - theta * mean_xc
        est_t = est_t - theta * mean_xt
        miss_c, miss_t = cov.missing_control, cov.missing_treatment
    var_c = _variance_of_mean(lin_c, ddof)
    var_t = _variance_of_mean(lin_t, ddof)
    if design == "paired":
        n = control.n
        covariance = (
            sample_covariance(lin_t, lin_c, ddof) / n if n > 0 else np.full_like(var_c, np.nan)
        )
        df = np.full_like(var_c, n - 1.0 if n > 1 else np.nan)
    else:
        covariance = np.zeros_like(var_c)
        df = welch_df(var_t, treatment.n, var_c, control.n)
    unit_variance = _unit_variance(lin_c, lin_t, design, ddof)
    raw_var_diff = None
    if cuped:
        raw_c = _variance_of_mean(rc.linearised, ddof)
        raw_t = _variance_of_mean(rt.linearised, ddof)
        raw_cov = (
            sample_covariance(rt.linearised, rc.linearised, ddof) / control.n
            if design == "paired" and control.n > ddof
            else np.zeros_like(raw_c)
        )
        raw_var_diff = raw_t + raw_c - 2.0 * raw_cov
    return conclude(
        design=design,
        n=(control.n, treatment.n),
        raw=(rc.ratio, rt.ratio),
        estimate=(est_c, est_t),
        variance=(var_c, var_t),
        covariance=covariance,
        df=np.full_like(df, np.inf) if distribution == "normal" else df,
        unit_variance=unit_variance,
        alpha=alpha,
        relative_method=relative_method,
        raw_var_diff=raw_var_diff,
        theta=theta,
        pre_missing=(miss_c, miss_t),
    )


def conclude(
    *,
    design: Design,
    n: tuple[int, int],
    raw: tuple[Numbers, Numbers],
    estimate: tuple[Numbers, Numbers],
    variance: tuple[Numbers, Numbers],
    covariance: Numbers,
    df: Numbers,
    unit_variance: Numbers,
    alpha: float,
    relative_method: RelativeMethod,
    raw_var_diff: Numbers | None = None,
    theta: Numbers | None = None,
    pre_missing: tuple[Counts | None, Counts | None] = (None, None),
) -> Comparison:
    """The test of the difference, the relative CI and the `Comparison`, from the arms' parts.

    Pairs are (control, treatment). ``df`` is final (infinite for the normal
    distribution); ``raw_var_diff`` is Var(Delta) without CUPED, for the
    variance reduction. Shared by `compare` (per-user arrays) and
    `moments.compare_moments` (the same numbers from moments).
    """
    (est_c, est_t), (var_c, var_t) = estimate, variance
    var_diff = var_t + var_c - 2.0 * covariance
    test = difference_test(est_t - est_c, var_diff, df, alpha)
    rel = relative_interval(
        est_t,
        est_c,
        var_treatment=var_t,
        var_control=var_c,
        covariance=covariance,
        critical=test.critical,
        method=relative_method,
    )
    reduction = None
    if raw_var_diff is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            reduction = 1.0 - np.float64(var_diff) / np.float64(raw_var_diff)

    def arr(value: Numbers) -> FloatArray:
        return np.asarray(value, dtype=np.float64)

    def count(value: Counts | None) -> npt.NDArray[np.int64] | None:
        return None if value is None else np.asarray(value, dtype=np.int64)

    return Comparison(
        design=design,
        n_control=n[0],
        n_treatment=n[1],
        control_raw=arr(raw[0]),
        treatment_raw=arr(raw[1]),
        control=arr(est_c),
        treatment=arr(est_t),
        var_control=arr(var_c),
        var_treatment=arr(var_t),
        covariance=arr(covariance),
        unit_variance=arr(unit_variance),
        difference=test.estimate,
        se=test.se,
        df=test.df,
        critical=test.critical,
        p_value=test.p_value,
        ci_low=test.ci_low,
        ci_high=test.ci_high,
        relative=rel.estimate,
        relative_low=rel.low,
        relative_high=rel.high,
        relative_defined=rel.defined,
        theta=None if theta is None else arr(theta),
        variance_reduction=None if reduction is None else arr(reduction),
        pre_missing_control=count(pre_missing[0]),
        pre_missing_treatment=count(pre_missing[1]),
    )


def _mean(values: FloatArray) -> FloatArray:
    if values.shape[-1] == 0:
        return np.zeros(values.shape[:-1])
    return np.asarray(values.mean(axis=-1))


def _variance_of_mean(lin: FloatArray, ddof: int) -> FloatArray:
    n = lin.shape[-1]
    if n == 0:
        return np.full(lin.shape[:-1], np.nan)
    return np.asarray(sample_variance(lin, ddof) / n)


def _unit_variance(lin_c: FloatArray, lin_t: FloatArray, design: Design, ddof: int) -> FloatArray:
    """Return ``n Var(Delta)`` for n users per arm, from the per-user variances."""
    if design == "paired":
        if lin_c.shape[-1] <= ddof:
            return np.full(lin_c.shape[:-1], np.nan)
        return np.asarray(sample_variance(lin_t - lin_c, ddof))
    return np.asarray(sample_variance(lin_c, ddof) + sample_variance(lin_t, ddof))
