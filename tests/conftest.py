"""Shared fixtures: a CLI runner and the path of the committed sample data."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from recsim_cli.cli import app

REPO = Path(__file__).resolve().parent.parent
SAMPLE_DATA = REPO / "sample_data"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def invoke(runner: CliRunner):
    """Run ``recsim ARGS`` in-process and return the result (stdout and stderr apart)."""

    def _invoke(args: Sequence[str]) -> Result:
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return _invoke


def _java_available() -> bool:
    import shutil

    return shutil.which("java") is not None


@pytest.fixture(scope="session")
def spark():
    """One local Spark session for the whole test run (``local[2]``, 2 shuffle partitions).

    Outside CI, a machine without Java or pyspark skips the Spark tests; with
    ``CI=true`` they fail instead, so CI cannot pass without running them.
    """
    import os

    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    try:
        import pyspark  # noqa: F401
    except ImportError:
        if in_ci:
            pytest.fail("pyspark is not installed; the Spark tests must run in CI")
        pytest.skip("pyspark is not installed")
    if not _java_available():
        if in_ci:
            pytest.fail("no Java runtime; .ci/run must install openjdk-17-jre-headless")
        pytest.skip("no Java runtime")
    from recsim_cli.spark import SparkConfig, spark_session

    session = spark_session(
        SparkConfig(
            master="local[2]",
            conf={
                "spark.sql.shuffle.partitions": "2",
                "spark.default.parallelism": "2",
                "spark.driver.memory": "2g",
                "spark.sql.adaptive.enabled": "false",
            },
            app_name="recsim-tests",
        )
    )
    yield session
    session.stop()
