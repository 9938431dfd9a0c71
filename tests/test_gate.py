"""The gate: TOML validation with exact messages, round trip, and every verdict."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import numpy as np
import pytest

from recsim_cli.errors import ConfigError, ExitCode, InputFileError
from recsim_cli.experiment import METRICS, analyse
from recsim_cli.experiment.effects import difference_test, relative_interval
from recsim_cli.experiment.gate import (
    Gate,
    GuardrailSpec,
    PrimarySpec,
    check_alpha,
    decide,
    load_gate,
    parse_gate,
)
from recsim_cli.experiment.health import HealthCheck
from recsim_cli.experiment.results import (
    AnalysisSettings,
    ArmSummary,
    ExperimentResult,
    MetricResult,
)
from recsim_cli.experiment.synthetic import experiment_frame

ALL_METRICS = ", ".join(METRICS)
EXAMPLE = """\
alpha = 0.05                 # the gate's alpha wins
split = [0.5, 0.5]           # intended traffic split, for the SRM check
min_users_per_arm = 50

[[primary]]
metric = "watch_time"
better = "higher"

[[guardrail]]
metric = "ctr"
better = "higher"
margin = 0.01                # relative: may not drop by more than 1%
"""

GATE = Gate(
    primary=(PrimarySpec("watch_time", "higher"),),
    guardrail=(GuardrailSpec("ctr", "higher", 0.01),),
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gate.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --- loading and validation ---------------------------------------------------------------


def test_the_documented_example_loads(tmp_path: Path) -> None:
    gate = load_gate(write(tmp_path, EXAMPLE))
    assert gate == GATE
    assert gate.source == str(tmp_path / "gate.toml")
    assert gate.primary_metrics == ("watch_time",) and gate.guardrail_metrics == ("ctr",)
    assert gate.analysis_options()["alpha"] == 0.05


def test_round_trip_through_toml_and_dict() -> None:
    gate = Gate(
        primary=(
            PrimarySpec("watch_time", "higher", mde=0.02),
            PrimarySpec("session_depth", "lower"),
        ),
        guardrail=(GuardrailSpec("ctr", "higher", 0.015),),
        alpha=0.01,
        split=(0.9, 0.1),
        min_users_per_arm=200,
        power=0.9,
        correction="bh",
        relative_ci="log",
    )
    text = gate.to_toml()
    assert parse_gate(tomllib.loads(text)) == gate
    assert parse_gate(gate.to_dict()) == gate
    assert tomllib.loads(text) == gate.to_dict()
    assert parse_gate(tomllib.loads(GATE.to_toml())) == GATE


def test_better_defaults_to_the_metrics_registered_direction() -> None:
    gate = parse_gate({"primary": [{"metric": "watch_time"}]})
    assert gate.primary[0].better == "higher"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            EXAMPLE.replace("margin = 0.01", "marjin = 0.01"),
            "[[guardrail]] #1 has unknown key 'marjin'; valid keys: better, margin, metric.",
        ),
        (
            EXAMPLE.replace("alpha = 0.05", "alfa = 0.05"),
            "unknown key 'alfa'; valid keys: alpha, correction, guardrail, "
            "min_effective_sample_size, min_users_per_arm, power, primary, relative_ci, split.",
        ),
        (
            EXAMPLE.replace('metric = "watch_time"', 'metric = "watchtime"'),
            f"[[primary]] #1 has unknown metric 'watchtime'. Available: {ALL_METRICS}.",
        ),
        (
            EXAMPLE.replace("alpha = 0.05", "alpha = 1.5"),
            "alpha must be a number in (0, 0.5), e.g. 0.05; got 1.5.",
        ),
        (
            EXAMPLE.replace("alpha = 0.05", 'alpha = "0.05"'),
            "alpha must be a number in (0, 0.5), e.g. 0.05; got '0.05'.",
        ),
        (
            EXAMPLE.replace("split = [0.5, 0.5]", "split = [0.6, 0.6]"),
            "split must be two positive numbers [control, treatment] summing to 1, "
            "e.g. [0.5, 0.5]; got [0.6, 0.6].",
        ),
        (
            EXAMPLE.replace("min_users_per_arm = 50", "min_users_per_arm = 10.5"),
            "min_users_per_arm must be an integer >= 2; got 10.5.",
        ),
        (
            EXAMPLE.replace('better = "higher"', 'better = "up"', 1),
            "[[primary]] #1 better must be 'higher' or 'lower'; got 'up'.",
        ),
        (
            EXAMPLE.replace("margin = 0.01", "margin = 5"),
            "[[guardrail]] #1 margin must be a number in [0, 1) (a relative change: 0.01 is "
            "1%); got 5.",
        ),
        (
            EXAMPLE.replace("margin = 0.01", ""),
            "[[guardrail]] #1 has no margin; add e.g. margin = 0.01 (the largest relative "
            "change for the worse allowed).",
        ),
        (
            EXAMPLE.replace('metric = "ctr"', 'metric = "watch_time"'),
            "metric 'watch_time' appears twice ([[primary]] #1 and [[guardrail]] #1); list each "
            "metric once.",
        ),
        (
            "alpha = 0.05\n",
            'needs at least one [[primary]] metric, e.g. [[primary]] with metric = "watch_time".',
        ),
        (
            "alpha = 0.05\nprimary = 3\n",
            "'primary' must be tables written [[primary]].",
        ),
        (
            EXAMPLE + 'correction = "bonferroni"\n',
            "[[guardrail]] #1 has unknown key 'correction'; valid keys: better, margin, metric.",
        ),
        (
            'correction = "bonferroni"\n' + EXAMPLE,
            "correction must be one of bh, holm, none; got 'bonferroni'.",
        ),
    ],
)
def test_invalid_gates_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_gate(path)
    assert str(err.value) == f"{path}: {message}"


def test_unreadable_gate_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(InputFileError) as err:
        load_gate(missing)
    assert str(err.value) == f"{missing}: no such gate file; write one as in docs/gate.md."
    path = write(tmp_path, "alpha = = 3")
    with pytest.raises(ConfigError, match=r"gate\.toml: not valid TOML \("):
        load_gate(path)


def test_a_different_alpha_from_the_user_is_an_error() -> None:
    assert check_alpha(GATE, None) == 0.05
    assert check_alpha(GATE, 0.05) == 0.05
    with pytest.raises(ConfigError) as err:
        check_alpha(GATE, 0.1)
    assert str(err.value) == (
        "--alpha 0.1 conflicts with alpha = 0.05 in gate; the gate's alpha decides, so drop "
        "--alpha or change the gate file."
    )


def test_a_gate_built_in_code_is_validated_too() -> None:
    with pytest.raises(ConfigError, match=r"^gate: \[\[primary\]\] #1 has unknown metric 'x'"):
        Gate(primary=(PrimarySpec("x", "higher"),))


# --- decisions on hand-built results -------------------------------------------------------


def metric(
    name: str,
    role: str,
    control: float,
    treatment: float,
    se: float,
    *,
    adjusted_p: float | None = None,
    users: int = 10_000,
) -> MetricResult:
    """A result with both arms' SE = ``se`` and a normal reference, made self-consistent."""
    var = se**2
    test = difference_test(treatment - control, 2 * var, math.inf, 0.05)
    rel = relative_interval(
        treatment,
        control,
        var_treatment=var,
        var_control=var,
        covariance=0.0,
        critical=test.critical,
    )
    defined = bool(rel.defined)
    p = float(test.p_value)
    return MetricResult(
        metric=name,
        label=name,
        role=role,  # type: ignore[arg-type]
        better="higher",
        control=ArmSummary("control", users, control, control, se),
        treatment=ArmSummary("treatment", users, treatment, treatment, se),
        difference=treatment - control,
        se=float(test.se),
        ci=(float(test.ci_low), float(test.ci_high)),
        df=math.inf,
        critical_value=float(test.critical),
        p_value=p,
        adjusted_p_value=(p if adjusted_p is None else adjusted_p) if role == "primary" else None,
        relative=float(rel.estimate) if defined else None,
        relative_ci=(float(rel.low), float(rel.high)) if defined else None,
        relative_note=None if defined else "undefined",
        covariance=0.0,
        unit_variance=2 * var * users,
        mde=2.8 * float(test.se),
        mde_relative=2.8 * float(test.se) / control,
        power=0.8,
        test="z",
        relative_method="fieller",
    )


