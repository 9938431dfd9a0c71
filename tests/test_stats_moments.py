"""The analysis from per-arm moments gives the per-user analysis's numbers."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from parity import assert_close

from recsim_cli.errors import ConfigError, ExperimentInvalidError, UserError
from recsim_cli.experiment import analyse, frame_from_arrays
from recsim_cli.experiment.daily import daily_statistics
from recsim_cli.experiment.metrics import resolve_metric
from recsim_cli.experiment.moments import (
    analyse_moments,
    daily_from_moments,
    daily_moments_from_frames,
    moments_from_frame,
)

METRICS3 = ["ctr", "watch_time", "session_depth"]


def generated_frame(
    rng: np.random.Generator,
    n_control: int,
    n_treatment: int,
    *,
    paired: bool = False,
    missing_pre: float = 0.2,
    scale: float = 1.0,
) -> pl.DataFrame:
    """Three ratio metrics per user, correlated pre-period sums with some users missing them."""
    arms = {}
    for name, n, lift in (("control", n_control, 1.0), ("treatment", n_treatment, 1.05)):
        impressions = rng.integers(1, 40, n).astype(float)
        sessions = rng.integers(1, 6, n).astype(float)
        taste = rng.gamma(2.0, 0.05, n)
        clicks = rng.binomial(impressions.astype(int), np.minimum(taste * lift, 1)).astype(float)
        watch = scale * (clicks * rng.gamma(2.0, 30.0, n))
        pre_imp = rng.integers(1, 40, n).astype(float)
        pre_clicks = rng.binomial(pre_imp.astype(int), np.minimum(taste, 1)).astype(float)
        pre_sessions = rng.integers(1, 6, n).astype(float)
        missing = rng.random(n) < missing_pre
        columns: dict[str, Any] = {}
        for metric, num, den, pre_num, pre_den in (
            ("ctr", clicks, impressions, pre_clicks, pre_imp),
            ("watch_time", watch, sessions, scale * pre_clicks * 40.0, pre_sessions),
            ("session_depth", clicks, sessions, pre_clicks, pre_sessions),
        ):
            columns[f"{metric}_num"] = num
            columns[f"{metric}_den"] = den
            columns[f"{metric}_pre_num"] = np.where(missing, np.nan, pre_num)
            columns[f"{metric}_pre_den"] = np.where(missing, np.nan, pre_den)
        arms[name] = columns
    return frame_from_arrays(arms, paired=paired)


def both(frame: pl.DataFrame, **options: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    metrics = [*options.get("metrics", METRICS3), *options.get("guardrails", [])]
    defs = [resolve_metric(m) for m in metrics]
    options = {"metrics": METRICS3, "min_users_per_arm": 2, **options}
    design = options.get("design", "split")
    moments = moments_from_frame(
        frame,
        defs,
        control="control",
        treatment="treatment",
        design=design,
        cuped=options.get("cuped", False),
    )
    return analyse(frame, **options).to_dict(), analyse_moments(moments, **options).to_dict()


@pytest.mark.parametrize("design", ["split", "paired"])
@pytest.mark.parametrize("cuped", [False, True])
@pytest.mark.parametrize("relative_ci", ["fieller", "delta", "log"])
def test_moments_give_the_per_user_numbers(design: str, cuped: bool, relative_ci: str) -> None:
    rng = np.random.default_rng(7)
    paired = design == "paired"
    frame = generated_frame(rng, 600, 600 if paired else 640, paired=paired)
    per_user, moments = both(
        frame, design=design, cuped=cuped, relative_ci=relative_ci, guardrails=[]
    )
    assert_close(per_user, moments)
    metric = moments["metrics"][0]
    assert metric["se"] > 0 and (metric["cuped"] is not None) == cuped


def test_ddof_0_the_normal_distribution_and_guardrails() -> None:
    frame = generated_frame(np.random.default_rng(3), 300, 280)
    per_user, moments = both(
        frame,
        metrics=["ctr"],
        guardrails=["watch_time"],
        ddof=0,
        distribution="normal",
        correction="bh",
        cuped=True,
    )
    assert_close(per_user, moments)


def test_large_means_keep_their_digits() -> None:
    """Sums near 1e9 with a spread of a few units: raw sums of products would lose it all."""
    frame = generated_frame(np.random.default_rng(5), 400, 400, scale=1.0)
    shifted = frame.with_columns(
        pl.col("watch_time_num") + 1e9, pl.col("watch_time_den") + 1e6, pl.col("ctr_den") + 1e7
    )
    per_user, moments = both(shifted, cuped=True)
    assert_close(per_user, moments)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_control=st.integers(2, 60),
    n_treatment=st.integers(2, 60),
    missing=st.sampled_from([0.0, 0.5, 1.0]),
    design=st.sampled_from(["split", "paired"]),
    cuped=st.booleans(),
)
def test_moments_agree_on_small_and_degenerate_arms(
    seed: int, n_control: int, n_treatment: int, missing: float, design: str, cuped: bool
) -> None:
    paired = design == "paired"
    frame = generated_frame(
        np.random.default_rng(seed),
        n_control,
        n_control if paired else n_treatment,
        paired=paired,
        missing_pre=missing,
    )
    per_user, moments = both(frame, design=design, cuped=cuped)
    assert_close(per_user, moments)


def test_split_health_checks_count_users_in_both_arms() -> None:
    frame = generated_frame(np.random.default_rng(2), 100, 300)
    shared = frame.filter(pl.col("arm") == "control").head(4).with_columns(arm=pl.lit("treatment"))
    frame = pl.concat([frame, shared])
    per_user, moments = both(frame)
    assert_close(per_user, moments)
    failed = {c["name"] for c in moments["health"] if not c["passed"]}
    assert failed == {"sample_ratio", "one_arm_per_user"}
    assert "4 users appear in both arms (e.g. 0, 1, 2)" in next(
        c["detail"] for c in moments["health"] if c["name"] == "one_arm_per_user"
    )


def test_unpaired_users_are_refused_with_the_same_sentence() -> None:
    frame = generated_frame(np.random.default_rng(2), 50, 50, paired=True)
    frame = frame.filter(~((pl.col("arm") == "treatment") & (pl.col("user_id") < 2)))
    defs = [resolve_metric("ctr")]
    moments = moments_from_frame(
        frame, defs, control="control", treatment="treatment", design="paired"
    )
    with pytest.raises(ExperimentInvalidError) as per_user:
        analyse(frame, ["ctr"], design="paired")
    with pytest.raises(ExperimentInvalidError) as from_moments:
        analyse_moments(moments, ["ctr"], design="paired")
    assert str(from_moments.value) == str(per_user.value)
    assert "2 only in 'control' (e.g. 0, 1)" in str(per_user.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"bootstrap": 100}, "the bootstrap needs every user's values"),
        ({"winsorize_at": 0.99}, "winsorisation needs every user's values"),
        ({"metrics": ["ctr"], "cuped": True}, "the moments have no column 'ctr_pre_num'"),
        ({"metrics": ["ctr"], "design": "paired"}, "the moments are of split 'control'"),
    ],
)
def test_what_moments_cannot_do_is_refused(options: dict[str, Any], message: str) -> None:
    frame = generated_frame(np.random.default_rng(1), 50, 50)
    moments = moments_from_frame(
        frame, [resolve_metric("ctr")], control="control", treatment="treatment"
    )
    with pytest.raises(ConfigError, match=f"^{message}"):
        analyse_moments(moments, **{"metrics": ["ctr"], **options})


def test_bad_options_raise_the_same_error_as_the_per_user_analysis() -> None:
    frame = generated_frame(np.random.default_rng(1), 50, 50)
    moments = moments_from_frame(
        frame, [resolve_metric("ctr")], control="control", treatment="treatment"
    )
    for options in ({"alpha": 0.7}, {"correction": "bonf"}, {"split": [1, 0]}):
        with pytest.raises(UserError) as per_user:
            analyse(frame, ["ctr"], **options)
        with pytest.raises(UserError) as from_moments:
            analyse_moments(moments, ["ctr"], **options)
        assert type(from_moments.value) is type(per_user.value)
        assert str(from_moments.value) == str(per_user.value)


@pytest.mark.parametrize("design", ["split", "paired"])
def test_daily_statistics_from_moments(design: str) -> None:
    rng = np.random.default_rng(11)
    days = [dt.date(2026, 1, d) for d in (1, 2, 3, 4)]
    rows = []
    for user in range(120):
        arms = (
            ["control", "treatment"] if design == "paired" else [("control", "treatment")[user % 2]]
        )
        for arm in arms:
            for i in rng.choice(3, size=rng.integers(1, 3), replace=False):
                day = days[int(i)]
                impressions = float(rng.integers(1, 20))
                rows.append(
                    (user, arm, day, float(rng.binomial(int(impressions), 0.2)), impressions)
                )
    per_day = pl.DataFrame(
        rows, schema=["user_id", "arm", "day", "ctr_num", "ctr_den"], orient="row"
    )
    static = (
        per_day.select("user_id", "arm")
        .unique()
        .with_columns(
            ctr_pre_num=(pl.col("user_id") % 7).cast(pl.Float64),
            ctr_pre_den=pl.lit(7.0),
        )
    )
    options = {
        "control": "control",
        "treatment": "treatment",
        "metrics": ["ctr"],
        "design": design,
        "cuped": True,
        "min_users_per_arm": 2,
    }
    per_user = daily_statistics(per_day, days, options, static=static).to_dict()
    moments = daily_moments_from_frames(
        per_day,
        days,
        [resolve_metric("ctr")],
        control="control",
        treatment="treatment",
        design=design,
        cuped=True,
        static=static,
    )
    assert_close(per_user, daily_from_moments(moments, options).to_dict())
    assert len(per_user["points"]) == 4 and per_user["points"][-1]["metrics"]
