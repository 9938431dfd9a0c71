"""`recsim simulate --continue`: the feedback loop's next days, served from a model's lists.

One tiny world (300 users, 400 videos, 4 days), a dataset and a popularity
model trained on it, shared by the module; each test continues it 2 days.
"""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner, Result

from recsim_cli.cli import app
from recsim_cli.dataset import Dataset
from recsim_cli.registry import Registry
from recsim_cli.simulate import load_world
from recsim_cli.simulate.continuation import (
    continuation_generators,
    continue_simulation,
    extend_world,
    log_state,
)
from recsim_cli.simulate.deployment import StaticListPolicy, live_test_users
from recsim_cli.simulate.logs import id_series
from recsim_cli.simulate.storage import load_world_metadata

FIRST = ["--users", "300", "--items", "400", "--days", "4", "--slate-size", "5"]
FIRST += ["--pool-size", "20", "--seed", "3"]
START = date(2026, 1, 5)
NEW_DAY = START + timedelta(days=4)
EPSILON = 0.2
LENGTH = 20  # list length: pool_size // slate_size whole slates of 5
FILES = ("events.csv.gz", "items.csv.gz", "world.json", "world.npz")


def run(args: Sequence[object]) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def ok(args: Sequence[object]) -> Result:
    result = run(args)
    assert result.exit_code == 0, result.stderr
    return result


