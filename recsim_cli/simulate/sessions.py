"""Sessions: when users arrive, and the slate-by-slate simulation of what they do.

``simulate_sessions`` runs every session at once, one slate round at a time:
round r shows slate r to each session still going, draws examinations, clicks
and watches for all its positions together, and keeps the sessions whose user
asks for another slate. The behaviour's random numbers of round r are drawn
for every session, going or not, so two runs with the same generator and
different policies share them (common random numbers for A/B tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsim_cli.progress import Progress, no_progress
from recsim_cli.simulate.behaviour import (
    attraction_probability,
    continue_probability,
    examination_probability,
    watch_fraction,
)
from recsim_cli.simulate.config import DEVICES
from recsim_cli.simulate.policy import BoolArray, SlatePolicy
from recsim_cli.simulate.world import DAY_S, FloatArray, IntArray, World

_WEEKEND = (5, 6)  # Saturday, Sunday as date.weekday()


@dataclass(frozen=True, eq=False)
class Sessions:
    """Sessions in order of start: user, day index, start time (epoch s) and device."""

    user: IntArray
    day: IntArray
    start_ts: IntArray
    device: IntArray

    def __len__(self) -> int:
        return len(self.user)


@dataclass(frozen=True, eq=False)
class Impressions:
    """One entry per shown item, sorted by (ts, session, slate, position)."""

    session: IntArray
    slate: IntArray
    position: IntArray
    item: IntArray
    ts: IntArray  # epoch seconds when the slate was shown
    clicked: BoolArray
    watch_time_s: FloatArray  # 0 when not clicked
    propensity: FloatArray
    explore: BoolArray

    def __len__(self) -> int:
        return len(self.item)


def draw_sessions(world: World, rng: np.random.Generator, days: IntArray | None = None) -> Sessions:
    """Draw each user's sessions of each day: Poisson counts, start hours, devices.

    ``days`` (world day indices, increasing) limits the draw to those days, as
    a continuation of the logs does; by default every day of the world.

    The number of sessions of user u on day d is Poisson(activity_u, times
    weekend_factor on Saturdays and Sundays); a start hour is the user's peak
    hour plus normal noise of the user's spread, wrapped to the day, and a user's
    starts of one day are then pushed apart to at least session_spacing_s; the
    device is the preferred one with probability device_loyalty, else another
    at random.
    """
    config, pop = world.config, world.config.population
    day_index = np.arange(config.days) if days is None else np.asarray(days, dtype=np.int64)
    weekday = (config.start.weekday() + day_index) % 7
    day_factor = np.where(np.isin(weekday, _WEEKEND), pop.weekend_factor, 1.0)
    counts = rng.poisson(world.user_activity[:, None] * day_factor[None, :])
    user, column = np.nonzero(counts)
    repeat = counts[user, column]
    user, day = np.repeat(user, repeat), np.repeat(day_index[column], repeat)
    n = len(user)
    hour = world.user_peak_hour[user] + world.user_hour_spread[user] * rng.standard_normal(n)
    second = np.floor(np.mod(hour, 24.0) * 3600).astype(np.int64)
    start = world.start_ts + day.astype(np.int64) * DAY_S + np.minimum(second, DAY_S - 1)
    start = _space_out(start, user * config.days + day, pop.session_spacing_s)
    loyal = rng.random(n) < pop.device_loyalty
    # Another device: shift the preferred one by 1 or 2 places.
    other = (world.user_device[user] + rng.integers(1, len(DEVICES), size=n)) % len(DEVICES)
    device = np.where(loyal, world.user_device[user], other)
    order = np.lexsort((user, start))
    return Sessions(
        user=user[order].astype(np.int64),
        day=day[order].astype(np.int64),
        start_ts=start[order],
        device=device[order].astype(np.int64),
    )


def _space_out(start: IntArray, group: IntArray, spacing: int) -> IntArray:
    """Delay starts so that starts within a group are at least ``spacing`` seconds apart.

    Within a group sorted by start, the k-th start becomes
    max_{j <= k} (start_j + (k - j) * spacing) = k * spacing + cummax(start_j - j * spacing),
    one running maximum for all groups at once (each group lifted above the previous).
    """
    order = np.lexsort((start, group))
    s, g = start[order], group[order]
    first = np.r_[True, g[1:] != g[:-1]]
    group_start = np.maximum.accumulate(np.where(first, np.arange(len(s)), 0))
    k = np.arange(len(s)) - group_start
    shifted = s - k * spacing
    lift = np.cumsum(first) * (int(np.ptp(shifted)) + 1 if len(s) else 0)
    spaced = np.maximum.accumulate(shifted + lift) - lift + k * spacing
    out = np.empty_like(start)
    out[order] = spaced
    return out


def simulate_sessions(
    world: World,
    policy: SlatePolicy,
    sessions: Sessions,
    rng: np.random.Generator,
    progress: Progress = no_progress,
) -> Impressions:
    """Run ``sessions`` under ``policy`` and return every impression.

    A session ends after a slate without a click, when the user declines another
    slate, or after ``policy.max_slates`` slates. ``rng`` is split into a
    behaviour stream and a policy stream, so a policy's own draws never shift
    the behaviour's.
    """
    behaviour_rng, policy_rng = rng.spawn(2)
    b = world.config.behaviour
    n, size = len(sessions), policy.slate_size
    position = np.arange(size)
    examine = examination_probability(world, position)
    duration = world.item_duration_s
    now = sessions.start_ts.copy()
    active = np.arange(n)
    rounds: list[dict[str, np.ndarray]] = []
    progress("sessions", 0, n)
    for slate in range(policy.max_slates):
        if not active.size:
            break
        u_examine = behaviour_rng.random((n, size))[active]
        u_click = behaviour_rng.random((n, size))[active]
        u_watch = behaviour_rng.random((n, size))[active]
        u_continue = behaviour_rng.random(n)[active]
        u_gap = behaviour_rng.random(n)[active]

        user, device, ts = sessions.user[active], sessions.device[active], now[active]
        shown = policy.slates(user, sessions.day[active], np.full(len(active), slate), policy_rng)
        items = shown.items
        attract = attraction_probability(
            world, user[:, None], items, ts=ts[:, None], device=device[:, None]
        )
        clicked = (u_examine < examine) & (u_click < attract)

        watch = np.zeros(items.shape)
        hit = np.nonzero(clicked)
        fraction = watch_fraction(
            world, user[hit[0]], items[hit], device=device[hit[0]], u=u_watch[hit]
        )
        # Tenths of a second, never 0 for a click: watch time is 0 iff not clicked.
        watch[hit] = np.maximum(np.round(duration[items[hit]] * fraction, 1), 0.1)
        fractions = np.zeros(items.shape)
        fractions[hit] = fraction
        n_clicks = clicked.sum(axis=1)
        mean_fraction = fractions.sum(axis=1) / np.maximum(n_clicks, 1)
        keep = (n_clicks > 0) & (u_continue < continue_probability(world, mean_fraction))

        rounds.append(
            {
                "session": np.repeat(active, size),
                "slate": np.full(len(active) * size, slate),
                "position": np.tile(position, len(active)),
                "item": items.ravel(),
                "ts": np.repeat(ts, size),
                "clicked": clicked.ravel(),
                "watch_time_s": watch.ravel(),
                "propensity": shown.propensity.ravel(),
                "explore": np.repeat(shown.explore, size),
            }
        )
        gap = b.gap_min_s - b.gap_mean_s * np.log1p(-u_gap)  # gap_min + Exponential(gap_mean)
        now[active] = ts + np.ceil(watch.sum(axis=1) + gap).astype(np.int64)
        active = active[keep]
        progress("sessions", n - len(active), n)
    progress("sessions", n, n)
    return _concatenate(rounds, n)


def _concatenate(rounds: list[dict[str, np.ndarray]], n_sessions: int) -> Impressions:
    """Join the rounds' columns and sort by (ts, session, slate, position).

    Slates of a session are at least a second apart, so (ts, session) identifies
    a slate; a stable sort on that key keeps each slate's positions in order.
    """

    def column(name: str, dtype: type[np.generic]) -> np.ndarray:
        parts = [r[name] for r in rounds] or [np.empty(0)]
        return np.concatenate(parts).astype(dtype, copy=False)

    ts, session = column("ts", np.int64), column("session", np.int64)
    key = (ts - (ts.min() if len(ts) else 0)) * max(n_sessions, 1) + session
    order = np.argsort(key, kind="stable")
    return Impressions(
        session=session[order],
        slate=column("slate", np.int64)[order],
        position=column("position", np.int64)[order],
        item=column("item", np.int64)[order],
        ts=ts[order],
        clicked=column("clicked", np.bool_)[order],
        watch_time_s=column("watch_time_s", np.float64)[order],
        propensity=column("propensity", np.float64)[order],
        explore=column("explore", np.bool_)[order],
    )
