"""The Spark engine from the command line: its options, its refusals, and a whole loop on it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from parity import rounded

from recsim_cli.dataset import Dataset
from recsim_cli.errors import ConfigError, UserError
from recsim_cli.spark.session import FIXED_CONF, SparkConfig, parse_spark_conf, spark_session


def test_spark_conf_pairs_are_parsed() -> None:
    conf = parse_spark_conf(["spark.executor.memory=8g", "spark.sql.shuffle.partitions = 400"])
    assert conf == {"spark.executor.memory": "8g", "spark.sql.shuffle.partitions": "400"}
    assert parse_spark_conf(["spark.a=b=c"]) == {"spark.a": "b=c"}


@pytest.mark.parametrize("pair", ["spark.executor.memory", "=8g", ""])
def test_a_spark_conf_without_key_or_value_is_refused(pair: str) -> None:
    with pytest.raises(ConfigError, match="write KEY=VALUE"):
        parse_spark_conf([pair])


def test_the_utc_time_zone_cannot_be_overridden() -> None:
    with pytest.raises(ConfigError, match=r"recsim sets spark\.sql\.session\.timeZone to UTC"):
        parse_spark_conf(["spark.sql.session.timeZone=Europe/Paris"])
    assert parse_spark_conf(["spark.sql.session.timeZone=UTC"])  # the same value is harmless
    settings = SparkConfig(conf={"spark.ui.enabled": "true"}).settings()
    assert settings["spark.ui.enabled"] == "true"  # a default the user may change
    assert all(settings[key] == value for key, value in FIXED_CONF.items())


def test_without_pyspark_the_engine_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)
    with pytest.raises(UserError, match=r"pip install 'recsim\[spark\]'"):
        spark_session(SparkConfig())


def test_without_java_the_engine_says_how_to_install_one(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pyspark")
    from pyspark.sql import SparkSession

    if SparkSession.getActiveSession() is not None:
        pytest.skip("a Spark session is already running in this process")
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(UserError, match="needs a Java runtime"):
        spark_session(SparkConfig())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--engine", "duckdb"], "--engine duckdb: give polars (the default) or spark."),
        (
            ["--spark-conf", "spark.executor.memory=8g"],
            "--spark-conf needs --engine spark; add it, or drop --spark-conf.",
        ),
        (
            ["--spark-master", "yarn"],
            "--spark-master needs --engine spark; add it, or drop --spark-master.",
        ),
        (
            ["--engine", "spark", "--spark-conf", "oops"],
            "--spark-conf oops: write KEY=VALUE, e.g. --spark-conf spark.executor.memory=8g.",
        ),
    ],
)
@pytest.mark.parametrize("command", ["ingest", "evaluate", "abtest"])
def test_engine_options_are_checked_before_any_work(
    invoke, tmp_path: Path, command: str, args: list[str], message: str
) -> None:
    base = {
        "ingest": ["ingest", tmp_path / "missing.csv", "--data", tmp_path / "d"],
        "evaluate": ["evaluate", "--recs", tmp_path / "missing.csv", "--data", tmp_path / "d"],
        "abtest": [
            "abtest",
            "--arm-column",
            "policy",
            "--control",
            "a",
            "--treatment",
            "b",
            "--data",
            tmp_path / "d",
        ],
    }[command]
    result = invoke([*base, *args])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"Error: {message}"


LOGGED = ["abtest", "--arm-column", "policy", "--control", "a", "--treatment", "b"]


def test_collect_is_for_logged_tests_and_plan_stays_on_polars(invoke, tmp_path: Path) -> None:
    estimate = invoke(
        ["abtest", "--control", "a", "--treatment", "b", "--collect", "moments", "--data", tmp_path]
    )
    assert estimate.exit_code == 2
    assert "--collect applies to logged A/B tests" in estimate.stderr
    bad = invoke([*LOGGED, "--collect", "all", "--data", tmp_path])
    assert bad.exit_code == 2
    assert "--collect all: give auto (the default), users or moments." in bad.stderr
    plan = invoke([*LOGGED, "--plan", "--mde", "0.02", "--engine", "spark", "--data", tmp_path])
    assert plan.exit_code == 2
    assert "--plan reads the pre-experiment data on this machine" in plan.stderr


def test_recsim_help_does_not_load_spark() -> None:
    import subprocess

    code = (
        "import sys; from recsim_cli.cli import app; "
        "print(any(m.startswith('pyspark') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.fixture(scope="module")
def logged_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small simulated logged A/B test, as the CSV `recsim simulate` writes."""
    from recsim_cli.simulate import WorldConfig, arms_from_names, events_frame, simulate_logs

    folder = tmp_path_factory.mktemp("spark-cli")
    arms = arms_from_names(["prod", "personal"])
    logs = simulate_logs(WorldConfig(users=600, items=300, days=6, seed=3, arms=arms))
    events = events_frame(logs.world, logs.sessions, logs.impressions, logs.user_arm)
    events.write_csv(folder / "events.csv")
    return folder


