"""Live policies split by user: arms in the config, the policy registry, the split, the logs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner, Result

from recsim_cli.cli import app
from recsim_cli.errors import ConfigError, UnknownNameError
from recsim_cli.rng import spawn_generators
from recsim_cli.simulate import (
    POLICIES,
    Arm,
    SplitPolicy,
    WorldConfig,
    arms_from_names,
    build_world,
    events_frame,
    get_policy,
    load_world,
    simulate_logs,
)
from recsim_cli.simulate.policies import FRESH_WEIGHT, assign_arms, personal_scores
from recsim_cli.simulate.policy import production_scores
from recsim_cli.simulate.run import STAGES

SMALL = {"users": 300, "items": 400, "days": 3, "seed": 5}
CONFIG = WorldConfig(users=50, items=400, days=3, slate_size=5, pool_size=40, epsilon=0.3)


def split_config(*names: str, shares: list[float] | None = None, **changes: int) -> WorldConfig:
    return WorldConfig(**{**SMALL, **changes}, arms=arms_from_names(list(names), shares))


# --- arms in the config -----------------------------------------------------------------------


def test_arms_from_names_labels_and_normalises_shares() -> None:
    assert arms_from_names(["prod", "explore"]) == (
        Arm("prod", "prod", 0.5),
        Arm("explore", "explore", 0.5),
    )
    assert arms_from_names(["A=prod", "B = prod"], [20, 80]) == (
        Arm("A", "prod", 0.2),
        Arm("B", "prod", 0.8),
    )


@pytest.mark.parametrize(
    ("names", "shares", "error", "message"),
    [
        (
            ["prod"],
            None,
            ConfigError,
            "--policies needs at least two policies separated by commas, e.g. prod,explore; "
            "got 'prod'.",
        ),
        (
            ["prod", "explore"],
            [1, 2, 3],
            ConfigError,
            "--split has 3 shares but --policies names 2 arms; give one share per arm, "
            "e.g. --split 50/50.",
        ),
        (
            ["prod", "bandit"],
            None,
            UnknownNameError,
            "Unknown logging policy 'bandit'. Available: explore, fresh, personal, prod.",
        ),
        (
            ["prod", "prod"],
            None,
            ConfigError,
            "arm label 'prod' is given twice; label the arms apart, e.g. --policies A=prod,B=prod.",
        ),
        (
            ["a b=prod", "explore"],
            None,
            ConfigError,
            "arm label 'a b' must start with a letter or digit and hold only letters, digits, "
            "'_', '.' and '-'.",
        ),
    ],
)
def test_bad_arms_raise_one_sentence(
    names: list[str], shares: list[float] | None, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        WorldConfig(**SMALL, arms=arms_from_names(names, shares))
    assert str(info.value) == message


def test_shares_must_sum_to_one() -> None:
    with pytest.raises(ConfigError, match=r"^the arms' shares must sum to 1; got 0\.9\.$"):
        WorldConfig(arms=(Arm("a", "prod", 0.5), Arm("b", "explore", 0.4)))


def test_arms_round_trip_through_json_and_are_absent_by_default() -> None:
    config = split_config("A=prod", "fresh", "personal", shares=[1, 1, 2])
    text = json.dumps(config.to_dict(), sort_keys=True)
    assert WorldConfig.from_dict(json.loads(text)) == config
    assert config.to_dict()["arms"][2] == {"label": "personal", "policy": "personal", "share": 0.5}
    assert "arms" not in WorldConfig().to_dict()
    data = config.to_dict()
    data["arms"][0]["weight"] = 1
    with pytest.raises(ConfigError, match="each arm must be an object with exactly the keys"):
        WorldConfig.from_dict(data)


def test_the_registry_names_its_policies() -> None:
    assert sorted(POLICIES) == ["explore", "fresh", "personal", "prod"]
    assert get_policy("fresh").name == "fresh"
    with pytest.raises(UnknownNameError, match=r"Available: explore, fresh, personal, prod\.$"):
        get_policy("Prod")


# --- assignment and the split -------------------------------------------------------------------


def test_assignment_follows_the_split() -> None:
    n, shares = 40_000, [0.2, 0.3, 0.5]
    arm = assign_arms(n, shares, np.random.default_rng(0))
    observed = np.bincount(arm, minlength=3) / n
    se = np.sqrt(np.asarray(shares) * (1 - np.asarray(shares)) / n)
    assert np.all(np.abs(observed - shares) < 4 * se)


def test_every_user_sees_only_their_arm_and_its_exact_propensities() -> None:
    config = split_config("prod", "explore", "personal", users=400)
    logs = simulate_logs(config)
    split = logs.policy
    assert isinstance(split, SplitPolicy)
    events = events_frame(logs.world, logs.sessions, logs.impressions, logs.user_arm)
    imp = logs.impressions
    users = logs.sessions.user[imp.session]
    days = logs.sessions.day[imp.session]
    arm = split.user_arm[users]
    for a, policy in enumerate(split.policies):
        rows = np.flatnonzero(arm == a)
        assert rows.size
        recomputed = policy.propensity(
            users[rows], days[rows], imp.slate[rows], imp.position[rows], imp.item[rows]
        )
        np.testing.assert_array_equal(recomputed, imp.propensity[rows])
    explore = events.filter(pl.col("policy") == "explore")
    assert explore["explore"].all()
    assert (explore["propensity"] == 1 / config.pool_size).all()
    labels = events.group_by("user_id").agg(pl.col("policy").n_unique())
    assert (labels["policy"] == 1).all()


def _one_user_day_policy(name: str, world_seed: int = 3):
    world = build_world(CONFIG, np.random.default_rng(world_seed))
    noise = np.random.default_rng(9).standard_normal((CONFIG.days, CONFIG.items)) * 1.5
    policy = get_policy(name).build(
        world, np.array([7]), np.array([1]), np.random.default_rng(0), noise
    )
    return world, noise, policy


@pytest.mark.parametrize("name", sorted(POLICIES))
@pytest.mark.parametrize("slate", [0, 2])
def test_named_policy_propensities_match_empirical_frequencies(name: str, slate: int) -> None:
    """Each (item, position) count over many slates of one user-day is Binomial(N, pi_b)."""
    from scipy import stats

    _, _, policy = _one_user_day_policy(name)
    n, size, c, eps = 40_000, CONFIG.slate_size, CONFIG.pool_size, policy.epsilon
    shown = policy.slates(np.full(n, 7), np.full(n, 1), np.full(n, slate), np.random.default_rng(1))
    rank_of = {int(item): r for r, item in enumerate(policy.ranking[0])}
    ranks = np.vectorize(rank_of.__getitem__)(shown.items)
    counts = np.zeros((c, size))
    np.add.at(counts, (ranks, np.broadcast_to(np.arange(size), ranks.shape)), 1)
    expected = np.full((c, size), eps / c)
    expected[slate * size + np.arange(size), np.arange(size)] += 1 - eps
    z = (counts - n * expected) / np.sqrt(n * expected * (1 - expected))
    assert np.abs(z).max() < 5
    for p in range(size):
        assert stats.chisquare(counts[:, p], n * expected[:, p]).pvalue > 1e-4
    np.testing.assert_allclose(shown.propensity, expected[ranks, np.arange(size)])


def test_each_policy_ranks_as_documented() -> None:
    world, noise, prod = _one_user_day_policy("prod")
    _, _, explore = _one_user_day_policy("explore")
    _, _, fresh = _one_user_day_policy("fresh")
    _, _, personal = _one_user_day_policy("personal")
    assert (prod.epsilon, explore.epsilon, fresh.epsilon, personal.epsilon) == (0.3, 1.0, 0.3, 0.3)
    day = 1
    for policy, weight in ((prod, None), (fresh, FRESH_WEIGHT)):
        scores = production_scores(world, noise, weight)[day, policy.ranking[0]]
        assert (np.diff(scores) <= 0).all()
    appeal = personal_scores(world, np.array([[7]]), personal.ranking)[0]
    assert (np.diff(appeal) <= 0).all()
    # all four rank the same pool (drawn from the same generator state)
    for policy in (explore, fresh, personal):
        assert sorted(policy.ranking[0]) == sorted(prod.ranking[0])


def test_arms_share_the_daily_production_noise() -> None:
    """Two arms of one policy rank by the same daily scores: a true A/A test."""
    config = split_config("A=prod", "B=prod", users=200)
    logs = simulate_logs(config)
    noise_rng = spawn_generators(config.seed, STAGES)["pools"]
    noise = noise_rng.standard_normal((config.days, config.items))
    scores = production_scores(logs.world, noise * config.logging.production_noise)
    assert isinstance(logs.policy, SplitPolicy)
    for policy in logs.policy.policies:
        day = policy.keys % config.days
        ranked = np.take_along_axis(scores[day], policy.ranking, axis=1)
        assert (np.diff(ranked, axis=1) <= 0).all()


# --- logs -------------------------------------------------------------------------------------


def test_policy_column_only_with_arms_and_in_contract_order() -> None:
    plain = simulate_logs(WorldConfig(**SMALL))
    frame = events_frame(plain.world, plain.sessions, plain.impressions, plain.user_arm)
    assert "policy" not in frame.columns
    logs = simulate_logs(split_config("prod", "fresh"))
    frame = events_frame(logs.world, logs.sessions, logs.impressions, logs.user_arm)
    assert frame.columns[-3:] == ["propensity", "policy", "explore"]
    assert set(frame["policy"].unique()) == {"prod", "fresh"}


def test_same_config_same_logs_and_the_control_arm_ignores_the_treatment() -> None:
    def prod_events(second: str) -> pl.DataFrame:
        logs = simulate_logs(split_config("prod", second))
        frame = events_frame(logs.world, logs.sessions, logs.impressions, logs.user_arm)
        return frame.filter(pl.col("policy") == "prod")

    first = prod_events("explore")
    assert first.equals(prod_events("explore"))
    assert first.equals(prod_events("personal"))


def test_summary_reports_each_arm() -> None:
    summary = simulate_logs(split_config("prod", "personal", shares=[1, 3])).summary()
    assert [(a.label, a.share) for a in summary.arms] == [("prod", 0.25), ("personal", 0.75)]
    assert sum(a.impressions for a in summary.arms) == summary.impressions
    assert sum(a.users for a in summary.arms) == summary.users
    assert summary.to_dict()["arms"][1]["policy"] == "personal"
    assert "arms" not in simulate_logs(WorldConfig(**SMALL)).summary().to_dict()


# --- the command line -------------------------------------------------------------------------

CLI_SMALL = ["--users", "200", "--items", "300", "--days", "2", "--seed", "4"]


def simulate(args: list[str]) -> Result:
    return CliRunner().invoke(app, ["simulate", *CLI_SMALL, *args], catch_exceptions=False)


def test_cli_policies_and_split(tmp_path: Path) -> None:
    result = simulate(["--policies", "prod,B=explore", "--split", "30/70", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.stderr
    assert "arms" in result.stdout and "explore" in result.stdout
    config = load_world(tmp_path).config
    assert config.arms == (Arm("prod", "prod", 0.3), Arm("B", "explore", 0.7))
    events = pl.read_csv(tmp_path / "events.csv.gz")
    assert set(events["policy"].unique()) == {"prod", "B"}
    result = simulate(["--policies", "prod,B=explore", "--out", str(tmp_path / "j"), "--json"])
    assert [a["share"] for a in json.loads(result.stdout)["arms"]] == [0.5, 0.5]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--split", "50/50"],
            "--split needs --policies: name the policies to split users between.",
        ),
        (
            ["--policies", "prod,greedy"],
            "Unknown logging policy 'greedy'. Available: explore, fresh, personal, prod.",
        ),
        (
            ["--policies", "prod,explore", "--split", "50/x"],
            "--split 50/x: give positive numbers separated by '/', one per arm, e.g. 50/50.",
        ),
        (
            ["--policies", "prod,explore", "--split", "0/100"],
            "--split 0/100: give positive numbers separated by '/', one per arm, e.g. 50/50.",
        ),
    ],
)
def test_cli_policy_errors_exit_2_with_one_sentence(
    args: list[str], message: str, tmp_path: Path
) -> None:
    result = simulate([*args, "--out", str(tmp_path / "w")])
    assert result.exit_code == 2
    assert result.stderr == f"Error: {message}\n"
    assert not (tmp_path / "w").exists()


def test_help_names_every_registered_policy() -> None:
    result = CliRunner().invoke(app, ["simulate", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in POLICIES:
        assert name in result.stdout
