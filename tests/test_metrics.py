"""Ranking metrics against values computed by hand, and properties every definition must keep."""

from __future__ import annotations

from math import log2

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from recsim_cli.errors import ConfigError, SchemaError, UnknownNameError
from recsim_cli.metrics import (
    METRIC_NAMES,
    METRICS,
    metric_column,
    parse_ks,
    parse_metrics,
    rank_lists,
    user_metrics,
)

# u1: hits at positions 1, 3, 5 of five (and `a` again, lower: it keeps position 1).
# u2: a list of two, shorter than k = 3; its one relevant item at position 2.
# u3: relevant items, no list: kept with zeros. u4: a list, nothing relevant: left out.
# u5: `m` and `n` tie on score; `m` < `n` comes first, at position 2; `z` is never shown.
# u6: four relevant, more than k = 3, so the two MAP denominators differ.
RECS = pl.DataFrame(
    [
        ("u1", "a", 0.9),
        ("u1", "b", 0.8),
        ("u1", "c", 0.7),
        ("u1", "d", 0.6),
        ("u1", "e", 0.5),
        ("u1", "a", 0.1),
        ("u2", "y", 0.9),
        ("u2", "x", 0.5),
        ("u4", "a", 1.0),
        ("u4", "b", 0.5),
        ("u5", "n", 0.5),
        ("u5", "o", 0.9),
        ("u5", "m", 0.5),
        ("u6", "a", 3.0),
        ("u6", "z", 2.0),
        ("u6", "b", 1.0),
        (None, "a", 5.0),
    ],
    schema=["user_id", "item_id", "score"],
    orient="row",
)
TRUTH = pl.DataFrame(
    [
        ("u1", "a"),
        ("u1", "a"),
        ("u1", "c"),
        ("u1", "e"),
        ("u2", "x"),
        ("u3", "p"),
        ("u3", "q"),
        ("u5", "m"),
        ("u5", "z"),
        ("u6", "a"),
        ("u6", "b"),
        ("u6", "c"),
        ("u6", "d"),
    ],
    schema=["user_id", "item_id"],
    orient="row",
)
IDCG = {m: sum(1 / log2(i + 1) for i in range(1, m + 1)) for m in range(1, 6)}
AP_U1 = 1 / 1 + 2 / 3 + 3 / 5  # precision at each of u1's hits, positions 1, 3 and 5
DCG_U1 = 1 / log2(2) + 1 / log2(4) + 1 / log2(6)

# (precision, recall, map with min(k, |R|), map with |R|, ndcg, mrr, hit_rate) per user, per k.
EXPECTED = {
    3: {
        "u1": (2 / 3, 2 / 3, (1 + 2 / 3) / 3, (1 + 2 / 3) / 3, 1.5 / IDCG[3], 1, 1),
        "u2": (1 / 3, 1, 1 / 2, 1 / 2, (1 / log2(3)) / IDCG[1], 1 / 2, 1),
        "u3": (0, 0, 0, 0, 0, 0, 0),
        "u5": (1 / 3, 1 / 2, (1 / 2) / 2, (1 / 2) / 2, (1 / log2(3)) / IDCG[2], 1 / 2, 1),
        "u6": (2 / 3, 2 / 4, (1 + 2 / 3) / 3, (1 + 2 / 3) / 4, 1.5 / IDCG[3], 1, 1),
    },
    5: {
        "u1": (3 / 5, 1, AP_U1 / 3, AP_U1 / 3, DCG_U1 / IDCG[3], 1, 1),
        "u2": (1 / 5, 1, 1 / 2, 1 / 2, (1 / log2(3)) / IDCG[1], 1 / 2, 1),
        "u3": (0, 0, 0, 0, 0, 0, 0),
        "u5": (1 / 5, 1 / 2, (1 / 2) / 2, (1 / 2) / 2, (1 / log2(3)) / IDCG[2], 1 / 2, 1),
        "u6": (2 / 5, 2 / 4, (1 + 2 / 3) / 4, (1 + 2 / 3) / 4, 1.5 / IDCG[4], 1, 1),
    },
}  # fmt: skip


