"""`recsim evaluate`: offline metrics of registry models and recommendation files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from recsim_cli.cli.options import (
    DEFAULT_REGISTRY,
    EngineOption,
    RegistryDir,
    Seed,
    SparkConfOption,
    SparkMasterOption,
    engine_config,
)
from recsim_cli.locations import as_location
from recsim_cli.spark.session import DEFAULT_MASTER

if TYPE_CHECKING:
    from rich.console import Group

    from recsim_cli.evaluate import EvalReport


def evaluate_command(
    models: Annotated[
        list[str] | None,
        typer.Argument(help="Registry models (names or aliases) to evaluate.", show_default=False),
    ] = None,
    *,
    recs: Annotated[
        list[Path] | None,
        typer.Option(
            "--recs",
            metavar="FILE",
            help="Recommendations of any system: Parquet or CSV with user_id, item_id and rank "
            "or score (repeatable).",
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            metavar="DIR|URL",
            help="Dataset with the held-out logs; with --engine spark also a URL (hdfs://..., "
            "s3a://...). \\[default: the first model's dataset, else recsim-data]",
            envvar="RECSIM_DATA",
            show_default=False,
        ),
    ] = None,
    registry: RegistryDir = DEFAULT_REGISTRY,
    k: Annotated[
        str, typer.Option("--k", metavar="K,K", help="Cut-offs, comma-separated.")
    ] = "5,10,20",
    metrics: Annotated[
        str,
        typer.Option("--metrics", metavar="NAMES", help="Metrics, comma-separated."),
    ] = "precision,recall,map,ndcg,mrr,hit_rate",
    relevance: Annotated[
        str,
        typer.Option(
            "--relevance",
            metavar="clicked|watched:F",
            help="What counts as relevant: a click, or a watch of at least fraction F.",
        ),
    ] = "clicked",
    map_denominator: Annotated[
        str,
        typer.Option(
            "--map-denominator",
            metavar="min|relevant",
            help="AP@k divides by min(k, |R|), or by |R| (= trec_eval map_cut).",
        ),
    ] = "min",
    include_seen: Annotated[
        bool,
        typer.Option(
            "--include-seen", help="Keep items users clicked before the window in the truth."
        ),
    ] = False,
    by: Annotated[
        str | None,
        typer.Option(
            "--by", metavar="COLUMN", help="Break metrics down by this event column, e.g. device."
        ),
    ] = None,
    test_days: Annotated[
        int,
        typer.Option("--test-days", help="Held-out days when only files are evaluated.", min=1),
    ] = 2,
    n_candidates: Annotated[
        int | None,
        typer.Option(
            "--n-candidates",
            metavar="N",
            help="Candidate-stage recall at N. \\[default: each model's own]",
            min=1,
            show_default=False,
        ),
    ] = None,
    bootstrap: Annotated[
        int,
        typer.Option("--bootstrap", metavar="N", help="Add a Poisson-bootstrap CI (N resamples)."),
    ] = 0,
    permutations: Annotated[
        int,
        typer.Option(
            "--permutations", metavar="N", help="Add a paired sign-flip test with N flips."
        ),
    ] = 0,
    per_user: Annotated[
        Path | None,
        typer.Option("--per-user", metavar="FILE.parquet", help="Write every user's metrics."),
    ] = None,
    json_file: Annotated[
        Path | None,
        typer.Option("--json", metavar="FILE", help="Write the report as JSON ('-' for stdout)."),
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            metavar="FILE",
            help="Write a self-contained HTML report with plots (needs recsim\\[report]).",
            dir_okay=False,
        ),
    ] = None,
    seed: Seed = 0,
    engine: EngineOption = "polars",
    spark_master: SparkMasterOption = DEFAULT_MASTER,
    spark_conf: SparkConfOption = None,
) -> None:
    """Measure precision, recall, MAP, NDCG, MRR and hit rate on the held-out window.

    Every mean has a 95% CI over users; with two or more inputs each pair is
    compared per user (paired t-test, Holm across metrics and k). Definitions:
    docs/metrics.md; the HTML report: docs/reports.md.

    Example: recsim evaluate pop als-lgbm --k 10
    """
    from recsim_cli.cli import console
    from recsim_cli.evaluate import Relevance, evaluate
    from recsim_cli.io import dumps_json, write_bytes_atomic, write_parquet_atomic

    if html is not None:
        from recsim_cli.report.render import require_report_extra

        require_report_extra()  # before the work, not after it
    chosen, spark = engine_config(engine, spark_master, spark_conf)
    to_stdout = json_file is not None and str(json_file) == "-"
    with console.progress_bar(enabled=not to_stdout) as progress:
        report = evaluate(
            models or [],
            recs or [],
            data=None if data is None else as_location(data),
            registry=registry,
            ks=k,
            metrics=metrics,
            relevance=Relevance.parse(relevance),
            map_denominator=map_denominator,  # type: ignore[arg-type]
            include_seen=include_seen,
            by=by,
            test_days=test_days,
            bootstrap=bootstrap,
            permutations=permutations,
            seed=seed,
            n_candidates=n_candidates,
            progress=progress,
            engine=chosen,
            spark=spark,
        )
    if per_user is not None:
        write_parquet_atomic(report.per_user, per_user)
    document = dumps_json(report.to_dict())
    if html is not None:
        import json

        from recsim_cli.report.evaluate import render_evaluate
        from recsim_cli.report.render import write_html

        # Rendered from the JSON text, so `recsim report` on the saved JSON gives the same bytes.
        write_html(html, render_evaluate(json.loads(document)))
    if to_stdout:
        console.print_json(report.to_dict())
        return
    if json_file is not None:
        write_bytes_atomic(json_file, document.encode("utf-8"))
    console.out.print(render(report))
    if html is not None:
        console.out.print(f"HTML report written to {html}", markup=False, highlight=False)


def _ci(mean: float, low: float, high: float) -> str:
    import math

    if not math.isfinite(mean):
        return "-"
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{mean:.4f}"
    # t-intervals are symmetric: mean ± half-width reads shorter than (low–high)
    return f"{mean:.4f}±{(high - low) / 2:.4f}"


def render(report: EvalReport) -> Group:
    """One table per k (inputs x metrics, 95% CIs), then stage facts, segments and pairs."""
    from rich.console import Group, RenderableType
    from rich.table import Table

    from recsim_cli.cli.console import frame_table
    from recsim_cli.metrics import metric_column
    from recsim_cli.times import format_ts

    start, end = format_ts(report.window_start), format_ts(report.window_end)
    parts: list[RenderableType] = [
        f"recsim evaluate: {report.users:,} users with a relevant item "
        f"({report.relevance.label}) in {start} .. {end}, {report.new_users:,} of them new; "
        f"{report.relevant_pairs:,} relevant (user, item) pairs"
    ]
    for k in report.ks:
        table = Table(title=f"@{k}: mean ± 95% CI over users", title_justify="left")
        table.add_column("input")
        for metric in report.metrics:
            table.add_column(metric, justify="right")
        for result in report.inputs:
            cells = []
            for metric in report.metrics:
                ci = result.means[metric_column(metric, k)]
                cells.append(_ci(ci.mean, ci.low, ci.high))
            table.add_row(result.label, *cells)
        parts.append(table)
    facts = []
    for result in report.inputs:
        recall = result.candidate_recall
        facts.append(
            (
                result.label,
                result.kind,
                "-" if recall is None else _ci(recall.mean, recall.low, recall.high),
                result.coverage,
                result.fresh_share,
                result.users_without_recommendations,
                result.users_without_relevant,
            )
        )
    parts.append(
        frame_table(
            f"lists (top {max(report.ks)})",
            [
                "input",
                "kind",
                "candidate recall",
                "coverage",
                "fresh share",
                "no list",
                "listed, no relevant",
            ],
            facts,
        )
    )
    k_mid = report.ks[len(report.ks) // 2]
    for segmentation in report.inputs[0].segments:
        rows = []
        for result in report.inputs:
            for value, cis in result.segments[segmentation].items():
                first = next(iter(cis.values()), None)
                rows.append(
                    (
                        result.label,
                        value,
                        0 if first is None else first.n,
                        *(cis[metric_column(m, k_mid)].mean for m in report.metrics),
                    )
                )
        parts.append(
            frame_table(
                f"by {segmentation} (@{k_mid}, means)",
                ["input", "segment", "users", *report.metrics],
                rows,
            )
        )
    for base, other, tests in report.pairs:
        rows = [
            (
                t.metric,
                _ci(t.difference, t.low, t.high),
                t.p_value,
                t.adjusted_p,
                *(() if t.permutation_p is None else (t.permutation_p,)),
            )
            for t in tests
        ]
        header = ["metric", "difference ± 95% CI", "paired t p", "Holm p"]
        if report.permutations:
            header.append("sign-flip p")
        parts.append(frame_table(f"{other} minus {base}, per user", header, rows))
    parts.append(f"evaluated in {report.seconds:.2f} s")
    return Group(*parts)
