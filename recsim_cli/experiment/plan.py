"""Size a new experiment from a logged one: ``recsim abtest --plan``.

:func:`plan_logged_abtest` reads the two arms as ``run_logged_abtest`` does,
takes each metric's per-user variances from them, and returns the users each
arm needs to detect a given relative change (formula in its docstring and
``docs/cli.md``). Guardrails of a gate are sized as the gate judges them:
one-sided non-inferiority at their margin.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recsim_cli import __version__
from recsim_cli.errors import ConfigError
from recsim_cli.experiment.abtest import FORMAT_VERSION, Fingerprint, prepare_experiment
from recsim_cli.experiment.analysis import analyse, validate_split
from recsim_cli.experiment.gate import Gate
from recsim_cli.experiment.logged import DEFAULT_PRE_DAYS, LoggedCounts
from recsim_cli.experiment.power import DEFAULT_POWER, users_per_arm
from recsim_cli.experiment.results import MetricResult, clean
from recsim_cli.progress import Progress, no_progress


@dataclass(frozen=True)
class MetricPlan:
    """Users needed to detect a relative change of one metric, from its observed variance."""

    metric: str
    role: str
    baseline: float  # the control arm's value (CUPED-adjusted with CUPED)
    sd_control: float  # per-user standard deviation of the (linearised) metric
    sd_treatment: float
    relative_mde: float
    absolute_mde: float
    alpha: float  # the level planned at (alpha / primaries for primaries under a correction)
    sided: int  # 2, or 1 for a gate's guardrail (non-inferiority at its margin)
    users_control: int | None  # needed; None when the variance or baseline is unknown
    users_treatment: int | None
    current_relative_mde: float | None  # detectable now, with the users of the data

    def to_dict(self) -> dict[str, Any]:
        """Return the plan as JSON-ready values."""
        return {
            "metric": self.metric,
            "role": self.role,
            "baseline": clean(self.baseline),
            "sd_control": clean(self.sd_control),
            "sd_treatment": clean(self.sd_treatment),
            "relative_mde": self.relative_mde,
            "absolute_mde": clean(self.absolute_mde),
            "alpha": self.alpha,
            "sided": self.sided,
            "users_needed": {"control": self.users_control, "treatment": self.users_treatment},
            "current_relative_mde": clean(self.current_relative_mde),
        }


@dataclass(frozen=True)
class AbTestPlan:
    """The users per arm a new experiment needs, sized from a logged one."""

    fingerprint: Fingerprint
    logged: LoggedCounts
    power: float
    split: tuple[float, float]
    metrics: tuple[MetricPlan, ...]
    warnings: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """Return the plan as JSON-ready values."""
        return {
            "format_version": FORMAT_VERSION,
            "kind": "recsim abtest plan",
            "recsim_version": __version__,
            "input": self.fingerprint.to_dict(),
            "experiment": self.logged.to_dict(),
            "power": self.power,
            "split": list(self.split),
            "metrics": [m.to_dict() for m in self.metrics],
            "warnings": list(self.warnings),
        }


def plan_logged_abtest(
    data: Path | str,
    *,
    control: str,
    treatment: str,
    mde: float | None = None,
    arm_column: str = "policy",
    metrics: Sequence[str] | None = None,
    guardrails: Sequence[str] | None = None,
    alpha: float | None = None,
    cuped: bool = False,
    pre_days: int = DEFAULT_PRE_DAYS,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    split: Sequence[float] | None = None,
    correction: str | None = None,
    gate: Gate | Path | str | None = None,
    progress: Progress = no_progress,
) -> AbTestPlan:
    """Return the users per arm needed to detect a relative change ``mde`` of each metric.

    Per-user variances come from the logged arms (CUPED-adjusted with
    ``cuped``); power is the gate's, else 0.8. For shares ``s_C, s_T`` the users in all are
    ``N = (z_{1-a/2} + z_power)^2 (sd_C^2 / s_C + sd_T^2 / s_T) / (mde |C|)^2``,
    ``N s`` per arm; primaries are planned at ``a = alpha / (number of
    primaries)`` under a correction, other metrics at ``alpha``. With a gate,
    primaries use ``mde`` or else the gate's per-primary ``mde``, and each
    guardrail is sized as the gate judges it: one-sided, at its margin.
    """
    prepared = prepare_experiment(
        data,
        control=control,
        treatment=treatment,
        arm_column=arm_column,
        metrics=metrics,
        guardrails=guardrails,
        alpha=alpha,
        design="split",
        cuped=cuped,
        pre_days=pre_days,
        start=start,
        end=end,
        split=split,
        correction=correction,
        relative_ci=None,
        gate=gate,
        both_arms=None,
        progress=progress,
    )
    targets = _targets(mde, prepared.gate, prepared.options)
    options = {"power": DEFAULT_POWER, **prepared.options}
    the_power = float(options["power"])
    result = analyse(
        prepared.logged.frame, control=control, treatment=treatment, cuped=cuped, **options
    )
    progress("abtest", 3, 3)
    n_primary = len(options["metrics"])
    primary_alpha = options["alpha"] / (n_primary if options["correction"] != "none" else 1)
    shares: tuple[float, float] = tuple(validate_split(options["split"]))  # type: ignore[assignment]
    plans = tuple(
        _plan_metric(
            m,
            targets[m.metric],
            primary_alpha if m.role == "primary" else options["alpha"],
            the_power,
            shares,
        )
        for m in result.metrics
    )
    return AbTestPlan(
        prepared.fingerprint, prepared.logged.counts, the_power, shares, plans, prepared.warnings
    )


def _targets(
    mde: float | None, gate: Gate | None, options: dict[str, Any]
) -> dict[str, tuple[float, int]]:
    """Return each metric's relative change to detect and whether the test is 1- or 2-sided."""
    if mde is not None and (
        isinstance(mde, bool) or not isinstance(mde, int | float) or not 0 < mde < 10
    ):
        raise ConfigError(f"--mde must be a positive relative change (0.02 is 2%); got {mde}.")
    targets: dict[str, tuple[float, int]] = {}
    if gate is not None:
        # A gate's guardrail is a one-sided non-inferiority test at its margin.
        targets = {g.metric: (g.margin, 1) for g in gate.guardrail}
        wanted = {p.metric: p.mde for p in gate.primary}
    else:
        wanted = dict.fromkeys([*options["metrics"], *options["guardrails"]])
    missing = []
    for name, own in wanted.items():
        value = mde if mde is not None else own
        if value is None:
            missing.append(name)
        else:
            targets[name] = (float(value), 2)
    if missing:
        raise ConfigError(
            f"--plan needs the relative change to detect: give --mde (e.g. 0.02 for 2%); "
            f"none is set for {', '.join(missing)}."
        )
    return targets


def _plan_metric(
    m: MetricResult,
    target: tuple[float, int],
    alpha: float,
    power: float,
    shares: tuple[float, float],
) -> MetricPlan:
    mde, sided = target
    var_c = m.control.se**2 * m.control.users
    var_t = m.treatment.se**2 * m.treatment.users
    baseline = m.control.estimate
    effect = mde * abs(baseline)
    total = None
    if math.isfinite(var_c) and math.isfinite(var_t) and effect > 0:
        unit_variance = var_c / shares[0] + var_t / shares[1]
        total = users_per_arm(effect, unit_variance, alpha, power, sided=sided)
    return MetricPlan(
        metric=m.metric,
        role=m.role,
        baseline=baseline,
        sd_control=float(np.sqrt(var_c)),
        sd_treatment=float(np.sqrt(var_t)),
        relative_mde=mde,
        absolute_mde=effect,
        alpha=alpha,
        sided=sided,
        users_control=None if total is None else math.ceil(total * shares[0]),
        users_treatment=None if total is None else math.ceil(total * shares[1]),
        current_relative_mde=m.mde_relative,
    )