@pytest.mark.parametrize("denominator", ["min", "relevant"])
def test_every_metric_matches_the_hand_computed_values(denominator: str) -> None:
    result = user_metrics(RECS, TRUTH, ks=[5, 3], map_denominator=denominator)  # type: ignore[arg-type]
    per_user = result.per_user
    assert result.users_without_relevant == 1
    assert result.users_without_recommendations == 1
    assert per_user.columns == [
        "user_id",
        "n_relevant",
        "n_recommended",
        *(metric_column(m, k) for m in METRIC_NAMES for k in (3, 5)),
    ]
    assert per_user["user_id"].to_list() == ["u1", "u2", "u3", "u5", "u6"]
    assert per_user["n_relevant"].to_list() == [3, 1, 2, 2, 4]
    assert per_user["n_recommended"].to_list() == [5, 2, 0, 3, 3]
    assert per_user.schema["n_relevant"] == pl.Int64
    assert per_user.schema["n_recommended"] == pl.Int64
    for k, users in EXPECTED.items():
        for row, values in zip(per_user.iter_rows(named=True), users.values(), strict=True):
            p, r, ap_min, ap_rel, ndcg, mrr, hit = values
            ap = ap_min if denominator == "min" else ap_rel
            got = [row[metric_column(m, k)] for m in METRIC_NAMES]
            assert got == pytest.approx([p, r, ap, ndcg, mrr, hit], abs=1e-12), (row["user_id"], k)


def test_a_rank_column_wins_over_score_and_ties_go_to_the_smaller_item_id() -> None:
    recs = pl.DataFrame(
        {
            "user_id": ["u5", "u5", "u5", "u1", "u1"],
            "item_id": ["n", "m", "o", "b", "a"],
            "rank": [2, 2, 1, 1, 1],
            "score": [9.0, 0.0, 0.0, 0.0, 9.0],
        }
    )
    expected = pl.DataFrame(
        {
            "user_id": ["u1", "u1", "u5", "u5", "u5"],
            "item_id": ["a", "b", "o", "m", "n"],
            "pos": pl.Series([1, 2, 1, 2, 3], dtype=pl.Int32),
        }
    )
    assert_frame_equal(rank_lists(recs), expected)
    by_rank = user_metrics(recs, TRUTH.filter(pl.col("user_id") == "u5"), ks=[3])
    assert by_rank.per_user["mrr@3"].to_list() == [0.5]


def test_rank_lists_keeps_the_best_position_of_a_repeated_item_and_drops_null_ids() -> None:
    ranked = rank_lists(RECS)
    u1 = ranked.filter(pl.col("user_id") == "u1")
    assert u1["item_id"].to_list() == ["a", "b", "c", "d", "e"]
    assert u1["pos"].to_list() == [1, 2, 3, 4, 5]
    assert ranked["user_id"].null_count() == 0
    assert ranked.schema == pl.Schema({"user_id": pl.String, "item_id": pl.String, "pos": pl.Int32})


@pytest.mark.parametrize(
    "lengths",
    [[3, 3, 3], [5, 2, 1], [3000, *[1] * 10]],
    ids=["equal lengths", "unequal lengths", "very ragged"],
)
def test_a_repeat_is_found_whatever_the_list_lengths(lengths: list[int]) -> None:
    rows = [(u, f"i{j}", j + 1) for u, n in enumerate(lengths) for j in range(n)]
    rows[lengths[0] - 1] = (0, "i0", lengths[0])  # user 0's last item repeats its first
    recs = pl.DataFrame(rows, schema=["user_id", "item_id", "rank"], orient="row")
    ranked = rank_lists(recs)
    assert ranked.height == len(rows) - 1
    assert ranked.filter(pl.col("user_id") == 0)["pos"].to_list() == list(range(1, lengths[0]))
    assert_frame_equal(rank_lists(recs.filter(pl.col("user_id") > 0)), ranked.slice(lengths[0] - 1))


def test_lists_in_order_or_not_rank_the_same() -> None:
    in_order = pl.DataFrame(
        {
            "user_id": ["a", "a", "a", "b"],
            "item_id": ["x", "y", "z", "x"],
            "score": [2.0, 1.0, 1.0, 5.0],  # y and z tie: y first
        }
    )
    expected = in_order.select("user_id", "item_id").with_columns(
        pos=pl.Series([1, 2, 3, 1], dtype=pl.Int32)
    )
    assert_frame_equal(rank_lists(in_order), expected)
    for order in ([0, 2, 1, 3], [3, 2, 1, 0]):
        assert_frame_equal(rank_lists(in_order[order]), expected)


