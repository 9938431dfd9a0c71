"""Arms of an A/B test between recommenders: resolving them, their window, their daily lists."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from recsim_cli.dataset import Dataset
from recsim_cli.errors import (
    ConfigError,
    InputFileError,
    InternalError,
    SchemaError,
    UnknownNameError,
)
from recsim_cli.experiment.arms import (
    LIST_SCHEMA,
    PolicyArm,
    check_same_dataset,
    daily_lists,
    evaluation_window,
    parse_window,
    resolve_arm,
)
from recsim_cli.ingest import ingest
from recsim_cli.models.config import TrainConfig
from recsim_cli.models.two_stage import train
from recsim_cli.registry import Registry
from recsim_cli.simulate import WorldConfig, run_simulation

TINY_ALS = {"factors": 8, "iterations": 3}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(dataset, registry) of a tiny world: `pop` (popular) and `als` (ALS + LightGBM)."""
    root = tmp_path_factory.mktemp("arms")
    config = WorldConfig(users=300, items=300, days=5, slate_size=5, pool_size=20, seed=2)
    run_simulation(config, root / "world")
    world = root / "world"
    ingest(world / "events.csv.gz", items=world / "items.csv.gz", data=root / "data")
    registry = root / "models"
    train(
        "pop",
        data=root / "data",
        registry=registry,
        config=TrainConfig(candidates="popular", ranker="none"),
    )
    train(
        "als",
        data=root / "data",
        registry=registry,
        config=TrainConfig(candidate_params=TINY_ALS, ranker_days=1, n_candidates=50),
    )
    Registry(registry).set_alias("production", "als")
    return root / "data", registry


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- resolving ------------------------------------------------------------------------------


def test_logged_is_the_logging_policy(tmp_path: Path) -> None:
    arm = resolve_arm("logged", registry=tmp_path)
    assert (arm.kind, arm.label, arm.model, arm.cutoff) == ("logged", "logged", None, None)


def test_a_file_is_a_file_arm_with_its_hash(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "recs.csv", "user_id,item_id,rank\nu1,v1,1\n")
    arm = resolve_arm(str(path), registry=tmp_path / "none")
    assert (arm.kind, arm.path, arm.label) == ("file", path, "recs.csv")
    record = arm.to_dict()
    assert record["kind"] == "file"
    assert len(record["sha256"]) == 64
    json.dumps(record)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.parquet"
    with pytest.raises(InputFileError) as err:
        resolve_arm(str(missing), registry=tmp_path)
    assert str(err.value) == (
        f"{missing} does not exist; give an existing recommendations file with user_id, "
        "item_id, rank (1-based) and optionally day (YYYY-MM-DD)."
    )


def test_a_model_and_an_alias_resolve_to_the_model(trained: tuple[Path, Path]) -> None:
    data, registry = trained
    arm = resolve_arm("production", registry=registry)
    assert (arm.kind, arm.model, arm.label, arm.spec) == ("model", "als", "als", "production")
    assert arm.cutoff == datetime(2026, 1, 8, tzinfo=UTC)
    assert arm.dataset_fingerprint == Dataset.open(data).fingerprint
    record = arm.to_dict()
    assert record["cutoff"] == "2026-01-08T00:00:00Z"
    assert record["sha256"] is None
    json.dumps(record)


def test_an_unknown_model_lists_the_models_and_the_other_choices(
    trained: tuple[Path, Path],
) -> None:
    _, registry = trained
    for spec in ("alss", "Not A Name"):
        with pytest.raises(UnknownNameError) as err:
            resolve_arm(spec, registry=registry)
        assert str(err.value) == (
            f"Unknown model '{spec}'. Available: als, pop; or give `logged` (the logging "
            "policy) or a recommendations file (.csv, .csv.gz, .tsv, .tsv.gz, .parquet)."
        )


def test_an_unknown_model_in_an_empty_registry(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError) as err:
        resolve_arm("als", registry=tmp_path / "models")
    assert str(err.value) == (
        f"Unknown model 'als': {tmp_path / 'models'} holds no models; give `logged` (the "
        "logging policy) or a recommendations file (.csv, .csv.gz, .tsv, .tsv.gz, .parquet), "
        "or train one with recsim train als."
    )


# -- same dataset ---------------------------------------------------------------------------


def model(name: str, fingerprint: str, path: str) -> PolicyArm:
    return PolicyArm(
        spec=name, kind="model", model=name, dataset_fingerprint=fingerprint, dataset_path=path
    )


def test_models_on_one_dataset_pass_even_when_it_grew_since() -> None:
    logged = PolicyArm(spec="logged", kind="logged")
    check_same_dataset([model("a", "f1", "/d"), model("b", "f1", "/d")], "f1")
    # the analysed dataset was appended to after training: not an error
    check_same_dataset([model("a", "f1", "/d"), model("b", "f1", "/d"), logged], "f2")
    # one model trained before an append, one after: same folder, so the same dataset
    check_same_dataset([model("a", "f1", "/d"), model("b", "f2", "/d")], "f2")
    # the same logs ingested into another folder
    check_same_dataset([model("a", "f1", "/d"), model("b", "f1", "/copy")], "f1")


