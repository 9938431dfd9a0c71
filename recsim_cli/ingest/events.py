"""Stage 1 of storing events: stream a log through validation into user partitions.

Every good row is sunk into the partition folder ``hash(user_id) % P``, in
bounded memory, by polars' streaming engine; refused rows go to one file, in
file order, and from there into the version's rejected part. With
``--append`` the stored events are streamed into the same user partitions.
Stage 2 (`partitions`) then stores one user partition at a time. ``P`` grows
with the data (`partition_count`), so a partition's size does not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import polars as pl

from recsim_cli.dataset import EVENTS_SCHEMA, REJECTED_SCHEMA
from recsim_cli.errors import InputFileError, InternalError
from recsim_cli.ingest.parse import RAW_PREFIX, REASON, parse_events, raw_columns
from recsim_cli.ingest.store import VersionTarget
from recsim_cli.ingest.values import sniff_ts_formats
from recsim_cli.readers import ROW, SourceTable, first_line

PARTITION_ROWS: Final = 1_000_000
"""Target events per partition in stage 2; bounds its memory."""
STAGING_COMPRESSION: Final = "lz4"
"""Stage-1 files are read once and deleted: the fastest codec wins."""
STAGING_ROW_GROUP: Final = 16_384
"""Small row groups keep each open partition writer's buffer small, so stage 1's
memory hardly grows with the number of partitions."""
HASH_SEED: Final = 0x5EC5
PART_KEY: Final = "_part"
_SNIFF_ROWS: Final = 2_000


def partition_count(rows: int, partition_rows: int = PARTITION_ROWS) -> int:
    """Return the number of user partitions for about ``rows`` events (at least 1)."""
    return max(1, math.ceil(rows / partition_rows))


def user_partition(partitions: int) -> pl.Expr:
    """The partition of a row's user: a seeded hash of user_id modulo ``partitions``.

    The hash is deterministic for a given polars version (pinned in
    constraints.txt); stored events are re-partitioned on every run, so a
    different hash after an upgrade changes file contents, never correctness.
    """
    return (pl.col("user_id").hash(HASH_SEED) % partitions).cast(pl.UInt32)


@dataclass(frozen=True)
class Staged:
    """What stage 1 made of one input file."""

    rows_read: int
    rows_valid: int
    rejected_by_reason: dict[str, int]
    folders: tuple[Path, ...]
    rejected: Path | None


def check_usable(path: Path | str, rows: int, reasons: dict[str, int]) -> None:
    """Refuse a log with no rows, or whose every row was refused (``reasons``: counts by reason).

    Both engines call it, so the sentence is the same on both.
    """
    if rows == 0:
        raise InputFileError(f"{path} has no rows; give a file with at least one event.")
    if rows == sum(reasons.values()):
        reason, count = max(reasons.items(), key=lambda kv: (kv[1], kv[0]))
        raise InputFileError(
            f"{path}: none of its {rows:,} rows is usable ({count:,} with "
            f"'{reason}'); check its columns and formats against docs/data.md."
        )


def stage_events(source: SourceTable, staging: Path, partitions: int) -> Staged:
    """Stream ``source`` through validation into user partitions under ``staging``.

    Two passes, each one streaming read with two sinks: the fast pass parses
    the whole log with the fast forms of the value parsers and sets aside the
    rows they cannot take (usually few); the tolerant pass parses only those,
    and what it still cannot take is refused.
    """
    formats = sniff_ts_formats(_ts_sample(source))
    name = str(source.path)
    staging.mkdir(parents=True, exist_ok=True)
    fast = parse_events(source.frame, formats, source=name, fast=True)
    deferred = staging / "deferred.parquet"
    _collect(
        source,
        _sink_good(fast, staging / "fast", partitions),
        _lazy_sink(
            fast.filter(pl.col(REASON).is_not_null()).select(ROW, *raw_columns(fast)), deferred
        ),
    )
    folders = (staging / "fast", staging / "slow")
    reasons: dict[str, int] = {}
    rejected = None
    if _count([deferred]):
        slow = parse_events(pl.scan_parquet(deferred), formats, source=name)
        rejected = staging / "rejected.parquet"
        _collect(
            source,
            _sink_good(slow, folders[1], partitions),
            _lazy_sink(
                slow.filter(pl.col(REASON).is_not_null()).select(
                    ROW, REASON, *raw_columns(slow, keep_prefix=True)
                ),
                rejected,
            ),
        )
        counts = pl.scan_parquet(rejected).group_by(REASON).len().collect()
        reasons = dict(zip(counts[REASON].to_list(), counts["len"].to_list(), strict=True))
    valid = _count([f for folder in folders for f in partition_files(folder, range(partitions))])
    rows = valid + sum(reasons.values())
    check_usable(source.path, rows, reasons)
    return Staged(rows, valid, reasons, folders, rejected if reasons else None)


def _sink_good(parsed: pl.LazyFrame, folder: Path, partitions: int) -> pl.LazyFrame:
    """A lazy sink of the good rows of ``parsed`` into user partitions under ``folder``."""
    good = parsed.filter(pl.col(REASON).is_null()).select(EVENTS_SCHEMA.names())
    keyed = good.with_columns(user_partition(partitions).alias(PART_KEY))
    return _lazy_sink(keyed, pl.PartitionBy(folder, key=PART_KEY, include_key=False))


def _lazy_sink(frame: pl.LazyFrame, target: Path | pl.PartitionBy) -> pl.LazyFrame:
    """A sink of ``frame`` to be run by `_collect` together with others."""
    sink = frame.sink_parquet(
        target,
        compression=STAGING_COMPRESSION,
        row_group_size=STAGING_ROW_GROUP,
        mkdir=True,
        lazy=True,
    )
    if sink is None:
        raise InternalError("sink_parquet(lazy=True) returned no plan")
    return sink


def _collect(source: SourceTable, *sinks: pl.LazyFrame) -> None:
    """Run sinks that share one scan of ``source`` (polars reads it once for all)."""
    try:
        pl.collect_all(sinks)
    except pl.exceptions.PolarsError as exc:
        raise InputFileError(
            f"{source.path} cannot be read as {source.format.label} ({first_line(exc)}); "
            "fix the file or convert it to Parquet."
        ) from exc


def stage_stored(stored: pl.LazyFrame, staging: Path, partitions: int, derived: bool) -> None:
    """Stream the stored events into user partitions (dropping derived session ids)."""
    if derived:
        stored = stored.with_columns(pl.lit(None, pl.String).alias("session_id"))
    keyed = stored.with_columns(user_partition(partitions).alias(PART_KEY))
    pl.collect_all([_lazy_sink(keyed, pl.PartitionBy(staging, key=PART_KEY, include_key=False))])


def write_rejected(
    writer: VersionTarget, staged: Path | None, table: str, source: str
) -> list[str]:
    """Stream the refused rows of stage 1, in file order, into a rejected part."""
    if staged is None:
        return []
    target = writer.path(f"rejected/v{writer.version:06d}-{table}.parquet")
    rejected_frame(pl.scan_parquet(staged), table, source).sink_parquet(target)
    return [writer.relative(target)]


def rejected_frame(parsed: pl.LazyFrame, table: str, source: str) -> pl.LazyFrame:
    """Shape refused rows of a parsed frame as `REJECTED_SCHEMA` rows."""
    names = parsed.collect_schema().names()
    columns = {
        "table": pl.lit(table),
        "source": pl.lit(source),
        "row": pl.col(ROW),
        "reason": pl.col(REASON),
    }
    for name in REJECTED_SCHEMA.names()[4:]:
        raw = RAW_PREFIX + name
        columns[name] = pl.col(raw) if raw in names else pl.lit(None, pl.String)
    return parsed.select(
        expr.cast(REJECTED_SCHEMA[name]).alias(name) for name, expr in columns.items()
    )


def _ts_sample(source: SourceTable) -> pl.Series:
    try:
        return source.frame.select("ts").head(_SNIFF_ROWS).collect().to_series()
    except pl.exceptions.PolarsError:
        # The full read reports the problem, naming the file.
        return pl.Series("ts", [], pl.String)


def partition_files(staging: Path, partitions: Sequence[int] | range) -> list[Path]:
    """The stage-1 files of some partitions, in the order the sink wrote them."""
    found: list[Path] = []
    for index in partitions:
        folder = staging / f"{PART_KEY}={index}"
        if folder.is_dir():
            found.extend(sorted(folder.glob("*.parquet")))
    return found


def _count(files: Sequence[Path]) -> int:
    if not files:
        return 0
    return int(pl.scan_parquet(list(files)).select(pl.len()).collect().item())
