"""The user behaviour model: pure, vectorised functions of (user, item, position, context).

A user examines position ``p`` of a slate with probability ``1 / (1 + p) ** eta``
and clicks an examined item with an attraction probability (a logistic of
taste-topic affinity, quality, freshness, device and hour), independently
across positions. A click yields a watch fraction drawn from a Beta whose mean
is a logistic of affinity; after a slate with watches the user asks for another
slate with a probability rising with the slate's mean watch fraction.

Every argument broadcasts: ``users`` of shape (n, 1) against ``items`` of shape
(n, S) scores whole slates. Later code calls these for the ground truth of any
(user, item, position, context). Formulas and defaults: docs/simulator.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from recsim_cli.simulate.world import DAY_S, FloatArray, World

ArrayLike = npt.NDArray[Any]
HOUR_S = 3600
MIN_WATCH_FRACTION = 1e-3  # a click always plays a little: watch time is 0 iff not clicked


def sigmoid(x: ArrayLike) -> FloatArray:
    """The logistic function 1 / (1 + exp(-x))."""
    return np.asarray(1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64))))


def examination_probability(world: World, positions: ArrayLike) -> FloatArray:
    """Return P(the user examines 0-based slate position p) = 1 / (1 + p) ** eta."""
    eta = world.config.behaviour.position_bias
    return np.asarray((1.0 + np.asarray(positions, dtype=np.float64)) ** -eta)


def affinity(world: World, users: ArrayLike, items: ArrayLike) -> FloatArray:
    """Return the cosine of the user's taste and the item's topic, in [-1, 1]."""
    taste, topic = world.user_taste, world.item_topic
    # One factor at a time: no (n, S, factors) temporary, and a fixed order of additions.
    out = taste[users, 0] * topic[items, 0]
    for j in range(1, taste.shape[1]):
        out = out + taste[users, j] * topic[items, j]
    return np.asarray(out, dtype=np.float64)


def freshness(world: World, items: ArrayLike, ts: ArrayLike) -> FloatArray:
    """Return exp(-age / freshness_days) for the item's age at ``ts`` (1 when just published)."""
    age_days = np.maximum(np.asarray(ts) - world.item_published_ts[items], 0) / DAY_S
    return np.asarray(np.exp(-age_days / world.config.behaviour.freshness_days))


def hour_of_day(ts: ArrayLike) -> FloatArray:
    """Return the UTC hour of day of epoch-second timestamps, as a float in [0, 24)."""
    return np.asarray(np.mod(np.asarray(ts, dtype=np.int64), DAY_S) / HOUR_S, dtype=np.float64)


def log_duration_z(world: World, items: ArrayLike) -> FloatArray:
    """Return the item's log duration standardised by the population's median and sigma."""
    pop = world.config.population
    sigma = pop.duration_sigma if pop.duration_sigma > 0 else 1.0
    return np.asarray(
        (np.log(world.item_duration_s[items]) - np.log(pop.duration_median_s)) / sigma
    )


def attraction_probability(
    world: World, users: ArrayLike, items: ArrayLike, *, ts: ArrayLike, device: ArrayLike
) -> FloatArray:
    """Return P(click | examined) of items shown to users at ``ts`` on ``device``.

    logit = b0 + w_aff * affinity + w_q * quality + w_fresh * freshness
            + device effect + device-duration effect + w_hour * cos(2 pi (hour - peak) / 24)
    """
    b = world.config.behaviour
    device = np.asarray(device)
    logit = (
        b.click_intercept
        + b.click_affinity * affinity(world, users, items)
        + b.click_quality * world.item_quality[items]
        + b.click_freshness * freshness(world, items, ts)
        + np.asarray(b.click_device)[device]
        + np.asarray(b.click_device_duration)[device] * log_duration_z(world, items)
        + b.click_hour * np.cos(2 * np.pi * (hour_of_day(ts) - b.click_hour_peak) / 24)
    )
    return sigmoid(logit)


def click_probability(
    world: World,
    users: ArrayLike,
    items: ArrayLike,
    positions: ArrayLike,
    *,
    ts: ArrayLike,
    device: ArrayLike,
) -> FloatArray:
    """Return P(click) = P(examine position) * P(click | examined): the ground-truth CTR."""
    return examination_probability(world, positions) * attraction_probability(
        world, users, items, ts=ts, device=device
    )


def watch_fraction_mean(
    world: World, users: ArrayLike, items: ArrayLike, *, device: ArrayLike
) -> FloatArray:
    """Return the mean watch fraction of a click: a logistic of affinity, quality, device, length.

    logit = a0 + a_aff * affinity + a_q * quality + device effect - a_dur * z(log duration)
    """
    b = world.config.behaviour
    logit = (
        b.watch_intercept
        + b.watch_affinity * affinity(world, users, items)
        + b.watch_quality * world.item_quality[items]
        + np.asarray(b.watch_device)[np.asarray(device)]
        - b.watch_duration * log_duration_z(world, items)
    )
    return sigmoid(logit)


def watch_fraction(
    world: World, users: ArrayLike, items: ArrayLike, *, device: ArrayLike, u: ArrayLike
) -> FloatArray:
    """Return the ``u``-quantile of the watch fraction, Beta(m * kappa, (1 - m) * kappa).

    Pass uniforms in (0, 1) as ``u`` to draw fractions. Drawing by inverse CDF
    keeps one uniform per click, so two runs that share uniforms (common random
    numbers) get ordered watch fractions. Fractions are clipped below at 1e-3.
    """
    from scipy.special import betaincinv

    kappa = world.config.behaviour.watch_concentration
    mean = watch_fraction_mean(world, users, items, device=device)
    fraction = betaincinv(mean * kappa, (1.0 - mean) * kappa, np.asarray(u, dtype=np.float64))
    return np.asarray(np.clip(fraction, MIN_WATCH_FRACTION, 1.0), dtype=np.float64)


def continue_probability(world: World, mean_watch_fraction: ArrayLike) -> FloatArray:
    """Return P(ask for another slate | the slate had watches), rising with their mean fraction."""
    b = world.config.behaviour
    return sigmoid(b.continue_intercept + b.continue_watch * np.asarray(mean_watch_fraction))
