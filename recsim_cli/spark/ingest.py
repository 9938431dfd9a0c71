"""Store a log's events with Spark: ``recsim ingest --engine spark`` (see docs/scale.md).

The same two stages as the polars engine (`recsim_cli.ingest.events`,
`partitions`), as Spark jobs:

1. Parse (`ingest_parse`) and write every row once into the staging folder,
   typed, with its reason; the counts by reason and the rows per input split
   (aggregates) reach the driver. Refused rows get their record number from
   those counts and are written, in file order, to the rejected part.
2. The good rows (and, on append, the stored events) are hash-partitioned by
   user_id into the dataset's partitions; a window per user ordered by
   `SORT_KEY` drops duplicates (a row equal on `IDENTITY` to the previous one)
   and derives sessions (lag of ts ``>= gap``); each partition is written
   sorted as one part, then moved to ``events/part-NNNNN.parquet``.

Only aggregates reach the driver: the dataset statistics are computed by
Spark from the written parts. Spark hashes users differently from polars, so
a user may land in another part than on polars; the events are the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import reduce
from typing import TYPE_CHECKING, Final

from recsim_cli.dataset import EVENTS_SCHEMA, REJECTED_SCHEMA, Dataset, DatasetStats
from recsim_cli.errors import InputFileError
from recsim_cli.ingest.events import check_usable, partition_count
from recsim_cli.ingest.parse import RAW_PREFIX, REASON
from recsim_cli.ingest.sessions import IDENTITY, SORT_KEY
from recsim_cli.ingest.store import VersionTarget
from recsim_cli.ingest.values import check_types
from recsim_cli.progress import Progress
from recsim_cli.spark.ingest_source import SparkSource, read_source, spark_error
from recsim_cli.spark.session import spark_session

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

ROW_ID: Final = "_row_id"
_SPLIT_BITS: Final = 33
"""`monotonically_increasing_id` puts the split (partition) index above bit 33."""


@dataclass(frozen=True)
class SparkEvents:
    """What storing one log with Spark produced (the counterpart of stage 1 and 2's outputs)."""

    rows_read: int
    rejected_by_reason: dict[str, int]
    rejected_files: tuple[str, ...]
    files: tuple[str, ...]
    stats: DatasetStats
    duplicates: int
    partitions: int


def store_events(
    writer: VersionTarget,
    stored: Dataset | None,
    source: SparkSource,
    *,
    gap: timedelta,
    derived: bool,
    partition_rows: int,
    progress: Progress,
) -> SparkEvents:
    """Parse, validate, de-duplicate, sessionise and store ``source`` (and the stored events)."""
    from pyspark.sql import functions as F

    check_types(source.schema, source.path)
    spark = spark_session(source.config)
    progress("read events", 0, 1)
    staged = _stage(spark, source, writer.staging_uri("spark-parsed"))
    splits, reasons = _counts(staged)
    rows = sum(splits.values())
    valid = rows - sum(reasons.values())
    check_usable(source.path, rows, reasons)
    rejected = _write_rejected(spark, writer, staged, splits, source.name) if reasons else ()
    progress("read events", 1, 1)

    progress("store events", 0, 1)
    base_rows = stored.stats.rows if stored is not None else 0
    partitions = partition_count(base_rows + (source.estimated_rows or rows), partition_rows)
    events = staged.filter(F.col(REASON).isNull()).select(*EVENTS_SCHEMA.names())
    if stored is not None:
        events = events.unionByName(_stored(spark, stored, derived))
    out = writer.staging_uri("spark-events")
    _finish(events, partitions, gap, derived).write.option("compression", "zstd").parquet(out)
    stats = _stats(spark.read.parquet(out))
    files = writer.adopt_parts("spark-events", "events/part-{:05d}.parquet")
    progress("store events", 1, 1)
    return SparkEvents(
        rows_read=rows,
        rejected_by_reason=reasons,
        rejected_files=rejected,
        files=files,
        stats=stats,
        duplicates=valid + base_rows - stats.rows,
        partitions=partitions,
    )


def _stage(spark: SparkSession, source: SparkSource, folder: str) -> DataFrame:
    """Parse every row once and write it to the URI ``folder``; return the staged rows."""
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F

    from recsim_cli.spark.ingest_parse import parse_events

    parsed = parse_events(read_source(spark, source, ROW_ID), source.schema, [ROW_ID])
    refused = F.col(REASON).isNotNull()
    raw = [c for c in parsed.columns if c.startswith(RAW_PREFIX)]
    staged = parsed.select(
        ROW_ID,
        *EVENTS_SCHEMA.names(),
        REASON,
        *(F.when(refused, F.col(c)).alias(c) for c in raw),  # kept for refused rows only
    )
    try:
        staged.write.parquet(folder)
    except AnalysisException:
        raise
    except Exception as exc:  # the job reads the file: its errors are the file's
        raise InputFileError(
            f"{source.path} cannot be read as {source.format.label} ({spark_error(exc)}); "
            "fix the file or convert it to Parquet."
        ) from None
    return spark.read.parquet(folder)


def _counts(staged: DataFrame) -> tuple[dict[int, int], dict[str, int]]:
    """Rows per input split and refused rows per reason (one small aggregate)."""
    from pyspark.sql import functions as F

    split = F.shiftright(F.col(ROW_ID), _SPLIT_BITS).alias("split")
    splits: dict[int, int] = {}
    reasons: dict[str, int] = {}
    for row in staged.groupBy(split, REASON).count().collect():
        splits[row["split"]] = splits.get(row["split"], 0) + row["count"]
        if row[REASON] is not None:
            reasons[row[REASON]] = reasons.get(row[REASON], 0) + row["count"]
    return splits, reasons


def _write_rejected(
    spark: SparkSession,
    writer: VersionTarget,
    staged: DataFrame,
    splits: dict[int, int],
    source: str,
) -> tuple[str, ...]:
    """Write the refused rows, in file order, as the version's rejected part of the events."""
    from pyspark.sql import functions as F

    offsets, before = [], 0
    for split in sorted(splits):
        offsets.append((split, before))
        before += splits[split]
    table = spark.createDataFrame(offsets, "split bigint, offset bigint")
    mask = (1 << _SPLIT_BITS) - 1
    refused = (
        staged.filter(F.col(REASON).isNotNull())
        .withColumn("split", F.shiftright(F.col(ROW_ID), _SPLIT_BITS))
        .join(F.broadcast(table), "split")
    )
    names = set(staged.columns)
    columns = [
        F.lit("events").alias("table"),
        F.lit(source).alias("source"),
        (F.col("offset") + F.col(ROW_ID).bitwiseAND(F.lit(mask)) + 1).alias("row"),
        F.col(REASON).alias("reason"),
    ]
    for name in REJECTED_SCHEMA.names()[4:]:
        raw = RAW_PREFIX + name
        columns.append((F.col(raw) if raw in names else F.lit(None).cast("string")).alias(name))
    rows = refused.select(*columns).repartition(1).sortWithinPartitions("row")
    rows.write.option("compression", "zstd").parquet(writer.staging_uri("spark-rejected"))
    return writer.adopt_parts("spark-rejected", f"rejected/v{writer.version:06d}-events.parquet")


def _stored(spark: SparkSession, stored: Dataset, derived: bool) -> DataFrame:
    """The stored events, typed as new ones (derived session ids dropped: they are re-derived)."""
    from pyspark.sql import functions as F

    from recsim_cli.spark.ingest_parse import SPARK_TYPES

    files = [stored.uri(f) for f in stored.manifest.events_files]
    frame = spark.read.parquet(*files)
    return frame.select(
        *(
            (F.lit(None) if derived and name == "session_id" else F.col(name))
            .cast(SPARK_TYPES[dtype])
            .alias(name)
            for name, dtype in EVENTS_SCHEMA.items()
        )
    )


def _finish(events: DataFrame, partitions: int, gap: timedelta, derived: bool) -> DataFrame:
    """Partition by user, drop duplicates, derive sessions, sort each partition by `SORT_KEY`."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    order = [F.col(c).asc_nulls_last() for c in SORT_KEY[1:]]
    by_user = Window.partitionBy("user_id").orderBy(*order)
    # Sorted by SORT_KEY, a duplicate equals the previous row on IDENTITY (user_id: same window).
    repeat = reduce(
        lambda a, b: a & b, [F.col(c).eqNullSafe(F.lag(c).over(by_user)) for c in IDENTITY[1:]]
    )
    events = (
        events.repartition(partitions, "user_id")
        .withColumn("_repeat", F.coalesce(repeat, F.lit(False)))
        .filter(~F.col("_repeat"))
        .drop("_repeat")
    )
    key: tuple[str, ...] = SORT_KEY
    if derived:
        previous = F.lag("ts").over(by_user)
        gap_us = gap // timedelta(microseconds=1)
        start = previous.isNull() | (F.unix_micros("ts") - F.unix_micros(previous) >= gap_us)
        first = F.concat(F.col("user_id"), F.lit(":"), F.unix_seconds("ts").cast("string"))
        so_far = by_user.rowsBetween(Window.unboundedPreceding, Window.currentRow)
        session = F.last(F.when(start, first), ignorenulls=True).over(so_far)
        events = events.withColumn("session_id", session)
        key = IDENTITY  # unique after de-duplication: it orders the rows completely
    return events.select(*EVENTS_SCHEMA.names()).sortWithinPartitions(
        F.col("user_id").asc(), *(F.col(c).asc_nulls_last() for c in key[1:])
    )


def _stats(events: DataFrame) -> DatasetStats:
    """The dataset statistics of the stored events (one aggregate)."""
    from pyspark.sql import functions as F

    row = events.agg(
        F.count(F.lit(1)).alias("rows"),
        F.countDistinct("user_id").alias("users"),
        F.countDistinct("item_id").alias("items"),
        F.countDistinct("user_id", "session_id").alias("sessions"),
        F.sum(F.col("clicked").cast("bigint")).alias("clicks"),
        F.sum(F.when(F.col("clicked"), F.col("watch_time_s"))).alias("watch"),
        F.unix_micros(F.min("ts")).alias("ts_min"),
        F.unix_micros(F.max("ts")).alias("ts_max"),
    ).collect()[0]
    return DatasetStats(
        rows=int(row["rows"]),
        users=int(row["users"]),
        items=int(row["items"]),
        sessions=int(row["sessions"]),
        clicks=int(row["clicks"] or 0),
        watch_time_s=float(row["watch"] or 0.0),
        ts_min=_iso(row["ts_min"]),
        ts_max=_iso(row["ts_max"]),
        catalogue_items=0,
        rejected_rows=0,
    )


def _iso(micros: int | None) -> str | None:
    if micros is None:
        return None
    value = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    return value.isoformat().replace("+00:00", "Z")
