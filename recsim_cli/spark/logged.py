"""A logged A/B test's per-user sums, or their per-arm moments, computed on Spark.

:func:`aggregate_experiment_spark` is ``experiment.logged.aggregate_experiment``
on a Spark DataFrame of the dataset's events: the same window, pre-period,
users in both arms, counts, warnings and errors, with Spark SQL functions
only (no Python UDF). The events never reach the driver; what does is

* ``collect="users"``: the per-(user, arm) frame (O(users) rows) and, with
  ``by_day``, its per-day sums (O(users x days)), as a ``LoggedExperiment``
  that the polars engine's analysis reads unchanged;
* ``collect="moments"``: each arm's moments (``experiment.moments``), one
  row per arm of O(k^2) numbers for k per-user variables, and with
  ``by_day`` the same per day, as a ``LoggedMoments``.

``collect="auto"`` collects the users when there are at most
``moments.MAX_COLLECTED_ROWS`` (user, arm) rows, else the moments.
Timestamps are compared as microseconds since the epoch and days are UTC
dates (the session's time zone is UTC), as on polars.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from recsim_cli.errors import ConfigError, InternalError, UserError
from recsim_cli.experiment.daily import window_days
from recsim_cli.experiment.logged import (
    AGGREGATES,
    DEFAULT_METRICS,
    DEFAULT_PRE_DAYS,
    BothArms,
    LoggedCounts,
    LoggedExperiment,
    LoggedMetric,
    check_inputs,
    check_labels,
    logged_counts,
    ordered_columns,
)
from recsim_cli.experiment.metrics import resolve_metric
from recsim_cli.experiment.moments import (
    EXAMPLES,
    MAX_COLLECTED_ROWS,
    Collect,
    ExperimentMoments,
    LoggedMoments,
    Moments,
    Unpaired,
    check_collect,
    variables,
)
from recsim_cli.times import as_utc, format_ts

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ARM = "__arm"
_TS = "__ts_us"  # the event's time in microseconds since the epoch
SOURCES = tuple(AGGREGATES)  # impressions, clicks, watch_time_s, sessions


class EventsReadError(OSError):
    """Spark could not read the dataset's event files (a damaged or missing Parquet part)."""


@contextmanager
def reading_events() -> Iterator[None]:
    """Turn Spark's failures to read a Parquet part into `EventsReadError` (first line kept)."""
    from py4j.protocol import Py4JJavaError  # type: ignore[import-untyped]
    from pyspark.errors import PySparkException

    try:
        yield
    except (PySparkException, Py4JJavaError) as exc:
        text = str(exc)
        if not any(word in text for word in ("FAILED_READ_FILE", "parquet", "Parquet")):
            raise
        first = next((line.strip() for line in text.splitlines() if line.strip()), "")
        raise EventsReadError(first[:300]) from exc


def read_events(spark: SparkSession, files: Sequence[str]) -> DataFrame:
    """Read the dataset's event parts (the files ``Dataset.open(root)`` lists)."""
    with reading_events():
        return spark.read.parquet(*files)


def _micros(moment: dt.datetime) -> int:
    return (as_utc(moment) - _EPOCH) // dt.timedelta(microseconds=1)


def _moment(micros: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=int(micros))


def polars_schema(events: DataFrame) -> pl.Schema:
    """The events' column names with the polars types the checks read (``ts`` a datetime)."""
    from pyspark.sql import types as T

    mapping: list[tuple[type, pl.DataType]] = [
        (T.TimestampType, pl.Datetime("us", "UTC")),
        (T.TimestampNTZType, pl.Datetime("us")),
        (T.BooleanType, pl.Boolean()),
        (T.DoubleType, pl.Float64()),
        (T.FloatType, pl.Float32()),
        (T.LongType, pl.Int64()),
        (T.IntegerType, pl.Int32()),
        (T.DateType, pl.Date()),
    ]
    schema: dict[str, pl.DataType] = {}
    for spark_field in events.schema.fields:
        schema[spark_field.name] = next(
            (dtype for kind, dtype in mapping if isinstance(spark_field.dataType, kind)),
            pl.String(),
        )
    return pl.Schema(schema)


