"""The two-stage model end to end on sample_data/: training, leakage, quality, recommend, errors."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsim_cli.dataset import Dataset
from recsim_cli.ingest import ingest
from recsim_cli.models.config import TrainConfig
from recsim_cli.models.two_stage import Context, recommend, train
from recsim_cli.split import dataset_cutoff, nearest_midnight, temporal_cutoff

SAMPLE_DATA = Path(__file__).resolve().parent.parent / "sample_data"

SMALL_ALS = {"factors": 32, "iterations": 8}


@pytest.fixture(scope="module")
def sample_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("sample") / "data"
    ingest(SAMPLE_DATA / "events.csv.gz", items=SAMPLE_DATA / "items.csv.gz", data=data)
    return data


@pytest.fixture(scope="module")
def trained(sample_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with `pop` (popular, no ranker) and `als-lgbm` trained on sample_data."""
    registry = tmp_path_factory.mktemp("registry")
    train(
        "pop",
        data=sample_dataset,
        registry=registry,
        config=TrainConfig(candidates="popular", ranker="none"),
    )
    train(
        "als-lgbm",
        data=sample_dataset,
        registry=registry,
        config=TrainConfig(candidates="als", candidate_params=SMALL_ALS),
    )
    return registry


def _files_digest(folder: Path) -> dict[str, str]:
    """SHA-256 of every model file except the manifest (which holds the creation time)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


# -- the split ---------------------------------------------------------------------------


def test_cutoff_is_the_nearest_midnight_to_last_event_minus_test_days() -> None:
    from datetime import UTC, datetime

    last = datetime(2026, 1, 19, 2, 40, tzinfo=UTC)
    assert temporal_cutoff(last, 2) == datetime(2026, 1, 17, tzinfo=UTC)
    # a log that ends just before midnight holds out the same whole days
    assert temporal_cutoff(datetime(2026, 1, 18, 23, 59, tzinfo=UTC), 2) == datetime(
        2026, 1, 17, tzinfo=UTC
    )
    assert nearest_midnight(datetime(2026, 1, 1, 12, tzinfo=UTC)) == datetime(
        2026, 1, 2, tzinfo=UTC
    )


def test_sample_data_cutoff(sample_dataset: Path) -> None:
    cutoff = dataset_cutoff(Dataset.open(sample_dataset), 2)
    assert cutoff.isoformat() == "2026-01-17T00:00:00+00:00"


# -- quality -------------------------------------------------------------------------------


def _watch_share_at_10(recs: pl.DataFrame, truth: pl.DataFrame) -> float:
    """Share of the held-out watch time that falls on items in the users' top 10."""
    hits = recs.filter(pl.col("rank") <= 10).join(truth, on=["user_id", "item_id"], how="inner")
    return float(hits["watch_time_s"].sum() / truth["watch_time_s"].sum())


def _hit_rate_at_10(recs: pl.DataFrame, truth: pl.DataFrame) -> float:
    """Share of test users with at least one held-out watch in their top 10."""
    hits = recs.filter(pl.col("rank") <= 10).join(truth, on=["user_id", "item_id"], how="inner")
    return hits["user_id"].n_unique() / truth["user_id"].n_unique()


def test_two_stage_ranks_held_out_watches_better_than_popularity(
    trained: Path, sample_dataset: Path
) -> None:
    dataset = Dataset.open(sample_dataset)
    cutoff = dataset_cutoff(dataset, 2)
    truth = (
        dataset.events()
        .filter((pl.col("ts") >= cutoff) & pl.col("clicked"))
        .group_by("user_id", "item_id")
        .agg(pl.col("watch_time_s").sum())
        .collect()
    )
    users = truth["user_id"].unique().sort().to_list()
    pop = recommend("pop", registry=trained, data=sample_dataset, users=users, k=10).frame
    two = recommend("als-lgbm", registry=trained, data=sample_dataset, users=users, k=10).frame
    # seen on sample_data (513 users with held-out watches): the watch-time ranker puts
    # 0.126 of the held-out watch time in the top 10, popularity 0.018 (6.8x); users with
    # at least one held-out watch in their top 10: 0.185 against 0.131.
    pop_share, two_share = _watch_share_at_10(pop, truth), _watch_share_at_10(two, truth)
    assert two_share > 3 * pop_share, (pop_share, two_share)
    assert _hit_rate_at_10(two, truth) > _hit_rate_at_10(pop, truth)


def test_every_user_gets_exactly_k_distinct_unseen_items(
    trained: Path, sample_dataset: Path
) -> None:
    result = recommend("als-lgbm", registry=trained, data=sample_dataset, k=10)
    frame = result.frame
    assert frame.group_by("user_id").len()["len"].unique().to_list() == [10]
    assert frame.select(pl.struct("user_id", "item_id").n_unique()).item() == frame.height
    assert frame.filter(pl.col("rank") == 1).height == result.users
    cutoff = dataset_cutoff(Dataset.open(sample_dataset), 2)
    watched = (
        Dataset.open(sample_dataset)
        .events()
        .filter(pl.col("clicked") & (pl.col("ts") < cutoff))
        .select("user_id", "item_id")
        .unique()
        .collect()
    )
    assert frame.join(watched, on=["user_id", "item_id"], how="inner").height == 0
    # users first seen after the cutoff are recommended too (the fallback)
    assert result.unknown_users > 0


