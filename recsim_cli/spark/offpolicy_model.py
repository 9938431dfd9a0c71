"""The session model on Spark: its fit rows on the driver, its predictions and rollouts in tasks.

`estimate_arm` (in ``recsim_cli.spark.offpolicy``) calls these for dm, dr
and the model-based session metrics:

1. `fit_inputs`: the rows ``fit_session_model`` reads, brought to the driver
   (the fit is one LightGBM training on one machine, as on polars): the
   pre-window events that have a slate and a position, in the nine columns
   the fit uses, and the item table (or, without one, the distinct item ids
   before the window);
2. `with_predictions`: the model's P(click) and expected watch seconds of
   the arm's item at each of the window's slots. The distinct slots (user,
   time, device, slate, position, target item) go through ``mapInPandas``:
   each task rebuilds the model from a broadcast of its LightGBM text models
   and feature tables (`SessionModel.to_parts`) and calls
   `SessionModel.predict` on its rows, the very code polars runs, so the
   features and numbers are the same; the predictions are joined back;
3. `rollout_sums`: each window session, with its user-day's list, goes
   through ``mapInPandas`` into `SessionModel.rollout`, whose draws are keyed
   hashes of (seed, user, session, replicate, slate, position), so a session
   gets the same numbers in any partition; the per-session means are summed
   per user and per (user, day) in Spark.

Only the fit rows (above) and per-user sums reach the driver; the window's
events never do. These are the one place recsim runs Python on Spark's rows
(pandas functions), because the boosters are LightGBM models.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import polars as pl

from recsim_cli.spark.session import SparkConfig, spark_session

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]
    from pyspark import Broadcast
    from pyspark.sql import DataFrame, SparkSession

    from recsim_cli.dataset import Dataset
    from recsim_cli.experiment.session_model import SessionModel

FIT_COLUMNS: Final = (
    "user_id",
    "item_id",
    "ts",
    "session_id",
    "slate",
    "position",
    "clicked",
    "watch_time_s",
    "device",
)
"""The columns of the pre-window events the session model's fit reads."""
CHUNK_ROWS: Final = 200_000
"""Rows a task gathers from its Arrow batches before scoring them (tables are joined per chunk)."""
CELL_KEYS: Final = ("user_id", "_t_us", "device", "slate", "position", "_target")
CELL_DDL: Final = (
    "user_id STRING, _t_us BIGINT, device STRING, slate INT, position INT, _target STRING, "
    "_q_click DOUBLE, _q_watch DOUBLE"
)
ROLLOUT_DDL: Final = (
    "session_id STRING, user_id STRING, day DATE, clicks DOUBLE, impressions DOUBLE, "
    "watch_s DOUBLE, slates DOUBLE"
)
SESSION_SUMS: Final = ("s_clicks", "s_impressions", "s_watch_s", "s_slates", "sessions")
_BY_USER, _BY_DAY = 0b01, 0b00  # grouping_id() over (user_id, day)


# -- the fit's rows ----------------------------------------------------------------------


