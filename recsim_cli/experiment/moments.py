"""Analyse an experiment from per-arm moments instead of per-user values.

The engine's statistics (``comparison.py``) are all built from linear
functions of each user's sums: the delta-method linearisation of a ratio
``l_i = (x_i - R y_i) / D`` (``ratio.py``) and the CUPED covariate
``l^X_i = (px_i - R_X py_i) / D_X`` (``cuped.py``) have coefficients that
depend only on means. The variance, covariance and CUPED ``theta`` of such
linear functions follow from each arm's

* ``n``, the users;
* the mean of every per-user variable (null pre-period values count as 0);
* the number of non-null values of each variable (who has pre-period data);
* the **co-moments** ``C[v, w] = sum_i (v_i - mean v)(w_i - mean w)``, the
  sums of pairwise products of deviations from the arm's means.

For a linear function ``l = a . v`` of the variables, ``sum_i (l_i - mean
l)^2 = a' C a``, so ``var(l) = a' C a / (n - ddof)``. The paired design also
needs the cross co-moments between arms, ``X[v, w] = sum_i (v^C_i - mean
v^C)(w^T_i - mean w^T)`` over the users (each in both arms), from which
``cov(l^T, l^C) = a_C' X a_T / (n - ddof)``.

Co-moments rather than raw sums of products: turning ``sum v w`` into
``sum v w - n mean(v) mean(w)`` cancels most digits when the mean is large
against the spread; deviations from the arm's mean do not (polars takes them
in two passes, Spark's ``covar_pop`` in a stable one-pass update), so the
numbers agree with the per-user path to about 1e-12 relative.

:func:`moments_from_frame` computes them from the engine's frame (polars);
``recsim_cli.spark.logged`` computes the same in one Spark aggregation.
:func:`analyse_moments` gives the same ``ExperimentResult`` as ``analyse`` on
the frame, except that it cannot bootstrap or winsorise (both need the
per-user values; it refuses them). docs/statistics.md, "Moments instead of
per-user values", has the details.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import polars as pl

from recsim_cli.errors import ConfigError, ExperimentInvalidError
from recsim_cli.experiment.analysis import (
    check_options,
    metric_result,
)
from recsim_cli.experiment.comparison import Comparison, Design, check_design, conclude
from recsim_cli.experiment.daily import (
    MIN_USERS,
    DailyPoint,
    DailyStatistics,
    cumulative_frame,
    daily_point,
    running_sums,
)
from recsim_cli.experiment.effects import (
    Distribution,
    RelativeMethod,
    welch_df,
)
from recsim_cli.experiment.frame import ARM, USER, extract_arms
from recsim_cli.experiment.health import (
    DEFAULT_MIN_USERS,
    HealthCheck,
    check_metric,
    check_min_users,
    check_one_arm_per_user,
    check_sample_ratio,
)
from recsim_cli.experiment.logged import LoggedCounts
from recsim_cli.experiment.metrics import Evidence, MetricDef
from recsim_cli.experiment.multiple import adjust
from recsim_cli.experiment.power import DEFAULT_POWER
from recsim_cli.experiment.results import AnalysisSettings, ExperimentResult, MetricResult, Role

FloatArray = npt.NDArray[np.float64]
Collect = Literal["auto", "users", "moments"]
COLLECTS: tuple[Collect, ...] = ("auto", "users", "moments")
MAX_COLLECTED_ROWS = 5_000_000
"""``collect="auto"`` collects the per-user frame up to this many (user, arm) rows, else moments."""
EXAMPLES = 3  # user ids named in a message about users in the wrong arms


@dataclass(frozen=True)
class Moments:
    """One arm's moments of the per-user variables ``names``; nulls count as 0."""

    names: tuple[str, ...]
    n: int
    nonnull: npt.NDArray[np.int64]  # (k,): users with a non-null value
    mean: FloatArray  # (k,): sum over the n users / n (0 when n = 0)
    comoment: FloatArray  # (k, k): sum_i (v_i - mean v)(w_i - mean w)

    @classmethod
    def empty(cls, names: Sequence[str]) -> Moments:
        """The moments of no users."""
        k = len(names)
        return cls(
            tuple(names), 0, np.zeros(k, np.int64), np.zeros(k), np.zeros((k, k), np.float64)
        )

    def index(self, name: str) -> int:
        """Position of variable ``name``."""
        return self.names.index(name)

    def sum(self, name: str) -> float:
        """The sum of variable ``name`` over the users."""
        return float(self.n * self.mean[self.index(name)])


