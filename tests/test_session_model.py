"""The session model: calibrated on a held-out day, position-aware, and a reproducible rollout.

One small simulated world (6 days) is fit on its first 5 days; the 6th day is
the "window" the model has not seen. The logging policy explores little
(epsilon 0.05), so its logged sessions are close to what its own ranked lists
produce, and a rollout of those lists can be compared with the logged sessions.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from recsim_cli.errors import DatasetError, ExitCode, InternalError
from recsim_cli.experiment.session_model import (
    SessionModel,
    fit_session_model,
)
from recsim_cli.simulate import LoggingPolicy, WorldConfig, events_frame, items_frame, simulate_logs
from recsim_cli.simulate.logs import id_series

FIT_DAYS = 5
SLATE, MAX_SLATES = 10, 10


@dataclass(frozen=True)
class Setup:
    config: WorldConfig
    item_quality: np.ndarray
    item_published_ts: np.ndarray
    policy: LoggingPolicy
    fit_events: pl.DataFrame
    window_events: pl.DataFrame
    items: pl.DataFrame
    model: SessionModel
    cutoff: dt.datetime


@pytest.fixture(scope="module")
def setup() -> Setup:
    config = WorldConfig(users=1500, items=600, days=FIT_DAYS + 1, seed=0, epsilon=0.05)
    logs = simulate_logs(config)
    assert isinstance(logs.policy, LoggingPolicy)
    events = events_frame(logs.world, logs.sessions, logs.impressions)
    items = items_frame(logs.world)
    cutoff = dt.datetime.combine(config.start, dt.time(), tzinfo=dt.UTC) + dt.timedelta(
        days=FIT_DAYS
    )
    fit_events = events.filter(pl.col("ts") < cutoff)
    model = fit_session_model(fit_events, items, seed=0)
    return Setup(
        config=config,
        item_quality=logs.world.item_quality,
        item_published_ts=logs.world.item_published_ts,
        policy=logs.policy,
        fit_events=fit_events,
        window_events=events.filter(pl.col("ts") >= cutoff),
        items=items,
        model=model,
        cutoff=cutoff,
    )


def window_sessions(s: Setup) -> pl.DataFrame:
    """The window's logged sessions with their logged outcomes (clicks, slates)."""
    return (
        s.window_events.group_by("session_id")
        .agg(
            pl.col("user_id").first(),
            pl.col("ts").min(),
            pl.col("device").first(),
            pl.col("clicked").sum().alias("logged_clicks"),
            (pl.col("slate").max() + 1).alias("logged_slates"),
        )
        .sort("session_id")
        .with_columns(pl.col("ts").dt.date().alias("day"))
    )


def policy_lists(s: Setup, ranking: np.ndarray | None = None) -> pl.DataFrame:
    """The logging policy's ranked pool of every window user-day (or another ``ranking``)."""
    days = s.config.days
    pick = s.policy.keys % days == FIT_DAYS
    users = s.policy.keys[pick] // days
    ranks = s.policy.ranking[pick] if ranking is None else ranking
    pool = ranks.shape[1]
    return pl.DataFrame(
        {
            "user_id": id_series("u", s.config.users, 6).gather(np.repeat(users, pool)),
            "day": [s.config.start + dt.timedelta(days=FIT_DAYS)] * (len(users) * pool),
            "rank": pl.Series(np.tile(np.arange(pool), len(users)), dtype=pl.Int32),
            "item_id": id_series("v", s.config.items, 6).gather(ranks.ravel()),
        }
    )


def rollout(s: Setup, lists: pl.DataFrame, seed: int = 1, replicates: int = 4) -> pl.DataFrame:
    return s.model.rollout(
        window_sessions(s).select("session_id", "user_id", "day", "ts", "device"),
        lists,
        slate_size=SLATE,
        max_slates=MAX_SLATES,
        seed=seed,
        replicates=replicates,
    )


# -- predict -------------------------------------------------------------------------


