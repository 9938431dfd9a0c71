"""The policy seam, and the stochastic logging policy with exact propensities.

A ``SlatePolicy`` is anything that, given arrays of (user, day, slate index
within the session), returns the slates to show: an (n, S) matrix of item
indices, the matching (n, S) matrix of the probabilities with which the policy
puts each item at each position, and an (n,) flag of slates drawn at random.
The session simulation takes any such policy; ``LoggingPolicy`` is the one that
writes the logs.

``LoggingPolicy``: every user-day has a pool of C items in a production order
(popularity: quality, a freshness boost, and noise drawn once per day). Slate
k of a session is, with probability epsilon, a uniformly random ordering of S
items drawn without replacement from the pool (explore), otherwise production
ranks kS .. kS+S-1.
Given the user-day's pool, item i lands at position p of slate k with
probability

    pi_b(i, p | k) = (1 - epsilon) * 1[production rank of i == kS + p] + epsilon / C,

because a uniform ordered sample of S of C items puts each item at each
position with probability 1/C. Derivation and tests: docs/simulator.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from recsim_cli.errors import InternalError
from recsim_cli.simulate.behaviour import freshness
from recsim_cli.simulate.pool import draw_pools
from recsim_cli.simulate.world import FloatArray, IntArray, World

BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class Slates:
    """Slates a policy chose: items (n, S), propensities (n, S), explore flags (n,)."""

    items: IntArray
    propensity: FloatArray
    explore: BoolArray


class SlatePolicy(Protocol):
    """Chooses slates for sessions; what the session simulation is run with."""

    @property
    def slate_size(self) -> int:
        """Items per slate (S)."""
        ...

    @property
    def max_slates(self) -> int:
        """Slates a session can get at most; the session ends after the last."""
        ...

    def slates(
        self,
        users: IntArray,
        days: IntArray,
        slate_index: IntArray,
        rng: np.random.Generator,
    ) -> Slates:
        """Return the slates for n requests (user, day index, 0-based slate within session)."""
        ...


def logging_propensity(epsilon: float, pool_size: int, at_production_slot: BoolArray) -> FloatArray:
    """Return pi_b = (1 - epsilon) * 1[production slot] + epsilon / C for each shown item."""
    hit = (1.0 - epsilon) + epsilon / pool_size
    miss = epsilon / pool_size
    return np.where(at_production_slot, hit, miss)


def production_noise(world: World, rng: np.random.Generator) -> FloatArray:
    """Draw the daily noise of the production score, shape (days, items), sd production_noise."""
    config = world.config
    return rng.standard_normal((config.days, config.items)) * config.logging.production_noise


def production_scores(
    world: World, noise: FloatArray, freshness_weight: float | None = None
) -> FloatArray:
    """Return the production popularity score of every item on every day, shape (days, items).

    score = quality + w_fresh * freshness at the day's midnight + noise, the
    noise drawn once per day and item (``production_noise``), shared by every
    user that day. w_fresh is ``freshness_weight``, by default the config's
    ``production_freshness``.
    """
    config = world.config
    if freshness_weight is None:
        freshness_weight = config.logging.production_freshness
    midnight = world.day_start_ts()[:, None]
    fresh = freshness(world, np.arange(config.items)[None, :], midnight)
    return world.item_quality[None, :] + freshness_weight * fresh + noise


def user_day_keys(world: World, users: IntArray, days: IntArray) -> IntArray:
    """Return the sorted distinct keys ``user * days + day`` of the (user, day) pairs given."""
    return np.unique(np.asarray(users, dtype=np.int64) * world.config.days + days)


@dataclass(frozen=True, eq=False)
class LoggingPolicy:
    """The epsilon-greedy logging policy over per-user-day pools in production order.

    ``ranking[r]`` is the pool of the user-day with key ``keys[r]``
    (user * days + day), best production rank first.
    """

    keys: IntArray  # (rows,) sorted
    ranking: IntArray  # (rows, C)
    epsilon: float
    slate_size: int
    n_days: int

    @classmethod
    def build(
        cls,
        world: World,
        users: IntArray,
        days: IntArray,
        rng: np.random.Generator,
        *,
        epsilon: float | None = None,
        freshness_weight: float | None = None,
        noise: FloatArray | None = None,
    ) -> LoggingPolicy:
        """Draw the pool and production ranking of every distinct (user, day) given.

        ``epsilon`` and the production score's ``freshness_weight`` default to
        the config's ``epsilon`` and ``production_freshness``; the score's daily
        ``noise`` is drawn from ``rng`` first unless given (arms of one world
        share it, as policies of one site share its popularity signal).
        """
        config = world.config
        keys = user_day_keys(world, users, days)
        pool_users, pool_days = keys // config.days, keys % config.days
        if noise is None:
            noise = production_noise(world, rng)
        # Rank every item once per day; a pool in production order is then its
        # items' daily ranks sorted (integers, cheaper than sorting scores per row).
        scores = production_scores(world, noise, freshness_weight)
        best_first = np.argsort(-scores, axis=1, kind="stable")
        daily_rank = np.empty_like(best_first)
        np.put_along_axis(daily_rank, best_first, np.arange(config.items)[None, :], axis=1)
        pools = draw_pools(world, pool_users, pool_days, rng)
        ranks = np.sort(daily_rank[pool_days[:, None], pools], axis=1)
        return cls(
            keys=keys,
            ranking=best_first[pool_days[:, None], ranks],
            epsilon=config.epsilon if epsilon is None else epsilon,
            slate_size=config.slate_size,
            n_days=config.days,
        )

    @property
    def pool_size(self) -> int:
        """Items per pool (C)."""
        return int(self.ranking.shape[1])

    @property
    def max_slates(self) -> int:
        """floor(C / S): after that many slates the production ranking is used up."""
        return self.pool_size // self.slate_size

    def rows(self, users: IntArray, days: IntArray) -> IntArray:
        """Return the pool row of each (user, day); every pair must have been built."""
        key = np.asarray(users, dtype=np.int64) * self.n_days + days
        row = np.searchsorted(self.keys, key)
        if (row >= len(self.keys)).any() or not np.array_equal(self.keys[row], key):
            raise InternalError("a slate was requested for a user-day that has no pool.")
        return row

    def slates(
        self,
        users: IntArray,
        days: IntArray,
        slate_index: IntArray,
        rng: np.random.Generator,
    ) -> Slates:
        """Return slate ``slate_index`` of each request, exploring with probability epsilon."""
        rows = self.rows(users, days)
        n, size, pool = len(rows), self.slate_size, self.pool_size
        production = np.asarray(slate_index, dtype=np.int64)[:, None] * size + np.arange(size)
        if production.size and production.max() >= pool:
            raise InternalError("a slate index is past the end of the production ranking.")
        explore = rng.random(n) < self.epsilon
        rank = production.copy()
        n_explore = int(explore.sum())
        if n_explore:
            # The S smallest of C iid uniform keys, in key order: a uniformly random
            # ordered sample without replacement.
            keys = rng.random((n_explore, pool))
            picked = np.argpartition(keys, size - 1, axis=1)[:, :size]
            order = np.argsort(np.take_along_axis(keys, picked, axis=1), axis=1)
            rank[explore] = np.take_along_axis(picked, order, axis=1)
        items = self.ranking[rows[:, None], rank]
        propensity = logging_propensity(self.epsilon, pool, rank == production)
        return Slates(items=items, propensity=propensity, explore=explore)

    def propensity(
        self,
        users: IntArray,
        days: IntArray,
        slate_index: IntArray,
        positions: IntArray,
        items: IntArray,
    ) -> FloatArray:
        """Return pi_b of ``items`` at ``positions`` of the given slates (0 if not in the pool)."""
        ranking = self.ranking[self.rows(users, days)]
        match = ranking == np.asarray(items)[:, None]
        in_pool = match.any(axis=1)
        rank = np.argmax(match, axis=1)
        at_slot = rank == np.asarray(slate_index) * self.slate_size + np.asarray(positions)
        return np.where(in_pool, logging_propensity(self.epsilon, self.pool_size, at_slot), 0.0)