@dataclass(frozen=True)
class Unpaired:
    """Users of a paired experiment found in one arm only: how many, and the first few ids."""

    count: int
    examples: tuple[object, ...]


@dataclass(frozen=True)
class ExperimentMoments:
    """Both arms' moments, and what the health checks and the paired design need of the users."""

    control: str
    treatment: str
    design: Design
    arms: tuple[Moments, Moments]  # (control, treatment), over the same names
    cross: FloatArray | None = None
    """Paired design: ``X[v, w] = sum_i (v^C_i - mean)(w^T_i - mean)`` over the users."""
    shared_users: int = 0  # split design: users found in both arms
    shared_examples: tuple[object, ...] = ()  # the smallest of their ids
    unpaired: tuple[Unpaired, Unpaired] = (Unpaired(0, ()), Unpaired(0, ()))
    """Paired design: users only in control, only in treatment (the moments leave them out)."""

    @property
    def names(self) -> tuple[str, ...]:
        """The variables, the engine frame's column names."""
        return self.arms[0].names


@dataclass(frozen=True)
class LoggedMoments:
    """A logged experiment read as moments: the counts, the moments, the moments per day."""

    counts: LoggedCounts
    moments: ExperimentMoments
    daily: tuple[tuple[dt.date, ExperimentMoments], ...] | None = None
    """The moments of the cumulative frame through each day of the window."""


def check_collect(name: str) -> Collect:
    """Return ``name`` as a collect mode or raise ``UnknownNameError``."""
    from recsim_cli.errors import UnknownNameError

    for known in COLLECTS:
        if name == known:
            return known
    raise UnknownNameError("collect mode", name, COLLECTS)


def variables(metrics: Sequence[MetricDef], cuped: bool, columns: Sequence[str]) -> list[str]:
    """The frame columns the moments cover: each metric's num, den and (CUPED) pre columns."""
    names: list[str] = []
    for m in metrics:
        wanted = [m.num_column, m.den_column]
        if cuped:
            wanted += [m.pre_num_column, m.pre_den_column]
        names += [c for c in wanted if c in columns and c not in names]
    return names


def arm_moments(values: FloatArray, names: Sequence[str]) -> Moments:
    """The moments of a (users, variables) array; NaN means null."""
    n = values.shape[0]
    if n == 0:
        return Moments.empty(names)
    nonnull = (~np.isnan(values)).sum(axis=0).astype(np.int64)
    zeros = np.nan_to_num(values, nan=0.0)
    mean = zeros.mean(axis=0)
    centred = zeros - mean
    return Moments(tuple(names), n, nonnull, mean, centred.T @ centred)


def _values(frame: pl.DataFrame, names: Sequence[str]) -> FloatArray:
    if not names:
        return np.zeros((frame.height, 0))
    return frame.select(pl.col(c).cast(pl.Float64) for c in names).to_numpy().astype(np.float64)


def _first_ids(frame: pl.DataFrame) -> tuple[object, ...]:
    return tuple(frame.get_column(USER).sort().head(EXAMPLES).to_list())


def moments_from_frame(
    frame: pl.DataFrame,
    metrics: Sequence[MetricDef],
    *,
    control: str,
    treatment: str,
    design: str = "split",
    cuped: bool = False,
) -> ExperimentMoments:
    """Return the per-arm moments of the engine's frame (``frame.py``) for ``metrics``.

    The frame is checked as ``analyse`` checks it. In the paired design the
    moments cover the users in both arms; the others are counted in
    ``unpaired``, and ``analyse_moments`` refuses them as ``analyse`` does.
    """
    the_design = check_design(design)
    extract_arms(frame, metrics, control=control, treatment=treatment, design="split", cuped=cuped)
    names = variables(metrics, cuped, frame.columns)
    arm = pl.col(ARM).cast(pl.String)
    ctrl = frame.filter(arm == control).sort(USER)
    trt = frame.filter(arm == treatment).sort(USER)
    if the_design == "split":
        shared = ctrl.join(trt, on=USER, how="semi")
        return ExperimentMoments(
            control,
            treatment,
            the_design,
            (arm_moments(_values(ctrl, names), names), arm_moments(_values(trt, names), names)),
            shared_users=shared.height,
            shared_examples=_first_ids(shared),
        )
    only = (ctrl.join(trt, on=USER, how="anti"), trt.join(ctrl, on=USER, how="anti"))
    ctrl = ctrl.join(trt.select(USER), on=USER, how="semi")
    trt = trt.join(ctrl.select(USER), on=USER, how="semi")
    return paired_moments(
        control,
        treatment,
        _values(ctrl, names),
        _values(trt, names),
        names,
        unpaired=(
            Unpaired(only[0].height, _first_ids(only[0])),
            Unpaired(only[1].height, _first_ids(only[1])),
        ),
    )


