"""`recsim abtest`: analyse a logged A/B test and, with a gate, decide by the exit code.

Parses the options, calls ``run_logged_abtest`` (or ``plan_logged_abtest``
with ``--plan``), writes the JSON, Markdown and HTML reports, renders the
result, and exits with the gate's code. Errors propagate to the group in
``recsim_cli.cli``, which exits 2 or 70, never 0 or 1: the gate fails closed.
Only typer and light recsim modules are imported at module level.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from recsim_cli.cli.options import (
    DEFAULT_DATA_LOCATION,
    DEFAULT_REGISTRY,
    DataLocation,
    EngineOption,
    JsonFlag,
    RegistryDir,
    Seed,
    SparkConfOption,
    SparkMasterOption,
    engine_config,
    parse_split,
)
from recsim_cli.errors import ConfigError, UserError
from recsim_cli.locations import as_location
from recsim_cli.spark.session import DEFAULT_MASTER

if TYPE_CHECKING:
    from rich.console import Group

    from recsim_cli.experiment.abtest import AbTestReport
    from recsim_cli.experiment.offpolicy_abtest import OffPolicyReport
    from recsim_cli.experiment.plan import AbTestPlan
    from recsim_cli.experiment.results import MetricResult


def _names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [name.strip() for name in text.split(",") if name.strip()]


def abtest_command(
    *,
    control: Annotated[
        str, typer.Option("--control", help="The control arm's label (or registry model).")
    ],
    treatment: Annotated[
        str, typer.Option("--treatment", help="The treatment arm's label (or registry model).")
    ],
    data: DataLocation = DEFAULT_DATA_LOCATION,
    arm_column: Annotated[
        str | None,
        typer.Option(
            "--arm-column",
            help="Column of the events naming each event's arm, e.g. policy: analyse a logged "
            "A/B test. Without it, --control and --treatment name registry models.",
        ),
    ] = None,
    metrics: Annotated[
        str | None,
        typer.Option(
            "--metrics",
            help="Primary metrics, comma-separated. \\[default: ctr,watch_time,session_depth, "
            "or the gate's]",
            show_default=False,
        ),
    ] = None,
    guardrails: Annotated[
        str | None,
        typer.Option("--guardrails", help="Guardrail metrics, comma-separated (not adjusted)."),
    ] = None,
    alpha: Annotated[
        float | None,
        typer.Option(
            "--alpha",
            help="Level of every test. \\[default: 0.05, or the gate's]",
            show_default=False,
        ),
    ] = None,
    design: Annotated[
        str | None,
        typer.Option(
            "--design",
            help="split (users in one arm) or paired (both arms on every user). \\[default: "
            "split for logged tests, paired for estimates]",
            show_default=False,
        ),
    ] = None,
    registry: RegistryDir = DEFAULT_REGISTRY,
    estimator: Annotated[
        str,
        typer.Option(
            "--estimator",
            help="Off-policy estimator: auto, replay, ips, snips, dm or dr (docs/offpolicy.md).",
        ),
    ] = "auto",
    window: Annotated[
        str | None,
        typer.Option(
            "--window",
            metavar="START..END",
            help="Evaluation window (UTC), END exclusive, e.g. 2026-01-15..2026-01-19. "
            "\\[default: after the later model cutoff; required for files and logged]",
            show_default=False,
        ),
    ] = None,
    traffic: Annotated[
        float | None,
        typer.Option(
            "--traffic",
            help="Split design of an estimate: the treatment's share of users, e.g. 0.01.",
        ),
    ] = None,
    target_epsilon: Annotated[
        float,
        typer.Option(
            "--target-epsilon",
            help="Smooth each list with the logging policy (changes what is estimated).",
        ),
    ] = 0.0,
    replicates: Annotated[
        int,
        typer.Option("--replicates", help="Monte Carlo rollouts per session of the session model."),
    ] = 8,
    cuped: Annotated[
        bool, typer.Option("--cuped", help="Reduce variance with each user's pre-period metric.")
    ] = False,
    pre_days: Annotated[
        int, typer.Option("--pre-days", help="Days before the start that CUPED reads.", min=0)
    ] = 7,
    start: Annotated[
        str | None,
        typer.Option(
            "--start",
            metavar="DATE",
            help="Start of the experiment (UTC), e.g. 2026-01-12. \\[default: first event of "
            "either arm]",
            show_default=False,
        ),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option(
            "--end",
            metavar="DATE",
            help="End of the experiment (UTC), exclusive. \\[default: none]",
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            "--split",
            metavar="SHARES",
            help="Intended control/treatment split, e.g. 50/50. \\[default: 50/50, or the gate's]",
            show_default=False,
        ),
    ] = None,
    correction: Annotated[
        str | None,
        typer.Option(
            "--correction",
            help="Multiple-testing correction of the primaries: holm, bh or none. "
            "\\[default: holm, or the gate's]",
            show_default=False,
        ),
    ] = None,
    relative_ci: Annotated[
        str | None,
        typer.Option(
            "--relative-ci",
            help="Interval of the relative lift: fieller, delta or log. "
            "\\[default: fieller, or the gate's]",
            show_default=False,
        ),
    ] = None,
    both_arms: Annotated[
        str | None,
        typer.Option(
            "--both-arms",
            help="Users seen in both arms: exclude them, or keep them (the split design's "
            "health check then fails). \\[default: exclude; keep with --design paired]",
            show_default=False,
        ),
    ] = None,
    bootstrap: Annotated[
        int, typer.Option("--bootstrap", metavar="N", help="Poisson-bootstrap resamples (0 = off).")
    ] = 0,
    winsorize: Annotated[
        float | None,
        typer.Option(
            "--winsorize", metavar="P", help="Cap users above the P-quantile, e.g. 0.999."
        ),
    ] = None,
    gate: Annotated[
        Path | None,
        typer.Option(
            "--gate", help="Gate TOML file: its decision is the exit code (docs/gate.md)."
        ),
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", metavar="FILE.json", help="Write the JSON report.")
    ] = None,
    markdown: Annotated[
        Path | None,
        typer.Option("--markdown", metavar="FILE.md", help="Write a Markdown summary for CI."),
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            metavar="FILE.html",
            help="Write a self-contained HTML report with plots (needs recsim\\[report]).",
            dir_okay=False,
        ),
    ] = None,
    plan: Annotated[
        bool,
        typer.Option("--plan", help="Print the users per arm needed to detect --mde, and exit."),
    ] = False,
    mde: Annotated[
        float | None,
        typer.Option("--mde", help="Relative change to detect with --plan, e.g. 0.02 for 2%."),
    ] = None,
    seed: Seed = 0,
    json_output: JsonFlag = False,
    engine: EngineOption = "polars",
    spark_master: SparkMasterOption = DEFAULT_MASTER,
    spark_conf: SparkConfOption = None,
    collect: Annotated[
        str,
        typer.Option(
            "--collect",
            metavar="auto|users|moments",
            help="Logged tests: bring each user's sums to this machine, or only per-arm "
            "moments (for hundreds of millions of users; no --bootstrap). auto picks by the "
            "number of users (docs/statistics.md).",
        ),
    ] = "auto",
) -> None:
    """Analyse a logged A/B test and gate a promotion on it.

    Reads the dataset's events, sums each user's clicks, impressions, watch
    time and sessions per arm (users are the unit, never impressions), and
    tests the lift of CTR, watch time per session and session depth. With
    --gate the exit code is the decision: 0 ship, 1 no ship, 3 inconclusive,
    4 invalid; without a gate it is 0 after printing the results. Errors exit
    2 (input) or 70 (bug), never 0 or 1. Statistics: docs/statistics.md;
    gates: docs/gate.md (add --gate examples/gate.toml to the example); the
    HTML report (--html): docs/reports.md.

    Example (simulate a logged A/B test, store it, analyse it):
    recsim simulate --users 2000 --items 2000 --policies prod,personal --out ab-logs
    recsim ingest ab-logs/events.csv.gz --data ab-data
    recsim abtest --data ab-data --arm-column policy --control prod --treatment personal
    """
    from recsim_cli.cli import console
    from recsim_cli.experiment.abtest import run_logged_abtest
    from recsim_cli.experiment.logged import BOTH_ARMS
    from recsim_cli.experiment.plan import plan_logged_abtest
    from recsim_cli.times import parse_moment

    if html is not None:
        if plan:
            raise ConfigError(
                "--html draws the report of an analysis; --plan sizes one and has no report "
                "page. Drop --html or --plan."
            )
        from recsim_cli.report.render import require_report_extra

        require_report_extra()  # before the work, not after it
    chosen, spark = engine_config(engine, spark_master, spark_conf)
    if collect not in ("auto", "users", "moments"):
        raise ConfigError(f"--collect {collect}: give auto (the default), users or moments.")
    if arm_column is None:
        _reject_logged_only(
            collect=collect != "auto",
            cuped=cuped,
            pre_days=pre_days != 7,
            start=start is not None,
            end=end is not None,
            split=split is not None,
            both_arms=both_arms is not None,
            bootstrap=bootstrap != 0,
            winsorize=winsorize is not None,
            plan=plan,
            mde=mde is not None,
        )
        _run_estimate(
            as_location(data),
            control=control,
            treatment=treatment,
            registry=registry,
            estimator=estimator,
            design=design or "paired",
            traffic=traffic,
            window=window,
            metrics=_names(metrics),
            guardrails=_names(guardrails),
            alpha=alpha,
            correction=correction,
            relative_ci=relative_ci,
            gate=gate,
            target_epsilon=target_epsilon,
            replicates=replicates,
            seed=seed,
            report=report,
            markdown=markdown,
            html=html,
            json_output=json_output,
            engine=chosen,
            spark=spark,
        )
        return
    if plan and chosen == "spark":
        raise ConfigError(
            "--plan reads the pre-experiment data on this machine; drop --engine spark "
            "(sizing needs only a sample of users)."
        )
    for flag, used in (
        ("--traffic", traffic is not None),
        ("--window", window is not None),
        ("--target-epsilon", target_epsilon != 0.0),
        ("--estimator", estimator != "auto"),
    ):
        if used:
            raise ConfigError(
                f"{flag} applies to estimates of models from logs; a logged A/B test "
                "(--arm-column) is analysed as it ran. Drop it, or drop --arm-column."
            )
    if mde is not None and not plan:
        raise ConfigError("--mde sizes an experiment with --plan; add --plan or drop --mde.")
    if both_arms is not None and both_arms not in BOTH_ARMS:
        raise ConfigError(f"--both-arms must be exclude or keep; got {both_arms!r}.")
    shares = parse_split(split) if split is not None else None
    if shares is not None and len(shares) != 2:
        raise ConfigError(f"--split {split}: give two shares, control/treatment, e.g. 50/50.")
    common: dict[str, Any] = {
        "control": control,
        "treatment": treatment,
        "arm_column": arm_column,
        "metrics": _names(metrics),
        "guardrails": _names(guardrails),
        "alpha": alpha,
        "cuped": cuped,
        "pre_days": pre_days,
        "start": None if start is None else parse_moment(start, "--start"),
        "end": None if end is None else parse_moment(end, "--end"),
        "split": shares,
        "correction": correction,
        "gate": gate,
    }
    with console.progress_bar(enabled=not json_output) as progress:
        if plan:
            sized = plan_logged_abtest(as_location(data), mde=mde, progress=progress, **common)
        else:
            result = run_logged_abtest(
                as_location(data),
                design=design or "split",
                relative_ci=relative_ci,
                both_arms=both_arms,
                bootstrap=bootstrap,
                winsorize=winsorize,
                seed=seed,
                registry=registry,
                progress=progress,
                engine=chosen,
                spark=spark,
                collect=collect,  # type: ignore[arg-type]  # checked above
                **common,
            )
    if plan:
        _finish_plan(sized, report=report, markdown=markdown, json_output=json_output)
        return
    from recsim_cli.experiment.markdown import abtest_markdown

    _write_files(report, result.to_dict, markdown, lambda: abtest_markdown(result), html)
    if json_output:
        console.print_json(result.to_dict())
    else:
        console.out.print(render(result))
    if result.exit_code:
        raise typer.Exit(int(result.exit_code))


def _write(path: Path, flag: str, write: Callable[[Path], None]) -> None:
    try:
        write(path)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UserError(
            f"cannot write {flag} {path} ({reason}); give a file path you can write to."
        ) from None


def _write_files(
    report: Path | None,
    to_dict: Callable[[], dict[str, Any]],
    markdown: Path | None,
    to_markdown: Callable[[], str],
    html: Path | None = None,
) -> None:
    """Write the JSON report, Markdown summary and HTML page that were asked for, atomically.

    The page is drawn from the JSON text, so ``recsim report`` on the saved
    JSON gives the same bytes.
    """
    from recsim_cli.io import dumps_json, write_bytes_atomic

    document = dumps_json(to_dict()) if report is not None or html is not None else ""
    if report is not None:
        data = document.encode("utf-8")
        _write(report, "--report", lambda p: write_bytes_atomic(p, data))
    if markdown is not None:
        text = to_markdown().encode("utf-8")
        _write(markdown, "--markdown", lambda p: write_bytes_atomic(p, text))
    if html is not None:
        import json

        from recsim_cli.report.abtest import render_abtest

        page = render_abtest(json.loads(document)).encode("utf-8")
        _write(html, "--html", lambda p: write_bytes_atomic(p, page))


def _finish_plan(
    sized: AbTestPlan, *, report: Path | None, markdown: Path | None, json_output: bool
) -> None:
    from recsim_cli.cli import console
    from recsim_cli.experiment.markdown import format_number, format_percent, plan_markdown

    _write_files(report, sized.to_dict, markdown, lambda: plan_markdown(sized))
    if json_output:
        console.print_json(sized.to_dict())
        return
    header = ["metric", "role", "baseline", "MDE", "alpha", "control users", "treatment users"]
    rows = [
        (
            m.metric,
            m.role,
            format_number(m.baseline),
            f"{100 * m.relative_mde:g}%",
            f"{m.alpha:.3g}",
            m.users_control,
            m.users_treatment,
        )
        for m in sized.metrics
    ]
    split = "/".join(f"{100 * s:g}" for s in sized.split)
    title = f"users needed (power {100 * sized.power:g}%, split {split})"
    console.out.print(console.frame_table(title, header, rows))
    for m in sized.metrics:
        now = format_percent(m.current_relative_mde).lstrip("+")
        console.out.print(
            f"{m.metric}: with the {sized.logged.users_control:,} and "
            f"{sized.logged.users_treatment:,} users of the data, the detectable change is {now}.",
            markup=False,
        )


def _metric_table(result: AbTestReport, m: MetricResult) -> object:
    from rich.table import Table

    from recsim_cli.experiment.markdown import (
        absolute_lift,
        format_number,
        format_p,
        format_percent,
        format_signed,
        relative_lift,
    )

    settings = result.result.settings
    level = f"{100 * (1 - settings.alpha):g}% CI"
    table = Table(
        title=f"{m.label} ({m.metric}, {m.role})", show_header=False, title_justify="left"
    )
    table.add_column("what", style="bold")
    table.add_column("value")
    rows = [
        (
            f"control {m.control.arm}",
            f"{format_number(m.control.estimate)} ({m.control.users:,} users)",
        ),
        (
            f"treatment {m.treatment.arm}",
            f"{format_number(m.treatment.estimate)} ({m.treatment.users:,} users)",
        ),
        (f"absolute lift ({level})", absolute_lift(m)),
        (f"relative lift ({level})", relative_lift(m)),
        (f"p-value ({m.test})", format_p(m.p_value)),
        (
            f"adjusted p ({settings.correction})",
            "- (guardrails are not adjusted)"
            if m.role == "guardrail"
            else format_p(m.adjusted_p_value),
        ),
    ]
    if m.cuped is not None:
        rows.append(("CUPED variance reduction", f"{100 * m.cuped.variance_reduction:.1f}%"))
    if m.bootstrap is not None:
        b = m.bootstrap
        rows.append(
            (
                f"bootstrap ({b.resamples:,} resamples)",
                f"{format_signed(b.ci_low)} to {format_signed(b.ci_high)}; relative "
                f"{format_percent(b.relative_low)} to {format_percent(b.relative_high)}",
            )
        )
    rows.append(("verdict", result.verdict_of(m)))
    for label, value in rows:
        table.add_row(label, value)
    return table


def render(result: AbTestReport) -> Group:
    """Render a report: one table per metric, the health checks, warnings and the decision."""
    from rich.console import Group, RenderableType
    from rich.text import Text

    counts = result.logged
    parts: list[RenderableType] = [
        Text(
            f"recsim abtest: {counts.treatment} (treatment) vs {counts.control} (control), "
            f"{counts.users_treatment:,} and {counts.users_control:,} users, "
            f"{counts.events_used:,} events",
            style="bold",
        )
    ]
    parts += [_metric_table(result, m) for m in result.result.metrics]  # type: ignore[misc]
    parts.append(Text("Health checks:", style="bold"))
    for check in result.result.health:
        mark, style = ("✓", "green") if check.passed else ("✗", "red")
        parts.append(Text(f"  {mark} {check.detail}", style=style))
    for warning in result.warnings:
        parts.append(Text(f"Warning: {warning}", style="yellow"))
    if result.decision is None:
        parts.append(Text("No gate given (--gate): results only, exit 0.", style="bold"))
    else:
        verdict = result.decision.verdict.replace("_", " ")
        style = "green" if result.decision.verdict == "ship" else "red"
        parts.append(
            Text(f"Decision: {verdict} (exit {int(result.exit_code)})", style=f"bold {style}")
        )
        parts += [Text(f"  - {reason}") for reason in result.decision.reasons]
    return Group(*parts)


def _reject_logged_only(**used: bool) -> None:
    """Refuse the options of logged A/B tests in an estimate, naming the first one given."""
    for name, given in used.items():
        if given:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(
                f"{flag} applies to logged A/B tests (--arm-column); an estimate of models from "
                f"logs does not use it. Drop {flag}, or add --arm-column."
            )


def _run_estimate(
    data: Path | str,
    *,
    report: Path | None,
    markdown: Path | None,
    html: Path | None,
    json_output: bool,
    window: str | None,
    **options: Any,
) -> None:
    """Estimate the A/B test of two policies from logs, write and print the report, exit."""
    from recsim_cli.cli import console
    from recsim_cli.experiment.arms import parse_window
    from recsim_cli.experiment.markdown import offpolicy_markdown
    from recsim_cli.experiment.offpolicy_abtest import run_offpolicy_abtest

    bounds = None if window is None else parse_window(window)
    with console.progress_bar(enabled=not json_output) as progress:
        result = run_offpolicy_abtest(data, window=bounds, progress=progress, **options)
    _write_files(report, result.to_dict, markdown, lambda: offpolicy_markdown(result), html)
    if json_output:
        console.print_json(result.to_dict())
    else:
        console.out.print(render_offpolicy(result))
    if result.exit_code:
        raise typer.Exit(int(result.exit_code))


def render_offpolicy(result: OffPolicyReport) -> Group:
    """Render an estimate: the metrics with their evidence, diagnostics, checks, decision."""
    from rich.console import Group, RenderableType
    from rich.table import Table
    from rich.text import Text

    from recsim_cli.experiment.markdown import (
        format_number,
        format_p,
        format_percent,
        relative_lift,
    )
    from recsim_cli.times import format_ts

    analysis = result.result
    c, t = analysis.settings.control, analysis.settings.treatment
    start, end = result.window
    counts = result.counts
    level = f"{100 * (1 - analysis.settings.alpha):g}% CI"
    parts: list[RenderableType] = [
        Text(
            f"recsim abtest (estimated from logs): {t} (treatment) vs {c} (control), "
            f"{result.estimator} estimator, {result.design} design; window {format_ts(start)} "
            f"to {format_ts(end)}: {counts['users']:,} users, {counts['sessions']:,} sessions, "
            f"{counts['impressions']:,} impressions",
            style="bold",
        )
    ]
    table = Table(title="metrics", title_justify="left")
    for column in ("metric", "evidence", c, t, f"lift ({level})", "p", "verdict"):
        table.add_column(column, overflow="fold")
    for m in analysis.metrics:
        table.add_row(
            m.metric + ("" if m.role == "primary" else f" ({m.role})"),
            m.evidence or "-",
            format_number(m.control.estimate),
            format_number(m.treatment.estimate),
            relative_lift(m),
            format_p(m.adjusted_p_value if m.adjusted_p_value is not None else m.p_value),
            result.verdict_of(m),
        )
    parts.append(table)
    if result.slate_breakdown:
        slates = Table(
            title="per slate index (the arm's slate k, on sessions that reached k in the logs)",
            title_justify="left",
        )
        for column in ("slate", "metric", c, t, f"lift ({level})"):
            slates.add_column(column)
        for row in result.slate_breakdown:
            ci = row["relative_ci"]
            lift = (
                "undefined"
                if row["relative"] is None or ci is None
                else (
                    f"{format_percent(row['relative'])} ({format_percent(ci[0])} to "
                    f"{format_percent(ci[1])})"
                )
            )
            slates.add_row(
                str(row["slate"]),
                row["metric"],
                format_number(row["control"]),
                format_number(row["treatment"]),
                lift,
            )
        parts.append(slates)
    weights = Table(title="importance weights", title_justify="left")
    for column in ("arm", "ESS", "non-zero", "max", "mean (95% CI)", "unlogged items"):
        weights.add_column(column)
    for label, d in result.diagnostics.items():
        if d is None:
            continue
        lo, hi = d.mean_weight_ci
        weights.add_row(
            label,
            f"{d.effective_sample_size:,.0f}",
            f"{100 * d.nonzero_share:.2f}%",
            format_number(d.max_weight),
            f"{d.mean_weight:.3f} ({lo:.3f} to {hi:.3f})",
            f"{100 * d.unlogged_share:.1f}%",
        )
    if weights.row_count:
        parts.append(weights)
    parts.append(Text("Health checks:", style="bold"))
    for check in analysis.health:
        mark, style = ("✓", "green") if check.passed else ("✗", "red")
        parts.append(Text(f"  {mark} {check.detail}", style=style))
    for warning in result.warnings:
        parts.append(Text(f"Warning: {warning}", style="yellow"))
    parts.append(
        Text(
            "Evidence: off-policy numbers reweight logged impressions; model-based numbers come "
            "from a session model fit on the logs before the window and cannot make a gate ship.",
            style="dim",
        )
    )
    if result.decision is None:
        parts.append(Text("No gate given (--gate): results only, exit 0.", style="bold"))
    else:
        verdict = result.decision.verdict.replace("_", " ")
        style = "green" if result.decision.verdict == "ship" else "red"
        evidence = f", {result.decision.evidence} evidence" if result.decision.evidence else ""
        parts.append(
            Text(
                f"Decision: {verdict} (exit {int(result.exit_code)}{evidence})",
                style=f"bold {style}",
            )
        )
        parts += [Text(f"  - {reason}") for reason in result.decision.reasons]
    return Group(*parts)