def events_of(folder: Path) -> pl.DataFrame:
    return pl.read_csv(folder / "events.csv.gz", try_parse_dates=True)


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A world written by a plain `recsim simulate`, and the dataset of its logs."""
    root = tmp_path_factory.mktemp("loop")
    paths = {"root": root, "world": root / "w0", "data": root / "data", "models": root / "m"}
    ok(["simulate", *FIRST, "--out", paths["world"], "--json"])
    w0 = paths["world"]
    ok(["ingest", w0 / "events.csv.gz", "--items", w0 / "items.csv.gz", "--data", paths["data"]])
    return paths


@pytest.fixture(scope="module")
def models(loop: dict[str, Path]) -> Path:
    """A registry: ``pop`` (popular, alias production) and ``fresh`` (alias candidate)."""
    registry = loop["models"]
    for name, kind in (("pop", "popular"), ("fresh", "fresh")):
        args = ["train", name, "--candidates", kind, "--ranker", "none"]
        ok([*args, "--data", loop["data"], "--registry", registry, "--force", "--json"])
    Registry(registry).set_alias("production", "pop")
    Registry(registry).set_alias("candidate", "fresh")
    return registry


@pytest.fixture(scope="module")
def continued(loop: dict[str, Path], models: Path) -> Path:
    """The world continued 2 days, served by ``pop`` from the registry."""
    out = loop["root"] / "w1"
    ok(_continue(loop["world"], out, models))
    return out


def _continue(world: Path, out: Path, registry: Path, *extra: object) -> list[object]:
    return [
        "simulate",
        "--continue",
        "--world",
        world,
        "--serve",
        "pop",
        "--registry",
        registry,
        "--days",
        "2",
        "--out",
        out,
        *extra,
    ]


# -- the world goes on -------------------------------------------------------------------


def test_continuation_days_follow_the_last_logged_day(
    loop: dict[str, Path], continued: Path
) -> None:
    old, new = events_of(loop["world"]), events_of(continued)
    assert sorted(p.name for p in continued.iterdir()) == sorted(FILES)
    assert old["ts"].max().date() <= NEW_DAY - timedelta(days=1) < NEW_DAY
    assert new["ts"].min().date() == NEW_DAY
    assert new["ts"].max().date() <= NEW_DAY + timedelta(days=2)  # a last session may pass midnight
    world, meta = load_world_metadata(continued)
    assert (world.config.start, world.config.days, world.config.users) == (START, 6, 300)
    record = meta["continuation"]
    assert record["first_day"] == NEW_DAY.isoformat()
    assert record["days"] == 2
    assert record["served"][0]["model"] == "pop"
    assert record["served"][0]["fingerprint"] == Registry(loop["models"]).open("pop").fingerprint
    assert new["policy"].unique().to_list() == ["pop"]


def test_ids_never_collide_with_the_earlier_logs(loop: dict[str, Path], continued: Path) -> None:
    old, new = events_of(loop["world"]), events_of(continued)
    old_sessions = old["session_id"].unique()
    new_sessions = new["session_id"].unique().sort()
    assert not new_sessions.is_in(old_sessions.implode()).any()
    # Numbered on from the earlier logs: s0000000 .. s(N-1), then sN ...
    n_old = old_sessions.len()
    assert new_sessions.to_list() == [f"s{i:07d}" for i in range(n_old, n_old + len(new_sessions))]
    record = load_world_metadata(continued)[1]["continuation"]
    assert record["first_session"] == n_old
    assert record["sessions_logged"] == n_old + len(new_sessions)


def test_new_uploads_take_new_ids_and_are_published_on_the_new_days(
    loop: dict[str, Path], continued: Path
) -> None:
    old = pl.read_csv(loop["world"] / "items.csv.gz", try_parse_dates=True)
    items = pl.read_csv(continued / "items.csv.gz", try_parse_dates=True)
    # The earlier catalogue is kept exactly; the uploads come after it.
    assert items.head(old.height).equals(old)
    fresh = items.slice(old.height)
    uploads_per_day = old.filter(pl.col("published_ts").dt.date() >= START).height / 4
    assert fresh.height == round(uploads_per_day * 2) > 0
    assert fresh["item_id"].to_list() == id_series("v", items.height, 6)[old.height :].to_list()
    days = fresh["published_ts"].dt.date()
    assert days.min() == NEW_DAY and days.max() == NEW_DAY + timedelta(days=1)
    assert fresh["published_ts"].is_sorted()


def test_a_plain_world_counts_its_sessions_from_its_seed(loop: dict[str, Path]) -> None:
    world, meta = load_world_metadata(loop["world"])
    state = log_state(world, meta)
    assert state.days == 4
    assert state.sessions == events_of(loop["world"])["session_id"].n_unique()


def test_extend_world_keeps_everything_and_adds_uploads(loop: dict[str, Path]) -> None:
    world, meta = load_world_metadata(loop["world"])
    rng = continuation_generators(world, log_state(world, meta), seed=0)
    grown = extend_world(world, 3, rng["items"])
    n = world.config.items
    assert grown.config.days == 7 and grown.config.items > n
    np.testing.assert_array_equal(grown.user_taste, world.user_taste)
    np.testing.assert_array_equal(grown.item_topic[:n], world.item_topic)
    assert (np.diff(grown.item_published_ts) >= 0).all()
    assert (grown.item_published_ts[n:] >= world.start_ts + 4 * 86_400).all()
    np.testing.assert_allclose(np.linalg.norm(grown.item_topic[n:], axis=1), 1.0)


# -- the loop: ingest --append, train again, continue again ------------------------------


def test_ingest_append_grows_the_dataset_and_training_again_works(
    loop: dict[str, Path], continued: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    w0 = loop["world"]
    ok(["ingest", w0 / "events.csv.gz", "--items", w0 / "items.csv.gz", "--data", data])
    before = Dataset.open(data).manifest.stats
    result = ok(
        [
            "ingest",
            continued / "events.csv.gz",
            "--items",
            continued / "items.csv.gz",
            "--data",
            data,
            "--append",
            "--json",
        ]
    )
    summary = json.loads(result.stdout)
    assert summary["status"] == "appended"
    assert summary["rows_rejected"] == 0 and summary["duplicates_dropped"] == 0
    after = Dataset.open(data).manifest.stats
    new = events_of(continued)
    assert after.rows == before.rows + new.height
    assert after.sessions == before.sessions + new["session_id"].n_unique()
    assert after.catalogue_items == load_world(continued).config.items > before.catalogue_items
    registry = tmp_path / "models"
    train = ["train", "pop", "--candidates", "popular", "--ranker", "none", "--force"]
    trained = json.loads(ok([*train, "--data", data, "--registry", registry, "--json"]).stdout)
    assert trained["cutoff"].startswith(NEW_DAY.isoformat())  # 2 test days held out of 6
    # A model trained past the end of the world's first logs cannot serve their continuation.
    late = ["train", "late", "--candidates", "popular", "--ranker", "none", "--test-days", "1"]
    ok([*late, "--data", data, "--registry", registry, "--json"])
    args = _continue(loop["world"], tmp_path / "stale", registry)
    args[args.index("pop")] = "late"
    stale = run(args)
    assert stale.exit_code == 2
    assert stale.stderr == (
        "Error: Model 'late' was trained on logs up to 2026-01-10T00:00:00Z, past the end of "
        "this world's logs at 2026-01-09T00:00:00Z; continue the world's latest folder (the "
        "last --out of --continue).\n"
    )
    # ... and the retrained model serves the next continuation of the continued world.
    again = tmp_path / "w2"
    ok(_continue(continued, again, registry))
    events = events_of(again)
    assert events["ts"].min().date() == NEW_DAY + timedelta(days=2)
    record = load_world_metadata(continued)[1]["continuation"]
    assert events["session_id"].min() == f"s{record['sessions_logged']:07d}"


# -- what is served ----------------------------------------------------------------------


def _model_lists(loop: dict[str, Path], registry: Path, name: str) -> pl.DataFrame:
    from recsim_cli.experiment.arms import daily_lists, resolve_arm

    arm = resolve_arm(name, registry=registry)
    return daily_lists(
        arm,
        dataset=Dataset.open(loop["data"]),
        users=id_series("u", 300, 6),
        days=[NEW_DAY],
        length=LENGTH,
    ).select("user_id", "rank", "item_id")


def _check_served(events: pl.DataFrame, lists: pl.DataFrame, length: int = LENGTH) -> None:
    """Exploit slates show the list's ranks kS..kS+S-1; every propensity is ListPolicy's."""
    hit, miss = 1 - EPSILON + EPSILON / length, EPSILON / length
    at = events.with_columns((pl.col("slate") * 5 + pl.col("position")).alias("rank"))
    listed = at.join(lists, on=["user_id", "rank"], how="left", suffix="_listed")
    exploit = listed.filter(~pl.col("explore"))
    assert exploit.height > 0
    assert (exploit["item_id"] == exploit["item_id_listed"]).all()
    np.testing.assert_allclose(exploit["propensity"].to_numpy(), hit, atol=5e-4)
    explore = listed.filter(pl.col("explore"))
    on_slot = (explore["item_id"] == explore["item_id_listed"]).to_numpy()
    expected = np.where(on_slot, hit, miss)
    np.testing.assert_allclose(explore["propensity"].to_numpy(), expected, atol=5e-4)
    assert 0.1 < listed["explore"].mean() < 0.3  # type: ignore[operator]


def test_served_lists_are_the_models_lists_with_exact_propensities(
    loop: dict[str, Path], models: Path, continued: Path
) -> None:
    _check_served(events_of(continued), _model_lists(loop, models, "pop"))


def test_the_static_policy_serves_one_days_lists_every_day(continued: Path) -> None:
    world = load_world(continued)
    ranking = np.tile(np.arange(LENGTH), (world.config.users, 1))
    keys = np.arange(world.config.users) * world.config.days + 4
    policy = StaticListPolicy(keys, ranking, 0.0, 5, world.config.days, list_day=4)
    users = np.array([0, 1, 2])
    slates = policy.slates(
        users, np.array([4, 5, 5]), np.array([0, 1, 3]), np.random.default_rng(0)
    )
    np.testing.assert_array_equal(slates.items[1], np.arange(5, 10))
    np.testing.assert_array_equal(slates.items[2], np.arange(15, 20))
    assert (slates.propensity == 1).all()


def test_a_live_test_splits_users_by_hash_and_labels_the_policy(
    loop: dict[str, Path], models: Path, tmp_path: Path
) -> None:
    out = tmp_path / "w1"
    args = _continue(loop["world"], out, models, "--test", "candidate", "--test-share", "0.3")
    args[args.index("pop")] = "production"
    summary = json.loads(ok([*args, "--json"]).stdout)
    events = events_of(out)
    assert sorted(events["policy"].unique().to_list()) == ["candidate", "production"]
    arm_of = events.group_by("user_id").agg(pl.col("policy").unique())
    assert (arm_of["policy"].list.len() == 1).all()  # a user sees one arm only
    in_test = set(arm_of.filter(pl.col("policy").list.first() == "candidate")["user_id"])
    users = id_series("u", 300, 6)
    hashed = live_test_users(users, 0.3, "0:candidate")
    assert in_test == set(users.filter(hashed)) & set(arm_of["user_id"])
    assert 0.3 - 3 * 0.027 < hashed.mean() < 0.3 + 3 * 0.027  # binomial(300, 0.3) band
    assert [a["label"] for a in summary["served"]] == ["production", "candidate"]
    assert [a["model"] for a in summary["served"]] == ["pop", "fresh"]
    assert [a["share"] for a in summary["arms"]] == [0.7, 0.3]
    for label, model in (("production", "pop"), ("candidate", "fresh")):
        served = events.filter(pl.col("policy") == label)
        _check_served(served, _model_lists(loop, models, model))
    # `recsim abtest` analyses the live test from the logs.
    data = tmp_path / "data"
    w0 = loop["world"]
    ok(["ingest", w0 / "events.csv.gz", "--items", w0 / "items.csv.gz", "--data", data])
    ok(
        [
            "ingest",
            out / "events.csv.gz",
            "--items",
            out / "items.csv.gz",
            "--data",
            data,
            "--append",
        ]
    )
    report = json.loads(
        ok(
            [
                "abtest",
                "--data",
                data,
                "--arm-column",
                "policy",
                "--control",
                "production",
                "--treatment",
                "candidate",
                "--split",
                "70/30",
                "--json",
            ]
        ).stdout
    )
    experiment = report["experiment"]
    assert experiment["users"] == {
        "production": arm_of.height - len(in_test),
        "candidate": len(in_test),
    }
    assert experiment["events_used"] == events.height  # the first logs have no policy label


def test_same_inputs_same_bytes_and_another_seed_other_draws(
    loop: dict[str, Path], models: Path, continued: Path, tmp_path: Path
) -> None:
    again = tmp_path / "again"
    ok([*_continue(loop["world"], again, models), "--json"])
    for name in FILES:
        assert (again / name).read_bytes() == (continued / name).read_bytes(), name
    other = tmp_path / "other"
    ok([*_continue(loop["world"], other, models), "--seed", "1", "--json"])
    assert gzip.decompress((other / "events.csv.gz").read_bytes()) != gzip.decompress(
        (continued / "events.csv.gz").read_bytes()
    )


def test_the_library_call_is_what_the_cli_runs(
    loop: dict[str, Path], models: Path, continued: Path, tmp_path: Path
) -> None:
    summary = continue_simulation(
        loop["world"], tmp_path / "lib", serve="pop", registry=models, days=2
    )
    assert (tmp_path / "lib" / "events.csv.gz").read_bytes() == (
        continued / "events.csv.gz"
    ).read_bytes()
    out = summary.to_dict()
    assert out["first_day"] == NEW_DAY.isoformat() and out["days"] == 2
    assert out["impressions"] == events_of(continued).height
    assert out["epsilon"] == EPSILON and out["world_seed"] == 3


# -- mistakes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--continue", "--serve", "pop"],
            "--continue needs --world DIR: the folder of the world to continue.",
        ),
        (
            ["--continue", "--world", "{world}"],
            "--continue needs --serve NAME: the registry model whose lists serve the new days.",
        ),
        (
            ["--serve", "pop"],
            "--serve does not apply here: it applies only to --continue; drop it.",
        ),
        (
            ["--continue", "--world", "{world}", "--serve", "pop", "--users", "10"],
            "--users does not apply here: with --continue the world in --world fixes it; drop it.",
        ),
        (
            ["--continue", "--world", "{world}", "--serve", "pop", "--test-share", "0.5"],
            "--test-share needs --test: name the model the live test serves.",
        ),
    ],
)
def test_flag_mistakes_are_one_sentence(
    args: list[str], message: str, loop: dict[str, Path], tmp_path: Path, invoke
) -> None:
    args = [a.replace("{world}", str(loop["world"])) for a in args]
    result = invoke(["simulate", *args, "--out", tmp_path / "out"])
    assert result.exit_code == 2
    assert result.stderr == f"Error: {message}\n"
    assert not (tmp_path / "out").exists()


def test_unknown_model_missing_world_and_overwriting_are_refused(
    loop: dict[str, Path], models: Path, tmp_path: Path, invoke
) -> None:
    out = tmp_path / "out"
    result = invoke(_continue(loop["world"], out, models, "--test", "nope"))
    assert result.exit_code == 2
    assert result.stderr == "Error: Unknown model 'nope'. Available: fresh, pop.\n"
    missing = tmp_path / "nowhere"
    result = invoke(_continue(missing, out, models))
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: {missing / 'world.json'} does not exist; point at a folder written by "
        "`recsim simulate`.\n"
    )
    result = invoke(_continue(loop["world"], loop["world"], models))
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: --out {loop['world']} is the --world folder; write the continuation to a new "
        "folder, so the earlier logs stay as they are.\n"
    )
    result = invoke(_continue(loop["world"], out, models, "--test", "pop"))
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: --test names the served model 'pop'; give another model to test against it.\n"
    )
    result = invoke(_continue(loop["world"], out, models, "--epsilon", "0"))
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: --epsilon must be in (0, 1], the share of slates served at random; got 0.0.\n"
    )
    assert not out.exists()


# -- serving from the store --------------------------------------------------------------


def test_users_without_a_full_list_in_the_store_are_topped_up_from_the_fallback() -> None:
    from recsim_cli.simulate.deployment import _fill_from_fallback

    lists = pl.DataFrame(
        {
            "user_id": ["a", "a", "b", "b", "b"],
            "rank": pl.Series([0, 1, 0, 1, 2], dtype=pl.Int32),
            "item_id": ["x", "y", "p", "q", "r"],
        }
    )
    users = pl.Series("user_id", ["a", "b", "c"])
    filled = _fill_from_fallback(lists, users, ["y", "z", "w", "v"], 3).sort("user_id", "rank")
    assert filled.rows() == [
        ("a", 0, "x"),
        ("a", 1, "y"),
        ("a", 2, "z"),
        ("b", 0, "p"),
        ("b", 1, "q"),
        ("b", 2, "r"),
        ("c", 0, "y"),
        ("c", 1, "z"),
        ("c", 2, "w"),
    ]


def test_lists_from_the_store_are_served_and_another_models_store_is_refused(
    loop: dict[str, Path], models: Path, tmp_path: Path, invoke
) -> None:
    pytest.importorskip("recsim_cli.serve.reader")
    from recsim_cli.serve.reader import read_export

    url = f"sqlite:///{tmp_path / 'recs.db'}"
    ok(["export", "pop", "--to", url, "--registry", models, "--k", LENGTH, "--json"])
    out = tmp_path / "w1"
    args = _continue(loop["world"], out, models, "--from", url, "--json")
    args[args.index("pop")] = "production"  # an alias is resolved before the check
    summary = json.loads(ok(args).stdout)
    assert summary["served"][0] | {"fingerprint": None} == {
        "label": "production",
        "model": "pop",
        "fingerprint": None,
        "source": url,
        "share": 1.0,
        "list_length": LENGTH,
    }
    export = read_export(url)
    lists = export.lists.select("user_id", pl.col("rank").cast(pl.Int64), "item_id")
    served_users = events_of(out)["user_id"].unique()
    missing = served_users.filter(~served_users.is_in(lists["user_id"].implode()))
    fallback = pl.DataFrame({"user_id": missing}).join(
        pl.DataFrame({"rank": range(LENGTH), "item_id": export.fallback[:LENGTH]}), how="cross"
    )
    _check_served(events_of(out), pl.concat([lists, fallback], how="vertical_relaxed"))

    other = _continue(loop["world"], tmp_path / "w2", models, "--from", url)
    other[other.index("pop")] = "fresh"
    result = invoke(other)
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: The store at {url} serves pop, not fresh; export fresh first "
        f"(recsim export fresh --to {url}).\n"
    )
    # The same name, another build: the registry's pop was trained again since the export.
    rebuilt = tmp_path / "rebuilt"
    shutil.copytree(models, rebuilt)
    train = ["train", "pop", "--candidates", "popular", "--ranker", "none", "--n-candidates", "150"]
    ok([*train, "--data", loop["data"], "--registry", rebuilt, "--force", "--json"])
    result = invoke(_continue(loop["world"], tmp_path / "w2", rebuilt, "--from", url))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: The store at {url} serves another build of pop ")
    assert result.stderr.endswith(f"not pop; export pop first (recsim export pop --to {url}).\n")
    assert not (tmp_path / "w2").exists()