def paired_moments(
    control: str,
    treatment: str,
    values_control: FloatArray,
    values_treatment: FloatArray,
    names: Sequence[str],
    *,
    unpaired: tuple[Unpaired, Unpaired] = (Unpaired(0, ()), Unpaired(0, ())),
) -> ExperimentMoments:
    """The moments of the same users' values in both arms, row by row, with the cross block."""
    k = len(names)
    joint = arm_moments(np.hstack([values_control, values_treatment]), [*names, *names])
    return ExperimentMoments(
        control,
        treatment,
        "paired",
        (_block(joint, names, 0), _block(joint, names, k)),
        cross=joint.comoment[:k, k:],
        unpaired=unpaired,
    )


def _block(joint: Moments, names: Sequence[str], at: int) -> Moments:
    k = len(names)
    part = slice(at, at + k)
    return Moments(
        tuple(names), joint.n, joint.nonnull[part], joint.mean[part], joint.comoment[part, part]
    )


# --- the comparison from moments -------------------------------------------------------------


@dataclass(frozen=True)
class _Linear:
    """A per-user linear function ``a . v`` of one arm's variables."""

    coef: FloatArray


def _ratio(m: Moments, metric: MetricDef) -> tuple[float, _Linear]:
    """The ratio R = mean x / mean y and its linearisation l = (x - R y) / D."""
    coef = np.zeros(len(m.names))
    if m.n == 0:
        return math.nan, _Linear(np.full(len(m.names), np.nan))
    mean_num = m.mean[m.index(metric.num_column)]
    mean_den = m.mean[m.index(metric.den_column)]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.float64(mean_num) / np.float64(mean_den)
        coef[m.index(metric.num_column)] += np.float64(1.0) / mean_den
        coef[m.index(metric.den_column)] -= ratio / mean_den
    return float(ratio), _Linear(coef)


def _quad(m: Moments, a: _Linear, b: _Linear) -> float:
    """``sum_i (a.v_i - mean)(b.v_i - mean)`` over the arm's users."""
    if m.n == 0:
        return 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        return float(a.coef @ m.comoment @ b.coef)


def _variance(m: Moments, a: _Linear, ddof: int) -> float:
    """The per-user sample variance of ``a . v`` (NaN when n <= ddof)."""
    if m.n <= ddof:
        return math.nan
    return _quad(m, a, a) / (m.n - ddof)


def _covariate(em: ExperimentMoments, metric: MetricDef) -> tuple[_Linear, _Linear, int, int]:
    """The linearised pre-period covariate of each arm (``cuped.linearise_covariate``)."""
    mc, mt = em.arms
    pn, pd = mc.index(metric.pre_num_column), mc.index(metric.pre_den_column)
    obs_c, obs_t = int(mc.nonnull[pd]), int(mt.nonnull[pd])
    sum_num = mc.n * mc.mean[pn] + mt.n * mt.mean[pn]
    sum_den = mc.n * mc.mean[pd] + mt.n * mt.mean[pd]
    coef = np.zeros(len(mc.names))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.float64(sum_num) / np.float64(sum_den)
        mean_den = np.float64(sum_den) / np.float64(obs_c + obs_t)
    if np.isfinite(ratio) and np.isfinite(mean_den) and mean_den > 0:
        coef[pn] += 1.0 / mean_den
        coef[pd] -= ratio / mean_den
    return _Linear(coef), _Linear(coef.copy()), mc.n - obs_c, mt.n - obs_t