def _sums(events: DataFrame, keys: list[str], suffix: str = "") -> DataFrame:
    """``logged.AGGREGATES`` per ``keys``, and the last event (microseconds)."""
    from pyspark.sql import functions as F

    return events.groupBy(*keys).agg(
        F.count(F.lit(1)).cast("double").alias("impressions" + suffix),
        F.coalesce(F.sum(F.col("clicked").cast("double")), F.lit(0.0)).alias("clicks" + suffix),
        F.coalesce(F.sum(F.col("watch_time_s").cast("double")), F.lit(0.0)).alias(
            "watch_time_s" + suffix
        ),
        # polars' n_unique counts a null session id as one more session
        (F.countDistinct("session_id") + F.max(F.col("session_id").isNull().cast("long")))
        .cast("double")
        .alias("sessions" + suffix),
        F.max(_TS).alias("last" + suffix),
    )


def _sums_by_day(events: DataFrame) -> DataFrame:
    """The sums per (user_id, arm, day); a session counts on the day of its first event."""
    from pyspark.sql import functions as F

    dated = events.withColumn("day", F.to_date(F.col("ts")))
    keys = ["user_id", "arm", "day"]
    sessions = (
        dated.groupBy("user_id", "arm", "session_id")
        .agg(F.min("day").alias("day"))
        .groupBy(*keys)
        .agg(F.count(F.lit(1)).cast("double").alias("sessions"))
    )
    sums = dated.groupBy(*keys).agg(
        F.count(F.lit(1)).cast("double").alias("impressions"),
        F.coalesce(F.sum(F.col("clicked").cast("double")), F.lit(0.0)).alias("clicks"),
        F.coalesce(F.sum(F.col("watch_time_s").cast("double")), F.lit(0.0)).alias("watch_time_s"),
    )
    return sums.join(sessions, on=keys, how="left").fillna(0.0, subset=["sessions"])


@dataclass(frozen=True)
class _Tables:
    """The experiment in Spark: the kept (user, arm) rows and the counts."""

    kept: DataFrame  # user_id, arm, SOURCES, last, and SOURCES + "_pre" with a pre-period
    cached: tuple[DataFrame, ...]  # persisted while the experiment is read
    per_day: DataFrame | None  # user_id, arm, day, SOURCES (kept users only)
    counts: LoggedCounts
    resolved: list[LoggedMetric]