def test_models_on_different_datasets_are_refused() -> None:
    with pytest.raises(ConfigError) as err:
        check_same_dataset([model("a", "f1", "/d1"), model("b", "f2", "/d2")], "f1")
    assert str(err.value) == (
        "Models 'a' and 'b' were trained on different datasets (/d1 and /d2); retrain one of "
        "them on the same data so the test compares models, not data."
    )


# -- the window -----------------------------------------------------------------------------


FIRST = datetime(2026, 1, 5, 7, 30, tzinfo=UTC)
LAST = datetime(2026, 1, 18, 22, 10, tzinfo=UTC)


def test_the_window_runs_from_the_latest_cutoff_to_midnight_after_the_last_event() -> None:
    arms = [
        PolicyArm("a", "model", model="a", cutoff=datetime(2026, 1, 12, tzinfo=UTC)),
        PolicyArm("b", "model", model="b", cutoff=datetime(2026, 1, 14, tzinfo=UTC)),
        PolicyArm("logged", "logged"),
    ]
    assert evaluation_window(arms, None, first_event=FIRST, last_event=LAST) == (
        datetime(2026, 1, 14, tzinfo=UTC),
        datetime(2026, 1, 19, tzinfo=UTC),
    )
    early = [PolicyArm("a", "model", model="a", cutoff=datetime(2025, 12, 1, tzinfo=UTC))]
    start, _ = evaluation_window(early, None, first_event=FIRST, last_event=LAST)
    assert start == datetime(2026, 1, 5, tzinfo=UTC)


def test_an_explicit_window_wins_and_files_need_one() -> None:
    arms = [PolicyArm("a", "model", model="a", cutoff=datetime(2026, 1, 14, tzinfo=UTC))]
    given = parse_window("2026-01-10..2026-01-12")
    assert evaluation_window(arms, given, first_event=FIRST, last_event=LAST) == given
    files = [PolicyArm("r.csv", "file", path=Path("r.csv")), PolicyArm("logged", "logged")]
    assert evaluation_window(files, given, first_event=FIRST, last_event=LAST) == given
    with pytest.raises(ConfigError) as err:
        evaluation_window(files, None, first_event=FIRST, last_event=LAST)
    assert str(err.value) == (
        "--window START..END is required when no arm is a registry model (files and logged "
        "have no training cutoff); e.g. --window 2026-01-12..2026-01-15."
    )


def test_parse_window() -> None:
    assert parse_window("2026-01-12..2026-01-15") == (
        datetime(2026, 1, 12, tzinfo=UTC),
        datetime(2026, 1, 15, tzinfo=UTC),
    )
    assert parse_window("2026-01-12T06:00:00Z..2026-01-12T18:00:00Z") == (
        datetime(2026, 1, 12, 6, tzinfo=UTC),
        datetime(2026, 1, 12, 18, tzinfo=UTC),
    )
    for text in ("2026-01-12", "2026-01-12..", "monday..friday", "a..b..c"):
        with pytest.raises(ConfigError) as err:
            parse_window(text)
        assert str(err.value) == (
            f"--window {text}: give START..END as dates or UTC times, e.g. --window "
            "2026-01-12..2026-01-15 (END exclusive)."
        )
    with pytest.raises(ConfigError, match=r"is empty: END must be after START"):
        parse_window("2026-01-15..2026-01-12")


# -- lists from files -----------------------------------------------------------------------

DAYS = [date(2026, 1, 12), date(2026, 1, 13)]
USERS = pl.Series(["u1", "u2"])


def file_arm(path: Path) -> PolicyArm:
    return PolicyArm(spec=str(path), kind="file", path=path)


def test_a_list_without_days_serves_every_day(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "recs.csv",
        "user_id,item_id,rank\nu1,v2,2\nu1,v1,1\nu1,v3,3\nu2,v9,1\nu3,v1,1\n",
    )
    lists = daily_lists(file_arm(path), dataset=None, users=USERS, days=DAYS, length=2)
    expected = pl.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u1", "u2", "u2"],
            "day": [DAYS[0], DAYS[0], DAYS[1], DAYS[1], DAYS[0], DAYS[1]],
            "rank": [0, 1, 0, 1, 0, 0],
            "item_id": ["v1", "v2", "v1", "v2", "v9", "v9"],
        },
        schema=LIST_SCHEMA,
    )
    assert_frame_equal(lists, expected)


