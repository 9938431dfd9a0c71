"""`recsim abtest --control A --treatment B`: estimates of two models from logs, end to end."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner, Result

from recsim_cli.cli import app
from recsim_cli.ingest import ingest
from recsim_cli.models.config import TrainConfig
from recsim_cli.models.two_stage import train
from recsim_cli.simulate import WorldConfig, run_simulation

TINY_ALS = {"factors": 8, "iterations": 3}
SLATE_ONLY = "first_slate_ctr,first_slate_watch_time,slate_ctr"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small world whose logging pool is the whole catalogue, its dataset, two models."""
    root = tmp_path_factory.mktemp("offpolicy")
    config = WorldConfig(
        users=700, items=40, days=6, slate_size=5, pool_size=40, epsilon=0.6, seed=3
    )
    run_simulation(config, root / "world")
    ingest(
        root / "world" / "events.csv.gz", items=root / "world" / "items.csv.gz", data=root / "data"
    )
    registry = root / "models"
    train(
        "pop",
        data=root / "data",
        registry=registry,
        config=TrainConfig(candidates="popular", ranker="none", test_days=2),
    )
    train(
        "als",
        data=root / "data",
        registry=registry,
        config=TrainConfig(candidate_params=TINY_ALS, ranker_days=1, n_candidates=40, test_days=2),
    )
    return {"root": root, "data": root / "data", "registry": registry}


def abtest(world: dict[str, Path], *args: object) -> Result:
    base: Sequence[object] = ("abtest", "--data", world["data"], "--registry", world["registry"])
    return CliRunner().invoke(app, [str(a) for a in (*base, *args)], catch_exceptions=False)


def report_of(world: dict[str, Path], name: str, *args: object) -> tuple[Result, dict]:
    path = world["root"] / name
    result = abtest(world, *args, "--report", path)
    return result, json.loads(path.read_text(encoding="utf-8"))


def test_an_estimate_reports_each_metric_with_its_evidence(world: dict[str, Path]) -> None:
    result, report = report_of(
        world, "paired.json", "--control", "pop", "--treatment", "als", "--replicates", "2"
    )
    assert result.exit_code == 0, result.output
    assert report["mode"] == "off-policy"
    assert report["estimator"] == "snips"
    assert report["design"] == "paired"
    assert report["evidence"] == {
        "first_slate_ctr": "off-policy",
        "first_slate_watch_time": "off-policy",
        "watch_time": "model-based",
        "session_depth": "model-based",
    }
    assert set(report["diagnostics"]) == {"pop", "als"}
    for d in report["diagnostics"].values():
        assert d["effective_sample_size"] > 0
        assert d["mean_weight"] > 0
    assert report["session_model"] is not None
    assert report["window"]["start"] is not None
    assert "model-based" in result.stdout and "off-policy" in result.stdout


def test_the_same_seed_gives_the_same_report(world: dict[str, Path]) -> None:
    args = ("--control", "pop", "--treatment", "als", "--metrics", SLATE_ONLY, "--seed", "5")
    _, first = report_of(world, "a.json", *args)
    _, second = report_of(world, "b.json", *args)
    assert first == second


@pytest.mark.parametrize("estimator", ["ips", "snips", "replay", "dm", "dr"])
def test_every_estimator_runs_and_says_what_it_rests_on(
    world: dict[str, Path], estimator: str
) -> None:
    result, report = report_of(
        world,
        f"{estimator}.json",
        "--control",
        "pop",
        "--treatment",
        "als",
        "--estimator",
        estimator,
        "--metrics",
        SLATE_ONLY,
    )
    assert result.exit_code == 0, result.output
    assert report["estimator"] == estimator
    expected = "model-based" if estimator == "dm" else "off-policy"
    assert set(report["evidence"].values()) == {expected}
    assert (report["diagnostics"]["als"] is None) == (estimator == "dm")


def test_a_model_based_primary_cannot_ship(world: dict[str, Path]) -> None:
    gate = world["root"] / "model-gate.toml"
    gate.write_text(
        "min_effective_sample_size = 1\nmin_users_per_arm = 2\n\n"
        '[[primary]]\nmetric = "session_depth"\n',
        encoding="utf-8",
    )
    result, report = report_of(
        world,
        "gated.json",
        "--control",
        "pop",
        "--treatment",
        "als",
        "--gate",
        gate,
        "--replicates",
        "2",
    )
    assert report["decision"]["verdict"] != "ship"
    assert result.exit_code in (1, 3, 4)
    outcomes = {m["outcome"] for m in report["decision"]["metrics"]}
    assert "better" not in outcomes


def test_the_split_design_hashes_users_into_arms(world: dict[str, Path]) -> None:
    result, report = report_of(
        world,
        "split.json",
        "--control",
        "pop",
        "--treatment",
        "als",
        "--design",
        "split",
        "--traffic",
        "0.3",
        "--metrics",
        SLATE_ONLY,
    )
    assert result.exit_code == 0, result.output
    analysis = report["analysis"]
    assert analysis["settings"]["split"] == pytest.approx([0.7, 0.3])
    n_c, n_t = analysis["n_control"], analysis["n_treatment"]
    assert n_c + n_t == report["counts"]["users"]
    assert 0.2 < n_t / (n_c + n_t) < 0.4
    assert any(check["name"] == "sample_ratio" for check in analysis["health"])


