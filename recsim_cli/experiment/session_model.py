"""The session model: what a policy's slates would do to whole sessions, learned from the logs.

Session-level metrics (watch time per session, session depth, session CTR)
cannot be estimated by reweighting logged impressions, because a policy changes
how many slates a session has. They come instead from a model of the user fit
on the logs *before* the evaluation window (the direct method), rolled out over
the policy's slates. Three LightGBM models make up the user:

* **click**: P(click) of an item at a position (binary, every logged impression);
* **watch**: the mean watch fraction of a click (``cross_entropy`` on
  ``min(watch_time_s / duration_s, 1)``, clicked impressions), so the expected
  watch seconds of a click are that fraction times the item's duration;
* **continue**: P(another slate) after a slate with at least one click (binary).

`fit_session_model` fits them; `SessionModel.predict` scores (user, item, ts,
device, slate, position) slots; `SessionModel.rollout` runs sessions through a
policy's precomputed lists by Monte Carlo with common random numbers. The
formulas, features and caveats are in docs/offpolicy.md ("The session model").

User and item statistics enter the models as features. At prediction they
are computed from all the fit logs (as of the fit cutoff). On the training rows
they are *point in time*: the statistics of a row come from the sessions that
started on earlier UTC days only, a daily snapshot. A row never sees its own
label through them, and a row seen a day after its snapshot is exactly the
situation of a prediction after the cutoff: an item uploaded the day before
has almost no history in both (statistics over the whole log would instead
give a new item's early rows its later popularity, and the model would never
learn what a new item with no history does).

Everything is deterministic: the same events, items and seed give the same
boosters (``deterministic=True``, fixed ``num_threads`` and ``seed``), and a
rollout depends only on its inputs and seed. lightgbm is imported inside
functions only.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl

from recsim_cli.errors import DatasetError, InternalError, check_int
from recsim_cli.models.features import DEVICE_NULL, device_code
from recsim_cli.progress import Progress, no_progress

if TYPE_CHECKING:
    import lightgbm

__all__ = [
    "CLICK_FEATURES",
    "CONTINUE_FEATURES",
    "MAX_FIT_ROWS",
    "SessionModel",
    "SessionPriors",
    "fit_session_model",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

US_PER_S: Final = 1_000_000
US_PER_HOUR: Final = 3600 * US_PER_S
US_PER_DAY: Final = 24 * US_PER_HOUR

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
    "item_ctr",
    "item_log_impressions",
    "user_log_sessions",
    "user_ctr",
    "user_category_share",
    "user_watch_fraction",
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

CATEGORICAL: Final = ("device", "category")

BOOST_PARAMS: Final[Mapping[str, int | float]] = {
    "num_leaves": 31,
    "learning_rate": 0.05,
    "min_data_in_leaf": 50,
}
"""LightGBM parameters of the click and watch models."""
CONTINUE_PARAMS: Final[Mapping[str, int | float]] = {
    "num_leaves": 4,
    "learning_rate": 0.05,
    "min_data_in_leaf": 200,
}
"""The continue model's: few slate-level signals and far fewer rows, so smaller trees (larger
ones fit the simulator's logs worse than a constant on held-out sessions)."""
ROUNDS: Final = 200
MAX_FIT_ROWS: Final = 2_000_000
"""Impressions the models are fit on at most (whole sessions, sampled by seed)."""
PREDICT_BATCH: Final = 1_000_000
MIN_IMPRESSIONS: Final = 100
HOLDOUT_SHARE: Final = 0.1
PRIOR_CLICKS: Final = 2.0
"""Strength of the priors of the smoothed rates, in clicks (or expected clicks)."""
_EPS: Final = 1e-12


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
class _Tables:
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


@dataclass(frozen=True, eq=False)
class _Cells:
    """Slots to score: user and item rows of the tables, time (µs), device, slate, position."""

    user: IntArray
    item: IntArray
    t_us: IntArray
    device: IntArray
    slate: IntArray
    position: IntArray

    def take(self, index: IntArray | slice) -> _Cells:
        """The cells at ``index``."""
        return _Cells(
            user=self.user[index],
            item=self.item[index],
            t_us=self.t_us[index],
            device=self.device[index],
            slate=self.slate[index],
            position=self.position[index],
        )