def _tables(
    events: DataFrame,
    *,
    control: str,
    treatment: str,
    metrics: Sequence[str],
    arm_column: str,
    start: dt.datetime | None,
    end: dt.datetime | None,
    pre_days: int,
    both_arms: BothArms,
    by_day: bool,
) -> _Tables:
    from pyspark import StorageLevel
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    resolved = check_inputs(
        polars_schema(events),
        arm_column=arm_column,
        control=control,
        treatment=treatment,
        metrics=metrics,
        pre_days=pre_days,
        both_arms=both_arms,
    )
    arm = F.col(_ARM)
    lf = events.withColumn(_ARM, F.col(arm_column).cast("string")).withColumn(
        _TS, F.unix_micros(F.col("ts").cast("timestamp"))
    )
    in_arms = arm.isin(control, treatment)
    overview = lf.agg(
        F.sort_array(F.collect_set(arm)).alias("labels"),
        F.min(F.when(in_arms, F.col(_TS))).alias("first"),
    ).first()
    if overview is None:  # an aggregate without grouping has one row
        raise InternalError("Spark returned no row for a global aggregate.")
    check_labels(arm_column, list(overview["labels"]), control, treatment)
    begin = as_utc(start) if start is not None else _moment(overview["first"])
    stop = as_utc(end) if end is not None else None
    if stop is not None and stop <= begin:
        raise ConfigError(
            f"the window ends ({format_ts(stop)}) before it starts ({format_ts(begin)}); "
            "give an end after the start."
        )
    window = F.col(_TS) >= F.lit(_micros(begin))
    if stop is not None:
        window = window & (F.col(_TS) < F.lit(_micros(stop)))
    other = arm.isNotNull() & ~in_arms
    pre_window = F.lit(False)
    if pre_days:
        pre_start = begin - dt.timedelta(days=pre_days)
        pre_window = (F.col(_TS) >= F.lit(_micros(pre_start))) & (
            F.col(_TS) < F.lit(_micros(begin))
        )
    # one pass over the events for what is ignored, each arm's events and the pre-period's labels
    ignored = lf.agg(
        F.count(F.when(window & arm.isNull(), 1)).alias("null"),
        F.count(F.when(window & other, 1)).alias("other"),
        F.sort_array(F.collect_set(F.when(window & other, arm))).alias("labels"),
        F.count(F.when(window & (arm == control), 1)).alias("control"),
        F.count(F.when(window & (arm == treatment), 1)).alias("treatment"),
        F.count(F.when(pre_window & in_arms, 1)).alias("pre_labelled"),
    ).first()
    if ignored is None:
        raise InternalError("Spark returned no row for a global aggregate.")
    for name, key in ((control, "control"), (treatment, "treatment")):
        if not ignored[key]:
            until = "" if stop is None else f" to {format_ts(stop)}"
            raise UserError(
                f"no events of arm '{name}' in column '{arm_column}' from {format_ts(begin)}"
                f"{until}; check the window (--start, --end) and the arm labels."
            )
    arms = lf.where(window & in_arms).withColumnRenamed(_ARM, "arm")
    per_user = _sums(arms, ["user_id", "arm"]).withColumn(
        "__arms", F.count(F.lit(1)).over(Window.partitionBy("user_id"))
    )
    if pre_days:
        pre = _sums(lf.where(pre_window), ["user_id"], "_pre").drop("last_pre")
        per_user = per_user.join(pre, on="user_id", how="left")
    per_user = per_user.persist(StorageLevel.MEMORY_AND_DISK)
    keep = F.lit(True) if both_arms == "keep" else F.col("__arms") == 1
    has_pre = F.col("impressions_pre").isNotNull() if pre_days else F.lit(False)
    rows = {
        row["arm"]: row
        for row in per_user.groupBy("arm")
        .agg(
            F.count(F.when(keep, 1)).alias("users"),
            F.count(F.when(keep & has_pre, 1)).alias("pre_users"),
            F.sum(F.when(keep, F.col("impressions"))).alias("events"),
            F.max(F.when(keep, F.col("last"))).alias("last"),
            F.count(F.when(F.col("__arms") > 1, 1)).alias("shared"),
        )
        .collect()
    }
    kept = per_user.where(keep).drop("__arms")
    per_day = None
    if by_day:
        per_day = _sums_by_day(arms).join(kept.select("user_id", "arm"), ["user_id", "arm"], "semi")
    lasts = [r["last"] for r in rows.values() if r["last"] is not None]
    counts = logged_counts(
        arm_column=arm_column,
        control=control,
        treatment=treatment,
        users={a: int(rows[a]["users"]) if a in rows else 0 for a in (control, treatment)},
        pre_users={a: int(rows[a]["pre_users"]) if a in rows else 0 for a in (control, treatment)},
        shared=int(rows[control]["shared"]) if control in rows else 0,
        both_arms=both_arms,
        ignored=(int(ignored["null"]), int(ignored["other"])),
        other_arms=tuple(ignored["labels"]),
        events_used=int(sum(r["events"] or 0 for r in rows.values())),
        last=_moment(max(lasts)) if lasts else None,
        window=(begin, stop),
        pre_days=pre_days,
        pre_labelled=int(ignored["pre_labelled"]),
    )
    return _Tables(kept, (per_user,), per_day, counts, resolved)


def _frame_columns(resolved: list[LoggedMetric], pre: bool) -> list[tuple[str, str]]:
    """(frame column, Spark source column) of every metric, in contract order."""
    pairs = []
    for m in resolved:
        pairs += [(f"{m.name}_num", m.numerator), (f"{m.name}_den", m.denominator)]
        if pre:
            pairs += [
                (f"{m.name}_pre_num", f"{m.numerator}_pre"),
                (f"{m.name}_pre_den", f"{m.denominator}_pre"),
            ]
    return pairs


def _to_polars(frame: DataFrame) -> pl.DataFrame:
    return pl.from_arrow(frame.toArrow())  # type: ignore[return-value]