def result(
    *metrics: MetricResult, health: tuple[HealthCheck, ...] = (), gate: Gate = GATE
) -> ExperimentResult:
    settings = AnalysisSettings(
        control="control",
        treatment="treatment",
        design="split",
        alpha=gate.alpha,
        relative_method=gate.relative_ci,
        distribution="normal",
        correction=gate.correction,
        cuped=False,
        ddof=1,
        split=gate.split,
        min_users_per_arm=gate.min_users_per_arm,
        power=gate.power,
        winsorize=None,
        bootstrap_resamples=0,
    )
    checks = health or (HealthCheck("sample_ratio", True, "fine", 0.5),)
    return ExperimentResult(settings, 10_000, 10_000, tuple(metrics), checks)


CTR_FLAT = metric("ctr", "guardrail", 0.05, 0.05, 0.0001)  # +-0.4%: inside the 1% margin


def test_ship_when_a_primary_wins_and_every_guardrail_holds() -> None:
    decision = decide(result(metric("watch_time", "primary", 10.0, 10.3, 0.05), CTR_FLAT), GATE)
    assert decision.verdict == "ship" and decision.exit_code == ExitCode.OK == 0
    assert decision.reasons == (
        "watch_time is significantly better: +3.00% (95% CI +1.60% to +4.42%), "
        "holm-adjusted p = 2.2e-05 <= 0.05.",
        "ctr stays within its 1% margin: the one-sided 95% lower bound of its change is "
        "-0.46%, above -1.00%.",
    )
    assert decision.to_dict()["exit_code"] == 0


