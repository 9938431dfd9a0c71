"""Candidate pools of the logging policy: C distinct published items per user-day.

Each pool slot comes from one of three sources, like a production candidate
generator: with probability ``personal_share`` an item of a category drawn from
the user's taste (P(category) proportional to exp(beta * taste . centroid));
with probability ``fresh_share`` one of the latest uploads (published in the
``fresh_days`` before midnight); otherwise any published item. (The number of
slots per source is binomial per row, which is the same thing.) Sources pick
uniformly within themselves. Repeats are redrawn uniformly from all published
items until the row holds C distinct items. Only items published before
midnight of the day are eligible, so a pool stays valid all day.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsim_cli.simulate.config import CATEGORIES
from recsim_cli.simulate.world import DAY_S, FloatArray, IntArray, World, row_dot

_CHUNK_ROWS = 32_768  # bounds the temporaries to a few tens of MB
_REDRAW_ROUNDS = 32  # then the few rows still holding repeats are drawn exactly


@dataclass(frozen=True, eq=False)
class _Eligible:
    """What each day may draw from; items are indexed by publication time."""

    total: IntArray  # (days,) items published before midnight: indices [0, total)
    fresh_from: IntArray  # (days,) the latest uploads are indices [fresh_from, total)
    by_cat: IntArray  # (days, K) eligible items per category
    by_category: IntArray  # item indices grouped by category, each group in time order
    group_start: IntArray  # (K,) where each category's group starts in by_category
    preference: FloatArray  # (users, K) each user's category distribution


def eligible_counts(world: World) -> tuple[IntArray, IntArray]:
    """Return items published before each day's midnight: total (days,), by category (days, K).

    Items are indexed by publication time, so the eligible items of a day are the
    first ``total[d]`` indices.
    """
    total = np.searchsorted(world.item_published_ts, world.day_start_ts(), side="left")
    by_cat = np.stack(
        [np.bincount(world.item_category[:n], minlength=len(CATEGORIES)) for n in total]
    )
    return total.astype(np.int64), by_cat.astype(np.int64)


def category_preference(world: World) -> FloatArray:
    """Return each user's pool category distribution, shape (users, categories)."""
    beta = world.config.logging.taste_sharpness
    centroids = world.category_centroid
    score = row_dot(world.user_taste[:, None, :], centroids[None, :, :])
    weight = np.exp(beta * (score - score.max(axis=1, keepdims=True)))
    return np.asarray(weight / weight.sum(axis=1, keepdims=True))


def draw_pools(world: World, users: IntArray, days: IntArray, rng: np.random.Generator) -> IntArray:
    """Draw ``pool_size`` distinct eligible items per (user, day) row, each row sorted."""
    total, by_cat = eligible_counts(world)
    fresh_start = world.day_start_ts() - round(world.config.logging.fresh_days * DAY_S)
    fresh_from = np.searchsorted(world.item_published_ts, fresh_start, side="left")
    by_category = np.argsort(world.item_category, kind="stable")
    eligible = _Eligible(
        total=total,
        # An empty window (nothing uploaded lately) falls back to every published item.
        fresh_from=np.where(fresh_from < total, fresh_from, 0).astype(np.int64),
        by_cat=by_cat,
        by_category=by_category,
        group_start=np.searchsorted(world.item_category[by_category], np.arange(len(CATEGORIES))),
        preference=category_preference(world),
    )
    out = np.empty((len(users), world.config.pool_size), dtype=np.int64)
    for lo in range(0, len(users), _CHUNK_ROWS):
        hi = min(lo + _CHUNK_ROWS, len(users))
        raw = _draw_slots(world, users[lo:hi], days[lo:hi], eligible, rng)
        out[lo:hi] = _deduplicate(raw, total[days[lo:hi]], rng)
    return out


