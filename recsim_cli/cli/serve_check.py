"""`recsim serve-check --from URL`: read lists as a client would and report the latency."""

from __future__ import annotations

from typing import Annotated

import typer

from recsim_cli.cli.options import JsonFlag, Seed


def serve_check_command(
    *,
    source: Annotated[
        str,
        typer.Option(
            "--from",
            metavar="URL",
            help="The store written by recsim export: sqlite:///path.db or "
            "redis://[:password@]host:port/db.",
            show_default=False,
        ),
    ],
    users: Annotated[
        int,
        typer.Option(
            "--users",
            metavar="N",
            help="Reads through one persistent connection, of users sampled from the live "
            "version; the connection-per-read pass makes min(N, 1000).",
            min=1,
        ),
    ] = 10_000,
    seed: Seed = 0,
    json_output: JsonFlag = False,
) -> None:
    """Read the live lists of sampled users as a client would and print the latency.

    Reads go through one Reader holding one persistent connection (pointer,
    then the user's key), then again with a new connection per read. Prints
    p50/p95/p99 latency and reads/s of both, and the version served.

    Example: recsim serve-check --from sqlite:///recs.db --users 10000
    """
    from recsim_cli.cli import console
    from recsim_cli.rng import spawn_generators
    from recsim_cli.serve.check import serve_check
    from recsim_cli.serve.urls import parse_url

    parse_url(source)
    rng = spawn_generators(seed, ["users"])["users"]
    with console.progress_bar(enabled=not json_output) as progress:
        result = serve_check(source, reads=users, rng=rng, progress=progress)
    summary = result.to_dict() | {"seed": seed}
    if json_output:
        console.print_json(summary)
        return
    facts: list[tuple[str, object]] = [
        ("store", result.url),
        ("version served", result.version),
        ("model", result.model),
        ("fingerprint", result.fingerprint[:12]),
        ("items per user", result.k),
        ("users in version", result.users),
        ("users read (sampled, seed)", f"{users:,} (seed {seed})"),
        ("reader", "one persistent connection"),
    ]
    if result.empty_lists:
        facts.append(("empty lists read", result.empty_lists))
    if result.version_changed:
        facts.append(("note", "an export switched the live version during the check"))
    console.out.print(console.key_value_table("recsim serve-check", facts))
    header = ["reading", "reads", "p50 ms", "p95 ms", "p99 ms", "reads/s"]
    rows = [
        [
            "persistent connection",
            result.persistent.reads,
            round(result.persistent.p50_ms, 4),
            round(result.persistent.p95_ms, 4),
            round(result.persistent.p99_ms, 4),
            round(result.persistent.reads_per_s),
        ],
        [
            "new connection per read",
            result.per_request.reads,
            round(result.per_request.p50_ms, 4),
            round(result.per_request.p95_ms, 4),
            round(result.per_request.p99_ms, 4),
            round(result.per_request.reads_per_s),
        ],
    ]
    console.out.print(console.frame_table("latency", header, rows))
    verdict = "met" if result.meets_aim else "NOT met"
    console.out.print(
        f"Aim for {result.backend}: p99 under {result.aim_p99_ms:g} ms with a persistent "
        f"connection; {verdict} ({console.format_value(round(result.persistent.p99_ms, 4))} ms).",
        markup=False,
        soft_wrap=True,
    )
