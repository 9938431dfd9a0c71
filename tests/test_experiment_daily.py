"""The estimate through each day: cumulative sums by hand, and the last day equals the final."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from recsim_cli.errors import ConfigError
from recsim_cli.experiment import analyse
from recsim_cli.experiment.abtest import run_logged_abtest
from recsim_cli.experiment.daily import (
    cumulative_frame,
    daily_statistics,
    running_sums,
    window_days,
)
from recsim_cli.experiment.logged import aggregate_experiment
from recsim_cli.experiment.offpolicy import (
    per_user_slate_sums,
    slate_sums,
    weight_histogram,
)
from recsim_cli.ingest import ingest
from recsim_cli.simulate import WorldConfig, arms_from_names, run_simulation

D1, D2, D3 = dt.date(2026, 1, 5), dt.date(2026, 1, 6), dt.date(2026, 1, 7)

# u1 (control) on days 1 and 3; u2 (treatment) from day 2; u3 in both arms from day 1.
PER_DAY = pl.DataFrame(
    {
        "user_id": ["u1", "u1", "u2", "u3", "u3"],
        "arm": ["c", "c", "t", "c", "t"],
        "day": [D1, D3, D2, D1, D2],
        "ctr_num": [1.0, 2.0, 3.0, 0.0, 1.0],
        "ctr_den": [4.0, 5.0, 6.0, 1.0, 2.0],
    }
)


def test_cumulative_sums_by_hand_and_users_count_from_their_first_day() -> None:
    running = running_sums(PER_DAY)
    first = cumulative_frame(running, D1)
    assert_frame_equal(
        first,
        pl.DataFrame(
            {
                "user_id": ["u1", "u3"],
                "arm": ["c", "c"],
                "ctr_num": [1.0, 0.0],
                "ctr_den": [4.0, 1.0],
            }
        ),
    )
    second = cumulative_frame(running, D2)
    assert second.rows() == [
        ("u1", "c", 1.0, 4.0),
        ("u2", "t", 3.0, 6.0),
        ("u3", "c", 0.0, 1.0),
        ("u3", "t", 1.0, 2.0),
    ]
    third = cumulative_frame(running, D3)
    assert third.rows()[0] == ("u1", "c", 3.0, 9.0)  # days 1 and 3 added up
    # Paired: only the users in both arms by then.
    assert cumulative_frame(running, D1, paired=True).is_empty()
    assert cumulative_frame(running, D2, paired=True).get_column("user_id").to_list() == [
        "u3",
        "u3",
    ]
    # Static columns (a pre-period) are joined on per (user, arm).
    static = pl.DataFrame({"user_id": ["u1"], "arm": ["c"], "ctr_pre_num": [5.0]})
    joined = cumulative_frame(running, D3, static=static)
    assert joined.get_column("ctr_pre_num").to_list() == [5.0, None, None, None]


def test_window_days_include_both_ends() -> None:
    assert window_days(D1, D3) == [D1, D2, D3]
    assert window_days(D1, D1) == [D1]


def test_a_day_with_too_few_users_has_no_numbers() -> None:
    stats = daily_statistics(PER_DAY, [D1], {"metrics": ["ctr"], "control": "c", "treatment": "t"})
    (point,) = stats.points
    assert (point.users_control, point.users_treatment, point.metrics) == (2, 0, ())
    assert stats.to_dict()["points"][0] == {
        "day": "2026-01-05",
        "users": {"control": 2, "treatment": 0},
        "metrics": [],
    }


def test_the_bootstrap_is_refused() -> None:
    with pytest.raises(ConfigError, match="analytic intervals"):
        daily_statistics(PER_DAY, [D1], {"metrics": ["ctr"], "bootstrap": 100})


# (user, ts, session, clicked, watch_time_s, policy): u1's session s1 runs past midnight.
def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 1, day, hour, minute, tzinfo=dt.UTC)


ROWS = [
    ("u1", at(5, 23, 50), "s1", True, 10.0, "A"),
    ("u1", at(6, 0, 10), "s1", False, 0.0, "A"),
    ("u1", at(6, 9), "s2", True, 5.0, "A"),
    ("u2", at(6, 8), "s3", True, 7.0, "B"),
    ("u2", at(7, 8), "s4", False, 0.0, "B"),
]
SCHEMA = {
    "user_id": pl.String,
    "ts": pl.Datetime("us", "UTC"),
    "session_id": pl.String,
    "clicked": pl.Boolean,
    "watch_time_s": pl.Float64,
    "policy": pl.String,
}


def test_logged_days_add_up_to_the_frame_and_a_session_counts_on_its_first_day() -> None:
    events = pl.LazyFrame(ROWS, schema=SCHEMA, orient="row")
    logged = aggregate_experiment(events, control="A", treatment="B", pre_days=0, by_day=True)
    assert logged.daily is not None
    by_day = {(r["user_id"], r["day"]): r for r in logged.daily.iter_rows(named=True)}
    u1_first = by_day[("u1", D1)]
    assert (u1_first["ctr_num"], u1_first["ctr_den"], u1_first["watch_time_den"]) == (1, 1, 1)
    u1_second = by_day[("u1", D2)]
    # s1 goes on after midnight: its second event counts on Jan 6, its session on Jan 5.
    assert (u1_second["ctr_num"], u1_second["ctr_den"], u1_second["watch_time_den"]) == (1, 2, 1)
    summed = (
        logged.daily.group_by("user_id", "arm")
        .agg(pl.exclude("day").sum())
        .sort("arm", "user_id")
        .select(logged.frame.columns)
    )
    assert_frame_equal(summed, logged.frame)
    assert aggregate_experiment(events, control="A", treatment="B", pre_days=0).daily is None


def test_offpolicy_day_sums_add_up_to_the_user_sums() -> None:
    rng = np.random.default_rng(0)
    n = 60
    imps = pl.DataFrame(
        {
            "user_id": np.repeat(["a", "b", "c"], n // 3),
            "session_id": np.repeat([f"s{i}" for i in range(12)], n // 12),
            "slate": np.tile([0, 0, 0, 1, 1], n // 5).astype(np.int32),
            "day": pl.Series(
                np.repeat([D1, D2, D1, D3, D2, D2, D1, D3, D3, D1, D2, D3], n // 12).tolist(),
                dtype=pl.Date,
            ),
        }
    )
    clicks, watch = rng.random(n), rng.random(n) * 30
    slates = slate_sums(imps, clicks, watch)
    per_user = per_user_slate_sums(slates)
    per_day = per_user_slate_sums(slates, ("user_id", "day"))
    assert per_day.select("user_id", "day").is_unique().all()
    summed = per_day.group_by("user_id").agg(pl.exclude("day").sum()).sort("user_id")
    assert_frame_equal(summed, per_user, check_exact=False, rel_tol=1e-12)


def test_weight_histogram_counts_zeros_and_quarter_decades() -> None:
    histogram = weight_histogram(np.array([0.0, 0.0, 1.0, 2.0, 2.5, 100.0]))
    assert histogram.zeros == 2
    # floor(4 log10 w): 1 -> 0, 2 -> 1, 2.5 -> 1, 100 -> 8
    assert histogram.counts == (1, 2, 0, 0, 0, 0, 0, 0, 1)
    assert len(histogram.edges) == len(histogram.counts) + 1
    assert histogram.edges[0] == 1.0 and histogram.edges[-1] == pytest.approx(10**2.25)
    assert histogram.to_dict()["zero_share"] == pytest.approx(2 / 6)
    empty = weight_histogram(np.zeros(3))
    assert (empty.zeros, empty.edges, empty.counts) == (3, (), ())


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("daily")
    arms = arms_from_names(["prod", "personal"])
    run_simulation(WorldConfig(users=500, items=200, days=4, seed=2, arms=arms), root / "logs")
    ingest(root / "logs" / "events.csv.gz", data=root / "data")
    return root / "data"


@pytest.mark.parametrize("cuped", [False, True])
def test_the_last_day_is_the_final_analysis(data: Path, cuped: bool) -> None:
    kwargs = {"control": "prod", "treatment": "personal", "cuped": cuped, "pre_days": 1}
    if cuped:
        kwargs["start"] = dt.datetime(2026, 1, 6, tzinfo=dt.UTC)
    report = run_logged_abtest(
        data, guardrails=["session_depth"], metrics=["ctr", "watch_time"], **kwargs
    )  # type: ignore[arg-type]
    assert report.daily is not None
    points = report.daily.points
    assert [p.day for p in points] == window_days(points[0].day, points[-1].day)
    assert points[0].day == report.logged.start.date()
    assert points[-1].day == report.logged.last_event.date()
    users = [p.users_control + p.users_treatment for p in points]
    assert users == sorted(users)  # users only join
    last = points[-1]
    assert (last.users_control, last.users_treatment) == (
        report.result.n_control,
        report.result.n_treatment,
    )
    for final, day in zip(report.result.metrics, last.metrics, strict=True):
        assert day.metric == final.metric
        assert day.treatment == pytest.approx(final.treatment.estimate, rel=1e-12)
        assert day.control == pytest.approx(final.control.estimate, rel=1e-12)
        assert day.ci == pytest.approx(final.ci, rel=1e-9)
        assert day.relative_ci == pytest.approx(final.relative_ci, rel=1e-9)
        assert day.p_value == pytest.approx(final.p_value, rel=1e-6, abs=1e-300)


def test_an_earlier_day_is_the_analysis_of_the_data_up_to_it(data: Path) -> None:
    report = run_logged_abtest(data, control="prod", treatment="personal", metrics=["ctr"])
    assert report.daily is not None
    first = report.daily.points[0]
    end = dt.datetime.combine(first.day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    from recsim_cli.dataset import Dataset

    cut = aggregate_experiment(
        Dataset.open(data).events(),
        control="prod",
        treatment="personal",
        metrics=["ctr"],
        end=end,
        pre_days=0,
    )
    alone = analyse(cut.frame, ["ctr"], control="prod", treatment="personal")
    assert first.metrics[0].relative_ci == pytest.approx(alone.metrics[0].relative_ci, rel=1e-9)
    assert (first.users_control, first.users_treatment) == (alone.n_control, alone.n_treatment)
