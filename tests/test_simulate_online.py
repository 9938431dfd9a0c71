"""The true online A/B test in a world: list policies, common random numbers, the CLI."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner, Result

from recsim_cli.cli import app
from recsim_cli.errors import ConfigError
from recsim_cli.rng import spawn_generators
from recsim_cli.simulate import World, WorldConfig, build_world, load_world
from recsim_cli.simulate.logs import id_series
from recsim_cli.simulate.online import (
    METRICS,
    ListPolicy,
    list_length,
    logged_policy,
    run_online_abtest,
    window_days,
)
from recsim_cli.simulate.policies import personal_scores

CONFIG = WorldConfig(users=400, items=300, days=4, slate_size=5, pool_size=20, seed=11)
DAYS = [2, 3]


@pytest.fixture(scope="module")
def world() -> World:
    return build_world(CONFIG, spawn_generators(CONFIG.seed, ["world"])["world"])


def lists_of(world: World, ranking: np.ndarray, days: list[int] = DAYS) -> pl.DataFrame:
    """daily_lists-shaped frame serving ``ranking`` (users, L) on every one of ``days``."""
    n_users, length = ranking.shape
    user, day, rank = np.meshgrid(np.arange(n_users), days, np.arange(length), indexing="ij")
    dates = [world.config.start + timedelta(days=int(d)) for d in days]
    return pl.DataFrame(
        {
            "user_id": id_series("u", world.config.users, 6).gather(user.ravel()),
            "day": pl.Series(dates, dtype=pl.Date).gather(np.searchsorted(days, day.ravel())),
            "rank": pl.Series(rank.ravel(), dtype=pl.Int32),
            "item_id": id_series("v", world.config.items, 6).gather(
                np.repeat(ranking[:, None, :], len(days), axis=1).ravel()
            ),
        }
    )


def random_ranking(world: World, seed: int = 0) -> np.ndarray:
    keys = np.random.default_rng(seed).random((world.config.users, world.config.items))
    return np.argsort(keys, axis=1)[:, : list_length(world)]


def best_ranking(world: World) -> np.ndarray:
    """Every user's items by true click appeal (the `personal` oracle's score), best first."""
    users = np.arange(world.config.users)[:, None]
    items = np.arange(world.config.items)[None, :]
    score = personal_scores(world, users, items)
    return np.argsort(-score, axis=1, kind="stable")[:, : list_length(world)]


# -- the list policy ----------------------------------------------------------------------------


def test_slate_k_shows_ranks_kS_to_kS_plus_S_with_propensity_one(world: World) -> None:
    ranking = random_ranking(world)
    policy = ListPolicy.from_lists(world, lists_of(world, ranking), 5, days=DAYS)
    assert (policy.max_slates, policy.slate_size, policy.epsilon) == (4, 5, 0.0)
    users = np.arange(world.config.users).repeat(2)
    days = np.tile(np.asarray(DAYS), world.config.users)
    rng = np.random.default_rng(0)
    for k in range(policy.max_slates):
        shown = policy.slates(users, days, np.full(len(users), k), rng)
        np.testing.assert_array_equal(shown.items, ranking[users, 5 * k : 5 * k + 5])
        assert (shown.propensity == 1.0).all()
        assert not shown.explore.any()


def test_exploring_slates_have_exact_propensities(world: World) -> None:
    epsilon, length = 0.3, list_length(world)
    ranking = random_ranking(world)
    policy = ListPolicy.from_lists(world, lists_of(world, ranking), 5, days=DAYS, epsilon=epsilon)
    n = 20_000
    users, days, slate = np.full(n, 7), np.full(n, DAYS[0]), np.full(n, 1)
    shown = policy.slates(users, days, slate, np.random.default_rng(1))
    share = shown.explore.mean()
    assert abs(share - epsilon) < 4 * np.sqrt(epsilon * (1 - epsilon) / n)
    at_slot = shown.items == ranking[7, 5:10]
    hit, miss = (1 - epsilon) + epsilon / length, epsilon / length
    np.testing.assert_allclose(shown.propensity, np.where(at_slot, hit, miss))
    assert at_slot[~shown.explore].all()
    explored = shown.items[shown.explore]
    assert np.isin(explored, ranking[7]).all()
    assert all(len(set(row)) == 5 for row in explored[:200].tolist())
    # an explored slate puts every list item at position 0 with probability 1/L
    counts = np.bincount(np.searchsorted(np.sort(ranking[7]), explored[:, 0]), minlength=length)
    assert counts.min() > 0


def test_lists_must_be_full_and_of_this_world(world: World) -> None:
    lists = lists_of(world, random_ranking(world))
    with pytest.raises(ConfigError) as err:
        ListPolicy.from_lists(
            world,
            lists.filter(~((pl.col("user_id") == "u000005") & (pl.col("rank") == 19))),
            5,
            days=DAYS,
            source="the lists of r.csv",
        )
    assert str(err.value) == (
        "the lists of r.csv have no full list of 20 items for user u000005 on 2026-01-07; give "
        "every user of the world at least 20 items (ranks 1..20) on every day of the window."
    )
    with pytest.raises(ConfigError) as err:
        ListPolicy.from_lists(world, lists, 5, days=[1, 2, 3])
    assert "for user u000000 on 2026-01-06" in str(err.value)
    stranger = lists.with_columns(pl.col("item_id").replace("v000003", "x9"))
    with pytest.raises(ConfigError) as err:
        ListPolicy.from_lists(world, stranger, 5, days=DAYS)
    assert str(err.value) == (
        "the lists name item 'x9', which is not in this world (ids run v000000..v000299); "
        "make the lists from this world's logs."
    )


def test_the_window_must_be_whole_days_of_the_world(world: World) -> None:
    from recsim_cli.experiment.arms import parse_window

    np.testing.assert_array_equal(
        window_days(world, *parse_window("2026-01-07..2026-01-09")), [2, 3]
    )
    with pytest.raises(ConfigError) as err:
        window_days(world, *parse_window("2026-01-07..2026-01-12"))
    assert str(err.value) == (
        "The window 2026-01-07T00:00:00Z..2026-01-12T00:00:00Z is not inside the world's days "
        "2026-01-05..2026-01-09 (end exclusive); choose a --window inside them, or models "
        "trained on this world's logs."
    )
    with pytest.raises(ConfigError, match="must start and end at midnight UTC"):
        window_days(world, *parse_window("2026-01-07T06:00:00Z..2026-01-08"))


# -- the experiment ---------------------------------------------------------------------------


def test_an_a_a_test_has_a_lift_of_exactly_zero(world: World) -> None:
    lists = lists_of(world, random_ranking(world))
    first = ListPolicy.from_lists(world, lists, 5, days=DAYS)
    second = ListPolicy.from_lists(world, lists, 5, days=DAYS)
    truth = run_online_abtest(world, first, second, days=DAYS, replicates=3, seed=5)
    assert truth.lift == dict.fromkeys(METRICS, 0.0)
    assert truth.lift_mc_se == dict.fromkeys(METRICS, 0.0)
    assert truth.control.metrics == truth.treatment.metrics
    logged = run_online_abtest(
        world, logged_policy(world, DAYS), logged_policy(world, DAYS), days=DAYS, replicates=2
    )
    assert logged.lift == dict.fromkeys(METRICS, 0.0)


def test_the_oracle_beats_random_lists(world: World) -> None:
    control = ListPolicy.from_lists(world, lists_of(world, random_ranking(world)), 5, days=DAYS)
    treatment = ListPolicy.from_lists(world, lists_of(world, best_ranking(world)), 5, days=DAYS)
    truth = run_online_abtest(world, control, treatment, days=DAYS, replicates=4, seed=1)
    for name in ("first_slate_clicks", "first_slate_ctr", "watch_time", "session_depth"):
        assert truth.lift[name] > 0.5, (name, truth.lift[name])
        assert truth.lift[name] > 5 * truth.lift_mc_se[name]
    c = truth.control
    assert c.metrics["ctr"] == c.metrics["slate_ctr"]
    assert 0 < c.metrics["first_slate_ctr"] < 1
    assert c.metrics["slates_per_session"] >= 1
    assert [row["slate"] for row in c.per_slate] == [0, 1, 2, 3]
    assert c.per_slate[0]["reach"] == 1.0
    assert c.per_slate[0]["slates_reached"] == truth.sessions_per_replicate
    assert truth.sessions_per_replicate > 100
    assert truth.users == world.config.users
    assert [str(t.date()) for t in truth.window] == ["2026-01-07", "2026-01-09"]


def test_the_same_seed_gives_the_same_truth(world: World) -> None:
    control = ListPolicy.from_lists(world, lists_of(world, random_ranking(world)), 5, days=DAYS)
    treatment = logged_policy(world, DAYS)

    def run(seed: int) -> dict[str, object]:
        return run_online_abtest(
            world, control, treatment, days=DAYS, replicates=2, seed=seed
        ).to_dict()

    first = run(3)
    assert json.dumps(first, sort_keys=True) == json.dumps(run(3), sort_keys=True)
    assert first["control"] != run(4)["control"]
    assert first["replicates"] == 2 and first["seed"] == 3
    assert set(first["lift"]) == set(METRICS)
    assert first["lift_mc_se"]["ctr"] is not None


# -- the command --------------------------------------------------------------------------------


def recsim(*args: object) -> Result:
    # wide, so the table's header stays on one line
    runner = CliRunner(env={"COLUMNS": "200"})
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny world, its logs ingested, `pop` trained, and pop's lists for every world user."""
    root = tmp_path_factory.mktemp("online")
    tiny = ["--users", "200", "--items", "300", "--days", "5", "--slate-size", "5"]
    ok(recsim("simulate", *tiny, "--pool-size", "20", "--seed", "3", "--out", root / "world"))
    world = root / "world"
    ok(
        recsim(
            "ingest",
            world / "events.csv.gz",
            "--items",
            world / "items.csv.gz",
            "--data",
            root / "data",
        )
    )
    ok(
        recsim(
            "train",
            "pop",
            "--data",
            root / "data",
            "--registry",
            root / "models",
            "--candidates",
            "popular",
            "--ranker",
            "none",
        )
    )
    users = root / "users.txt"
    users.write_text("\n".join(id_series("u", 200, 6).to_list()) + "\n", encoding="utf-8")
    for k, name in ((20, "recs.csv"), (5, "short.csv")):
        ok(
            recsim(
                "recommend",
                "pop",
                "--registry",
                root / "models",
                "--users",
                users,
                "--k",
                k,
                "--out",
                root / name,
            )
        )
    return root


