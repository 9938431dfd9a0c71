"""Judge each metric of a gate and say why, one sentence per metric.

The sentences are the reasons a :class:`~recsim_cli.experiment.gate.Decision`
reports. Primaries are judged on their adjusted p-values; guardrails on the
one-sided (1 - alpha) bounds of their relative change (``relative_interval``
with the critical value ``t_{1-alpha, df}``), recomputed here from the arm
estimates, variances and covariance a ``MetricResult`` keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from recsim_cli.experiment.effects import (
    check_relative_method,
    critical_value,
    relative_interval,
)
from recsim_cli.experiment.power import users_per_arm
from recsim_cli.experiment.results import MetricResult

if TYPE_CHECKING:  # gate.py imports this module; the types are only annotations here
    from recsim_cli.experiment.gate import Gate, GuardrailSpec, PrimarySpec


Outcome = Literal[
    "better",
    "better_model_based",
    "worse",
    "no_change",
    "within",
    "beyond",
    "unknown",
    "undefined",
]


@dataclass(frozen=True)
class MetricVerdict:
    """How one metric of the gate came out, with the sentence that says so."""

    metric: str
    role: Literal["primary", "guardrail"]
    outcome: Outcome
    reason: str
    lower: float | None = None  # guardrails: one-sided (1 - alpha) bounds of the relative change
    upper: float | None = None
    users_needed: int | None = None  # per arm, when the outcome is not settled

    def to_dict(self) -> dict[str, Any]:
        """Return the verdict as plain JSON-ready values."""
        return {
            "metric": self.metric,
            "role": self.role,
            "outcome": self.outcome,
            "reason": self.reason,
            "lower": self.lower,
            "upper": self.upper,
            "users_needed": self.users_needed,
        }


def _pct(x: float) -> str:
    return f"{100 * x:+.2f}%"


def _margin(x: float) -> str:
    return f"{100 * x:g}%"


def _effect(m: MetricResult, alpha: float) -> str:
    level = f"{100 * (1 - alpha):g}%"
    if m.relative is not None and m.relative_ci is not None:
        lo, hi = m.relative_ci
        return f"{_pct(m.relative)} ({level} CI {_pct(lo)} to {_pct(hi)})"
    lo, hi = m.ci
    return f"{m.difference:+.4g} ({level} CI {lo:+.4g} to {hi:+.4g})"


def judge_primary(m: MetricResult, spec: PrimarySpec, gate: Gate) -> MetricVerdict:
    """Say whether primary ``m`` is significantly better, worse, or neither (with advice)."""
    adjusted = m.adjusted_p_value if m.adjusted_p_value is not None else m.p_value
    label = "unadjusted" if gate.correction == "none" else f"{gate.correction}-adjusted"
    pvalue = f"{label} p = {adjusted:.2g}"
    improved = m.difference > 0 if spec.better == "higher" else m.difference < 0
    if adjusted <= gate.alpha:
        outcome: Literal["better", "worse"] = "better" if improved else "worse"
        reason = (
            f"{m.metric} is significantly {outcome}: {_effect(m, gate.alpha)}, "
            f"{pvalue} <= {gate.alpha:g}"
        )
        if outcome == "better" and m.evidence == "model-based":
            return MetricVerdict(
                m.metric,
                "primary",
                "better_model_based",
                f"{reason}, but its evidence is model-based, which cannot ship: make it a "
                "guardrail, or gate on an off-policy or online metric.",
            )
        return MetricVerdict(m.metric, "primary", outcome, reason + ".")
    # Plan at alpha / m, the level Holm's first step (and Bonferroni) needs.
    plan_alpha = gate.alpha / max(1, len(gate.primary))
    target = spec.mde
    if target is None and m.relative is not None and m.relative != 0:
        target = abs(m.relative)
    needed = None
    if target is not None:
        needed = users_per_arm(
            target * abs(m.control.estimate), m.unit_variance, plan_alpha, gate.power
        )
    users = min(m.control.users, m.treatment.users)
    reason = (
        f"{m.metric} shows no significant change: {_effect(m, gate.alpha)}, {pvalue} > "
        f"{gate.alpha:g}; with {users:,} users per arm the minimum detectable effect is "
    )
    reason += (
        f"{100 * m.mde_relative:.2f}%" if m.mde_relative is not None else f"{m.mde:.4g}"
    ) + f" (at {100 * gate.power:g}% power)"
    if needed is not None and target is not None:
        reason += (
            f", and detecting a {100 * target:.2f}% change needs about {needed:,} users per arm"
        )
    return MetricVerdict(m.metric, "primary", "no_change", reason + ".", users_needed=needed)


def judge_guardrail(m: MetricResult, spec: GuardrailSpec, gate: Gate) -> MetricVerdict:
    """Say whether guardrail ``m`` is within, beyond, or not yet known against its margin."""
    q1 = critical_value(gate.alpha, m.df, sided=1)
    rel = relative_interval(
        m.treatment.estimate,
        m.control.estimate,
        var_treatment=m.var_treatment,
        var_control=m.var_control,
        covariance=m.covariance,
        critical=q1,
        method=check_relative_method(gate.relative_ci),
    )
    margin = _margin(spec.margin)
    level = f"{100 * (1 - gate.alpha):g}%"
    if not bool(rel.defined):
        control_known = m.control.estimate**2 > float(q1) ** 2 * m.var_control
        why = (
            "the log-ratio needs positive values in both arms"
            if control_known
            else "the control mean is not distinguishable from 0"
        )
        return MetricVerdict(
            m.metric,
            "guardrail",
            "undefined",
            f"{m.metric}: its relative change is undefined because {why}, so its {margin} "
            "margin cannot be checked.",
        )
    lower, upper = float(rel.low), float(rel.high)
    if spec.better == "higher":
        bad_bound, good_bound, limit = lower, upper, -spec.margin
        within, beyond = bad_bound > limit, good_bound < limit
        side_bad, side_good, cmp_ok, cmp_bad = "lower", "upper", "above", "below"
    else:
        bad_bound, good_bound, limit = upper, lower, spec.margin
        within, beyond = bad_bound < limit, good_bound > limit
        side_bad, side_good, cmp_ok, cmp_bad = "upper", "lower", "below", "above"
    if beyond:
        reason = (
            f"{m.metric} moved beyond its {margin} margin: the one-sided {level} {side_good} "
            f"bound of its change is {_pct(good_bound)}, {cmp_bad} {_pct(limit)}."
        )
        return MetricVerdict(m.metric, "guardrail", "beyond", reason, lower, upper)
    if within:
        reason = (
            f"{m.metric} stays within its {margin} margin: the one-sided {level} {side_bad} "
            f"bound of its change is {_pct(bad_bound)}, {cmp_ok} {_pct(limit)}."
        )
        return MetricVerdict(m.metric, "guardrail", "within", reason, lower, upper)
    needed = users_per_arm(
        spec.margin * abs(m.control.estimate), m.unit_variance, gate.alpha, gate.power, sided=1
    )
    reason = (
        f"{m.metric} is not shown to stay within its {margin} margin: its change is "
        f"{_pct(float(rel.estimate))} with one-sided {level} bounds {_pct(lower)} and "
        f"{_pct(upper)}"
    )
    if needed is not None:
        reason += f"; about {needed:,} users per arm would show it if the true change is 0"
    return MetricVerdict(m.metric, "guardrail", "unknown", reason + ".", lower, upper, needed)
