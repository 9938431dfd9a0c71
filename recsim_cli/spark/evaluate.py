"""``recsim evaluate --engine spark``: the held-out truth and the per-user metrics on Spark.

`SparkJudge` is the Spark twin of `recsim_cli.evaluate.PolarsJudge`: it reads
the dataset's Parquet parts with Spark, finds the held-out truth (the
relevance rule, seen items left out, the ``--by`` segment), ranks the lists
with the tie rule of `recsim_cli.metrics.rank_lists`, and computes every
metric of `recsim_cli.metrics` at every k per user with joins, window
functions and aggregates, the same formulas in the same floating-point
operations. Only aggregates reach the driver:

- the complete item table, O(items), built by `recsim_cli.split.complete_items`
  from one summary row per item;
- one row per judged user, O(users x metrics x ks);
- each user's hits within the top max(k), O(hits) <= O(users x max k), from
  which `recsim_cli.evaluate.hit_curves` draws the curves;
- counts (coverage, fresh share, users without relevant items).

Registry models score on the driver (`TwoStageModel.recommend` needs the
history before the window in memory, as ``recsim recommend`` does); their
lists go to Spark with ``createDataFrame``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import polars as pl

from recsim_cli.dataset import EVENTS_COLUMNS, TIMESTAMP, Dataset
from recsim_cli.errors import InputFileError, SchemaError
from recsim_cli.evaluate import (
    NEW_SEGMENT,
    RETURNING_SEGMENT,
    HeldOut,
    Measured,
    Relevance,
    hit_curves,
    hits_of,
    no_held_out_events,
    no_relevant_users,
    unknown_by,
)
from recsim_cli.metrics import (
    ID_COLUMNS,
    MapDenominator,
    UserMetrics,
    metric_column,
    parse_ks,
    parse_metrics,
)
from recsim_cli.split import DURATION_QUANTILE, complete_items, temporal_cutoff

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
SPARK_TYPES: Final = {
    pl.String(): "string",
    pl.Int64(): "bigint",
    pl.Float64(): "double",
    pl.Boolean(): "boolean",
    TIMESTAMP: "timestamp",
}
EVENTS_DDL: Final = ", ".join(f"{c.name} {SPARK_TYPES[c.dtype]}" for c in EVENTS_COLUMNS)
"""The events contract as a Spark schema: Spark reads the parts with the types polars does."""


def micros(ts: datetime) -> int:
    """Microseconds since the epoch: how timestamps are compared on Spark, exactly."""
    return (ts - EPOCH) // timedelta(microseconds=1)


def from_micros(value: int) -> datetime:
    """The UTC datetime of ``value`` microseconds since the epoch."""
    return EPOCH + timedelta(microseconds=value)


def to_polars(frame: DataFrame) -> pl.DataFrame:
    """Collect a (small, aggregated) Spark frame to polars through Arrow."""
    result = pl.from_arrow(frame.toArrow())
    assert isinstance(result, pl.DataFrame)
    return result


def to_spark(session: SparkSession, frame: pl.DataFrame) -> DataFrame:
    """Hand a polars frame made on the driver (an item table, a model's lists) to Spark."""
    return session.createDataFrame(frame.to_arrow(compat_level=pl.CompatLevel.oldest()))


def _polars_type(frame: DataFrame, column: str) -> pl.DataType:
    """The polars type of a Spark column, so that messages name types as the polars engine does."""
    return to_polars(frame.select(column).limit(0)).schema[column]


def _first_line(exc: BaseException) -> str:
    """The first line of an error's message; for a py4j error, of the Java exception's."""
    java = getattr(exc, "java_exception", None)  # py4j's "An error occurred while calling ..."
    text = str(java.toString() if java is not None else exc).strip()
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__


def no_held_out_data(dataset: Dataset) -> Exception:
    """The error of `recsim_cli.split.dataset_cutoff` for a dataset without events."""
    from recsim_cli.errors import DatasetError

    return DatasetError(f"{dataset.root} has no events; ingest a log first.")


# -- recommendation files ------------------------------------------------------------------


def read_recommendations_spark(session: SparkSession, path: Path) -> DataFrame:
    """Read a recommendations file with Spark: the checks and errors of `read_recommendations`.

    CSV is read with a header and inferred types (integers, decimals, text),
    as polars infers them; user_id and item_id become text.
    """
    from pyspark.sql import functions as F

    if not path.is_file():
        raise InputFileError(f"{path} does not exist; give a Parquet or CSV file to --recs.")
    is_csv = path.suffix in (".csv", ".gz") or path.name.endswith(".csv.gz")
    if path.suffix != ".parquet" and not is_csv:
        raise InputFileError(f"{path}: unknown format; give recommendations as .parquet or .csv.")
    try:
        if is_csv:
            reader = session.read.option("header", True).option("inferSchema", True)
            frame = reader.csv(str(path))
        else:
            frame = session.read.parquet(str(path))
        columns = frame.columns
    except Exception as exc:  # Spark's analysis and py4j errors share no base class
        raise InputFileError(
            f"{path} cannot be read as recommendations ({_first_line(exc)})."
        ) from None
    if is_csv and not columns:
        raise InputFileError(f"{path} cannot be read as recommendations (empty CSV).")
    missing = [c for c in ID_COLUMNS if c not in columns]
    if missing or not ({"rank", "score"} & set(columns)):
        raise SchemaError(
            f"{path} needs columns user_id, item_id and rank or score; found "
            f"{', '.join(columns) or 'none'}."
        )
    return frame.withColumns({c: F.col(c).cast("string") for c in ID_COLUMNS})


def rank_lists_spark(recs: DataFrame) -> DataFrame:
    """Rank lists as `recsim_cli.metrics.rank_lists` does: user_id, item_id, pos (1-based).

    By ``rank`` ascending if the column exists, else ``score`` descending;
    ties by item_id ascending; null or NaN last; a repeated (user, item)
    keeps its best rank or score; rows with a null id dropped.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    columns = recs.columns
    key = "rank" if "rank" in columns else "score"
    if any(c not in columns for c in ID_COLUMNS) or key not in columns:
        raise SchemaError(
            f"The recommendations have columns {', '.join(columns) or '(none)'} but need "
            "user_id, item_id and rank or score; rename the columns or write lists with "
            "`recsim recommend`."
        )
    key_type = recs.schema[key].dataType
    if not isinstance(key_type, T.NumericType | T.NullType):
        raise SchemaError(
            f"Column '{key}' of the recommendations is {_polars_type(recs, key)}, expected "
            "numbers; cast it to a numeric type."
        )
    value = F.col(key)
    if isinstance(key_type, T.FloatType | T.DoubleType):
        value = F.when(F.isnan(value), F.lit(None)).otherwise(value)
    best = F.min("_key") if key == "rank" else F.max("_key")  # nulls only if all are null
    order = F.col("_key").asc_nulls_last() if key == "rank" else F.col("_key").desc_nulls_last()
    return (
        recs.select(*ID_COLUMNS, value.alias("_key"))
        .where(F.col("user_id").isNotNull() & F.col("item_id").isNotNull())
        .groupBy(*ID_COLUMNS)
        .agg(best.alias("_key"))
        .withColumn(
            "pos",
            F.row_number().over(Window.partitionBy("user_id").orderBy(order, F.col("item_id"))),
        )
        .select(*ID_COLUMNS, "pos")
    )


# -- the per-user metrics --------------------------------------------------------------------


def _discounts(k: int) -> list[float]:
    """``1 / log2(i + 1)`` for i = 1..k, computed as `recsim_cli.metrics.ndcg` computes them."""
    values: np.ndarray[Any, Any] = 1.0 / np.log2(np.arange(1, k + 1) + 1.0)
    return [float(v) for v in values]


def _ideal(k: int) -> list[float]:
    """IDCG@k of m hits at the top, m = 1..k, as `recsim_cli.metrics.ndcg` computes it."""
    values: np.ndarray[Any, Any] = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))
    return [float(v) for v in values]


def _lookup(values: Sequence[float], index: Column) -> Column:
    """``values[index - 1]`` as a Spark expression (1-based, as positions are)."""
    from pyspark.sql import functions as F

    return F.element_at(F.array(*(F.lit(v) for v in values)), index.cast("int"))


def hits_spark(ranked: DataFrame, truth: DataFrame, max_k: int) -> DataFrame:
    """The relevant items within the top ``max_k``: user_id, pos, nth (1 for a user's first)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    return (
        ranked.where(F.col("pos") <= max_k)
        .join(truth, on=list(ID_COLUMNS), how="left_semi")
        .select(
            "user_id",
            "pos",
            F.row_number().over(Window.partitionBy("user_id").orderBy("pos")).alias("nth"),
        )
    )


def user_metrics_spark(
    ranked: DataFrame,
    hits: DataFrame,
    users: DataFrame,
    *,
    ks: Sequence[int],
    metrics: Sequence[str],
    map_denominator: MapDenominator,
    positions: bool = False,
) -> DataFrame:
    """Every metric at every k per user of ``users``, as `recsim_cli.metrics.user_metrics`.

    ``ranked``: user_id, item_id, pos; ``hits``: `hits_spark` of it at max(ks);
    ``users``: user_id, n_relevant. Returns user_id, n_relevant, n_recommended
    and one column per (metric, k), unsorted. The sums per user are the
    ``np.bincount`` weights of `recsim_cli.metrics` (``nth / pos`` for MAP,
    the discount for NDCG, ``1 / pos`` of the first hit for MRR). With
    ``positions``, ``_hit_pos`` lists the positions of each user's hits
    (null without hits), for the curves.
    """
    from pyspark.sql import functions as F

    names, cutoffs = parse_metrics(metrics), parse_ks(ks)
    pos, nth = F.col("pos"), F.col("nth")
    discount = _lookup(_discounts(cutoffs[-1]), pos)
    sums: list[Column] = []
    for k in cutoffs:
        inside = pos <= k
        sums.append(F.count(F.when(inside, 1)).alias(f"_hits{k}"))
        sums.append(F.sum(F.when(inside, nth / pos)).alias(f"_ap{k}"))
        sums.append(F.sum(F.when(inside, discount)).alias(f"_dcg{k}"))
        sums.append(F.sum(F.when(inside & (nth == 1), F.lit(1.0) / pos)).alias(f"_rr{k}"))
    if positions:
        sums.append(F.collect_list("pos").alias("_hit_pos"))
    per_user = hits.groupBy("user_id").agg(*sums)
    listed = ranked.groupBy("user_id").agg(F.count(F.lit(1)).alias("n_recommended"))
    table = users.join(listed, on="user_id", how="left").join(per_user, on="user_id", how="left")
    n_relevant = F.col("n_relevant")
    values: list[Column] = []
    for name in names:
        for k in cutoffs:
            total = F.coalesce(F.col(f"_hits{k}"), F.lit(0)).cast("double")
            summed = {c: F.coalesce(F.col(f"_{c}{k}"), F.lit(0.0)) for c in ("ap", "dcg", "rr")}
            if name == "precision":
                value = total / F.lit(k)
            elif name == "recall":
                value = total / n_relevant
            elif name == "map":
                denominator = (
                    n_relevant if map_denominator == "relevant" else F.least(n_relevant, F.lit(k))
                )
                value = summed["ap"] / denominator
            elif name == "ndcg":
                value = summed["dcg"] / _lookup(_ideal(k), F.least(n_relevant, F.lit(k)))
            elif name == "mrr":
                value = summed["rr"]
            else:  # hit_rate
                value = F.when(total > 0, F.lit(1.0)).otherwise(F.lit(0.0))
            values.append(value.cast("double").alias(metric_column(name, k)))
    return table.select(
        "user_id",
        F.col("n_relevant").cast("bigint").alias("n_relevant"),
        F.coalesce(F.col("n_recommended"), F.lit(0)).cast("bigint").alias("n_recommended"),
        *values,
        *(["_hit_pos"] if positions else []),
    )


# -- the held-out window ---------------------------------------------------------------------


def _read_events(session: SparkSession, dataset: Dataset) -> DataFrame:
    files = [dataset.uri(f) for f in dataset.manifest.events_files]
    if not files:
        return session.createDataFrame([], EVENTS_DDL)
    return session.read.schema(EVENTS_DDL).parquet(*files)


def _item_summary(events: DataFrame) -> tuple[pl.DataFrame, int | None]:
    """One row per event item whose aggregates equal the item's in `complete_items`.

    ``ts``: the item's first event; ``watch_time_s``: the DURATION_QUANTILE
    quantile (interpolation "higher": the value at 0-based index
    ``ceil((n - 1) q)`` of the n positive watch times) or 0 if none, which
    `complete_items` then leaves out as it leaves out zero watches. Also
    returns the last event's time in microseconds (None without events), from
    the same Spark job. ``events`` needs ``_us``, the microseconds of ts.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    by_item = Window.partitionBy("item_id")
    quantile = (
        events.where(F.col("watch_time_s") > 0)
        .select(
            "item_id",
            "watch_time_s",
            F.row_number().over(by_item.orderBy("watch_time_s")).alias("_row"),
            F.count(F.lit(1)).over(by_item).alias("_n"),
        )
        .where(F.col("_row") == F.ceil((F.col("_n") - 1) * F.lit(DURATION_QUANTILE)) + 1)
        .select("item_id", F.col("watch_time_s").alias("_watch_q"))
    )
    first = events.groupBy("item_id").agg(
        F.min("_us").alias("_first_us"), F.max("_us").alias("_last_us")
    )
    summary = to_polars(first.join(quantile, on="item_id", how="left"))
    last = summary["_last_us"].max()
    frame = summary.select(
        pl.col("item_id").cast(pl.String),
        pl.col("_first_us").cast(pl.Int64).cast(TIMESTAMP).alias("ts"),
        pl.col("_watch_q").cast(pl.Float64).fill_null(0.0).alias("watch_time_s"),
    ).sort("item_id")
    return frame, None if last is None else int(last)  # type: ignore[arg-type]


def _relevant(relevance: Relevance) -> Column:
    """`Relevance.expression` on Spark (needs clicked, watch_time_s, duration_s)."""
    from pyspark.sql import functions as F

    if relevance.kind == "clicked":
        return F.col("clicked")
    return F.col("clicked") & (
        F.col("watch_time_s") >= F.lit(relevance.fraction) * F.col("duration_s")
    )


def _by_values(window: DataFrame, by: str) -> DataFrame | pl.DataFrame:
    """Each user's most frequent value of ``by`` in the window, ties to the smallest as text.

    Spark's text of a string, integer or boolean is polars'; that of a float
    or timestamp is not, so for those the tied values of each user (O(users)
    rows in practice) come to the driver and polars casts and picks.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    counts = (
        window.where(F.col(by).isNotNull())
        .groupBy("user_id", F.col(by).alias("_value"))
        .agg(F.count(F.lit(1)).alias("_n"))
    )
    tied = counts.withColumn("_most", F.max("_n").over(Window.partitionBy("user_id"))).where(
        F.col("_n") == F.col("_most")
    )
    kind = window.schema[by].dataType
    if isinstance(kind, T.StringType | T.IntegralType | T.BooleanType):
        return tied.groupBy("user_id").agg(F.min(F.col("_value").cast("string")).alias("by_value"))
    dtype = next(c.dtype for c in EVENTS_COLUMNS if c.name == by)
    return (
        to_polars(tied.select("user_id", "_value"))
        .select(
            pl.col("user_id").cast(pl.String),
            pl.col("_value").cast(dtype).cast(pl.String).alias("by_value"),
        )
        .group_by("user_id")
        .agg(pl.col("by_value").min())
    )


class SparkJudge:
    """The held-out window and the metrics computed on Spark; see the module docstring.

    The truth and its users are cached in Spark until `close`.
    """

    def __init__(
        self,
        session: SparkSession,
        dataset: Dataset,
        start: datetime | None,
        *,
        test_days: int,
        relevance: Relevance,
        include_seen: bool,
        by: str | None,
        owner: str,
    ) -> None:
        from pyspark.sql import functions as F

        self.session = session
        self.dataset = dataset
        events = _read_events(session, dataset)
        columns = events.columns
        events = events.withColumn("_us", F.unix_micros("ts"))
        summary, last_us = _item_summary(events)
        if start is None:
            if last_us is None:
                raise no_held_out_data(dataset)
            start = temporal_cutoff(from_micros(last_us), test_days)
        # the window (ts >= start) holds events exactly when the last event is in it
        if last_us is None or last_us < micros(start):
            raise no_held_out_events(dataset.root, start, owner)
        end = from_micros(last_us)
        start_us = micros(start)
        window = events.where(F.col("_us") >= start_us)
        before = events.where(F.col("_us") < start_us)
        items = complete_items(summary, dataset.items().collect(), source=str(dataset.root))
        if by is not None and by not in columns:
            raise unknown_by(by, columns)
        self.items = F.broadcast(
            to_spark(
                session,
                items.select(
                    "item_id", "duration_s", pl.col("published_ts").dt.epoch("us").alias("_pub_us")
                ),
            )
        )
        truth = (
            window.join(self.items.select("item_id", "duration_s"), on="item_id", how="left")
            .where(_relevant(relevance))
            .select(*ID_COLUMNS)
            .distinct()
        )
        if not include_seen:
            seen = before.where(F.col("clicked")).select(*ID_COLUMNS).distinct()
            truth = truth.join(seen, on=list(ID_COLUMNS), how="left_anti")
        self.truth = truth.persist()
        known = before.select("user_id").distinct().withColumn("_known", F.lit(True))
        self.users = (
            self.truth.groupBy("user_id").agg(F.count(F.lit(1)).alias("n_relevant")).persist()
        )
        table = self.users.join(known, on="user_id", how="left").select(
            "user_id",
            "n_relevant",
            F.when(F.col("_known").isNull(), F.lit(NEW_SEGMENT))
            .otherwise(F.lit(RETURNING_SEGMENT))
            .alias("first_seen"),
        )
        by_values = None if by is None else _by_values(window, by)
        if by_values is not None and not isinstance(by_values, pl.DataFrame):
            table = table.join(by_values, on="user_id", how="left")
        users = to_polars(table).with_columns(
            pl.col("user_id").cast(pl.String), pl.col("n_relevant").cast(pl.Int64)
        )
        if isinstance(by_values, pl.DataFrame):
            users = users.join(by_values, on="user_id", how="left")
        if by is not None:
            users = users.with_columns(pl.col("by_value").cast(pl.String))
        users = users.sort("user_id")
        if users.height == 0:
            self.close()
            raise no_relevant_users(relevance, start)
        relevant_pairs = int(users["n_relevant"].sum())
        self.held_out = HeldOut(start, end, users, relevant_pairs, items, by)

    def _ranked(self, recs: Any) -> DataFrame:
        if isinstance(recs, pl.DataFrame):  # a registry model's lists, made on the driver
            keep = [c for c in (*ID_COLUMNS, "rank", "score") if c in recs.columns]
            recs = to_spark(self.session, recs.select(keep))
        return rank_lists_spark(recs).persist()

    def _collect(
        self,
        ranked: DataFrame,
        hits: DataFrame,
        ks: Sequence[int],
        metrics: Sequence[str],
        map_denominator: MapDenominator,
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The per-user metrics (sorted by user) and the hits (user_id, pos), in one job."""
        columns = [metric_column(m, k) for m in parse_metrics(metrics) for k in parse_ks(ks)]
        spark_frame = user_metrics_spark(
            ranked,
            hits,
            self.users,
            ks=ks,
            metrics=metrics,
            map_denominator=map_denominator,
            positions=True,
        )
        collected = to_polars(spark_frame).with_columns(
            pl.col("user_id").cast(pl.String),
            pl.col("n_relevant", "n_recommended").cast(pl.Int64),
            pl.col(columns).cast(pl.Float64),
        )
        found = (
            collected.select("user_id", pl.col("_hit_pos").alias("pos"))
            .explode("pos")
            .drop_nulls("pos")
            .with_columns(pl.col("pos").cast(pl.Int64))
        )
        return collected.drop("_hit_pos").sort("user_id"), found

    def _without_relevant(self, ranked: DataFrame) -> DataFrame:
        """One row: ``without``, the users with a list but no relevant item."""
        from pyspark.sql import functions as F

        listed = ranked.select("user_id").distinct()
        return listed.join(self.users, "user_id", "left_anti").agg(
            F.count(F.lit(1)).alias("without")
        )

    def user_metrics(
        self,
        recs: Any,
        *,
        ks: Sequence[int],
        metrics: Sequence[str],
        map_denominator: MapDenominator,
    ) -> UserMetrics:
        ranked = self._ranked(recs)
        try:
            hits = hits_spark(ranked, self.truth, max(ks))
            per_user, _ = self._collect(ranked, hits, ks, metrics, map_denominator)
            row = self._without_relevant(ranked).first()
            assert row is not None
        finally:
            ranked.unpersist()
        return UserMetrics(
            per_user=per_user,
            users_without_relevant=int(row["without"]),
            users_without_recommendations=int((per_user["n_recommended"] == 0).sum()),
        )

    def measure(
        self,
        recs: Any,
        *,
        ks: Sequence[int],
        metrics: Sequence[str],
        map_denominator: MapDenominator,
    ) -> Measured:
        from pyspark.sql import functions as F

        max_k = max(ks)
        held = self.held_out
        ranked = self._ranked(recs)
        try:
            hits = hits_spark(ranked, self.truth, max_k)
            per_user, found = self._collect(ranked, hits, ks, metrics, map_denominator)
            fresh = self.items.where(
                (F.col("_pub_us") >= micros(held.fresh_since))
                & (F.col("_pub_us") < micros(held.start))
            ).select("item_id", F.lit(1).alias("_fresh"))
            top = (
                ranked.where(F.col("pos") <= max_k)
                .join(self.users.select("user_id"), on="user_id", how="left_semi")
                .join(fresh, on="item_id", how="left")
                .agg(
                    F.count_distinct("item_id").alias("items"),
                    F.count(F.lit(1)).alias("rows"),
                    F.count("_fresh").alias("fresh"),
                )
            )
            row = top.crossJoin(self._without_relevant(ranked)).first()
            assert row is not None
        finally:
            ranked.unpersist()
        metrics_ = UserMetrics(
            per_user=per_user,
            users_without_relevant=int(row["without"]),
            users_without_recommendations=int((per_user["n_recommended"] == 0).sum()),
        )
        users = per_user.select("user_id", "n_relevant")
        curves = hit_curves(hits_of(users, found, map_denominator), metrics, max_k)
        coverage = row["items"] / max(held.catalogue.height, 1)
        return Measured(metrics_, curves, coverage, row["fresh"] / max(row["rows"], 1))

    def serving_inputs(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The history before the window, read on the driver: registry models score there."""
        from recsim_cli.models.two_stage import serving_inputs

        return serving_inputs(self.dataset, self.held_out.start)

    def close(self) -> None:
        """Drop the cached truth and users from Spark's memory."""
        self.truth.unpersist()
        self.users.unpersist()
