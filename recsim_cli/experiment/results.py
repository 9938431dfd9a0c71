"""The named results of an analysis: frozen dataclasses, each with ``to_dict()``.

Floats that are undefined (NaN, e.g. the p-value of an arm without variance)
become ``None`` in ``to_dict()`` so the output is valid JSON.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from recsim_cli.errors import UnknownNameError
from recsim_cli.experiment.bootstrap import BootstrapResult
from recsim_cli.experiment.health import HealthCheck
from recsim_cli.experiment.metrics import Direction, Evidence

FORMAT_VERSION = 1
Role = Literal["primary", "guardrail"]


def clean(value: float | None) -> float | None:
    """Return ``value``, or None when it is missing, NaN or infinite."""
    if value is None or not math.isfinite(value):
        return None
    return value


def _pair(values: tuple[float, float] | None) -> list[float | None] | None:
    return None if values is None else [clean(values[0]), clean(values[1])]


@dataclass(frozen=True)
class ArmSummary:
    """One arm of one metric: users, the plain ratio, and the estimate compared."""

    arm: str
    users: int
    value: float  # sum(num) / sum(den) over the arm's users
    estimate: float  # the value compared: CUPED-adjusted when CUPED is on, else ``value``
    se: float  # standard error of ``estimate``

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as plain JSON-ready values."""
        return {
            "arm": self.arm,
            "users": self.users,
            "value": clean(self.value),
            "estimate": clean(self.estimate),
            "se": clean(self.se),
        }


@dataclass(frozen=True)
class CupedSummary:
    """What CUPED did to one metric."""

    theta: float
    variance_reduction: float  # 1 - Var_adjusted(Delta) / Var(Delta)
    pre_missing_control: int  # users without pre-period data, set to the pooled mean
    pre_missing_treatment: int

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as plain JSON-ready values."""
        return {
            "theta": clean(self.theta),
            "variance_reduction": clean(self.variance_reduction),
            "pre_missing_control": self.pre_missing_control,
            "pre_missing_treatment": self.pre_missing_treatment,
        }


@dataclass(frozen=True)
class WinsorSummary:
    """The thresholds of a winsorisation and how many users each arm had capped."""

    level: float
    num_threshold: float
    den_threshold: float
    capped_control: int
    capped_treatment: int

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as plain JSON-ready values."""
        return {
            "level": self.level,
            "num_threshold": clean(self.num_threshold),
            "den_threshold": clean(self.den_threshold),
            "capped_control": self.capped_control,
            "capped_treatment": self.capped_treatment,
        }


@dataclass(frozen=True)
class MetricResult:
    """Treatment against control on one metric: effect, CIs, p-values, MDE."""

    metric: str
    label: str
    role: Role
    better: Direction
    control: ArmSummary
    treatment: ArmSummary
    difference: float  # treatment - control (absolute)
    se: float
    ci: tuple[float, float]  # (1 - alpha) two-sided, same variance and q as the p-value
    df: float  # degrees of freedom of the t reference (inf for the normal)
    critical_value: float  # q = t_{1 - alpha/2, df}
    p_value: float
    adjusted_p_value: float | None  # primaries: after the correction; guardrails: None
    relative: float | None  # treatment / control - 1; None when undefined
    relative_ci: tuple[float, float] | None
    relative_note: str | None  # why the relative lift is undefined
    covariance: float  # Cov(treatment, control) estimates; 0 for independent arms
    unit_variance: float  # n Var(difference) with n users per arm (sample-size planning)
    mde: float  # absolute minimum detectable effect at the achieved size
    mde_relative: float | None
    power: float
    test: str  # "welch-t", "paired-t" or "z"
    relative_method: str
    cuped: CupedSummary | None = None
    bootstrap: BootstrapResult | None = None
    winsorized: WinsorSummary | None = None
    evidence: Evidence | None = None  # what the numbers rest on; None when the caller did not say

    @property
    def var_control(self) -> float:
        """Variance of the control arm's estimate."""
        return self.control.se**2

    @property
    def var_treatment(self) -> float:
        """Variance of the treatment arm's estimate."""
        return self.treatment.se**2

    def to_dict(self) -> dict[str, Any]:
        """Return the result as plain JSON-ready values."""
        return {
            "metric": self.metric,
            "label": self.label,
            "role": self.role,
            "better": self.better,
            "control": self.control.to_dict(),
            "treatment": self.treatment.to_dict(),
            "difference": clean(self.difference),
            "se": clean(self.se),
            "ci": _pair(self.ci),
            "df": clean(self.df),
            "critical_value": clean(self.critical_value),
            "p_value": clean(self.p_value),
            "adjusted_p_value": clean(self.adjusted_p_value),
            "relative": clean(self.relative),
            "relative_ci": _pair(self.relative_ci),
            "relative_note": self.relative_note,
            "covariance": clean(self.covariance),
            "unit_variance": clean(self.unit_variance),
            "mde": clean(self.mde),
            "mde_relative": clean(self.mde_relative),
            "power": self.power,
            "test": self.test,
            "relative_method": self.relative_method,
            "cuped": None if self.cuped is None else self.cuped.to_dict(),
            "bootstrap": None if self.bootstrap is None else self.bootstrap.to_dict(),
            "winsorized": None if self.winsorized is None else self.winsorized.to_dict(),
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class AnalysisSettings:
    """The options an analysis ran with, recorded in its result."""

    control: str
    treatment: str
    design: str
    alpha: float
    relative_method: str
    distribution: str
    correction: str
    cuped: bool
    ddof: int
    split: tuple[float, float]
    min_users_per_arm: int
    power: float
    winsorize: float | None
    bootstrap_resamples: int

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as plain JSON-ready values."""
        return {
            "control": self.control,
            "treatment": self.treatment,
            "design": self.design,
            "alpha": self.alpha,
            "relative_method": self.relative_method,
            "distribution": self.distribution,
            "correction": self.correction,
            "cuped": self.cuped,
            "ddof": self.ddof,
            "split": list(self.split),
            "min_users_per_arm": self.min_users_per_arm,
            "power": self.power,
            "winsorize": self.winsorize,
            "bootstrap_resamples": self.bootstrap_resamples,
        }


@dataclass(frozen=True)
class ExperimentResult:
    """An analysed experiment: one result per metric plus the health checks."""

    settings: AnalysisSettings
    n_control: int
    n_treatment: int
    metrics: tuple[MetricResult, ...]
    health: tuple[HealthCheck, ...]

    @property
    def healthy(self) -> bool:
        """True when every health check passed."""
        return all(check.passed for check in self.health)

    @property
    def failed_checks(self) -> tuple[HealthCheck, ...]:
        """The health checks that failed, in order."""
        return tuple(check for check in self.health if not check.passed)

    def metric(self, name: str) -> MetricResult:
        """Return the result of metric ``name`` (``UnknownNameError`` if not analysed)."""
        for result in self.metrics:
            if result.metric == name:
                return result
        raise UnknownNameError("metric", name, [m.metric for m in self.metrics])

    def by_role(self, role: Role) -> Sequence[MetricResult]:
        """Return the results of the primary or the guardrail metrics, in order."""
        return [m for m in self.metrics if m.role == role]

    def to_dict(self) -> dict[str, Any]:
        """Return the result as plain JSON-ready values."""
        return {
            "format_version": FORMAT_VERSION,
            "settings": self.settings.to_dict(),
            "n_control": self.n_control,
            "n_treatment": self.n_treatment,
            "healthy": self.healthy,
            "health": [check.to_dict() for check in self.health],
            "metrics": [m.to_dict() for m in self.metrics],
        }
