"""`evaluate(engine="spark")` gives the polars report: same counts, floats to 1e-9, same errors."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from parity import ABS, REL, assert_close
from polars.testing import assert_frame_equal

from recsim_cli.errors import (
    ConfigError,
    DatasetError,
    InputFileError,
    RecsimWarning,
    SchemaError,
)
from recsim_cli.evaluate import EvalReport, Relevance, evaluate
from recsim_cli.ingest import ingest
from recsim_cli.models.config import TrainConfig
from recsim_cli.models.two_stage import train

ENGINES = ["polars", "spark"]


def _engine(request: pytest.FixtureRequest, engine: str) -> dict[str, Any]:
    """The engine argument; the Spark case joins the one test session."""
    if engine == "spark":
        request.getfixturevalue("spark")
    return {"engine": engine}


def assert_same_report(polars_report: EvalReport, spark_report: EvalReport) -> None:
    assert_close(polars_report.to_dict(), spark_report.to_dict())
    assert_frame_equal(polars_report.per_user, spark_report.per_user, rel_tol=REL, abs_tol=ABS)


# -- a generated world ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """40 users over 8 days, a catalogue, a model, and recommendation files with every oddity."""
    root = tmp_path_factory.mktemp("spark_eval")
    rng = np.random.default_rng(7)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    n = 1500
    users = rng.integers(0, 40, n)
    items = np.minimum(rng.zipf(1.3, n), 30) - 1
    clicked = rng.random(n) < 0.5
    log = pl.DataFrame(
        {
            "user_id": [f"u{u:02d}" for u in users],
            "item_id": [f"i{i:02d}" for i in items],
            "ts": [
                (start + timedelta(seconds=int(s))).isoformat()
                for s in rng.integers(0, 8 * 86400, n)
            ],
            "clicked": clicked,
            "watch_time_s": np.where(clicked, rng.integers(1, 120, n), 0).astype(float),
            "device": rng.choice(["tv", "mobile", "desktop"], n),
            "slate": rng.integers(0, 12, n),
        }
    )
    # users 40-44 appear only in the window: new users
    log = log.with_columns(
        pl.when(pl.col("ts") > "2026-03-07T12").then(pl.col("user_id").str.replace("u0", "u4"))
        .otherwise(pl.col("user_id"))
    )  # fmt: skip
    log.write_csv(root / "log.csv")
    # i25-i29 have no catalogue row: published and duration come from the log
    pl.DataFrame(
        {
            "item_id": [f"i{i:02d}" for i in range(25)],
            "published_ts": [(start + timedelta(days=i % 9 - 1)).isoformat() for i in range(25)],
            "duration_s": [60.0 + 5 * i for i in range(25)],
        }
    ).write_csv(root / "items.csv")
    data = root / "data"
    ingest(root / "log.csv", items=root / "items.csv", data=data, partition_rows=400)

    # lists by rank: duplicate (user, rank) ties, a repeated item, a null rank, users never in
    # the truth, items the user clicked before the window, and lists shorter than k
    recs_rows = []
    for u in range(48):
        length = int(rng.integers(0, 9))
        for r, i in enumerate(rng.integers(0, 30, length)):
            rank = None if r == 3 else int(r // 2 + 1)
            recs_rows.append((f"u{u:02d}", f"i{i:02d}", rank))
    recs_rows += [("nobody", "i01", 1), ("nobody", "i02", 2)]
    by_rank = root / "by_rank.csv"
    pl.DataFrame(recs_rows, schema=["user_id", "item_id", "rank"], orient="row").write_csv(by_rank)
    # lists by score: integer scores (many ties), NaN, repeated items with different scores
    m = 300
    by_score = root / "by_score.parquet"
    pl.DataFrame(
        {
            "user_id": [f"u{u:02d}" for u in rng.integers(0, 46, m)],
            "item_id": [f"i{i:02d}" for i in rng.integers(0, 30, m)],
            "score": np.where(rng.random(m) < 0.05, np.nan, rng.integers(0, 5, m).astype(float)),
        }
    ).write_parquet(by_score)
    registry = root / "models"
    with pytest.warns(RecsimWarning, match="lack published_ts"):
        train("pop", data=data, registry=registry, config=TrainConfig("popular", ranker="none"))
    return {"data": data, "registry": registry, "by_rank": by_rank, "by_score": by_score}


@pytest.mark.parametrize(
    "options",
    [
        # a registry model's lists go to Spark from the driver; a string --by resolves on Spark
        dict(models=["pop"], ks="1,3,5,10", by="device", permutations=50),
        # a float --by resolves on the driver; watched relevance reads the completed durations
        dict(
            ks="2,10",
            relevance=Relevance.parse("watched:0.5"),
            include_seen=True,
            map_denominator="relevant",
            by="watch_time_s",
            metrics="map,ndcg,recall",
            test_days=3,
        ),
    ],
    ids=["model-clicked-by-device", "files-watched-by-float"],
)
def test_spark_report_equals_polars(
    world: dict[str, Path], spark: Any, options: dict[str, Any]
) -> None:
    options = dict(
        recs_files=[world["by_rank"], world["by_score"]],
        data=world["data"],
        registry=world["registry"],
        **options,
    )
    # both engines complete the catalogue from the log, and say so
    with pytest.warns(RecsimWarning, match="lack published_ts"):
        expected = evaluate(**options)
    with pytest.warns(RecsimWarning, match="lack published_ts"):
        got = evaluate(engine="spark", **options)
    assert_same_report(expected, got)
    # the data exercise what they should: ties, absent users, new users, segments
    assert got.users > 10 and got.new_users > 0
    files = got.inputs[-2:]
    assert all(f.users_without_relevant > 0 for f in files)
    assert all(f.users_without_recommendations > 0 for f in files)
    assert len(got.inputs[0].segments[options["by"]]) > 1
    assert any(t.permutation_p is not None for _, _, tests in got.pairs for t in tests) == (
        "permutations" in options
    )


# -- a case checked by hand ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three users over three days; the last day is held out (test_days 1)."""
    root = tmp_path_factory.mktemp("tiny")
    rows = [
        ("a", "i1", "2026-01-01T10:00:00Z", "true", "100"),  # a clicked i1 before the window
        ("a", "i1", "2026-01-03T10:00:00Z", "true", "100"),  # ... and again in it: seen
        ("a", "i2", "2026-01-03T10:00:00Z", "true", "10"),
        ("a", "i3", "2026-01-03T11:00:00Z", "false", "0"),
        ("b", "i3", "2026-01-02T10:00:00Z", "false", "0"),
        ("b", "i3", "2026-01-03T10:00:00Z", "true", "90"),
        ("c", "i2", "2026-01-03T12:00:00Z", "true", "60"),  # c: new in the window
    ]
    log = root / "log.csv"
    log.write_text(
        "user_id,item_id,ts,clicked,watch_time_s,device\n"
        + "".join(f"{u},{i},{t},{c},{w},tv\n" for u, i, t, c, w in rows)
    )
    items = root / "items.csv"
    items.write_text(
        "item_id,published_ts,duration_s\n"
        "i1,2025-12-01T00:00:00Z,100\ni2,2025-12-01T00:00:00Z,100\ni3,2025-12-30T00:00:00Z,100\n"
    )
    ingest(log, items=items, data=root / "data")
    # a: i2 and i3 tie at 1.0, i2 first by id; b: i3's score is NaN, so last; c: no list
    pl.DataFrame(
        {
            "user_id": ["a", "a", "a", "b", "b", "z"],
            "item_id": ["i3", "i2", "i1", "i1", "i3", "i1"],
            "score": [1.0, 1.0, 0.5, 2.0, float("nan"), 1.0],
        }
    ).write_parquet(root / "recs.parquet")
    return root