def aggregate_experiment_spark(
    events: DataFrame,
    *,
    control: str,
    treatment: str,
    metrics: Sequence[str] = DEFAULT_METRICS,
    arm_column: str = "policy",
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    pre_days: int = DEFAULT_PRE_DAYS,
    both_arms: BothArms = "exclude",
    by_day: bool = False,
    collect: Collect = "users",
    design: str = "split",
    cuped: bool = False,
) -> LoggedExperiment | LoggedMoments:
    """``aggregate_experiment`` on Spark: the per-user frame, or with moments its arms' moments.

    ``design`` and ``cuped`` say which moments the analysis needs (the
    paired design's cross-arm products, the pre-period's); the per-user
    frame does not depend on them. Raises the same errors as
    ``aggregate_experiment``, and `EventsReadError` when a part is unreadable.
    """
    the_collect = check_collect(collect)
    with reading_events():
        tables = _tables(
            events,
            control=control,
            treatment=treatment,
            metrics=metrics,
            arm_column=arm_column,
            start=start,
            end=end,
            pre_days=pre_days,
            both_arms=both_arms,
            by_day=by_day,
        )
        try:
            counts = tables.counts
            if the_collect == "auto":
                rows = counts.users_control + counts.users_treatment
                the_collect = "users" if rows <= MAX_COLLECTED_ROWS else "moments"
            if the_collect == "users":
                return _collect_users(tables, pre_days > 0)
            return _collect_moments(
                tables, pre=pre_days > 0, design=design, cuped=cuped and pre_days > 0
            )
        finally:
            for frame in tables.cached:
                frame.unpersist()


def _collect_users(tables: _Tables, pre: bool) -> LoggedExperiment:
    from pyspark.sql import functions as F

    pairs = _frame_columns(tables.resolved, pre)
    frame = _to_polars(
        tables.kept.select("user_id", "arm", *(F.col(src).alias(name) for name, src in pairs))
    )
    columns = ordered_columns(frame.columns, tables.resolved)
    frame = frame.select(columns).sort("arm", "user_id")
    daily = None
    if tables.per_day is not None:
        pairs = _frame_columns(tables.resolved, pre=False)
        sums = [p for p in pairs if p[0].endswith("_num")] + [
            p for p in pairs if p[0].endswith("_den")
        ]
        daily = _to_polars(
            tables.per_day.select(
                "user_id", "arm", "day", *(F.col(src).alias(name) for name, src in sums)
            )
        ).sort("user_id", "arm", "day")
    return LoggedExperiment(frame, tables.counts, daily)


# --- moments -----------------------------------------------------------------------------------


def grouped_moments(
    frame: DataFrame, columns: Sequence[str], keys: Sequence[str] = ()
) -> dict[tuple[Any, ...], Moments]:
    """The moments of ``columns`` per group of ``keys`` (nulls count as 0), in two passes.

    The first pass takes each group's users, non-null counts and means; the
    second sums the products of the values shifted by those means (joined
    back by a broadcast of one row per group), and corrects for the shift,
    ``C = sum (v - s)(w - t) - sum (v - s) sum (w - t) / n``, so no digits are
    lost to a large mean. Plain sums, unlike ``covar_pop``, keep the
    aggregation cheap to compile with many columns.
    """
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    k = len(columns)
    zero = [F.coalesce(F.col(c).cast("double"), F.lit(0.0)) for c in columns]
    first = (
        frame.groupBy(*keys)
        .agg(
            F.count(F.lit(1)).alias("__n"),
            *(F.count(F.col(c)).alias(f"__c{i}") for i, c in enumerate(columns)),
            *(F.avg(z).alias(f"__s{i}") for i, z in enumerate(zero)),
        )
        .collect()
    )
    if not first:
        return {}
    fields = [T.StructField(key, frame.schema[key].dataType) for key in keys]
    fields += [T.StructField(f"__s{i}", T.DoubleType()) for i in range(k)]
    shifts = frame.sparkSession.createDataFrame(
        [[*(r[key] for key in keys), *(float(r[f"__s{i}"]) for i in range(k))] for r in first],
        T.StructType(fields),
    )
    joined = frame.join(F.broadcast(shifts), on=list(keys)) if keys else frame.crossJoin(shifts)
    shifted = [z - F.col(f"__s{i}") for i, z in enumerate(zero)]
    second = {
        tuple(r[key] for key in keys): r
        for r in joined.groupBy(*keys)
        .agg(
            *(F.sum(d).alias(f"__d{i}") for i, d in enumerate(shifted)),
            *(
                F.sum(shifted[i] * shifted[j]).alias(f"__p{i}_{j}")
                for i in range(k)
                for j in range(i, k)
            ),
        )
        .collect()
    }
    out = {}
    for r in first:
        key = tuple(r[name] for name in keys)
        n = int(r["__n"])
        row = second[key]
        shift = np.array([float(r[f"__s{i}"]) for i in range(k)])
        total = np.array([float(row[f"__d{i}"]) for i in range(k)])
        comoment = np.zeros((k, k))
        for i in range(k):
            for j in range(i, k):
                value = float(row[f"__p{i}_{j}"]) - total[i] * total[j] / n
                comoment[i, j] = comoment[j, i] = value
        out[key] = Moments(
            tuple(columns),
            n,
            np.array([int(r[f"__c{i}"]) for i in range(k)], dtype=np.int64),
            shift + total / n,
            comoment,
        )
    return out