@dataclass(frozen=True, eq=False)
class SessionModel:
    """Three LightGBM boosters (click, watch, continue) and the feature tables they read.

    ``users`` holds one row per user of the fit logs (user_id, user_log_sessions,
    user_ctr, user_watch_fraction, user_clicks), sorted by user_id;
    ``user_categories`` the clicks of each user (``user_code`` = row of
    ``users``) in each category; ``items`` one row per catalogue or logged item
    (item_id, log_duration, duration_s, category code, published_us, item_ctr,
    item_log_impressions), sorted by item_id; ``categories`` the names behind
    the category codes (code ``len(categories)`` is "none"). ``continue_booster``
    is None when the logs never (or always) show another slate after a click;
    ``priors.continue_rate`` is then used. ``gap_s`` is the median pause between
    the end of a slate's watches and the next slate in the fit logs.
    """

    click_booster: lightgbm.Booster
    watch_booster: lightgbm.Booster
    continue_booster: lightgbm.Booster | None
    users: pl.DataFrame
    user_categories: pl.DataFrame
    items: pl.DataFrame
    categories: tuple[str, ...]
    priors: SessionPriors
    gap_s: float
    summary: Mapping[str, Any]

    def fit_summary(self) -> dict[str, Any]:
        """Return what the fit did, as plain JSON types.

        ``rows``: examples each model was fit on; ``holdout``: log loss (click,
        continue) and RMSE of the watch fraction on the held-out 10% of the
        sampled sessions, each beside the same loss of a constant prediction
        (the training mean); ``gap_s``; the impressions in the logs and sampled;
        ``seed``, ``num_threads`` and ``fit_seconds``.
        """
        return dict(_plain(self.summary))

    def predict(self, slots: pl.DataFrame) -> pl.DataFrame:
        """Return ``slots`` with ``p_click`` and ``watch_s`` added (Float64), same rows and order.

        ``slots``: user_id, item_id, ts (Datetime UTC), device (String, nullable),
        slate (Int), position (Int). ``p_click`` is P(click) in (0, 1);
        ``watch_s`` the expected watch seconds *given* a click, the predicted
        mean watch fraction times the item's duration (the catalogue median for
        an unknown item). Users and items unseen in the fit logs take the
        priors. Rows are scored in batches of `PREDICT_BATCH`.
        """
        _require(slots, ("user_id", "item_id", "ts", "device", "slate", "position"), "slots")
        tables = self._tables()
        context = slots.select(
            _epoch_us(slots, "slots").alias("_t"),
            device_code(pl.col("device").cast(pl.String)).alias("_device"),
            pl.col("slate").cast(pl.Int64).fill_null(0).alias("_slate"),
            pl.col("position").cast(pl.Int64).fill_null(0).alias("_position"),
        )
        cells = _Cells(
            user=self._user_codes(slots["user_id"]),
            item=self._item_codes(slots["item_id"]),
            t_us=context["_t"].to_numpy().astype(np.int64),
            device=context["_device"].to_numpy().astype(np.int64),
            slate=context["_slate"].to_numpy().astype(np.int64),
            position=context["_position"].to_numpy().astype(np.int64),
        )
        p_click = self._score(tables, cells, self.click_booster)
        watch_s = self._score(tables, cells, self.watch_booster) * tables.duration_s[cells.item]
        return slots.with_columns(
            pl.Series("p_click", p_click, dtype=pl.Float64),
            pl.Series("watch_s", watch_s, dtype=pl.Float64),
        )

    def rollout(
        self,
        sessions: pl.DataFrame,
        lists: pl.DataFrame,
        *,
        slate_size: int,
        max_slates: int,
        seed: int,
        replicates: int = 8,
        progress: Progress = no_progress,
    ) -> pl.DataFrame:
        """Simulate ``sessions`` under a policy's ``lists``; return per-session means.

        ``sessions``: session_id, user_id, day (Date), ts (start, Datetime UTC),
        device. ``lists``: user_id, day, rank (0-based), item_id: the policy's
        list of each user-day; slate k shows ranks ``k * slate_size`` ..
        ``(k + 1) * slate_size - 1`` (a missing rank leaves its position empty;
        a session whose user-day has no rank 0 .. slate_size - 1 shows nothing).

        Per replicate and slate round k, position p is clicked iff
        ``u[p] < p_click``, watch = clicked * watch_s; the session goes on to
        slate k + 1 iff it had a click, ``u_continue < p_continue``, ``k + 1 <
        max_slates`` and the list has a rank on slate k + 1. The next slate is
        shown the slate's watch seconds plus ``gap_s`` later. The uniforms come
        from one generator per replicate (``SeedSequence(seed).spawn``), drawn
        for every session in every round, so they depend only on (seed,
        replicate, session row, round, position): two policies rolled out on
        the same ``sessions`` with the same seed share them.

        Returns one row per session, in the order of ``sessions``: session_id,
        user_id, clicks, impressions, watch_s, slates, first_clicks,
        first_watch_s (slate 0 only), each the mean over ``replicates`` (Float64).
        """
        check_int(slate_size, "slate_size", 1)
        check_int(max_slates, "max_slates", 1)
        check_int(replicates, "replicates", 1)
        _require(sessions, ("session_id", "user_id", "day", "ts", "device"), "sessions")
        _require(lists, ("user_id", "day", "rank", "item_id"), "lists")
        tables = self._tables()
        n, size = sessions.height, slate_size
        user = self._user_codes(sessions["user_id"])
        t0 = sessions.select(_epoch_us(sessions, "sessions")).to_series().to_numpy()
        device = (
            sessions.select(device_code(pl.col("device").cast(pl.String)))
            .to_series()
            .to_numpy()
            .astype(np.int64)
        )
        # item codes of each user-day's ranks (-1: no such rank), and each session's user-day
        grid, user_day = self._list_grid(sessions, lists, size * max_slates)
        user_sessions = tables.user_log_sessions[user]

        def slate_cells(rows: IntArray, t_us: IntArray, k: int) -> tuple[_Cells, IntArray]:
            """The non-empty positions of slate k of sessions ``rows``, and each one's row index."""
            items = grid[user_day[rows], k * size : (k + 1) * size]
            at, position = np.nonzero(items >= 0)
            cells = _Cells(
                user=user[rows[at]],
                item=items[at, position],
                t_us=t_us[at],
                device=device[rows[at]],
                slate=np.full(at.size, k, dtype=np.int64),
                position=position.astype(np.int64),
            )
            return cells, at

        totals = {name: np.zeros(n) for name in ("clicks", "impressions", "watch_s", "slates")}
        first_clicks, first_watch = np.zeros(n), np.zeros(n)
        generators = [
            np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(replicates)
        ]
        now = np.tile(t0, (replicates, 1))
        starts = np.flatnonzero((grid[user_day, :size] >= 0).any(axis=1))
        active = np.zeros((replicates, n), dtype=bool)
        active[:, starts] = True
        # slate 0 is the same in every replicate (same sessions, same start times): score it once
        first_cells, first_at = slate_cells(starts, t0[starts], 0)
        first_p = self._score(tables, first_cells, self.click_booster)
        for k in range(max_slates):
            progress("rollout", k, max_slates)
            if not active.any():
                break
            for r, rng in enumerate(generators):
                u_click = rng.random((n, size))
                u_continue = rng.random(n)
                rows = np.flatnonzero(active[r])
                if not rows.size:
                    continue
                if k == 0:
                    cells, at, p_click = first_cells, first_at, first_p
                else:
                    cells, at = slate_cells(rows, now[r, rows], k)
                    p_click = self._score(tables, cells, self.click_booster)
                hit = np.flatnonzero(u_click[rows[at], cells.position] < p_click)
                fraction = self._score(tables, cells.take(hit), self.watch_booster)
                watch_s = fraction * tables.duration_s[cells.item[hit]]
                m = rows.size
                n_clicks = np.bincount(at[hit], minlength=m).astype(np.float64)
                watch = np.bincount(at[hit], weights=watch_s, minlength=m)
                totals["clicks"][rows] += n_clicks
                totals["impressions"][rows] += np.bincount(at, minlength=m)
                totals["watch_s"][rows] += watch
                totals["slates"][rows] += 1.0
                if k == 0:
                    first_clicks[rows] += n_clicks
                    first_watch[rows] += watch
                keep = n_clicks > 0
                if k + 1 < max_slates:
                    later = grid[user_day[rows], (k + 1) * size : (k + 2) * size]
                    keep &= (later >= 0).any(axis=1)
                else:
                    keep[:] = False
                go = np.flatnonzero(keep)
                mean_fraction = (
                    np.bincount(at[hit], weights=fraction, minlength=m)[go] / n_clicks[go]
                )
                p_continue = self._continue_probability(
                    slate=np.full(go.size, k, dtype=np.int64),
                    clicks=n_clicks[go],
                    watch_fraction=mean_fraction,
                    device=device[rows[go]],
                    t_us=now[r, rows[go]],
                    user_log_sessions=user_sessions[rows[go]],
                )
                keep[go] = u_continue[rows[go]] < p_continue
                now[r, rows] += np.rint((watch + self.gap_s) * US_PER_S).astype(np.int64)
                active[r, rows] = keep
        progress("rollout", max_slates, max_slates)
        means = {name: value / replicates for name, value in totals.items()}
        return sessions.select(pl.col("session_id"), pl.col("user_id")).with_columns(
            pl.Series("clicks", means["clicks"], dtype=pl.Float64),
            pl.Series("impressions", means["impressions"], dtype=pl.Float64),
            pl.Series("watch_s", means["watch_s"], dtype=pl.Float64),
            pl.Series("slates", means["slates"], dtype=pl.Float64),
            pl.Series("first_clicks", first_clicks / replicates, dtype=pl.Float64),
            pl.Series("first_watch_s", first_watch / replicates, dtype=pl.Float64),
        )

    # -- internals -----------------------------------------------------------------

    def _tables(self) -> _Tables:
        return _build_tables(
            self.users, self.user_categories, self.items, len(self.categories) + 1, self.priors
        )

    def _user_codes(self, ids: pl.Series) -> IntArray:
        return _codes(ids, self.users["user_id"], prior=self.users.height)

    def _item_codes(self, ids: pl.Series) -> IntArray:
        return _codes(ids, self.items["item_id"], prior=self.items.height)

    def _list_grid(
        self, sessions: pl.DataFrame, lists: pl.DataFrame, width: int
    ) -> tuple[IntArray, IntArray]:
        """Each user-day's item codes by rank, and each session's user-day.

        Returns ``grid`` (user-days, ``width``), the item code at each rank
        below ``width`` (-1 where the list has no such rank), and the row of
        ``grid`` of each session.
        """
        keys = sessions.select(pl.col("user_id").cast(pl.String), pl.col("day").cast(pl.Date))
        user_days = keys.unique(maintain_order=True).with_row_index("_ud")
        session_ud = (
            keys.join(user_days, on=["user_id", "day"], how="left", maintain_order="left")["_ud"]
            .to_numpy()
            .astype(np.int64)
        )
        listed = (
            lists.select(
                pl.col("user_id").cast(pl.String),
                pl.col("day").cast(pl.Date),
                pl.col("rank").cast(pl.Int64),
                pl.col("item_id").cast(pl.String),
            )
            .filter((pl.col("rank") >= 0) & (pl.col("rank") < width))
            .join(user_days, on=["user_id", "day"], how="inner")
        )
        if listed.select(pl.struct("_ud", "rank").is_duplicated().any()).item():
            raise InternalError("The policy's lists hold a (user_id, day, rank) more than once.")
        grid = np.full((user_days.height, width), -1, dtype=np.int64)
        grid[
            listed["_ud"].to_numpy().astype(np.int64), listed["rank"].to_numpy().astype(np.int64)
        ] = self._item_codes(listed["item_id"])
        return grid, session_ud

    def _score(self, tables: _Tables, cells: _Cells, booster: lightgbm.Booster) -> FloatArray:
        """``booster``'s prediction for each cell (click or watch model), in batches."""
        n = cells.item.size
        out = np.empty(n)
        for start in range(0, n, PREDICT_BATCH):
            part = cells.take(slice(start, min(start + PREDICT_BATCH, n)))
            matrix = _click_matrix(
                tables,
                item=part.item,
                t_us=part.t_us,
                device=part.device,
                slate=part.slate,
                position=part.position,
                age_prior=self.priors.age_days,
                user=part.user,
            )
            out[start : start + part.item.size] = _predict(booster, matrix)
        return out

    def _continue_probability(
        self,
        *,
        slate: IntArray,
        clicks: FloatArray,
        watch_fraction: FloatArray,
        device: IntArray,
        t_us: IntArray,
        user_log_sessions: FloatArray,
    ) -> FloatArray:
        if self.continue_booster is None or slate.size == 0:
            return np.full(slate.size, self.priors.continue_rate)
        matrix = _continue_matrix(
            slate=slate,
            clicks=clicks,
            watch_fraction=watch_fraction,
            device=device,
            t_us=t_us,
            user_log_sessions=user_log_sessions,
        )
        return _predict(self.continue_booster, matrix)


