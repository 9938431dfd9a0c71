"""analyse() end to end: the frame in, a JSON-ready ExperimentResult out."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from recsim_cli.errors import ConfigError, UnknownNameError
from recsim_cli.experiment import analyse, compare, frame_from_arrays
from recsim_cli.experiment.synthetic import experiment_frame, simulate_experiments

METRICS3 = ["ctr", "watch_time", "session_depth"]


def test_importing_the_engine_loads_no_scipy_stats() -> None:
    code = (
        "import sys, recsim_cli.experiment, recsim_cli.experiment.gate, "
        "recsim_cli.experiment.validate\n"
        "print('scipy.stats' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_analyse_is_the_vectorised_core_applied_to_one_experiment() -> None:
    samples = simulate_experiments(np.random.default_rng(41), 3, 400, pre_period=True)
    batch = {m: compare(c, t, cuped=True) for m, (c, t) in samples.items()}
    for i in range(3):
        arms = {
            arm: {
                f"{m}_{part}": getattr(pair[k], attr)[i]
                for m, pair in samples.items()
                for part, attr in (
                    ("num", "num"),
                    ("den", "den"),
                    ("pre_num", "pre_num"),
                    ("pre_den", "pre_den"),
                )
            }
            for k, arm in enumerate(("control", "treatment"))
        }
        result = analyse(frame_from_arrays(arms), METRICS3, cuped=True, correction="none")
        for m in METRICS3:
            one = result.metric(m)
            assert one.p_value == pytest.approx(batch[m].p_value[i], rel=1e-12)
            assert one.ci == pytest.approx((batch[m].ci_low[i], batch[m].ci_high[i]), rel=1e-12)
            assert one.cuped is not None
            assert one.cuped.theta == pytest.approx(batch[m].theta[i], rel=1e-12)


def test_the_result_is_complete_and_json_ready() -> None:
    frame = experiment_frame(np.random.default_rng(42), 2_000, pre_period=True)
    result = analyse(
        frame,
        ["watch_time", "session_depth"],
        guardrails=["ctr"],
        cuped=True,
        winsorize_at=0.999,
        bootstrap=200,
        rng=np.random.default_rng(1),
    )
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["format_version"] == 1
    assert data["healthy"] is True
    assert [c["name"] for c in data["health"]] == [
        "sample_ratio",
        "min_users",
        "one_arm_per_user",
        "metric:watch_time",
        "metric:session_depth",
        "metric:ctr",
    ]
    wt = result.metric("watch_time")
    assert wt.role == "primary" and wt.test == "welch-t" and wt.relative_method == "fieller"
    assert wt.adjusted_p_value is not None and wt.adjusted_p_value >= wt.p_value
    assert result.metric("ctr").adjusted_p_value is None  # guardrails are not adjusted
    assert wt.cuped is not None and wt.cuped.pre_missing_control > 0
    assert wt.control.users == 2_000  # users without pre-period data are kept
    assert wt.winsorized is not None and wt.winsorized.capped_control >= 1
    assert wt.bootstrap is not None and wt.bootstrap.resamples == 200
    assert wt.mde > 0 and wt.mde_relative == pytest.approx(wt.mde / abs(wt.control.estimate))
    assert set(data["metrics"][0]) >= {
        "control",
        "treatment",
        "difference",
        "ci",
        "se",
        "p_value",
        "adjusted_p_value",
        "relative",
        "relative_ci",
        "mde",
        "mde_relative",
        "test",
        "relative_method",
    }


def test_winsorisation_reduces_the_variance_of_a_heavy_tailed_metric() -> None:
    frame = experiment_frame(np.random.default_rng(43), 3_000)
    plain = analyse(frame, ["watch_time"]).metric("watch_time")
    capped = analyse(frame, ["watch_time"], winsorize_at=0.99).metric("watch_time")
    assert capped.se < plain.se


def test_a_paired_replay_uses_the_paired_test() -> None:
    frame = experiment_frame(np.random.default_rng(44), 500, design="paired")
    result = analyse(frame, METRICS3, design="paired")
    assert [c.name for c in result.health][:1] == ["min_users"]  # no SRM for a paired replay
    for m in result.metrics:
        assert m.test == "paired-t" and m.df == 499


def test_normal_reference_distribution() -> None:
    frame = experiment_frame(np.random.default_rng(45), 300)
    m = analyse(frame, ["ctr"], distribution="normal").metric("ctr")
    assert m.test == "z" and math.isinf(m.df)
    assert m.critical_value == pytest.approx(1.959964, rel=1e-6)
    assert json.loads(json.dumps(m.to_dict()))["df"] is None


def test_an_empty_arm_is_reported_not_raised() -> None:
    frame = experiment_frame(np.random.default_rng(46), 100).filter(pl.col("arm") == "treatment")
    result = analyse(frame, ["ctr"])
    assert not result.healthy
    failed = {c.name: c.detail for c in result.failed_checks}
    assert failed["min_users"].startswith("Arm 'control' has no users")
    assert "metric:ctr" in failed
    m = result.metric("ctr")
    assert math.isnan(m.p_value) and m.relative is None
    json.dumps(result.to_dict(), allow_nan=False)


def test_an_undefined_relative_lift_is_flagged_not_printed() -> None:
    n = 200
    num_c = np.zeros(n)
    num_c[:2] = 1.0  # 2 clicks in 10,000 impressions: C / SE(C) = 1.42 < q = 1.97
    num_t = np.random.default_rng(47).poisson(1.0, n).astype(float)
    frame = frame_from_arrays(
        {
            "control": {"ctr_num": num_c, "ctr_den": np.full(n, 50.0)},
            "treatment": {"ctr_num": num_t, "ctr_den": np.full(n, 50.0)},
        }
    )
    for method in ("fieller", "delta", "log"):
        m = analyse(frame, ["ctr"], relative_ci=method).metric("ctr")
        assert m.p_value < 1e-6  # the absolute test is fine
        assert m.relative is None and m.relative_ci is None
        assert m.relative_note == (
            "the control mean of ctr is not distinguishable from 0 at alpha = 0.05, so a "
            "relative change is undefined"
        )
        assert m.to_dict()["relative"] is None


def test_sample_ratio_mismatch_is_flagged() -> None:
    frame = experiment_frame(np.random.default_rng(48), 1_000)
    lopsided = frame.filter((pl.col("arm") == "control") | (pl.col("user_id") % 4 != 0))
    result = analyse(lopsided, ["ctr"])
    srm = result.health[0]
    assert srm.name == "sample_ratio" and not srm.passed
    assert srm.detail.startswith("Sample-ratio mismatch: 1,000 control and 750 treatment users")
    assert analyse(lopsided, ["ctr"], split=(1000, 750)).health[0].passed


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"alpha": 0.7}, ConfigError, "alpha must be a number in (0, 0.5), e.g. 0.05; got 0.7."),
        (
            {"design": "crossover"},
            UnknownNameError,
            "Unknown design 'crossover'. Available: paired, split.",
        ),
        (
            {"correction": "fdr"},
            UnknownNameError,
            "Unknown correction 'fdr'. Available: bh, holm, none.",
        ),
        (
            {"distribution": "cauchy"},
            UnknownNameError,
            "Unknown distribution 'cauchy'. Available: normal, t.",
        ),
        (
            {"split": (0.5,)},
            ConfigError,
            "split must be two positive numbers (control, treatment), e.g. [0.5, 0.5]; got (0.5,).",
        ),
        (
            {"guardrails": ["ctr"]},
            ConfigError,
            "metric 'ctr' is listed twice; a metric is either a primary or a guardrail, once.",
        ),
        ({"min_users_per_arm": 1}, ConfigError, "min_users_per_arm must be at least 2; got 1."),
        ({"power": 1.0}, ConfigError, "power must be in (0, 1), e.g. 0.8; got 1.0."),
    ],
)
def test_bad_options_raise_clear_errors(kwargs, error, message) -> None:
    frame = experiment_frame(np.random.default_rng(49), 60)
    with pytest.raises(error) as err:
        analyse(frame, ["ctr"], **kwargs)
    assert str(err.value) == message