def test_a_target_the_logs_never_show_is_invalid(world: dict[str, Path]) -> None:
    users = (
        pl.read_csv(world["root"] / "world" / "events.csv.gz")
        .select("user_id")
        .unique()
        .get_column("user_id")
    )
    recs = world["root"] / "unseen.csv"
    pl.DataFrame(
        {
            "user_id": users.to_list() * 2,
            "item_id": ["never-logged-1"] * users.len() + ["never-logged-2"] * users.len(),
            "rank": [1] * users.len() + [2] * users.len(),
        }
    ).write_csv(recs)
    result, report = report_of(
        world,
        "unseen.json",
        "--control",
        "logged",
        "--treatment",
        recs,
        "--window",
        "2026-01-09..2026-01-11",
        "--replicates",
        "1",
        "--gate",
        Path("examples/offpolicy-gate.toml").resolve(),
    )
    assert result.exit_code == 4, result.output
    d = report["diagnostics"]["unseen.csv"]
    assert d["mean_weight"] == 0
    assert d["unlogged_share"] > 0.3
    failed = [c["name"] for c in report["analysis"]["health"] if not c["passed"]]
    assert "weights:unseen.csv" in failed


# -- errors: one sentence, exit 2 -----------------------------------------------------------


def test_an_unknown_model_lists_the_models(world: dict[str, Path]) -> None:
    result = abtest(world, "--control", "pop", "--treatment", "alss")
    assert result.exit_code == 2
    assert "alss" in result.stderr and "pop" in result.stderr and "als" in result.stderr
    assert "Traceback" not in result.output


def test_an_empty_window_is_a_usage_error(world: dict[str, Path]) -> None:
    result = abtest(
        world, "--control", "pop", "--treatment", "als", "--window", "2027-01-01..2027-01-03"
    )
    assert result.exit_code == 2
    assert "holds no events" in result.stderr


def test_files_and_logged_need_a_window(world: dict[str, Path]) -> None:
    result = abtest(world, "--control", "logged", "--treatment", "pop")
    assert result.exit_code == 0 or "--window" in result.stderr
    recs = world["root"] / "recs-nowindow.csv"
    recs.write_text("user_id,item_id,rank\nu000001,v000001,1\n", encoding="utf-8")
    result = abtest(world, "--control", "logged", "--treatment", recs)
    assert result.exit_code == 2
    assert "--window" in result.stderr


def test_logs_without_propensities_refuse_weighting(world: dict[str, Path], tmp_path: Path) -> None:
    events = pl.read_csv(world["root"] / "world" / "events.csv.gz").drop("propensity", "explore")
    events.write_csv(tmp_path / "events.csv")
    ingest(
        tmp_path / "events.csv",
        items=world["root"] / "world" / "items.csv.gz",
        data=tmp_path / "data",
    )
    args = ("--control", "pop", "--treatment", "als", "--data", tmp_path / "data")
    result = abtest(world, *args, "--estimator", "ips")
    assert result.exit_code == 2
    assert "propensit" in result.stderr
    assert result.stderr.count("\n") == 1  # one sentence, no traceback
    result = abtest(world, *args, "--metrics", SLATE_ONLY, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["estimator"] == "dm"
    assert set(report["evidence"].values()) == {"model-based"}
    assert any("model-based" in w for w in report["warnings"])


def test_models_of_different_datasets_cannot_be_compared(
    world: dict[str, Path], tmp_path: Path
) -> None:
    config = WorldConfig(users=200, items=40, days=5, slate_size=5, pool_size=40, seed=9)
    run_simulation(config, tmp_path / "other")
    ingest(
        tmp_path / "other" / "events.csv.gz",
        items=tmp_path / "other" / "items.csv.gz",
        data=tmp_path / "other-data",
    )
    train(
        "elsewhere",
        data=tmp_path / "other-data",
        registry=world["registry"],
        config=TrainConfig(candidates="popular", ranker="none"),
    )
    result = abtest(world, "--control", "pop", "--treatment", "elsewhere")
    assert result.exit_code == 2
    assert "elsewhere" in result.stderr and "pop" in result.stderr


def test_logged_test_options_are_refused_in_an_estimate(world: dict[str, Path]) -> None:
    result = abtest(world, "--control", "pop", "--treatment", "als", "--cuped")
    assert result.exit_code == 2
    assert "--cuped applies to logged A/B tests" in result.stderr
    result = abtest(
        world, "--control", "A", "--treatment", "B", "--arm-column", "policy", "--traffic", "0.1"
    )
    assert result.exit_code == 2
    assert "--traffic applies to estimates" in result.stderr
