"""The temporal split: what a model may learn from, and what is held out.

The last ``test_days`` days of a dataset are held out for evaluation and
experiments. The cutoff is the UTC midnight nearest to ``last event -
test_days days``, so a log that ends a little after midnight (sessions run
over) or a little before it holds out whole days either way. Everything a
model sees has ``ts < cutoff``.

`load_training_data` reads the training window and completes the item table:
an item missing from the catalogue (or a dataset without one) gets its
``published_ts`` from its first appearance in the log and its ``duration_s``
from the 95th percentile of its watch times, with a warning naming the file
(``--items``) that would fix it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import polars as pl

from recsim_cli.dataset import TIMESTAMP, Dataset
from recsim_cli.errors import ConfigError, DatasetError, RecsimWarning
from recsim_cli.times import format_ts

DAY = timedelta(days=1)
DURATION_QUANTILE = 0.95
"""Without a catalogue duration, an item lasts as long as this quantile of its watch times."""
MIN_DURATION_S = 1.0


@dataclass(frozen=True)
class TrainData:
    """What a model is fit on: events strictly before ``cutoff`` and a complete item table.

    ``events`` has the dataset's event columns, sorted by user_id, ts.
    ``items`` has item_id, published_ts, duration_s (both non-null) and
    category (null allowed), one row per item of the catalogue or the
    training events, sorted by item_id.
    """

    events: pl.DataFrame
    items: pl.DataFrame
    cutoff: datetime

    @property
    def start(self) -> datetime:
        """The first event's time."""
        value = self.events["ts"].min()
        assert isinstance(value, datetime)
        return value


def day_floor(ts: datetime) -> datetime:
    """Midnight UTC at or before ``ts``."""
    ts = ts.astimezone(UTC)
    return datetime(ts.year, ts.month, ts.day, tzinfo=UTC)


def nearest_midnight(ts: datetime) -> datetime:
    """The UTC midnight nearest to ``ts`` (noon rounds up)."""
    return day_floor(ts.astimezone(UTC) + timedelta(hours=12))


def temporal_cutoff(last_ts: datetime, test_days: int) -> datetime:
    """The cutoff that holds out the last ``test_days`` days of data ending at ``last_ts``."""
    if test_days < 0:
        raise ConfigError(f"test_days must be 0 or more; got {test_days}.")
    if test_days == 0:
        return last_ts + timedelta(microseconds=1)
    return nearest_midnight(last_ts - test_days * DAY)


def dataset_cutoff(dataset: Dataset, test_days: int) -> datetime:
    """The cutoff of ``dataset`` for ``test_days`` held-out days."""
    last = dataset.events().select(pl.col("ts").max()).collect().item()
    if last is None:
        raise DatasetError(f"{dataset.root} has no events; ingest a log first.")
    assert isinstance(last, datetime)
    return temporal_cutoff(last, test_days)


def load_training_data(
    dataset: Dataset, cutoff: datetime, *, before: datetime | None = None
) -> TrainData:
    """Read the events with ``ts < cutoff`` (and ``>= before`` if given) and complete the items.

    Raises `DatasetError` when the window holds no events.
    """
    lazy = dataset.events().filter(pl.col("ts") < cutoff)
    if before is not None:
        lazy = lazy.filter(pl.col("ts") >= before)
    events = lazy.sort("user_id", "ts", maintain_order=True).collect()
    if events.height == 0:
        raise DatasetError(
            f"The training window of {dataset.root} (events before "
            f"{format_ts(cutoff)}) is empty; use fewer --test-days."
        )
    items = complete_items(events, dataset.items().collect(), source=str(dataset.root))
    # an item published at or after the cutoff did not exist yet for this model
    items = items.filter(pl.col("published_ts") < cutoff)
    return TrainData(events=events, items=items, cutoff=cutoff)


def complete_items(events: pl.DataFrame, catalogue: pl.DataFrame, *, source: str) -> pl.DataFrame:
    """One row per catalogue or event item with non-null published_ts and duration_s."""
    seen = events.group_by("item_id").agg(
        pl.col("ts").min().alias("_first_ts"),
        pl.col("watch_time_s")
        .filter(pl.col("watch_time_s") > 0)
        .quantile(DURATION_QUANTILE, interpolation="higher")
        .alias("_watch_q"),
    )
    items = (
        catalogue.select("item_id", "published_ts", "duration_s", "category")
        .join(seen, on="item_id", how="full", coalesce=True)
        .sort("item_id")
    )
    missing_published = items["published_ts"].is_null().sum()
    missing_duration = items["duration_s"].is_null().sum()
    if catalogue.height == 0:
        warnings.warn(
            f"{source} has no item table: item ages come from first appearances in the log and "
            f"durations from the {DURATION_QUANTILE:.0%} quantile of watch times; ingest one "
            "with --items to fix this.",
            RecsimWarning,
            stacklevel=2,
        )
    elif missing_published or missing_duration:
        warnings.warn(
            f"{source}: {max(missing_published, missing_duration):,} items lack published_ts "
            "or duration_s in the item table; they are estimated from the log (first "
            "appearance, watch times); a complete --items file fixes this.",
            RecsimWarning,
            stacklevel=2,
        )
    return items.select(
        "item_id",
        pl.coalesce("published_ts", "_first_ts").cast(TIMESTAMP).alias("published_ts"),
        pl.coalesce("duration_s", "_watch_q", pl.lit(MIN_DURATION_S))
        .clip(lower_bound=MIN_DURATION_S)
        .alias("duration_s"),
        "category",
    )