def test_a_list_with_days_serves_its_day_only(tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u2"],
            "item_id": ["v1", "v2", "v3", "v4"],
            "rank": [1, 2, 1, 1],
            "day": [DAYS[0], DAYS[0], DAYS[1], date(2026, 2, 1)],
        }
    )
    path = tmp_path / "recs.parquet"
    frame.write_parquet(path)
    lists = daily_lists(file_arm(path), dataset=None, users=USERS, days=DAYS, length=5)
    assert lists.schema == LIST_SCHEMA
    assert lists.rows() == [
        ("u1", DAYS[0], 0, "v1"),
        ("u1", DAYS[0], 1, "v2"),
        ("u1", DAYS[1], 0, "v3"),
    ]
    text = tmp_path / "recs.csv.gz"  # a day as text parses the same
    text.write_bytes(gzip.compress(frame.write_csv().encode()))
    again = daily_lists(file_arm(text), dataset=None, users=USERS, days=DAYS, length=5)
    assert_frame_equal(lists, again)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "user_id,item_id\nu1,v1\n",
            "{path} has no rank column (found user_id, item_id); a recommendations file needs "
            "user_id, item_id, rank (1-based) and optionally day (YYYY-MM-DD).",
        ),
        (
            "user_id,item_id,rank\nu1,v1,1\nu1,v2,two\n",
            "{path}: rank must be a whole number of at least 1 (1 = top); row 2 has 'two'.",
        ),
        (
            "user_id,item_id,rank\nu1,v1,0\n",
            "{path}: rank must be a whole number of at least 1 (1 = top); row 1 has '0'.",
        ),
        (
            "user_id,item_id,rank\nu1,v1,1.5\n",
            "{path}: rank must be a whole number of at least 1 (1 = top); row 1 has '1.5'.",
        ),
        (
            "user_id,item_id,rank\nu1,v1,1\n,v2,2\n",
            "{path}: row 2 has no user_id; give user_id, item_id, rank (1-based) and "
            "optionally day (YYYY-MM-DD) on every row.",
        ),
        (
            "user_id,item_id,rank,day\nu1,v1,1,2026-01-12\nu1,v2,1,2026-01-13\nu1,v3,1,2026-01-12\n",
            "{path}: user u1 has two items at rank 1 on 2026-01-12 (row 1); give each rank and "
            "each item once per user and day.",
        ),
        (
            "user_id,item_id,rank\nu1,v1,1\nu1,v1,2\n",
            "{path}: user u1 has item v1 twice (row 1); give each rank and each item once per "
            "user and day.",
        ),
        (
            "user_id,item_id,rank,day\nu1,v1,1,12/01/2026\n",
            "{path}: day must be a date like 2026-01-12; row 1 has '12/01/2026'.",
        ),
    ],
)
def test_a_bad_file_is_one_sentence(tmp_path: Path, text: str, message: str) -> None:
    path = write_csv(tmp_path / "recs.csv", text)
    with pytest.raises(SchemaError) as err:
        daily_lists(file_arm(path), dataset=None, users=USERS, days=DAYS, length=5)
    assert str(err.value) == message.format(path=path)


def test_logged_has_no_lists() -> None:
    with pytest.raises(InternalError):
        daily_lists(PolicyArm("logged", "logged"), dataset=None, users=USERS, days=DAYS, length=5)


# -- lists from models ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pop", "als"])
def test_a_model_gives_full_deterministic_lists_every_day(
    trained: tuple[Path, Path], name: str
) -> None:
    data, registry = trained
    dataset = Dataset.open(data)
    arm = resolve_arm(name, registry=registry)
    users = pl.Series(["u000000", "u000007", "u000123", "stranger"])
    days = [date(2026, 1, 8), date(2026, 1, 9)]
    events = dataset.events().collect()
    progress: list[tuple[str, int, int | None]] = []
    lists = daily_lists(
        arm,
        dataset=dataset,
        users=users,
        days=days,
        length=12,
        events=events,
        progress=lambda task, done, total: progress.append((task, done, total)),
    )
    assert lists.schema == LIST_SCHEMA
    assert lists.height == 4 * 2 * 12
    counts = lists.group_by("user_id", "day").agg(
        pl.col("rank").sort(), pl.col("item_id").n_unique()
    )
    assert counts.height == 8
    assert all(ranks == list(range(12)) for ranks in counts["rank"].to_list())
    assert (counts["item_id"] == 12).all()
    assert lists.equals(lists.sort("user_id", "day", "rank"))
    assert progress[-1] == (f"lists {name}", 2, 2)
    # the same inputs give the same lists; reading the events itself changes nothing
    again = daily_lists(arm, dataset=dataset, users=users, days=days, length=12)
    assert_frame_equal(lists, again)


def test_a_model_cannot_serve_before_its_cutoff(trained: tuple[Path, Path]) -> None:
    data, registry = trained
    arm = resolve_arm("pop", registry=registry)
    with pytest.raises(ConfigError) as err:
        daily_lists(
            arm,
            dataset=Dataset.open(data),
            users=USERS,
            days=[date(2026, 1, 7)],
            length=5,
        )
    assert str(err.value) == (
        "The window starts on 2026-01-07, before the training cutoff of model 'pop' "
        "(2026-01-08T00:00:00Z); start --window at the cutoff or later."
    )
