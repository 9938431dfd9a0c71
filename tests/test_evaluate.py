"""`recsim evaluate`: the held-out truth, the inputs, CIs, pairs, segments and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsim_cli.evaluate import Relevance, evaluate, mean_ci, sign_flip_p
from recsim_cli.ingest import ingest
from recsim_cli.models.config import TrainConfig
from recsim_cli.models.two_stage import recommend, train

SAMPLE_DATA = Path(__file__).resolve().parent.parent / "sample_data"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """sample_data ingested, and a registry with `pop` and `als` (no ranker, for speed)."""
    root = tmp_path_factory.mktemp("eval")
    data = root / "data"
    ingest(SAMPLE_DATA / "events.csv.gz", items=SAMPLE_DATA / "items.csv.gz", data=data)
    registry = root / "models"
    train("pop", data=data, registry=registry, config=TrainConfig("popular", ranker="none"))
    train("als", data=data, registry=registry, config=TrainConfig("als", ranker="none"))
    return data, registry


# -- the truth, on a tiny hand-made log ------------------------------------------------------


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """Three users over three days; the last day is held out (test_days 1)."""
    rows = [
        # user, item, ts, clicked, watch
        ("a", "i1", "2026-01-01T10:00:00Z", "true", "100"),  # a watched i1 before the window
        ("a", "i1", "2026-01-03T10:00:00Z", "true", "100"),  # ... and again in it: seen
        ("a", "i2", "2026-01-03T10:00:00Z", "true", "10"),  # short watch of i2 (10%)
        ("a", "i3", "2026-01-03T11:00:00Z", "false", "0"),
        ("b", "i3", "2026-01-02T10:00:00Z", "false", "0"),
        ("b", "i3", "2026-01-03T10:00:00Z", "true", "90"),  # b: long watch of i3 (90%)
        ("c", "i2", "2026-01-03T12:00:00Z", "true", "60"),  # c: new in the window
    ]
    log = tmp_path / "log.csv"
    log.write_text(
        "user_id,item_id,ts,clicked,watch_time_s,device\n"
        + "".join(f"{u},{i},{t},{c},{w},tv\n" for u, i, t, c, w in rows)
    )
    items = tmp_path / "items.csv"
    items.write_text(
        "item_id,published_ts,duration_s\n"
        "i1,2025-12-01T00:00:00Z,100\ni2,2025-12-01T00:00:00Z,100\ni3,2025-12-30T00:00:00Z,100\n"
    )
    data = tmp_path / "data"
    ingest(log, items=items, data=data)
    return data


def _recs(tmp_path: Path, rows: list[tuple[str, str, int]]) -> Path:
    path = tmp_path / "recs.csv"
    pl.DataFrame(rows, schema=["user_id", "item_id", "rank"], orient="row").write_csv(path)
    return path


def test_truth_rules_on_a_hand_made_log(tiny: Path, tmp_path: Path) -> None:
    recs = _recs(tmp_path, [("a", "i2", 1), ("b", "i3", 1), ("c", "i1", 1), ("z", "i1", 1)])
    report = evaluate(recs_files=[recs], data=tiny, ks="1", metrics="hit_rate", test_days=1)
    # a's i1 was clicked before the window: left out; a's i2 and b's i3 and c's i2 count
    assert report.relevant_pairs == 3
    assert report.users == 3
    assert report.new_users == 1  # c
    result = report.inputs[0]
    assert result.means["hit_rate@1"].mean == pytest.approx(2 / 3)
    assert result.users_without_relevant == 1  # z has a list but nothing relevant
    seg = result.segments["first_seen"]
    assert seg["new"]["hit_rate@1"].mean == 0.0
    assert seg["returning"]["hit_rate@1"].mean == 1.0
    with_seen = evaluate(
        recs_files=[recs], data=tiny, ks="1", metrics="hit_rate", test_days=1, include_seen=True
    )
    assert with_seen.relevant_pairs == 4


def test_watched_relevance_needs_the_fraction(tiny: Path, tmp_path: Path) -> None:
    recs = _recs(tmp_path, [("a", "i2", 1), ("b", "i3", 1), ("c", "i2", 1)])
    report = evaluate(
        recs_files=[recs],
        data=tiny,
        ks="1",
        metrics="recall",
        test_days=1,
        relevance=Relevance.parse("watched:0.5"),
    )
    # a's 10% watch of i2 is not relevant: only b (90%) and c (60%) remain
    assert report.users == 2
    assert report.inputs[0].means["recall@1"].mean == 1.0


@pytest.mark.parametrize("text", ["watched", "watched:0", "watched:1.5", "liked"])
def test_bad_relevance(text: str) -> None:
    from recsim_cli.errors import ConfigError

    with pytest.raises(ConfigError, match="--relevance"):
        Relevance.parse(text)


# -- statistics --------------------------------------------------------------------------------


def test_mean_ci_matches_scipy() -> None:
    from scipy import stats

    values = np.random.default_rng(3).random(50)
    mean, low, high = mean_ci(values)
    ref = stats.t.interval(0.95, 49, loc=values.mean(), scale=stats.sem(values))
    assert (low, high) == pytest.approx(ref, rel=1e-12)
    assert mean == pytest.approx(values.mean())


def test_sign_flip_p_is_small_for_a_clear_shift_and_uniformish_under_the_null() -> None:
    rng = np.random.default_rng(0)
    shifted = rng.normal(0.5, 1.0, (200, 1))
    assert sign_flip_p(shifted, 2000, np.random.default_rng(1))[0] < 0.01
    null = rng.normal(0.0, 1.0, (200, 400))
    p = sign_flip_p(null, 500, np.random.default_rng(2))
    assert 0.02 < (p <= 0.05).mean() < 0.09  # about 5% of 400 null columns


# -- models and files on sample_data ------------------------------------------------------------


def test_two_models_on_the_same_users_with_paired_tests(world: tuple[Path, Path]) -> None:
    data, registry = world
    report = evaluate(["pop", "als"], data=data, registry=registry, ks="5,10")
    assert [r.label for r in report.inputs] == ["pop", "als"]
    assert report.per_user.group_by("input").len()["len"].to_list() == [report.users] * 2
    als = report.inputs[1].means["ndcg@10"]
    pop = report.inputs[0].means["ndcg@10"]
    assert als.low <= als.mean <= als.high
    (base, other, tests) = report.pairs[0]
    assert (base, other) == ("pop", "als")
    by_name = {t.metric: t for t in tests}
    assert by_name["ndcg@10"].difference == pytest.approx(als.mean - pop.mean)
    assert all(t.adjusted_p >= t.p_value for t in tests)
    # seen on sample_data: ALS beats popularity on every metric at 10, Holm p < 0.01
    assert by_name["hit_rate@10"].adjusted_p < 0.01
    assert 0 < report.inputs[1].coverage <= 1
    assert report.new_users > 0


def test_a_file_of_a_models_lists_scores_like_the_model(
    world: tuple[Path, Path], tmp_path: Path
) -> None:
    data, registry = world
    recs = recommend("als", registry=registry, data=data, k=20).frame
    path = tmp_path / "als.parquet"
    recs.write_parquet(path)
    from_model = evaluate(["als"], data=data, registry=registry, ks="10")
    from_file = evaluate(recs_files=[path], data=data, ks="10", test_days=2)
    for name, ci in from_model.inputs[0].means.items():
        assert from_file.inputs[0].means[name].mean == pytest.approx(ci.mean, abs=1e-12), name


def test_bootstrap_and_permutations_are_seeded(world: tuple[Path, Path]) -> None:
    data, registry = world

    def run(seed: int) -> dict[str, object]:
        report = evaluate(
            ["pop", "als"],
            data=data,
            registry=registry,
            ks="10",
            metrics="ndcg",
            bootstrap=200,
            permutations=200,
            seed=seed,
        )
        return report.to_dict()

    assert run(1) == run(1)
    assert run(1) != run(2)


# -- the CLI -------------------------------------------------------------------------------------


def test_cli_table_json_and_per_user(invoke, world: tuple[Path, Path], tmp_path: Path) -> None:
    data, registry = world
    out = tmp_path / "report.json"
    users = tmp_path / "users.parquet"
    result = invoke(
        [
            "evaluate", "pop", "als", "--data", data, "--registry", registry, "--k", "10",
            "--by", "device", "--json", out, "--per-user", users,
        ]
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "@10: mean ± 95% CI over users" in result.stdout
    assert "als minus pop, per user" in result.stdout
    report = json.loads(out.read_text())
    assert report["definitions"]["precision"].startswith("hits in the top k / k")
    assert {i["label"] for i in report["inputs"]} == {"pop", "als"}
    assert "device" in report["inputs"][0]["segments"]
    assert set(pl.read_parquet(users)["input"].unique()) == {"pop", "als"}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--metrics", "ndgc"], "Unknown metric 'ndgc'. Available:"),
        (["--k", "0"], "--k"),
        (["--relevance", "liked"], "--relevance liked"),
        (["--map-denominator", "all"], "--map-denominator all"),
        (["--by", "nope"], "--by nope"),
    ],
)
def test_cli_errors_are_one_sentence_and_exit_2(
    invoke, world: tuple[Path, Path], args: list[str], needle: str
) -> None:
    data, registry = world
    result = invoke(["evaluate", "pop", "--data", data, "--registry", registry, *args])
    assert result.exit_code == 2, result.stdout + result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_file_with_missing_columns(invoke, world: tuple[Path, Path], tmp_path: Path) -> None:
    data, _ = world
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item\nu1,v1\n")
    result = invoke(["evaluate", "--recs", bad, "--data", data])
    assert result.exit_code == 2
    assert "needs columns user_id, item_id and rank or score" in result.stderr


def test_cli_model_whose_cutoff_leaves_no_held_out_data(
    invoke, world: tuple[Path, Path], tmp_path: Path
) -> None:
    data, _ = world
    registry = tmp_path / "models"
    config = TrainConfig("popular", ranker="none", test_days=0)
    train("everything", data=data, registry=registry, config=config)
    result = invoke(["evaluate", "everything", "--data", data, "--registry", registry])
    assert result.exit_code == 2
    assert "holds no events" in result.stderr