def _expand(m: Moments, names: Sequence[str], index: Sequence[int]) -> Moments:
    """The moments of the frame's columns from those of their (distinct) sources."""
    at = np.asarray(index, dtype=np.int64)
    return Moments(tuple(names), m.n, m.nonnull[at], m.mean[at], m.comoment[np.ix_(at, at)])


def _first_ids(users: DataFrame) -> tuple[object, ...]:
    return tuple(r["user_id"] for r in users.orderBy("user_id").limit(EXAMPLES).collect())


def _sources(tables: _Tables, pre: bool, cuped: bool) -> tuple[list[str], list[str], list[int]]:
    """The frame columns the moments cover, their distinct sources, and each one's source."""
    defs = [resolve_metric(m.name) for m in tables.resolved]
    pairs = dict(_frame_columns(tables.resolved, pre))
    names = variables(defs, cuped, list(pairs))
    sources = list(dict.fromkeys(pairs[n] for n in names))
    return names, sources, [sources.index(pairs[n]) for n in names]


def _split_moments(
    rows: DataFrame, sources: list[str], names: list[str], index: list[int], keys: list[str]
) -> dict[tuple[Any, ...], Moments]:
    """Moments per ``keys`` (ending with the arm) of the rows' source columns."""
    found = grouped_moments(rows, sources, keys)
    return {key: _expand(m, names, index) for key, m in found.items()}


def _paired_rows(
    rows: DataFrame, sources: list[str], keys: list[str], counts: LoggedCounts
) -> DataFrame:
    """One row per user (and key) in both arms: the control sources, then the treatment's."""
    from pyspark.sql import functions as F

    c = rows.where(F.col("arm") == counts.control).select(
        "user_id", *keys, *(F.col(s).alias(f"c_{i}") for i, s in enumerate(sources))
    )
    t = rows.where(F.col("arm") == counts.treatment).select(
        "user_id", *keys, *(F.col(s).alias(f"t_{i}") for i, s in enumerate(sources))
    )
    return c.join(t, on=["user_id", *keys], how="inner")


def _paired_moments(
    joined: DataFrame, sources: list[str], names: list[str], index: list[int], keys: list[str]
) -> dict[tuple[Any, ...], tuple[Moments, Moments, np.ndarray]]:
    k = len(sources)
    joint_names = [f"c_{i}" for i in range(k)] + [f"t_{i}" for i in range(k)]
    out = {}
    for key, joint in grouped_moments(joined, joint_names, keys).items():
        at = np.asarray(index, dtype=np.int64)
        control = _expand(_block(joint, 0, k), names, index)
        treatment = _expand(_block(joint, k, k), names, index)
        cross = joint.comoment[:k, k:][np.ix_(at, at)]
        out[key] = (control, treatment, cross)
    return out


def _block(joint: Moments, at: int, k: int) -> Moments:
    part = slice(at, at + k)
    return Moments(
        joint.names[part],
        joint.n,
        joint.nonnull[part],
        joint.mean[part],
        joint.comoment[part, part],
    )