def fit_inputs(
    dataset: Dataset, data: object, start: dt.datetime, config: SparkConfig | None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The pre-window impressions (`FIT_COLUMNS`) and the item table, collected to the driver.

    The impressions are the events before ``start`` with a user, item,
    session, time, slate and position (the rows ``fit_session_model`` keeps);
    the items are the dataset's item table, or the distinct item ids of the
    events before ``start`` when it has none (what the polars engine uses).
    """
    from pyspark.sql import functions as F

    from recsim_cli.spark.offpolicy import EVENTS_DDL, _events, _micros, _to_polars

    session = spark_session(config)
    events = _events(dataset, data, session)
    if events is None:
        events = session.createDataFrame([], EVENTS_DDL)
    before = events.filter(F.unix_micros(F.col("ts")) < F.lit(_micros(start)))
    placed = F.lit(True)
    for column in ("user_id", "item_id", "session_id", "ts", "slate", "position"):
        placed = placed & F.col(column).isNotNull()
    rows = _to_polars(before.filter(placed).select(*FIT_COLUMNS))
    if dataset.has_items:
        items = dataset.items().collect()
    else:
        ids = _to_polars(before.select("item_id").where(F.col("item_id").isNotNull()).distinct())
        items = ids.sort("item_id")
    return rows, items


# -- predictions -------------------------------------------------------------------------


def broadcast_model(session: SparkSession, model: SessionModel) -> Broadcast[dict[str, Any]]:
    """Ship the model's text boosters and Arrow tables to every executor once."""
    return session.sparkContext.broadcast(model.to_parts())


def with_predictions(frame: DataFrame, model: Broadcast[dict[str, Any]]) -> DataFrame:
    """``frame`` with ``_q_click`` and ``_q_watch``: the model's expectations for ``_target``.

    ``_q_click`` is P(click) of the target's item at the row's slot and
    ``_q_watch`` that times the expected watch seconds of a click, as
    ``offpolicy_abtest.predict_targets`` computes them; both 0 where the
    target has no item. ``frame`` needs the `CELL_KEYS` columns.
    """
    from pyspark.sql import functions as F

    cells = frame.where(F.col("_target").isNotNull()).select(*CELL_KEYS).distinct()
    scored = cells.mapInPandas(partial(_predict_batches, model), schema=CELL_DDL)
    scored = scored.select(*(F.col(c).alias(f"_k{c}") for c in CELL_KEYS), "_q_click", "_q_watch")
    on = [
        frame[c].eqNullSafe(scored[f"_k{c}"]) if c == "device" else frame[c] == scored[f"_k{c}"]
        for c in CELL_KEYS
    ]
    joined = frame.join(scored, on, "left")
    return joined.select(
        *frame.columns,
        F.coalesce(F.col("_q_click"), F.lit(0.0)).alias("_q_click"),
        F.coalesce(F.col("_q_watch"), F.lit(0.0)).alias("_q_watch"),
    )


def _predict_batches(
    model: Broadcast[dict[str, Any]], batches: Iterator[pd.DataFrame]
) -> Iterator[pd.DataFrame]:
    """A task's side of `with_predictions`: `SessionModel.predict` on its slots, by chunks."""
    session_model = _model(model)
    for chunk in _chunks(batches):
        slots = chunk.select(
            "user_id",
            pl.col("_target").alias("item_id"),
            _ts(pl.col("_t_us")).alias("ts"),
            "device",
            "slate",
            "position",
        )
        predicted = session_model.predict(slots)
        p_click = predicted.get_column("p_click")
        yield chunk.with_columns(
            p_click.alias("_q_click"),
            (p_click * predicted.get_column("watch_s")).alias("_q_watch"),
        ).to_pandas()


# -- rollouts ----------------------------------------------------------------------------


def window_sessions(impressions: DataFrame) -> DataFrame:
    """One row per window session, as ``offpolicy_abtest._sessions``: user, day, start, device.

    A session's user and day are those of its first row in (user, slate,
    position) order, its start the earliest event, its device the earliest
    event's.
    """
    from pyspark.sql import functions as F

    first = F.struct("user_id", "slate", "position")
    earliest = F.struct("_t_us", "user_id", "slate", "position")
    return impressions.groupBy("session_id").agg(
        F.min("user_id").alias("user_id"),
        F.min_by("day", first).alias("day"),
        F.min("_t_us").alias("_t_us"),
        F.min_by("device", earliest).alias("device"),
    )


def rollout_sums(
    sessions: DataFrame,
    lists: DataFrame,
    model: Broadcast[dict[str, Any]],
    *,
    slate_size: int,
    max_slates: int,
    seed: int,
    replicates: int,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Roll every session through the arm's ``lists``; its sums per user and per (user, day).

    ``sessions`` come from `window_sessions`; ``lists`` are (user_id, day,
    rank, item_id). Each frame has the keys and `SESSION_SUMS`, sorted, every
    user (user-day) with a session in it.
    """
    from pyspark.sql import functions as F

    width = slate_size * max_slates
    grouped = (
        lists.where((F.col("rank") >= 0) & (F.col("rank") < F.lit(width)))
        .groupBy("user_id", "day")
        .agg(F.sort_array(F.collect_list(F.struct("rank", "item_id"))).alias("_list"))
        .select(
            "user_id",
            "day",
            F.col("_list").getField("rank").alias("_ranks"),
            F.col("_list").getField("item_id").alias("_items"),
        )
    )
    rows = sessions.join(grouped, ["user_id", "day"], "left")
    run = partial(
        _rollout_batches,
        model,
        slate_size=slate_size,
        max_slates=max_slates,
        seed=seed,
        replicates=replicates,
    )
    out = rows.mapInPandas(run, schema=ROLLOUT_DDL)
    sums = _to_polars_frame(
        out.groupingSets([["user_id"], ["user_id", "day"]], "user_id", "day").agg(
            F.sum("clicks").alias("s_clicks"),
            F.sum("impressions").alias("s_impressions"),
            F.sum("watch_s").alias("s_watch_s"),
            F.sum("slates").alias("s_slates"),
            F.count(F.lit(1)).cast("double").alias("sessions"),
            F.grouping_id().alias("_set"),
        )
    )
    per_user = sums.filter(pl.col("_set") == _BY_USER).select("user_id", *SESSION_SUMS)
    daily = sums.filter(pl.col("_set") == _BY_DAY).select("user_id", "day", *SESSION_SUMS)
    return per_user.sort("user_id"), daily.sort("user_id", "day")


def _rollout_batches(
    model: Broadcast[dict[str, Any]],
    batches: Iterator[pd.DataFrame],
    *,
    slate_size: int,
    max_slates: int,
    seed: int,
    replicates: int,
) -> Iterator[pd.DataFrame]:
    """A task's side of `rollout_sums`: `SessionModel.rollout` of its sessions, by chunks."""
    session_model = _model(model)
    for chunk in _chunks(batches):
        sessions = chunk.select(
            "session_id", "user_id", "day", _ts(pl.col("_t_us")).alias("ts"), "device"
        )
        lists = (
            chunk.select("user_id", "day", "_ranks", "_items")
            .unique(["user_id", "day"], keep="first")
            .drop_nulls("_ranks")
            .explode("_ranks", "_items")
            .select(
                "user_id",
                "day",
                pl.col("_ranks").cast(pl.Int64).alias("rank"),
                pl.col("_items").cast(pl.String).alias("item_id"),
            )
            .drop_nulls("rank")
        )
        out = session_model.rollout(
            sessions,
            lists,
            slate_size=slate_size,
            max_slates=max_slates,
            seed=seed,
            replicates=replicates,
        )
        yield out.select(
            "session_id",
            "user_id",
            chunk.get_column("day"),
            "clicks",
            "impressions",
            "watch_s",
            "slates",
        ).to_pandas()


# -- small helpers -----------------------------------------------------------------------


_MODELS: dict[int, tuple[dict[str, Any], SessionModel]] = {}


def _model(model: Broadcast[dict[str, Any]]) -> SessionModel:
    """The broadcast model, rebuilt once per Python worker and broadcast (the last one kept)."""
    from recsim_cli.experiment.session_model import SessionModel

    parts = model.value
    if id(parts) not in _MODELS:  # the cache holds ``parts``, so its id is not reused meanwhile
        _MODELS.clear()
        _MODELS[id(parts)] = (parts, SessionModel.from_parts(parts))
    return _MODELS[id(parts)][1]


def _chunks(batches: Iterator[pd.DataFrame]) -> Iterator[pl.DataFrame]:
    """The task's pandas batches as polars frames of about `CHUNK_ROWS` rows."""
    parts: list[pl.DataFrame] = []
    size = 0
    for batch in batches:
        parts.append(pl.from_pandas(batch))
        size += len(batch)
        if size >= CHUNK_ROWS:
            yield pl.concat(parts, how="vertical_relaxed")
            parts, size = [], 0
    if size:
        yield pl.concat(parts, how="vertical_relaxed")


def _ts(micros: pl.Expr) -> pl.Expr:
    """Microseconds since the epoch as a UTC Datetime."""
    return pl.from_epoch(micros.cast(pl.Int64), time_unit="us").dt.replace_time_zone("UTC")


def _to_polars_frame(frame: DataFrame) -> pl.DataFrame:
    from recsim_cli.spark.offpolicy import _to_polars

    return _to_polars(frame)
