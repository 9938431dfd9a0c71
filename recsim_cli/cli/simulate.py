"""`recsim simulate`: build a synthetic world and log sessions in it.

A sub-app rather than a single command, so subcommands share the name: with
no subcommand the callback writes the logs; ``recsim simulate abtest`` runs the
true online A/B test of two recommenders inside a saved world. Only typer and
light recsim modules are imported here: numpy, polars and the simulator load
inside the commands, keeping `recsim --help` instant.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from recsim_cli.cli.options import (
    DEFAULT_REGISTRY,
    JsonFlag,
    ModelDataDir,
    RegistryDir,
    Seed,
    parse_split,
)
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
    days: Annotated[
        int | None,
        typer.Option(
            "--days",
            help="Days of logs. \\[default: 14; with --continue: 7]",
            show_default=False,
        ),
    ] = None,
    slate_size: Annotated[
        int, typer.Option("--slate-size", help="Videos per homepage slate (S).")
    ] = 10,
    pool_size: Annotated[
        int,
        typer.Option("--pool-size", help="Candidate pool per user-day of the logging policy (C)."),
    ] = 100,
    epsilon: Annotated[
        float,
        typer.Option(
            "--epsilon",
            help="Share of slates drawn at random: from the pool, or with --continue from the "
            "served list.",
        ),
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
    continue_: Annotated[
        bool,
        typer.Option(
            "--continue",
            help="Log the next days of the world in --world, served from --serve's lists.",
        ),
    ] = False,
    world: Annotated[
        Path | None,
        typer.Option(
            "--world",
            help="With --continue: the folder an earlier simulate or --continue wrote.",
            file_okay=False,
            show_default=False,
        ),
    ] = None,
    serve: Annotated[
        str | None,
        typer.Option(
            "--serve",
            metavar="NAME",
            help="With --continue: the registry model or alias whose lists serve the new days.",
            show_default=False,
        ),
    ] = None,
    from_url: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="URL",
            help="With --continue: read --serve's lists from the store it was exported to, "
            "e.g. sqlite:///recs.db. \\[default: make them from the registry model]",
            show_default=False,
        ),
    ] = None,
    test: Annotated[
        str | None,
        typer.Option(
            "--test",
            metavar="NAME",
            help="With --continue: a model served to --test-share of the users, a live test.",
            show_default=False,
        ),
    ] = None,
    test_share: Annotated[
        float | None,
        typer.Option(
            "--test-share",
            metavar="SHARE",
            help="Share of users hashed into the --test model. \\[default: 0.01]",
            show_default=False,
        ),
    ] = None,
    registry: RegistryDir = DEFAULT_REGISTRY,
    data: ModelDataDir = None,
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
    user's sessions: a logged A/B test for `recsim abtest`. With --continue,
    the world in --world lives on: the next days are logged, served from a
    model's lists with epsilon-exploration and exact propensities
    (docs/loop.md).

    Example (writes sample_data/ again, byte for byte):
    recsim simulate --users 1200 --items 2000 --days 14 --seed 20261125 --out sample_data

    Example (a week more of that world, served by pop as trained in the README):
    recsim simulate --continue --world sample_data --serve pop --out next-week
    """
    if ctx.invoked_subcommand is not None:
        return
    if out is None:
        raise ConfigError("--out is required: give the folder to write the world and logs to.")
    if continue_:
        _reject_given(ctx, _NEW_WORLD_ONLY, "with --continue the world in --world fixes it")
        if world is None:
            raise ConfigError("--continue needs --world DIR: the folder of the world to continue.")
        if serve is None:
            raise ConfigError(
                "--continue needs --serve NAME: the registry model whose lists serve the new days."
            )
        if test_share is not None and test is None:
            raise ConfigError("--test-share needs --test: name the model the live test serves.")
        _continue(
            world,
            out,
            serve=serve,
            days=7 if days is None else days,
            epsilon=epsilon,
            source=from_url,
            registry=registry,
            data=data,
            test=test,
            test_share=0.01 if test_share is None else test_share,
            seed=seed,
            json=json,
        )
        return
    _reject_given(ctx, _CONTINUE_ONLY, "it applies only to --continue")

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
        days=14 if days is None else days,
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
        _print_arms("arms", ["arm", "policy"], summary.arms)


