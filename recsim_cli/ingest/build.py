"""Build every file of a new dataset version from the inputs a run must read.

`build_version` writes the events (two stages, see `events`; with Spark,
`recsim_cli.spark.ingest` when the log was opened for Spark), the catalogue
(see `items`) and the rejected rows into the `VersionWriter`'s new version
folder, carries over what an append keeps, and returns the manifest that will
name the version once `VersionWriter.commit` swaps it in.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Literal

import polars as pl

from recsim_cli import __version__
from recsim_cli.dataset import Dataset, DatasetStats, Manifest, SessionIds, SourceRecord
from recsim_cli.errors import InternalError
from recsim_cli.ingest.events import partition_count, stage_events, stage_stored, write_rejected
from recsim_cli.ingest.items import ParsedItems, merge_items, read_items
from recsim_cli.ingest.partitions import StoredEvents, store_events
from recsim_cli.ingest.store import VersionTarget
from recsim_cli.ingest.summary import TableReport
from recsim_cli.progress import Progress
from recsim_cli.readers import SourceTable
from recsim_cli.spark.ingest_source import SparkSource


@dataclass(frozen=True)
class InputFile:
    """One input file, opened and fingerprinted."""

    table: Literal["events", "items"]
    source: SourceTable | SparkSource
    digest: Future[str]
    column_map: Mapping[str, str]

    @property
    def sha256(self) -> str:
        """The file's sha256, hashed in the background while other work runs."""
        return self.digest.result()

    def record(self, version: int, rows: int, rejected: int, duplicates: int) -> SourceRecord:
        """Return the manifest's record of this file, ingested into ``version``."""
        return SourceRecord(
            table=self.table,
            file=self.source.name,
            sha256=self.sha256,
            format=self.source.format.label,
            version=version,
            rows_read=rows,
            rows_rejected=rejected,
            duplicates_dropped=duplicates,
            unknown_columns=self.source.unknown_columns,
            column_map=self.column_map,
        )


@dataclass(frozen=True)
class _Outcome:
    """What building one table of the new version produced."""

    files: tuple[str, ...]
    rejected_files: tuple[str, ...]
    report: TableReport | None
    record: SourceRecord | None
    rejected_by_reason: Mapping[str, int]
    duplicates: int


def build_version(
    writer: VersionTarget,
    base: Manifest | None,
    *,
    todo: list[InputFile],
    gap: timedelta,
    session_ids: SessionIds,
    progress: Progress,
    partition_rows: int,
    workers: int,
) -> tuple[Manifest, tuple[TableReport | None, TableReport | None]]:
    """Write every file of the new version; return its manifest and this run's reports."""
    events_in = next((i for i in todo if i.table == "events"), None)
    items_in = next((i for i in todo if i.table == "items"), None)
    stored = writer.stored(base) if base is not None else None
    carried = tuple(writer.carry(f) for f in base.rejected_files) if base else ()

    if events_in is not None and isinstance(events_in.source, SparkSource):
        events, event_stats, partitions = _build_events_spark(
            writer,
            stored,
            events_in=events_in,
            source=events_in.source,
            gap=gap,
            session_ids=session_ids,
            progress=progress,
            partition_rows=partition_rows,
        )
    elif events_in is not None:
        partitions = partition_count(
            (base.stats.rows if base else 0) + events_in.source.estimated_rows, partition_rows
        )
        events, totals = _build_events(
            writer,
            stored,
            events_in=events_in,
            partitions=partitions,
            gap=gap,
            session_ids=session_ids,
            progress=progress,
            workers=workers,
        )
        event_stats = totals.stats(0, 0)
    elif base is None:
        raise InternalError("only an append may skip the events file")
    else:
        partitions = base.partitions
        events = _Outcome(tuple(writer.carry(f) for f in base.events_files), (), None, None, {}, 0)
        event_stats = base.stats
    items, catalogue = _build_items(writer, stored, items_in, progress)

    reasons = {k: dict(v) for k, v in base.rejected_by_reason.items()} if base else {}
    duplicates = dict(base.duplicates_dropped) if base else {}
    for table, outcome in (("events", events), ("items", items)):
        if outcome.record is not None:
            counts = reasons.setdefault(table, {})
            for reason, count in outcome.rejected_by_reason.items():
                counts[reason] = counts.get(reason, 0) + count
            duplicates[table] = duplicates.get(table, 0) + outcome.duplicates
    records = [r for r in (events.record, items.record) if r is not None]
    stats = replace(
        event_stats,
        catalogue_items=catalogue,
        rejected_rows=sum(sum(c.values()) for c in reasons.values()),
    )
    manifest = Manifest(
        version=writer.version,
        session_gap_s=gap.total_seconds(),
        session_ids=session_ids,
        partitions=partitions,
        events_files=events.files,
        items_file=items.files[0] if items.files else None,
        rejected_files=tuple(sorted((*carried, *events.rejected_files, *items.rejected_files))),
        sources=(*(base.sources if base else ()), *records),
        stats=stats,
        rejected_by_reason=reasons,
        duplicates_dropped=duplicates,
        written_by={"recsim": __version__, "polars": pl.__version__, **_spark_version(events_in)},
    )
    return manifest, (events.report, items.report)


