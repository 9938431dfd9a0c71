"""The sufficient-statistics frame contract and the metric registry: exact error sentences."""

from __future__ import annotations

import re

import numpy as np
import polars as pl
import pytest

from recsim_cli.errors import ConfigError, ExperimentInvalidError, SchemaError, UnknownNameError
from recsim_cli.experiment import METRICS, MetricDef, analyse, get_metric
from recsim_cli.experiment.frame import extract_arms, frame_from_arrays


def small_frame(**overrides) -> pl.DataFrame:
    data = {
        "user_id": [1, 2, 3, 4],
        "arm": ["control", "control", "treatment", "treatment"],
        "ctr_num": [1.0, 0.0, 2.0, 1.0],
        "ctr_den": [10.0, 5.0, 12.0, 0.0],
    }
    data.update(overrides)
    return pl.DataFrame(data)


def error_of(frame: pl.DataFrame, **kwargs) -> str:
    with pytest.raises((SchemaError, ConfigError, UnknownNameError, ExperimentInvalidError)) as err:
        analyse(frame, kwargs.pop("metrics", ["ctr"]), **kwargs)
    return str(err.value)


def test_registry_lists_the_metrics_and_rejects_unknown_names() -> None:
    assert list(METRICS) == [
        "ctr",
        "first_slate_clicks",
        "first_slate_ctr",
        "first_slate_watch_time",
        "session_depth",
        "slate_ctr",
        "slate_watch_time",
        "slates_per_session",
        "watch_time",
    ]
    ctr = get_metric("ctr")
    assert (ctr.num_column, ctr.den_column, ctr.pre_num_column) == (
        "ctr_num",
        "ctr_den",
        "ctr_pre_num",
    )
    assert ctr.better == "higher"
    with pytest.raises(UnknownNameError) as err:
        get_metric("ctrr")
    assert str(err.value) == f"Unknown metric 'ctrr'. Available: {', '.join(METRICS)}."
    assert error_of(small_frame(), metrics=["watchtime"]) == (
        f"Unknown metric 'watchtime'. Available: {', '.join(METRICS)}."
    )


def test_a_metric_definition_can_be_passed_without_registering_it() -> None:
    revenue = MetricDef("revenue", "Revenue", "revenue per user", "revenue", "users")
    frame = small_frame(revenue_num=[1.0, 2.0, 3.0, 4.0], revenue_den=[1.0] * 4)
    result = analyse(frame, [revenue], min_users_per_arm=2)
    assert result.metric("revenue").control.value == 1.5
    with pytest.raises(ConfigError, match="must be a lower-case identifier"):
        MetricDef("Revenue!", "R", "", "", "")


def test_missing_columns_are_named() -> None:
    assert error_of(small_frame().drop("ctr_den")) == (
        "the experiment frame has no column 'ctr_den', needed for metric 'ctr' "
        "(found: user_id, arm, ctr_num)."
    )
    assert error_of(small_frame(), cuped=True) == (
        "the experiment frame has no column 'ctr_pre_num', needed for CUPED on metric 'ctr' "
        "(found: user_id, arm, ctr_num, ctr_den)."
    )
    assert error_of(small_frame().drop("arm")).startswith(
        "the experiment frame has no column 'arm'"
    )


def test_bad_values_are_named_with_their_row() -> None:
    assert error_of(small_frame(ctr_den=[10.0, None, 1.0, 1.0])) == (
        "column 'ctr_den' is null at row 1; write 0 for a user with no units "
        "(nulls are allowed only in the pre-period columns)."
    )
    assert error_of(small_frame(ctr_num=[1.0, 0.0, float("nan"), 1.0])) == (
        "column 'ctr_num' is NaN or infinite at row 2."
    )
    assert error_of(small_frame(ctr_den=[10.0, -1.0, 1.0, 1.0])) == (
        "column 'ctr_den' is negative at row 1; a denominator counts units."
    )
    assert error_of(small_frame(ctr_num=["a", "b", "c", "d"])) == (
        "column 'ctr_num' must be numeric; got String."
    )
    assert error_of(small_frame(arm=[0, 0, 1, 1])) == (
        "column 'arm' must hold arm names (strings); got Int64."
    )


