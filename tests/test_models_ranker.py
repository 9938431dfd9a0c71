"""The LightGBM ranker: objectives learn planted signals, deterministic, saved as text."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsim_cli.errors import ConfigError, DatasetError, UnknownNameError
from recsim_cli.models.features import FEATURES
from recsim_cli.models.ranker import (
    DEFAULT_PARAMS,
    Ranker,
    validate_params,
    watch_grades,
)

FAST = {"num_boost_round": 40, "min_data_in_leaf": 20, "num_leaves": 15}


def planted(n: int = 3000, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame, np.ndarray]:
    """Noise features, except ``user_cat_affinity``, which sets P(click); slates of 10 rows."""
    rng = np.random.default_rng(seed)
    X = pl.DataFrame({name: rng.random(n) for name in FEATURES}).with_columns(
        pl.Series("device", rng.integers(0, 5, n), dtype=pl.Int32),
        pl.lit(100.0).alias("duration_s"),
    )
    p = 1 / (1 + np.exp(-(8 * X["user_cat_affinity"].to_numpy() - 5)))
    clicked = rng.random(n) < p
    examples = pl.DataFrame(
        {
            "clicked": clicked,
            "watch_time_s": np.where(clicked, rng.uniform(10, 100, n), 0.0),
            "query_id": np.arange(n) // 10,
        }
    )
    return X, examples, p


def auc(score: np.ndarray, label: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties half."""
    pos, neg = score[label], score[~label]
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + ties / 2)


@pytest.mark.parametrize("objective", ["watch_time", "click", "lambdarank"])
def test_each_objective_learns_the_planted_signal(objective: str) -> None:
    X, examples, _ = planted()
    ranker = Ranker(objective, FAST, seed=3)  # type: ignore[arg-type]
    summary = ranker.fit(X, examples)
    assert summary.importance[0][0] == "user_cat_affinity"
    assert summary.examples == X.height
    assert summary.positives == int(examples["clicked"].sum())
    assert summary.queries == (300 if objective == "lambdarank" else 0)
    assert summary.rounds == 40
    assert np.isfinite(summary.loss)
    assert summary.metric == ("1-ndcg@10" if objective == "lambdarank" else "binary_logloss")
    X_new, examples_new, _ = planted(seed=1)
    label = examples_new["clicked"].to_numpy()
    assert auc(ranker.predict(X_new), label) > 0.75
    if objective == "click":
        assert ((ranker.predict(X_new) > 0) & (ranker.predict(X_new) < 1)).all()
    json.dumps(summary.to_dict())


def test_watch_time_ranks_long_watches_above_equal_clicks() -> None:
    """Two kinds of item alike in click rate; one is watched for long, the other briefly."""
    rng = np.random.default_rng(0)
    n = 4000
    long_kind = np.arange(n) % 2 == 0
    clicked = rng.random(n) < 0.2
    watch = np.where(clicked, np.where(long_kind, 200.0, 5.0), 0.0)
    examples = pl.DataFrame({"clicked": clicked, "watch_time_s": watch})
    params = {**FAST, "learning_rate": 0.2}
    for noise in (False, True):
        X = pl.DataFrame(
            {name: rng.random(n) if noise else np.zeros(n) for name in FEATURES}
        ).with_columns(
            pl.Series("item_age_h", long_kind.astype(float)), pl.lit(1, pl.Int32).alias("device")
        )
        by_watch = Ranker("watch_time", params, seed=0)
        by_watch.fit(X, examples)
        odds = by_watch.predict(X)
        assert odds[long_kind].mean() > 10 * odds[~long_kind].mean()
        if not noise:
            # the odds are the weighted odds of each kind: watch seconds / unclicked rows
            for kind in (long_kind, ~long_kind):
                expected = watch[kind].sum() / (~clicked[kind]).sum()
                assert odds[kind] == pytest.approx(expected, rel=0.01)
        by_click = Ranker("click", params, seed=0)
        by_click.fit(X, examples)
        p = by_click.predict(X)
        assert p[long_kind].mean() == pytest.approx(p[~long_kind].mean(), abs=0.05)


def test_lambdarank_grades_bucket_the_watched_fraction() -> None:
    clicked = np.array([False, True, True, True, True, True, True, True])
    watch = np.array([50.0, 0.0, 24.0, 25.0, 60.0, 75.0, 500.0, 30.0])
    duration = np.array([100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0, np.nan])
    assert watch_grades(clicked, watch, duration).tolist() == [0, 1, 1, 2, 3, 4, 4, 1]


