"""`recsim models`: list the models of a registry; `recsim models show NAME`: one manifest.

A sub-app: with no subcommand the callback lists the models. Only typer and
light recsim modules load here, so `recsim --help` stays instant.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from recsim_cli.cli.options import DEFAULT_REGISTRY, JsonFlag, RegistryDir

if TYPE_CHECKING:
    from rich.console import RenderableType

    from recsim_cli.registry import ModelEntry

# The callback's docstring is the help text (a Typer-level help= would override it).
app = typer.Typer(invoke_without_command=True, no_args_is_help=False)

T = TypeVar("T")


@app.callback()
def models_command(
    ctx: typer.Context,
    *,
    registry: RegistryDir = DEFAULT_REGISTRY,
    json_output: JsonFlag = False,
) -> None:
    """List the trained models of a registry: kind, dates, dataset and aliases.

    Each model is a folder written by `recsim train NAME`; `recsim models show
    NAME` prints one model's manifest. A model that cannot be read is listed
    with the reason.

    Example: recsim models --registry recsim-models
    """
    if ctx.invoked_subcommand is not None:
        return
    from recsim_cli.cli import console
    from recsim_cli.registry import Registry

    store = Registry(registry)
    entries = store.list()
    aliases = store.aliases()
    if json_output:
        models = [{**e.to_dict(), "aliases": _aliases_of(e.name, aliases)} for e in entries]
        console.print_json({"registry": str(registry), "models": models, "aliases": aliases})
        return
    if not entries:
        message = f"No models in {registry}; train one with recsim train NAME."
        console.out.print(message, markup=False, soft_wrap=True)
        return
    console.out.print(render_list(registry, entries, aliases))
    for entry in entries:
        if entry.problem is not None:
            console.out.print(entry.problem, markup=False, soft_wrap=True, style="red")


@app.command("show")
def show_command(
    ctx: typer.Context,
    name: Annotated[
        str,
        typer.Argument(help="Model name, or an alias (production, candidate).", show_default=False),
    ],
    *,
    registry: RegistryDir = DEFAULT_REGISTRY,
    json_output: JsonFlag = False,
) -> None:
    """Print the manifest of one model: what it is, its data, settings and training facts.

    With --json the manifest is printed exactly as stored in manifest.json.

    Example: recsim models show production --registry recsim-models
    """
    from recsim_cli.cli import console
    from recsim_cli.registry import Registry

    # `recsim models --registry DIR show NAME` means the same as `... show NAME --registry DIR`.
    registry = _inherit(ctx, "registry", registry)
    json_output = _inherit(ctx, "json_output", json_output)
    store = Registry(registry)
    entry = store.open(name)
    if json_output:
        console.print_json(entry.manifest)
        return
    console.out.print(render_manifest(entry, _aliases_of(entry.name, store.aliases())))


def _inherit(ctx: typer.Context, param: str, value: T) -> T:
    """Take the group's value of ``param`` when the subcommand's is only the default."""
    source = ctx.get_parameter_source(param)
    if ctx.parent is None or (source is not None and source.name != "DEFAULT"):
        return value
    inherited: T = ctx.parent.params.get(param, value)
    return inherited


def _aliases_of(name: str, aliases: dict[str, str]) -> list[str]:
    return [alias for alias, target in aliases.items() if target == name]


def render_list(
    registry: Path, entries: list[ModelEntry], aliases: dict[str, str]
) -> RenderableType:
    """Render the listing as a table, one row per model (an unreadable one marked so)."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"models in {escape(str(registry))}", title_justify="left")
    for header in ("name", "kind", "created (UTC)", "cutoff", "dataset", "aliases"):
        table.add_column(
            header, no_wrap=header in ("name", "kind", "created (UTC)", "cutoff"), overflow="fold"
        )
    for e in entries:
        table.add_row(
            escape(e.name),
            escape(e.kind or "-") if e.problem is None else "[red]unreadable[/red]",
            _when(e.created),
            _when(e.cutoff),
            escape(_dataset(e.dataset)),
            ", ".join(_aliases_of(e.name, aliases)) or "-",
        )
    return table


def render_manifest(entry: ModelEntry, aliases: list[str]) -> RenderableType:
    """Render a manifest as a two-column table, nested keys dotted (``dataset.path``)."""
    from rich.markup import escape
    from rich.table import Table

    title = f"model {entry.name}" + (f" ({', '.join(aliases)})" if aliases else "")
    table = Table(title=escape(title), show_header=False, title_justify="left")
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("path", escape(str(entry.path)))
    for key, value in _flatten(entry.manifest):
        table.add_row(escape(key), escape(value))
    return table


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts as dotted keys; lists of plain values joined by commas."""
    if isinstance(value, dict) and value:
        rows: list[tuple[str, str]] = []
        for key in sorted(value):
            rows.extend(_flatten(value[key], f"{prefix}.{key}" if prefix else str(key)))
        return rows
    if isinstance(value, list) and all(not isinstance(v, dict | list) for v in value):
        return [(prefix, ", ".join(_scalar(v) for v in value) or "-")]
    if isinstance(value, dict | list):
        return [(prefix, json.dumps(value, sort_keys=True))]
    return [(prefix, _scalar(value))]


def _scalar(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _when(text: str | None) -> str:
    """An ISO time as ``YYYY-MM-DD HH:MM`` (just the date at midnight); other text as is."""
    if text is None:
        return "-"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    if (moment.hour, moment.minute, moment.second) == (0, 0, 0):
        return moment.strftime("%Y-%m-%d")
    return moment.strftime("%Y-%m-%d %H:%M")


def _dataset(dataset: dict[str, Any] | None) -> str:
    """The dataset's folder name and the first 12 hex digits of its fingerprint.

    The full (absolute) path is in ``recsim models show NAME``.
    """
    if dataset is None:
        return "-"
    path = Path(str(dataset["path"])).name if dataset.get("path") else None
    fingerprint = dataset.get("fingerprint")
    short = f"({str(fingerprint)[:12]})" if fingerprint else ""
    return " ".join(str(part) for part in (path, short) if part) or "-"
