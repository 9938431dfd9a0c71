"""The ranking stage's inputs: training examples and point-in-time features.

`ranker_examples` turns the logged events of the ranker window into labelled
(user, item, context) rows grouped into queries; `build_features` computes the
`FEATURES` of any (user, item, ts) rows, training examples or serving
candidates alike, so train and serve share one definition.

Point-in-time correctness: every feature of a row with time ``t`` is computed
from history events with ``ts < t`` only (an event at exactly ``t`` is not
seen), so a feature never leaks the label it is trained against. Windowed
counts are answered for all rows at once: click events are sorted by the key
``entity * M + rank(ts)`` (``rank`` = position among the distinct click
times, ``M`` = their number + 1, which keeps keys far from int64 overflow),
and the count of an entity's clicks in ``[lo, hi)`` is the difference of two
`numpy.searchsorted` positions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl

from recsim_cli.errors import InternalError

__all__ = [
    "CATEGORICAL",
    "DEVICE_CODES",
    "EXAMPLES_SCHEMA",
    "FEATURES",
    "FEATURE_DOCS",
    "build_features",
    "device_code",
    "ranker_examples",
]

IntArray = npt.NDArray[np.int64]

US_PER_HOUR: Final = 3_600_000_000
US_PER_DAY: Final = 24 * US_PER_HOUR

DEVICE_CODES: Final[Mapping[str, int]] = {"mobile": 0, "desktop": 1, "tv": 2}
"""Fixed device codes (case-insensitive); any other device is 3 and a missing one 4."""
DEVICE_OTHER: Final = 3
DEVICE_NULL: Final = 4

FEATURE_DOCS: Final[Mapping[str, str]] = {
    "cand_score": "the candidate generator's score of the item for the user "
    "(NaN when the item is not in the user's list or has no score)",
    "cand_rank": "the item's rank in the user's candidate list, 1 = best; "
    "n_candidates + 1 when it is not in the list (ranks beyond are capped there)",
    "item_clicks_1d": "clicks on the item by anyone in the 24 hours before ts",
    "item_clicks_7d": "clicks on the item by anyone in the 7 days before ts",
    "item_age_h": "hours from the item's published_ts to ts, clipped at 0 (NaN if unknown)",
    "duration_s": "the item's length in seconds (NaN if unknown)",
    "user_clicks_7d": "the user's clicks (on any item) in the 7 days before ts",
    "user_cat_affinity": "the user's smoothed share of clicks before ts in the item's category: "
    "(c_cat + 1) / (c_all + K), K = categories in the item table + 1 for 'none'",
    "hour": "hour of day of ts (or of the user's usual context when serving), 0-23, UTC",
    "dow": "day of week of ts, 0 = Monday .. 6 = Sunday, UTC",
    "device": "device code: mobile 0, desktop 1, tv 2, other 3, missing 4 (categorical)",
}
"""Each feature's meaning, one line each (copied into docs/models.md)."""

FEATURES: Final[tuple[str, ...]] = tuple(FEATURE_DOCS)
"""The ranker's feature columns, in the order the model sees them."""

CATEGORICAL: Final[tuple[str, ...]] = ("device",)
"""Features LightGBM treats as categorical (integer codes, not magnitudes)."""

_INT_FEATURES: Final = frozenset(
    {"cand_rank", "item_clicks_1d", "item_clicks_7d", "user_clicks_7d", "hour", "dow", "device"}
)

EXAMPLES_SCHEMA: Final = pl.Schema(
    {
        "user_id": pl.String(),
        "item_id": pl.String(),
        "ts": pl.Datetime("us", "UTC"),
        "device": pl.String(),
        "hour": pl.Int32(),
        "dow": pl.Int32(),
        "clicked": pl.Boolean(),
        "watch_time_s": pl.Float64(),
        "query_id": pl.Int64(),
    }
)
"""Columns of `ranker_examples`' frame."""


# -- training examples ---------------------------------------------------------------


