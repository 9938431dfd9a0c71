"""The one way recsim starts (or joins) a Spark session.

`SparkConfig` is what the CLI's ``--engine spark --spark-master URL
--spark-conf KEY=VALUE`` give; `spark_session` turns it into a
``SparkSession``. Whatever the user sets, the session's time zone is UTC
(``spark.sql.session.timeZone``), so timestamps mean the same instant on
both engines, and timestamps are read and written as microseconds.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Literal

from recsim_cli.errors import ConfigError, UserError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

Engine = Literal["polars", "spark"]
ENGINES: Final[tuple[Engine, ...]] = ("polars", "spark")
DEFAULT_MASTER: Final = "local[*]"

FIXED_CONF: Final = MappingProxyType(
    {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.parquet.int96RebaseModeInWrite": "CORRECTED",
        "spark.sql.parquet.datetimeRebaseModeInWrite": "CORRECTED",
    }
)
"""Settings recsim needs for the same numbers on both engines; a user cannot override them."""
DEFAULT_CONF: Final = MappingProxyType(
    {
        "spark.ui.enabled": "false",
        "spark.sql.ansi.enabled": "false",
        "spark.sql.adaptive.enabled": "true",
        "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
        "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
    }
)
"""Defaults a ``--spark-conf`` may override."""


@dataclass(frozen=True)
class SparkConfig:
    """Where and how to run Spark: a master URL and extra configuration."""

    master: str = DEFAULT_MASTER
    conf: Mapping[str, str] = field(default_factory=dict)
    app_name: str = "recsim"

    def settings(self) -> dict[str, str]:
        """Every setting the session is built with, recsim's fixed ones last (they win)."""
        return {**DEFAULT_CONF, **self.conf, **FIXED_CONF}


def parse_spark_conf(pairs: Iterable[str]) -> dict[str, str]:
    """Parse repeated ``--spark-conf KEY=VALUE`` options; refuse one without ``=`` or a key."""
    conf: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(
                f"--spark-conf {pair}: write KEY=VALUE, e.g. --spark-conf spark.executor.memory=8g."
            )
        if key in FIXED_CONF and value.strip() != FIXED_CONF[key]:
            raise ConfigError(
                f"--spark-conf {key}={value}: recsim sets {key} to {FIXED_CONF[key]} itself, "
                "so both engines give the same numbers; drop this option."
            )
        conf[key] = value.strip()
    return conf


def spark_session(config: SparkConfig | None = None) -> SparkSession:
    """Return the active Spark session, or build one from ``config``.

    An already running session (a test's, or a ``spark-submit`` job's) is
    joined, and recsim's fixed settings are applied to it; runtime settings
    of ``config`` are applied too, static ones only take effect in a new
    session. Raises `UserError` when pyspark or a Java runtime is missing.
    """
    config = config or SparkConfig()
    import warnings

    # pyspark 4.3 warns about pandas 3 on import; recsim's Spark code is tested under it
    # (the parity tests), and the warning would reach a spark-submit job's stdout.
    warnings.filterwarnings(
        "ignore", message="PySpark does not yet fully support pandas", category=FutureWarning
    )
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise UserError(
            "--engine spark needs pyspark, which is not installed; "
            "run pip install 'recsim[spark]' (or use --engine polars)."
        ) from None
    import os
    import sys

    active = SparkSession.getActiveSession()
    if active is not None:
        for key, value in {**config.conf, **FIXED_CONF}.items():
            if key.startswith("spark.sql."):
                active.conf.set(key, value)
        context = active.sparkContext
        if "PYSPARK_PYTHON" not in os.environ and (context.master or "").startswith("local"):
            context.pythonExec = sys.executable  # as below, for a session recsim joined
        return active
    if shutil.which("java") is None and not _java_home():
        raise UserError(
            "--engine spark needs a Java runtime (17 or newer) and none was found; install one "
            "(e.g. apt install openjdk-17-jre-headless) or set JAVA_HOME."
        )
    if config.master.startswith("local") and "PYSPARK_PYTHON" not in os.environ:
        # Local Python workers (the session model's mapInPandas) run this interpreter, with
        # recsim and its dependencies; on a cluster PYSPARK_PYTHON names the executors' one.
        os.environ["PYSPARK_PYTHON"] = sys.executable
    builder = SparkSession.builder.appName(config.app_name)
    if config.master != DEFAULT_MASTER or not _launched_by_spark_submit():
        builder = builder.master(config.master)  # else spark-submit's --master decides
    for key, value in config.settings().items():
        builder = builder.config(key, value)
    try:
        return builder.getOrCreate()
    except Exception as exc:  # py4j / JVM start-up failures carry long traces
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"Spark could not start with master {config.master}: {first}; check --spark-master "
            "and --spark-conf."
        ) from None


def _launched_by_spark_submit() -> bool:
    """Whether this process was started by ``spark-submit`` (its JVM is already running)."""
    import os

    return "PYSPARK_GATEWAY_PORT" in os.environ


def _java_home() -> bool:
    import os

    home = os.environ.get("JAVA_HOME")
    return bool(home) and shutil.which("java", path=f"{home}/bin") is not None
