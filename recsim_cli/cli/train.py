"""`recsim train NAME`: fit the two-stage recommender and save it in the registry."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from recsim_cli.cli.options import DEFAULT_DATA, DEFAULT_REGISTRY, DataDir, JsonFlag, RegistryDir

if TYPE_CHECKING:
    from rich.console import Group

    from recsim_cli.models.two_stage import TrainSummary


def train_command(
    name: Annotated[
        str,
        typer.Argument(
            help="Model name: lower-case letters, digits, '.', '_' or '-', up to 64.",
            show_default=False,
        ),
    ],
    *,
    data: DataDir = DEFAULT_DATA,
    registry: RegistryDir = DEFAULT_REGISTRY,
    candidates: Annotated[
        str | None,
        typer.Option(
            "--candidates",
            metavar="KIND",
            help="Candidate generator: popular, fresh, als, bpr or itemknn. \\[default: als]",
            show_default=False,
        ),
    ] = None,
    n_candidates: Annotated[
        int | None,
        typer.Option(
            "--n-candidates",
            metavar="N",
            help="Items per user passed to the ranker. \\[default: 200]",
            show_default=False,
        ),
    ] = None,
    ranker: Annotated[
        str | None,
        typer.Option(
            "--ranker",
            metavar="lightgbm|none",
            help="Ranking stage; none serves the candidate order. \\[default: lightgbm]",
            show_default=False,
        ),
    ] = None,
    objective: Annotated[
        str | None,
        typer.Option(
            "--objective",
            metavar="watch_time|click|lambdarank",
            help="What the ranker optimises. \\[default: watch_time]",
            show_default=False,
        ),
    ] = None,
    test_days: Annotated[
        int | None,
        typer.Option(
            "--test-days",
            metavar="DAYS",
            help="Days at the end of the dataset held out from training. \\[default: 2]",
            show_default=False,
        ),
    ] = None,
    ranker_days: Annotated[
        int | None,
        typer.Option(
            "--ranker-days",
            metavar="DAYS",
            help="Last days of the training window whose impressions train the ranker. "
            "\\[default: 2]",
            show_default=False,
        ),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="FILE.toml",
            help="Hyper-parameters (docs/models.md); flags override the file.",
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            help="Seed of every random choice; same seed, same model. \\[default: 0]",
            min=0,
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing model of this name.")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Train a two-stage recommender (candidates, then a LightGBM ranker) into the registry.

    The last --test-days days are held out; nothing at or after the cutoff
    reaches the model. Stages, features and objectives: docs/models.md.

    Example: recsim train als-lgbm --data recsim-data
    """
    from recsim_cli.cli import console
    from recsim_cli.models.config import TrainConfig
    from recsim_cli.models.two_stage import train

    base = TrainConfig.from_toml(config_file) if config_file is not None else TrainConfig()
    config = base.with_overrides(
        candidates=candidates,
        n_candidates=n_candidates,
        ranker=ranker,
        objective=objective,
        test_days=test_days,
        ranker_days=ranker_days,
        seed=seed,
    )
    with console.progress_bar(enabled=not json_output) as progress:
        summary = train(
            name, data=data, registry=registry, config=config, force=force, progress=progress
        )
    if json_output:
        console.print_json(summary.to_dict())
    else:
        console.out.print(render(summary))


def render(summary: TrainSummary) -> Group:
    """The summary table, time per stage, and the ranker's top features."""
    from rich.console import Group, RenderableType

    from recsim_cli.cli.console import frame_table, key_value_table
    from recsim_cli.times import format_ts

    rows: list[tuple[str, object]] = [
        ("kind", summary.kind),
        ("training window", f"{format_ts(summary.data_start)} .. {format_ts(summary.cutoff)}"),
        ("cutoff (held out from here)", format_ts(summary.cutoff)),
        ("events used", summary.events),
        ("users", summary.users),
        ("items", summary.items),
    ]
    if summary.ranker_window is not None:
        rows += [
            (
                "ranker window",
                f"{format_ts(summary.ranker_window[0])} .. {format_ts(summary.ranker_window[1])}",
            ),
            ("ranker examples", summary.ranker_examples),
            ("of which clicked", summary.ranker_positives),
            (f"ranker loss ({summary.config.objective})", summary.ranker_loss),
        ]
    if summary.candidate_loss is not None:
        rows.append((f"{summary.config.candidates} training loss", summary.candidate_loss))
    rows.append(("saved to", str(summary.path)))
    parts: list[RenderableType] = [key_value_table(f"recsim train {summary.name}", rows)]
    parts.append(
        frame_table(
            "time per stage (s)",
            ["stage", "seconds"],
            [(stage, round(seconds, 2)) for stage, seconds in summary.timings.items()],
        )
    )
    if summary.importance:
        parts.append(
            frame_table(
                "ranker feature importance (gain), top 10",
                ["feature", "gain"],
                list(summary.importance),
            )
        )
    return Group(*parts)
