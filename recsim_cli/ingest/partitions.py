"""Stage 2 of storing events: one user partition at a time, sorted, de-duplicated, sessionised.

Each partition holds whole users (see `events.user_partition`), so it can be
finished on its own: load it, sort it, drop duplicates, derive sessions,
write it as one events part, and fold its statistics into the dataset's.
Peak memory is that of `WORKERS` partitions, whatever the size of the log.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

import polars as pl

from recsim_cli.dataset import EVENTS_SCHEMA, DatasetStats
from recsim_cli.ingest.events import partition_files
from recsim_cli.ingest.sessions import derive_sessions, drop_duplicates, sort_events
from recsim_cli.ingest.store import VersionTarget
from recsim_cli.progress import Progress

WORKERS: Final = 2
"""Partitions stage 2 works on at once; peak memory grows with it."""
ZSTD_LEVEL: Final = 1
"""zstd level of the stored parts: most of level 3's compression at far less CPU."""


@dataclass(frozen=True)
class PartStats:
    """Aggregates of one stored partition (whole users, so they add up across parts)."""

    rows: int
    users: int
    sessions: int
    clicks: int
    watch_time_s: float
    ts_min: datetime
    ts_max: datetime
    item_ids: pl.Series
    duplicates: int


@dataclass
class StoredEvents:
    """Stage 2's output: the parts written and the dataset's event statistics."""

    files: list[str] = field(default_factory=list)
    rows: int = 0
    users: int = 0
    sessions: int = 0
    clicks: int = 0
    watch_time_s: float = 0.0
    duplicates: int = 0
    ts_min: datetime | None = None
    ts_max: datetime | None = None
    item_ids: pl.Series = field(default_factory=lambda: pl.Series("item_id", [], pl.String))

    def add(self, part: PartStats) -> None:
        """Fold one partition into the totals (in partition order, so float sums repeat)."""
        self.rows += part.rows
        self.users += part.users
        self.sessions += part.sessions
        self.clicks += part.clicks
        self.watch_time_s += part.watch_time_s
        self.duplicates += part.duplicates
        self.ts_min = part.ts_min if self.ts_min is None else min(self.ts_min, part.ts_min)
        self.ts_max = part.ts_max if self.ts_max is None else max(self.ts_max, part.ts_max)
        self.item_ids = pl.concat([self.item_ids, part.item_ids]).unique()

    def stats(self, catalogue_items: int, rejected_rows: int) -> DatasetStats:
        """Return the dataset statistics these events give."""
        return DatasetStats(
            rows=self.rows,
            users=self.users,
            items=self.item_ids.len(),
            sessions=self.sessions,
            clicks=self.clicks,
            watch_time_s=self.watch_time_s,
            ts_min=_iso(self.ts_min),
            ts_max=_iso(self.ts_max),
            catalogue_items=catalogue_items,
            rejected_rows=rejected_rows,
        )


def store_events(
    writer: VersionTarget,
    *,
    sources: Sequence[Path],
    partitions: int,
    gap: timedelta,
    derived: bool,
    progress: Progress,
    workers: int = WORKERS,
) -> StoredEvents:
    """Stage 2: per user partition, sort, de-duplicate, sessionise and write an events part.

    ``workers`` partitions are processed at once (numpy and polars release
    the GIL); results are folded in partition order, so output is the same
    for any number of workers.
    """
    out = StoredEvents()
    jobs = []
    for index in range(partitions):
        files = [f for staging in sources for f in partition_files(staging, [index])]
        if files:
            jobs.append((files, writer.path(f"events/part-{index:05d}.parquet")))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [
            pool.submit(store_partition, files, target, gap=gap, derived=derived)
            for files, target in jobs
        ]
        try:
            for done, future in enumerate(futures, start=1):
                out.add(future.result())
                progress("store events", done, len(jobs))
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    out.files = [writer.relative(target) for _files_, target in jobs]
    return out


def store_partition(
    files: Sequence[Path], target: Path, *, gap: timedelta, derived: bool
) -> PartStats:
    """Load one user partition, sort, de-duplicate, sessionise, write it; return its stats."""
    part = pl.scan_parquet(list(files)).select(EVENTS_SCHEMA.names()).collect()
    part, duplicates = drop_duplicates(sort_events(part))
    if derived:
        part, sessions = derive_sessions(part, gap)
    else:
        sessions = part.select(pl.struct("user_id", "session_id").n_unique()).item()
    part.write_parquet(target, compression="zstd", compression_level=ZSTD_LEVEL, statistics=True)
    agg = part.select(
        users=pl.col("user_id").n_unique(),
        clicks=pl.col("clicked").sum(),
        watch=pl.col("watch_time_s").filter(pl.col("clicked")).sum(),
        ts_min=pl.col("ts").min(),
        ts_max=pl.col("ts").max(),
    ).row(0, named=True)
    return PartStats(
        rows=part.height,
        users=agg["users"],
        sessions=sessions,
        clicks=agg["clicks"],
        watch_time_s=agg["watch"],
        ts_min=agg["ts_min"],
        ts_max=agg["ts_max"],
        item_ids=part.get_column("item_id").unique(),
        duplicates=duplicates,
    )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")