def abtest(lab: Path, *args: object) -> Result:
    return recsim(
        "simulate",
        "abtest",
        "--world",
        lab / "world",
        "--registry",
        lab / "models",
        "--replicates",
        3,
        *args,
    )


def test_the_command_prints_json_and_writes_the_report(lab: Path) -> None:
    report = lab / "truth.json"
    out = ok(abtest(lab, "--control", "logged", "--treatment", "pop", "--json", "--report", report))
    data = json.loads(out)
    assert json.loads(report.read_text(encoding="utf-8")) == data
    again = ok(abtest(lab, "--control", "logged", "--treatment", "pop", "--json"))
    assert again == out  # same seed, same bytes
    assert data["window"] == {"start": "2026-01-08T00:00:00Z", "end": "2026-01-10T00:00:00Z"}
    assert (data["control"]["label"], data["treatment"]["label"]) == ("logged", "pop")
    assert data["treatment"]["arm"]["kind"] == "model"
    assert data["treatment"]["arm"]["cutoff"] == "2026-01-08T00:00:00Z"
    assert (data["replicates"], data["seed"], data["users"]) == (3, 0, 200)
    assert set(data["lift"]) == set(METRICS)
    world = load_world(lab / "world")
    assert len(data["control"]["per_slate"]) == world.config.pool_size // world.config.slate_size


