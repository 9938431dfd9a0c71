"""`recsim simulate` through Typer's runner: files, summary, JSON, and flag errors."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner, Result

from recsim_cli.cli import app
from recsim_cli.simulate import load_world

SMALL = ["--users", "150", "--items", "300", "--days", "2", "--seed", "4"]


def invoke(args: list[str]) -> Result:
    return CliRunner().invoke(app, ["simulate", *args], catch_exceptions=False)


def test_writes_the_world_and_logs_and_prints_a_summary(tmp_path: Path) -> None:
    out = tmp_path / "world"
    result = invoke([*SMALL, "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "events.csv.gz",
        "items.csv.gz",
        "world.json",
        "world.npz",
    ]
    for label in ("impressions", "sessions", "CTR", "mean session depth", "exploration share"):
        assert label in result.stdout
    world = load_world(out)
    assert (world.config.users, world.config.items, world.config.days) == (150, 300, 2)
    assert world.config.seed == 4


def test_json_summary_is_the_library_summary(tmp_path: Path) -> None:
    result = invoke(
        [
            *SMALL,
            "--epsilon",
            "0.5",
            "--slate-size",
            "5",
            "--pool-size",
            "20",
            "--start",
            "2025-12-01",
            "--out",
            str(tmp_path),
            "--json",
        ]
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["seed"] == 4
    assert summary["impressions"] > 0
    assert summary["impressions"] % 5 == 0
    assert 0.3 < summary["exploration_share"] < 0.7
    config = load_world(tmp_path).config
    assert (config.epsilon, config.slate_size, config.pool_size) == (0.5, 5, 20)
    assert config.start.isoformat() == "2025-12-01"


def test_same_seed_same_bytes_through_the_cli(tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert invoke([*SMALL, "--out", str(tmp_path / name), "--json"]).exit_code == 0
    for name in ("events.csv.gz", "items.csv.gz", "world.json", "world.npz"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_bad_epsilon_is_a_usage_error_with_one_sentence(tmp_path: Path) -> None:
    result = invoke([*SMALL, "--epsilon", "1.5", "--out", str(tmp_path / "w")])
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: epsilon must be in (0, 1], the share of slates drawn at random; got 1.5.\n"
    )
    assert result.stdout == ""
    assert not (tmp_path / "w").exists()


def test_pool_smaller_than_slate_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke([*SMALL, "--pool-size", "3", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: pool_size must be at least slate_size (10)")


def test_bad_start_and_missing_out_are_usage_errors(tmp_path: Path) -> None:
    result = invoke([*SMALL, "--start", "Monday", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr == "Error: start must be a date like 2026-01-05; got 'Monday'.\n"
    result = invoke(SMALL)
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: --out is required: give the folder to write the world and logs to.\n"
    )


def test_out_must_not_be_a_file(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.write_text("x")
    result = invoke([*SMALL, "--out", str(target)])
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: --out {target} is a file; give a folder to write the world and logs to.\n"
    )


def test_help_ends_with_a_runnable_example() -> None:
    result = invoke(["--help"])
    assert result.exit_code == 0
    assert "Example" in result.stdout
    assert "recsim simulate --users 1200" in result.stdout
    assert "--epsilon" in result.stdout