def _print_arms(title: str, names: list[str], arms: Sequence[Any]) -> None:
    """Print one row per arm of a simulation: its label, policy, share and outcomes."""
    from recsim_cli.cli import console

    header = [*names, "share", "users", "CTR", "watch s/session", "depth"]
    rows = [
        (
            a.label,
            a.policy,
            f"{100 * a.share:.3g}%",
            a.users,
            a.ctr,
            a.mean_watch_time_per_session_s,
            a.mean_session_depth,
        )
        for a in arms
    ]
    console.out.print(console.frame_table(title, header, rows))


_NEW_WORLD_ONLY = ("users", "items", "slate_size", "pool_size", "start", "policies", "split")
_CONTINUE_ONLY = ("world", "serve", "from_url", "test", "test_share", "registry", "data")


def _reject_given(ctx: typer.Context, names: tuple[str, ...], why: str) -> None:
    """Refuse an option given on the command line that does not apply here."""
    for param in ctx.command.params:
        if param.name not in names:
            continue
        source = ctx.get_parameter_source(param.name)
        if source is not None and source.name == "COMMANDLINE":
            flag = max(param.opts, key=len)
            raise ConfigError(f"{flag} does not apply here: {why}; drop it.")


def _continue(
    world: Path,
    out: Path,
    *,
    serve: str,
    days: int,
    epsilon: float,
    source: str | None,
    registry: Path,
    data: Path | None,
    test: str | None,
    test_share: float,
    seed: int,
    json: bool,
) -> None:
    """Run ``--continue``: log the next days of a saved world and print the summary."""
    from recsim_cli.cli import console
    from recsim_cli.simulate.continuation import continue_simulation

    began = time.perf_counter()
    with console.progress_bar(enabled=not json) as progress:
        summary = continue_simulation(
            world,
            out,
            serve=serve,
            registry=registry,
            days=days,
            epsilon=epsilon,
            source=source,
            data=data,
            test=test,
            test_share=test_share,
            seed=seed,
            progress=progress,
        )
    elapsed = time.perf_counter() - began
    if json:
        console.print_json(summary.to_dict())
        return
    logs = summary.logs
    served = ", ".join(
        f"{a.label} ({a.model})" if a.label != a.model else a.label for a in summary.served
    )
    rows: list[tuple[str, object]] = [
        ("days", f"{summary.first_day} .. {summary.last_day}"),
        ("served by", served),
        ("lists from", summary.served[0].source),
        ("impressions", logs.impressions),
        ("sessions", logs.sessions),
        ("first session", f"s{summary.first_session:07d}"),
        ("users (with a session)", logs.users),
        ("items (published on these days)", f"{logs.items:,} ({summary.new_items:,})"),
        ("CTR", logs.ctr),
        ("mean watch time per session (s)", logs.mean_watch_time_per_session_s),
        ("mean session depth (videos)", logs.mean_session_depth),
        ("mean slates per session", logs.mean_slates_per_session),
        ("exploration share", logs.exploration_share),
        ("epsilon", summary.epsilon),
        ("seed", str(logs.seed)),
        ("written to", str(out)),
        ("time (s)", round(elapsed, 1)),
    ]
    console.out.print(console.key_value_table("recsim simulate --continue", rows))
    if len(logs.arms) > 1:
        _print_arms("live test", ["policy", "model"], logs.arms)