def _minus(a: _Linear, theta: float, b: _Linear) -> _Linear:
    return _Linear(a.coef - theta * b.coef)


def compare_moments(
    em: ExperimentMoments,
    metric: MetricDef,
    *,
    alpha: float = 0.05,
    relative_method: RelativeMethod = "fieller",
    distribution: Distribution = "t",
    cuped: bool = False,
    ddof: int = 1,
) -> Comparison:
    """``comparison.compare`` of one metric, from the arms' moments (same numbers)."""
    mc, mt = em.arms
    paired = em.design == "paired"
    raw_c, lin_c = _ratio(mc, metric)
    raw_t, lin_t = _ratio(mt, metric)
    est_c, est_t = raw_c, raw_t
    raw_lin_c, raw_lin_t = lin_c, lin_t
    theta = miss_c = miss_t = None
    if cuped:
        cov_c, cov_t, miss_c, miss_t = _covariate(em, metric)
        sxy = sxx = 0.0
        for m, y, x in ((mc, lin_c, cov_c), (mt, lin_t, cov_t)):
            if m.n:
                sxy += _quad(m, y, x)
                sxx += _quad(m, x, x)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.float64(sxy) / np.float64(sxx)
        theta = float(ratio) if np.isfinite(ratio) and sxx > 0 else 0.0
        mean_xc = float(cov_c.coef @ mc.mean) if mc.n else 0.0
        mean_xt = float(cov_t.coef @ mt.mean) if mt.n else 0.0
        lin_c, lin_t = _minus(lin_c, theta, cov_c), _minus(lin_t, theta, cov_t)
        est_c = est_c - theta * mean_xc
        est_t = est_t - theta * mean_xt
    var_c = _variance(mc, lin_c, ddof) / mc.n if mc.n else math.nan
    var_t = _variance(mt, lin_t, ddof) / mt.n if mt.n else math.nan
    n = mc.n
    if paired:
        covariance = _cross(em, lin_c, lin_t, ddof) / n if n > 0 else math.nan
        df = n - 1.0 if n > 1 else math.nan
    else:
        covariance = 0.0
        df = float(welch_df(var_t, mt.n, var_c, mc.n))
    if paired:
        unit_variance = (
            math.nan
            if n <= ddof
            else (
                _quad(mt, lin_t, lin_t) + _quad(mc, lin_c, lin_c) - 2 * _cross_sum(em, lin_c, lin_t)
            )
            / (n - ddof)
        )
    else:
        unit_variance = _variance(mc, lin_c, ddof) + _variance(mt, lin_t, ddof)
    raw_var_diff = None
    if cuped:
        rv_c = _variance(mc, raw_lin_c, ddof) / mc.n if mc.n else math.nan
        rv_t = _variance(mt, raw_lin_t, ddof) / mt.n if mt.n else math.nan
        raw_cov = _cross(em, raw_lin_c, raw_lin_t, ddof) / n if paired and n > ddof else 0.0
        raw_var_diff = rv_t + rv_c - 2.0 * raw_cov
    return conclude(
        design=em.design,
        n=(mc.n, mt.n),
        raw=(raw_c, raw_t),
        estimate=(est_c, est_t),
        variance=(var_c, var_t),
        covariance=covariance,
        df=math.inf if distribution == "normal" else df,
        unit_variance=unit_variance,
        alpha=alpha,
        relative_method=relative_method,
        raw_var_diff=raw_var_diff,
        theta=theta,
        pre_missing=(miss_c, miss_t),
    )


def _cross_sum(em: ExperimentMoments, lin_c: _Linear, lin_t: _Linear) -> float:
    if em.cross is None or em.arms[0].n == 0:
        return 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        return float(lin_c.coef @ em.cross @ lin_t.coef)


def _cross(em: ExperimentMoments, lin_c: _Linear, lin_t: _Linear, ddof: int) -> float:
    """``sample_covariance(l^T, l^C)`` of the paired users (NaN when n <= ddof)."""
    n = em.arms[0].n
    if n <= ddof:
        return math.nan
    return _cross_sum(em, lin_c, lin_t) / (n - ddof)


# --- the analysis from moments ---------------------------------------------------------------