# -- fitting -----------------------------------------------------------------------------


def fit_session_model(
    events: pl.DataFrame,
    items: pl.DataFrame,
    *,
    seed: int = 0,
    num_threads: int = 2,
    max_rows: int = MAX_FIT_ROWS,
    progress: Progress = no_progress,
) -> SessionModel:
    """Fit the click, watch and continue models on ``events`` (the logs before the window).

    ``events`` has the data contract's columns (user_id, item_id, ts,
    session_id, slate, position, clicked, watch_time_s, device; the rest are
    ignored, ``explore`` on purpose); only impressions with a slate and a
    position count. ``items``: item_id, published_ts, duration_s, category
    (missing columns or values are allowed; ``split.complete_items`` fills
    them). The feature tables use every impression; the models are fit on at
    most ``max_rows`` impressions, whole sessions drawn in an order fixed by
    ``seed``, of which 10% of the sessions are held out for
    `SessionModel.fit_summary` and not fit on.

    Raises `DatasetError` when the events are too few (under `MIN_IMPRESSIONS`
    impressions or no click), hold no unclicked impression, or no click has an
    item duration.
    """
    check_int(num_threads, "num_threads", 1)
    check_int(max_rows, "max_rows", MIN_IMPRESSIONS)
    started = time.perf_counter()
    progress("session model", 0, 4)
    rows = _impressions(events)
    n_clicks = int(rows["clicked"].sum())
    if rows.height < MIN_IMPRESSIONS <= events.height:
        raise DatasetError(
            f"Only {rows.height:,} of the {events.height:,} events before the window have a "
            "slate and a position, too few to fit the session model; ingest logs of "
            "impressions with slate and position, or use --estimator ips/snips with per-slate "
            "metrics only."
        )
    if rows.height < MIN_IMPRESSIONS or n_clicks == 0:
        raise DatasetError(
            f"The {events.height:,} events before the window are too few to fit the session "
            "model; start the window later or use --estimator ips/snips with per-slate "
            "metrics only."
        )
    if n_clicks == rows.height:
        raise DatasetError(
            f"The {events.height:,} events before the window are all clicks, so the session "
            "model cannot learn click rates from them; it needs logged impressions (slate, "
            "position, clicked false), or use --estimator ips/snips with per-slate metrics only."
        )
    catalogue, categories = _catalogue(items, rows)
    n_categories = len(categories) + 1
    rows = (
        rows.join(
            catalogue.select("item_id", pl.col("_code").alias("_item"), "duration_s", "category"),
            on="item_id",
            how="left",
        )
        .sort("user_id", "session_id", "slate", "position", "item_id", "_t")
        .with_columns(_fraction().alias("_fraction"))
    )
    rows = _with_sessions(rows, seed, max_rows)
    base, position_ctr = _priors(rows, catalogue, n_categories)
    rows = rows.join(position_ctr, on="position", how="left", maintain_order="left")
    users, user_categories, model_items = _full_stats(rows, catalogue, base)
    gap_s = _median_gap(rows)
    tables = _build_tables(users, user_categories, model_items, n_categories, base)

    train = _point_in_time(rows, base)
    matrix = _click_matrix(
        tables,
        item=train["_item"].to_numpy().astype(np.int64),
        t_us=train["_t"].to_numpy().astype(np.int64),
        device=train["_device"].to_numpy().astype(np.int64),
        slate=train["slate"].to_numpy(),
        position=train["position"].to_numpy(),
        age_prior=base.age_days,
        stats=train,
    )
    held = train["_holdout"].to_numpy()
    clicked = train["clicked"].to_numpy().astype(np.float64)
    if np.unique(clicked[~held]).size < 2:  # tiny logs: no hold-out rather than nothing to fit
        held = np.zeros_like(held)
    fit = ~held
    click = _boost(
        matrix[fit],
        clicked[fit],
        features=CLICK_FEATURES,
        objective="binary",
        params=BOOST_PARAMS,
        seed=seed,
        num_threads=num_threads,
    )
    progress("session model", 1, 4)

    fraction = train["_fraction"].fill_null(float("nan")).to_numpy()
    watched = ~np.isnan(fraction)
    w_fit, w_held = fit & watched, held & watched
    if not w_fit.any():
        raise DatasetError(
            "No clicked event before the window has an item with a known duration_s, so the "
            "session model cannot learn watch fractions; ingest an item table with durations."
        )
    watch = _boost(
        matrix[w_fit],
        fraction[w_fit],
        features=CLICK_FEATURES,
        objective="cross_entropy",
        params=BOOST_PARAMS,
        seed=seed,
        num_threads=num_threads,
    )
    progress("session model", 2, 4)

    slates = _slate_examples(train)
    c_matrix = _continue_matrix(
        slate=slates["slate"].to_numpy(),
        clicks=slates["_clicks"].to_numpy().astype(np.float64),
        watch_fraction=slates["_fraction"].fill_null(float("nan")).to_numpy(),
        device=slates["_device"].to_numpy().astype(np.int64),
        t_us=slates["_t"].to_numpy().astype(np.int64),
        user_log_sessions=slates["user_log_sessions"].to_numpy(),
    )
    c_label = slates["_next"].to_numpy().astype(np.float64)
    c_held = slates["_holdout"].to_numpy()
    c_fit = ~c_held
    continue_rate = float(c_label[c_fit].mean()) if c_fit.any() else 0.0
    continues = None
    if 0.0 < continue_rate < 1.0:
        continues = _boost(
            c_matrix[c_fit],
            c_label[c_fit],
            features=CONTINUE_FEATURES,
            objective="binary",
            params=CONTINUE_PARAMS,
            seed=seed,
            num_threads=num_threads,
        )
    progress("session model", 3, 4)

    p_held = _predict(click, matrix[held])
    w_pred = _predict(watch, matrix[w_held])
    c_pred = (
        _predict(continues, c_matrix[c_held])
        if continues is not None
        else np.full(int(c_held.sum()), continue_rate)
    )
    summary: dict[str, Any] = {
        "impressions_in_logs": int(rows.height),
        "impressions_sampled": int(train.height),
        "max_rows": max_rows,
        "rows": {"click": int(fit.sum()), "watch": int(w_fit.sum()), "continue": int(c_fit.sum())},
        "holdout_rows": {
            "click": int(held.sum()),
            "watch": int(w_held.sum()),
            "continue": int(c_held.sum()),
        },
        "holdout": {
            "click_logloss": _logloss(clicked[held], p_held),
            "click_logloss_constant": _logloss(clicked[held], clicked[fit].mean()),
            "watch_fraction_rmse": _rmse(fraction[w_held], w_pred),
            "watch_fraction_rmse_constant": _rmse(fraction[w_held], fraction[w_fit].mean()),
            "continue_logloss": _logloss(c_label[c_held], c_pred),
            "continue_logloss_constant": _logloss(c_label[c_held], continue_rate),
        },
        "continue_model": continues is not None,
        "gap_s": gap_s,
        "seed": seed,
        "num_threads": num_threads,
        "fit_seconds": time.perf_counter() - started,
    }
    progress("session model", 4, 4)
    return SessionModel(
        click_booster=click,
        watch_booster=watch,
        continue_booster=continues,
        users=users,
        user_categories=user_categories,
        items=model_items,
        categories=categories,
        priors=replace(base, continue_rate=continue_rate),
        gap_s=gap_s,
        summary=summary,
    )