def test_invalid_first_whatever_the_effects() -> None:
    srm = HealthCheck("sample_ratio", False, "Sample-ratio mismatch: ...", 1e-6)
    res = result(metric("watch_time", "primary", 10.0, 10.3, 0.05), CTR_FLAT, health=(srm,))
    decision = decide(res, GATE)
    assert decision.verdict == "invalid" and decision.exit_code == ExitCode.INVALID == 4
    assert decision.reasons == ("Sample-ratio mismatch: ...",)


def test_no_ship_when_a_primary_is_significantly_worse() -> None:
    decision = decide(result(metric("watch_time", "primary", 10.0, 9.7, 0.05), CTR_FLAT), GATE)
    assert decision.verdict == "no_ship" and decision.exit_code == ExitCode.NO_SHIP == 1
    assert decision.reasons[0].startswith("watch_time is significantly worse: -3.00%")


def test_no_ship_when_a_guardrail_is_beyond_its_margin_even_if_a_primary_wins() -> None:
    ctr_down = metric("ctr", "guardrail", 0.05, 0.0490, 0.0001)  # -2% +- 0.4%
    decision = decide(result(metric("watch_time", "primary", 10.0, 10.3, 0.05), ctr_down), GATE)
    assert decision.verdict == "no_ship"
    assert decision.reasons == (
        "ctr moved beyond its 1% margin: the one-sided 95% upper bound of its change is "
        "-1.54%, below -1.00%.",
    )


def test_inconclusive_when_no_primary_is_significant_reports_mde_and_users() -> None:
    decision = decide(result(metric("watch_time", "primary", 10.0, 10.05, 0.05), CTR_FLAT), GATE)
    assert decision.verdict == "inconclusive" and decision.exit_code == ExitCode.INCONCLUSIVE == 3
    (reason,) = decision.reasons
    assert reason == (
        "watch_time shows no significant change: +0.50% (95% CI -0.88% to +1.90%), "
        "holm-adjusted p = 0.48 > 0.05; with 10,000 users per arm the minimum detectable effect "
        "is 1.98% (at 80% power), and detecting a 0.50% change needs about 156,978 users per arm."
    )
    assert decision.metrics[0].users_needed == 156_978


