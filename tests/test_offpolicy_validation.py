"""The off-policy validation: its summaries (fast) and a reduced run against the truth (slow)."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest

from recsim_cli.experiment.validate import OFFPOLICY_SECTION
from recsim_cli.experiment.validate_offpolicy import (
    SCENARIOS,
    Scenario,
    ScenarioResult,
    replace_section,
    run_scenario,
    summarise,
    wilson,
)


def test_wilson_interval_matches_a_hand_computation() -> None:
    # 19 of 20: p = 0.95, z = 1.96; centre (0.95 + 0.09604) / 1.19208, half width
    # 1.96 sqrt(0.95 * 0.05 / 20 + 0.0096040 / 1600) / 1.19208.
    lo, hi = wilson(19, 20)
    centre = (0.95 + 1.96**2 / 40) / (1 + 1.96**2 / 20)
    half = 1.96 * math.sqrt(0.95 * 0.05 / 20 + 1.96**2 / 1600) / (1 + 1.96**2 / 20)
    assert (lo, hi) == pytest.approx((centre - half, centre + half))
    assert wilson(0, 10)[0] == pytest.approx(0.0, abs=1e-12)
    assert wilson(10, 10)[1] == pytest.approx(1.0)


def test_summaries_count_coverage_bias_and_power() -> None:
    rows = pl.DataFrame(
        {
            "replicate": [0, 1, 2, 3],
            "estimator": ["ips"] * 4,
            "metric": ["first_slate_ctr"] * 4,
            "relative": [0.10, 0.30, 0.20, -0.05],
            "low": [0.05, 0.25, -0.10, -0.20],
            "high": [0.15, 0.35, 0.50, 0.10],
            "p": [0.01, 0.001, 0.3, 0.6],
            "control": [1.0] * 4,
            "treatment": [1.1] * 4,
            "ess": [100.0, 200.0, 300.0, 400.0],
        }
    )
    truth = {"lift": {"first_slate_ctr": 0.12}, "lift_mc_se": {"first_slate_ctr": 0.001}}
    result = ScenarioResult(Scenario("x", "A", "a", "b"), truth, rows, 1.0, 1.0)
    row = summarise(result).row(0, named=True)
    assert row["coverage"] == 0.5  # 0.05-0.15 and -0.10-0.50 hold 0.12
    assert row["bias"] == pytest.approx(np.mean([0.10, 0.30, 0.20, -0.05]) - 0.12)
    assert row["power"] == 0.5  # two significant, both upwards like the truth
    assert row["median_ess"] == 250.0
    assert row["evidence"] == "off-policy"


def test_the_section_replaces_only_itself(tmp_path: Path) -> None:
    path = tmp_path / "validation.md"
    path.write_text(f"# Validation\n\nstats tables\n\n{OFFPOLICY_SECTION}\n\nold\n", "utf-8")
    replace_section(path, f"{OFFPOLICY_SECTION}\n\nnew\n")
    assert (
        path.read_text("utf-8") == f"# Validation\n\nstats tables\n\n{OFFPOLICY_SECTION}\n\nnew\n"
    )


@pytest.mark.slow
def test_off_policy_estimates_cover_the_truth_in_a_reduced_run() -> None:
    """One scenario, 30 replicates: IPS and DR stay unbiased and cover the true lift."""
    result = run_scenario(SCENARIOS[0], replicates=30, truth_replicates=60, seed=7)
    table = summarise(result)
    for estimator in ("ips", "dr"):
        for metric in ("first_slate_clicks", "first_slate_watch_time"):
            row = table.filter(
                (pl.col("estimator") == estimator) & (pl.col("metric") == metric)
            ).row(0, named=True)
            values = result.rows.filter(
                (pl.col("estimator") == estimator) & (pl.col("metric") == metric)
            ).get_column("relative")
            se = float(values.std()) / math.sqrt(values.len())  # type: ignore[arg-type]
            assert abs(row["bias"]) < 4 * se + 0.02, (estimator, metric, row)
            # 24 of 30 covered: below that has probability under 0.001 at a true 95%.
            assert row["coverage"] >= 0.8, (estimator, metric, row)


def test_a_cached_run_reads_finished_parts_instead_of_computing_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import recsim_cli.experiment.validate_offpolicy as validation

    calls: list[str] = []
    rows = pl.DataFrame(
        {
            "replicate": [0, 1],
            "estimator": ["ips"] * 2,
            "metric": ["first_slate_ctr"] * 2,
            "relative": [0.1, 0.2],
            "low": [0.0, 0.1],
            "high": [0.2, 0.3],
            "p": [0.04, 0.01],
            "control": [1.0] * 2,
            "treatment": [1.1] * 2,
            "ess": [10.0, 20.0],
        }
    )
    metrics = [*validation.SLATE_METRICS, *validation.SESSION_METRICS]
    truth = {
        "window": {"start": "a", "end": "b"},
        "sessions_per_replicate": 9.0,
        "replicates": 3,
        "control": {"metrics": dict.fromkeys(metrics, 1.0)},
        "treatment": {"metrics": dict.fromkeys(metrics, 1.15)},
        "lift": dict.fromkeys(metrics, 0.15),
        "lift_mc_se": dict.fromkeys(metrics, 0.001),
    }

    class Online:
        def to_dict(self) -> dict[str, object]:
            return truth

    def world(key: str, models: object, folder: object) -> object:
        calls.append(f"world {key}")
        return SimpleNamespace(seconds=2.0)

    def truth_of(setup: object, what: Scenario, replicates: int, seed: int) -> Online:
        calls.append(f"truth {what.name} {replicates}")
        return Online()

    def estimates(setup: object, what: Scenario, replicates: int, seed: int) -> pl.DataFrame:
        calls.append(f"estimates {what.name}")
        return rows

    def aa(replicates: int, seed: int) -> dict[str, object]:
        calls.append("aa")
        verdicts = {"inconclusive": replicates}
        return {
            "replicates": replicates,
            "verdicts": verdicts,
            "ships": 0,
            "wilson": wilson(0, replicates),
            "median_ess_per_arm": 50.0,
            "seconds": 1.0,
        }

    monkeypatch.setattr(validation, "prepare_world", world)
    monkeypatch.setattr(validation, "truth_of", truth_of)
    monkeypatch.setattr(validation, "estimate_replicates", estimates)
    monkeypatch.setattr(validation, "run_aa_gate", aa)
    name = SCENARIOS[0].name
    options = {"replicates": 2, "truth_replicates": 3, "aa_replicates": 4, "seed": 1, "workers": 1}
    first = validation.section(SCENARIOS[:1], cache=tmp_path, **options)  # type: ignore[arg-type]
    assert calls == ["world A", f"truth {name} 3", f"estimates {name}", "aa"]  # one world
    calls.clear()
    again = validation.section(SCENARIOS[:1], cache=tmp_path, **options)  # type: ignore[arg-type]
    assert calls == []  # nothing computed twice
    assert again == first
    # More online replicates: only the truth is computed again, the estimates are kept.
    more = {**options, "truth_replicates": 5}
    validation.section(SCENARIOS[:1], cache=tmp_path, **more)  # type: ignore[arg-type]
    assert calls == ["world A", f"truth {name} 5"]
    calls.clear()
    backwards = validation.section(SCENARIOS[:2], reverse=True, **options)  # type: ignore[arg-type]
    assert [c for c in calls if not c.startswith("world")] == [
        "aa",
        f"truth {SCENARIOS[1].name} 3",
        f"estimates {SCENARIOS[1].name}",
        f"truth {name} 3",
        f"estimates {name}",
    ]  # last job first
    assert backwards == validation.section(SCENARIOS[:2], **options)  # type: ignore[arg-type]
