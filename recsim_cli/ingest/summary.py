"""The result of one ``recsim ingest`` run, rendered by the CLI as a table or JSON."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from recsim_cli.dataset import DatasetStats, SessionIds

Status = Literal["created", "appended", "replaced", "unchanged"]


@dataclass(frozen=True)
class TableReport:
    """What one run did with one input file (events or items)."""

    file: str
    format: str
    rows_read: int
    rows_added: int
    rejected_by_reason: Mapping[str, int] = field(default_factory=dict)
    duplicates_dropped: int = 0
    unknown_columns: tuple[str, ...] = ()

    @property
    def rows_rejected(self) -> int:
        """Rows refused, all reasons together."""
        return sum(self.rejected_by_reason.values())

    def to_dict(self) -> dict[str, Any]:
        """Return plain JSON types."""
        return {
            "file": self.file,
            "format": self.format,
            "rows_read": self.rows_read,
            "rows_added": self.rows_added,
            "rows_rejected": self.rows_rejected,
            "rejected_by_reason": dict(sorted(self.rejected_by_reason.items())),
            "duplicates_dropped": self.duplicates_dropped,
            "unknown_columns": list(self.unknown_columns),
        }


@dataclass(frozen=True)
class IngestSummary:
    """What `ingest` did and what the dataset now holds.

    ``events`` / ``items`` describe this run's input files (None when the file
    was not given, or was already ingested and so skipped). ``stats`` describe
    the whole dataset after the run. ``rows_added`` is the change in stored
    events: for ``replaced`` the new total.
    """

    status: Status
    data_dir: str
    version: int
    rows_added: int
    stats: DatasetStats
    session_gap_s: float
    session_ids: SessionIds
    events: TableReport | None = None
    items: TableReport | None = None
    leftovers_removed: tuple[str, ...] = ()

    @property
    def rows_rejected(self) -> int:
        """Rows this run refused, events and items together."""
        return sum(t.rows_rejected for t in (self.events, self.items) if t is not None)

    @property
    def duplicates_dropped(self) -> int:
        """Duplicate events this run dropped."""
        return self.events.duplicates_dropped if self.events else 0

    def to_dict(self) -> dict[str, Any]:
        """Return plain JSON types (what ``recsim ingest --json`` prints)."""
        stats = self.stats
        return {
            "status": self.status,
            "data_dir": self.data_dir,
            "version": self.version,
            "rows_total": stats.rows,
            "rows_added": self.rows_added,
            "rows_rejected": self.rows_rejected,
            "duplicates_dropped": self.duplicates_dropped,
            "users": stats.users,
            "items": stats.items,
            "catalogue_items": stats.catalogue_items,
            "sessions": stats.sessions,
            "sessions_per_user": stats.sessions_per_user,
            "ctr": stats.ctr,
            "mean_watch_time_s": stats.mean_watch_time_s,
            "time_range": [stats.ts_min, stats.ts_max],
            "session_gap_s": self.session_gap_s,
            "session_ids": self.session_ids,
            "inputs": {
                "events": self.events.to_dict() if self.events else None,
                "items": self.items.to_dict() if self.items else None,
            },
            "leftovers_removed": list(self.leftovers_removed),
        }