def test_context_override_changes_scores_not_the_shape(trained: Path, sample_dataset: Path) -> None:
    users = ["u000001", "u000002", "u000003"]
    a = recommend("als-lgbm", registry=trained, data=sample_dataset, users=users, k=5)
    b = recommend(
        "als-lgbm",
        registry=trained,
        data=sample_dataset,
        users=users,
        k=5,
        context=Context(device="tv", hour=3),
    )
    assert a.frame.height == b.frame.height == 15
    assert not a.frame["score"].equals(b.frame["score"])


# -- leakage and determinism ---------------------------------------------------------------


def _ingest_variant(
    tmp_path: Path, name: str, change: Callable[[pl.DataFrame], pl.DataFrame]
) -> Path:
    events = change(pl.read_csv(SAMPLE_DATA / "events.csv.gz", infer_schema=False))
    path = tmp_path / f"{name}.csv"
    events.write_csv(path)
    data = tmp_path / name
    ingest(path, items=SAMPLE_DATA / "items.csv.gz", data=data)
    return data


def test_nothing_at_or_after_the_cutoff_influences_the_model(tmp_path: Path) -> None:
    cutoff = "2026-01-17T00:00:00Z"

    def scramble(events: pl.DataFrame) -> pl.DataFrame:
        after = pl.col("ts") >= cutoff
        return events.with_columns(
            pl.when(after).then(pl.lit("true")).otherwise(pl.col("clicked")).alias("clicked"),
            pl.when(after)
            .then(pl.lit("999.0"))
            .otherwise(pl.col("watch_time_s"))
            .alias("watch_time_s"),
            pl.when(after).then(pl.lit("u000001")).otherwise(pl.col("user_id")).alias("user_id"),
        )

    original = _ingest_variant(tmp_path, "original", lambda e: e)
    scrambled = _ingest_variant(tmp_path, "scrambled", scramble)
    registry = tmp_path / "models"
    config = TrainConfig(candidates="als", candidate_params=SMALL_ALS)
    a = train("a", data=original, registry=registry, config=config)
    b = train("b", data=scrambled, registry=registry, config=config)
    assert a.cutoff == b.cutoff
    assert _files_digest(a.path) == _files_digest(b.path)


def test_same_seed_same_model_files(sample_dataset: Path, tmp_path: Path) -> None:
    config = TrainConfig(candidates="bpr", objective="click", seed=7)
    a = train("a", data=sample_dataset, registry=tmp_path, config=config)
    b = train("b", data=sample_dataset, registry=tmp_path, config=config)
    assert _files_digest(a.path) == _files_digest(b.path)


def test_manifest_records_cutoff_dataset_and_features(trained: Path, sample_dataset: Path) -> None:
    manifest = json.loads((trained / "als-lgbm" / "manifest.json").read_text())
    assert manifest["cutoff"] == "2026-01-17T00:00:00Z"
    assert manifest["dataset"]["fingerprint"] == Dataset.open(sample_dataset).fingerprint
    assert manifest["kind"] == "als+lightgbm"
    from recsim_cli.models.features import FEATURES

    assert manifest["features"] == list(FEATURES)
    assert manifest["config"]["candidate_params"] == SMALL_ALS
    assert not list((trained / "als-lgbm").rglob("*.pkl"))


# -- config ----------------------------------------------------------------------------------


def test_config_defaults_round_trip_through_toml(tmp_path: Path) -> None:
    path = tmp_path / "train.toml"
    path.write_text(TrainConfig().to_toml())
    assert TrainConfig.from_toml(path) == TrainConfig()


@settings(max_examples=50, deadline=None)
@given(
    candidates=st.sampled_from(["popular", "fresh", "als", "bpr", "itemknn"]),
    n=st.integers(1, 1000),
    objective=st.sampled_from(["watch_time", "click", "lambdarank"]),
    seed=st.integers(0, 2**31),
    params=st.dictionaries(
        st.from_regex(r"[a-z_]{1,12}", fullmatch=True),
        st.one_of(
            st.integers(-(10**6), 10**6),
            st.floats(allow_nan=False, allow_infinity=False),
            st.booleans(),
            st.text(max_size=8),
        ),
        max_size=4,
    ),
)
def test_any_config_round_trips_through_toml(
    candidates: str, n: int, objective: str, seed: int, params: dict[str, object]
) -> None:
    import tomllib

    config = TrainConfig(
        candidates=candidates,
        n_candidates=n,
        objective=objective,  # type: ignore[arg-type]
        seed=seed,
        candidate_params=params,  # type: ignore[arg-type]
        ranker_params=params,  # type: ignore[arg-type]
    )
    assert TrainConfig.from_dict(tomllib.loads(config.to_toml())) == config


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("bogus = 1\n", "unknown key 'bogus'"),
        ("n_candidates = 0\n", "n_candidates must be a whole number of at least 1"),
        ('objective = "mse"\n', "objective must be one of"),
        ("seed = \n", "not valid TOML"),
    ],
)
def test_bad_config_files_name_the_problem(tmp_path: Path, text: str, needle: str) -> None:
    from recsim_cli.errors import ConfigError

    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        TrainConfig.from_toml(path)


