"""`recsim recommend NAME`: top-K lists of a registry model, written to a file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recsim_cli.cli.options import DEFAULT_REGISTRY, JsonFlag, ModelDataDir, RegistryDir
from recsim_cli.errors import ConfigError


def recommend_command(
    name: Annotated[
        str,
        typer.Argument(help="Model name or alias in the registry.", show_default=False),
    ],
    *,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            metavar="FILE",
            help="Where to write user_id, item_id, rank, score: .parquet or .csv.",
            show_default=False,
        ),
    ],
    registry: RegistryDir = DEFAULT_REGISTRY,
    data: ModelDataDir = None,
    users: Annotated[
        Path | None,
        typer.Option(
            "--users",
            metavar="FILE",
            help="Users to recommend for: one id per line, or CSV/Parquet with user_id. "
            "\\[default: every user in the dataset]",
            show_default=False,
        ),
    ] = None,
    all_users: Annotated[
        bool, typer.Option("--all", help="Every user in the dataset (the default).")
    ] = False,
    k: Annotated[int, typer.Option("--k", help="Items per user.", min=1)] = 10,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            metavar="TS",
            help="Make the lists as of this UTC time, e.g. 2026-01-18. \\[default: the cutoff]",
            show_default=False,
        ),
    ] = None,
    context: Annotated[
        str | None,
        typer.Option(
            "--context",
            metavar="device=D,hour=H",
            help="Serving context for every user. \\[default: each user's usual one]",
            show_default=False,
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Recommend top-K items per user through both stages and write them to a file.

    Example: recsim recommend als-lgbm --k 10 --out recs.parquet
    """
    from recsim_cli.cli import console
    from recsim_cli.io import atomic_path, write_parquet_atomic
    from recsim_cli.models.two_stage import (
        Context,
        read_user_list,
        recommend,
    )
    from recsim_cli.times import parse_moment

    if users is not None and all_users:
        raise ConfigError("--users and --all contradict each other; give only one.")
    if out.suffix not in (".parquet", ".csv"):
        raise ConfigError(f"--out {out}: give a file ending in .parquet or .csv.")
    user_list = read_user_list(users) if users is not None else None
    when = parse_moment(as_of, "--as-of") if as_of is not None else None
    ctx = Context.parse(context) if context is not None else None
    with console.progress_bar(enabled=not json_output) as progress:
        result = recommend(
            name,
            registry=registry,
            data=data,
            users=user_list,
            k=k,
            as_of=when,
            context=ctx,
            progress=progress,
        )
    if out.suffix == ".parquet":
        write_parquet_atomic(result.frame, out)
    else:
        with atomic_path(out) as tmp:
            result.frame.write_csv(tmp)
    summary = result.to_dict() | {"out": str(out)}
    if json_output:
        console.print_json(summary)
        return
    rows: list[tuple[str, object]] = [
        ("model", name if name == result.model else f"{name} -> {result.model}"),
        ("as of", summary["as_of"]),
        ("users", result.users),
        ("unknown users (fallback list)", result.unknown_users),
        ("items per user", k),
        ("rows written", result.frame.height),
        ("written to", str(out)),
        ("time (s)", round(result.seconds, 2)),
    ]
    console.out.print(console.key_value_table(f"recsim recommend {name}", rows))