def test_predict_keeps_the_rows_and_adds_probabilities_and_watch_seconds(setup: Setup) -> None:
    slots = setup.window_events.select("user_id", "item_id", "ts", "device", "slate", "position")
    out = setup.model.predict(slots)
    assert_frame_equal(out.select(slots.columns), slots)
    assert out.schema["p_click"] == pl.Float64 and out.schema["watch_s"] == pl.Float64
    p, watch = out["p_click"].to_numpy(), out["watch_s"].to_numpy()
    assert ((p > 0) & (p < 1)).all()
    assert (np.isfinite(watch) & (watch > 0)).all()


def test_clicks_fall_with_position(setup: Setup) -> None:
    out = setup.model.predict(setup.window_events)
    by_position = out.group_by("position").agg(pl.col("p_click").mean()).sort("position")
    p = by_position["p_click"].to_numpy()
    assert p[0] > 2 * p[9]  # the world's examination alone gives 10^0.7 = 5x


def test_calibrated_on_the_held_out_day(setup: Setup) -> None:
    out = setup.model.predict(setup.window_events)
    observed = setup.window_events["clicked"].mean()
    assert isinstance(observed, float)
    assert out["p_click"].mean() == pytest.approx(observed, rel=0.15)
    clicks = out.filter(pl.col("clicked"))
    assert clicks["watch_s"].mean() == pytest.approx(clicks["watch_time_s"].mean(), rel=0.15)


def test_unseen_users_and_items_take_the_priors(setup: Setup) -> None:
    slots = pl.DataFrame(
        {
            "user_id": ["nobody", "u000001", "nobody"],
            "item_id": ["v000003", "never-seen", "never-seen"],
            "ts": [setup.cutoff] * 3,
            "device": ["tv", None, "watch"],
            "slate": [0, 1, 0],
            "position": [0, 3, 9],
        }
    )
    out = setup.model.predict(slots)
    p = out["p_click"].to_numpy()
    assert ((p > 0) & (p < 1)).all()
    assert np.isfinite(out["watch_s"].to_numpy()).all()


# -- fit -------------------------------------------------------------------------------


def test_fit_summary_reports_rows_holdout_losses_and_gap(setup: Setup) -> None:
    summary = setup.model.fit_summary()
    json.dumps(summary)  # plain JSON types
    assert summary["rows"]["click"] + summary["holdout_rows"]["click"] == setup.fit_events.height
    held = summary["holdout"]
    assert held["click_logloss"] < held["click_logloss_constant"]
    assert held["watch_fraction_rmse"] < held["watch_fraction_rmse_constant"]
    assert held["continue_logloss"] < held["continue_logloss_constant"]
    # the world's pause is 2 s + Exponential(10 s), rounded up: median ~ 9-10 s
    assert 5.0 < summary["gap_s"] < 15.0


def test_fit_is_deterministic_and_capped_by_max_rows(setup: Setup) -> None:
    events = setup.fit_events.head(20_000)
    a = fit_session_model(events, setup.items, seed=3, max_rows=8_000)
    b = fit_session_model(events, setup.items, seed=3, max_rows=8_000)
    for name in ("click_booster", "watch_booster", "continue_booster"):
        assert getattr(a, name).model_to_string() == getattr(b, name).model_to_string()
    rows = a.fit_summary()
    assert rows["impressions_sampled"] <= 8_000
    assert rows["rows"]["click"] + rows["holdout_rows"]["click"] == rows["impressions_sampled"]


def test_too_few_events_is_a_usage_error(setup: Setup) -> None:
    with pytest.raises(DatasetError) as info:
        fit_session_model(setup.fit_events.head(50), setup.items)
    assert info.value.exit_code == ExitCode.USAGE
    assert str(info.value) == (
        "The 50 events before the window are too few to fit the session model; start the "
        "window later or use --estimator ips/snips with per-slate metrics only."
    )


