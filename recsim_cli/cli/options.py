"""Options shared by several commands, defined once so they read the same everywhere."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from recsim_cli.errors import ConfigError

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
