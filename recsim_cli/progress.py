"""A progress callback the library calls and the CLI renders (the library never prints)."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Receives progress of long work: ``progress(task, done, total)``.

    ``task`` is a short human label ("parse", "sessionise"); ``done`` and
    ``total`` are in the task's own unit (rows, partitions, days). ``total`` is
    None when unknown. Calls for one task have non-decreasing ``done``.
    """

    def __call__(self, task: str, done: int, total: int | None) -> None: ...


def no_progress(task: str, done: int, total: int | None) -> None:
    """Ignore progress (the default for library calls)."""
