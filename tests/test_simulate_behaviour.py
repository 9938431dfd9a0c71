"""The behaviour model: known answers on a hand-made world, and its probabilities' invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsim_cli.simulate import (
    World,
    WorldConfig,
    affinity,
    attraction_probability,
    build_world,
    click_probability,
    continue_probability,
    examination_probability,
    freshness,
    watch_fraction,
    watch_fraction_mean,
)
from recsim_cli.simulate.config import CATEGORIES, PopulationParams

START_TS = 1_767_571_200  # 2026-01-05T00:00:00Z


def hand_world() -> World:
    """Two users, two items, two factors: every number is chosen by hand."""
    config = WorldConfig(
        users=2,
        items=2,
        days=1,
        slate_size=1,
        pool_size=1,
        population=PopulationParams(n_factors=2),
    )
    centroids = np.zeros((len(CATEGORIES), 2))
    centroids[:, 0] = 1.0
    return World(
        config=config,
        category_centroid=centroids,
        user_taste=np.array([[1.0, 0.0], [0.0, 1.0]]),
        user_activity=np.array([1.0, 1.0]),
        user_peak_hour=np.array([20.0, 8.0]),
        user_hour_spread=np.array([2.0, 2.0]),
        user_device=np.array([0, 2]),
        item_topic=np.array([[1.0, 0.0], [0.6, 0.8]]),
        item_quality=np.array([0.5, -1.0]),
        item_published_ts=np.array([START_TS - 86_400, START_TS - 10 * 86_400]),
        item_duration_s=np.array([480, 1800]),
        item_category=np.array([0, 1]),
    )


def test_examination_is_the_position_bias_curve() -> None:
    world = hand_world()
    eta = world.config.behaviour.position_bias
    np.testing.assert_allclose(
        examination_probability(world, np.arange(4)), [1.0, 2**-eta, 3**-eta, 4**-eta]
    )


def test_attraction_matches_the_documented_formula() -> None:
    world = hand_world()
    b = world.config.behaviour
    ts = START_TS + 21 * 3600  # 21:00 UTC, the peak of the daily cycle
    got = attraction_probability(world, np.array([1]), np.array([1]), ts=ts, device=np.array([2]))
    z = (math.log(1800) - math.log(480)) / 1.0
    logit = (
        b.click_intercept
        + b.click_affinity * 0.8
        + b.click_quality * -1.0
        + b.click_freshness * math.exp(-(10 + 21 / 24) / b.freshness_days)
        + b.click_device[2]
        + b.click_device_duration[2] * z
        + b.click_hour * 1.0
    )
    np.testing.assert_allclose(got, [1 / (1 + math.exp(-logit))])


def test_click_is_examination_times_attraction() -> None:
    world = hand_world()
    users, items = np.array([[0], [1]]), np.array([[0, 1], [1, 0]])
    ts, device = START_TS + 3600, np.array([[0], [1]])
    click = click_probability(world, users, items, np.array([0, 3]), ts=ts, device=device)
    expected = examination_probability(world, np.array([0, 3])) * attraction_probability(
        world, users, items, ts=ts, device=device
    )
    np.testing.assert_allclose(click, expected)
    assert click.shape == (2, 2)


def test_affinity_and_freshness_known_values() -> None:
    world = hand_world()
    np.testing.assert_allclose(
        affinity(world, np.array([0, 1, 1]), np.array([0, 0, 1])), [1, 0, 0.8]
    )
    days = world.config.behaviour.freshness_days
    published = world.item_published_ts[0]
    fresh = freshness(world, np.array([0, 0]), np.array([published, published + days * 86_400]))
    np.testing.assert_allclose(fresh, [1.0, math.exp(-1)])


def test_each_signal_raises_attraction() -> None:
    world = hand_world()
    ts = START_TS + 12 * 3600
    base = attraction_probability(world, np.array([0]), np.array([1]), ts=ts, device=np.array([0]))
    better_taste = attraction_probability(
        world, np.array([1]), np.array([1]), ts=ts, device=np.array([0])
    )
    assert better_taste > base  # user 1's taste is closer to item 1's topic
    fresher = attraction_probability(
        world, np.array([0]), np.array([1]), ts=ts - 5 * 86_400, device=np.array([0])
    )
    assert fresher > base


def test_watch_fraction_draws_have_the_beta_mean() -> None:
    world = hand_world()
    n = 200_000
    u = np.random.default_rng(0).random(n)
    users, items, device = np.zeros(n, dtype=int), np.zeros(n, dtype=int), np.zeros(n, dtype=int)
    fraction = watch_fraction(world, users, items, device=device, u=u)
    mean = watch_fraction_mean(world, users[:1], items[:1], device=device[:1])[0]
    assert abs(fraction.mean() - mean) < 5 * fraction.std() / math.sqrt(n)
    assert ((fraction >= 1e-3) & (fraction <= 1)).all()
    order = np.argsort(u)
    assert (np.diff(fraction[order]) >= 0).all()  # a quantile function: monotone in u


def test_continuation_rises_with_watch_fraction() -> None:
    world = hand_world()
    p = continue_probability(world, np.linspace(0, 1, 11))
    assert (np.diff(p) > 0).all()
    assert ((p > 0) & (p < 1)).all()


@pytest.fixture(scope="module")
def world() -> World:
    return build_world(WorldConfig(users=40, items=200, days=2), np.random.default_rng(0))


@settings(max_examples=50, deadline=None)
@given(
    users=st.lists(st.integers(0, 39), min_size=1, max_size=20),
    data=st.data(),
)
def test_click_probabilities_are_probabilities_below_examination(
    world: World, users: list[int], data: st.DataObject
) -> None:
    n = len(users)
    items = np.array(data.draw(st.lists(st.integers(0, 199), min_size=n, max_size=n)))
    positions = np.array(data.draw(st.lists(st.integers(0, 50), min_size=n, max_size=n)))
    offsets = data.draw(st.lists(st.integers(-(10**7), 10**7), min_size=n, max_size=n))
    ts = START_TS + np.array(offsets)
    device = np.array(data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)))
    click = click_probability(world, np.array(users), items, positions, ts=ts, device=device)
    examine = examination_probability(world, positions)
    assert ((click >= 0) & (click <= examine) & (examine <= 1)).all()