def _impressions(events: pl.DataFrame) -> pl.DataFrame:
    """The events with a slate and a position, in the columns and types the fit uses."""
    _require(
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


def _catalogue(items: pl.DataFrame, rows: pl.DataFrame) -> tuple[pl.DataFrame, tuple[str, ...]]:
    """One row per catalogue or logged item: _code, item_id, duration_s, published_us, category.

    Sorted by item_id (``_code`` = row number). An unknown or non-positive
    duration and an unknown published_ts are null; an unknown category is
    "none" (code ``len(categories)``).
    """
    _require(items, ("item_id",), "items")
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


def _fraction() -> pl.Expr:
    """The watch fraction ``min(watch_time_s / duration_s, 1)`` of a click; null otherwise."""
    return (
        pl.when(pl.col("clicked") & pl.col("duration_s").is_not_null())
        .then((pl.col("watch_time_s") / pl.col("duration_s")).clip(0.0, 1.0))
        .otherwise(None)
    )


def _with_sessions(rows: pl.DataFrame, seed: int, max_rows: int) -> pl.DataFrame:
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


def _priors(
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
        (p.ctr * (pl.col("s_clicks") + a) / (pl.col("s_expected") + a)).alias("user_ctr"),
        ((pl.col("s_fraction") + a * p.watch_fraction) / (pl.col("s_watches") + a)).alias(
            "user_watch_fraction"
        ),
        pl.col("s_clicks").alias("user_clicks"),
    ]


def _item_features(p: SessionPriors) -> list[pl.Expr]:
    """item_ctr (clicks over position-expected clicks, in CTR units) and item_log_impressions."""
    a = PRIOR_CLICKS
    return [
        (p.ctr * (pl.col("s_clicks") + a) / (pl.col("s_expected") + a)).alias("item_ctr"),
        pl.col("s_impressions").log1p().alias("item_log_impressions"),
    ]


def _full_stats(
    rows: pl.DataFrame, catalogue: pl.DataFrame, p: SessionPriors
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The prediction tables from every fit impression: users, user-category clicks, items."""
    sums = _sums()
    users = (
        rows.group_by("user_id")
        .agg(expr.sum().alias(name) for name, expr in sums.items())
        .sort("user_id")
        .select("user_id", *_user_features(p))
    )
    user_categories = (
        rows.filter(pl.col("clicked"))
        .group_by("user_id", "category")
        .agg(pl.len().cast(pl.Float64).alias("clicks"))
        .join(users.select("user_id").with_row_index("user_code"), on="user_id", how="inner")
        .select(pl.col("user_code").cast(pl.Int64), pl.col("category").cast(pl.Int32), "clicks")
        .sort("user_code", "category")
    )
    item_stats = (
        rows.group_by("item_id")
        .agg(expr.sum().alias(name) for name, expr in sums.items())
        .select("item_id", *_item_features(p))
    )
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


def _point_in_time(rows: pl.DataFrame, p: SessionPriors) -> pl.DataFrame:
    """The sampled rows, with the user and item statistics of the days before their session's.

    For each user, item and (user, category), the sums of every fit impression
    are taken per session start day and accumulated over the earlier days only
    (a running sum minus the day's own part), then joined to the rows of that
    day. ``user_category_share`` = (the user's earlier clicks in the item's
    category + a * the category's global share) / (the user's earlier clicks + a),
    a = `PRIOR_CLICKS`.
    """
    sums = _sums()

    def earlier(keys: list[str], names: list[str], prefix: str) -> pl.DataFrame:
        daily = rows.group_by([*keys, "_day"]).agg(sums[name].sum().alias(name) for name in names)
        return daily.sort([*keys, "_day"]).select(
            *keys,
            "_day",
            *(
                (pl.col(name).cum_sum().over(keys) - pl.col(name)).alias(prefix + name)
                for name in names
            ),
        )

    user_names = ["s_sessions", "s_clicks", "s_expected", "s_fraction", "s_watches"]
    item_names = ["s_clicks", "s_expected", "s_impressions"]
    sampled = rows.filter(pl.col("_sampled"))
    joined = (
        sampled.join(
            earlier(["user_id"], user_names, "u_"),
            on=["user_id", "_day"],
            how="left",
            maintain_order="left",
        )
        .join(
            earlier(["item_id"], item_names, "i_"),
            on=["item_id", "_day"],
            how="left",
            maintain_order="left",
        )
        .join(
            earlier(["user_id", "category"], ["s_clicks"], "c_"),
            on=["user_id", "category", "_day"],
            how="left",
            maintain_order="left",
        )
    )
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


def _slate_examples(train: pl.DataFrame) -> pl.DataFrame:
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


def _median_gap(rows: pl.DataFrame) -> float:
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


# -- features and boosters ---------------------------------------------------------------


def _build_tables(
    users: pl.DataFrame,
    user_categories: pl.DataFrame,
    items: pl.DataFrame,
    n_categories: int,
    p: SessionPriors,
) -> _Tables:
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
    return _Tables(
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


def _click_matrix(
    tables: _Tables,
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

    Item attributes come from ``tables``; the user and item statistics from
    the columns of ``stats`` when given (training: point in time), else from
    ``tables`` by ``user`` code (prediction).
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
        names = (
            "item_ctr",
            "item_log_impressions",
            "user_log_sessions",
            "user_ctr",
            "user_category_share",
            "user_watch_fraction",
        )
        cols |= {name: stats[name].to_numpy().astype(np.float64) for name in names}
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


def _continue_matrix(
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


def _boost(
    matrix: FloatArray,
    label: FloatArray,
    *,
    features: tuple[str, ...],
    objective: str,
    params: Mapping[str, int | float],
    seed: int,
    num_threads: int,
) -> lightgbm.Booster:
    """Train one deterministic LightGBM booster of `ROUNDS` trees with ``params``."""
    import lightgbm as lgb

    full: dict[str, Any] = dict(params) | {
        "objective": objective,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": num_threads,
        "seed": seed,
        "verbosity": -1,
        "feature_pre_filter": False,
    }
    data = lgb.Dataset(
        matrix,
        label=label,
        feature_name=list(features),
        categorical_feature=[str(name) for name in CATEGORICAL if name in features],
        params=full,
        free_raw_data=True,
    )
    return lgb.train(full, data, num_boost_round=ROUNDS)


def _predict(booster: lightgbm.Booster, matrix: FloatArray) -> FloatArray:
    """The booster's predictions (probabilities, or fractions for ``cross_entropy``)."""
    if matrix.shape[0] == 0:
        return np.zeros(0)
    # a row's score is a sum over its trees, independent of the other rows, so every thread
    # count gives the same numbers
    threads = os.cpu_count() or 1
    return np.asarray(booster.predict(matrix, num_threads=threads), dtype=np.float64)


def _logloss(label: FloatArray, p: FloatArray | float) -> float | None:
    """Mean binary cross-entropy (None without rows); ``p`` clipped to [1e-12, 1 - 1e-12]."""
    if label.size == 0:
        return None
    q = np.clip(np.broadcast_to(np.asarray(p, dtype=np.float64), label.shape), _EPS, 1.0 - _EPS)
    return float(-np.mean(label * np.log(q) + (1.0 - label) * np.log1p(-q)))


def _rmse(target: FloatArray, p: FloatArray | float) -> float | None:
    """Root mean squared error (None without rows)."""
    if target.size == 0:
        return None
    return float(np.sqrt(np.mean((target - np.asarray(p, dtype=np.float64)) ** 2)))


# -- small helpers -----------------------------------------------------------------------


def _codes(ids: pl.Series, table_ids: pl.Series, *, prior: int) -> IntArray:
    """Row of each id in ``table_ids`` (a join on the id); ``prior`` for ids not there."""
    table = pl.DataFrame({"_id": table_ids.cast(pl.String)}).with_row_index("_code")
    found = pl.DataFrame({"_id": ids.cast(pl.String)}).join(
        table, on="_id", how="left", maintain_order="left"
    )
    return found["_code"].cast(pl.Int64).fill_null(prior).to_numpy()


def _float(value: object, default: float) -> float:
    """``value`` as a float, or ``default`` when it is None or not finite."""
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return default


def _plain(value: Any) -> Any:
    """A deep copy of ``value`` with mappings as dicts and numpy scalars as Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _epoch_us(frame: pl.DataFrame, what: str) -> pl.Expr:
    """Column ts in microseconds since the epoch (a naive ts is UTC); raise if any is missing."""
    if frame["ts"].null_count():
        raise InternalError(f"The {what} frame given to the session model has rows without a ts.")
    return pl.col("ts").dt.epoch("us").cast(pl.Int64)


def _require(frame: pl.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InternalError(
            f"The {what} frame given to the session model lacks column(s) "
            f"{', '.join(missing)}; it has {', '.join(frame.columns) or 'none'}."
        )
