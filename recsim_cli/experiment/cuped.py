"""Reduce variance with a pre-period covariate (CUPED).

CUPED (Deng, Xu, Kohavi and Walker, "Improving the Sensitivity of Online
Controlled Experiments by Utilizing Pre-Experiment Data", WSDM 2013) replaces
an arm's estimate ``Y`` by ``Y - theta (X - E X)`` with ``X`` the same metric
measured on the same user before the experiment. ``theta = Cov(Y, X) / Var(X)``
minimises the variance, which shrinks by the factor ``1 - corr(Y, X)^2``.

For ratio metrics both ``Y`` and ``X`` are ratios of per-user sums; following
Deng et al. (KDD 2018, section on CUPED for ratio metrics) we work with their
delta-method linearisations, which turns every ratio into a per-user mean:

* ``l^Y_i = (y_num_i - R_Y y_den_i) / D_Y`` within each arm (``ratio.py``);
* ``l^X_i = (x_num_i - R_X x_den_i) / D_X`` with ``R_X``, ``D_X`` pooled over
  the users of both arms who have pre-period data.

A user without pre-period data gets ``l^X_i = 0``: their covariate is set to the
pooled pre-period value, so they are kept (never dropped) and simply not
adjusted. ``theta`` is pooled over arms from within-arm deviations,
``theta = sum_a sum_i l^Y_i (l^X_i - mean_a l^X) / sum_a sum_i (l^X_i - mean_a l^X)^2``,
the same ``theta`` for both arms so that the adjustment cancels in expectation
under randomisation. The adjusted arm estimate is ``R_Y - theta mean_a(l^X)``
and its variance ``var(l^Y - theta l^X) / n``; the one-parameter estimation of
``theta`` is ignored in the variance (an O(1/n) correction, as in the paper).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from recsim_cli.experiment.ratio import FloatArray, as_float


@dataclass(frozen=True)
class Covariate:
    """The linearised pre-period covariate of both arms and who lacked one."""

    control: FloatArray  # (..., n_control); 0 where missing
    treatment: FloatArray  # (..., n_treatment)
    missing_control: npt.NDArray[np.int64]  # (...)
    missing_treatment: npt.NDArray[np.int64]


def linearise_covariate(
    pre_num_control: npt.ArrayLike,
    pre_den_control: npt.ArrayLike,
    pre_num_treatment: npt.ArrayLike,
    pre_den_treatment: npt.ArrayLike,
) -> Covariate:
    """Linearise the pre-period ratio per user around its pooled value; NaN means missing."""
    xc, yc = as_float(pre_num_control), as_float(pre_den_control)
    xt, yt = as_float(pre_num_treatment), as_float(pre_den_treatment)
    obs_c = ~(np.isnan(xc) | np.isnan(yc))
    obs_t = ~(np.isnan(xt) | np.isnan(yt))
    xc0, yc0 = np.where(obs_c, xc, 0.0), np.where(obs_c, yc, 0.0)
    xt0, yt0 = np.where(obs_t, xt, 0.0), np.where(obs_t, yt, 0.0)
    n_obs = obs_c.sum(axis=-1) + obs_t.sum(axis=-1)
    sum_num = xc0.sum(axis=-1) + xt0.sum(axis=-1)
    sum_den = yc0.sum(axis=-1) + yt0.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = sum_num / sum_den
        mean_den = sum_den / n_obs
        usable = np.isfinite(ratio) & np.isfinite(mean_den) & (mean_den > 0)
        r = np.where(usable, ratio, 0.0)[..., None]
        d = np.where(usable, mean_den, 1.0)[..., None]
        lin_c = np.where(obs_c & usable[..., None], (xc0 - r * yc0) / d, 0.0)
        lin_t = np.where(obs_t & usable[..., None], (xt0 - r * yt0) / d, 0.0)
    n_c, n_t = xc.shape[-1], xt.shape[-1]
    return Covariate(
        lin_c,
        lin_t,
        np.asarray(n_c - obs_c.sum(axis=-1), dtype=np.int64),
        np.asarray(n_t - obs_t.sum(axis=-1), dtype=np.int64),
    )


def pooled_theta(
    y_control: FloatArray, x_control: FloatArray, y_treatment: FloatArray, x_treatment: FloatArray
) -> FloatArray:
    """Return ``theta = Cov(Y, X) / Var(X)`` pooled from within-arm deviations.

    0 (no adjustment) where the covariate has no within-arm variance, e.g. when
    no user has pre-period data.
    """
    sxy = np.zeros(np.broadcast_shapes(y_control.shape[:-1], y_treatment.shape[:-1]))
    sxx = np.zeros_like(sxy)
    for y, x in ((y_control, x_control), (y_treatment, x_treatment)):
        if y.shape[-1] == 0:
            continue
        yc = y - y.mean(axis=-1, keepdims=True)
        xc = x - x.mean(axis=-1, keepdims=True)
        sxy = sxy + np.einsum("...i,...i->...", yc, xc)
        sxx = sxx + np.einsum("...i,...i->...", xc, xc)
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = sxy / sxx
    return np.asarray(np.where(np.isfinite(theta) & (sxx > 0), theta, 0.0))