def ranker_examples(
    window_events: pl.DataFrame,
    candidates: pl.DataFrame,
    *,
    negatives_per_positive: int = 4,
    rng: np.random.Generator,
) -> pl.DataFrame:
    """Return the labelled rows the ranker learns from, one query per slate or per watch.

    *Impressions* (some event of the window is not clicked): every logged event
    is one example, clicked or shown-but-not-clicked; a query is one logged
    slate ``(user_id, session_id, slate)`` (a null slate is a slate of its own).
    Queries are numbered 0, 1, ... by (first ts, user_id, session_id, slate);
    rows are sorted by query_id, position, item_id, ts.

    *Watches only* (every event clicked): every watch of an item in the user's
    candidate list is a query of its own (watches of other items are left
    out: the ranker only ever scores candidates, and such a positive would
    teach it that "not a candidate" means "watched"),
    holding the watch and up to ``negatives_per_positive`` distinct negatives
    drawn uniformly without replacement from the user's candidates that the
    user did not watch in the window (fewer if the list holds fewer); the
    negatives take the watch's ts and device, ``clicked = False`` and
    ``watch_time_s = 0``. Watches are numbered by (user_id, ts, item_id,
    session_id); within a query the watch comes first, then its negatives in
    the order drawn. ``rng`` is used only here.

    Returns `EXAMPLES_SCHEMA`: user_id, item_id, ts, device, hour, dow,
    clicked, watch_time_s, query_id.
    """
    if negatives_per_positive < 0:
        raise InternalError(f"negatives_per_positive must be >= 0; got {negatives_per_positive}.")
    events = _with_defaults(window_events)
    if events.height == 0:
        return pl.DataFrame(schema=EXAMPLES_SCHEMA)
    if not events["clicked"].all():
        rows = _impression_examples(events)
    else:
        rows = _sampled_examples(events, candidates, negatives_per_positive, rng)
    return rows.with_columns(
        pl.col("ts").dt.hour().cast(pl.Int32).alias("hour"),
        (pl.col("ts").dt.weekday() - 1).cast(pl.Int32).alias("dow"),
    ).select(pl.col(name).cast(dtype) for name, dtype in EXAMPLES_SCHEMA.items())


def _with_defaults(events: pl.DataFrame) -> pl.DataFrame:
    """The event columns the examples need, optional ones filled with nulls."""
    _require(events, ("user_id", "item_id", "ts", "clicked", "watch_time_s"), "window_events")
    optional: dict[str, pl.DataType] = {
        "session_id": pl.String(),
        "slate": pl.Int64(),
        "position": pl.Int64(),
        "device": pl.String(),
    }
    return events.with_columns(
        pl.lit(None, dtype=dtype).alias(name)
        for name, dtype in optional.items()
        if name not in events.columns
    ).with_columns(_utc(events, "ts"))


def _impression_examples(events: pl.DataFrame) -> pl.DataFrame:
    query = ("user_id", "session_id", "slate")
    first = (
        events.group_by(query)
        .agg(pl.col("ts").min().alias("_first"))
        .sort("_first", *query, nulls_last=True)
        .with_row_index("query_id")
    )
    return events.join(first, on=query, how="left", nulls_equal=True).sort(
        "query_id",
        "position",
        "item_id",
        "ts",
        "clicked",
        "watch_time_s",
        "device",
        nulls_last=True,
    )


def _sampled_examples(
    events: pl.DataFrame, candidates: pl.DataFrame, k: int, rng: np.random.Generator
) -> pl.DataFrame:
    _require(candidates, ("user_id", "item_id", "rank"), "candidates")
    # only watches of listed items: at serving the ranker only ever scores candidates, and a
    # positive outside the list would teach it that "not a candidate" means "watched"
    watches = (
        events.join(
            candidates.select("user_id", "item_id").unique(), on=["user_id", "item_id"], how="semi"
        )
        .sort("user_id", "ts", "item_id", "session_id", "watch_time_s", "device", nulls_last=True)
        .with_row_index("query_id")
    )
    pool = (
        candidates.select("user_id", "item_id", "rank")
        .join(events.select("user_id", "item_id").unique(), on=["user_id", "item_id"], how="anti")
        .sort("user_id", "rank", "item_id")
        .unique(["user_id", "item_id"], keep="first", maintain_order=True)
    )
    if k == 0 or pool.height == 0:
        return watches
    # the user's allowed candidates are pool rows [start, start + n)
    bounds = (
        pool.with_row_index("_i")
        .group_by("user_id")
        .agg(pl.col("_i").min().alias("_start"), pl.len().alias("_n"))
    )
    per_watch = watches.select("user_id").join(
        bounds, on="user_id", how="left", maintain_order="left"
    )
    start = per_watch["_start"].fill_null(0).to_numpy().astype(np.int64)
    n = per_watch["_n"].fill_null(0).to_numpy().astype(np.int64)
    picks = _sample_without_replacement(n, k, rng)
    watch_row, slot = np.nonzero(picks >= 0)
    pool_row = start[watch_row] + picks[watch_row, slot]
    context = watches.select("query_id", "user_id", "ts", "device", "session_id", "slate")
    negatives = pl.concat(
        [
            context[watch_row],
            pool.select("item_id")[pool_row],
        ],
        how="horizontal",
    ).with_columns(
        pl.lit(False).alias("clicked"),
        pl.lit(0.0).alias("watch_time_s"),
        pl.lit(None, dtype=pl.Int64).alias("position"),
        pl.Series("_slot", slot + 1, dtype=pl.Int64),
    )
    out = pl.concat(
        [watches.with_columns(pl.lit(0, dtype=pl.Int64).alias("_slot")), negatives],
        how="diagonal_relaxed",
    )
    return out.sort("query_id", "_slot")


