"""`recsim export NAME --to URL`: a model's top-K lists for every user, into a serving store."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from recsim_cli.cli.options import DEFAULT_REGISTRY, JsonFlag, ModelDataDir, RegistryDir
from recsim_cli.errors import ConfigError, UserError

_ZERO = re.compile(r"0+(\.0*)?\s*(s|sec|secs|second|seconds|m|min|h|d)?")


def parse_seconds(text: str, flag: str) -> float:
    """Parse a duration like ``1h``, ``30m``, ``90s``, ``1h30m`` or ``0`` into seconds."""
    from recsim_cli.ingest.sessions import parse_duration

    cleaned = text.strip().lower()
    if _ZERO.fullmatch(cleaned):
        return 0.0
    try:
        return parse_duration(cleaned).total_seconds()
    except UserError:
        raise ConfigError(
            f"{flag} {text} is not a duration; write a number and a unit, e.g. 1h, 30m, 90s, or 0."
        ) from None


def export_command(
    name: Annotated[
        str,
        typer.Argument(help="Model name or alias in the registry.", show_default=False),
    ],
    *,
    to: Annotated[
        str,
        typer.Option(
            "--to",
            metavar="URL",
            help="The store: sqlite:///path.db (embedded, no server) or "
            "redis://[:password@]host:port/db.",
            show_default=False,
        ),
    ],
    k: Annotated[int, typer.Option("--k", help="Items per user.", min=1)] = 100,
    registry: RegistryDir = DEFAULT_REGISTRY,
    data: ModelDataDir = None,
    grace: Annotated[
        str,
        typer.Option(
            "--grace",
            metavar="DURATION",
            help="How long the replaced version stays readable before it is deleted, "
            "e.g. 1h, 30m, 0.",
        ),
    ] = "1h",
    ttl: Annotated[
        str | None,
        typer.Option(
            "--ttl",
            metavar="DURATION",
            help="Also let the store expire the replaced version on its own after this long "
            "(at least --grace); never the live one.",
            show_default=False,
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Export a model's top-K lists for every user into SQLite or Redis, as a new version.

    Readers switch to the new version at once when it is complete; the one it
    replaces stays readable for --grace, then a later export deletes it.

    Example: recsim export als-lgbm --to sqlite:///recs.db --k 100
    """
    from recsim_cli.cli import console
    from recsim_cli.serve.export import export_model
    from recsim_cli.serve.urls import parse_url

    parse_url(to)  # a bad URL fails before anything runs
    grace_s = parse_seconds(grace, "--grace")
    ttl_s = None if ttl is None else parse_seconds(ttl, "--ttl")
    with console.progress_bar(enabled=not json_output) as progress:
        result = export_model(
            name,
            registry=registry,
            url=to,
            k=k,
            data=data,
            grace_s=grace_s,
            ttl_s=ttl_s,
            progress=progress,
        )
    if json_output:
        console.print_json(result.to_dict())
        return
    model = name if name == result.model else f"{name} -> {result.model}"
    previous = "-"
    if result.previous is not None:
        previous = f"{result.previous} (kept {_duration(result.grace_s)})"
    rows: list[tuple[str, object]] = [
        ("model", model),
        ("fingerprint", result.fingerprint[:12]),
        ("store", result.url),
        ("version (live now)", result.version),
        ("users", result.users),
        ("unknown users (fallback list)", result.unknown_users),
        ("items per user", result.k),
        ("items written", result.rows),
        ("previous version", previous),
        ("ttl of retired versions", "-" if result.ttl_s is None else _duration(result.ttl_s)),
        ("versions deleted", ", ".join(result.deleted) or "-"),
        ("time (s)", round(result.seconds, 2)),
    ]
    console.out.print(console.key_value_table(f"recsim export {name}", rows))


def _duration(seconds: float) -> str:
    from datetime import timedelta

    from recsim_cli.ingest.sessions import format_duration

    return "0s" if seconds == 0 else format_duration(timedelta(seconds=seconds))
