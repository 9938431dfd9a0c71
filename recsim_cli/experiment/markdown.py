"""Render an A/B-test report as Markdown fit to post as a CI comment, and format its numbers.

:func:`abtest_markdown` returns the text; writing it is the caller's job. The
number formatters are shared with the CLI's tables, so both show the same
digits. Nothing here reads a clock: the same report gives the same text.
"""

from __future__ import annotations

import math

from recsim_cli import __version__
from recsim_cli.experiment.abtest import AbTestReport, Fingerprint
from recsim_cli.experiment.offpolicy_abtest import OffPolicyReport
from recsim_cli.experiment.plan import AbTestPlan
from recsim_cli.experiment.results import MetricResult
from recsim_cli.times import format_ts

VERDICT_ICONS = {"ship": "✅", "no_ship": "⛔", "inconclusive": "⚠️", "invalid": "❌"}


def format_number(value: float | None) -> str:
    """Four significant digits, ``-`` when undefined."""
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.4g}"


def format_signed(value: float | None) -> str:
    """Four significant digits with a sign, ``-`` when undefined."""
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:+.4g}"


def format_percent(value: float | None) -> str:
    """A relative change as a signed percentage with two decimals (``+3.00%``)."""
    if value is None or not math.isfinite(value):
        return "-"
    return f"{100 * value:+.2f}%"


def format_p(value: float | None) -> str:
    """A p-value with two significant digits (``< 1e-300`` when it underflows to 0)."""
    if value is None or not math.isfinite(value):
        return "-"
    return "< 1e-300" if value == 0 else f"{value:.2g}"


def absolute_lift(m: MetricResult) -> str:
    """The difference and its CI: ``+0.0012 (-0.0003 to +0.0027)``."""
    lo, hi = m.ci
    return f"{format_signed(m.difference)} ({format_signed(lo)} to {format_signed(hi)})"


def relative_lift(m: MetricResult) -> str:
    """The relative change and its CI, or ``undefined``."""
    if m.relative is None or m.relative_ci is None:
        return "undefined"
    lo, hi = m.relative_ci
    return f"{format_percent(m.relative)} ({format_percent(lo)} to {format_percent(hi)})"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _title(report: AbTestReport) -> str:
    counts = report.logged
    name = f"`{counts.treatment}` vs `{counts.control}`"
    if report.decision is None:
        return f"## recsim abtest: {name}: results (no gate)"
    verdict = report.decision.verdict
    return f"## recsim abtest: {name}: {VERDICT_ICONS[verdict]} **{verdict.replace('_', ' ')}**"


def _inputs_footer(fingerprint: Fingerprint) -> list[str]:
    """The last lines of the inputs block: the dataset and its sources, the version."""
    sources = ", ".join(f"{f} `{h[:12]}`" for _, f, h in fingerprint.sources)
    return [
        f"- dataset `{_cell(fingerprint.data)}` version {fingerprint.version}: {sources}",
        f"- recsim {__version__}",
        "",
        "</details>",
        "",
    ]