def _build_events(
    writer: VersionTarget,
    stored: Dataset | None,
    *,
    events_in: InputFile,
    partitions: int,
    gap: timedelta,
    session_ids: SessionIds,
    progress: Progress,
    workers: int,
) -> tuple[_Outcome, StoredEvents]:
    """Stage the new log (and the stored events), then store them partition by partition."""
    source = events_in.source
    if not isinstance(source, SourceTable):
        raise InternalError("the polars engine reads a file opened by scan_table")
    derived = session_ids == "derived"
    progress("read events", 0, 1)
    staged = stage_events(source, writer.staging / "events", partitions)
    stagings = list(staged.folders)
    rejected = write_rejected(writer, staged.rejected, "events", source.name)
    progress("read events", 1, 1)
    if stored is not None:
        progress("read stored", 0, 1)
        stagings.append(writer.staging / "stored")
        stage_stored(stored.events(), stagings[-1], partitions, derived)
        progress("read stored", 1, 1)
    totals = store_events(
        writer,
        sources=stagings,
        partitions=partitions,
        gap=gap,
        derived=derived,
        progress=progress,
        workers=workers,
    )
    rows_before = stored.stats.rows if stored is not None else 0
    rejected_rows = sum(staged.rejected_by_reason.values())
    report = TableReport(
        file=source.name,
        format=source.format.label,
        rows_read=staged.rows_read,
        rows_added=totals.rows - rows_before,
        rejected_by_reason=staged.rejected_by_reason,
        duplicates_dropped=totals.duplicates,
        unknown_columns=source.unknown_columns,
    )
    record = events_in.record(writer.version, staged.rows_read, rejected_rows, totals.duplicates)
    outcome = _Outcome(
        tuple(totals.files),
        tuple(rejected),
        report,
        record,
        staged.rejected_by_reason,
        totals.duplicates,
    )
    return outcome, totals


def _build_events_spark(
    writer: VersionTarget,
    stored: Dataset | None,
    *,
    events_in: InputFile,
    source: SparkSource,
    gap: timedelta,
    session_ids: SessionIds,
    progress: Progress,
    partition_rows: int,
) -> tuple[_Outcome, DatasetStats, int]:
    """Store the new log (and the stored events) with Spark (`recsim_cli.spark.ingest`)."""
    from recsim_cli.spark.ingest import store_events as store_events_spark

    done = store_events_spark(
        writer,
        stored,
        source,
        gap=gap,
        derived=session_ids == "derived",
        partition_rows=partition_rows,
        progress=progress,
    )
    rows_before = stored.stats.rows if stored is not None else 0
    report = TableReport(
        file=source.name,
        format=source.format.label,
        rows_read=done.rows_read,
        rows_added=done.stats.rows - rows_before,
        rejected_by_reason=done.rejected_by_reason,
        duplicates_dropped=done.duplicates,
        unknown_columns=source.unknown_columns,
    )
    rejected_rows = sum(done.rejected_by_reason.values())
    record = events_in.record(writer.version, done.rows_read, rejected_rows, done.duplicates)
    outcome = _Outcome(
        done.files,
        done.rejected_files,
        report,
        record,
        done.rejected_by_reason,
        done.duplicates,
    )
    return outcome, done.stats, done.partitions


def _spark_version(events_in: InputFile | None) -> dict[str, str]:
    """``{"spark": version}`` when this run stored the events with Spark."""
    if events_in is None or not isinstance(events_in.source, SparkSource):
        return {}
    import pyspark

    return {"spark": pyspark.__version__}


def _build_items(
    writer: VersionTarget, stored: Dataset | None, items_in: InputFile | None, progress: Progress
) -> tuple[_Outcome, int]:
    """Validate the new catalogue and merge it with the stored one (or carry that over)."""
    if items_in is None:
        if stored is None or stored.manifest.items_file is None:
            return _Outcome((), (), None, None, {}, 0), 0
        carried = writer.carry(stored.manifest.items_file)
        return _Outcome((carried,), (), None, None, {}, 0), stored.stats.catalogue_items
    progress("read items", 0, 1)
    if not isinstance(items_in.source, SourceTable):
        raise InternalError("the catalogue is read by polars")
    parsed = read_items(items_in.source)
    table = parsed.items
    if stored is not None and stored.has_items:
        table = merge_items(stored.items().collect(), table)
    target = writer.path("items.parquet")
    table.write_parquet(target, compression="zstd", statistics=True)
    rejected: tuple[str, ...] = ()
    if not parsed.rejected.is_empty():
        path = writer.path(f"rejected/v{writer.version:06d}-items.parquet")
        parsed.rejected.write_parquet(path, compression="zstd", statistics=True)
        rejected = (writer.relative(path),)
    rows_before = stored.stats.catalogue_items if stored is not None else 0
    report = _items_report(items_in, parsed, table.height - rows_before)
    record = items_in.record(
        writer.version, parsed.rows_read, parsed.rejected.height, parsed.duplicates
    )
    progress("read items", 1, 1)
    outcome = _Outcome(
        (writer.relative(target),),
        rejected,
        report,
        record,
        parsed.rejected_by_reason,
        parsed.duplicates,
    )
    return outcome, table.height


def _items_report(items_in: InputFile, parsed: ParsedItems, added: int) -> TableReport:
    return TableReport(
        file=items_in.source.name,
        format=items_in.source.format.label,
        rows_read=parsed.rows_read,
        rows_added=added,
        rejected_by_reason=parsed.rejected_by_reason,
        duplicates_dropped=parsed.duplicates,
        unknown_columns=items_in.source.unknown_columns,
    )