def _draw_slots(
    world: World, users: IntArray, days: IntArray, eligible: _Eligible, rng: np.random.Generator
) -> IntArray:
    """Draw every slot of the rows from its source, repeats allowed; rows are unsorted.

    Slots are counted per source and row first (binomial, then multinomial over
    categories), so the work is a few flat draws rather than one per slot.
    """
    n, size, logging = len(users), world.config.pool_size, world.config.logging
    n_personal = rng.binomial(size, logging.personal_share, size=n)
    rest_share = 1.0 - logging.personal_share
    fresh_given_rest = min(logging.fresh_share / rest_share, 1.0) if rest_share > 0 else 0.0
    n_fresh = rng.binomial(size - n_personal, fresh_given_rest)
    n_any = size - n_personal - n_fresh

    # Categories with nothing published yet cannot be drawn that day.
    by_cat = eligible.by_cat[days]
    weight = eligible.preference[users] * (by_cat > 0)
    per_category = rng.multinomial(n_personal, weight / weight.sum(axis=1, keepdims=True))
    n_cat = by_cat.shape[1]
    slot_row = np.repeat(np.repeat(np.arange(n), n_cat), per_category.ravel())
    category = np.repeat(np.tile(np.arange(n_cat), n), per_category.ravel())
    available = by_cat[slot_row, category]
    within = np.floor(rng.random(len(slot_row)) * available).astype(np.int64)
    personal = eligible.by_category[eligible.group_start[category] + within]

    fresh_row, fresh_slot = _slots(n_fresh)
    lo = eligible.fresh_from[days][fresh_row]
    span = eligible.total[days][fresh_row] - lo
    fresh = lo + np.floor(rng.random(len(fresh_row)) * span).astype(np.int64)

    any_row, any_slot = _slots(n_any)
    anything = np.floor(rng.random(len(any_row)) * eligible.total[days][any_row]).astype(np.int64)

    # Row r holds its personal slots, then its fresh ones, then the rest.
    out = np.empty((n, size), dtype=np.int64)
    out[slot_row, _slots(n_personal)[1]] = personal
    out[fresh_row, n_personal[fresh_row] + fresh_slot] = fresh
    out[any_row, (n_personal + n_fresh)[any_row] + any_slot] = anything
    return out


def _slots(counts: IntArray) -> tuple[IntArray, IntArray]:
    """Return (row, index within row) of every slot when row r has ``counts[r]`` slots."""
    row = np.repeat(np.arange(len(counts)), counts)
    first = np.cumsum(counts) - counts
    return row, np.arange(len(row)) - first[row]


def _deduplicate(pool: IntArray, total: IntArray, rng: np.random.Generator) -> IntArray:
    """Replace repeated items by uniform eligible draws until each row is distinct; sort rows."""
    pool = np.sort(pool, axis=1)
    rows = np.arange(len(pool))
    for _ in range(_REDRAW_ROUNDS):
        sub = pool[rows]
        repeat = np.zeros(sub.shape, dtype=bool)
        repeat[:, 1:] = sub[:, 1:] == sub[:, :-1]
        bad = repeat.any(axis=1)
        if not bad.any():
            return pool
        rows, sub, repeat = rows[bad], sub[bad], repeat[bad]
        row_of = np.nonzero(repeat)[0]
        sub[repeat] = np.floor(rng.random(len(row_of)) * total[rows][row_of]).astype(np.int64)
        pool[rows] = np.sort(sub, axis=1)
    # Pools nearly as large as the catalogue converge slowly: draw those rows exactly.
    pool[rows] = _uniform_subsets(total[rows], pool.shape[1], rng)
    return pool


def _uniform_subsets(total: IntArray, size: int, rng: np.random.Generator) -> IntArray:
    """Draw, per row, ``size`` distinct items uniformly from the first ``total[r]``, sorted."""
    if len(total) == 0:
        return np.empty((0, size), dtype=np.int64)
    keys = rng.random((len(total), int(total.max())))
    keys[np.arange(keys.shape[1])[None, :] >= total[:, None]] = np.inf
    picked = np.argpartition(keys, size - 1, axis=1)[:, :size]
    return np.sort(picked, axis=1).astype(np.int64)