@pytest.mark.parametrize("engine", ENGINES)
def test_hand_checked_metrics(tiny: Path, engine: str, request: pytest.FixtureRequest) -> None:
    report = evaluate(
        recs_files=[tiny / "recs.parquet"],
        data=tiny / "data",
        ks="1,2",
        test_days=1,
        **_engine(request, engine),
    )
    assert (report.users, report.new_users, report.relevant_pairs) == (3, 1, 3)
    result = report.inputs[0]
    assert (result.users_without_relevant, result.users_without_recommendations) == (1, 1)
    per_user = report.per_user.select("user_id", "n_recommended", "ndcg@2", "mrr@2", "map@2")
    expected = pl.DataFrame(
        {
            "user_id": ["a", "b", "c"],
            "n_recommended": [3, 2, 0],
            "ndcg@2": [1.0, 1 / math.log2(3), 0.0],  # b's hit is at position 2
            "mrr@2": [1.0, 0.5, 0.0],
            "map@2": [1.0, 0.5, 0.0],
        }
    )
    assert_frame_equal(per_user, expected, rel_tol=REL, abs_tol=ABS)
    assert result.means["hit_rate@1"].mean == pytest.approx(1 / 3)
    assert result.means["precision@2"].mean == pytest.approx(1 / 3)
    assert result.segments["first_seen"]["new"]["recall@2"].mean == 0.0
    assert result.coverage == 1.0  # a's i2, i3 and b's i1, i3; z is not judged
    assert result.fresh_share == 0.5  # i3, published 4 days before the window, 2 of 4 rows
    assert result.curves["hit_rate"].mean == pytest.approx((1 / 3, 2 / 3))