def test_pre_period_nulls_must_be_paired() -> None:
    frame = small_frame(ctr_pre_num=[1.0, None, None, 2.0], ctr_pre_den=[3.0, None, 4.0, 5.0])
    assert error_of(frame, cuped=True) == (
        "columns 'ctr_pre_num' and 'ctr_pre_den' disagree at row 2: a user without "
        "pre-period data has both null, otherwise neither."
    )


def test_one_row_per_user_and_arm() -> None:
    frame = small_frame(user_id=[1, 1, 3, 4], arm=["control", "control", "treatment", "treatment"])
    assert error_of(frame) == (
        "user 1 appears more than once in arm 'control' (row 1); the frame needs one row "
        "per (user, arm): sum the user's units first."
    )


def test_arm_names_are_checked() -> None:
    assert error_of(small_frame(), control="ctrl") == (
        "Unknown arm 'ctrl'. Available: control, treatment."
    )
    three = small_frame(arm=["control", "control", "treatment", "other"])
    assert error_of(three) == (
        "the experiment frame has arms other than 'control' and 'treatment': other; filter "
        "it to the two arms compared."
    )
    assert error_of(small_frame(), treatment="control") == (
        "control and treatment are both 'control'; name two different arms."
    )


def test_paired_design_needs_every_user_in_both_arms() -> None:
    frame = frame_from_arrays(
        {
            "control": {"ctr_num": [1, 2, 3], "ctr_den": [5, 5, 5]},
            "treatment": {"ctr_num": [1, 2], "ctr_den": [5, 5]},
        },
        paired=True,
    )
    message = error_of(frame, design="paired")
    assert message == (
        "the paired design needs every user in both arms, but 1 only in 'control' (e.g. 2); "
        "rerun the replay on the same users, or use design='split' for independent arms."
    )
    with pytest.raises(ExperimentInvalidError):
        analyse(frame, ["ctr"], design="paired")


def test_paired_arms_line_up_user_by_user_whatever_the_row_order() -> None:
    frame = frame_from_arrays(
        {
            "control": {"ctr_num": [1, 2, 3], "ctr_den": [5, 6, 7]},
            "treatment": {"ctr_num": [4, 5, 6], "ctr_den": [8, 9, 10]},
        },
        paired=True,
    ).reverse()
    data = extract_arms(
        frame, [get_metric("ctr")], control="control", treatment="treatment", design="paired"
    )
    control, treatment = data.samples["ctr"]
    assert control.num.tolist() == [1, 2, 3]
    assert treatment.den.tolist() == [8, 9, 10]


def test_a_user_in_both_arms_of_a_split_experiment_fails_a_health_check() -> None:
    frame = small_frame(user_id=[1, 2, 1, 4])
    result = analyse(frame, ["ctr"], min_users_per_arm=2)
    check = next(c for c in result.health if c.name == "one_arm_per_user")
    assert not check.passed
    assert check.detail.startswith("1 users appear in both arms (e.g. 1);")


def test_frame_must_be_polars() -> None:
    with pytest.raises(SchemaError, match=re.escape("must be a polars DataFrame; got dict.")):
        analyse({"user_id": [1]}, ["ctr"])  # type: ignore[arg-type]


def test_frame_from_arrays_turns_nan_pre_values_into_nulls() -> None:
    frame = frame_from_arrays(
        {
            "a": {
                "ctr_num": [1.0],
                "ctr_den": [2.0],
                "ctr_pre_num": [np.nan],
                "ctr_pre_den": [np.nan],
            }
        }
    )
    assert frame["ctr_pre_num"].null_count() == 1