def test_nan_and_null_scores_rank_last() -> None:
    recs = pl.DataFrame(
        {"user_id": [1, 1, 1, 1], "item_id": [1, 2, 3, 4], "score": [float("nan"), None, 0.5, 0.7]}
    )
    assert rank_lists(recs)["item_id"].to_list()[:2] == [4, 3]


def test_only_the_chosen_metrics_in_the_given_order() -> None:
    result = user_metrics(RECS, TRUTH, ks="3", metrics="ndcg,precision")
    assert result.per_user.columns[3:] == ["ndcg@3", "precision@3"]


def test_no_relevant_items_gives_an_empty_table_with_every_column() -> None:
    result = user_metrics(RECS, TRUTH.clear(), ks=[10], metrics=["mrr"])
    assert result.per_user.height == 0
    assert result.per_user.columns == ["user_id", "n_relevant", "n_recommended", "mrr@10"]
    assert result.users_without_relevant == 5


def test_no_lists_at_all_scores_every_user_zero() -> None:
    empty = pl.DataFrame({"user_id": [], "item_id": [], "rank": []})  # columns of type Null
    result = user_metrics(empty, TRUTH, ks=[3], metrics=["ndcg"])
    assert result.per_user["ndcg@3"].to_list() == [0.0] * 5
    assert result.users_without_recommendations == 5


def test_parse_metrics_keeps_order_and_drops_duplicates() -> None:
    assert parse_metrics("ndcg, precision,NDCG") == ("ndcg", "precision")
    assert parse_metrics(["map", "mrr,hit_rate"]) == ("map", "mrr", "hit_rate")
    assert set(METRICS) == set(METRIC_NAMES)


def test_an_unknown_metric_lists_the_known_ones() -> None:
    with pytest.raises(UnknownNameError) as err:
        parse_metrics("precision,ndgc")
    assert str(err.value) == (
        "Unknown metric 'ndgc'. Available: hit_rate, map, mrr, ndcg, precision, recall."
    )
    with pytest.raises(UnknownNameError):
        user_metrics(RECS, TRUTH, ks=[3], metrics=["ndgc"])


def test_parse_ks_sorts_and_deduplicates() -> None:
    assert parse_ks("20, 5,10,5,") == (5, 10, 20)
    assert parse_ks([10, np.int64(3)]) == (3, 10)


@pytest.mark.parametrize("bad", ["0", "a", "5,-1", "2.5", "", [0], [True], [2.0]])
def test_parse_ks_rejects_what_is_not_a_positive_integer(bad: object) -> None:
    with pytest.raises(ConfigError, match="--k"):
        parse_ks(bad)  # type: ignore[arg-type]


def test_missing_columns_name_what_was_found_and_what_is_needed() -> None:
    with pytest.raises(SchemaError) as err:
        rank_lists(pl.DataFrame({"user": [1], "item_id": [2], "score": [0.5]}))
    assert "user, item_id, score" in str(err.value)
    assert "need user_id, item_id and rank or score" in str(err.value)
    with pytest.raises(SchemaError, match="rank or score"):
        rank_lists(pl.DataFrame({"user_id": [1], "item_id": [2]}))
    with pytest.raises(SchemaError, match="need user_id and item_id"):
        user_metrics(RECS, TRUTH.rename({"item_id": "item"}), ks=[3])


def test_ids_of_different_types_are_a_schema_error() -> None:
    truth = pl.DataFrame({"user_id": [1], "item_id": ["a"]})
    with pytest.raises(SchemaError, match="'user_id' is String in the recommendations but Int64"):
        user_metrics(RECS, truth, ks=[3])


def test_a_bad_map_denominator_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="map-denominator"):
        user_metrics(RECS, TRUTH, ks=[3], map_denominator="all")  # type: ignore[arg-type]


# -- properties ---------------------------------------------------------------------------------

N_ITEMS = 12