def test_a_log_of_watches_only_is_refused(setup: Setup) -> None:
    watches = setup.fit_events.filter(pl.col("clicked"))
    with pytest.raises(DatasetError, match="all clicks"):
        fit_session_model(watches, setup.items)


# -- rollout -------------------------------------------------------------------------


def test_rollout_of_the_logged_policy_reproduces_the_logged_sessions(setup: Setup) -> None:
    sessions = window_sessions(setup)
    out = rollout(setup, policy_lists(setup), replicates=8)
    assert out["session_id"].to_list() == sessions["session_id"].to_list()
    assert all(out.schema[c] == pl.Float64 for c in out.columns[2:])
    # tolerance: 15% on clicks per session (the window's ~1,000 sessions alone give ~5%
    # sampling error, and 5% of the logged slates were exploration), 10% on slates
    assert out["clicks"].mean() == pytest.approx(sessions["logged_clicks"].mean(), rel=0.15)
    assert out["slates"].mean() == pytest.approx(sessions["logged_slates"].mean(), rel=0.10)
    assert out["impressions"].mean() == pytest.approx(SLATE * out["slates"].mean())
    assert (out["first_clicks"] <= out["clicks"]).all()
    assert (out["first_watch_s"] <= out["watch_s"] + 1e-9).all()


def test_rollout_is_reproducible_and_depends_on_the_seed(setup: Setup) -> None:
    lists = policy_lists(setup)
    first, again = rollout(setup, lists, seed=5), rollout(setup, lists, seed=5)
    assert_frame_equal(first, again)
    other = rollout(setup, lists, seed=6)
    assert not first["clicks"].equals(other["clicks"])


def test_common_random_numbers_shared_slates_get_the_same_outcomes(setup: Setup) -> None:
    """Two policies with the same slate 0 but different later slates: same slate-0 outcomes."""
    lists = policy_lists(setup)
    shuffled = np.random.default_rng(0).permutation(setup.policy.ranking.shape[1] - SLATE) + SLATE
    order = np.r_[np.arange(SLATE), shuffled]
    days = setup.config.days
    ranking = setup.policy.ranking[setup.policy.keys % days == FIT_DAYS][:, order]
    a, b = rollout(setup, lists, seed=9), rollout(setup, policy_lists(setup, ranking), seed=9)
    first = ["first_clicks", "first_watch_s"]
    assert_frame_equal(a.select(first), b.select(first))
    assert not a["watch_s"].equals(b["watch_s"])


def test_appealing_items_get_more_clicks_than_poor_ones(setup: Setup) -> None:
    published = np.flatnonzero(setup.item_published_ts < int(setup.cutoff.timestamp()))
    by_quality = published[np.argsort(setup.item_quality[published], kind="stable")]
    days = setup.config.days
    rows = int((setup.policy.keys % days == FIT_DAYS).sum())
    good = np.tile(by_quality[::-1][:50], (rows, 1))
    poor = np.tile(by_quality[:50], (rows, 1))
    good_out = rollout(setup, policy_lists(setup, good))
    poor_out = rollout(setup, policy_lists(setup, poor))
    assert good_out["clicks"].mean() > 1.5 * poor_out["clicks"].mean()
    assert good_out["watch_s"].mean() > poor_out["watch_s"].mean()


def test_sessions_without_a_list_show_nothing(setup: Setup) -> None:
    sessions = window_sessions(setup).head(3).with_columns(pl.lit("u999999").alias("user_id"))
    out = setup.model.rollout(
        sessions, policy_lists(setup), slate_size=SLATE, max_slates=2, seed=0, replicates=2
    )
    assert out.select(pl.exclude("session_id", "user_id")).to_numpy().sum() == 0.0


def test_lists_with_a_repeated_rank_are_refused(setup: Setup) -> None:
    lists = policy_lists(setup)
    with pytest.raises(InternalError, match="more than once"):
        rollout(setup, pl.concat([lists, lists.head(1)]))