def test_lambdarank_accepts_unsorted_and_single_row_queries() -> None:
    X, examples, _ = planted(n=2000)
    examples = examples.with_columns(
        pl.Series("query_id", np.random.default_rng(0).integers(0, 1500, X.height))
    )
    ranker = Ranker("lambdarank", FAST, seed=0)
    summary = ranker.fit(X, examples)
    assert summary.queries == examples["query_id"].n_unique()
    assert ranker.predict(X).shape == (X.height,)


def test_same_seed_gives_identical_model_text() -> None:
    X, examples, _ = planted(n=1500)
    params = {**FAST, "feature_fraction": 0.7}
    first = Ranker("watch_time", params, seed=7)
    second = Ranker("watch_time", params, seed=7)
    first.fit(X, examples)
    second.fit(X, examples)
    assert first.model_text() == second.model_text()
    other = Ranker("watch_time", params, seed=8)
    other.fit(X, examples)
    assert other.model_text() != first.model_text()


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    X, examples, _ = planted(n=1500)
    ranker = Ranker("click", FAST, seed=1)
    ranker.fit(X, examples)
    ranker.save(tmp_path / "ranker")
    assert sorted(p.name for p in (tmp_path / "ranker").iterdir()) == ["ranker.json", "ranker.txt"]
    meta = json.loads((tmp_path / "ranker" / "ranker.json").read_text())
    assert meta["objective"] == "click"
    assert meta["features"] == list(FEATURES)
    assert meta["params"]["num_boost_round"] == 40
    loaded = Ranker.load(tmp_path / "ranker")
    assert loaded.objective == "click"
    assert loaded.params == ranker.params
    np.testing.assert_array_equal(loaded.predict(X), ranker.predict(X))
    assert loaded.model_text() == ranker.model_text()


def test_fit_reports_progress() -> None:
    X, examples, _ = planted(n=1000)
    calls: list[tuple[str, int, int | None]] = []
    Ranker("click", {**FAST, "num_boost_round": 5}, seed=0).fit(
        X, examples, progress=lambda task, done, total: calls.append((task, done, total))
    )
    assert calls == [("rank", i, 5) for i in range(1, 6)]


def test_unknown_or_bad_params_are_config_errors() -> None:
    with pytest.raises(ConfigError) as err:
        Ranker("click", {"num_leafs": 8})
    assert str(err.value) == (
        "Unknown ranker parameter 'num_leafs'; valid: " + ", ".join(sorted(DEFAULT_PARAMS)) + "."
    )
    with pytest.raises(ConfigError, match="'learning_rate' must be a number above 0"):
        Ranker("click", {"learning_rate": 0})
    with pytest.raises(ConfigError, match="'num_leaves' must be an integer at least 2"):
        Ranker("click", {"num_leaves": 2.5})
    with pytest.raises(UnknownNameError, match="Available: click, lambdarank, watch_time"):
        Ranker("ndcg")  # type: ignore[arg-type]
    assert validate_params({"num_leaves": 8.0})["num_leaves"] == 8


def test_no_clicks_is_a_dataset_error() -> None:
    X, examples, _ = planted(n=200)
    with pytest.raises(DatasetError, match="no clicks"):
        Ranker("click", FAST).fit(X, examples.with_columns(pl.lit(False).alias("clicked")))


@pytest.mark.parametrize(
    "damage",
    [
        lambda folder: (folder / "ranker.txt").write_text("tree\nnot a model\n"),
        lambda folder: (folder / "ranker.txt").unlink(),
        lambda folder: (folder / "ranker.json").write_text("{"),
        lambda folder: (folder / "ranker.json").write_text(
            json.dumps({"format_version": 1, "objective": "click", "features": ["a"]})
        ),
    ],
    ids=["corrupt-model", "missing-model", "corrupt-json", "other-features"],
)
def test_damaged_files_say_to_retrain(tmp_path: Path, damage) -> None:
    X, examples, _ = planted(n=500)
    ranker = Ranker("click", FAST)
    ranker.fit(X, examples)
    folder = tmp_path / "ranker"
    ranker.save(folder)
    damage(folder)
    with pytest.raises(DatasetError, match=r"retrain it with `recsim train --force`\.$"):
        Ranker.load(folder)


def test_missing_folder_says_to_retrain(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="is missing or corrupt"):
        Ranker.load(tmp_path / "nowhere")


def test_importing_the_ranking_stage_does_not_import_lightgbm() -> None:
    code = (
        "import sys, recsim_cli.models.ranker, recsim_cli.models.features; "
        "sys.exit('lightgbm' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
