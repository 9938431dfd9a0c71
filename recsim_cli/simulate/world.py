"""The simulated world: users and items with their latent arrays, drawn from a config.

A ``World`` is plain data. Items are indexed in order of publication, so the
items published before any moment are a prefix of the index; the candidate
pools rely on that. Dot products and norms are summed column by column rather
than by BLAS, whose order of additions can change with the machine or thread
count, so the same seed gives the same stored bits.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from recsim_cli.simulate.config import CATEGORIES, DEVICES, WorldConfig

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
DAY_S = 86_400

# The arrays that make up a world, with their dtypes: what world.npz holds.
ARRAY_DTYPES: dict[str, type[np.generic]] = {
    "category_centroid": np.float64,
    "user_taste": np.float64,
    "user_activity": np.float64,
    "user_peak_hour": np.float64,
    "user_hour_spread": np.float64,
    "user_device": np.int64,
    "item_topic": np.float64,
    "item_quality": np.float64,
    "item_published_ts": np.int64,
    "item_duration_s": np.int64,
    "item_category": np.int64,
}


@dataclass(frozen=True, eq=False)
class World:
    """Users, items and the parameters of their behaviour.

    Timestamps are integer seconds since the Unix epoch, UTC. ``user_device``
    and ``item_category`` index ``DEVICES`` and ``CATEGORIES``.
    """

    config: WorldConfig
    category_centroid: FloatArray  # (categories, factors), unit rows
    user_taste: FloatArray  # (users, factors), unit rows
    user_activity: FloatArray  # (users,) mean sessions per day
    user_peak_hour: FloatArray  # (users,) preferred hour of day, UTC, in [0, 24)
    user_hour_spread: FloatArray  # (users,) sd of session start hours around the peak
    user_device: IntArray  # (users,) preferred device
    item_topic: FloatArray  # (items, factors), unit rows
    item_quality: FloatArray  # (items,) latent quality, standard normal
    item_published_ts: IntArray  # (items,) non-decreasing
    item_duration_s: IntArray  # (items,)
    item_category: IntArray  # (items,)

    @property
    def start_ts(self) -> int:
        """Epoch seconds of midnight UTC on the first day of the log window."""
        start = dt.datetime.combine(self.config.start, dt.time(), tzinfo=dt.UTC)
        return int(start.timestamp())

    def day_start_ts(self) -> IntArray:
        """Epoch seconds of midnight UTC of each day of the window, shape (days,)."""
        return self.start_ts + DAY_S * np.arange(self.config.days, dtype=np.int64)

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        """Return the latent arrays by name (what ``world.npz`` stores)."""
        return {name: getattr(self, name) for name in ARRAY_DTYPES}


def build_world(config: WorldConfig, rng: np.random.Generator) -> World:
    """Draw users and items for ``config``; the same generator state gives the same world."""
    pop = config.population
    n_cat = len(CATEGORIES)
    centroids = unit_rows(rng.standard_normal((n_cat, pop.n_factors)))
    # Uneven category sizes: some genres are much bigger than others.
    category_share = rng.dirichlet(np.full(n_cat, 2.0))

    published = _publication_times(config, rng)
    category, topic, quality, duration_s = draw_item_traits(
        config, centroids, category_share, config.items, rng
    )

    n_users = config.users
    favourite = rng.choice(n_cat, size=(n_users, 2), p=category_share)
    second_weight = rng.random(n_users)[:, None]
    taste_noise = rng.standard_normal((n_users, pop.n_factors)) * (
        pop.taste_noise / np.sqrt(pop.n_factors)
    )
    taste = unit_rows(
        centroids[favourite[:, 0]] + second_weight * centroids[favourite[:, 1]] + taste_noise
    )
    # Log-normal activity with the requested mean: mu = log(mean) - sigma^2 / 2.
    mu = np.log(pop.activity_mean) - pop.activity_sigma**2 / 2
    activity = rng.lognormal(mu, pop.activity_sigma, size=n_users)
    mode = rng.choice(len(pop.peak_hours), size=n_users, p=pop.peak_weights)
    peak_hour = np.mod(np.asarray(pop.peak_hours)[mode] + rng.standard_normal(n_users), 24.0)
    lo, hi = pop.hour_spread
    hour_spread = rng.uniform(lo, hi, size=n_users)
    device = rng.choice(len(DEVICES), size=n_users, p=pop.device_shares).astype(np.int64)

    return World(
        config=config,
        category_centroid=centroids,
        user_taste=taste,
        user_activity=activity,
        user_peak_hour=peak_hour,
        user_hour_spread=hour_spread,
        user_device=device,
        item_topic=topic,
        item_quality=quality,
        item_published_ts=published,
        item_duration_s=duration_s,
        item_category=category,
    )


def draw_item_traits(
    config: WorldConfig,
    centroids: FloatArray,
    category_share: FloatArray,
    n_items: int,
    rng: np.random.Generator,
) -> tuple[IntArray, FloatArray, FloatArray, IntArray]:
    """Draw ``n_items`` items' category, topic, quality and duration (s), in that order.

    Uploads of a continued world (``recsim simulate --continue``) are drawn
    the same way as the world's first items.
    """
    pop = config.population
    category = rng.choice(len(category_share), size=n_items, p=category_share).astype(np.int64)
    topic_noise = rng.standard_normal((n_items, pop.n_factors)) * (
        pop.topic_noise / np.sqrt(pop.n_factors)
    )
    topic = unit_rows(centroids[category] + topic_noise)
    quality = rng.standard_normal(n_items)
    duration = rng.lognormal(np.log(pop.duration_median_s), pop.duration_sigma, size=n_items)
    duration_s = np.clip(np.rint(duration), pop.duration_min_s, pop.duration_max_s).astype(np.int64)
    return category, topic, quality, duration_s


def back_catalogue_size(config: WorldConfig) -> int:
    """Items published before the window: the constant-rate share, but at least one pool."""
    days, back_days = config.days, config.population.catalogue_days
    share = round(config.items * back_days / (back_days + days))
    return min(config.items, max(config.pool_size, share))


def _publication_times(config: WorldConfig, rng: np.random.Generator) -> IntArray:
    """Draw sorted publication times: a back catalogue, then uploads on every day of the window.

    Back-catalogue items are strictly before the start, so the first day's pool
    can always be filled. New uploads go round-robin to the days of the window,
    so every day gets some when there are at least as many as days.
    """
    start = dt.datetime.combine(config.start, dt.time(), tzinfo=dt.UTC)
    start_ts = int(start.timestamp())
    n_back = back_catalogue_size(config)
    n_new = config.items - n_back
    back = start_ts - rng.integers(1, config.population.catalogue_days * DAY_S + 1, size=n_back)
    day = np.arange(n_new, dtype=np.int64) % config.days
    new = start_ts + day * DAY_S + rng.integers(0, DAY_S, size=n_new)
    return np.sort(np.concatenate([back, new]).astype(np.int64), kind="stable")


def unit_rows(x: FloatArray) -> FloatArray:
    """Scale each row to unit length, summing columns in a fixed order (bit-reproducible)."""
    norm = np.sqrt(row_dot(x, x))
    return x / np.where(norm > 0, norm, 1.0)[:, None]


def row_dot(a: FloatArray, b: FloatArray) -> FloatArray:
    """Dot products of matching rows of two arrays of shape (..., k), summed column by column.

    Summing over the last axis one column at a time keeps memory at the size of
    one output and fixes the order of additions, unlike BLAS.
    """
    out = a[..., 0] * b[..., 0]
    for j in range(1, a.shape[-1]):
        out = out + a[..., j] * b[..., j]
    return np.asarray(out, dtype=np.float64)
