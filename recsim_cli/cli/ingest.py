"""`recsim ingest`: validate, normalise, sessionise and store logs as a dataset.

Only typer and light recsim modules are imported at module level; polars and
the ingest library load inside the command, so `recsim --help` stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from recsim_cli.cli.options import (
    DEFAULT_DATA_LOCATION,
    DataLocation,
    EngineOption,
    JsonFlag,
    SparkConfOption,
    SparkMasterOption,
    engine_config,
)
from recsim_cli.errors import UserError
from recsim_cli.locations import as_location
from recsim_cli.spark.session import DEFAULT_MASTER

if TYPE_CHECKING:
    from rich.console import Group, RenderableType

    from recsim_cli.ingest import IngestSummary


def ingest_command(
    events: Annotated[
        str,
        typer.Argument(
            help="The log: CSV or TSV (optionally gzipped), Parquet or JSON lines; with "
            "--engine spark, a CSV or Parquet path Spark reads (local, hdfs://, s3a://).",
            show_default=False,
        ),
    ],
    *,
    items: Annotated[
        Path | None,
        typer.Option(
            "--items",
            help="Item catalogue: item_id, and optionally published_ts, duration_s, category.",
        ),
    ] = None,
    data: DataLocation = DEFAULT_DATA_LOCATION,
    column_map: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            metavar="NEW=OLD",
            help="Read your column OLD as the contract's column NEW, e.g. --map user_id=uid "
            "(repeatable).",
        ),
    ] = None,
    session_gap: Annotated[
        str | None,
        typer.Option(
            "--session-gap",
            metavar="DURATION",
            help="Inactivity that starts a new session, e.g. 30m, 1h, 90s, 45min "
            "(default 30m; with --append, the dataset's gap).",
            show_default=False,
        ),
    ] = None,
    append: Annotated[
        bool,
        typer.Option(
            "--append", help="Add the log to an existing dataset (a file already in it is skipped)."
        ),
    ] = False,
    replace: Annotated[
        bool,
        typer.Option("--replace", help="Rebuild an existing dataset from these files only."),
    ] = False,
    json_output: JsonFlag = False,
    engine: EngineOption = "polars",
    spark_master: SparkMasterOption = DEFAULT_MASTER,
    spark_conf: SparkConfOption = None,
) -> None:
    """Validate, normalise, sessionise and store interaction logs as a dataset.

    Rows that break the data contract go to the dataset's rejected rows with a
    reason; exact duplicate events are dropped and counted; sessions come from
    the log's session_id or from an inactivity gap. Re-ingesting the same file
    changes nothing. The data contract and every rule: docs/data.md.

    Example: recsim ingest sample_data/events.csv.gz --items sample_data/items.csv.gz
    """
    from recsim_cli.cli import console
    from recsim_cli.ingest import Mode, ingest, parse_duration
    from recsim_cli.ingest.pipeline import CONTRACT_COLUMNS
    from recsim_cli.readers import parse_column_map

    if append and replace:
        raise UserError("--append and --replace contradict each other; give only one.")
    mode: Mode = "append" if append else "replace" if replace else "new"
    chosen, spark = engine_config(engine, spark_master, spark_conf)
    mapping = parse_column_map(column_map or [], CONTRACT_COLUMNS)
    gap = parse_duration(session_gap) if session_gap is not None else None
    with console.progress_bar(enabled=not json_output) as progress:
        summary = ingest(
            events if chosen == "spark" else Path(events),
            items=items,
            data=as_location(data),
            column_map=mapping,
            session_gap=gap,
            mode=mode,
            progress=progress,
            engine=chosen,
            spark=spark,
        )
    if json_output:
        console.print_json(summary.to_dict())
    else:
        console.out.print(render(summary))


def render(summary: IngestSummary) -> Group:
    """Render a summary as rich tables: the dataset, then what this run refused."""
    from datetime import timedelta

    from rich.console import Group

    from recsim_cli.cli.console import frame_table, key_value_table
    from recsim_cli.ingest import format_duration

    stats = summary.stats
    title = f"recsim ingest: {summary.status} ({summary.data_dir}, version {summary.version})"
    rows: list[tuple[str, object]] = [
        ("events stored", stats.rows),
        ("added by this run", summary.rows_added),
        ("users", stats.users),
        ("items", stats.items),
        ("sessions", stats.sessions),
        ("sessions per user", stats.sessions_per_user),
        ("time range", f"{stats.ts_min} .. {stats.ts_max}"),
        ("CTR", stats.ctr),
        ("mean watch time of clicks (s)", stats.mean_watch_time_s),
        ("catalogue items", stats.catalogue_items),
        ("rejected this run", summary.rows_rejected),
        ("duplicates dropped this run", summary.duplicates_dropped),
        (
            "session ids",
            "from the log"
            if summary.session_ids == "log"
            else f"gap {format_duration(timedelta(seconds=summary.session_gap_s))}",
        ),
    ]
    parts: list[RenderableType] = [key_value_table(title, rows)]
    reasons = [
        (reason, table.file, count)
        for table in (summary.events, summary.items)
        if table is not None
        for reason, count in sorted(table.rejected_by_reason.items())
    ]
    if reasons:
        parts.append(frame_table("rejected this run", ["reason", "file", "rows"], reasons))
    for table in (summary.events, summary.items):
        if table is not None and table.unknown_columns:
            parts.append(
                f"{table.file}: ignored unknown columns {', '.join(table.unknown_columns)}"
            )
    return Group(*parts)