def test_the_whole_logged_loop_gives_the_same_numbers_on_both_engines(
    invoke, spark, logged_world: Path, tmp_path: Path
) -> None:
    reports = {}
    for engine in ("polars", "spark"):
        data = tmp_path / f"data-{engine}"
        flags = ["--engine", engine]
        if engine == "spark":
            flags += [
                "--spark-master",
                "local[2]",
                "--spark-conf",
                "spark.sql.shuffle.partitions=2",
            ]
        ingested = invoke(["ingest", logged_world / "events.csv", "--data", data, "--json", *flags])
        assert ingested.exit_code == 0, ingested.stderr
        summary = json.loads(ingested.stdout)
        report = tmp_path / f"abtest-{engine}.json"
        arms = ["--arm-column", "policy", "--control", "prod", "--treatment", "personal"]
        tested = invoke(["abtest", "--data", data, *arms, "--report", report, "--json", *flags])
        assert tested.exit_code == 0, tested.stderr
        reports[engine] = (summary, json.loads(report.read_text()))
    (polars_summary, polars_report), (spark_summary, spark_report) = (
        reports["polars"],
        reports["spark"],
    )
    for key in ("data_dir", "elapsed_s"):
        polars_summary.pop(key, None)
        spark_summary.pop(key, None)
    assert rounded(spark_summary) == rounded(polars_summary)
    assert rounded(spark_report["analysis"]) == rounded(polars_report["analysis"])
    events = {
        engine: Dataset.open(tmp_path / f"data-{engine}").events().collect()
        for engine in ("polars", "spark")
    }
    key = ["user_id", "ts", "slate", "position", "item_id"]
    assert events["spark"].sort(key).equals(events["polars"].sort(key))


def test_a_spark_submit_job_runs_recsim_in_its_own_session(
    spark, logged_world: Path, tmp_path: Path
) -> None:
    """examples/spark/recsim_job.py under a real spark-submit: the job's master, same dataset."""
    import os
    import subprocess

    from recsim_cli.ingest import ingest

    submit = Path(sys.executable).parent / "spark-submit"
    assert submit.exists(), "pyspark installs spark-submit beside the venv's python"
    job = Path(__file__).resolve().parent.parent / "examples" / "spark" / "recsim_job.py"
    data = tmp_path / "submitted"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    submit_args = [str(submit), "--master", "local[1]", "--conf", "spark.ui.enabled=false"]
    recsim_args = ["ingest", str(logged_world / "events.csv"), "--data", str(data)]
    done = subprocess.run(
        [*submit_args, str(job), *recsim_args, "--engine", "spark", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["status"] == "created"
    ingest(logged_world / "events.csv", data=tmp_path / "polars")
    key = ["user_id", "ts", "slate", "position", "item_id"]
    submitted = Dataset.open(data).events().collect().sort(key)
    assert submitted.equals(Dataset.open(tmp_path / "polars").events().collect().sort(key))