def test_the_command_prints_a_table_and_a_file_arm_serves_every_day(lab: Path) -> None:
    out = ok(abtest(lab, "--control", lab / "recs.csv", "--treatment", "pop", "--seed", "2"))
    for text in (
        "online A/B test in the world",
        "control (recs.csv)",
        "treatment (pop)",
        "first_slate_clicks",
        "lift MC SE",
        "2026-01-08T00:00:00Z .. 2026-01-10T00:00:00Z",
    ):
        assert text in out, text
    # pop's file was made as of its cutoff, pop's lists each midnight: the first day is the same
    data = json.loads(
        ok(
            abtest(
                lab,
                "--control",
                lab / "recs.csv",
                "--treatment",
                "pop",
                "--window",
                "2026-01-08..2026-01-09",
                "--json",
            )
        )
    )
    assert data["lift"] == dict.fromkeys(METRICS, 0.0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--control", "nosuch", "--treatment", "pop"],
            "Unknown model 'nosuch'. Available: pop; or give `logged` (the logging policy) or a "
            "recommendations file (.csv, .csv.gz, .tsv, .tsv.gz, .parquet).",
        ),
        (
            ["--control", "logged", "--treatment", "{lab}/recs.csv"],
            "--window START..END is required when no arm is a registry model (files and logged "
            "have no training cutoff); e.g. --window 2026-01-12..2026-01-15.",
        ),
        (
            ["--control", "{lab}/short.csv", "--treatment", "pop"],
            "the lists of short.csv have no full list of 20 items for user u000000 on "
            "2026-01-08; give every user of the world at least 20 items (ranks 1..20) on every "
            "day of the window.",
        ),
        (
            ["--control", "pop", "--treatment", "logged", "--window", "2026-01-08..2026-01-20"],
            "The window 2026-01-08T00:00:00Z..2026-01-20T00:00:00Z is not inside the world's "
            "days 2026-01-05..2026-01-10 (end exclusive); choose a --window inside them, or "
            "models trained on this world's logs.",
        ),
    ],
)
def test_mistakes_exit_2_with_one_sentence(lab: Path, args: list[str], message: str) -> None:
    result = abtest(lab, *(a.format(lab=lab) for a in args))
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr == f"Error: {message}\n"
