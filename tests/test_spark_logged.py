"""`recsim abtest --arm-column` on Spark, and from moments: the polars per-user report's numbers.

Two small generated datasets (a few thousand events, several Parquet parts):
``split``, where users see arm A or B (a few both, some events of arm C or
without a label, a pre-period), and ``paired``, where every user sees both.
Each report is compared with the polars engine's per-user report: counts and
text exactly, floats within relative 1e-9 or absolute 1e-12.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from parity import assert_close

from recsim_cli.dataset import Dataset
from recsim_cli.errors import (
    ConfigError,
    DatasetError,
    ExperimentInvalidError,
    RecsimError,
    SchemaError,
    UserError,
)
from recsim_cli.experiment.abtest import run_logged_abtest
from recsim_cli.experiment.logged import aggregate_experiment
from recsim_cli.ingest import ingest

START = dt.datetime(2026, 1, 8, tzinfo=dt.UTC)


def generated_events(seed: int, users: int, *, paired: bool) -> pl.DataFrame:
    """Sessions of events over a 7-day pre-period and a 5-day experiment from START."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        user = f"u{u:04d}"
        taste = rng.beta(2, 8)
        arms = ["A", "B"] if paired else [("A", "B")[int(rng.random() < 0.5)]]
        if not paired and rng.random() < 0.04:
            arms.append("B" if arms[0] == "A" else "A")  # a user seen in both arms
        # paired: every user has a session of each arm inside the paired-window case's window
        first = (1.2, 3.2) if paired else (0.0, 5.0)
        plan: list[tuple[str | None, float]] = [(arm, rng.uniform(*first)) for arm in arms]
        plan += [(a, rng.uniform(0, 5)) for a in arms for _ in range(int(rng.integers(0, 3)))]
        if rng.random() < 0.7:
            plan.append((None, rng.uniform(-7, 0)))  # pre-period, unlabelled
        if rng.random() < 0.05:
            plan.append(("A", rng.uniform(-2, 0)))  # pre-period, labelled
        if rng.random() < 0.05:
            plan.append((None if rng.random() < 0.5 else "C", rng.uniform(0, 5)))
        for s, (arm, day) in enumerate(plan):
            lift = 1.3 if arm == "B" else 1.0
            begin = START + dt.timedelta(days=float(day))
            for e in range(int(rng.integers(1, 9))):
                clicked = bool(rng.random() < min(taste * lift, 1.0))
                rows.append(
                    (
                        user,
                        f"i{int(rng.integers(0, 50))}",
                        begin + dt.timedelta(seconds=37 * e + int(rng.integers(0, 30))),
                        f"{user}:{s}",
                        clicked,
                        float(np.round(rng.gamma(2.0, 40.0), 3)) if clicked else 0.0,
                        arm,
                    )
                )
    return pl.DataFrame(
        rows,
        schema={
            "user_id": pl.String,
            "item_id": pl.String,
            "ts": pl.Datetime("us", "UTC"),
            "session_id": pl.String,
            "clicked": pl.Boolean,
            "watch_time_s": pl.Float64,
            "policy": pl.String,
        },
        orient="row",
    )


def make_dataset(root: Path, events: pl.DataFrame) -> Path:
    logs = root / "events.parquet"
    events.write_parquet(logs)
    ingest(logs, data=root / "data", partition_rows=1500)
    assert len(Dataset.open(root / "data").manifest.events_files) > 1
    return root / "data"


@pytest.fixture(scope="module")
def split_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("split"), generated_events(1, 260, paired=False))


@pytest.fixture(scope="module")
def paired_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("paired"), generated_events(2, 150, paired=True))


def report(
    request: pytest.FixtureRequest, data: Path, engine: str, collect: str, **options: Any
) -> dict[str, Any]:
    if engine == "spark":
        request.getfixturevalue("spark")
    arms = {"control": "A", "treatment": "B"}
    result = run_logged_abtest(
        data,
        engine=engine,  # type: ignore[arg-type]
        collect=collect,  # type: ignore[arg-type]
        **{**arms, **options},
    ).to_dict()
    assert result.pop("computation") == {"engine": engine, "collect": collect}
    return result


CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "split": ("split_data", {"metrics": ["ctr", "watch_time", "session_depth"]}),
    "split-cuped-window": (
        "split_data",
        {
            "metrics": ["watch_time"],
            "guardrails": ["ctr"],
            "cuped": True,
            "start": START + dt.timedelta(hours=6),
            "end": START + dt.timedelta(days=4),
            "both_arms": "keep",
        },
    ),
    "paired-cuped": ("paired_data", {"design": "paired", "cuped": True, "pre_days": 5}),
    "paired-window": (
        "paired_data",
        {
            "design": "paired",
            "metrics": ["session_depth"],
            "start": START + dt.timedelta(days=1),
            "end": START + dt.timedelta(days=3, hours=12),
            "relative_ci": "delta",
        },
    ),
}


# Every case from polars moments; on Spark each case once, alternating users and moments
# (Spark runs are slow on a shared machine; the frame test below covers the users path).
PARITY = [(case, "polars", "moments") for case in CASES] + [
    ("split", "spark", "users"),
    ("split-cuped-window", "spark", "moments"),
    ("paired-cuped", "spark", "moments"),
    ("paired-window", "spark", "users"),
]


@pytest.mark.parametrize(("case", "engine", "collect"), PARITY)
def test_the_report_equals_the_polars_per_user_report(
    request: pytest.FixtureRequest, case: str, engine: str, collect: str
) -> None:
    fixture, options = CASES[case]
    data = request.getfixturevalue(fixture)
    expected = report(request, data, "polars", "users", **options)
    got = report(request, data, engine, collect, **options)
    assert_close(expected, got)
    # the comparison has something to compare: users, effects, every day of the window
    analysis = expected["analysis"]
    assert min(analysis["n_control"], analysis["n_treatment"]) > 100
    assert all(m["se"] > 0 for m in analysis["metrics"])
    assert len(expected["daily"]["points"]) >= 3 and expected["daily"]["points"][-1]["metrics"]
    if case == "split":
        assert expected["experiment"]["both_arm_users"] > 0
        assert expected["experiment"]["events_null_arm"] > 0
        assert expected["experiment"]["events_other_arms"] > 0
    if case == "split-cuped-window":  # paired: the same covariate in both arms cancels
        assert any(m["cuped"]["variance_reduction"] > 0.01 for m in analysis["metrics"])


def test_spark_builds_the_polars_frame(spark: Any, split_data: Path) -> None:
    from recsim_cli.experiment.logged import LoggedExperiment
    from recsim_cli.spark.logged import aggregate_experiment_spark, read_events

    dataset = Dataset.open(split_data)
    options: dict[str, Any] = {
        "control": "A",
        "treatment": "B",
        "start": START,
        "pre_days": 3,
        "both_arms": "keep",
        "by_day": True,
    }
    expected = aggregate_experiment(dataset.events(), **options)
    files = [str(dataset.root / f) for f in dataset.manifest.events_files]
    got = aggregate_experiment_spark(read_events(spark, files), **options)
    assert isinstance(got, LoggedExperiment) and expected.daily is not None
    assert got.counts == expected.counts
    assert got.daily is not None
    for mine, theirs in ((got.frame, expected.frame), (got.daily, expected.daily)):
        assert mine.columns == theirs.columns and mine.height == theirs.height
        assert mine.select("user_id", "arm").equals(theirs.select("user_id", "arm"))
        assert_close(mine.to_dicts(), theirs.to_dicts())
    assert expected.frame["ctr_pre_den"].null_count() > 0


