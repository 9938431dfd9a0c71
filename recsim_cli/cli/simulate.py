"""`recsim simulate`: build a synthetic world and log sessions in it.

A sub-app rather than a single command, so later subcommands (an online A/B
test inside the world) share the name; with no subcommand the callback writes
the logs. Only typer and light recsim modules are imported here: numpy, polars
and the simulator load inside the callback, keeping `recsim --help` instant.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from recsim_cli.cli.options import JsonFlag, Seed, parse_split
from recsim_cli.errors import ConfigError

# The callback's docstring is the help text (a Typer-level help= would override it).
app = typer.Typer(invoke_without_command=True, no_args_is_help=False)

DEFAULT_START = "2026-01-05"


@app.callback()
def simulate_command(
    ctx: typer.Context,
    *,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Folder to write events.csv.gz, items.csv.gz, world.json and world.npz to.",
        ),
    ] = None,
    users: Annotated[int, typer.Option("--users", help="Number of users.")] = 2000,
    items: Annotated[
        int, typer.Option("--items", help="Number of videos in the catalogue.")
    ] = 3000,
    days: Annotated[int, typer.Option("--days", help="Days of logs.")] = 14,
    slate_size: Annotated[
        int, typer.Option("--slate-size", help="Videos per homepage slate (S).")
    ] = 10,
    pool_size: Annotated[
        int,
        typer.Option("--pool-size", help="Candidate pool per user-day of the logging policy (C)."),
    ] = 100,
    epsilon: Annotated[
        float,
        typer.Option("--epsilon", help="Share of slates the logging policy draws at random."),
    ] = 0.2,
    start: Annotated[
        str, typer.Option("--start", help="First day of the logs (UTC), as YYYY-MM-DD.")
    ] = DEFAULT_START,
    policies: Annotated[
        str | None,
        typer.Option(
            "--policies",
            metavar="NAMES",
            help="Run an A/B test: split users between live policies (prod, explore, fresh, "
            "personal), e.g. prod,explore, or A=prod,B=prod to label arms; adds a policy column.",
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            "--split",
            metavar="SHARES",
            help="Shares of users per policy, e.g. 50/50 or 20/80. \\[default: equal]",
            show_default=False,
        ),
    ] = None,
    seed: Seed = 0,
    json: JsonFlag = False,
) -> None:
    """Build a synthetic YouTube-like world and log homepage sessions in it.

    Users see slates from a stochastic logging policy whose exact propensities
    are logged; clicks follow a position-based model with taste, quality,
    freshness, device and hour; watch time and session continuation follow the
    behaviour model in docs/simulator.md. The world's parameters and latent
    arrays are saved beside the logs, so the truth is known. With --policies,
    each user is assigned at random to one arm, whose policy serves all of the
    user's sessions: a logged A/B test for `recsim abtest`.

    Example (writes sample_data/ again, byte for byte):
    recsim simulate --users 1200 --items 2000 --days 14 --seed 20261125 --out sample_data
    """
    if ctx.invoked_subcommand is not None:
        return
    if out is None:
        raise ConfigError("--out is required: give the folder to write the world and logs to.")

    from recsim_cli.cli import console
    from recsim_cli.simulate import (
        Arm,
        WorldConfig,
        arms_from_names,
        parse_start,
        run_simulation,
    )

    if split is not None and policies is None:
        raise ConfigError("--split needs --policies: name the policies to split users between.")
    arms: tuple[Arm, ...] = ()
    if policies is not None:
        shares = parse_split(split) if split is not None else None
        arms = arms_from_names(policies.split(","), shares)
    config = WorldConfig(
        users=users,
        items=items,
        days=days,
        slate_size=slate_size,
        pool_size=pool_size,
        epsilon=epsilon,
        start=parse_start(start),
        seed=seed,
        arms=arms,
    )
    began = time.perf_counter()
    with console.progress_bar(enabled=not json) as progress:
        summary = run_simulation(config, out, progress=progress)
    elapsed = time.perf_counter() - began
    if json:
        console.print_json(summary.to_dict())
        return
    rows: list[tuple[str, object]] = [
        ("impressions", summary.impressions),
        ("sessions", summary.sessions),
        ("users (with a session)", summary.users),
        ("items", summary.items),
        ("CTR", summary.ctr),
        ("mean watch time per session (s)", summary.mean_watch_time_per_session_s),
        ("mean session depth (videos)", summary.mean_session_depth),
        ("mean slates per session", summary.mean_slates_per_session),
        ("exploration share", summary.exploration_share),
        ("seed", str(summary.seed)),
        ("written to", str(out)),
        ("time (s)", round(elapsed, 1)),
    ]
    console.out.print(console.key_value_table("recsim simulate", rows))
    if summary.arms:
        header = ["arm", "policy", "share", "users", "CTR", "watch s/session", "depth"]
        arm_rows = [
            (
                a.label,
                a.policy,
                f"{100 * a.share:.3g}%",
                a.users,
                a.ctr,
                a.mean_watch_time_per_session_s,
                a.mean_session_depth,
            )
            for a in summary.arms
        ]
        console.out.print(console.frame_table("arms", header, arm_rows))