def _check_paired(em: ExperimentMoments) -> None:
    """Refuse unpaired users as ``frame.extract_arms`` does, with its sentence."""
    parts = [
        f"{u.count:,} only in '{name}' (e.g. {', '.join(str(i) for i in u.examples)})"
        for name, u in zip((em.control, em.treatment), em.unpaired, strict=True)
        if u.count
    ]
    if parts:
        raise ExperimentInvalidError(
            f"the paired design needs every user in both arms, but {' and '.join(parts)}; "
            "rerun the replay on the same users, or use design='split' for independent arms."
        )


class _SharedUsers(Sequence[object]):
    """The users of a split experiment seen in both arms: their number and the first ids.

    ``health.check_one_arm_per_user`` reads ``len`` and the first three; this
    gives both without holding every id.
    """

    def __init__(self, count: int, examples: tuple[object, ...]) -> None:
        self._count, self._examples = count, examples

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: Any) -> Any:
        return self._examples[index]

    def __iter__(self) -> Any:
        return iter(self._examples)


def analyse_moments_refusal(*, bootstrap: int, winsorize_at: float | None) -> None:
    """Refuse the options that need every user's values: the bootstrap, winsorisation."""
    if bootstrap:
        raise ConfigError(
            "the bootstrap needs every user's values, which moments do not keep; drop "
            "--bootstrap or collect the per-user frame (--collect users)."
        )
    if winsorize_at is not None:
        raise ConfigError(
            "winsorisation needs every user's values, which moments do not keep; drop "
            "--winsorize or collect the per-user frame (--collect users)."
        )


def analyse_moments(
    em: ExperimentMoments,
    metrics: Sequence[str | MetricDef],
    *,
    control: str = "control",
    treatment: str = "treatment",
    guardrails: Sequence[str | MetricDef] = (),
    design: str = "split",
    alpha: float = 0.05,
    relative_ci: str = "fieller",
    distribution: str = "t",
    correction: str = "holm",
    cuped: bool = False,
    split: Sequence[float] = (0.5, 0.5),
    min_users_per_arm: int = DEFAULT_MIN_USERS,
    power: float = DEFAULT_POWER,
    ddof: int = 1,
    winsorize_at: float | None = None,
    bootstrap: int = 0,
    rng: np.random.Generator | None = None,
    evidence: Mapping[str, Evidence] | None = None,
    checks: Sequence[HealthCheck] = (),
) -> ExperimentResult:
    """``analysis.analyse`` from moments: the same options, the same ``ExperimentResult``.

    Refuses ``bootstrap`` and ``winsorize_at``: both need every user's values.
    """
    del rng  # the bootstrap is refused below
    options = check_options(
        metrics,
        guardrails,
        design=design,
        relative_ci=relative_ci,
        distribution=distribution,
        correction=correction,
        alpha=alpha,
        split=split,
        min_users_per_arm=min_users_per_arm,
        power=power,
        ddof=ddof,
    )
    resolved, the_design, relative_method = options.resolved, options.design, options.relative
    the_distribution, the_correction = options.distribution, options.correction
    the_alpha, shares = options.alpha, options.split
    analyse_moments_refusal(bootstrap=bootstrap, winsorize_at=winsorize_at)
    if (em.control, em.treatment) != (control, treatment) or em.design != the_design:
        raise ConfigError(
            f"the moments are of {em.design} '{em.control}' against '{em.treatment}', not "
            f"{the_design} '{control}' against '{treatment}'; compute them for this analysis."
        )
    for definition, _ in resolved:
        wanted = [definition.num_column, definition.den_column]
        if cuped:
            wanted += [definition.pre_num_column, definition.pre_den_column]
        missing = [c for c in wanted if c not in em.names]
        if missing:
            raise ConfigError(
                f"the moments have no column '{missing[0]}', needed for metric "
                f"'{definition.name}'; compute them with this metric (and CUPED) included."
            )
    if the_design == "paired":
        _check_paired(em)
    mc, mt = em.arms
    settings = AnalysisSettings(
        control=control,
        treatment=treatment,
        design=the_design,
        alpha=the_alpha,
        relative_method=relative_method,
        distribution=the_distribution,
        correction=the_correction,
        cuped=cuped,
        ddof=ddof,
        split=shares,
        min_users_per_arm=min_users_per_arm,
        power=power,
        winsorize=None,
        bootstrap_resamples=0,
    )
    health: list[HealthCheck] = list(checks)
    if the_design == "split":
        health.append(check_sample_ratio(mc.n, mt.n, shares))
    health.append(check_min_users({control: mc.n, treatment: mt.n}, min_users_per_arm))
    if the_design == "split":
        health.append(check_one_arm_per_user(_SharedUsers(em.shared_users, em.shared_examples)))
    comparisons: list[tuple[MetricDef, Role, Comparison]] = []
    for definition, role in resolved:
        result = compare_moments(
            em,
            definition,
            alpha=the_alpha,
            relative_method=relative_method,
            distribution=the_distribution,
            cuped=cuped,
            ddof=ddof,
        )
        comparisons.append((definition, role, result))
        health.append(
            check_metric(
                definition.name,
                {control: float(result.control), treatment: float(result.treatment)},
                {
                    control: float(result.var_control) * mc.n,
                    treatment: float(result.var_treatment) * mt.n,
                },
                {
                    control: mc.sum(definition.den_column),
                    treatment: mt.sum(definition.den_column),
                },
            )
        )
    primary_p = [float(c.p_value) for _, role, c in comparisons if role == "primary"]
    adjusted = iter(adjust(primary_p, the_correction).tolist())
    results: list[MetricResult] = []
    for definition, role, comp in comparisons:
        results.append(
            metric_result(
                definition,
                role,
                comp,
                settings=settings,
                adjusted_p=next(adjusted) if role == "primary" else None,
                boot=None,
                winsor=None,
                distribution=the_distribution,
                evidence=None if evidence is None else evidence.get(definition.name),
            )
        )
    return ExperimentResult(settings, mc.n, mt.n, tuple(results), tuple(health))