def test_the_users_needed_use_the_gates_mde_when_it_has_one() -> None:
    gate = Gate(primary=(PrimarySpec("watch_time", "higher", mde=0.02),))
    decision = decide(result(metric("watch_time", "primary", 10.0, 10.05, 0.05), gate=gate), gate)
    assert decision.reasons[0].endswith("detecting a 2.00% change needs about 9,812 users per arm.")


def test_inconclusive_when_a_guardrail_is_not_yet_shown_to_hold() -> None:
    ctr_noisy = metric("ctr", "guardrail", 0.05, 0.0499, 0.0005)  # -0.2% +- 2%
    decision = decide(result(metric("watch_time", "primary", 10.0, 10.3, 0.05), ctr_noisy), GATE)
    assert decision.verdict == "inconclusive"
    (reason,) = decision.reasons
    assert reason.startswith("ctr is not shown to stay within its 1% margin: its change is -0.20%")
    assert reason.endswith("users per arm would show it if the true change is 0.")


def test_inconclusive_when_a_guardrails_relative_change_is_undefined() -> None:
    ctr_zero = metric("ctr", "guardrail", 0.0001, 0.0002, 0.0001)
    decision = decide(result(metric("watch_time", "primary", 10.0, 10.3, 0.05), ctr_zero), GATE)
    assert decision.verdict == "inconclusive"
    assert decision.reasons == (
        "ctr: its relative change is undefined because the control mean is not "
        "distinguishable from 0, so its 1% margin cannot be checked.",
    )


def test_the_adjusted_p_value_decides_not_the_raw_one() -> None:
    gate = Gate(
        primary=(PrimarySpec("watch_time", "higher"), PrimarySpec("session_depth", "higher"))
    )
    wt = metric("watch_time", "primary", 10.0, 10.1, 0.05, adjusted_p=0.09)  # raw p = 0.157
    sd = metric("session_depth", "primary", 3.0, 3.06, 0.02, adjusted_p=0.09)  # raw p = 0.034
    assert sd.p_value < 0.05
    decision = decide(result(wt, sd, gate=gate), gate)
    assert decision.verdict == "inconclusive"


def test_lower_is_better_flips_both_rules() -> None:
    gate = Gate(
        primary=(PrimarySpec("session_depth", "lower"),),
        guardrail=(GuardrailSpec("watch_time", "lower", 0.01),),
    )
    fewer = metric("session_depth", "primary", 3.0, 2.9, 0.02)
    flat = metric("watch_time", "guardrail", 10.0, 10.0, 0.01)
    assert decide(result(fewer, flat, gate=gate), gate).verdict == "ship"
    more = metric("session_depth", "primary", 3.0, 3.1, 0.02)
    assert decide(result(more, flat, gate=gate), gate).verdict == "no_ship"
    up = metric("watch_time", "guardrail", 10.0, 10.3, 0.01)
    decision = decide(result(fewer, up, gate=gate), gate)
    assert decision.verdict == "no_ship"
    assert "lower bound of its change is +2.76%, above +1.00%" in decision.reasons[0]


def test_a_result_analysed_differently_from_the_gate_is_refused() -> None:
    other = Gate(primary=GATE.primary, guardrail=GATE.guardrail, alpha=0.01)
    res = result(metric("watch_time", "primary", 10.0, 10.3, 0.05), CTR_FLAT, gate=other)
    with pytest.raises(ConfigError) as err:
        decide(res, GATE)
    assert str(err.value) == (
        "the result was analysed with alpha 0.01 but gate says 0.05; analyse with the gate's "
        "settings (Gate.analysis_options())."
    )
    with pytest.raises(ConfigError, match="primary metrics"):
        decide(result(CTR_FLAT), GATE)


# --- end to end ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lift", "verdict"),
    [({"watch_time": 0.15}, "ship"), ({"watch_time": -0.15}, "no_ship"), ({}, "inconclusive")],
)
def test_simulated_experiments_through_analyse_and_decide(lift, verdict) -> None:
    gate = parse_gate(tomllib.loads(EXAMPLE.replace("margin = 0.01", "margin = 0.2")))
    frame = experiment_frame(np.random.default_rng(7), 20_000, lift=lift)
    decision = decide(analyse(frame, **gate.analysis_options()), gate)
    assert decision.verdict == verdict
