"""The ranking metrics agree with trec_eval (through pytrec_eval) on random lists, to 1e-9."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import polars as pl
import pytest

from recsim_cli.metrics import rank_lists, user_metrics

if os.environ.get("CI") == "true":
    import pytrec_eval  # CI installs the dev extra: a missing module must fail, not skip
else:
    pytrec_eval = pytest.importorskip("pytrec_eval")

KS = (5, 10, 20)
CUTS = ",".join(map(str, KS))
# our metric -> the trec_eval measure it equals (map with map_denominator="relevant")
MEASURES = {"precision": "P", "recall": "recall", "map": "map_cut", "ndcg": "ndcg_cut"}
MEASURES |= {"hit_rate": "success"}


def random_data(seed: int, users: int = 300, items: int = 60) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Lists of 0-30 items with tied scores and repeats; 0-12 relevant items per user."""
    rng = np.random.default_rng(seed)
    length = rng.integers(0, 31, users)
    user = np.repeat(np.arange(users), length)
    recs = pl.DataFrame(
        {
            "user_id": [f"u{u:03d}" for u in user],
            "item_id": [f"i{i:02d}" for i in rng.integers(0, items, user.size)],
            "score": rng.integers(0, 8, user.size).astype(float),  # many ties
        }
    )
    n_relevant = rng.integers(0, 13, users + 20)  # 20 users with truth but never a list
    truth_user = np.repeat(np.arange(users + 20), n_relevant)
    truth = pl.DataFrame(
        {
            "user_id": [f"u{u:03d}" for u in truth_user],
            "item_id": [f"i{i:02d}" for i in rng.integers(0, items, truth_user.size)],
        }
    )
    return recs, truth


def trec_run(ranked: pl.DataFrame, k: int | None = None) -> dict[str, dict[str, float]]:
    """A trec_eval run from our positions: score = -pos, so trec_eval's order is ours."""
    if k is not None:
        ranked = ranked.filter(pl.col("pos") <= k)
    run: dict[str, dict[str, float]] = {}
    for user, item, pos in ranked.iter_rows():
        run.setdefault(user, {})[item] = -float(pos)
    return run


def trec_qrels(truth: pl.DataFrame) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for user, item in truth.iter_rows():
        qrels.setdefault(user, {})[item] = 1
    return qrels


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_metric_equals_trec_eval(seed: int) -> None:
    recs, truth = random_data(seed)
    ranked = rank_lists(recs)
    ours = user_metrics(recs, truth, ks=KS, map_denominator="relevant").per_user
    measures = {f"{m}.{CUTS}" for m in MEASURES.values()}
    evaluator = pytrec_eval.RelevanceEvaluator(trec_qrels(truth), measures)
    theirs: dict[str, dict[str, Any]] = evaluator.evaluate(trec_run(ranked))

    # trec_eval leaves out users with relevant items but no list; we keep them with zeros.
    listed = ours.filter(pl.col("n_recommended") > 0)
    assert sorted(theirs) == listed["user_id"].to_list()
    assert (
        (ours.filter(pl.col("n_recommended") == 0).select(pl.col("^.*@.*$")) == 0).to_numpy().all()
    )
    for metric, measure in MEASURES.items():
        for k in KS:
            column = f"{metric}@{k}"
            expected = np.array([theirs[u][f"{measure}_{k}"] for u in listed["user_id"]])
            np.testing.assert_allclose(listed[column].to_numpy(), expected, rtol=0, atol=1e-9)
            # Means: trec_eval's over its users, counted with zeros for the users it left out.
            padded = np.concatenate([expected, np.zeros(ours.height - listed.height)])
            assert ours[column].mean() == pytest.approx(padded.mean(), abs=1e-9)


@pytest.mark.parametrize("seed", [4, 5])
def test_mrr_equals_trec_eval_recip_rank_on_lists_cut_to_k(seed: int) -> None:
    recs, truth = random_data(seed)
    ranked = rank_lists(recs)
    ours = user_metrics(recs, truth, ks=KS, metrics=["mrr"]).per_user
    evaluator = pytrec_eval.RelevanceEvaluator(trec_qrels(truth), {"recip_rank"})
    for k in KS:
        theirs = evaluator.evaluate(trec_run(ranked, k))
        got = dict(zip(ours["user_id"], ours[f"mrr@{k}"], strict=True))
        assert set(theirs) <= set(got)
        for user, value in got.items():
            expected = theirs[user]["recip_rank"] if user in theirs else 0.0
            assert value == pytest.approx(expected, abs=1e-9), (user, k)


def test_map_with_the_default_denominator_differs_from_trec_eval_only_by_min_k() -> None:
    recs, truth = random_data(6)
    relevant = user_metrics(recs, truth, ks=[5], metrics=["map"], map_denominator="relevant")
    default = user_metrics(recs, truth, ks=[5], metrics=["map"]).per_user
    rescaled = relevant.per_user["map@5"] * default["n_relevant"] / default["n_relevant"].clip(0, 5)
    np.testing.assert_allclose(default["map@5"].to_numpy(), rescaled.to_numpy(), atol=1e-12)