@st.composite
def lists_and_truth(draw: st.DrawFn) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Up to five users, each with a list of distinct items (maybe empty) and relevant items."""
    recs: list[tuple[int, int, int]] = []
    truth: list[tuple[int, int]] = []
    for user in range(draw(st.integers(1, 5))):
        items = draw(st.permutations(range(N_ITEMS)))
        length = draw(st.integers(0, N_ITEMS))
        recs += [(user, item, pos) for pos, item in enumerate(items[:length], start=1)]
        relevant = draw(st.sets(st.integers(0, N_ITEMS - 1), max_size=N_ITEMS))
        truth += [(user, item) for item in relevant]
    schema = {"user_id": pl.Int64, "item_id": pl.Int64, "rank": pl.Int64}
    return (
        pl.DataFrame(recs, schema=schema, orient="row"),
        pl.DataFrame(truth, schema={"user_id": pl.Int64, "item_id": pl.Int64}, orient="row"),
    )


KS = (1, 3, 5, 12)


def _metric_values(frame: pl.DataFrame) -> np.ndarray:
    return frame.drop("user_id", "n_relevant", "n_recommended").to_numpy()


@settings(max_examples=60, deadline=None)
@given(lists_and_truth(), st.sampled_from(["min", "relevant"]))
def test_every_metric_lies_in_zero_one(data: tuple[pl.DataFrame, pl.DataFrame], den: str) -> None:
    recs, truth = data
    values = _metric_values(user_metrics(recs, truth, ks=KS, map_denominator=den).per_user)  # type: ignore[arg-type]
    assert ((values >= 0) & (values <= 1 + 1e-12)).all()


@settings(max_examples=60, deadline=None)
@given(
    relevant=st.sets(st.integers(0, N_ITEMS - 1), min_size=1),
    order=st.permutations(range(N_ITEMS)),
    k=st.integers(1, N_ITEMS),
)
def test_a_perfect_list_scores_one(relevant: set[int], order: list[int], k: int) -> None:
    # Every relevant item first (in any order), then the rest.
    items = sorted(order, key=lambda item: item not in relevant)
    recs = pl.DataFrame({"user_id": 0, "item_id": items, "rank": range(1, N_ITEMS + 1)})
    truth = pl.DataFrame({"user_id": 0, "item_id": sorted(relevant)})
    row = user_metrics(recs, truth, ks=[k]).per_user.row(0, named=True)
    assert row[f"ndcg@{k}"] == pytest.approx(1.0)
    assert row[f"map@{k}"] == pytest.approx(1.0)
    assert row[f"hit_rate@{k}"] == 1.0
    assert row[f"mrr@{k}"] == 1.0
    if len(relevant) >= k:
        assert row[f"precision@{k}"] == pytest.approx(1.0)
    if len(relevant) <= k:
        assert row[f"recall@{k}"] == pytest.approx(1.0)


@settings(max_examples=80, deadline=None)
@given(lists_and_truth(), st.data())
def test_putting_a_relevant_item_in_place_of_a_miss_never_lowers_a_metric(
    data: tuple[pl.DataFrame, pl.DataFrame], draw: st.DataObject
) -> None:
    recs, truth = data
    relevant = set(truth.iter_rows())
    listed = set(recs.select("user_id", "item_id").iter_rows())
    misses = [r for r in recs.iter_rows() if (r[0], r[1]) not in relevant]
    unseen = sorted(relevant - listed)
    candidates = [(m, u) for m in misses for u in unseen if u[0] == m[0]]
    if not candidates:
        return
    (user, _miss, pos), (_, new) = draw.draw(st.sampled_from(candidates))
    swapped = recs.with_columns(
        pl.when((pl.col("user_id") == user) & (pl.col("rank") == pos))
        .then(new)
        .otherwise(pl.col("item_id"))
        .alias("item_id")
    )
    for den in ("min", "relevant"):
        before = _metric_values(user_metrics(recs, truth, ks=KS, map_denominator=den).per_user)  # type: ignore[arg-type]
        after = _metric_values(user_metrics(swapped, truth, ks=KS, map_denominator=den).per_user)  # type: ignore[arg-type]
        assert (after >= before - 1e-12).all()


@settings(max_examples=40, deadline=None)
@given(lists_and_truth(), st.integers(0, 2**32 - 1))
def test_metrics_do_not_depend_on_the_row_order(
    data: tuple[pl.DataFrame, pl.DataFrame], seed: int
) -> None:
    recs, truth = data
    recs = recs.with_columns(score=-(pl.col("rank") // 3)).drop("rank")  # ties of three
    expected = user_metrics(recs, truth, ks=KS)
    shuffled = user_metrics(
        recs.sample(fraction=1.0, shuffle=True, seed=seed),
        truth.sample(fraction=1.0, shuffle=True, seed=seed + 1),
        ks=KS,
    )
    assert_frame_equal(shuffled.per_user, expected.per_user)
    assert shuffled.users_without_relevant == expected.users_without_relevant