# --- daily statistics from moments -----------------------------------------------------------


def daily_moments_from_frames(
    per_day: pl.DataFrame,
    days: Sequence[dt.date],
    metrics: Sequence[MetricDef],
    *,
    control: str,
    treatment: str,
    design: str = "split",
    cuped: bool = False,
    static: pl.DataFrame | None = None,
) -> tuple[tuple[dt.date, ExperimentMoments], ...]:
    """The moments of the cumulative frame through each of ``days`` (``daily.cumulative_frame``)."""
    paired = check_design(design) == "paired"
    running = running_sums(per_day)
    out = []
    for day in days:
        frame = cumulative_frame(running, day, static=static, paired=paired)
        out.append(
            (
                day,
                _day_moments(
                    frame, metrics, control=control, treatment=treatment, paired=paired, cuped=cuped
                ),
            )
        )
    return tuple(out)


def _day_moments(
    frame: pl.DataFrame,
    metrics: Sequence[MetricDef],
    *,
    control: str,
    treatment: str,
    paired: bool,
    cuped: bool,
) -> ExperimentMoments:
    names = variables(metrics, cuped, frame.columns)
    arm = pl.col(ARM).cast(pl.String)
    ctrl = frame.filter(arm == control).sort(USER)
    trt = frame.filter(arm == treatment).sort(USER)
    if paired:
        return paired_moments(control, treatment, _values(ctrl, names), _values(trt, names), names)
    return ExperimentMoments(
        control,
        treatment,
        "split",
        (arm_moments(_values(ctrl, names), names), arm_moments(_values(trt, names), names)),
    )


def daily_from_moments(
    per_day: Sequence[tuple[dt.date, ExperimentMoments]], options: Mapping[str, Any]
) -> DailyStatistics:
    """``daily.daily_statistics`` from each day's moments, with ``analyse``'s ``options``."""
    if "bootstrap" in options or "rng" in options:
        raise ConfigError("daily statistics use the analytic intervals: drop bootstrap and rng.")
    points = []
    for day, em in per_day:
        n_control, n_treatment = em.arms[0].n, em.arms[1].n
        if min(n_control, n_treatment) < MIN_USERS:
            points.append(DailyPoint(day, n_control, n_treatment, ()))
            continue
        points.append(daily_point(day, analyse_moments(em, **options)))
    return DailyStatistics(tuple(points))