# -- errors --------------------------------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


BAD_FILES: dict[str, tuple[str, str, type[Exception], str]] = {
    # name -> (file name, contents, error class, message after the path)
    "missing column": (
        "bad.csv",
        "user,item,rank\nu1,v1,1\n",
        SchemaError,
        " needs columns user_id, item_id and rank or score; found user, item, rank.",
    ),
    "bad rank": (
        "bad.csv",
        "user_id,item_id,rank\na,i1,first\n",
        SchemaError,
        "Column 'rank' of the recommendations is String, expected numbers; cast it to a "
        "numeric type.",
    ),
    "boolean score": (
        "bad.csv",
        "user_id,item_id,score\na,i1,true\n",
        SchemaError,
        "Column 'score' of the recommendations is Boolean, expected numbers; cast it to a "
        "numeric type.",
    ),
    "unknown format": (
        "recs.txt",
        "user_id,item_id,rank\n",
        InputFileError,
        ": unknown format; give recommendations as .parquet or .csv.",
    ),
    "empty csv": ("empty.csv", "", InputFileError, " cannot be read as recommendations ("),
    "not parquet": (
        "recs.parquet",
        "user_id,item_id,rank\n",
        InputFileError,
        " cannot be read as recommendations (",
    ),
}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("bad", list(BAD_FILES))
def test_bad_recommendation_files(
    tiny: Path, tmp_path: Path, bad: str, engine: str, request: pytest.FixtureRequest
) -> None:
    name, text, error, message = BAD_FILES[bad]
    path = _write(tmp_path / name, text)
    with pytest.raises(error) as caught:
        evaluate(recs_files=[path], data=tiny / "data", test_days=1, **_engine(request, engine))
    found = str(caught.value)
    assert message in found
    # one sentence (a reader's own message may follow in parentheses)
    assert re.sub(r"\(.*\)", "", found).count(". ") == 0 and found.endswith(".")
    if message.startswith((" ", ":")):  # the message names the file first
        assert found.startswith(str(path))


@pytest.mark.parametrize("engine", ENGINES)
def test_missing_file_and_dataset_errors(
    tiny: Path, tmp_path: Path, engine: str, request: pytest.FixtureRequest
) -> None:
    options: dict[str, Any] = dict(data=tiny / "data", test_days=1, **_engine(request, engine))
    recs = tiny / "recs.parquet"
    with pytest.raises(InputFileError, match="does not exist; give a Parquet or CSV file"):
        evaluate(recs_files=[tmp_path / "none.csv"], **options)
    with pytest.raises(ConfigError, match=r"^--by nope: the dataset has no such column; choose "
                       r"one of user_id, session_id, slate, position, clicked, watch_time_s, "
                       r"device, propensity, policy, explore\.$"):  # fmt: skip
        evaluate(recs_files=[recs], by="nope", **options)
    with pytest.raises(DatasetError, match=r"^No user has a relevant item \(watched:1\)"):
        evaluate(recs_files=[recs], relevance=Relevance.parse("watched:1"), **options)
    with pytest.raises(ConfigError, match="--engine dask: give polars"):
        evaluate(recs_files=[recs], **{**options, "engine": "dask"})
