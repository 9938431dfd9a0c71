"""The logging policy: pools, slates, and the exact propensity formula against frequencies."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from recsim_cli.simulate import LoggingPolicy, World, WorldConfig, build_world, logging_propensity
from recsim_cli.simulate.pool import draw_pools

CONFIG = WorldConfig(users=50, items=400, days=3, slate_size=5, pool_size=40, epsilon=0.3)


@pytest.fixture(scope="module")
def world() -> World:
    return build_world(CONFIG, np.random.default_rng(3))


def _requests(n: int, user: int, day: int, slate: int) -> tuple[np.ndarray, ...]:
    return np.full(n, user), np.full(n, day), np.full(n, slate)


def test_pools_hold_distinct_items_published_before_midnight(world: World) -> None:
    users = np.repeat(np.arange(50), 3)
    days = np.tile(np.arange(3), 50)
    pools = draw_pools(world, users, days, np.random.default_rng(0))
    assert pools.shape == (150, 40)
    assert (np.diff(pools, axis=1) > 0).all()  # sorted and distinct
    published = world.item_published_ts[pools]
    assert (published < world.day_start_ts()[days][:, None]).all()


def test_pools_fill_even_when_the_catalogue_barely_covers_them() -> None:
    config = WorldConfig(users=20, items=40, days=2, slate_size=5, pool_size=40)
    world = build_world(config, np.random.default_rng(0))
    users, days = np.repeat(np.arange(20), 2), np.tile(np.arange(2), 20)
    pools = draw_pools(world, users, days, np.random.default_rng(1))
    np.testing.assert_array_equal(pools, np.tile(np.arange(40), (40, 1)))


@pytest.mark.parametrize("slate", [0, 3])
def test_propensity_matches_empirical_frequencies(world: World, slate: int) -> None:
    """Show many slates to one user-day: each (item, position) count is Binomial(N, pi_b)."""
    policy = LoggingPolicy.build(world, np.array([7]), np.array([1]), np.random.default_rng(0))
    n = 40_000
    shown = policy.slates(*_requests(n, 7, 1, slate), np.random.default_rng(1))
    pool = policy.ranking[0]
    size, c, eps = CONFIG.slate_size, CONFIG.pool_size, CONFIG.epsilon
    counts = np.zeros((c, size))
    rank_of = {int(item): r for r, item in enumerate(pool)}
    ranks = np.vectorize(rank_of.__getitem__)(shown.items)
    np.add.at(counts, (ranks, np.broadcast_to(np.arange(size), ranks.shape)), 1)
    # pi_b(rank r, position p) = (1 - eps) * 1[r == slate * S + p] + eps / C
    expected = np.full((c, size), eps / c)
    expected[slate * size + np.arange(size), np.arange(size)] += 1 - eps
    np.testing.assert_allclose(expected.sum(axis=0), 1.0)
    z = (counts - n * expected) / np.sqrt(n * expected * (1 - expected))
    assert np.abs(z).max() < 5
    for p in range(size):  # each position is one multinomial draw over the pool
        assert stats.chisquare(counts[:, p], n * expected[:, p]).pvalue > 1e-4
    # and the logged propensity is the formula, for every impression
    np.testing.assert_allclose(shown.propensity, expected[ranks, np.arange(size)])
    assert abs(shown.explore.mean() - eps) < 5 * np.sqrt(eps * (1 - eps) / n)


def test_exploit_slates_follow_the_production_ranking(world: World) -> None:
    policy = LoggingPolicy.build(world, np.array([2]), np.array([0]), np.random.default_rng(0))
    shown = policy.slates(*_requests(200, 2, 0, 2), np.random.default_rng(4))
    exploit = ~shown.explore
    assert 0 < exploit.sum() < 200
    production = np.broadcast_to(policy.ranking[0, 10:15], (int(exploit.sum()), 5))
    np.testing.assert_array_equal(shown.items[exploit], production)
    np.testing.assert_allclose(shown.propensity[exploit], 0.7 + 0.3 / 40)


def test_production_ranking_prefers_quality(world: World) -> None:
    users, days = np.arange(50), np.zeros(50, dtype=np.int64)
    policy = LoggingPolicy.build(world, users, days, np.random.default_rng(0))
    quality = world.item_quality[policy.ranking]
    top, bottom = quality[:, :10].mean(), quality[:, -10:].mean()
    assert top > bottom + 1.0


@settings(max_examples=60, deadline=None)
@given(
    pool_size=st.integers(1, 60),
    slate_size=st.integers(1, 12),
    epsilon=st.floats(0.001, 1.0),
    data=st.data(),
)
def test_propensities_are_a_distribution_over_the_pool_at_each_position(
    pool_size: int, slate_size: int, epsilon: float, data: st.DataObject
) -> None:
    """Sum over pool items of pi_b(i, p) is 1 for every position; each pi_b is in (0, 1]."""
    slate_size = min(slate_size, pool_size)
    slate = data.draw(st.integers(0, pool_size // slate_size - 1))
    rank = np.arange(pool_size)[:, None]
    position = np.arange(slate_size)[None, :]
    pi = logging_propensity(epsilon, pool_size, rank == slate * slate_size + position)
    assert ((pi > 0) & (pi <= 1)).all()
    np.testing.assert_allclose(pi.sum(axis=0), 1.0)
    # per item: (1 - eps) if production puts it on this slate, plus eps * S / C
    in_slate = (rank[:, 0] >= slate * slate_size) & (rank[:, 0] < (slate + 1) * slate_size)
    np.testing.assert_allclose(
        pi.sum(axis=1), (1 - epsilon) * in_slate + epsilon * slate_size / pool_size
    )


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    slate_size=st.integers(1, 6),
    extra=st.integers(0, 20),
    epsilon=st.floats(0.01, 1.0),
)
def test_slates_are_distinct_pool_items_with_the_formula_propensity(
    seed: int, slate_size: int, extra: int, epsilon: float
) -> None:
    pool_size = slate_size + extra
    config = WorldConfig(
        users=8, items=60, days=2, slate_size=slate_size, pool_size=pool_size, epsilon=epsilon
    )
    world = build_world(config, np.random.default_rng(seed))
    users, days = np.repeat(np.arange(8), 2), np.tile(np.arange(2), 8)
    policy = LoggingPolicy.build(world, users, days, np.random.default_rng(seed + 1))
    index = np.random.default_rng(seed).integers(0, config.max_slates, size=len(users))
    shown = policy.slates(users, days, index, np.random.default_rng(seed + 2))
    assert shown.items.shape == shown.propensity.shape == (16, slate_size)
    assert all(len(set(row)) == slate_size for row in shown.items.tolist())
    pools = policy.ranking[policy.rows(users, days)]
    assert all(set(s) <= set(p) for s, p in zip(shown.items.tolist(), pools.tolist(), strict=True))
    recomputed = policy.propensity(
        np.repeat(users, slate_size),
        np.repeat(days, slate_size),
        np.repeat(index, slate_size),
        np.tile(np.arange(slate_size), len(users)),
        shown.items.ravel(),
    )
    np.testing.assert_array_equal(recomputed, shown.propensity.ravel())
    assert ((shown.propensity > 0) & (shown.propensity <= 1)).all()


def test_propensity_of_an_item_outside_the_pool_is_zero(world: World) -> None:
    policy = LoggingPolicy.build(world, np.array([0]), np.array([0]), np.random.default_rng(0))
    outside = np.setdiff1d(np.arange(CONFIG.items), policy.ranking[0])[:1]
    got = policy.propensity(np.array([0]), np.array([0]), np.array([0]), np.array([0]), outside)
    assert got.tolist() == [0.0]