# -- the CLI ----------------------------------------------------------------------------------


def test_train_and_recommend_through_the_cli(invoke, sample_dataset: Path, tmp_path: Path) -> None:
    registry = tmp_path / "models"
    result = invoke(
        [
            "train", "pop", "--data", sample_dataset, "--registry", registry,
            "--candidates", "popular", "--ranker", "none", "--json",
        ]
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["kind"] == "popular"
    assert summary["cutoff"] == "2026-01-17T00:00:00Z"
    users = tmp_path / "users.txt"
    users.write_text("u000001\nnobody\n")
    out = tmp_path / "recs.parquet"
    result = invoke(
        ["recommend", "pop", "--registry", registry, "--users", users, "--k", "5", "--out", out]
    )
    assert result.exit_code == 0, result.stderr
    recs = pl.read_parquet(out)
    assert recs.columns == ["user_id", "item_id", "rank", "score"]
    assert recs.group_by("user_id").len().sort("user_id")["len"].to_list() == [5, 5]
    assert "unknown users" in result.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["train", "x", "--candidates", "nope"], "Unknown candidate generator 'nope'. Available:"),
        (["train", "x", "--test-days", "30"], "is empty; use fewer --test-days"),
        (["train", "Bad/Name"], "name"),
        (["train", "x", "--objective", "mse"], "objective must be one of"),
        (["train", "x", "--ranker-days", "14"], "too short for --ranker-days"),
    ],
)
def test_train_errors_are_one_sentence_and_exit_2(
    invoke, sample_dataset: Path, tmp_path: Path, args: list[str], needle: str
) -> None:
    result = invoke([*args, "--data", sample_dataset, "--registry", tmp_path / "models"])
    assert result.exit_code == 2, result.stdout + result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "models" / "x").exists()


def test_train_name_clash_needs_force(invoke, sample_dataset: Path, tmp_path: Path) -> None:
    args = ["train", "pop", "--data", sample_dataset, "--registry", tmp_path, "--ranker", "none"]
    args += ["--candidates", "popular"]
    assert invoke(args).exit_code == 0
    clash = invoke(args)
    assert clash.exit_code == 2
    assert "--force" in clash.stderr
    assert invoke([*args, "--force"]).exit_code == 0


def test_recommend_errors(invoke, trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.parquet"
    missing = invoke(["recommend", "nope", "--registry", trained, "--out", out])
    assert missing.exit_code == 2
    assert "als-lgbm" in missing.stderr  # lists the models there are
    early = invoke(
        ["recommend", "pop", "--registry", trained, "--out", out, "--as-of", "2026-01-10"]
    )
    assert early.exit_code == 2
    assert "before the model's cutoff" in early.stderr
    bad_ctx = invoke(["recommend", "pop", "--registry", trained, "--out", out, "--context", "x=1"])
    assert bad_ctx.exit_code == 2
    assert "unknown key" in bad_ctx.stderr
    assert not out.exists()


def test_a_corrupt_model_is_a_clear_error(
    invoke, sample_dataset: Path, trained: Path, tmp_path: Path
) -> None:
    import shutil

    registry = tmp_path / "models"
    shutil.copytree(trained, registry)
    (registry / "als-lgbm" / "candidates" / "state.npz").write_bytes(b"not an npz")
    result = invoke(
        ["recommend", "als-lgbm", "--registry", registry, "--out", tmp_path / "r.parquet"]
    )
    assert result.exit_code == 2
    assert "corrupt" in result.stderr
    assert "Traceback" not in result.stderr


def test_batching_does_not_change_the_lists(trained: Path, sample_dataset: Path) -> None:
    from recsim_cli.models.two_stage import TwoStageModel, serving_inputs
    from recsim_cli.registry import Registry

    model = TwoStageModel.load(Registry(trained).open("als-lgbm"))
    history, items = serving_inputs(Dataset.open(sample_dataset), model.cutoff)
    users = model.candidates.users.ids.head(300)
    whole = model.recommend(users, 10, history=history, items=items)
    batched = model.recommend(users, 10, history=history, items=items, batch_users=64)
    assert whole.equals(batched)


def test_as_of_later_leaves_out_what_users_watched_since(
    trained: Path, sample_dataset: Path
) -> None:
    as_of = dataset_cutoff(Dataset.open(sample_dataset), 1)  # one day after the model's cutoff
    result = recommend("als-lgbm", registry=trained, data=sample_dataset, k=10, as_of=as_of)
    model_cutoff = dataset_cutoff(Dataset.open(sample_dataset), 2)
    since = (
        Dataset.open(sample_dataset)
        .events()
        .filter(pl.col("clicked") & (pl.col("ts") >= model_cutoff) & (pl.col("ts") < as_of))
        .select("user_id", "item_id")
        .unique()
        .collect()
    )
    assert since.height > 0
    assert result.frame.join(since, on=["user_id", "item_id"], how="inner").height == 0
