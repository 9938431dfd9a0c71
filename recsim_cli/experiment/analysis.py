"""Analyse an experiment: the one entry point from a frame to an ExperimentResult.

:func:`analyse` checks the sufficient-statistics frame (``frame.py``), runs
the health checks (``health.py``), compares each metric with the vectorised
core (``comparison.py``), adjusts the primaries' p-values (``multiple.py``),
and adds MDEs (``power.py``) and, when asked, winsorisation (``winsor.py``)
and a Poisson-bootstrap cross-check (``bootstrap.py``). It prints nothing,
reads no file, and raises only errors from ``recsim_cli.errors``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from recsim_cli.errors import ConfigError
from recsim_cli.experiment.bootstrap import BootstrapResult, arm_columns, poisson_bootstrap
from recsim_cli.experiment.comparison import Comparison, Design, Sample, check_design, compare
from recsim_cli.experiment.cuped import linearise_covariate
from recsim_cli.experiment.effects import (
    Distribution,
    RelativeMethod,
    check_distribution,
    check_relative_method,
)
from recsim_cli.experiment.frame import extract_arms
from recsim_cli.experiment.health import (
    DEFAULT_MIN_USERS,
    HealthCheck,
    check_metric,
    check_min_users,
    check_one_arm_per_user,
    check_sample_ratio,
)
from recsim_cli.experiment.metrics import Evidence, MetricDef, resolve_metric
from recsim_cli.experiment.multiple import Correction, adjust, check_correction
from recsim_cli.experiment.power import DEFAULT_POWER, minimum_detectable_effect
from recsim_cli.experiment.results import (
    AnalysisSettings,
    ArmSummary,
    CupedSummary,
    ExperimentResult,
    MetricResult,
    Role,
    WinsorSummary,
)
from recsim_cli.experiment.winsor import check_level, winsorize


def validate_alpha(alpha: float, name: str = "alpha") -> float:
    """Return ``alpha`` if it is a usable two-sided level in (0, 0.5)."""
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 0.5:
        raise ConfigError(f"{name} must be a number in (0, 0.5), e.g. 0.05; got {alpha!r}.")
    return float(alpha)


def validate_split(split: Sequence[float], name: str = "split") -> tuple[float, float]:
    """Return the intended (control, treatment) traffic shares, normalised to sum to 1."""
    values = list(split)
    if len(values) != 2 or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0
        for v in values
    ):
        raise ConfigError(
            f"{name} must be two positive numbers (control, treatment), e.g. [0.5, 0.5]; "
            f"got {split!r}."
        )
    total = float(sum(values))
    return (values[0] / total, values[1] / total)


def resolve_metrics(
    metrics: Sequence[str | MetricDef], guardrails: Sequence[str | MetricDef]
) -> list[tuple[MetricDef, Role]]:
    """Resolve primary metrics and guardrails to definitions with their role; refuse repeats."""
    if isinstance(metrics, str) or isinstance(guardrails, str):
        raise ConfigError("give metrics and guardrails as lists of names, e.g. ['ctr'].")
    resolved: list[tuple[MetricDef, Role]] = [(resolve_metric(m), "primary") for m in metrics]
    resolved += [(resolve_metric(m), "guardrail") for m in guardrails]
    if not any(role == "primary" for _, role in resolved):
        raise ConfigError("analyse needs at least one primary metric.")
    seen: set[str] = set()
    for definition, _ in resolved:
        if definition.name in seen:
            raise ConfigError(
                f"metric '{definition.name}' is listed twice; a metric is either a primary "
                "or a guardrail, once."
            )
        seen.add(definition.name)
    return resolved


@dataclass(frozen=True)
class CheckedOptions:
    """The options of an analysis, checked and resolved (`check_options`)."""

    resolved: list[tuple[MetricDef, Role]]
    design: Design
    relative: RelativeMethod
    distribution: Distribution
    correction: Correction
    alpha: float
    split: tuple[float, float]


def check_options(
    metrics: Sequence[str | MetricDef],
    guardrails: Sequence[str | MetricDef],
    *,
    design: str,
    relative_ci: str,
    distribution: str,
    correction: str,
    alpha: float,
    split: Sequence[float],
    min_users_per_arm: int,
    power: float,
    ddof: int,
) -> CheckedOptions:
    """Check the options `analyse` and ``moments.analyse_moments`` share; one sentence each."""
    resolved = resolve_metrics(metrics, guardrails)
    checked = CheckedOptions(
        resolved=resolved,
        design=check_design(design),
        relative=check_relative_method(relative_ci),
        distribution=check_distribution(distribution),
        correction=check_correction(correction),
        alpha=validate_alpha(alpha),
        split=validate_split(split),
    )
    if isinstance(min_users_per_arm, bool) or not isinstance(min_users_per_arm, int):
        raise ConfigError(f"min_users_per_arm must be an integer; got {min_users_per_arm!r}.")
    if min_users_per_arm < 2:
        raise ConfigError(f"min_users_per_arm must be at least 2; got {min_users_per_arm}.")
    if not 0 < power < 1:
        raise ConfigError(f"power must be in (0, 1), e.g. 0.8; got {power!r}.")
    if ddof not in (0, 1):
        raise ConfigError(f"ddof must be 0 or 1; got {ddof!r}.")
    return checked


def analyse(
    frame: pl.DataFrame,
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
    """Compare ``treatment`` with ``control`` on every metric of a sufficient-statistics frame.

    ``metrics`` are the primary metrics (their p-values adjusted together by
    ``correction``); ``guardrails`` are analysed alike but not adjusted. See
    ``docs/statistics.md`` for every formula. ``bootstrap > 0`` adds a
    Poisson-bootstrap cross-check drawn from ``rng``; ``winsorize_at`` (e.g.
    0.999) caps extreme users first. ``evidence`` records, per metric name,
    what its numbers rest on (the gate will not ship on model-based evidence);
    ``checks`` are the caller's own health checks (e.g. off-policy weight
    diagnostics), kept with the engine's.
    """
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
    if winsorize_at is not None:
        check_level(winsorize_at)
    if bootstrap < 0 or (0 < bootstrap < 2):
        raise ConfigError(f"bootstrap must be 0 (off) or at least 2 resamples; got {bootstrap}.")
    if bootstrap and rng is None:
        raise ConfigError(
            "the bootstrap needs a seeded generator: pass rng=np.random.default_rng(seed)."
        )
    data = extract_arms(
        frame,
        [m for m, _ in resolved],
        control=control,
        treatment=treatment,
        design=the_design,
        cuped=cuped,
    )
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
        winsorize=winsorize_at,
        bootstrap_resamples=bootstrap,
    )
    health: list[HealthCheck] = list(checks)
    if the_design == "split":
        health.append(check_sample_ratio(data.n_control, data.n_treatment, shares))
    health.append(
        check_min_users({control: data.n_control, treatment: data.n_treatment}, min_users_per_arm)
    )
    if the_design == "split":
        health.append(check_one_arm_per_user(data.shared_users))

    comparisons: list[tuple[MetricDef, Role, Comparison, WinsorSummary | None]] = []
    boots: list[BootstrapResult | None] = []
    for definition, role in resolved:
        sample_c, sample_t = data.samples[definition.name]
        winsor = None
        if winsorize_at is not None:
            sample_c, sample_t, winsor = _winsorize(sample_c, sample_t, winsorize_at)
        result = compare(
            sample_c,
            sample_t,
            design=the_design,
            alpha=the_alpha,
            relative_method=relative_method,
            distribution=the_distribution,
            cuped=cuped,
            ddof=ddof,
        )
        comparisons.append((definition, role, result, winsor))
        health.append(
            check_metric(
                definition.name,
                {control: float(result.control), treatment: float(result.treatment)},
                {
                    control: float(result.var_control) * data.n_control,
                    treatment: float(result.var_treatment) * data.n_treatment,
                },
                {control: float(sample_c.den.sum()), treatment: float(sample_t.den.sum())},
            )
        )
        boot = None
        if bootstrap and rng is not None and data.n_control and data.n_treatment:
            boot = _bootstrap(
                sample_c,
                sample_t,
                result=result,
                resamples=bootstrap,
                rng=rng,
                alpha=the_alpha,
                cuped=cuped,
            )
        boots.append(boot)

    primary_p = [float(c.p_value) for _, role, c, _ in comparisons if role == "primary"]
    adjusted = iter(adjust(primary_p, the_correction).tolist())
    results = []
    for (definition, role, comp, winsor), boot in zip(comparisons, boots, strict=True):
        adj = next(adjusted) if role == "primary" else None
        results.append(
            metric_result(
                definition,
                role,
                comp,
                settings=settings,
                adjusted_p=adj,
                boot=boot,
                winsor=winsor,
                distribution=the_distribution,
                evidence=None if evidence is None else evidence.get(definition.name),
            )
        )
    return ExperimentResult(
        settings, data.n_control, data.n_treatment, tuple(results), tuple(health)
    )


def _winsorize(
    control: Sample, treatment: Sample, level: float
) -> tuple[Sample, Sample, WinsorSummary]:
    capped = winsorize(control.num, control.den, treatment.num, treatment.den, level)
    pre_c: tuple[np.ndarray | None, np.ndarray | None] = (control.pre_num, control.pre_den)
    pre_t: tuple[np.ndarray | None, np.ndarray | None] = (treatment.pre_num, treatment.pre_den)
    if (
        control.pre_num is not None
        and control.pre_den is not None
        and treatment.pre_num is not None
        and treatment.pre_den is not None
    ):
        pre = winsorize(
            control.pre_num, control.pre_den, treatment.pre_num, treatment.pre_den, level
        )
        pre_c = (pre.num_control, pre.den_control)
        pre_t = (pre.num_treatment, pre.den_treatment)
    summary = WinsorSummary(
        level,
        capped.num_threshold,
        capped.den_threshold,
        capped.capped_control,
        capped.capped_treatment,
    )
    return (
        Sample(capped.num_control, capped.den_control, *pre_c),
        Sample(capped.num_treatment, capped.den_treatment, *pre_t),
        summary,
    )


def _bootstrap(
    control: Sample,
    treatment: Sample,
    *,
    result: Comparison,
    resamples: int,
    rng: np.random.Generator,
    alpha: float,
    cuped: bool,
) -> BootstrapResult:
    cov_c = cov_t = None
    theta = 0.0
    if (
        cuped
        and result.theta is not None
        and control.pre_num is not None
        and control.pre_den is not None
        and treatment.pre_num is not None
        and treatment.pre_den is not None
    ):
        cov = linearise_covariate(
            control.pre_num, control.pre_den, treatment.pre_num, treatment.pre_den
        )
        cov_c, cov_t, theta = cov.control, cov.treatment, float(result.theta)
    return poisson_bootstrap(
        arm_columns(control.num, control.den, cov_c),
        arm_columns(treatment.num, treatment.den, cov_t),
        resamples=resamples,
        rng=rng,
        alpha=alpha,
        paired=result.design == "paired",
        theta=theta,
    )


def _test_name(design: str, distribution: str) -> str:
    if distribution == "normal":
        return "z"
    return "paired-t" if design == "paired" else "welch-t"


def metric_result(
    definition: MetricDef,
    role: Role,
    comp: Comparison,
    *,
    settings: AnalysisSettings,
    adjusted_p: float | None,
    boot: BootstrapResult | None,
    winsor: WinsorSummary | None,
    distribution: str,
    evidence: Evidence | None = None,
) -> MetricResult:
    """Build one metric's result from its comparison (per-user values or moments alike)."""
    control_estimate = float(comp.control)
    mde = float(minimum_detectable_effect(comp.se, settings.alpha, settings.power))
    defined = bool(comp.relative_defined)
    note = None
    if not defined:
        note = (
            f"the control mean of {definition.name} is not distinguishable from 0 at "
            f"alpha = {settings.alpha:g}, so a relative change is undefined"
        )
        if settings.relative_method == "log" and control_estimate**2 > float(
            comp.critical
        ) ** 2 * float(comp.var_control):
            note = "the log-ratio interval needs positive values in both arms"
    cuped = None
    if (
        comp.theta is not None
        and comp.variance_reduction is not None
        and comp.pre_missing_control is not None
        and comp.pre_missing_treatment is not None
    ):
        cuped = CupedSummary(
            float(comp.theta),
            float(comp.variance_reduction),
            int(comp.pre_missing_control),
            int(comp.pre_missing_treatment),
        )
    mde_relative = (
        mde / abs(control_estimate)
        if control_estimate != 0 and math.isfinite(control_estimate)
        else None
    )
    return MetricResult(
        metric=definition.name,
        label=definition.label,
        role=role,
        better=definition.better,
        control=ArmSummary(
            settings.control,
            comp.n_control,
            float(comp.control_raw),
            control_estimate,
            math.sqrt(float(comp.var_control)) if comp.var_control >= 0 else math.nan,
        ),
        treatment=ArmSummary(
            settings.treatment,
            comp.n_treatment,
            float(comp.treatment_raw),
            float(comp.treatment),
            math.sqrt(float(comp.var_treatment)) if comp.var_treatment >= 0 else math.nan,
        ),
        difference=float(comp.difference),
        se=float(comp.se),
        ci=(float(comp.ci_low), float(comp.ci_high)),
        df=float(comp.df),
        critical_value=float(comp.critical),
        p_value=float(comp.p_value),
        adjusted_p_value=adjusted_p,
        relative=float(comp.relative) if defined else None,
        relative_ci=(float(comp.relative_low), float(comp.relative_high)) if defined else None,
        relative_note=note,
        covariance=float(comp.covariance),
        unit_variance=float(comp.unit_variance),
        mde=mde,
        mde_relative=mde_relative,
        power=settings.power,
        test=_test_name(settings.design, distribution),
        relative_method=settings.relative_method,
        cuped=cuped,
        bootstrap=boot,
        winsorized=winsor,
        evidence=evidence,
    )