def _sample_without_replacement(n: IntArray, k: int, rng: np.random.Generator) -> IntArray:
    """Per row ``r``, up to ``k`` distinct uniform draws from ``range(n[r])``; -1 pads.

    Draw ``j`` picks the ``r``-th of the ``n - j`` values not yet drawn, with
    ``r`` uniform; it is found by stepping ``r`` past the drawn values in
    increasing order. One vectorised pass per draw, never a loop over rows.
    """
    rows = n.shape[0]
    out = np.full((rows, k), -1, dtype=np.int64)
    for j in range(k):
        live = n > j
        r = np.floor(rng.random(rows) * np.maximum(n - j, 1)).astype(np.int64)
        r = np.minimum(r, np.maximum(n - j - 1, 0))
        drawn = np.sort(out[:, :j], axis=1)
        for c in range(j):
            r = r + (r >= drawn[:, c])
        out[:, j] = np.where(live, r, -1)
    return out


# -- features --------------------------------------------------------------------------


def device_code(device: pl.Expr) -> pl.Expr:
    """The fixed integer code of a device column (`DEVICE_CODES`; other 3, null 4)."""
    known = device.str.to_lowercase().replace_strict(
        dict(DEVICE_CODES), default=DEVICE_OTHER, return_dtype=pl.Int32
    )
    return pl.when(device.is_null()).then(pl.lit(DEVICE_NULL, pl.Int32)).otherwise(known)


