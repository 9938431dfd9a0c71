"""Off-policy estimates on Spark: every estimator of the window's impressions, in Spark.

The same steps as ``recsim_cli.experiment.offpolicy`` (whose docstring
defines the estimators), as DataFrame expressions over the dataset's Parquet
parts:

1. `event_bounds` and `read_window`: the first and last event, then one pass
   over the events for the window's counts (rows, sessions, propensities,
   the largest slate and position, the smallest usable propensity);
2. `prepare_window`: the impressions with ``day`` (UTC date of the session's
   first event), ``rank = slate S + position``, float outcomes; the
   (user, day) pairs with a session are the only rows collected here;
3. `estimate_arm`: each arm's lists (computed or read on the driver) joined
   on (user, day, rank); weights ``w = (1 - e) 1[match] / pi_b + e``; replay's
   acceptance from the explore column or from ``u < min(pi_b) / pi_b`` with
   the hash uniforms of ``replay_uniforms``; SNIPS's per-slot normalisers;
   dm's and dr's session-model predictions, and the rollouts of the session
   metrics, from ``recsim_cli.spark.offpolicy_model`` (pandas functions
   running the polars model code in Spark tasks); then sums per slate, and
   per user, per (user, day) and per (user, slate).

Only those per-user frames, a per-slot table and a weight histogram (a few
dozen rows) reach the driver, and for the session model its fit rows
(``offpolicy_model.fit_inputs``); the window's events never do. Floating sums run in
Spark's order, so they agree with polars to the last few bits, not bit for bit.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from recsim_cli.errors import ConfigError, DatasetError, InternalError
from recsim_cli.experiment.offpolicy import (
    BINS_PER_DECADE,
    SELF_NORMALISED,
    SLATE_SUMS,
    WEIGHTED,
    Estimator,
    WeightDiagnostics,
    WeightHistogram,
)
from recsim_cli.spark.session import SparkConfig, spark_session

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from recsim_cli.dataset import Dataset
    from recsim_cli.experiment.offpolicy_abtest import ArmEstimate
    from recsim_cli.experiment.session_model import SessionModel

BY_DAY = ["user_id", "day"]

EVENTS_DDL = (
    "user_id STRING, item_id STRING, ts TIMESTAMP, session_id STRING, slate BIGINT, "
    "position BIGINT, clicked BOOLEAN, watch_time_s DOUBLE, device STRING, "
    "propensity DOUBLE, policy STRING, explore BOOLEAN"
)
LIST_DDL = "user_id STRING, day DATE, rank INT, item_id STRING"
_MICROS = 1_000_000
# grouping_id() of the grouping sets over (user_id, slate, day): a bit per column left out.
_BY_USER, _BY_SLATE, _BY_DAY = 0b011, 0b001, 0b010


def _micros(moment: dt.datetime) -> int:
    """Microseconds since the epoch of an aware UTC datetime, exactly."""
    delta = moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * _MICROS + delta.microseconds


def _moment(micros: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=micros)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _events(dataset: Dataset, data: object, session: SparkSession) -> DataFrame | None:
    """The dataset's events as a Spark DataFrame (None when it has no parts)."""
    files = [dataset.uri(f) for f in dataset.manifest.events_files]
    if not files:
        return None
    try:
        return session.read.schema(EVENTS_DDL).parquet(*files)
    except Exception as exc:  # AnalysisException, Py4JJavaError
        raise DatasetError(
            f"{data}: cannot read the dataset's events ({_first_line(exc)}); re-create it with "
            "recsim ingest --replace."
        ) from None


def _collect_row(frame: DataFrame, data: object) -> dict[str, Any]:
    try:
        return frame.collect()[0].asDict()
    except Exception as exc:
        raise DatasetError(
            f"{data}: cannot read the dataset's events ({_first_line(exc)}); re-create it with "
            "recsim ingest --replace."
        ) from None


