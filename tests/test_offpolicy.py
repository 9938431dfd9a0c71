"""The off-policy estimators on hand-built logs with known answers, and their invariants."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsim_cli.errors import ConfigError
from recsim_cli.experiment.offpolicy import (
    attach_targets,
    group_lists,
    importance_weights,
    per_user_slate_sums,
    prepare_impressions,
    pseudo_outcomes,
    replay_acceptance,
    resolve_estimator,
    self_normalised,
    slate_sums,
    sorted_codes,
    weight_diagnostics,
)
from recsim_cli.experiment.offpolicy_abtest import hash_share

DAY = dt.date(2026, 1, 12)
T0 = dt.datetime(2026, 1, 12, 20, tzinfo=dt.UTC)


def events(rows: list[tuple[str, str, int, int, str, bool, float, float]]) -> pl.DataFrame:
    """Events from (user, session, slate, position, item, clicked, watch, propensity) rows."""
    user, session, slate, position, item, clicked, watch, pi = zip(*rows, strict=True)
    return pl.DataFrame(
        {
            "user_id": user,
            "item_id": item,
            "ts": [T0 + dt.timedelta(seconds=10 * s) for s in slate],
            "session_id": session,
            "slate": pl.Series(slate, dtype=pl.Int32),
            "position": pl.Series(position, dtype=pl.Int32),
            "clicked": clicked,
            "watch_time_s": watch,
            "device": ["mobile"] * len(rows),
            "propensity": pi,
            "explore": [False] * len(rows),
        }
    )


def lists(rows: dict[str, list[str]], day: dt.date = DAY) -> pl.DataFrame:
    """Target lists: user -> items in rank order, for one day."""
    return pl.DataFrame(
        {
            "user_id": [u for u, items in rows.items() for _ in items],
            "day": [day] * sum(len(v) for v in rows.values()),
            "rank": pl.Series(
                [r for items in rows.values() for r in range(len(items))], dtype=pl.Int32
            ),
            "item_id": [i for items in rows.values() for i in items],
        }
    )


# u1 sees a (clicked, 10 s) and b; u2 sees c and a (clicked, 20 s). The target shows
# u1 [a, c] and u2 [c, a]: it matches u1's slot 0 (w = 2), u2's slot 0 (w = 2) and slot 1 (w = 4).
HAND = events(
    [
        ("u1", "s1", 0, 0, "a", True, 10.0, 0.5),
        ("u1", "s1", 0, 1, "b", False, 0.0, 0.25),
        ("u2", "s2", 0, 0, "c", False, 0.0, 0.5),
        ("u2", "s2", 0, 1, "a", True, 20.0, 0.25),
    ]
)
TARGET = lists({"u1": ["a", "c"], "u2": ["c", "a"]})


def hand_estimate(estimator: str, q: float | None = None) -> dict[str, tuple[float, float]]:
    imps, _, _ = prepare_impressions(HAND)
    target = attach_targets(imps, TARGET)
    weights = importance_weights(imps, target)
    slot = imps.get_column("rank").to_numpy().astype(np.int64)
    qs = None if q is None else np.full(imps.height, q)
    clicks = pseudo_outcomes(
        estimator,  # type: ignore[arg-type]
        imps.get_column("clicked").to_numpy(),
        w=weights.w,
        slot=slot,
        q=qs,
    )
    watch = pseudo_outcomes(
        estimator,  # type: ignore[arg-type]
        imps.get_column("watch_s").to_numpy(),
        w=weights.w,
        slot=slot,
        q=None if qs is None else qs * 30.0,
    )
    sums = per_user_slate_sums(slate_sums(imps, clicks, watch))
    return {
        str(r["user_id"]): (float(r["first_clicks"]), float(r["first_watch_s"]))
        for r in sums.iter_rows(named=True)
    }


def test_ips_on_a_hand_built_log() -> None:
    assert hand_estimate("ips") == {"u1": (2.0, 20.0), "u2": (4.0, 80.0)}


def test_snips_self_normalises_per_slot() -> None:
    # slot 0: weights 2 and 2, clicks 1 and 0 -> theta 0.5; slot 1: only u2 (w 4) -> theta 1.
    # Pseudo outcomes: u1 = 1.0 + 1.0, u2 = 0.0 + 1.0; they add up to N0 theta0 + N1 theta1 = 3.
    est = hand_estimate("snips")
    assert est["u1"][0] == pytest.approx(2.0)
    assert est["u2"][0] == pytest.approx(1.0)
    # Watch: slot 0 theta 5 (u1 10 s), slot 1 theta 20: u1 = 10 + 20, u2 = 0 + 20.
    assert est["u1"][1] == pytest.approx(30.0)
    assert est["u2"][1] == pytest.approx(20.0)


def test_dm_and_dr_on_a_hand_built_log() -> None:
    assert hand_estimate("dm", q=0.3) == {
        "u1": pytest.approx((0.6, 18.0)),
        "u2": pytest.approx((0.6, 18.0)),
    }
    # DR: q + w (r - q): u1 = (0.3 + 2 * 0.7) + 0.3; u2 = (0.3 - 2 * 0.3) + (0.3 + 4 * 0.7).
    dr = hand_estimate("dr", q=0.3)
    assert dr["u1"][0] == pytest.approx(2.0)
    assert dr["u2"][0] == pytest.approx(2.8)


def test_the_logged_policy_weighs_every_impression_one() -> None:
    imps, _, _ = prepare_impressions(HAND)
    weights = importance_weights(imps, None)
    assert weights.w.tolist() == [1.0] * 4


def test_target_epsilon_mixes_with_the_logging_policy() -> None:
    imps, _, _ = prepare_impressions(HAND)
    target = attach_targets(imps, TARGET)
    w = importance_weights(imps, target, target_epsilon=0.1).w
    assert w.tolist() == pytest.approx([0.9 * 2 + 0.1, 0.1, 0.9 * 2 + 0.1, 0.9 * 4 + 0.1])


def test_prepare_places_impressions_in_ranks_and_days() -> None:
    imps, size, slates = prepare_impressions(HAND)
    assert (size, slates) == (2, 1)
    assert imps.get_column("rank").to_list() == [0, 1, 0, 1]
    assert imps.get_column("day").to_list() == [DAY] * 4


def test_prepare_needs_slates_and_positions() -> None:
    with pytest.raises(ConfigError, match="need a slate on every row"):
        prepare_impressions(HAND.with_columns(pl.lit(None, dtype=pl.Int32).alias("slate")))


def test_estimator_choice_follows_the_logs() -> None:
    assert resolve_estimator("auto", has_propensity=True, has_explore=False) == "snips"
    assert resolve_estimator("auto", has_propensity=False, has_explore=False) == "dm"
    assert resolve_estimator("replay", has_propensity=False, has_explore=True) == "replay"
    for name in ("ips", "snips", "dr", "replay"):
        with pytest.raises(ConfigError, match="no propensity"):
            resolve_estimator(name, has_propensity=False, has_explore=False)
    with pytest.raises(ConfigError, match="--estimator must be one of"):
        resolve_estimator("magic", has_propensity=True, has_explore=True)


def test_diagnostics_flag_a_target_the_logs_never_show() -> None:
    imps, _, _ = prepare_impressions(HAND)
    target = attach_targets(imps, lists({"u1": ["z", "y"], "u2": ["y", "z"]}))
    weights = importance_weights(imps, target)
    d = weight_diagnostics(imps, target, weights.w)
    assert d.mean_weight == 0.0
    assert d.unlogged_share == 1.0
    assert d.nonzero_share == 0.0
    assert not d.coverage_ok


def test_diagnostics_of_the_logged_policy_are_perfect() -> None:
    imps, _, _ = prepare_impressions(HAND)
    d = weight_diagnostics(imps, None, importance_weights(imps, None).w)
    assert (d.mean_weight, d.effective_sample_size, d.nonzero_share) == (1.0, 4.0, 1.0)
    assert d.coverage_ok


# -- unbiasedness on uniformly random logs ---------------------------------------------------


def uniform_logs(
    n: int, pool: int, size: int, rng: np.random.Generator
) -> tuple[pl.DataFrame, pl.DataFrame, float]:
    """Slates drawn uniformly from a pool; clicks from a position-based model; the true value.

    Returns the events, the target's lists (the same order for everyone) and the target's
    true expected clicks per first slate.
    """
    appeal = np.linspace(0.05, 0.6, pool)
    examine = 1.0 / (1.0 + np.arange(size)) ** 0.7
    keys = rng.random((n, pool))
    shown = np.argsort(keys, axis=1)[:, :size]
    p_click = examine[None, :] * appeal[shown]
    clicked = rng.random((n, size)) < p_click
    best = np.argsort(-appeal)[:size]
    truth = float((examine * appeal[best]).sum())
    users = np.repeat([f"u{i:05d}" for i in range(n)], size)
    frame = pl.DataFrame(
        {
            "user_id": users,
            "item_id": [f"i{j:03d}" for j in shown.ravel()],
            "ts": [T0] * (n * size),
            "session_id": users,
            "slate": pl.Series(np.zeros(n * size, dtype=np.int32)),
            "position": pl.Series(np.tile(np.arange(size, dtype=np.int32), n)),
            "clicked": clicked.ravel(),
            "watch_time_s": np.where(clicked.ravel(), 30.0, 0.0),
            "device": ["tv"] * (n * size),
            "propensity": np.full(n * size, 1.0 / pool),
            "explore": [True] * (n * size),
        }
    )
    target = pl.DataFrame(
        {
            "user_id": np.repeat([f"u{i:05d}" for i in range(n)], size),
            "day": [DAY] * (n * size),
            "rank": pl.Series(np.tile(np.arange(size, dtype=np.int32), n)),
            "item_id": np.tile([f"i{j:03d}" for j in best], n),
        }
    )
    return frame, target, truth


@pytest.mark.parametrize("estimator", ["ips", "snips", "replay"])
def test_estimators_are_unbiased_on_uniformly_random_logs(estimator: str) -> None:
    rng = np.random.default_rng(7)
    frame, target_lists, truth = uniform_logs(40_000, pool=20, size=4, rng=rng)
    imps, _, _ = prepare_impressions(frame)
    target = attach_targets(imps, target_lists)
    weights = importance_weights(imps, target)
    w = weights.w
    if estimator == "replay":
        w = replay_acceptance(imps, rng) * weights.match
    y = pseudo_outcomes(
        estimator,  # type: ignore[arg-type]
        imps.get_column("clicked").to_numpy(),
        w=w,
        slot=imps.get_column("rank").to_numpy().astype(np.int64),
    )
    per_user = per_user_slate_sums(slate_sums(imps, y, y)).get_column("first_clicks").to_numpy()
    estimate = per_user.mean()
    se = per_user.std(ddof=1) / np.sqrt(len(per_user))
    assert abs(estimate - truth) < 4 * se, (estimate, truth, se)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.floats(0.01, 50), st.floats(0, 1)),
        min_size=1,
        max_size=40,
    )
)
def test_self_normalised_pseudo_outcomes_sum_to_the_slot_estimates(
    rows: list[tuple[int, float, float]],
) -> None:
    slot = np.array([r[0] for r in rows], dtype=np.int64)
    w = np.array([r[1] for r in rows])
    y = np.array([r[2] for r in rows])
    pseudo = self_normalised(y, w, slot)
    expected = sum(
        (slot == s).sum() * (w[slot == s] * y[slot == s]).sum() / w[slot == s].sum()
        for s in np.unique(slot)
    )
    assert pseudo.sum() == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_hash_share_is_stable_and_uniform() -> None:
    ids = pl.Series([f"u{i:06d}" for i in range(20_000)])
    share = hash_share(ids, "salt")
    assert np.array_equal(share, hash_share(ids, "salt"))
    assert not np.array_equal(share, hash_share(ids, "pepper"))
    assert share.min() >= 0 and share.max() < 1
    assert abs((share < 0.01).mean() - 0.01) < 0.003
    # FNV-1a of "a:x" and fmix64 by hand: published functions, not Python's salted hash().
    h = 0xCBF29CE484222325
    for byte in b"a:x":
        h = ((h ^ byte) * 0x100000001B3) % 2**64
    for multiplier in (0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53):
        h = ((h ^ (h >> 33)) * multiplier) % 2**64
    h ^= h >> 33
    assert hash_share(pl.Series(["x"]), "a")[0] == (h >> 11) / 2**53
    # Similar short ids (the weak spot of FNV alone) still split evenly.
    near = hash_share(pl.Series([f"u{i:06d}" for i in range(700)]), "recsim-abtest")
    assert abs((near < 0.3).mean() - 0.3) < 0.06


def test_lists_with_gaps_in_their_ranks_keep_each_item_at_its_rank() -> None:
    imps, _, _ = prepare_impressions(HAND)
    gapped = pl.DataFrame(
        {
            "user_id": ["u1", "u2"],
            "day": [DAY, DAY],
            "rank": pl.Series([1, 0], dtype=pl.Int32),
            "item_id": ["b", "c"],
        }
    )
    # u1's list has nothing at rank 0 and b at rank 1; u2's has c at rank 0 only.
    assert attach_targets(imps, gapped).to_list() == [None, "b", "c", None]


def test_replay_keeps_explored_impressions_where_the_target_agrees() -> None:
    # Only u2's slate was explored; the target matches both of its impressions. Slot 0:
    # theta = 0 (u2 did not click c); slot 1: theta = 1 (u2 clicked a). Every user's
    # pseudo outcomes then sum to theta_0 + theta_1 = 1 here: u1's own clicks do not count.
    explored = HAND.with_columns(pl.Series("explore", [False, False, True, True]))
    imps, _, _ = prepare_impressions(explored)
    target = attach_targets(imps, TARGET)
    weights = importance_weights(imps, target)
    used = replay_acceptance(imps, np.random.default_rng(0)) * weights.match
    assert used.tolist() == [0.0, 0.0, 1.0, 1.0]
    y = pseudo_outcomes(
        "replay",
        imps.get_column("clicked").to_numpy(),
        w=used,
        slot=imps.get_column("rank").to_numpy().astype(np.int64),
    )
    sums = per_user_slate_sums(slate_sums(imps, y, y))
    assert sums.get_column("first_clicks").to_list() == [1.0, 1.0]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["u1", "u2", "u3"]),
            st.integers(0, 2),
            st.lists(st.sampled_from("abcdef"), min_size=1, max_size=6),
            st.booleans(),
        ),
        max_size=6,
        unique_by=lambda r: (r[0], r[1]),
    ),
    st.lists(
        st.tuples(st.sampled_from(["u1", "u2", "u3", "u4"]), st.integers(0, 2), st.integers(0, 7)),
        min_size=1,
        max_size=30,
    ),
)
def test_attach_targets_is_a_lookup_of_user_day_and_rank(
    lists_spec: list[tuple[str, int, list[str], bool]], probes: list[tuple[str, int, int]]
) -> None:
    # Lists with contiguous ranks take the offset path; a skipped rank the join path.
    rows = [
        (user, DAY + dt.timedelta(days=d), rank + (1 if gap and rank else 0), item)
        for user, d, items, gap in lists_spec
        for rank, item in enumerate(items)
    ]
    lists = pl.DataFrame(
        rows,
        schema={"user_id": pl.String, "day": pl.Date, "rank": pl.Int32, "item_id": pl.String},
        orient="row",
    )
    imps = pl.DataFrame(
        [(u, DAY + dt.timedelta(days=d), r) for u, d, r in probes],
        schema={"user_id": pl.String, "day": pl.Date, "rank": pl.Int32},
        orient="row",
    )
    expected = {(u, day, r): item for u, day, r, item in rows}
    want = [expected.get((u, day, r)) for u, day, r in imps.iter_rows()]
    assert attach_targets(imps, lists).to_list() == want
    if not any(gap for *_, gap in lists_spec):
        assert attach_targets(imps, group_lists(lists)).to_list() == want
    # Impressions sorted by user (as prepare_impressions leaves them) take the binary search.
    by_user = imps.sort("user_id", maintain_order=True)
    want_sorted = [expected.get((u, day, r)) for u, day, r in by_user.iter_rows()]
    assert attach_targets(by_user, lists).to_list() == want_sorted


@given(st.lists(st.sampled_from(["a", "b", "c", "é", ""]), min_size=1, max_size=12))
def test_sorted_codes_number_the_runs_of_a_sorted_column(values: list[str]) -> None:
    column = pl.Series(sorted(values))
    codes, distinct = sorted_codes(column)  # type: ignore[misc]
    assert distinct.to_list() == sorted(set(values))
    assert [distinct[int(c)] for c in codes] == column.to_list()
    if len(set(values)) > 1:
        assert sorted_codes(pl.Series(sorted(values, reverse=True))) is None
