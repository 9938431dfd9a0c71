"""Sessions: the structure of simulated logs, determinism, and the policy seam."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsim_cli.simulate import (
    BehaviourParams,
    PopulationParams,
    Sessions,
    SimulatedLogs,
    Slates,
    World,
    WorldConfig,
    build_world,
    draw_sessions,
    run_simulation,
    simulate_logs,
    simulate_sessions,
)
from recsim_cli.simulate.world import DAY_S

CONFIG = WorldConfig(users=400, items=600, days=4, seed=21)


@pytest.fixture(scope="module")
def logs() -> SimulatedLogs:
    return simulate_logs(CONFIG)


def frame(logs: SimulatedLogs) -> pl.DataFrame:
    imp, ses = logs.impressions, logs.sessions
    return pl.DataFrame(
        {
            "session": imp.session,
            "slate": imp.slate,
            "position": imp.position,
            "item": imp.item,
            "ts": imp.ts,
            "clicked": imp.clicked,
            "watch": imp.watch_time_s,
            "duration": logs.world.item_duration_s[imp.item],
            "day": ses.day[imp.session],
        }
    )


def check_structure(logs: SimulatedLogs) -> None:
    """Assert every structural invariant of a simulated log."""
    config, imp = logs.world.config, logs.impressions
    events = frame(logs)
    size = config.slate_size
    slates = events.group_by("session", "slate", maintain_order=True).agg(
        pl.col("position"), pl.col("clicked").sum().alias("clicks"), pl.col("ts").first()
    )
    # Each slate has positions 0..S-1 in order and one timestamp.
    assert all(p == list(range(size)) for p in slates["position"].to_list())
    per_slate_ts = events.group_by("session", "slate").agg(pl.col("ts").n_unique())
    assert (per_slate_ts["ts"] == 1).all()
    sessions = (
        slates.sort("session", "slate")
        .group_by("session")
        .agg(pl.col("slate"), pl.col("clicks"), pl.col("ts"))
    )
    for slate, clicks, ts in sessions.select("slate", "clicks", "ts").iter_rows():
        assert slate == list(range(len(slate)))  # contiguous from 0
        assert all(c > 0 for c in clicks[:-1])  # a later slate only after a click
        assert all(b > a for a, b in itertools.pairwise(ts))  # slates move forward in time
        assert len(slate) <= config.max_slates
    # Every session shows at least its first slate, at its start time.
    first = slates.filter(pl.col("slate") == 0).sort("session")
    assert first["session"].to_list() == list(range(len(logs.sessions)))
    np.testing.assert_array_equal(first["ts"].to_numpy(), logs.sessions.start_ts)
    # Watch time is 0 iff not clicked, and never longer than the video.
    assert ((imp.watch_time_s > 0) == imp.clicked).all()
    assert (imp.watch_time_s <= logs.world.item_duration_s[imp.item]).all()
    # Rows are sorted by (ts, session, slate, position).
    key = events.select("ts", "session", "slate", "position")
    assert key.equals(key.sort("ts", "session", "slate", "position"))
    # Items were published before midnight of the session's day.
    midnight = logs.world.day_start_ts()[events["day"].to_numpy()]
    assert (logs.world.item_published_ts[imp.item] < midnight).all()
    # Depth is the number of videos watched.
    summary = logs.summary()
    assert summary.mean_session_depth == round(imp.clicked.sum() / len(logs.sessions), 6)
    assert ((imp.propensity > 0) & (imp.propensity <= 1)).all()


def test_structure_of_default_logs(logs: SimulatedLogs) -> None:
    check_structure(logs)
    summary = logs.summary()
    assert 0.02 < summary.ctr < 0.15
    assert 1.0 < summary.mean_slates_per_session < CONFIG.max_slates


@settings(max_examples=8, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    slate_size=st.integers(1, 8),
    pool_extra=st.integers(0, 30),
    epsilon=st.sampled_from([0.05, 0.5, 1.0]),
)
def test_structure_holds_for_any_config(
    seed: int, slate_size: int, pool_extra: int, epsilon: float
) -> None:
    config = WorldConfig(
        users=60,
        items=150,
        days=2,
        slate_size=slate_size,
        pool_size=slate_size + pool_extra,
        epsilon=epsilon,
        seed=seed,
    )
    check_structure(simulate_logs(config))


def test_sessions_stop_when_the_pool_is_used_up() -> None:
    eager = BehaviourParams(click_intercept=8.0, continue_intercept=8.0, position_bias=0.0)
    config = WorldConfig(
        users=30, items=200, days=1, slate_size=10, pool_size=25, seed=1, behaviour=eager
    )
    logs = simulate_logs(config)
    check_structure(logs)
    slates_per_session = np.bincount(logs.impressions.session[logs.impressions.position == 0])
    assert slates_per_session.max() == 2 == config.max_slates
    assert (slates_per_session == 2).mean() > 0.9


def test_sessions_are_spaced_and_in_order_of_start() -> None:
    world = build_world(CONFIG, np.random.default_rng(0))
    sessions = draw_sessions(world, np.random.default_rng(1))
    assert (np.diff(sessions.start_ts) >= 0).all()
    assert ((sessions.start_ts - world.start_ts) // DAY_S >= sessions.day).all()
    spacing = CONFIG.population.session_spacing_s
    key = sessions.user * CONFIG.days + sessions.day
    order = np.lexsort((sessions.start_ts, key))
    same = key[order][1:] == key[order][:-1]
    assert (np.diff(sessions.start_ts[order])[same] >= spacing).all()


def test_a_world_without_sessions_writes_empty_logs(tmp_path: Path) -> None:
    quiet = PopulationParams(activity_mean=1e-9)
    summary = run_simulation(WorldConfig(users=3, items=100, days=1, population=quiet), tmp_path)
    assert (summary.impressions, summary.sessions, summary.ctr) == (0, 0, 0.0)
    events = pl.read_csv(tmp_path / "events.csv.gz")
    assert events.height == 0
    assert events.columns[0] == "user_id"


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_same_seed_same_bytes_different_seed_different(tmp_path: Path) -> None:
    config = WorldConfig(users=150, items=300, days=2, seed=5)
    first = run_simulation(config, tmp_path / "a")
    second = run_simulation(config, tmp_path / "b")
    run_simulation(replace(config, seed=6), tmp_path / "c")
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert sorted(a) == ["events.csv.gz", "items.csv.gz", "world.json", "world.npz"]
    assert a == b
    assert first == second
    assert all(a[name] != c[name] for name in a)


@dataclass(frozen=True)
class FixedSlate:
    """A policy that shows everyone the same items: the seam needs nothing more."""

    items: tuple[int, ...]
    max_slates: int = 3

    @property
    def slate_size(self) -> int:
        return len(self.items)

    def slates(
        self,
        users: np.ndarray,
        days: np.ndarray,
        slate_index: np.ndarray,
        rng: np.random.Generator,
    ) -> Slates:
        n = len(users)
        return Slates(
            items=np.tile(np.array(self.items), (n, 1)),
            propensity=np.ones((n, self.slate_size)),
            explore=np.zeros(n, dtype=bool),
        )


def _first_slates(world: World, sessions: Sessions, policy: FixedSlate) -> np.ndarray:
    imp = simulate_sessions(world, policy, sessions, np.random.default_rng(99))
    first = imp.slate == 0
    order = np.lexsort((imp.position[first], imp.session[first]))
    return imp.clicked[first][order].reshape(len(sessions), policy.slate_size)


def test_any_policy_runs_and_shares_random_numbers_across_arms() -> None:
    """Common random numbers: two arms that differ in one slot agree on the others."""
    world = build_world(CONFIG, np.random.default_rng(0))
    sessions = draw_sessions(world, np.random.default_rng(1))
    control = _first_slates(world, sessions, FixedSlate((500, 510, 520, 530)))
    treatment = _first_slates(world, sessions, FixedSlate((599, 510, 520, 530)))
    np.testing.assert_array_equal(control[:, 1:], treatment[:, 1:])
    assert (control[:, 0] != treatment[:, 0]).any()
