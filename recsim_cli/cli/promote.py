"""`recsim promote`: move an alias to a model its gate report ships; history; rollback.

Parses the options, calls one function of ``recsim_cli.promotion`` (`promote`,
`rollback` or `history`) and renders what it returns. Refusals are
``UserError``s, which the group in ``recsim_cli.cli`` prints as one sentence
and exits 2. Only typer and light recsim modules are imported at module level.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from recsim_cli.cli.options import DEFAULT_REGISTRY, JsonFlag, RegistryDir
from recsim_cli.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import RenderableType

    from recsim_cli.promotion import HistoryEntry, Promotion


def promote_command(
    name: Annotated[
        str | None,
        typer.Argument(
            metavar="NAME",
            help="The model to promote (a name, or the alias candidate).",
            show_default=False,
        ),
    ] = None,
    *,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="The alias to move: candidate or production. \\[default: production with "
            "--rollback]",
            show_default=False,
        ),
    ] = None,
    gate_report: Annotated[
        Path | None,
        typer.Option(
            "--gate-report",
            metavar="FILE.json",
            help="The JSON report of recsim abtest --gate ... --report whose decision allows it.",
            dir_okay=False,
        ),
    ] = None,
    registry: RegistryDir = DEFAULT_REGISTRY,
    force: Annotated[
        bool,
        typer.Option("--force", help="Override every check; recorded in the history."),
    ] = False,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why, in a few words, for the history.")
    ] = None,
    rollback: Annotated[
        bool,
        typer.Option(
            "--rollback",
            help="Point the alias back at the model it named before its last promotion.",
        ),
    ] = False,
    history: Annotated[
        bool, typer.Option("--history", help="Print every promotion and rollback, and exit.")
    ] = False,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            metavar="URL",
            help="Serving store (sqlite:///file.db, redis://host:6379/0): a rollback serves the "
            "restored model's export again; a promotion records the export the alias had.",
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Promote a model to candidate or production when its gate report allows it.

    --to candidate needs a report that ships on off-policy or online evidence;
    --to production a logged A/B test (online evidence). Either way the report
    must test this very model (its fingerprint) against the current production,
    checked and switched as one step under the registry's lock. Every change
    is kept in the registry's history.json; --rollback undoes the last
    promotion, --history lists them. A refusal exits 2 and says what to do.
    Rules: docs/promotion.md.

    Example (after recsim abtest --gate examples/gate.toml --report report.json):
    recsim promote als-v3 --to candidate --gate-report report.json --registry recsim-models
    """
    from recsim_cli import promotion
    from recsim_cli.cli import console

    if history:
        _reject(
            "--history",
            NAME=name is not None,
            to=to is not None,
            gate_report=gate_report is not None,
            force=force,
            reason=reason is not None,
            rollback=rollback,
            store=store is not None,
        )
        entries = promotion.history(registry)
        if json_output:
            console.print_json(
                {"registry": str(registry), "entries": [e.to_dict() for e in entries]}
            )
        elif not entries:
            console.out.print(
                f"No promotions in {registry} yet; promote a model with recsim promote NAME "
                "--to candidate --gate-report FILE.json.",
                markup=False,
                soft_wrap=True,
            )
        else:
            console.out.print(render_history(registry, entries))
        return
    if rollback:
        _reject("--rollback", NAME=name is not None, gate_report=gate_report is not None)
        done = promotion.rollback(
            registry, to or "production", force=force, reason=reason, store=store
        )
    else:
        if name is None:
            raise ConfigError(
                "give the model to promote (recsim promote NAME --to candidate --gate-report "
                "FILE.json), or --rollback, or --history."
            )
        if to is None:
            raise ConfigError(f"say where to promote '{name}': --to candidate or --to production.")
        done = promotion.promote(
            registry, name, to, gate_report, force=force, reason=reason, store=store
        )
    if json_output:
        console.print_json(done.to_dict())
        return
    for line, style in summary(done):
        console.out.print(line, style=style, markup=False, soft_wrap=True)


def _reject(mode: str, **given: bool) -> None:
    """Refuse options that ``mode`` does not use, naming the first one given."""
    for option, used in given.items():
        if used:
            flag = option if option.isupper() else "--" + option.replace("_", "-")
            raise ConfigError(f"{mode} does not take {flag}; drop it.")


def summary(done: Promotion) -> list[tuple[str, str | None]]:
    """Say what a promotion or rollback did, one line each, with a rich style."""
    e = done.entry
    was = (
        f"no model was {e.alias} before" if e.previous_model is None else f"was {e.previous_model}"
    )
    lines: list[tuple[str, str | None]]
    if e.action == "rollback":
        lines = [
            (
                f"Rolled {e.alias} back to {e.model} ({was}), undoing promotion {e.undoes}; "
                f"history entry {e.id} in {done.registry}.",
                "bold green",
            )
        ]
        if e.export is not None:
            how = "exported again" if e.export.get("reexported") else "its kept export"
            lines.append(
                (f"{e.export['url']} serves version {e.export['version']} now ({how}).", None)
            )
    else:
        if e.report is None:
            basis = ""
        elif e.evidence is None:
            basis = f", with {e.report} (verdict: {e.verdict or 'none'})"
        else:
            basis = f", on {e.evidence} evidence from {e.report}"
        lines = [
            (
                f"Promoted {e.model} to {e.alias} ({was}){basis}; history entry {e.id} in "
                f"{done.registry}.",
                "bold green",
            )
        ]
    if e.forced:
        lines.append((f"Forced: {len(e.overridden)} check(s) overridden.", "yellow"))
        lines += [(f"  - {sentence}", "yellow") for sentence in e.overridden]
    return lines


def render_history(registry: Path, entries: list[HistoryEntry]) -> RenderableType:
    """Render the history as a table, oldest first; ``--json`` has every field."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"promotions in {escape(str(registry))}", title_justify="left")
    for header in ("#", "when (UTC)", "alias", "model", "was", "on", "user", "reason"):
        table.add_column(header, overflow="fold", no_wrap=header != "reason")
    for e in entries:
        table.add_row(
            str(e.id),
            e.when.replace("T", " ")[:16],
            e.alias,
            escape(e.model),
            escape(e.previous_model or "-"),
            _basis(e),
            escape(e.user),
            escape(e.reason or "-"),
        )
    return table


def _basis(e: HistoryEntry) -> str:
    """What the change rested on: the report's evidence or a rollback, and whether forced."""
    if e.action == "rollback":
        parts = [f"rollback of #{e.undoes}"]
    else:
        parts = [] if e.report is None else [e.evidence or e.verdict or "report"]
    if e.forced:
        parts.append("[yellow]forced[/yellow]")
    return ", ".join(parts)
