"""Reading a logged experiment into the per-user sufficient-statistics frame."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from recsim_cli.errors import ConfigError, SchemaError, UnknownNameError, UserError
from recsim_cli.experiment import analyse
from recsim_cli.experiment.logged import aggregate_experiment
from recsim_cli.times import parse_moment

SCHEMA = {
    "user_id": pl.String,
    "ts": pl.Datetime("us", "UTC"),
    "session_id": pl.String,
    "clicked": pl.Boolean,
    "watch_time_s": pl.Float64,
    "policy": pl.String,
}


def at(day: int, hour: int = 12) -> dt.datetime:
    return dt.datetime(2026, 1, day, hour, tzinfo=dt.UTC)


# (user, ts, session, clicked, watch_time_s, policy); the experiment starts on Jan 8 at 12:00.
ROWS = [
    ("u6", dt.datetime(2025, 12, 20, tzinfo=dt.UTC), "s0", True, 9.0, None),  # before pre
    ("u1", at(1), "p1", True, 10.0, None),  # pre-period
    ("u1", at(1), "p1", False, 0.0, None),
    ("u4", at(7), "p2", False, 0.0, None),
    ("u1", at(8), "s2", True, 30.0, "A"),
    ("u1", at(8), "s2", False, 0.0, "A"),
    ("u1", at(8), "s2", True, 20.0, "A"),
    ("u1", at(9), "s3", True, 5.0, "A"),
    ("u2", at(9), "s4", False, 0.0, "B"),
    ("u2", at(9), "s4", True, 12.5, "B"),
    ("u3", at(9), "s5", True, 7.0, "A"),  # in both arms
    ("u3", at(10), "s6", True, 8.0, "B"),
    ("u4", at(9), "s7", False, 0.0, "A"),
    ("u4", at(9), "s7", True, 3.0, None),  # null arm in the window
    ("u5", at(10), "s8", True, 4.0, "C"),  # another arm
]


def events(rows: list[tuple] = ROWS) -> pl.LazyFrame:
    return pl.LazyFrame(rows, schema=SCHEMA, orient="row")


def expected_frame() -> pl.DataFrame:
    """By hand: ctr = clicks/impressions, watch_time = watch/sessions, depth = clicks/sessions."""
    return pl.DataFrame(
        {
            "user_id": ["u1", "u4", "u2"],
            "arm": ["A", "A", "B"],
            "ctr_num": [3.0, 0.0, 1.0],
            "ctr_den": [4.0, 1.0, 2.0],
            "ctr_pre_num": [1.0, 0.0, None],
            "ctr_pre_den": [2.0, 1.0, None],
            "watch_time_num": [55.0, 0.0, 12.5],
            "watch_time_den": [2.0, 1.0, 1.0],
            "watch_time_pre_num": [10.0, 0.0, None],
            "watch_time_pre_den": [1.0, 1.0, None],
            "session_depth_num": [3.0, 0.0, 1.0],
            "session_depth_den": [2.0, 1.0, 1.0],
            "session_depth_pre_num": [1.0, 0.0, None],
            "session_depth_pre_den": [1.0, 1.0, None],
        }
    )


def test_hand_computed_sufficient_statistics_and_covariates() -> None:
    logged = aggregate_experiment(events(), control="A", treatment="B")
    assert_frame_equal(logged.frame, expected_frame())
    counts = logged.counts
    assert (counts.users_control, counts.users_treatment) == (2, 1)
    assert (counts.both_arm_users, counts.excluded_users) == (1, 1)
    assert (counts.events_null_arm, counts.events_other_arms, counts.other_arms) == (1, 1, ("C",))
    assert counts.events_used == 7  # u1's 4, u4's 1 and u2's 2: u3 is left out
    assert counts.start == at(8)
    assert counts.end is None
    assert counts.last_event == at(9)
    assert (counts.pre_users_control, counts.pre_users_treatment) == (2, 0)
    assert counts.warnings == (
        "1 of 4 users (25%) were seen in both 'A' and 'B' and were left out of the analysis; "
        "a user should see one arm only, so check the assignment and the user ids.",
        "Ignored 1 event in the window without a 'policy' label.",
        "Ignored 1 event in the window labelled with other arms (C).",
    )


def test_counts_are_json_ready() -> None:
    data = aggregate_experiment(events(), control="A", treatment="B").counts.to_dict()
    assert data["window"] == {
        "start": "2026-01-08T12:00:00Z",
        "end": None,
        "last_event": "2026-01-09T12:00:00Z",
    }
    assert data["pre_period"]["start"] == "2026-01-01T12:00:00Z"
    assert data["users"] == {"A": 2, "B": 1}


def test_users_are_the_units_of_the_analysis() -> None:
    frame = aggregate_experiment(events(), control="A", treatment="B").frame
    result = analyse(frame, ["ctr"], control="A", treatment="B", min_users_per_arm=2)
    assert (result.n_control, result.n_treatment) == (2, 1)
    assert result.metric("ctr").control.value == pytest.approx(3 / 5)  # (3 + 0) / (4 + 1)


def test_pre_period_bounds_are_half_open() -> None:
    start = at(8)
    rows = [
        ("u1", start - dt.timedelta(days=2), "p", True, 1.0, None),  # the first pre moment
        ("u1", start - dt.timedelta(days=2, microseconds=1), "q", True, 1.0, None),  # too early
        ("u1", start, "s", False, 0.0, "A"),  # the window, not the pre-period
        ("u2", start, "t", True, 2.0, "B"),
    ]
    frame = aggregate_experiment(events(rows), control="A", treatment="B", pre_days=2).frame
    assert frame["ctr_pre_den"].to_list() == [1.0, None]
    assert frame["ctr_den"].to_list() == [1.0, 1.0]
    no_pre = aggregate_experiment(events(rows), control="A", treatment="B", pre_days=0)
    assert not any("_pre_" in c for c in no_pre.frame.columns)


def test_window_start_and_exclusive_end() -> None:
    logged = aggregate_experiment(
        events(), control="A", treatment="B", start=at(9), end=at(10), metrics=["ctr"]
    )
    # u1's Jan 8 session is before the start; u3's B event at the end is outside,
    # so u3 is only in A and kept.
    assert logged.frame.select("user_id", "arm", "ctr_num", "ctr_den").rows() == [
        ("u1", "A", 1.0, 1.0),
        ("u3", "A", 1.0, 1.0),
        ("u4", "A", 0.0, 1.0),
        ("u2", "B", 1.0, 2.0),
    ]
    assert logged.counts.both_arm_users == 0
    assert logged.counts.events_other_arms == 0
    # the pre-period now holds A-labelled events: counted, for the CUPED warning
    assert logged.counts.pre_events_with_arm_label == 3


def test_both_arm_users_can_be_kept() -> None:
    logged = aggregate_experiment(events(), control="A", treatment="B", both_arms="keep")
    assert logged.frame.filter(pl.col("user_id") == "u3")["arm"].to_list() == ["A", "B"]
    assert logged.counts.excluded_users == 0
    assert "are kept in both arms (--both-arms keep)" in logged.counts.warnings[0]
    result = analyse(
        logged.frame, ["ctr"], control="A", treatment="B", min_users_per_arm=2, split=(0.5, 0.5)
    )
    assert not next(c for c in result.health if c.name == "one_arm_per_user").passed


def test_naive_and_millisecond_timestamps_and_categorical_arms() -> None:
    frame = events().with_columns(
        pl.col("ts").dt.replace_time_zone(None).cast(pl.Datetime("ms")),
        pl.col("policy").cast(pl.Categorical),
    )
    logged = aggregate_experiment(frame, control="A", treatment="B")
    assert_frame_equal(logged.frame, expected_frame())


def test_the_frame_has_the_metrics_asked_for_in_contract_order() -> None:
    frame = aggregate_experiment(
        events(), control="A", treatment="B", metrics=["session_depth"]
    ).frame
    assert frame.columns == [
        "user_id",
        "arm",
        "session_depth_num",
        "session_depth_den",
        "session_depth_pre_num",
        "session_depth_pre_den",
    ]


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        (
            {"treatment": "D"},
            UserError,
            "column 'policy' has no events labelled 'D' (labels found: A, B, C); give "
            "--control and --treatment from these.",
        ),
        (
            {"arm_column": "variant"},
            SchemaError,
            "the events have no column 'variant' (found: user_id, ts, session_id, clicked, "
            "watch_time_s, policy); name the column that holds each event's arm with "
            "--arm-column.",
        ),
        (
            {"treatment": "A"},
            ConfigError,
            "control and treatment are both 'A'; name two different arms.",
        ),
        (
            {"metrics": ["ctr", "dwell"]},
            UnknownNameError,
            "Unknown metric 'dwell'. Available: ctr, session_depth, watch_time.",
        ),
        (
            {"metrics": ["ctr", "watch_time", "ctr"]},
            ConfigError,
            "metric 'ctr' is listed twice; a metric is either a primary or a guardrail, once.",
        ),
        (
            {"start": at(9), "end": at(9)},
            ConfigError,
            "the window ends (2026-01-09T12:00:00Z) before it starts (2026-01-09T12:00:00Z); "
            "give an end after the start.",
        ),
        (
            {"start": at(20)},
            UserError,
            "no events of arm 'A' in column 'policy' from 2026-01-20T12:00:00Z; check the "
            "window (--start, --end) and the arm labels.",
        ),
        (
            {"pre_days": -1},
            ConfigError,
            "pre_days must be a whole number of days >= 0; got -1.",
        ),
        (
            {"both_arms": "drop"},
            UnknownNameError,
            "Unknown both-arms rule 'drop'. Available: exclude, keep.",
        ),
    ],
)
def test_mistakes_raise_one_sentence(
    changes: dict[str, object], error: type[Exception], message: str
) -> None:
    kwargs: dict[str, object] = {"control": "A", "treatment": "B", **changes}
    with pytest.raises(error) as info:
        aggregate_experiment(events(), **kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_a_column_without_labels_says_so() -> None:
    frame = events().with_columns(pl.lit(None, dtype=pl.String).alias("policy"))
    with pytest.raises(UserError, match=r"^column 'policy' holds no arm labels"):
        aggregate_experiment(frame, control="A", treatment="B")


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2026-01-12", dt.datetime(2026, 1, 12, tzinfo=dt.UTC)),
        ("2026-01-12T06:30:00Z", dt.datetime(2026, 1, 12, 6, 30, tzinfo=dt.UTC)),
        ("2026-01-12T07:30:00+01:00", dt.datetime(2026, 1, 12, 6, 30, tzinfo=dt.UTC)),
    ],
)
def test_parse_moment(text: str, moment: dt.datetime) -> None:
    assert parse_moment(text, "--start") == moment


def test_parse_moment_rejects_nonsense() -> None:
    with pytest.raises(ConfigError) as info:
        parse_moment("last monday", "--start")
    assert str(info.value) == (
        "--start last monday: give a date like 2026-01-12 or a UTC time like 2026-01-12T06:00:00Z."
    )
