"""The session model's features: the fit rows, user and item statistics, priors and matrices.

`fit_session_model` (in `session_model`) turns the logs into impression rows
(`logged_impressions`, `item_catalogue`, `with_sessions`), computes the
global `SessionPriors` and the user and item statistics from them, and the
boosters of `session_boosters` are fit on and predict from the
`click_matrix` and `continue_matrix` built here.

User and item statistics enter the models as features. At prediction they
are computed from all the fit logs (as of the fit cutoff: `full_statistics`,
kept as arrays in `Tables`). On the training rows they are *point in time*
(`point_in_time`): the statistics of a row come from the sessions that
started on earlier UTC days only, a daily snapshot. A row never sees its own
label through them, and a row seen a day after its snapshot is exactly the
situation of a prediction after the cutoff: an item uploaded the day before
has almost no history in both (statistics over the whole log would instead
give a new item's early rows its later popularity, and the model would never
learn what a new item with no history does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl

from recsim_cli.errors import InternalError
from recsim_cli.models.features import DEVICE_NULL, device_code

__all__ = [
    "CLICK_FEATURES",
    "CONTINUE_FEATURES",
    "US_PER_S",
    "SessionPriors",
    "Tables",
    "build_tables",
    "click_matrix",
    "continue_matrix",
    "full_statistics",
    "global_priors",
    "item_catalogue",
    "logged_impressions",
    "median_gap",
    "point_in_time",
    "require_columns",
    "slate_examples",
    "watch_fraction",
    "with_sessions",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

US_PER_S: Final = 1_000_000
US_PER_HOUR: Final = 3600 * US_PER_S
US_PER_DAY: Final = 24 * US_PER_HOUR

STATISTICS: Final[tuple[str, ...]] = (
    "item_ctr",
    "item_log_impressions",
    "user_log_sessions",
    "user_ctr",
    "user_category_share",
    "user_watch_fraction",
)
"""The user and item statistics among the `CLICK_FEATURES` (point in time on the training rows)."""

CLICK_FEATURES: Final[tuple[str, ...]] = (
    "position",
    "slate",
    "device",
    "hour_sin",
    "hour_cos",
    "dow",
    "log_duration",
    "category",
    "item_age_days",
    *STATISTICS,
)
"""Features of the click and the watch models, in the order the boosters see them."""

CONTINUE_FEATURES: Final[tuple[str, ...]] = (
    "slate",
    "clicks",
    "watch_fraction",
    "device",
    "hour_sin",
    "hour_cos",
    "user_log_sessions",
)
"""Features of the continue model: the slate just shown, its clicks, the context and the user."""

HOLDOUT_SHARE: Final = 0.1
PRIOR_CLICKS: Final = 2.0
"""Strength of the priors of the smoothed rates, in clicks (or expected clicks)."""


@dataclass(frozen=True)
class SessionPriors:
    """The global values an unseen user or item takes, and the smoothing targets.

    ``ctr``: clicks / impressions of the fit logs; ``watch_fraction``: the mean
    watch fraction of a click; ``category_share``: each category's smoothed share
    of all clicks (index = category code, the last one "none"); ``log_duration``
    and ``age_days``: medians over the catalogue and over the logged impressions;
    ``continue_rate``: the share of clicked slates followed by another slate.
    """

    ctr: float
    watch_fraction: float
    category_share: tuple[float, ...]
    log_duration: float
    age_days: float
    continue_rate: float


@dataclass(frozen=True, eq=False)
class Tables:
    """The feature tables as numpy arrays; the last entry of each is the unseen-id prior."""

    user_log_sessions: FloatArray
    user_ctr: FloatArray
    user_watch_fraction: FloatArray
    user_clicks: FloatArray
    pair_key: IntArray  # user code * n_categories + category code, sorted
    pair_clicks: FloatArray
    log_duration: FloatArray
    duration_s: FloatArray
    category: IntArray
    published_us: FloatArray  # NaN when unknown
    item_ctr: FloatArray
    item_log_impressions: FloatArray
    category_share: FloatArray


# -- the fit rows ------------------------------------------------------------------------


def logged_impressions(events: pl.DataFrame) -> pl.DataFrame:
    """The events with a slate and a position, in the columns and types the fit uses."""
    require_columns(
        events,
        ("user_id", "item_id", "ts", "session_id", "slate", "position", "clicked", "watch_time_s"),
        "events",
    )
    device = (
        device_code(pl.col("device").cast(pl.String))
        if "device" in events.columns
        else pl.lit(DEVICE_NULL, dtype=pl.Int32)
    )
    return (
        events.lazy()
        .select(
            pl.col("user_id").cast(pl.String),
            pl.col("item_id").cast(pl.String),
            pl.col("session_id").cast(pl.String),
            pl.col("ts").dt.epoch("us").alias("_t"),
            pl.col("slate").cast(pl.Int64),
            pl.col("position").cast(pl.Int64),
            pl.col("clicked").cast(pl.Boolean).fill_null(False),
            pl.col("watch_time_s").cast(pl.Float64).fill_null(0.0),
            device.alias("_device"),
        )
        .drop_nulls(["user_id", "item_id", "session_id", "_t", "slate", "position"])
        .collect()
    )


def item_catalogue(items: pl.DataFrame, rows: pl.DataFrame) -> tuple[pl.DataFrame, tuple[str, ...]]:
    """One row per catalogue or logged item: _code, item_id, duration_s, published_us, category.

    Sorted by item_id (``_code`` = row number). An unknown or non-positive
    duration and an unknown published_ts are null; an unknown category is
    "none" (code ``len(categories)``).
    """
    require_columns(items, ("item_id",), "items")
    given = items.select(
        pl.col("item_id").cast(pl.String),
        *(
            pl.col(name) if name in items.columns else pl.lit(None).alias(name)
            for name in ("published_ts", "duration_s", "category")
        ),
    )
    categories = tuple(sorted(given["category"].cast(pl.String).drop_nulls().unique().to_list()))
    none = len(categories)
    category = (
        pl.col("category")
        .cast(pl.String)
        .replace_strict(dict(zip(categories, range(none), strict=True)), default=none)
        if categories
        else pl.lit(none)
    )
    published = (
        pl.col("published_ts").dt.epoch("us").cast(pl.Float64)
        if isinstance(given.schema["published_ts"], pl.Datetime)
        else pl.lit(None, dtype=pl.Float64)
    )
    duration = pl.col("duration_s").cast(pl.Float64)
    known = (
        given.drop_nulls("item_id")
        .select(
            "item_id",
            pl.when(duration > 0).then(duration).alias("duration_s"),
            published.alias("published_us"),
            category.cast(pl.Int32).fill_null(none).alias("category"),
        )
        .unique("item_id", keep="first", maintain_order=True)
    )
    catalogue = (
        known.join(rows.select("item_id").unique(), on="item_id", how="full", coalesce=True)
        .with_columns(pl.col("category").fill_null(none))
        .sort("item_id")
        .with_row_index("_code")
    )
    return catalogue, categories


def watch_fraction() -> pl.Expr:
    """The watch fraction ``min(watch_time_s / duration_s, 1)`` of a click; null otherwise."""
    return (
        pl.when(pl.col("clicked") & pl.col("duration_s").is_not_null())
        .then((pl.col("watch_time_s") / pl.col("duration_s")).clip(0.0, 1.0))
        .otherwise(None)
    )


def with_sessions(rows: pl.DataFrame, seed: int, max_rows: int) -> pl.DataFrame:
    """Add the session-level columns: _holdout, _sampled, _first (a session's first row), _day.

    Sessions, sorted by (user_id, session_id), are held out with probability
    `HOLDOUT_SHARE` and sampled in a seeded random order while their
    impressions total at most ``max_rows``. ``_day`` is the UTC day (days since
    the epoch) the session started on.
    """
    sessions = (
        rows.group_by("user_id", "session_id")
        .agg(pl.len().alias("_n"), (pl.col("_t").min() // US_PER_DAY).alias("_day"))
        .sort("user_id", "session_id")
    )
    rng = np.random.default_rng(seed)
    m = sessions.height
    holdout = rng.random(m) < HOLDOUT_SHARE
    order = np.argsort(rng.random(m), kind="stable")
    sampled = np.empty(m, dtype=bool)
    sampled[order] = np.cumsum(sessions["_n"].to_numpy()[order]) <= max_rows
    sessions = sessions.with_columns(
        pl.Series("_holdout", holdout), pl.Series("_sampled", sampled)
    ).drop("_n")
    return rows.join(
        sessions, on=["user_id", "session_id"], how="left", maintain_order="left"
    ).with_columns((pl.int_range(pl.len()).over("user_id", "session_id") == 0).alias("_first"))


def global_priors(
    rows: pl.DataFrame, catalogue: pl.DataFrame, n_categories: int
) -> tuple[SessionPriors, pl.DataFrame]:
    """The global priors (``continue_rate`` still 0) and each position's CTR (``_expected``)."""
    ctr = float(rows["clicked"].mean() or 0.0)  # type: ignore[arg-type]
    mean_fraction = rows["_fraction"].mean()
    clicks = rows.filter(pl.col("clicked")).group_by("category").agg(pl.len().alias("_c"))
    counts = np.zeros(n_categories)
    counts[clicks["category"].to_numpy().astype(np.int64)] = clicks["_c"].to_numpy()
    share = (counts + 1.0) / (counts.sum() + n_categories)
    log_duration = catalogue["duration_s"].drop_nulls().log().median()
    age_days = (
        rows.join(catalogue.select("item_id", "published_us"), on="item_id", how="left")
        .select(((pl.col("_t").cast(pl.Float64) - pl.col("published_us")) / US_PER_DAY).clip(0.0))
        .to_series()
        .median()
    )
    position_ctr = rows.group_by("position").agg(
        pl.col("clicked").cast(pl.Float64).mean().alias("_expected")
    )
    priors = SessionPriors(
        ctr=ctr,
        watch_fraction=_float(mean_fraction, 0.5),
        category_share=tuple(float(s) for s in share),
        log_duration=_float(log_duration, 0.0),
        age_days=_float(age_days, 0.0),
        continue_rate=0.0,
    )
    return priors, position_ctr


# -- user and item statistics -----------------------------------------------------------


def _sums() -> dict[str, pl.Expr]:
    """The per-row quantities whose sums over a user's or an item's rows make its statistics."""
    return {
        "s_sessions": pl.col("_first").cast(pl.Float64),
        "s_clicks": pl.col("clicked").cast(pl.Float64),
        "s_expected": pl.col("_expected"),
        "s_fraction": pl.col("_fraction").fill_null(0.0),
        "s_watches": pl.col("_fraction").is_not_null().cast(pl.Float64),
        # a literal would sum to 1 per group, not to the group's row count
        "s_impressions": pl.col("clicked").is_not_null().cast(pl.Float64),
    }


def _summed(rows: pl.DataFrame, keys: list[str], names: list[str] | None = None) -> pl.DataFrame:
    """One row per group of ``keys``: the sums of `_sums` (those named in ``names``, else all)."""
    sums = _sums()
    return rows.group_by(keys).agg(
        sums[name].sum().alias(name) for name in (list(sums) if names is None else names)
    )


def _smoothed_ctr(p: SessionPriors) -> pl.Expr:
    """CTR * (clicks + a) / (expected clicks + a) from the sums, a = `PRIOR_CLICKS`."""
    a = PRIOR_CLICKS
    return p.ctr * (pl.col("s_clicks") + a) / (pl.col("s_expected") + a)


def _user_features(p: SessionPriors) -> list[pl.Expr]:
    """user_log_sessions, user_ctr, user_watch_fraction and user_clicks from the user's sums.

    ``user_ctr`` = CTR * (clicks + a) / (expected clicks + a), the expected
    clicks being the position CTRs of the user's impressions (clicks over
    expected clicks, so a user shown top slots is not taken for a clicker);
    ``user_watch_fraction`` = (sum of fractions + a * mean) / (watches + a);
    a = `PRIOR_CLICKS`.
    """
    a = PRIOR_CLICKS
    return [
        pl.col("s_sessions").log1p().alias("user_log_sessions"),
        _smoothed_ctr(p).alias("user_ctr"),
        ((pl.col("s_fraction") + a * p.watch_fraction) / (pl.col("s_watches") + a)).alias(
            "user_watch_fraction"
        ),
        pl.col("s_clicks").alias("user_clicks"),
    ]


def _item_features(p: SessionPriors) -> list[pl.Expr]:
    """item_ctr (clicks over position-expected clicks, in CTR units) and item_log_impressions."""
    return [
        _smoothed_ctr(p).alias("item_ctr"),
        pl.col("s_impressions").log1p().alias("item_log_impressions"),
    ]


def full_statistics(
    rows: pl.DataFrame, catalogue: pl.DataFrame, p: SessionPriors
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The prediction tables from every fit impression: users, user-category clicks, items."""
    users = _summed(rows, ["user_id"]).sort("user_id").select("user_id", *_user_features(p))
    user_categories = (
        rows.filter(pl.col("clicked"))
        .group_by("user_id", "category")
        .agg(pl.len().cast(pl.Float64).alias("clicks"))
        .join(users.select("user_id").with_row_index("user_code"), on="user_id", how="inner")
        .select(pl.col("user_code").cast(pl.Int64), pl.col("category").cast(pl.Int32), "clicks")
        .sort("user_code", "category")
    )
    item_stats = _summed(rows, ["item_id"]).select("item_id", *_item_features(p))
    items = catalogue.join(item_stats, on="item_id", how="left", maintain_order="left").select(
        "item_id",
        pl.col("duration_s").log().alias("log_duration"),
        "duration_s",
        "category",
        "published_us",
        pl.col("item_ctr").fill_null(p.ctr),
        pl.col("item_log_impressions").fill_null(0.0),
    )
    return users, user_categories, items


def point_in_time(rows: pl.DataFrame, p: SessionPriors) -> pl.DataFrame:
    """The sampled rows, with the user and item statistics of the days before their session's.

    For each user, item and (user, category), the sums of every fit impression
    are taken per session start day and accumulated over the earlier days only
    (a running sum minus the day's own part), then joined to the rows of that
    day. ``user_category_share`` = (the user's earlier clicks in the item's
    category + a * the category's global share) / (the user's earlier clicks + a),
    a = `PRIOR_CLICKS`.
    """
    user_names = ["s_sessions", "s_clicks", "s_expected", "s_fraction", "s_watches"]
    item_names = ["s_clicks", "s_expected", "s_impressions"]
    joined = rows.filter(pl.col("_sampled"))
    for keys, names, prefix in (
        (["user_id"], user_names, "u_"),
        (["item_id"], item_names, "i_"),
        (["user_id", "category"], ["s_clicks"], "c_"),
    ):
        earlier = (
            _summed(rows, [*keys, "_day"], names)
            .sort([*keys, "_day"])
            .select(
                *keys,
                "_day",
                *(
                    (pl.col(name).cum_sum().over(keys) - pl.col(name)).alias(prefix + name)
                    for name in names
                ),
            )
        )
        joined = joined.join(earlier, on=[*keys, "_day"], how="left", maintain_order="left")
    users = joined.select(pl.col(f"u_{n}").alias(n) for n in user_names).select(*_user_features(p))
    items = joined.select(pl.col(f"i_{n}").alias(n) for n in item_names).select(*_item_features(p))
    share = dict(enumerate(p.category_share))
    return pl.concat([joined, users, items], how="horizontal").with_columns(
        (
            (
                pl.col("c_s_clicks")
                + PRIOR_CLICKS * pl.col("category").replace_strict(share, return_dtype=pl.Float64)
            )
            / (pl.col("user_clicks") + PRIOR_CLICKS)
        ).alias("user_category_share")
    )


def slate_examples(train: pl.DataFrame) -> pl.DataFrame:
    """One row per sampled slate with a click: features, ``_next`` (the session has slate + 1).

    Slates at the logs' last slate index are left out: no session is ever seen
    to go past it, so it is the logging policy's cap rather than users' choice.
    """
    keys = ["user_id", "session_id", "slate"]
    slates = train.group_by(keys).agg(
        pl.col("clicked").sum().alias("_clicks"),
        pl.col("_fraction").mean().alias("_fraction"),
        pl.col("_t").min(),
        pl.col("_device").first(),
        pl.col("user_log_sessions").first(),
        pl.col("_holdout").first(),
    )
    following = slates.select(
        "user_id", "session_id", (pl.col("slate") - 1).alias("slate"), pl.lit(True).alias("_next")
    )
    last = train["slate"].max()
    return (
        slates.filter((pl.col("_clicks") > 0) & (pl.col("slate") < last))
        .join(following, on=keys, how="left")
        .with_columns(pl.col("_next").fill_null(False))
        .sort(keys)
    )


def median_gap(rows: pl.DataFrame) -> float:
    """Median seconds from a slate's shown time plus its watch seconds to the next slate (>= 0)."""
    slates = (
        rows.group_by("user_id", "session_id", "slate")
        .agg(pl.col("_t").min(), pl.col("watch_time_s").sum().alias("_watch"))
        .sort("user_id", "session_id", "slate")
    )
    gaps = slates.select(
        pl.when(
            (pl.col("session_id") == pl.col("session_id").shift(-1))
            & (pl.col("user_id") == pl.col("user_id").shift(-1))
            & (pl.col("slate").shift(-1) == pl.col("slate") + 1)
        )
        .then((pl.col("_t").shift(-1) - pl.col("_t")) / US_PER_S - pl.col("_watch"))
        .alias("_gap")
    )["_gap"]
    return max(_float(gaps.median(), 0.0), 0.0)


# -- tables and matrices ----------------------------------------------------------------


def build_tables(
    users: pl.DataFrame,
    user_categories: pl.DataFrame,
    items: pl.DataFrame,
    n_categories: int,
    p: SessionPriors,
) -> Tables:
    """The feature tables as arrays, each with the unseen-id prior appended last."""

    def column(frame: pl.DataFrame, name: str, prior: float) -> FloatArray:
        values = frame[name].cast(pl.Float64).fill_null(float("nan")).to_numpy()
        return np.append(values, prior)

    pairs = user_categories.select(
        (pl.col("user_code") * n_categories + pl.col("category").cast(pl.Int64)).alias("_key"),
        pl.col("clicks").cast(pl.Float64),
    ).sort("_key")
    log_duration = column(items, "log_duration", p.log_duration)
    log_duration[np.isnan(log_duration)] = p.log_duration
    return Tables(
        user_log_sessions=column(users, "user_log_sessions", 0.0),
        user_ctr=column(users, "user_ctr", p.ctr),
        user_watch_fraction=column(users, "user_watch_fraction", p.watch_fraction),
        user_clicks=column(users, "user_clicks", 0.0),
        pair_key=pairs["_key"].to_numpy().astype(np.int64),
        pair_clicks=pairs["clicks"].to_numpy().astype(np.float64),
        log_duration=log_duration,
        duration_s=np.exp(log_duration),
        category=np.append(items["category"].to_numpy(), n_categories - 1).astype(np.int64),
        published_us=column(items, "published_us", float("nan")),
        item_ctr=column(items, "item_ctr", p.ctr),
        item_log_impressions=column(items, "item_log_impressions", 0.0),
        category_share=np.asarray(p.category_share, dtype=np.float64),
    )


def _time_columns(t_us: IntArray) -> dict[str, FloatArray]:
    """hour_sin, hour_cos (UTC hour of day as a real number on the circle) and dow (Monday 0)."""
    angle = 2.0 * np.pi * (np.mod(t_us, US_PER_DAY) / US_PER_DAY)
    # 1970-01-01 was a Thursday (3)
    dow = np.mod(np.floor_divide(t_us, US_PER_DAY) + 3, 7)
    return {"hour_sin": np.sin(angle), "hour_cos": np.cos(angle), "dow": dow.astype(np.float64)}


def click_matrix(
    tables: Tables,
    *,
    item: IntArray,
    t_us: IntArray,
    device: IntArray,
    slate: npt.ArrayLike,
    position: npt.ArrayLike,
    age_prior: float,
    user: IntArray | None = None,
    stats: pl.DataFrame | None = None,
) -> FloatArray:
    """The `CLICK_FEATURES` matrix of coded cells.

    Item attributes come from ``tables``; the user and item statistics
    (`STATISTICS`) from the columns of ``stats`` when given (training: point
    in time), else from ``tables`` by ``user`` code (prediction).
    """
    cols: dict[str, FloatArray] = dict(_time_columns(t_us))
    category = tables.category[item]
    published = tables.published_us[item]
    age = (t_us - published) / US_PER_DAY
    cols |= {
        "position": np.asarray(position, dtype=np.float64),
        "slate": np.asarray(slate, dtype=np.float64),
        "device": device.astype(np.float64),
        "log_duration": tables.log_duration[item],
        "category": category.astype(np.float64),
        "item_age_days": np.where(np.isnan(published), age_prior, np.maximum(age, 0.0)),
    }
    if stats is not None:
        cols |= {name: stats[name].to_numpy().astype(np.float64) for name in STATISTICS}
    else:
        if user is None:
            raise InternalError("The click features need user codes or training statistics.")
        # the user's clicks in the item's category: a sorted-key lookup, 0 for no such pair
        key = user * tables.category_share.size + category
        pair_clicks = np.zeros(key.size)
        if tables.pair_key.size:
            at = np.minimum(np.searchsorted(tables.pair_key, key), tables.pair_key.size - 1)
            pair_clicks = np.where(tables.pair_key[at] == key, tables.pair_clicks[at], 0.0)
        cols |= {
            "item_ctr": tables.item_ctr[item],
            "item_log_impressions": tables.item_log_impressions[item],
            "user_log_sessions": tables.user_log_sessions[user],
            "user_ctr": tables.user_ctr[user],
            "user_category_share": (pair_clicks + PRIOR_CLICKS * tables.category_share[category])
            / (tables.user_clicks[user] + PRIOR_CLICKS),
            "user_watch_fraction": tables.user_watch_fraction[user],
        }
    return np.column_stack([cols[name] for name in CLICK_FEATURES]).astype(np.float64)


def continue_matrix(
    *,
    slate: npt.ArrayLike,
    clicks: FloatArray,
    watch_fraction: FloatArray,
    device: IntArray,
    t_us: IntArray,
    user_log_sessions: FloatArray,
) -> FloatArray:
    """The `CONTINUE_FEATURES` matrix of slates."""
    cols: dict[str, FloatArray] = dict(_time_columns(t_us))
    cols |= {
        "slate": np.asarray(slate, dtype=np.float64),
        "clicks": clicks,
        "watch_fraction": watch_fraction,
        "device": device.astype(np.float64),
        "user_log_sessions": user_log_sessions,
    }
    return np.column_stack([cols[name] for name in CONTINUE_FEATURES]).astype(np.float64)


# -- small helpers -----------------------------------------------------------------------


def _float(value: object, default: float) -> float:
    """``value`` as a float, or ``default`` when it is None or not finite."""
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return default


def require_columns(frame: pl.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InternalError(
            f"The {what} frame given to the session model lacks column(s) "
            f"{', '.join(missing)}; it has {', '.join(frame.columns) or 'none'}."
        )
