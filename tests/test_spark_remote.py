"""A dataset at a URL, written and read through Spark's Hadoop file system.

The URLs here are ``file://`` ones: the same Hadoop ``FileSystem`` calls as for
``hdfs://`` or ``s3a://`` (which need a cluster or a bucket), on a local folder
whose files the tests can then compare with a dataset stored at a plain path.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest
from parity import rounded

from recsim_cli.dataset import MANIFEST_NAME, Dataset, open_dataset
from recsim_cli.errors import DatasetError
from recsim_cli.spark.session import SparkConfig

KEY = ["user_id", "ts", "slate", "position", "item_id"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small simulated logged A/B test in two files (days 1-4, then 5-6) and a catalogue."""
    from recsim_cli.simulate import (
        WorldConfig,
        arms_from_names,
        events_frame,
        items_frame,
        simulate_logs,
    )

    folder = tmp_path_factory.mktemp("spark-remote")
    arms = arms_from_names(["prod", "personal"])
    logs = simulate_logs(WorldConfig(users=400, items=200, days=6, seed=5, arms=arms))
    events = events_frame(logs.world, logs.sessions, logs.impressions, logs.user_arm)
    cut = events.get_column("ts").min() + dt.timedelta(days=4)  # type: ignore[operator]
    events.filter(pl.col("ts") < cut).write_csv(folder / "first.csv")
    events.filter(pl.col("ts") >= cut).write_csv(folder / "second.csv")
    items_frame(logs.world).write_csv(folder / "items.csv")
    popular = (
        events.group_by("item_id").agg(pl.col("clicked").sum().alias("n")).sort("n", "item_id")
    )
    top = popular.reverse().head(10).get_column("item_id")
    users = events.select("user_id").unique().sort("user_id")
    recs = users.join(pl.DataFrame({"item_id": top, "rank": range(1, 11)}), how="cross")
    recs.write_csv(folder / "recs.csv")
    return folder


def _url(folder: Path) -> str:
    return folder.resolve().as_uri()


def _rounded(value: object) -> object:
    """Floats to 9 significant digits, without the paths, timings and engine that differ."""
    drop = ("elapsed", "data", "path", "source", "created", "computation", "written_by")
    return rounded(value, drop)


def test_a_dataset_at_a_url_is_the_dataset_at_a_path(
    invoke, spark, world: Path, tmp_path: Path
) -> None:
    """Ingest, append, evaluate and abtest: Spark at a URL gives polars' numbers at a path."""
    outputs: dict[str, dict[str, object]] = {}
    for kind in ("path", "url"):
        folder = tmp_path / kind
        # The path is stored and read by polars: the engines' parity is the parity suite's.
        data = _url(folder) if kind == "url" else str(folder)
        spark_flags = ["--data", data, *(["--engine", "spark"] if kind == "url" else [])]
        first = invoke(
            ["ingest", world / "first.csv", "--items", world / "items.csv", *spark_flags, "--json"]
        )
        assert first.exit_code == 0, first.stderr
        second = invoke(["ingest", world / "second.csv", "--append", *spark_flags, "--json"])
        assert second.exit_code == 0, second.stderr
        assert json.loads(second.stdout)["version"] == 2
        evaluate = ["evaluate", "--recs", world / "recs.csv", "--k", "5,10"]
        evaluated = invoke([*evaluate, *spark_flags, "--json", "-"])
        assert evaluated.exit_code == 0, evaluated.stderr
        arms = ["--arm-column", "policy", "--control", "prod", "--treatment", "personal"]
        tested = invoke(["abtest", *arms, *spark_flags, "--json"])
        assert tested.exit_code in (0, 1, 3), tested.stderr
        outputs[kind] = {
            "ingest": json.loads(second.stdout),
            "evaluate": json.loads(evaluated.stdout),
            "abtest": json.loads(tested.stdout),
        }
        # Only the current version is left: v000001 was removed after the swap. A local
        # folder keeps its lock file (flock); at a URL the lock is a file that is removed.
        names = sorted(p.name for p in folder.iterdir() if not p.name.endswith(".crc"))
        assert names == sorted([MANIFEST_NAME, "v000002", *([".lock"] if kind == "path" else [])])
    assert _rounded(outputs["url"]) == _rounded(outputs["path"])
    # The URL's files are a dataset like any other: read them as a local folder.
    by_url = Dataset.open(tmp_path / "url")
    by_path = Dataset.open(tmp_path / "path")
    assert _rounded(by_url.stats.to_dict()) == _rounded(by_path.stats.to_dict())
    assert by_url.events().collect().sort(KEY).equals(by_path.events().collect().sort(KEY))
    assert by_url.items().collect().equals(by_path.items().collect())


