"""Rich rendering shared by the commands: consoles, progress bars, tables."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from recsim_cli.io import dumps_json
from recsim_cli.progress import Progress as ProgressCallback

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


@contextmanager
def progress_bar(*, enabled: bool = True) -> Iterator[ProgressCallback]:
    """Yield a library progress callback drawn as a rich progress bar on stderr."""
    if not enabled or not err.is_terminal:
        yield _silent
        return
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description:<14}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def update(task: str, done: int, total: int | None) -> None:
            if task not in tasks:
                tasks[task] = bar.add_task(task, total=total)
            bar.update(tasks[task], completed=done, total=total)

        yield update


def _silent(task: str, done: int, total: int | None) -> None:
    return None


def key_value_table(title: str, rows: Sequence[tuple[str, object]]) -> Table:
    """A two-column table of labelled values."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    for label, value in rows:
        table.add_row(label, format_value(value))
    return table


def frame_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> Table:
    """A table with a header row; numbers right-aligned."""
    table = Table(title=title, title_justify="left")
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(format_value(v) for v in row))
    return table


def format_value(value: object) -> str:
    """Format a number for a table: thousands separators, four significant decimals."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.1f}"
    if value is None:
        return "-"
    return str(value)


def print_json(obj: Mapping[str, Any]) -> None:
    """Write ``obj`` as deterministic JSON to stdout."""
    sys.stdout.write(dumps_json(obj))
    sys.stdout.flush()