def test_auto_collects_moments_above_the_threshold(
    request: pytest.FixtureRequest, split_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import recsim_cli.spark.logged as spark_logged

    expected = report(request, split_data, "polars", "users", metrics=["ctr"])
    monkeypatch.setattr(spark_logged, "MAX_COLLECTED_ROWS", 10)
    request.getfixturevalue("spark")
    auto = run_logged_abtest(
        split_data, control="A", treatment="B", metrics=["ctr"], engine="spark", collect="auto"
    ).to_dict()
    assert auto.pop("computation") == {"engine": "spark", "collect": "moments"}
    assert_close(expected, auto)
    on_polars = run_logged_abtest(split_data, control="A", treatment="B", metrics=["ctr"])
    assert on_polars.collect == "users"


ERRORS: list[tuple[dict[str, Any], type[RecsimError], str]] = [
    (
        {"treatment": "D"},
        UserError,
        "column 'policy' has no events labelled 'D' (labels found: A, B, C); give "
        "--control and --treatment from these.",
    ),
    (
        {"arm_column": "variant"},
        SchemaError,
        "the events have no column 'variant' (found: user_id, item_id, ts, session_id, slate, "
        "position, clicked, watch_time_s, device, propensity, policy, explore); name the column "
        "that holds each event's arm with --arm-column.",
    ),
    (
        {"start": dt.datetime(2026, 3, 1, tzinfo=dt.UTC)},
        UserError,
        "no events of arm 'A' in column 'policy' from 2026-03-01T00:00:00Z; check the window "
        "(--start, --end) and the arm labels.",
    ),
    (
        {"start": START + dt.timedelta(days=2), "end": START + dt.timedelta(days=1)},
        ConfigError,
        "the window ends (2026-01-09T00:00:00Z) before it starts (2026-01-10T00:00:00Z); give "
        "an end after the start.",
    ),
    (
        {"design": "paired", "metrics": ["ctr"]},
        ExperimentInvalidError,
        "the paired design needs every user in both arms, but ",
    ),
    ({"alpha": 0.7}, ConfigError, "alpha must be a number in (0, 0.5), e.g. 0.05; got 0.7."),
]
# the analysis's own errors (alpha) do not depend on the engine: checked on polars moments only
ERROR_CASES = [
    (engine, collect, *error)
    for engine, collect in [("polars", "users"), ("polars", "moments"), ("spark", "moments")]
    for error in ERRORS
    if engine == "polars" or "alpha" not in error[0]
]


@pytest.mark.parametrize(("engine", "collect", "changes", "error", "message"), ERROR_CASES)
def test_mistakes_raise_the_same_sentence(
    request: pytest.FixtureRequest,
    split_data: Path,
    engine: str,
    collect: str,
    changes: dict[str, Any],
    error: type[RecsimError],
    message: str,
) -> None:
    with pytest.raises(RecsimError) as info:
        report(request, split_data, engine, collect, **changes)
    assert type(info.value) is error
    assert str(info.value).startswith(message)
    with pytest.raises(RecsimError) as reference:
        report(request, split_data, "polars", "users", **changes)
    assert str(info.value) == str(reference.value)


@pytest.mark.parametrize("engine", ["polars", "spark"])
@pytest.mark.parametrize("option", [{"bootstrap": 200}, {"winsorize": 0.99}])
def test_moments_refuse_what_needs_every_user(
    request: pytest.FixtureRequest, split_data: Path, engine: str, option: dict[str, Any]
) -> None:
    with pytest.raises(ConfigError, match="needs every user's values, which moments do not keep"):
        report(request, split_data, engine, "moments", metrics=["ctr"], **option)


def test_an_unknown_collect_mode_is_refused(split_data: Path) -> None:
    with pytest.raises(UserError, match=r"^Unknown collect mode 'all'\. Available: auto, "):
        run_logged_abtest(split_data, control="A", treatment="B", collect="all")  # type: ignore[arg-type]


@pytest.mark.parametrize("engine", ["polars", "spark"])
def test_a_damaged_events_part_is_a_dataset_error(
    request: pytest.FixtureRequest, split_data: Path, tmp_path: Path, engine: str
) -> None:
    copy = tmp_path / "data"
    shutil.copytree(split_data, copy)
    part = copy / Dataset.open(copy).manifest.events_files[0]
    part.write_bytes(part.read_bytes()[:200])
    with pytest.raises(DatasetError, match=rf"^{copy}: cannot read the dataset's events \("):
        report(request, copy, engine, "users", metrics=["ctr"])
