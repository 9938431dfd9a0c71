"""Named logging policies, and the split that serves each user with their arm's policy.

Every named policy is a ``LoggingPolicy``: a pool of C items per user-day in a
ranking of its own, and epsilon-greedy slates over it. They differ only in the
ranking and in epsilon, so each logs the exact propensity

    pi_b(i, p | k) = (1 - epsilon) * 1[rank of i == kS + p] + epsilon / C

(``policy.logging_propensity``). The registry (docs/simulator.md, "Live
policies and A/B tests"):

* ``prod``: the production ranking (popularity: quality, freshness, daily
  noise), epsilon = the config's ``epsilon``: the single-policy logs' policy.
* ``explore``: epsilon = 1, every slate a uniformly random ordered sample of
  the pool; every propensity is 1 / C.
* ``fresh``: the production ranking with freshness weight ``FRESH_WEIGHT``
  instead of ``production_freshness``.
* ``personal``: the pool ranked by the user's true click appeal,
  ``click_affinity * affinity + click_quality * quality`` (an oracle's ranking).

``SplitPolicy`` assigns users to arms and dispatches each request to the
policy of the user's arm; it satisfies ``SlatePolicy``, so
``simulate_sessions`` runs it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from recsim_cli.errors import ConfigError, UnknownNameError
from recsim_cli.simulate.behaviour import affinity
from recsim_cli.simulate.policy import LoggingPolicy, Slates, production_noise, user_day_keys
from recsim_cli.simulate.pool import draw_pools
from recsim_cli.simulate.world import FloatArray, IntArray, World

FRESH_WEIGHT = 4.0  # the `fresh` policy's freshness weight (production uses 1.0)

# (world, users, days, rng, the day's production noise shared by all arms) -> policy
PolicyBuilder = Callable[
    [World, IntArray, IntArray, np.random.Generator, FloatArray], LoggingPolicy
]


@dataclass(frozen=True)
class NamedPolicy:
    """A logging policy a user can name in ``--policies``."""

    name: str
    summary: str
    build: PolicyBuilder  # the policy for the user-days of the users given


def _prod(
    world: World, users: IntArray, days: IntArray, rng: np.random.Generator, noise: FloatArray
) -> LoggingPolicy:
    return LoggingPolicy.build(world, users, days, rng, noise=noise)


def _explore(
    world: World, users: IntArray, days: IntArray, rng: np.random.Generator, noise: FloatArray
) -> LoggingPolicy:
    return LoggingPolicy.build(world, users, days, rng, epsilon=1.0, noise=noise)


def _fresh(
    world: World, users: IntArray, days: IntArray, rng: np.random.Generator, noise: FloatArray
) -> LoggingPolicy:
    return LoggingPolicy.build(world, users, days, rng, freshness_weight=FRESH_WEIGHT, noise=noise)


def personal_scores(world: World, users: IntArray, items: IntArray) -> FloatArray:
    """Return the ``personal`` ranking score: click_affinity * affinity + click_quality * quality.

    ``users`` of shape (n, 1) against ``items`` of shape (n, C) scores whole pools.
    """
    b = world.config.behaviour
    return np.asarray(
        b.click_affinity * affinity(world, users, items)
        + b.click_quality * world.item_quality[items]
    )


def _personal(
    world: World, users: IntArray, days: IntArray, rng: np.random.Generator, noise: FloatArray
) -> LoggingPolicy:
    config = world.config
    keys = user_day_keys(world, users, days)
    pool_users, pool_days = keys // config.days, keys % config.days
    pools = draw_pools(world, pool_users, pool_days, rng)
    order = np.argsort(-personal_scores(world, pool_users[:, None], pools), axis=1, kind="stable")
    return LoggingPolicy(
        keys=keys,
        ranking=np.take_along_axis(pools, order, axis=1),
        epsilon=config.epsilon,
        slate_size=config.slate_size,
        n_days=config.days,
    )


POLICIES: dict[str, NamedPolicy] = {
    p.name: p
    for p in (
        NamedPolicy("prod", "production popularity ranking, epsilon-greedy", _prod),
        NamedPolicy("explore", "uniformly random slates from the pool (epsilon = 1)", _explore),
        NamedPolicy("fresh", f"production ranking with freshness weight {FRESH_WEIGHT:g}", _fresh),
        NamedPolicy("personal", "the pool ranked by the user's true appeal (an oracle)", _personal),
    )
}


def get_policy(name: str) -> NamedPolicy:
    """Return the named logging policy, or raise ``Unknown logging policy 'x'. Available: ...``."""
    try:
        return POLICIES[name]
    except KeyError:
        raise UnknownNameError("logging policy", name, list(POLICIES)) from None


def assign_arms(n_users: int, shares: Sequence[float], rng: np.random.Generator) -> IntArray:
    """Assign each of ``n_users`` users independently to arm a with probability ``shares[a]``."""
    return rng.choice(len(shares), size=n_users, p=np.asarray(shares, dtype=np.float64)).astype(
        np.int64
    )


@dataclass(frozen=True, eq=False)
class SplitPolicy:
    """Serve every request with the policy of the user's arm (a ``SlatePolicy``)."""

    labels: tuple[str, ...]
    policies: tuple[LoggingPolicy, ...]
    user_arm: IntArray  # (users,) index into labels and policies

    def __post_init__(self) -> None:
        shapes = {(p.slate_size, p.max_slates) for p in self.policies}
        if len(shapes) != 1 or len(self.labels) != len(self.policies):
            raise ConfigError("the arms' policies must share the slate size and pool size.")

    @classmethod
    def build(
        cls,
        world: World,
        users: IntArray,
        days: IntArray,
        *,
        assignment: np.random.Generator,
        pools: np.random.Generator,
    ) -> SplitPolicy:
        """Assign every user of the world to one of its config's arms; build each arm's policy.

        The production score's daily noise is drawn once from ``pools`` (the
        same draw as a world without arms) and shared by every arm: it is the
        site's popularity signal, not a property of a policy, so two arms of
        one policy are a true A/A test. Each arm's pools are then drawn for its
        own users from its own generator spawned from ``pools``, so they do not
        depend on how many user-days the other arms have.
        """
        arms = world.config.arms
        if not arms:
            raise ConfigError("a split policy needs the config's arms; this world has none.")
        user_arm = assign_arms(world.config.users, [a.share for a in arms], assignment)
        noise = production_noise(world, pools)
        streams = pools.spawn(len(arms))
        arm_of_request = user_arm[users]
        policies = tuple(
            get_policy(arm.policy).build(
                world, users[arm_of_request == a], days[arm_of_request == a], streams[a], noise
            )
            for a, arm in enumerate(arms)
        )
        return cls(tuple(a.label for a in arms), policies, user_arm)

    @property
    def slate_size(self) -> int:
        """Items per slate (S), the same in every arm."""
        return self.policies[0].slate_size

    @property
    def max_slates(self) -> int:
        """Slates a session can get at most, the same in every arm."""
        return self.policies[0].max_slates

    def slates(
        self,
        users: IntArray,
        days: IntArray,
        slate_index: IntArray,
        rng: np.random.Generator,
    ) -> Slates:
        """Return each request's slate from the policy of its user's arm (one call per arm).

        Each arm draws from its own generator spawned from ``rng``, so an arm's
        slates never depend on how many numbers the other arms drew: with the
        same seed, the ``prod`` arm of prod/explore and of prod/personal logs
        the same sessions.
        """
        n, size = len(users), self.slate_size
        items = np.empty((n, size), dtype=np.int64)
        propensity = np.empty((n, size), dtype=np.float64)
        explore = np.empty(n, dtype=np.bool_)
        arm = self.user_arm[users]
        streams = rng.spawn(len(self.policies))
        for a, policy in enumerate(self.policies):
            rows = np.flatnonzero(arm == a)
            if rows.size:
                part = policy.slates(users[rows], days[rows], slate_index[rows], streams[a])
                items[rows], propensity[rows], explore[rows] = (
                    part.items,
                    part.propensity,
                    part.explore,
                )
        return Slates(items=items, propensity=propensity, explore=explore)