def build_features(
    history: pl.DataFrame,
    targets: pl.DataFrame,
    items: pl.DataFrame,
    candidates: pl.DataFrame,
    *,
    n_candidates: int,
) -> pl.DataFrame:
    """Return the `FEATURES` of each target row, as of the row's ts (see `FEATURE_DOCS`).

    ``history``: events (user_id, item_id, ts, clicked); only clicked events
    with ``ts <`` a row's ts count for that row. ``targets``: user_id,
    item_id, ts, and optionally device (null allowed), hour and dow (taken
    from ts in UTC where absent or null). ``items``: item_id, published_ts,
    duration_s, category. ``candidates``: user_id, item_id, score (null
    allowed), rank; a pair listed twice keeps its best rank, and ranks past
    ``n_candidates`` count as unlisted (``n_candidates + 1``). The candidate
    features are whatever the caller's candidate model said; keeping that
    model blind to the rows' future is the caller's part.

    Formulas, for a row (u, i, t):

    * ``item_clicks_Nd`` = #clicks on i with ts in [t - N days, t);
    * ``user_clicks_7d`` = #clicks by u with ts in [t - 7 days, t);
    * ``user_cat_affinity`` = (c_cat + 1) / (c_all + K), where c_all = #clicks
      by u before t, c_cat = those on items of i's category, K = distinct
      non-null categories of ``items`` + 1; a null category, or an item not in
      ``items``, is the category "none";
    * ``item_age_h`` = max(0, t - published_ts) in hours.

    Returns one row per target, in the targets' order, with exactly the
    columns `FEATURES` (Float64 or Int32).
    """
    _require(history, ("user_id", "item_id", "ts", "clicked"), "history")
    _require(targets, ("user_id", "item_id", "ts"), "targets")
    _require(items, ("item_id", "published_ts", "duration_s", "category"), "items")
    _require(candidates, ("user_id", "item_id", "score", "rank"), "candidates")
    frame = _context(targets)
    t = frame["ts"].dt.epoch("us").to_numpy().astype(np.int64)

    categories = items["category"].drop_nulls().unique().sort()
    none_code = categories.len()
    item_table = items.select(
        "item_id",
        "published_ts",
        pl.col("duration_s").cast(pl.Float64),
        _category_code(pl.col("category"), categories, none_code).alias("_cat"),
    ).unique("item_id", keep="first", maintain_order=True)

    clicks = (
        history.lazy()
        .filter(pl.col("clicked"))
        .select("user_id", "item_id", pl.col("ts").dt.epoch("us").alias("_t"))
        .join(item_table.lazy().select("item_id", "_cat"), on="item_id", how="left")
        .with_columns(pl.col("_cat").fill_null(none_code))
        .collect()
    )
    clock = _ClickClock(clicks["_t"].to_numpy().astype(np.int64))
    user_vocab = clicks["user_id"].unique().sort()
    item_vocab = clicks["item_id"].unique().sort()
    click_user = _codes(clicks["user_id"], user_vocab)
    click_item = _codes(clicks["item_id"], item_vocab)
    row_user = _codes(frame["user_id"], user_vocab)
    row_item = _codes(frame["item_id"], item_vocab)

    enriched = (
        frame.select("user_id", "item_id", "_t0")
        .join(item_table, on="item_id", how="left", maintain_order="left")
        .join(
            _best_candidates(candidates),
            on=["user_id", "item_id"],
            how="left",
            maintain_order="left",
        )
    )
    row_cat = enriched["_cat"].fill_null(none_code).to_numpy().astype(np.int64)
    n_cat = none_code + 1
    click_cat = clicks["_cat"].to_numpy().astype(np.int64)

    by_time = np.argsort(t, kind="stable")
    now = clock.rank(t, by_time)
    day_ago = clock.rank(t - US_PER_DAY, by_time)
    week_ago = clock.rank(t - 7 * US_PER_DAY, by_time)
    item_1d, item_7d = _WindowCounter(clock, click_item).counts(row_item, now, [day_ago, week_ago])
    user_7d, c_all = _WindowCounter(clock, click_user).counts(row_user, now, [week_ago, None])
    row_user_cat = np.where(row_user >= 0, row_user * n_cat + row_cat, -1)
    (c_cat,) = _WindowCounter(clock, click_user * n_cat + click_cat).counts(
        row_user_cat, now, [None]
    )
    counts = pl.DataFrame(
        {
            "item_clicks_1d": item_1d,
            "item_clicks_7d": item_7d,
            "user_clicks_7d": user_7d,
            "user_cat_affinity": (c_cat + 1.0) / (c_all + float(n_cat)),
        }
    )
    age_h = (pl.col("_t0") - pl.col("published_ts").dt.epoch("us")).cast(pl.Float64) / US_PER_HOUR
    out = pl.concat(
        [
            enriched.select(
                pl.col("score").cast(pl.Float64).fill_null(float("nan")).alias("cand_score"),
                pl.col("rank")
                .cast(pl.Int64)
                .clip(upper_bound=n_candidates + 1)
                .fill_null(n_candidates + 1)
                .alias("cand_rank"),
                age_h.clip(lower_bound=0.0).fill_null(float("nan")).alias("item_age_h"),
                pl.col("duration_s").fill_null(float("nan")),
            ),
            counts,
            frame.select("hour", "dow", "device"),
        ],
        how="horizontal",
    )
    return out.select(
        pl.col(name).cast(pl.Int32 if name in _INT_FEATURES else pl.Float64) for name in FEATURES
    )


def _context(targets: pl.DataFrame) -> pl.DataFrame:
    """user_id, item_id, ts, _t0 (ts in µs), hour, dow, device code of each target row.

    hour and dow come from the targets' columns where given and not null, else from ts (UTC).
    """
    ts = _utc(targets, "ts")
    device = pl.col("device") if "device" in targets.columns else pl.lit(None, dtype=pl.String)
    # a row without a usual context (null hour or dow) takes its ts's
    hour, dow = ts.dt.hour().cast(pl.Int32), (ts.dt.weekday() - 1).cast(pl.Int32)
    if "hour" in targets.columns:
        hour = pl.coalesce(pl.col("hour").cast(pl.Int32), hour)
    if "dow" in targets.columns:
        dow = pl.coalesce(pl.col("dow").cast(pl.Int32), dow)
    return targets.select(
        pl.col("user_id").cast(pl.String),
        pl.col("item_id").cast(pl.String),
        ts.alias("ts"),
        ts.dt.epoch("us").alias("_t0"),
        hour.cast(pl.Int32).alias("hour"),
        dow.cast(pl.Int32).alias("dow"),
        device_code(device.cast(pl.String)).alias("device"),
    )