def abtest_markdown(report: AbTestReport) -> str:
    """Return a Markdown summary: decision and reasons, a table of metrics, checks, inputs."""
    result, counts = report.result, report.logged
    settings = result.settings
    level = f"{100 * (1 - settings.alpha):g}%"
    lines = [_title(report), ""]
    if report.decision is None:
        lines.append(
            "No gate was given (`--gate`): these are results only, and the exit code is 0."
        )
    else:
        gate = report.gate.source if report.gate is not None else "gate"
        lines.append(
            f"Decision of `{_cell(gate)}`: **{report.decision.verdict.replace('_', ' ')}** "
            f"(exit {int(report.exit_code)})."
        )
        lines += ["", *(f"- {_cell(reason)}" for reason in report.decision.reasons)]
    lines += [
        "",
        f"| metric | role | {_cell(counts.control)} | {_cell(counts.treatment)} "
        f"| absolute lift ({level} CI) | relative lift ({level} CI) | p | adjusted p | verdict |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for m in result.metrics:
        cells = [
            m.label,
            m.role,
            format_number(m.control.estimate),
            format_number(m.treatment.estimate),
            absolute_lift(m),
            relative_lift(m),
            format_p(m.p_value),
            format_p(m.adjusted_p_value),
            report.verdict_of(m),
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    failed = result.failed_checks
    lines += ["", f"**Health checks:** {'all passed' if not failed else f'{len(failed)} failed'}."]
    lines += [f"- {'✅' if c.passed else '❌'} {_cell(c.detail)}" for c in result.health]
    if report.warnings:
        lines += ["", "**Warnings:**", *(f"- {_cell(w)}" for w in report.warnings)]
    end = format_ts(counts.end) or f"{format_ts(counts.last_event)} (last event)"
    cuped = f"CUPED on ({report.pre_days} pre-period days)" if settings.cuped else "CUPED off"
    lines += [
        "",
        "<details><summary>Inputs and methods</summary>",
        "",
        f"- users: {_cell(counts.control)} {counts.users_control:,}, "
        f"{_cell(counts.treatment)} {counts.users_treatment:,}; "
        f"left out (seen in both arms): {counts.excluded_users:,}",
        f"- window: {format_ts(counts.start)} to {end}; events used: {counts.events_used:,}",
        f"- {settings.design} design, {result.metrics[0].test} test, {settings.relative_method} "
        f"relative CI, {settings.correction} correction, alpha {settings.alpha:g}, {cuped}, "
        f"seed {report.seed}",
        *_inputs_footer(report.fingerprint),
    ]
    return "\n".join(lines)


def plan_markdown(plan: AbTestPlan) -> str:
    """Return a Markdown table of the users per arm each metric needs."""
    lines = [
        f"## recsim abtest --plan: `{plan.logged.treatment}` vs `{plan.logged.control}`",
        "",
        f"Power {100 * plan.power:g}%, split {'/'.join(f'{100 * s:g}' for s in plan.split)}.",
        "",
        "| metric | role | baseline | relative MDE | alpha | users control | users treatment "
        "| detectable now |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in plan.metrics:
        cells = [
            m.metric,
            m.role,
            format_number(m.baseline),
            f"{100 * m.relative_mde:g}%",
            f"{m.alpha:.3g}",
            "-" if m.users_control is None else f"{m.users_control:,}",
            "-" if m.users_treatment is None else f"{m.users_treatment:,}",
            format_percent(m.current_relative_mde).lstrip("+"),
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join([*lines, ""])


def offpolicy_markdown(report: OffPolicyReport) -> str:
    """Return a Markdown summary of an estimate: decision, metrics with evidence, diagnostics."""
    result = report.result
    settings = result.settings
    c, t = settings.control, settings.treatment
    level = f"{100 * (1 - settings.alpha):g}%"
    name = f"`{_cell(t)}` vs `{_cell(c)}` (estimated from logs)"
    if report.decision is None:
        lines = [f"## recsim abtest: {name}: results (no gate)", ""]
        lines.append(
            "No gate was given (`--gate`): these are results only, and the exit code is 0."
        )
    else:
        verdict = report.decision.verdict
        lines = [
            f"## recsim abtest: {name}: {VERDICT_ICONS[verdict]} **{verdict.replace('_', ' ')}**",
            "",
        ]
        gate = report.gate.source if report.gate is not None else "gate"
        evidence = report.decision.evidence
        lines.append(
            f"Decision of `{_cell(gate)}`: **{verdict.replace('_', ' ')}** "
            f"(exit {int(report.exit_code)})"
            + (f", on **{evidence}** evidence." if evidence else ".")
        )
        lines += ["", *(f"- {_cell(reason)}" for reason in report.decision.reasons)]
    lines += [
        "",
        f"| metric | role | evidence | {_cell(c)} | {_cell(t)} | relative lift ({level} CI) "
        "| p | adjusted p | verdict |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for m in result.metrics:
        cells = [
            m.label,
            m.role,
            m.evidence or "-",
            format_number(m.control.estimate),
            format_number(m.treatment.estimate),
            relative_lift(m),
            format_p(m.p_value),
            format_p(m.adjusted_p_value),
            report.verdict_of(m),
        ]
        lines.append("| " + " | ".join(_cell(x) for x in cells) + " |")
    lines += [
        "",
        "Off-policy numbers reweight the logged impressions; model-based numbers come from a "
        "session model fit on the logs before the window, and cannot make the gate ship.",
    ]
    diagnostics = [(arm, d) for arm, d in report.diagnostics.items() if d is not None]
    if diagnostics:
        lines += [
            "",
            "| arm | effective sample size | non-zero weights | max weight | mean weight (95% CI) "
            "| unlogged items |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for arm, d in diagnostics:
            lo, hi = d.mean_weight_ci
            lines.append(
                f"| {_cell(arm)} | {d.effective_sample_size:,.0f} | "
                f"{100 * d.nonzero_share:.2f}% | {format_number(d.max_weight)} | "
                f"{d.mean_weight:.3f} ({lo:.3f} to {hi:.3f}) | {100 * d.unlogged_share:.1f}% |"
            )
    failed = result.failed_checks
    lines += ["", f"**Health checks:** {'all passed' if not failed else f'{len(failed)} failed'}."]
    lines += [f"- {'✅' if x.passed else '❌'} {_cell(x.detail)}" for x in result.health]
    if report.warnings:
        lines += ["", "**Warnings:**", *(f"- {_cell(w)}" for w in report.warnings)]
    start, end = report.window
    counts = report.counts
    lines += [
        "",
        "<details><summary>Inputs and methods</summary>",
        "",
        f"- arms: control `{_cell(report.control.spec)}` ({report.control.kind}), treatment "
        f"`{_cell(report.treatment.spec)}` ({report.treatment.kind})",
        f"- window: {format_ts(start)} to {format_ts(end)}; {counts['users']:,} users, "
        f"{counts['sessions']:,} sessions, {counts['impressions']:,} impressions",
        f"- {report.estimator} estimator, {settings.design} design, {settings.relative_method} "
        f"relative CI, {settings.correction} correction, alpha {settings.alpha:g}, "
        f"seed {report.seed}",
        *_inputs_footer(report.fingerprint),
    ]
    return "\n".join(lines)
