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

The code is in three modules: this one (the model, its fit and its rollout),
`session_features` (the fit rows, the user and item statistics, which are
point in time on the training rows, the priors and the feature matrices) and
`session_boosters` (the three boosters' specs, LightGBM training and
prediction, the hold-out losses).

Everything is deterministic: the same events, items and seed give the same
boosters (``deterministic=True``, fixed ``num_threads`` and ``seed``), and a
rollout depends only on its inputs and seed. lightgbm is imported inside
functions only.
"""

from __future__ import annotations

import io
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl

from recsim_cli.errors import DatasetError, InternalError, check_int
from recsim_cli.experiment.offpolicy import (
    XXHASH_SEED,
    UintArray,
    xxhash64_int,
    xxhash64_long,
    xxhash64_strings,
)
from recsim_cli.experiment.session_boosters import (
    CLICK_MODEL,
    CONTINUE_MODEL,
    WATCH_MODEL,
    logloss,
    predict_booster,
    predict_or_constant,
    rmse,
    train_booster,
)
from recsim_cli.experiment.session_features import (
    CLICK_FEATURES,
    CONTINUE_FEATURES,
    US_PER_S,
    SessionPriors,
    Tables,
    build_tables,
    click_matrix,
    continue_matrix,
    full_statistics,
    global_priors,
    item_catalogue,
    logged_impressions,
    median_gap,
    point_in_time,
    require_columns,
    slate_examples,
    watch_fraction,
    with_sessions,
)
from recsim_cli.models.features import device_code
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
    "rollout_uniforms",
    "session_keys",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

MAX_FIT_ROWS: Final = 2_000_000
"""Impressions the models are fit on at most (whole sessions, sampled by seed)."""
PREDICT_BATCH: Final = 1_000_000
MIN_IMPRESSIONS: Final = 100


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
        require_columns(slots, ("user_id", "item_id", "ts", "device", "slate", "position"), "slots")
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
        shown the slate's watch seconds plus ``gap_s`` later. The uniforms are
        keyed hashes, not a generator's stream (`rollout_uniforms`): ``u[p]`` of
        replicate r and slate k is ``(xxhash64(seed, user_id, session_id, r, k,
        p) >>> 11) / 2^53`` and ``u_continue`` the same with p = -1. They depend
        only on the seed and the session's keys, not on its row or on the other
        sessions, so two policies rolled out on the same sessions with the same
        seed share them, and any split of the sessions into parts (Spark's
        partitions) gives every session the same numbers.

        Returns one row per session, in the order of ``sessions``: session_id,
        user_id, clicks, impressions, watch_s, slates, first_clicks,
        first_watch_s (slate 0 only), each the mean over ``replicates`` (Float64).
        """
        check_int(slate_size, "slate_size", 1)
        check_int(max_slates, "max_slates", 1)
        check_int(replicates, "replicates", 1)
        require_columns(sessions, ("session_id", "user_id", "day", "ts", "device"), "sessions")
        require_columns(lists, ("user_id", "day", "rank", "item_id"), "lists")
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

        names = ("clicks", "impressions", "watch_s", "slates", "first_clicks", "first_watch_s")
        totals = {name: np.zeros(n) for name in names}
        keys = session_keys(sessions, seed)
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
            for r in range(replicates):
                rows = np.flatnonzero(active[r])
                if not rows.size:
                    continue
                round_keys = _mix(_mix(keys[rows], r), k)
                if k == 0:
                    cells, at, p_click = first_cells, first_at, first_p
                else:
                    cells, at = slate_cells(rows, now[r, rows], k)
                    p_click = self._score(tables, cells, self.click_booster)
                u_click = rollout_uniforms(round_keys[at], cells.position)
                hit = np.flatnonzero(u_click < p_click)
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
                    totals["first_clicks"][rows] += n_clicks
                    totals["first_watch_s"][rows] += watch
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
                c_matrix = continue_matrix(
                    slate=np.full(go.size, k, dtype=np.int64),
                    clicks=n_clicks[go],
                    watch_fraction=mean_fraction,
                    device=device[rows[go]],
                    t_us=now[r, rows[go]],
                    user_log_sessions=user_sessions[rows[go]],
                )
                p_continue = predict_or_constant(
                    self.continue_booster, c_matrix, self.priors.continue_rate
                )
                keep[go] = rollout_uniforms(round_keys[go], -1) < p_continue
                now[r, rows] += np.rint((watch + self.gap_s) * US_PER_S).astype(np.int64)
                active[r, rows] = keep
        progress("rollout", max_slates, max_slates)
        return sessions.select(pl.col("session_id"), pl.col("user_id")).with_columns(
            pl.Series(name, value / replicates, dtype=pl.Float64) for name, value in totals.items()
        )

    def to_parts(self) -> dict[str, Any]:
        """The model as plain values, for Spark to broadcast to its workers (no pickled objects).

        The boosters as LightGBM's text models (``model_to_string``), the tables
        as Arrow IPC bytes, the rest as numbers and strings. `from_parts` reads
        them back; the rebuilt model predicts the same numbers.
        """
        return {
            "boosters": {
                "click": self.click_booster.model_to_string(),
                "watch": self.watch_booster.model_to_string(),
                "continue": None
                if self.continue_booster is None
                else self.continue_booster.model_to_string(),
            },
            "tables": {
                name: _ipc(frame)
                for name, frame in (
                    ("users", self.users),
                    ("user_categories", self.user_categories),
                    ("items", self.items),
                )
            },
            "categories": list(self.categories),
            "priors": {**asdict(self.priors), "category_share": list(self.priors.category_share)},
            "gap_s": self.gap_s,
            "summary": self.fit_summary(),
        }

    @classmethod
    def from_parts(cls, parts: Mapping[str, Any]) -> SessionModel:
        """Rebuild a model from `to_parts`'s values."""
        import lightgbm as lgb

        boosters = parts["boosters"]
        tables = {name: pl.read_ipc(io.BytesIO(data)) for name, data in parts["tables"].items()}
        priors = dict(parts["priors"])
        priors["category_share"] = tuple(priors["category_share"])
        return cls(
            click_booster=lgb.Booster(model_str=boosters["click"]),
            watch_booster=lgb.Booster(model_str=boosters["watch"]),
            continue_booster=None
            if boosters["continue"] is None
            else lgb.Booster(model_str=boosters["continue"]),
            users=tables["users"],
            user_categories=tables["user_categories"],
            items=tables["items"],
            categories=tuple(parts["categories"]),
            priors=SessionPriors(**priors),
            gap_s=float(parts["gap_s"]),
            summary=parts["summary"],
        )

    # -- internals -----------------------------------------------------------------

    @cached_property
    def _table_arrays(self) -> Tables:
        return build_tables(
            self.users, self.user_categories, self.items, len(self.categories) + 1, self.priors
        )

    def _tables(self) -> Tables:
        """The feature tables as arrays, built once per model."""
        return self._table_arrays

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

    def _score(self, tables: Tables, cells: _Cells, booster: lightgbm.Booster) -> FloatArray:
        """``booster``'s prediction for each cell (click or watch model), in batches."""
        n = cells.item.size
        out = np.empty(n)
        for start in range(0, n, PREDICT_BATCH):
            part = cells.take(slice(start, min(start + PREDICT_BATCH, n)))
            matrix = click_matrix(
                tables,
                item=part.item,
                t_us=part.t_us,
                device=part.device,
                slate=part.slate,
                position=part.position,
                age_prior=self.priors.age_days,
                user=part.user,
            )
            out[start : start + part.item.size] = predict_booster(booster, matrix)
        return out