@app.command("abtest")
def abtest_command(
    *,
    world: Annotated[
        Path,
        typer.Option(
            "--world",
            help="World folder written by `recsim simulate` (world.json, world.npz).",
            file_okay=False,
            show_default=False,
        ),
    ],
    control: Annotated[
        str,
        typer.Option(
            "--control",
            help="Control arm: a registry model or alias, a recommendations file "
            "(user_id, item_id, rank, optional day), or logged (the world's logging policy).",
            show_default=False,
        ),
    ],
    treatment: Annotated[
        str,
        typer.Option(
            "--treatment",
            help="Treatment arm: a model or alias, a recommendations file, or logged.",
            show_default=False,
        ),
    ],
    registry: RegistryDir = DEFAULT_REGISTRY,
    data: ModelDataDir = None,
    window: Annotated[
        str | None,
        typer.Option(
            "--window",
            metavar="START..END",
            help="Days of the test, END exclusive, e.g. 2026-01-12..2026-01-15. "
            "\\[default: the latest model cutoff to the end of the world]",
            show_default=False,
        ),
    ] = None,
    replicates: Annotated[
        int,
        typer.Option(
            "--replicates",
            help="Independent draws of the window's sessions, each run under both arms.",
            min=1,
        ),
    ] = 20,
    seed: Seed = 0,
    json_output: JsonFlag = False,
    report: Annotated[
        Path | None,
        typer.Option("--report", metavar="FILE.json", help="Write the result as JSON."),
    ] = None,
) -> None:
    """Run the true online A/B test of two recommenders inside a simulated world.

    Every user of the world is served by both arms over the window: each arm's
    precomputed daily lists (the same lists `recsim abtest` estimates from
    logs) are shown slate by slate to the same sessions, with the same random
    numbers for users' behaviour, in every replicate. The lift of each metric
    (treatment / control - 1) is the ground truth an off-policy estimate is
    judged against; its Monte Carlo standard error comes from the replicates.

    Example (the world of sample_data/, models trained on it as in the README):
    recsim simulate abtest --world sample_data --control pop --treatment als-lgbm
    """
    from recsim_cli.cli import console
    from recsim_cli.experiment.arms import parse_window
    from recsim_cli.io import write_json_atomic
    from recsim_cli.simulate.online import METRICS, simulate_abtest

    span = parse_window(window) if window is not None else None
    with console.progress_bar(enabled=not json_output) as progress:
        truth = simulate_abtest(
            world,
            control=control,
            treatment=treatment,
            registry=registry,
            data=data,
            window=span,
            replicates=replicates,
            seed=seed,
            progress=progress,
        )
    result = truth.to_dict()
    if report is not None:
        try:
            write_json_atomic(report, result)
        except OSError as exc:
            raise ConfigError(
                f"cannot write --report {report} ({exc.strerror}); give a file path you can "
                "write to."
            ) from None
    if json_output:
        console.print_json(result)
        return
    c, t = truth.control, truth.treatment
    header = ["metric", f"control ({c.label})", f"treatment ({t.label})", "lift", "lift MC SE"]
    rows = [
        (
            name,
            c.metrics[name],
            t.metrics[name],
            _percent(truth.lift[name], signed=True),
            _percent(truth.lift_mc_se[name], signed=False),
        )
        for name in METRICS
    ]
    console.out.print(console.frame_table("online A/B test in the world (the truth)", header, rows))
    start, end = result["window"]["start"], result["window"]["end"]
    facts: list[tuple[str, object]] = [
        ("world", str(world)),
        ("window (end exclusive)", f"{start} .. {end}"),
        ("users (in both arms)", truth.users),
        ("sessions per replicate", truth.sessions_per_replicate),
        ("replicates", truth.replicates),
        ("seed", str(truth.seed)),
    ]
    if report is not None:
        facts.append(("report", str(report)))
    console.out.print(console.key_value_table("recsim simulate abtest", facts))


def _percent(value: float, *, signed: bool) -> str:
    """Format a relative change as a percentage (``-`` when undefined)."""
    if math.isnan(value):  # undefined, e.g. a single replicate has no spread
        return "-"
    return f"{100 * value:+.2f}%" if signed else f"{100 * value:.2f}%"
