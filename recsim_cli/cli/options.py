"""Options shared by several commands, defined once so they read the same everywhere."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from recsim_cli.errors import ConfigError
from recsim_cli.spark.session import DEFAULT_MASTER, Engine, SparkConfig, parse_spark_conf

DataDir = Annotated[
    Path,
    typer.Option(
        "--data",
        help="Dataset folder written by `recsim ingest`.",
        envvar="RECSIM_DATA",
        file_okay=False,
    ),
]
DEFAULT_DATA = Path("recsim-data")

DataLocation = Annotated[
    str,
    typer.Option(
        "--data",
        metavar="DIR|URL",
        help="Dataset folder written by `recsim ingest`; with --engine spark also a URL "
        "(hdfs://..., s3a://...).",
        envvar="RECSIM_DATA",
    ),
]
"""``--data`` of the commands Spark can run: a local folder, or a URL on Spark."""
DEFAULT_DATA_LOCATION = "recsim-data"

ModelDataDir = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="Dataset the model reads users, history and items from. "
        "\\[default: the model's dataset]",
        envvar="RECSIM_DATA",
        file_okay=False,
        show_default=False,
    ),
]
"""``--data`` of commands that run a registry model: by default the dataset it was trained on."""

RegistryDir = Annotated[
    Path,
    typer.Option(
        "--registry",
        help="Model registry folder: one sub-folder per model written by `recsim train`.",
        envvar="RECSIM_REGISTRY",
        file_okay=False,
    ),
]
DEFAULT_REGISTRY = Path("recsim-models")

Seed = Annotated[
    int,
    typer.Option("--seed", help="Seed of every random choice; same seed, same bytes.", min=0),
]

JsonFlag = Annotated[
    bool,
    typer.Option("--json", help="Print the result as JSON on stdout instead of a table."),
]


def parse_split(text: str, flag: str = "--split") -> tuple[float, ...]:
    """Parse traffic shares written ``50/50`` (or ``1/1``, ``0.3/0.7``) into positive numbers.

    The numbers are weights: callers normalise them, so ``50/50`` and ``1/1`` agree.
    """
    parts = text.split("/")
    try:
        values = tuple(float(part) for part in parts)
    except ValueError:
        values = ()
    if len(values) < 2 or not all(math.isfinite(v) and v > 0 for v in values):
        raise ConfigError(
            f"{flag} {text}: give positive numbers separated by '/', one per arm, e.g. 50/50."
        )
    return values


EngineOption = Annotated[
    str,
    typer.Option(
        "--engine",
        help="Where the heavy data work runs: polars (this machine) or spark (any Spark "
        "cluster, see docs/scale.md; needs recsim\\[spark] and Java).",
        metavar="polars|spark",
    ),
]
SparkMasterOption = Annotated[
    str,
    typer.Option(
        "--spark-master",
        help="Spark master URL with --engine spark: local[*], spark://host:7077, yarn, k8s://...",
    ),
]
SparkConfOption = Annotated[
    list[str] | None,
    typer.Option(
        "--spark-conf",
        metavar="KEY=VALUE",
        help="A Spark setting with --engine spark, e.g. spark.executor.memory=8g (repeatable).",
    ),
]


def engine_config(
    engine: str, master: str, conf: list[str] | None
) -> tuple[Engine, SparkConfig | None]:
    """Check ``--engine`` and build the Spark settings; return (engine, SparkConfig or None).

    Spark options without ``--engine spark`` are refused rather than ignored.
    """
    if engine == "polars":
        if conf or master != DEFAULT_MASTER:
            given = "--spark-conf" if conf else "--spark-master"
            raise ConfigError(f"{given} needs --engine spark; add it, or drop {given}.")
        return "polars", None
    if engine != "spark":
        raise ConfigError(f"--engine {engine}: give polars (the default) or spark.")
    return "spark", SparkConfig(master=master, conf=parse_spark_conf(conf or []))