def event_bounds(
    dataset: Dataset, data: object, config: SparkConfig | None
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The first and last event's time (UTC), or (None, None) for a dataset without events."""
    from pyspark.sql import functions as F

    events = _events(dataset, data, spark_session(config))
    if events is None:
        return None, None
    micros = F.unix_micros(F.col("ts"))
    row = _collect_row(events.agg(F.min(micros).alias("a"), F.max(micros).alias("b")), data)
    if row["a"] is None:
        return None, None
    return _moment(int(row["a"])), _moment(int(row["b"]))


@dataclass(frozen=True)
class SparkWindow:
    """The events of the evaluation window on Spark, and the counts one pass over them gives."""

    events: DataFrame  # the window's events (the data contract's columns)
    rows: int
    before: int  # events before the window: what a session model would be fit on
    sessions: int  # distinct session ids in the window
    nulls: dict[str, int]  # slate, position, session_id: rows without one
    slate_size: int
    max_slates: int
    propensities: int  # rows with a propensity (NaN counts, as in polars)
    explored: int  # rows with an explore value
    floor: float  # the smallest finite positive propensity; 1.0 without one


def read_window(
    dataset: Dataset,
    data: object,
    start: dt.datetime,
    end: dt.datetime,
    config: SparkConfig | None,
) -> SparkWindow:
    """Count the events of [start, end) and before ``start`` in one pass; keep the window's."""
    from pyspark.sql import functions as F

    session = spark_session(config)
    events = _events(dataset, data, session)
    if events is None:
        events = session.createDataFrame([], EVENTS_DDL)
    ts = F.unix_micros(F.col("ts"))
    inside = (ts >= F.lit(_micros(start))) & (ts < F.lit(_micros(end)))
    p = F.col("propensity")

    def count(condition: Column) -> Column:
        return F.count(F.when(condition, F.lit(1)))

    row = _collect_row(
        events.agg(
            count(inside).alias("rows"),
            count(ts < F.lit(_micros(start))).alias("before"),
            F.countDistinct(F.when(inside, F.col("session_id"))).alias("sessions"),
            *(
                count(inside & F.col(c).isNull()).alias(c)
                for c in ("slate", "position", "session_id")
            ),
            F.max(F.when(inside, F.col("position"))).alias("position_max"),
            F.max(F.when(inside, F.col("slate"))).alias("slate_max"),
            count(inside & p.isNotNull()).alias("propensities"),
            count(inside & F.col("explore").isNotNull()).alias("explored"),
            F.min(F.when(inside & _known(p), p)).alias("floor"),
        ),
        data,
    )
    return SparkWindow(
        events=events.filter(inside),
        rows=int(row["rows"]),
        before=int(row["before"]),
        sessions=int(row["sessions"]),
        nulls={c: int(row[c]) for c in ("slate", "position", "session_id")},
        slate_size=int(row["position_max"] or 0) + 1,
        max_slates=int(row["slate_max"] or 0) + 1,
        propensities=int(row["propensities"]),
        explored=int(row["explored"]),
        floor=1.0 if row["floor"] is None else float(row["floor"]),
    )


def _known(p: Column) -> Column:
    """A propensity that can weigh: finite and positive (NaN is above everything in Spark)."""
    from pyspark.sql import functions as F

    return F.coalesce(
        p.isNotNull() & ~F.isnan(p) & (p != F.lit(math.inf)) & (p > F.lit(0.0)), F.lit(False)
    )


@dataclass(frozen=True)
class SparkLogs:
    """The window's impressions on Spark (``offpolicy.IMPRESSION_COLUMNS``), and what they hold."""

    window: SparkWindow
    impressions: DataFrame
    user_days: pl.DataFrame  # user_id, day: sorted, collected

    @property
    def users(self) -> pl.DataFrame:
        """The users with a session in the window, sorted, as a one-column frame."""
        return self.user_days.select("user_id").unique().sort("user_id")

    def close(self) -> None:
        """Release the cached impressions."""
        self.impressions.unpersist()


def prepare_window(window: SparkWindow) -> SparkLogs:
    """Place each impression in its slate and rank, and date its session, as polars does.

    Raises the same ``ConfigError`` as ``prepare_impressions`` when a row has
    no slate, position or session id.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    for column in ("slate", "position", "session_id"):
        if window.nulls[column]:
            raise ConfigError(
                f"off-policy estimates place each impression in a slate: the events need a "
                f"{column} on every row in the window (see the data contract in docs/data.md)."
            )
    session = Window.partitionBy("user_id", "session_id")
    impressions = window.events.select(
        "user_id",
        "session_id",
        F.to_date(F.min("ts").over(session)).alias("day"),
        F.col("slate").cast("int").alias("slate"),
        F.col("position").cast("int").alias("position"),
        (F.col("slate") * F.lit(window.slate_size) + F.col("position")).cast("int").alias("rank"),
        "item_id",
        F.unix_micros(F.col("ts")).alias("_t_us"),
        "device",
        F.col("clicked").cast("double").alias("clicked"),
        F.col("watch_time_s").cast("double").alias("watch_s"),
        "propensity",
        "explore",
    ).persist()
    user_days = _to_polars(impressions.select("user_id", "day").distinct())
    return SparkLogs(window, impressions, user_days.sort("user_id", "day"))


def _to_polars(frame: DataFrame) -> pl.DataFrame:
    """Collect a (small, aggregated) Spark frame through Arrow."""
    result = pl.from_arrow(frame.toArrow())
    if not isinstance(result, pl.DataFrame):  # pragma: no cover - a table gives a frame
        raise TypeError("expected a table")
    return result.with_columns(pl.col(pl.String).cast(pl.String))


def _lists_frame(session: SparkSession, lists: pl.DataFrame) -> DataFrame:
    """Hand a target's (user_id, day, rank, item_id) lists to Spark, through Arrow."""
    table = lists.select(
        pl.col("user_id").cast(pl.String),
        pl.col("day").cast(pl.Date),
        pl.col("rank").cast(pl.Int32),
        pl.col("item_id").cast(pl.String),
    ).to_arrow(compat_level=pl.CompatLevel.oldest())
    return session.createDataFrame(table, LIST_DDL)


def replay_uniform_column(seed: int) -> Column:
    """Replay's uniform draw per impression: Spark's side of ``offpolicy.replay_uniforms``."""
    from pyspark.sql import functions as F

    # xxhash64 starts from seed 42, as offpolicy.XXHASH_SEED says.
    h = F.xxhash64(
        F.lit(seed).cast("bigint"),
        F.col("user_id"),
        F.col("session_id"),
        F.col("slate").cast("int"),
        F.col("position").cast("int"),
    )
    return F.shiftrightunsigned(h, 11).cast("double") / F.lit(float(1 << 53))


def estimate_arm(
    logs: SparkLogs,
    lists: pl.DataFrame | None,
    *,
    estimator: Estimator,
    target_epsilon: float = 0.0,
    session_model: SessionModel | None = None,
    need_sessions: bool = False,
    seed: int = 0,
    replicates: int = 8,
    by_day: bool = False,
    config: SparkConfig | None = None,
) -> ArmEstimate:
    """Weight the logs for one arm (``lists``; None is the logging policy), sum per user.

    The Spark twin of ``offpolicy_abtest.estimate_arm``, every estimator:
    dm and dr, and with ``need_sessions`` the session sums, score
    ``session_model`` in Spark tasks (``recsim_cli.spark.offpolicy_model``).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from recsim_cli.experiment.offpolicy_abtest import ArmEstimate
    from recsim_cli.spark import offpolicy_model as on_model

    session = spark_session(config)
    need_q = lists is not None and (
        estimator in ("dm", "dr") or (need_sessions and estimator in WEIGHTED)
    )
    if (need_q or (need_sessions and lists is not None)) and session_model is None:
        raise InternalError(f"the {estimator} estimate of a list needs the session model.")
    model = None
    if session_model is not None and (need_q or (need_sessions and lists is not None)):
        model = on_model.broadcast_model(session, session_model)
    window = logs.window
    imps = logs.impressions
    clicked, watch = F.col("clicked"), F.col("watch_s")
    if lists is None:
        frame = imps.select(
            "*",
            F.lit(1.0).alias("_w"),
            F.lit(1.0).alias("_used"),
            F.lit(0).alias("_missing"),
            F.lit(0).alias("_unlogged"),
        )
    else:
        p = F.col("propensity")
        targets = _lists_frame(session, lists).withColumnRenamed("item_id", "_target")
        shown = (
            imps.select("day", F.col("item_id").alias("_target"))
            .distinct()
            .withColumn("_seen", F.lit(True))
        )
        match = F.coalesce(F.col("_target") == F.col("item_id"), F.lit(False)).cast("double")
        w = match / p
        if target_epsilon:
            w = F.lit(1.0 - target_epsilon) * w + F.lit(target_epsilon)
        frame = (
            imps.join(targets, ["user_id", "day", "rank"], "left")
            .join(shown, ["day", "_target"], "left")
            .select(
                *imps.columns,
                "_target",
                F.when(_known(p), w).otherwise(F.lit(0.0)).alias("_w"),
                match.alias("_match"),
                F.col("_target").isNull().cast("int").alias("_missing"),
                (F.col("_target").isNotNull() & F.col("_seen").isNull())
                .cast("int")
                .alias("_unlogged"),
            )
        )
        used = F.col("_w")
        if estimator == "replay":
            if window.explored:
                accept = F.coalesce(F.col("explore"), F.lit(False)).cast("double")
            else:
                u = replay_uniform_column(seed)
                accept = F.when(_known(p) & (u < F.lit(window.floor) / p), F.lit(1.0)).otherwise(
                    F.lit(0.0)
                )
            used = accept * F.col("_match")
        frame = frame.withColumn("_used", used)
        if need_q and model is not None:
            frame = on_model.with_predictions(frame, model)
    correct = need_q and need_sessions and estimator in WEIGHTED
    if correct:  # the first slate's doubly robust correction of the rollout, w (y - q)
        first = F.col("slate") == F.lit(0)
        frame = frame.select(
            "*",
            F.when(first, F.col("_w") * (clicked - F.col("_q_click")))
            .otherwise(F.lit(0.0))
            .alias("_dr_c"),
            F.when(first, F.col("_w") * (watch - F.col("_q_watch")))
            .otherwise(F.lit(0.0))
            .alias("_dr_w"),
        )
    frame = frame.persist()
    try:
        slots = None
        q_click, q_watch = F.col("_q_click"), F.col("_q_watch")
        if lists is None:
            c_hat, w_hat = clicked, watch
        elif estimator == "ips":
            c_hat, w_hat = F.col("_used") * clicked, F.col("_used") * watch
        elif estimator == "dm":
            c_hat, w_hat = q_click, q_watch
        elif estimator == "dr":
            c_hat = q_click + F.col("_used") * (clicked - q_click)
            w_hat = q_watch + F.col("_used") * (watch - q_watch)
        else:
            slots = frame.groupBy("rank").agg(
                F.count(F.lit(1)).cast("double").alias("_n"),
                F.sum("_used").alias("_b"),
                F.sum(F.col("_used") * clicked).alias("_sc"),
                F.sum(F.col("_used") * watch).alias("_sw"),
            )
            slots_local = _to_polars(slots)
            frame = frame.join(F.broadcast(slots), "rank", "left")
            c_hat = _self_normalised(clicked, "_sc")
            w_hat = _self_normalised(watch, "_sw")
        per_slate = frame.groupBy("user_id", "session_id", "slate", "day").agg(
            F.sum(c_hat).alias("clicks"),
            F.sum(w_hat).alias("watch_s"),
            F.count(F.lit(1)).cast("double").alias("impressions"),
            F.sum("_w").alias("_w"),
            F.sum("_used").alias("_used"),
            F.sum(F.col("_used") * F.col("_used")).alias("_used2"),
            F.count(F.when(F.col("_used") > 0, F.lit(1))).alias("_nonzero"),
            F.max("_used").alias("_max"),
            F.sum("_missing").alias("_missing"),
            F.sum("_unlogged").alias("_unlogged"),
            *(
                [F.sum("_dr_c").alias("_dr_c"), F.sum("_dr_w").alias("_dr_w")]
                if correct
                else [F.lit(0.0).alias("_dr_c"), F.lit(0.0).alias("_dr_w")]
            ),
        )
        # a session's first slate in the logs marks it, for the logging policy's session sums
        per_slate = per_slate.withColumn(
            "_start",
            (
                F.col("slate") == F.min("slate").over(Window.partitionBy("user_id", "session_id"))
            ).cast("double"),
        )
        # One job for the three per-user frames: grouping sets, told apart by grouping_id.
        sets = [["user_id"], ["user_id", "slate"], *([["user_id", "day"]] if by_day else [])]
        grouped = _to_polars(
            per_slate.withColumn("_first", (F.col("slate") == 0).cast("double"))
            .groupingSets(sets, "user_id", "slate", "day")
            .agg(
                *_slate_sum_columns(),
                *(F.sum(c).alias(c) for c in ("_w", "_used", "_used2", "_nonzero", "_missing")),
                F.sum("_unlogged").alias("_unlogged"),
                *(F.sum(c).alias(c) for c in ("_dr_c", "_dr_w", "_start")),
                F.max("_max").alias("_max"),
                F.grouping_id().alias("_set"),
            )
        )
        per_user = grouped.filter(pl.col("_set") == _BY_USER).sort("user_id")
        by_slate = grouped.filter(pl.col("_set") == _BY_SLATE)
        daily = grouped.filter(pl.col("_set") == _BY_DAY).sort("user_id", "day") if by_day else None
        diagnostics = None
        if estimator in WEIGHTED:
            histogram = _histogram(frame, per_user)
            uncovered = 0
            if slots is not None and estimator in SELF_NORMALISED:
                uncovered = slots_local.filter(pl.col("_b") <= 0).height
            diagnostics = _diagnostics(
                per_user,
                histogram,
                uncovered=uncovered,
                without_propensity=0 if lists is None else window.rows - window.propensities,
            )
        session_sums = daily_sessions = None
        if need_sessions and lists is None:
            session_sums = _observed_sessions(per_user, ["user_id"])
            daily_sessions = None if daily is None else _observed_sessions(daily, BY_DAY)
        elif need_sessions and model is not None and lists is not None:
            session_sums, rolled_daily = on_model.rollout_sums(
                on_model.window_sessions(imps),
                _lists_frame(session, lists),
                model,
                slate_size=window.slate_size,
                max_slates=window.max_slates,
                seed=seed,
                replicates=replicates,
            )
            session_sums = _corrected(session_sums, per_user, ["user_id"])
            if daily is not None:
                daily_sessions = _corrected(rolled_daily, daily, BY_DAY)
    finally:
        frame.unpersist()
        if model is not None:
            model.unpersist()
    daily_sums = None
    if daily is not None:
        daily_sums = daily.select(
            "user_id",
            pl.col("day").cast(pl.Date),
            *(pl.col(c).cast(pl.Float64) for c in SLATE_SUMS),
        )
        if daily_sessions is not None:
            daily_sums = daily_sums.join(
                daily_sessions.with_columns(pl.col("day").cast(pl.Date)),
                on=BY_DAY,
                how="full",
                coalesce=True,
            )
            daily_sums = daily_sums.fill_null(0.0).sort(*BY_DAY)
    return ArmEstimate(
        slate_sums=per_user.select("user_id", *(pl.col(c).cast(pl.Float64) for c in SLATE_SUMS)),
        slate_index_sums=by_slate.select(
            "user_id",
            pl.col("slate").cast(pl.Int32),
            *(pl.col(c).cast(pl.Float64) for c in ("clicks", "watch_s", "impressions", "slates")),
        ).sort("user_id", "slate"),
        session_sums=session_sums,
        diagnostics=diagnostics,
        daily_sums=daily_sums,
    )


def _observed_sessions(sums: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """The logging policy's session sums (``offpolicy_abtest._observed_session_sums``) per keys."""
    return sums.select(
        *keys,
        pl.col("clicks").cast(pl.Float64).alias("s_clicks"),
        pl.col("impressions").cast(pl.Float64).alias("s_impressions"),
        pl.col("watch_s").cast(pl.Float64).alias("s_watch_s"),
        pl.col("slates").cast(pl.Float64).alias("s_slates"),
        pl.col("_start").cast(pl.Float64).alias("sessions"),
    ).sort(*keys)


def _corrected(rolled: pl.DataFrame, sums: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """A rollout's session sums plus the first slate's doubly robust correction of ``sums``."""
    correction = sums.select(
        *keys, pl.col("_dr_c").cast(pl.Float64), pl.col("_dr_w").cast(pl.Float64)
    )
    if "day" in keys:
        correction = correction.with_columns(pl.col("day").cast(pl.Date))
        rolled = rolled.with_columns(pl.col("day").cast(pl.Date))
    return (
        rolled.join(correction, on=keys, how="left")
        .with_columns(
            (pl.col("s_clicks") + pl.col("_dr_c").fill_null(0.0)).alias("s_clicks"),
            (pl.col("s_watch_s") + pl.col("_dr_w").fill_null(0.0)).alias("s_watch_s"),
        )
        .drop("_dr_c", "_dr_w")
        .sort(*keys)
    )


def _self_normalised(y: Column, weighted: str) -> Column:
    """``theta_s + (N_s / B_s) w (y - theta_s)`` per slot; 0 where the slot has no weight."""
    from pyspark.sql import functions as F

    b = F.col("_b")
    theta = F.col(weighted) / b
    scale = F.col("_n") / b
    return F.when(b > 0, theta + scale * F.col("_used") * (y - theta)).otherwise(F.lit(0.0))


def _slate_sum_columns() -> list[Column]:
    """``offpolicy.SLATE_SUMS`` of a per-slate frame with ``_first``, per group, as polars sums."""
    from pyspark.sql import functions as F

    first = F.col("_first")  # 1.0 on a session's first slate, else 0.0
    return [
        F.sum(F.col("clicks") * first).alias("first_clicks"),
        F.sum(F.col("watch_s") * first).alias("first_watch_s"),
        F.sum(F.col("impressions") * first).alias("first_impressions"),
        F.sum(first).alias("first_slates"),
        F.sum("clicks").alias("clicks"),
        F.sum("watch_s").alias("watch_s"),
        F.sum("impressions").alias("impressions"),
        F.count(F.lit(1)).cast("double").alias("slates"),
    ]


def _histogram(frame: DataFrame, per_user: pl.DataFrame) -> WeightHistogram:
    """``offpolicy.weight_histogram`` of the weights ``_w``, binned in Spark."""
    from pyspark.sql import functions as F

    bins = _to_polars(
        frame.filter(F.col("_w") > 0)
        .groupBy(F.floor(F.log10(F.col("_w")) * F.lit(BINS_PER_DECADE)).alias("k"))
        .agg(F.count(F.lit(1)).alias("n"))
    ).sort("k")
    total = int(per_user.get_column("impressions").sum())
    positive = int(bins.get_column("n").sum()) if bins.height else 0
    if not positive:
        return WeightHistogram(total, (), ())
    k = bins.get_column("k").to_numpy().astype(np.int64)
    low, high = int(k.min()), int(k.max())
    counts = np.zeros(high - low + 1, dtype=np.int64)
    counts[k - low] = bins.get_column("n").to_numpy()
    edges = tuple(10.0 ** (j / BINS_PER_DECADE) for j in range(low, high + 2))
    return WeightHistogram(total - positive, edges, tuple(int(c) for c in counts))


def _diagnostics(
    per_user: pl.DataFrame, histogram: WeightHistogram, *, uncovered: int, without_propensity: int
) -> WeightDiagnostics:
    """``offpolicy.weight_diagnostics`` from per-user partial sums (users as clusters)."""
    count = per_user.get_column("impressions").to_numpy().astype(np.float64)
    per_user_w = per_user.get_column("_w").to_numpy().astype(np.float64)
    n = int(count.sum())
    total = float(per_user.get_column("_used").sum())
    squares = float(per_user.get_column("_used2").sum())
    mean = float(per_user_w.sum() / n) if n else math.nan
    users = int((count > 0).sum())
    if users > 1:
        resid = per_user_w - mean * count
        se = math.sqrt(float((resid**2).sum()) * users / (users - 1)) / float(count.sum())
    else:
        se = math.nan
    return WeightDiagnostics(
        impressions=n,
        effective_sample_size=total**2 / squares if squares > 0 else 0.0,
        nonzero_share=int(per_user.get_column("_nonzero").sum()) / n if n else math.nan,
        max_weight=float(per_user.get_column("_max").max()) if n else math.nan,  # type: ignore[arg-type]
        mean_weight=mean,
        mean_weight_ci=(mean - 1.96 * se, mean + 1.96 * se),
        unlogged_share=int(per_user.get_column("_unlogged").sum()) / n if n else 0.0,
        missing_share=int(per_user.get_column("_missing").sum()) / n if n else 0.0,
        uncovered_slots=uncovered,
        without_propensity=without_propensity,
        histogram=histogram,
    )