def _category_code(category: pl.Expr, categories: pl.Series, none_code: int) -> pl.Expr:
    codes = dict(zip(categories.to_list(), range(none_code), strict=True))
    return category.replace_strict(codes, default=none_code, return_dtype=pl.Int64).fill_null(
        none_code
    )


def _best_candidates(candidates: pl.DataFrame) -> pl.DataFrame:
    """One row per (user_id, item_id): the best-ranked listing's score and rank."""
    return (
        candidates.select(
            pl.col("user_id").cast(pl.String),
            pl.col("item_id").cast(pl.String),
            pl.col("score").cast(pl.Float64),
            pl.col("rank").cast(pl.Int64),
        )
        .sort("rank", nulls_last=True)
        .unique(["user_id", "item_id"], keep="first")
    )


def _codes(values: pl.Series, vocab: pl.Series) -> IntArray:
    """Index of each value in the sorted unique ``vocab``; -1 when absent (vectorised)."""
    if vocab.len() == 0:
        return np.full(values.len(), -1, dtype=np.int64)
    table = pl.DataFrame({"_v": vocab}).with_row_index("_code")
    found = pl.DataFrame({"_v": values}).join(table, on="_v", how="left", maintain_order="left")
    return found["_code"].fill_null(-1).cast(pl.Int64).to_numpy()


class _ClickClock:
    """Click times replaced by ranks, so windowed counts need only integer keys.

    ``rank(x)`` = #clicks with ts < x; then ``ts < t`` iff ``rank(ts) < rank(t)``
    and every key ``entity * m + rank`` stays below ``entities * (clicks + 1)``.
    """

    def __init__(self, ts: IntArray) -> None:
        self.sorted = np.sort(ts)
        self.m = np.int64(ts.size + 1)
        # "min" rank - 1 counts the strictly smaller times, ties sharing the count
        self.event_rank = pl.Series(ts).rank("min").to_numpy().astype(np.int64) - 1

    def rank(self, ts: IntArray, order: IntArray) -> IntArray:
        """``rank`` of each of ``ts``; ``order`` sorts ``ts`` (sorted queries search fast)."""
        out = np.empty(ts.shape, dtype=np.int64)
        out[order] = np.searchsorted(self.sorted, ts[order], side="left")
        return out


class _WindowCounter:
    """Counts one kind of entity's clicks in rank windows ``[lo, hi)`` for many rows at once."""

    def __init__(self, clock: _ClickClock, entity: IntArray) -> None:
        self.m = clock.m
        self.keys = np.sort(entity.astype(np.int64) * clock.m + clock.event_rank)

    def counts(self, entity: IntArray, hi: IntArray, los: list[IntArray | None]) -> list[IntArray]:
        """#clicks of ``entity`` with rank in ``[lo, hi)`` for each ``lo`` (None: no bound).

        Rows with ``entity < 0`` (never clicked) count 0.
        """
        base = np.maximum(entity, 0) * self.m
        order = np.argsort(base + hi, kind="stable")

        def position(rank: IntArray | None) -> IntArray:
            query = base if rank is None else base + rank
            out = np.empty(query.shape, dtype=np.int64)
            out[order] = np.searchsorted(self.keys, query[order], side="left")
            return out

        top = position(hi)
        return [np.where(entity >= 0, top - position(lo), 0) for lo in los]


def _utc(frame: pl.DataFrame, name: str) -> pl.Expr:
    """Column ``name`` as Datetime(us, UTC); a naive column is taken to be UTC already."""
    col = pl.col(name)
    dtype = frame.schema[name]
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
        col = col.dt.convert_time_zone("UTC")
    else:
        col = col.dt.replace_time_zone("UTC")
    return col.dt.cast_time_unit("us").alias(name)


def _require(frame: pl.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InternalError(
            f"The {what} frame lacks column(s) {', '.join(missing)}; it has "
            f"{', '.join(frame.columns) or 'none'}."
        )
