"""The ranker's examples and features: hand-computed values and point-in-time correctness."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from recsim_cli.models.features import (
    CATEGORICAL,
    EXAMPLES_SCHEMA,
    FEATURE_DOCS,
    FEATURES,
    build_features,
    ranker_examples,
)

T0 = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
TS = pl.Datetime("us", "UTC")


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def events(rows: list[tuple], **extra: list) -> pl.DataFrame:
    """Events from (user_id, item_id, hours after T0, clicked) rows, plus optional columns."""
    frame = pl.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "ts": [at(r[2]) for r in rows],
            "clicked": [r[3] for r in rows],
        },
        schema={"user_id": pl.String, "item_id": pl.String, "ts": TS, "clicked": pl.Boolean},
    )
    return frame.with_columns(pl.Series(name, values) for name, values in extra.items())


def targets(rows: list[tuple], device: list[str | None] | None = None) -> pl.DataFrame:
    """Targets from (user_id, item_id, hours after T0) rows; hour and dow from ts."""
    frame = pl.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "ts": [at(r[2]) for r in rows],
            "device": device if device is not None else [None] * len(rows),
        },
        schema={"user_id": pl.String, "item_id": pl.String, "ts": TS, "device": pl.String},
    )
    return frame.with_columns(
        pl.col("ts").dt.hour().cast(pl.Int32).alias("hour"),
        (pl.col("ts").dt.weekday() - 1).cast(pl.Int32).alias("dow"),
    )


ITEMS = pl.DataFrame(
    {
        "item_id": ["x", "y", "z"],
        "published_ts": [at(-48), at(-2), at(10)],
        "duration_s": [100.0, 200.0, 300.0],
        "category": ["news", "news", None],
    },
    schema={
        "item_id": pl.String,
        "published_ts": TS,
        "duration_s": pl.Float64,
        "category": pl.String,
    },
)
NO_CANDIDATES = pl.DataFrame(
    schema={"user_id": pl.String, "item_id": pl.String, "score": pl.Float64, "rank": pl.Int32}
)


def candidates(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=NO_CANDIDATES.schema, orient="row")


def features(history: pl.DataFrame, rows: pl.DataFrame, cands: pl.DataFrame = NO_CANDIDATES):
    return build_features(history, rows, ITEMS, cands, n_candidates=5)


# -- the feature table ---------------------------------------------------------------


def test_features_are_documented_and_numeric() -> None:
    assert tuple(FEATURE_DOCS) == FEATURES
    assert set(CATEGORICAL) <= set(FEATURES)
    X = features(events([("a", "x", 0, True)]), targets([("a", "x", 1)]))
    assert X.columns == list(FEATURES)
    assert all(dtype.is_numeric() for dtype in X.dtypes)


def test_hand_computed_values() -> None:
    history = events(
        [
            ("a", "x", 0, True),  # 30 h before the first target: in 7d, not in 1d
            ("a", "y", 20, True),
            ("b", "x", 25, True),
            ("b", "x", 26, False),  # an impression without a click counts nowhere
            ("a", "z", 29, True),
        ]
    )
    rows = targets([("a", "x", 30), ("b", "z", 30), ("c", "y", 30)], ["mobile", "tv", None])
    cands = candidates([("a", "x", 0.9, 2), ("b", "z", None, 1)])
    got = features(history, rows, cands)
    # K = 1 category (news) + 1 for none = 2
    expected = pl.DataFrame(
        {
            "cand_score": [0.9, math.nan, math.nan],
            "cand_rank": [2, 1, 6],
            "item_clicks_1d": [1, 1, 1],  # x: b@25 ; z: a@29 ; y: a@20
            "item_clicks_7d": [2, 1, 1],
            "item_age_h": [78.0, 20.0, 32.0],
            "duration_s": [100.0, 300.0, 200.0],
            "user_clicks_7d": [3, 1, 0],
            # a: 2 news of 3 clicks; b: 0 'none' of 1; c: no clicks
            "user_cat_affinity": [(2 + 1) / (3 + 2), (0 + 1) / (1 + 2), 1 / 2],
            "hour": [6, 6, 6],
            "dow": [1, 1, 1],
            "device": [0, 2, 4],
        },
        schema={name: (pl.Int32 if name not in _FLOATS else pl.Float64) for name in FEATURES},
    )
    assert_frame_equal(got, expected)


_FLOATS = {"cand_score", "item_age_h", "duration_s", "user_cat_affinity"}


def test_window_edges_are_half_open() -> None:
    """A click exactly 24 h before ts is in the 1-day window; one at ts is not."""
    history = events([("a", "x", 0, True), ("b", "x", 24, True)])
    got = features(history, targets([("c", "x", 24)]))
    assert got["item_clicks_1d"].to_list() == [1]
    assert got["item_clicks_7d"].to_list() == [1]


def test_history_at_or_after_ts_is_ignored() -> None:
    history = events([("a", "x", 0, True), ("a", "y", 5, True)])
    rows = targets([("a", "x", 10), ("b", "y", 10)])
    before = features(history, rows)
    later = pl.concat(
        [
            history,
            events([("a", "x", 10, True), ("b", "y", 10, True), ("a", "x", 11, True)]),
            events([("b", "x", 500, True)]),
        ]
    )
    assert_frame_equal(features(later, rows), before)


def test_later_target_sees_clicks_in_between() -> None:
    history = events([("a", "x", 0, True), ("b", "x", 0.5, True), ("c", "x", 0.75, True)])
    got = features(history, targets([("d", "x", 0.25), ("d", "x", 1.25)]))
    assert got["item_clicks_1d"].to_list() == [1, 3]


def test_rows_keep_the_targets_order() -> None:
    history = events([("a", "x", 0, True), ("b", "y", 1, True), ("b", "y", 2, True)])
    rows = targets([("a", "x", 5), ("b", "y", 5), ("a", "y", 3), ("c", "z", 12)])
    whole = features(history, rows)
    order = [3, 1, 0, 2]
    assert_frame_equal(features(history, rows[order]), whole[order])


def test_candidate_rank_is_capped_and_missing_score_is_nan() -> None:
    cands = candidates(
        [("a", "x", 0.5, 3), ("a", "x", 0.7, 1), ("a", "y", None, 4), ("a", "z", 0.1, 9)]
    )
    got = features(events([]), targets([("a", "x", 1), ("a", "y", 1), ("a", "z", 1)]), cands)
    assert got["cand_rank"].to_list() == [1, 4, 6]  # best listing; 9 > 5 caps at 5 + 1
    scores = got["cand_score"].to_list()
    assert scores[0] == 0.7
    assert math.isnan(scores[1])


def test_device_codes_are_fixed() -> None:
    devices = ["mobile", "desktop", "tv", "TV", "tablet", None]
    rows = targets([("a", "x", 1)] * len(devices), devices)
    got = features(events([]), rows)
    assert got["device"].to_list() == [0, 1, 2, 2, 3, 4]
    assert features(events([]), rows.drop("device"))["device"].to_list() == [4] * len(devices)


def test_context_from_ts_when_absent_and_age_clipped() -> None:
    rows = targets([("a", "z", 5), ("a", "w", 5)]).drop("hour", "dow")
    got = features(events([]), rows)
    assert got["hour"].to_list() == [5, 5]
    assert got["dow"].to_list() == [0, 0]
    assert got["item_age_h"][0] == 0.0  # z is published at +10 h
    assert math.isnan(got["item_age_h"][1])  # w is not in the item table
    assert math.isnan(got["duration_s"][1])


def test_serving_hour_comes_from_targets_unless_null() -> None:
    rows = targets([("a", "x", 5), ("b", "x", 5)]).with_columns(
        pl.Series("hour", [21, None], dtype=pl.Int32)
    )
    assert features(events([]), rows)["hour"].to_list() == [21, 5]


@st.composite
def histories(draw: st.DrawFn) -> tuple[pl.DataFrame, pl.DataFrame]:
    n = draw(st.integers(0, 30))
    event_rows = [
        (
            draw(st.sampled_from("abc")),
            draw(st.sampled_from("xyzw")),
            draw(st.integers(0, 400)) / 2,
            draw(st.booleans()),
        )
        for _ in range(n)
    ]
    target_rows = [
        (
            draw(st.sampled_from("abcd")),
            draw(st.sampled_from("xyzw")),
            draw(st.integers(0, 400)) / 2,
        )
        for _ in range(draw(st.integers(1, 6)))
    ]
    return events(event_rows), targets(target_rows)


@settings(max_examples=40, deadline=None)
@given(histories())
def test_features_match_a_reference_and_ignore_the_future(
    case: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    history, rows = case
    got = features(history, rows)
    clicks = history.filter(pl.col("clicked")).rows(named=True)
    category = dict(zip(ITEMS["item_id"], ITEMS["category"], strict=True))
    for i, row in enumerate(rows.rows(named=True)):
        t = row["ts"]
        seen = [c for c in clicks if c["ts"] < t]

        def within(c: dict, days: int, t: datetime = t) -> bool:
            return c["ts"] >= t - timedelta(days=days)

        user = [c for c in seen if c["user_id"] == row["user_id"]]
        same_cat = [c for c in user if category.get(c["item_id"]) == category.get(row["item_id"])]
        item = [c for c in seen if c["item_id"] == row["item_id"]]
        want = {
            "item_clicks_1d": sum(within(c, 1) for c in item),
            "item_clicks_7d": sum(within(c, 7) for c in item),
            "user_clicks_7d": sum(within(c, 7) for c in user),
            "user_cat_affinity": (len(same_cat) + 1) / (len(user) + 2),
        }
        assert {k: got[k][i] for k in want} == pytest.approx(want)
        # only the past: the same row against the history before its ts alone
        alone = features(history.filter(pl.col("ts") < t), rows[i])
        assert_frame_equal(alone, got[i])


def test_build_features_handles_empty_inputs() -> None:
    got = features(events([]), targets([]))
    assert got.height == 0
    assert got.columns == list(FEATURES)


# -- training examples -----------------------------------------------------------------


def impressions() -> pl.DataFrame:
    return events(
        [
            ("b", "x", 2, False),
            ("a", "y", 1, True),
            ("a", "x", 1, False),
            ("a", "z", 3, False),
            ("b", "y", 2, True),
            ("a", "w", 1, False),
        ],
        session_id=["s2", "s1", "s1", "s1", "s2", "s1"],
        slate=[0, 0, 0, 1, 0, None],
        position=[0, 1, 0, 0, 1, 0],
        watch_time_s=[0.0, 50.0, 0.0, 0.0, 20.0, 0.0],
        device=["tv", "mobile", "mobile", "mobile", "tv", "mobile"],
    )


def test_examples_from_impressions_are_the_logged_rows_per_slate() -> None:
    got = ranker_examples(impressions(), NO_CANDIDATES, rng=np.random.default_rng(0))
    assert got.schema == EXAMPLES_SCHEMA
    # slates by first ts: (a, s1, 0) and (a, s1, null) at 1 h, (b, s2, 0) at 2 h, (a, s1, 1)
    assert got.select("query_id", "user_id", "item_id", "clicked").rows() == [
        (0, "a", "x", False),
        (0, "a", "y", True),
        (1, "a", "w", False),
        (2, "b", "x", False),
        (2, "b", "y", True),
        (3, "a", "z", False),
    ]
    assert got["hour"].to_list() == [1, 1, 1, 2, 2, 3]
    assert got["dow"].to_list() == [0] * 6
    assert got["watch_time_s"].to_list() == [0.0, 50.0, 0.0, 0.0, 20.0, 0.0]
    shuffled = impressions().sample(fraction=1.0, shuffle=True, seed=3)
    assert_frame_equal(ranker_examples(shuffled, NO_CANDIDATES, rng=np.random.default_rng(9)), got)


def watches() -> pl.DataFrame:
    return events(
        [("a", "i0", 1, True), ("a", "i1", 2, True), ("b", "i0", 1, True), ("c", "i5", 4, True)],
        session_id=["s1", "s1", "s2", "s3"],
        watch_time_s=[30.0, 40.0, 50.0, 60.0],
        device=["tv", None, "mobile", "desktop"],
    )


def watch_candidates() -> pl.DataFrame:
    rows = [("a", f"i{j}", None, j + 1) for j in range(8)]
    rows += [("b", "i0", 0.5, 1), ("b", "i9", 0.4, 2)]
    return candidates(rows)


def test_examples_from_watches_sample_unwatched_candidates() -> None:
    got = ranker_examples(
        watches(), watch_candidates(), negatives_per_positive=3, rng=np.random.default_rng(1)
    )
    assert got.schema == EXAMPLES_SCHEMA
    queries = got.partition_by("query_id", maintain_order=True)
    # c's watch of i5 is left out: i5 is not in c's (empty) candidate list
    assert [q["query_id"][0] for q in queries] == [0, 1, 2]
    sizes = [q.height for q in queries]
    assert sizes == [4, 4, 2]  # a: 6 unwatched candidates; b: only i9
    assert "c" not in got["user_id"].to_list()
    for q in queries:
        watch, negatives = q.row(0, named=True), q[1:]
        assert watch["clicked"]
        assert not negatives["clicked"].any()
        assert (negatives["watch_time_s"] == 0).all()
        assert (negatives["ts"] == watch["ts"]).all()
        assert negatives["device"].to_list() == [watch["device"]] * negatives.height
        assert negatives["item_id"].n_unique() == negatives.height
    a_negatives = got.filter((pl.col("user_id") == "a") & ~pl.col("clicked"))["item_id"]
    assert not set(a_negatives) & {"i0", "i1"}
    assert set(a_negatives) <= {f"i{j}" for j in range(8)}
    assert got.filter(~pl.col("clicked") & (pl.col("user_id") == "b"))["item_id"].to_list() == [
        "i9"
    ]


def test_sampled_examples_are_seeded() -> None:
    def draw(seed: int) -> pl.DataFrame:
        return ranker_examples(
            watches(), watch_candidates(), negatives_per_positive=3, rng=np.random.default_rng(seed)
        )

    assert_frame_equal(draw(5), draw(5))
    assert any(not draw(5).equals(draw(s)) for s in range(6, 12))


def test_negatives_are_uniform_over_the_allowed_candidates() -> None:
    many = events([("a", "i0", h / 60, True) for h in range(1000)], watch_time_s=[10.0] * 1000)
    got = ranker_examples(
        many, watch_candidates(), negatives_per_positive=2, rng=np.random.default_rng(0)
    )
    counts = Counter(got.filter(~pl.col("clicked"))["item_id"].to_list())
    assert set(counts) == {f"i{j}" for j in range(1, 8)}
    # 2000 draws over 7 items: about 286 each
    assert all(230 < c < 340 for c in counts.values())


def test_empty_window_gives_no_examples() -> None:
    window = events([]).with_columns(pl.lit(0.0).alias("watch_time_s"))
    got = ranker_examples(window, NO_CANDIDATES, rng=np.random.default_rng(0))
    assert got.height == 0
    assert got.schema == EXAMPLES_SCHEMA