def _collect_moments(tables: _Tables, *, pre: bool, design: str, cuped: bool) -> LoggedMoments:
    from pyspark.sql import functions as F

    from recsim_cli.experiment.comparison import check_design

    the_design = check_design(design)
    counts = tables.counts
    control, treatment = counts.control, counts.treatment
    names, sources, index = _sources(tables, pre, cuped)
    kept = tables.kept
    if the_design == "split":
        per_arm = _split_moments(kept, sources, names, index, ["arm"])
        shared_users = kept.groupBy("user_id").count().where(F.col("count") > 1).select("user_id")
        shared = counts.both_arm_users if counts.both_arms == "keep" else 0
        moments = ExperimentMoments(
            control,
            treatment,
            "split",
            (
                per_arm.get((control,), Moments.empty(names)),
                per_arm.get((treatment,), Moments.empty(names)),
            ),
            shared_users=shared,
            shared_examples=_first_ids(shared_users) if shared else (),
        )
    else:
        joined = _paired_rows(kept, sources, [], counts)
        c, t, cross = _paired_moments(joined, sources, names, index, []).get(
            (), (Moments.empty(names), Moments.empty(names), np.zeros((len(names),) * 2))
        )
        # users of one arm only: counted in one pass, named (the first few) only when there are any
        lone = (
            kept.groupBy("user_id")
            .agg(F.count(F.lit(1)).alias("__arms"), F.max("arm").alias("arm"))
            .where(F.col("__arms") == 1)
        )
        alone = {r["arm"]: int(r["count"]) for r in lone.groupBy("arm").count().collect()}
        only = [
            Unpaired(
                alone.get(arm, 0),
                _first_ids(lone.where(F.col("arm") == arm)) if alone.get(arm) else (),
            )
            for arm in (control, treatment)
        ]
        moments = ExperimentMoments(
            control, treatment, "paired", (c, t), cross=cross, unpaired=(only[0], only[1])
        )
    daily = None
    if tables.per_day is not None:
        daily = _daily_moments(tables, names, sources, index, pre=pre, design=the_design)
    return LoggedMoments(counts, moments, daily)


def _daily_moments(
    tables: _Tables,
    names: list[str],
    sources: list[str],
    index: list[int],
    *,
    pre: bool,
    design: str,
) -> tuple[tuple[dt.date, ExperimentMoments], ...]:
    """The moments of the cumulative frame through each day (``daily.cumulative_frame``).

    Each (user, arm, day) row's running sums hold from its day to the day
    before the user's next one (or the window's last day): the rows are
    repeated over those days in Spark, then grouped by day.
    """
    from pyspark import StorageLevel
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if tables.per_day is None:
        raise InternalError("daily moments need the per-day sums (by_day).")
    counts = tables.counts
    days = window_days(counts.start.date(), counts.last_event.date())
    sums = list(SOURCES)
    order = Window.partitionBy("user_id", "arm").orderBy("day")
    running = tables.per_day.select(
        "user_id",
        "arm",
        "day",
        *(F.sum(s).over(order.rowsBetween(Window.unboundedPreceding, 0)).alias(s) for s in sums),
        F.lead("day").over(order).alias("next_day"),
    )
    last_day = F.lit(days[-1])
    until = F.coalesce(F.date_sub(F.col("next_day"), 1), last_day)
    spread = running.withColumn("through", F.explode(F.sequence(F.col("day"), until))).drop(
        "day", "next_day"
    )
    if pre:
        static = tables.kept.select("user_id", "arm", *(f"{s}_pre" for s in SOURCES))
        spread = spread.join(static, on=["user_id", "arm"], how="left")
    spread = spread.persist(StorageLevel.MEMORY_AND_DISK)  # read by both passes
    try:
        return _each_day(spread, days, counts, (names, sources, index), design=design)
    finally:
        spread.unpersist()


def _each_day(
    spread: DataFrame,
    days: list[dt.date],
    counts: LoggedCounts,
    variables: tuple[list[str], list[str], list[int]],
    *,
    design: str,
) -> tuple[tuple[dt.date, ExperimentMoments], ...]:
    """Each day's moments of the spread rows (a day without users has empty moments)."""
    names, sources, index = variables
    empty = Moments.empty(names)
    out = []
    if design == "paired":
        joined = _paired_rows(spread, sources, ["through"], counts)
        found = _paired_moments(joined, sources, names, index, ["through"])
        for day in days:
            c, t, cross = found.get((day,), (empty, empty, np.zeros((len(names),) * 2)))
            out.append(
                (day, ExperimentMoments(counts.control, counts.treatment, "paired", (c, t), cross))
            )
        return tuple(out)
    per_arm = _split_moments(spread, sources, names, index, ["through", "arm"])
    for day in days:
        arms = (
            per_arm.get((day, counts.control), empty),
            per_arm.get((day, counts.treatment), empty),
        )
        out.append((day, ExperimentMoments(counts.control, counts.treatment, "split", arms)))
    return tuple(out)
