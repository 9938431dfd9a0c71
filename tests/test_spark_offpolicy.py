"""`run_offpolicy_abtest(engine="spark")`: the same report as polars, and the same errors.

Each estimate runs on both engines over a small simulated world with two
recommendation files as arms; the Spark report must equal the polars one:
counts exactly, floats within a relative 1e-9 (absolute 1e-12), since Spark
sums in its own order.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from parity import assert_close

from recsim_cli.errors import ConfigError, RecsimError
from recsim_cli.experiment.offpolicy import prepare_impressions, replay_uniforms
from recsim_cli.experiment.offpolicy_abtest import (
    SESSION_METRICS,
    metric_evidence,
    run_offpolicy_abtest,
)
from recsim_cli.ingest import ingest
from recsim_cli.simulate import WorldConfig, run_simulation
from recsim_cli.spark import SparkConfig

WINDOW = (dt.datetime(2026, 1, 6, tzinfo=dt.UTC), dt.datetime(2026, 1, 9, tzinfo=dt.UTC))
SLATE_ONLY = ("first_slate_ctr", "first_slate_watch_time", "slate_ctr")
ITEMS = [f"v{i:06d}" for i in range(30)]


def _recs(path: Path, users: list[str], *, seed: int | None, days: bool = False) -> Path:
    """A recommendations file: the catalogue in id order, or shuffled per user (and day)."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for user in users:
        for day in ("2026-01-06", "2026-01-07", "2026-01-08") if days else (None,):
            order = ITEMS if seed is None else list(rng.permutation(ITEMS))
            for rank, item in enumerate(order[:16], start=1):
                row = {"user_id": user, "item_id": item, "rank": rank}
                rows.append(row if day is None else {**row, "day": day})
    pl.DataFrame(rows).write_csv(path)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small world (about 3,000 events), its datasets with and without some columns, two files."""
    root = tmp_path_factory.mktemp("spark-offpolicy")
    config = WorldConfig(
        users=300, items=30, days=4, slate_size=4, pool_size=30, epsilon=0.6, seed=3
    )
    run_simulation(config, root / "world")
    items = root / "world" / "items.csv.gz"
    ingest(root / "world" / "events.csv.gz", items=items, data=root / "data")
    events = pl.read_csv(root / "world" / "events.csv.gz")
    variants = {
        "no_explore": events.drop("explore"),
        "no_propensity": events.drop("propensity", "explore"),
        "no_slate": events.drop("slate", "position"),
    }
    paths = {"root": root, "data": root / "data"}
    for name, frame in variants.items():
        frame.write_csv(root / f"{name}.csv")
        ingest(root / f"{name}.csv", items=items, data=root / name)
        paths[name] = root / name
    users = sorted(events.get_column("user_id").unique().to_list())
    # Some users of the window get no list from the shuffled file: missing slots count too.
    paths["popular"] = _recs(root / "popular.csv", users, seed=None)
    paths["shuffled"] = _recs(root / "shuffled.csv", users[::2] + users[1::4], seed=1, days=True)
    return paths


def _engine(engine: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    if engine == "polars":
        return {}
    request.getfixturevalue("spark")  # the one shared session; the library joins it
    return {"engine": "spark", "spark": SparkConfig(master="local[2]")}


def _run(world: dict[str, Path], case: dict[str, Any], **engine: Any) -> dict[str, Any]:
    args = dict(case)
    data = world[args.pop("data", "data")]
    control = args.pop("control", "popular")
    report = run_offpolicy_abtest(
        data,
        control=str(world[control]) if control != "logged" else control,
        treatment=str(world[args.pop("treatment", "shuffled")]),
        registry=world["root"] / "models",
        window=WINDOW,
        metrics=args.pop("metrics", SLATE_ONLY),
        seed=11,
        **args,
        **engine,
    )
    return report.to_dict()


CASES: dict[str, dict[str, Any]] = {
    "snips-paired": {"estimator": "snips"},
    "ips-split": {"estimator": "ips", "design": "split", "traffic": 0.4},
    "replay-explore-paired": {"estimator": "replay"},
    "replay-rejection-split": {"estimator": "replay", "design": "split", "data": "no_explore"},
    "ips-epsilon-logged": {
        "estimator": "ips",
        "control": "logged",
        "target_epsilon": 0.1,
        "metrics": ("first_slate_ctr",),
        "guardrails": ("slate_watch_time",),
    },
}


@pytest.fixture(scope="module")
def references() -> dict[str, dict[str, Any]]:
    """Each case's polars report, made once; a test compares each engine's fresh run with it."""
    return {}


@pytest.mark.parametrize("engine", ["polars", "spark"])
@pytest.mark.parametrize("name", list(CASES))
def test_both_engines_give_the_same_report(
    name: str,
    engine: str,
    world: dict[str, Path],
    references: dict[str, dict[str, Any]],
    request: pytest.FixtureRequest,
) -> None:
    if name not in references:
        references[name] = _run(world, CASES[name])
    reference = references[name]
    report = _run(world, CASES[name], **_engine(engine, request))
    assert_close(report, reference)
    # The comparison has something to compare: weights, users and per-slot estimates.
    assert report["counts"]["impressions"] > 1000 and report["counts"]["users"] > 50
    for diagnostics in report["diagnostics"].values():
        assert diagnostics["effective_sample_size"] > 10
        assert sum(diagnostics["histogram"]["counts"]) > 0
    metrics = report["analysis"]["metrics"]
    assert any(m[arm]["estimate"] > 0 for m in metrics for arm in ("control", "treatment"))
    assert report["slate_breakdown"] and report["daily"] is not None


def test_replay_draws_are_the_same_hash_on_both_engines(spark: Any) -> None:
    # Strings of every length class of XXH64 (under 4, 4-7, 8-31, 32 and more bytes) and UTF-8.
    users = ["", "u", "u1234", "user-0000001", "ü" * 20, "x" * 33, "long-" * 15]
    events = pl.DataFrame(
        {
            "user_id": [u for u in users for _ in range(3)],
            "session_id": [f"{u}:s{j}" for u in users for j in range(3)],
            "slate": pl.Series([0, 1, 7] * len(users), dtype=pl.Int64),
            "position": pl.Series([0, 3, 1000] * len(users), dtype=pl.Int64),
            "item_id": ["i"] * 3 * len(users),
            "ts": [dt.datetime(2026, 1, 6, tzinfo=dt.UTC)] * 3 * len(users),
            "clicked": [False] * 3 * len(users),
            "watch_time_s": [0.0] * 3 * len(users),
        }
    )
    from recsim_cli.spark.offpolicy import replay_uniform_column

    imps, _, _ = prepare_impressions(events)
    ours = replay_uniforms(imps, seed=2**40 + 7)
    theirs = (
        spark.createDataFrame(
            imps.select("user_id", "session_id", "slate", "position").to_arrow(
                compat_level=pl.CompatLevel.oldest()
            )
        )
        .select(replay_uniform_column(2**40 + 7).alias("u"))
        .toArrow()
        .column("u")
        .to_numpy()
    )
    assert np.array_equal(ours, theirs)
    assert len(set(ours.tolist())) == len(ours) and ours.min() >= 0 and ours.max() < 1
    assert not np.array_equal(ours, replay_uniforms(imps, seed=2**40 + 8))


ERRORS = {
    "ips-without-propensities": ({"estimator": "ips", "data": "no_propensity"}, "propensit"),
    "replay-without-propensities": (
        {"estimator": "replay", "data": "no_propensity"},
        "or an explore column",
    ),
    "no-slates": ({"estimator": "snips", "data": "no_slate"}, "need a slate on every row"),
    "empty-window": (
        {"estimator": "snips", "window": (WINDOW[1], WINDOW[1] + dt.timedelta(days=30))},
        "holds no events",
    ),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_bad_input_fails_alike_on_both_engines(
    name: str, world: dict[str, Path], spark: Any
) -> None:
    case, words = ERRORS[name]
    errors: list[RecsimError] = []
    for engine in ({}, {"engine": "spark"}):
        args = dict(case)
        window = args.pop("window", WINDOW)
        data = world[args.pop("data", "data")]
        with pytest.raises(RecsimError) as caught:
            run_offpolicy_abtest(
                data,
                control=str(world["popular"]),
                treatment=str(world["shuffled"]),
                registry=world["root"] / "models",
                window=window,
                metrics=SLATE_ONLY,
                **args,
                **engine,
            )
        errors.append(caught.value)
    polars, on_spark = errors
    assert type(on_spark) is type(polars) and isinstance(polars, ConfigError)
    assert str(on_spark) == str(polars)
    assert words in str(polars)


MODEL_CASES: dict[str, dict[str, Any]] = {
    # dr's per-slate estimates, and the default metrics' rollouts with dr's first-slate correction
    "dr-default-metrics-paired": {"estimator": "dr", "metrics": None, "replicates": 3},
    # auto resolves to dm without propensities; logged's session sums come from its own slates
    "dm-auto-logged-split": {
        "estimator": "auto",
        "data": "no_propensity",
        "control": "logged",
        "design": "split",
        "metrics": ("ctr", "slates_per_session", "first_slate_ctr"),
        "replicates": 2,
    },
}


@pytest.mark.parametrize("name", list(MODEL_CASES))
def test_the_session_model_gives_the_same_report_on_both_engines(
    name: str, world: dict[str, Path], spark: Any
) -> None:
    reference = _run(world, MODEL_CASES[name])
    report = _run(world, MODEL_CASES[name], engine="spark", spark=SparkConfig(master="local[2]"))
    # the fit's own clock is the one number that differs between two runs
    for r in (report, reference):
        r["session_model"]["fit_seconds"] = 0.0
    assert_close(report, reference)
    # Something to compare: a fitted model, model-based estimates of both arms, sessions rolled.
    assert reference["session_model"]["rows"]["click"] > 500
    metrics = {m["metric"]: m for m in report["analysis"]["metrics"]}
    assert any(name in SESSION_METRICS for name in metrics)
    for name in metrics:
        assert report["evidence"][name] == metric_evidence(name, report["estimator"])
    for m in metrics.values():
        assert m["control"]["estimate"] != 0 and m["treatment"]["estimate"] != 0  # dr may be < 0
        assert m["control"]["estimate"] != m["treatment"]["estimate"]
    assert report["daily"] is not None