def test_off_policy_estimates_read_a_dataset_at_a_url(
    invoke, spark, world: Path, tmp_path: Path
) -> None:
    url = _url(tmp_path / "d")
    items = ["--items", world / "items.csv"]
    done = invoke(["ingest", world / "first.csv", *items, "--engine", "spark", "--data", url])
    assert done.exit_code == 0, done.stderr
    first = pl.read_csv(world / "first.csv", try_parse_dates=True).get_column("ts").min()
    start = (first + dt.timedelta(days=2)).date()  # type: ignore[operator]
    window = f"{start}..{start + dt.timedelta(days=2)}"
    recs = ["--control", world / "recs.csv", "--treatment", "logged"]
    args = ["abtest", *recs, "--estimator", "ips", "--window", window]
    reports = {}
    for data in (url, str(tmp_path / "d")):
        engine = ["--engine", "spark"] if data == url else []
        tested = invoke([*args, "--data", data, *engine, "--json"])
        assert tested.exit_code in (0, 1, 3, 4), tested.stderr
        reports[data] = json.loads(tested.stdout)
    assert _rounded(reports[url]["analysis"]) == _rounded(reports[str(tmp_path / "d")]["analysis"])


@pytest.mark.parametrize(
    ("command", "extra"),
    [
        ("ingest", ["EVENTS"]),
        ("evaluate", ["--recs", "RECS"]),
        ("abtest", ["--arm-column", "policy", "--control", "prod", "--treatment", "personal"]),
    ],
)
def test_a_url_without_spark_is_refused(
    invoke, world: Path, tmp_path: Path, command: str, extra: list[str]
) -> None:
    args = [
        str(world / "first.csv") if a == "EVENTS" else str(world / "recs.csv") if a == "RECS" else a
        for a in extra
    ]
    result = invoke([command, *args, "--data", _url(tmp_path / "d")])
    assert result.exit_code == 2
    assert "only --engine spark" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "d").exists()


def test_a_held_lock_or_a_failed_run_leaves_the_stored_version(
    invoke, spark, world: Path, tmp_path: Path
) -> None:
    url = _url(tmp_path / "d")
    flags = ["--engine", "spark", "--data", url]
    assert invoke(["ingest", world / "first.csv", *flags]).exit_code == 0
    manifest = (tmp_path / "d" / MANIFEST_NAME).read_bytes()
    (tmp_path / "d" / ".lock").write_text("4242\n")
    held = invoke(["ingest", world / "second.csv", "--append", *flags])
    assert held.exit_code == 2
    assert "is being written by another recsim ingest" in held.stderr
    (tmp_path / "d" / ".lock").unlink()
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,item_id,ts\n,,\n")
    failed = invoke(["ingest", bad, "--append", *flags])
    assert failed.exit_code == 2, failed.stderr
    assert (tmp_path / "d" / MANIFEST_NAME).read_bytes() == manifest
    left = sorted(p.name for p in (tmp_path / "d").iterdir() if not p.name.endswith(".crc"))
    assert left == [MANIFEST_NAME, "v000001"]  # no lock, staging or half-written version
    opened = open_dataset(url, spark=SparkConfig())
    with pytest.raises(DatasetError, match="only --engine spark reads its events"):
        opened.events()


def test_the_hadoop_file_system_writes_whole_files_and_renames_over(spark, tmp_path: Path) -> None:
    from recsim_cli.spark.remote import HadoopFS, join

    root = _url(tmp_path)
    fs = HadoopFS(spark, root)
    fs.write_bytes(join(root, "a"), b"one")
    with pytest.raises(FileExistsError):
        fs.write_bytes(join(root, "a"), b"two", overwrite=False)
    fs.write_bytes(join(root, "b"), b"two")
    fs.replace(join(root, "b"), join(root, "a"))
    assert fs.read_bytes(join(root, "a")) == b"two"
    assert not fs.exists(join(root, "b"))
    assert [n for n in fs.names(root) if not n.endswith(".crc")] == ["a"]


def test_a_missing_connector_is_named_by_its_java_message() -> None:
    from recsim_cli.spark.remote import _java_error

    class JavaException:
        def toString(self) -> str:  # py4j's name of a Java method
            return (
                "java.lang.RuntimeException: java.lang.ClassNotFoundException: "
                "Class org.apache.hadoop.fs.s3a.S3AFileSystem not found"
            )

    error = RuntimeError("An error occurred while calling o46.getFileSystem")
    error.java_exception = JavaException()  # type: ignore[attr-defined]
    assert _java_error(error) == "Class org.apache.hadoop.fs.s3a.S3AFileSystem not found"
    assert _java_error(ValueError("plain")) == "plain"