# -- fitting -----------------------------------------------------------------------------


def fit_session_model(
    events: pl.DataFrame,
    items: pl.DataFrame,
    *,
    seed: int = 0,
    num_threads: int = 2,
    max_rows: int = MAX_FIT_ROWS,
    events_before: int | None = None,
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
    `SessionModel.fit_summary` and not fit on. ``events_before`` is how many
    events the logs before the window hold when ``events`` is only their rows
    with a slate and a position (what the Spark engine brings to the driver);
    by default ``events.height``. The rows are sorted by every column the fit
    reads first, so their order in ``events`` does not matter.

    Raises `DatasetError` when the events are too few (under `MIN_IMPRESSIONS`
    impressions or no click), hold no unclicked impression, or no click has an
    item duration.
    """
    check_int(num_threads, "num_threads", 1)
    check_int(max_rows, "max_rows", MIN_IMPRESSIONS)
    started = time.perf_counter()
    boost = partial(train_booster, seed=seed, num_threads=num_threads)
    progress("session model", 0, 4)
    rows = logged_impressions(events)
    n_events = events.height if events_before is None else events_before
    n_clicks = int(rows["clicked"].sum())
    if rows.height < MIN_IMPRESSIONS <= n_events:
        raise DatasetError(
            f"Only {rows.height:,} of the {n_events:,} events before the window have a "
            "slate and a position, too few to fit the session model; ingest logs of "
            "impressions with slate and position, or use --estimator ips/snips with per-slate "
            "metrics only."
        )
    if rows.height < MIN_IMPRESSIONS or n_clicks == 0:
        raise DatasetError(
            f"The {n_events:,} events before the window are too few to fit the session "
            "model; start the window later or use --estimator ips/snips with per-slate "
            "metrics only."
        )
    if n_clicks == rows.height:
        raise DatasetError(
            f"The {n_events:,} events before the window are all clicks, so the session "
            "model cannot learn click rates from them; it needs logged impressions (slate, "
            "position, clicked false), or use --estimator ips/snips with per-slate metrics only."
        )
    catalogue, categories = item_catalogue(items, rows)
    n_categories = len(categories) + 1
    rows = (
        rows.join(
            catalogue.select("item_id", pl.col("_code").alias("_item"), "duration_s", "category"),
            on="item_id",
            how="left",
        )
        .sort(
            "user_id",
            "session_id",
            "slate",
            "position",
            "item_id",
            "_t",
            "clicked",
            "watch_time_s",
            "_device",
        )
        .with_columns(watch_fraction().alias("_fraction"))
    )
    rows = with_sessions(rows, seed, max_rows)
    base, position_ctr = global_priors(rows, catalogue, n_categories)
    rows = rows.join(position_ctr, on="position", how="left", maintain_order="left")
    users, user_categories, model_items = full_statistics(rows, catalogue, base)
    gap_s = median_gap(rows)
    tables = build_tables(users, user_categories, model_items, n_categories, base)

    train = point_in_time(rows, base)
    matrix = click_matrix(
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
    click = boost(CLICK_MODEL, matrix[fit], clicked[fit])
    progress("session model", 1, 4)

    fraction = train["_fraction"].fill_null(float("nan")).to_numpy()
    watched = ~np.isnan(fraction)
    w_fit, w_held = fit & watched, held & watched
    if not w_fit.any():
        raise DatasetError(
            "No clicked event before the window has an item with a known duration_s, so the "
            "session model cannot learn watch fractions; ingest an item table with durations."
        )
    watch = boost(WATCH_MODEL, matrix[w_fit], fraction[w_fit])
    progress("session model", 2, 4)

    slates = slate_examples(train)
    c_matrix = continue_matrix(
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
        continues = boost(CONTINUE_MODEL, c_matrix[c_fit], c_label[c_fit])
    progress("session model", 3, 4)

    p_held = predict_booster(click, matrix[held])
    w_pred = predict_booster(watch, matrix[w_held])
    c_pred = predict_or_constant(continues, c_matrix[c_held], continue_rate)
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
            "click_logloss": logloss(clicked[held], p_held),
            "click_logloss_constant": logloss(clicked[held], clicked[fit].mean()),
            "watch_fraction_rmse": rmse(fraction[w_held], w_pred),
            "watch_fraction_rmse_constant": rmse(fraction[w_held], fraction[w_fit].mean()),
            "continue_logloss": logloss(c_label[c_held], c_pred),
            "continue_logloss_constant": logloss(c_label[c_held], continue_rate),
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


# -- the rollout's keyed draws -------------------------------------------------------------


def session_keys(sessions: pl.DataFrame, seed: int) -> UintArray:
    """Each session's draw key: Spark SQL's ``xxhash64(seed, user_id, session_id)``, seed a long."""
    n = sessions.height
    start = xxhash64_long(np.array([seed], dtype=np.int64), np.array([XXHASH_SEED], np.uint64))
    h = xxhash64_strings(sessions.get_column("user_id"), np.repeat(start, n))
    return xxhash64_strings(sessions.get_column("session_id"), h)


def _mix(keys: UintArray, value: int | IntArray) -> UintArray:
    """Hash the 32-bit integer(s) ``value`` into ``keys``, as one more column of ``xxhash64``."""
    values = np.broadcast_to(np.asarray(value, dtype=np.int32), keys.shape)
    return xxhash64_int(values, keys)


def rollout_uniforms(keys: UintArray, position: int | IntArray) -> FloatArray:
    """The uniforms in [0, 1) of ``keys`` (a session's, mixed with replicate and slate), position.

    ``(xxhash64(..., position) >>> 11) / 2^53``: the top 53 bits of the hash.
    """
    return (_mix(keys, position) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


# -- small helpers -----------------------------------------------------------------------


def _codes(ids: pl.Series, table_ids: pl.Series, *, prior: int) -> IntArray:
    """Row of each id in ``table_ids`` (a join on the id); ``prior`` for ids not there."""
    table = pl.DataFrame({"_id": table_ids.cast(pl.String)}).with_row_index("_code")
    found = pl.DataFrame({"_id": ids.cast(pl.String)}).join(
        table, on="_id", how="left", maintain_order="left"
    )
    return found["_code"].cast(pl.Int64).fill_null(prior).to_numpy()


def _plain(value: Any) -> Any:
    """A deep copy of ``value`` with mappings as dicts and numpy scalars as Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _ipc(frame: pl.DataFrame) -> bytes:
    """``frame`` as Arrow IPC bytes."""
    buffer = io.BytesIO()
    frame.write_ipc(buffer)
    return buffer.getvalue()


def _epoch_us(frame: pl.DataFrame, what: str) -> pl.Expr:
    """Column ts in microseconds since the epoch (a naive ts is UTC); raise if any is missing."""
    if frame["ts"].null_count():
        raise InternalError(f"The {what} frame given to the session model has rows without a ts.")
    return pl.col("ts").dt.epoch("us").cast(pl.Int64)
