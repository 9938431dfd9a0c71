"""`ingest`: decide what a run must do, build the next dataset version, swap it in.

With ``engine="spark"`` the log is opened (`recsim_cli.spark.ingest_source`)
and its events are stored (`recsim_cli.spark.ingest`) by Spark; planning,
locking, the catalogue, the manifest and the swap are the same code.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Final, Literal, Protocol

from recsim_cli.dataset import (
    EVENTS_SCHEMA,
    ITEMS_SCHEMA,
    MANIFEST_NAME,
    REQUIRED_EVENTS,
    REQUIRED_ITEMS,
    Dataset,
    Manifest,
    SessionIds,
    read_manifest,
)
from recsim_cli.errors import (
    ConfigError,
    DatasetError,
    InternalError,
    UnknownNameError,
    UserError,
)
from recsim_cli.ingest.build import InputFile, build_version
from recsim_cli.ingest.events import PARTITION_ROWS
from recsim_cli.ingest.partitions import WORKERS
from recsim_cli.ingest.sessions import DEFAULT_GAP, format_duration
from recsim_cli.ingest.store import (
    VersionTarget,
    VersionWriter,
    foreign_entry,
    locked,
    not_a_dataset,
)
from recsim_cli.ingest.store import remove_leftovers as _remove_leftovers
from recsim_cli.ingest.summary import IngestSummary, Status, TableReport
from recsim_cli.io import sha256_file
from recsim_cli.locations import is_url
from recsim_cli.progress import Progress, no_progress
from recsim_cli.readers import scan_table
from recsim_cli.spark.session import ENGINES, Engine, SparkConfig

Mode = Literal["new", "append", "replace"]
CONTRACT_COLUMNS: Final = tuple(dict.fromkeys([*EVENTS_SCHEMA.names(), *ITEMS_SCHEMA.names()]))


def ingest(
    events: Path | str,
    *,
    items: Path | str | None = None,
    data: Path | str = Path("recsim-data"),
    column_map: Mapping[str, str] | None = None,
    session_gap: timedelta | None = None,
    mode: Mode = "new",
    progress: Progress = no_progress,
    partition_rows: int = PARTITION_ROWS,
    workers: int = WORKERS,
    engine: Engine = "polars",
    spark: SparkConfig | None = None,
) -> IngestSummary:
    """Validate, normalise, sessionise and store a log (and a catalogue) as a dataset.

    ``column_map`` renames the user's columns: ``{"user_id": "uid"}`` reads
    column ``uid`` as user_id. ``session_gap`` is the inactivity that starts a
    new session (default 30 minutes; on append, the dataset's). ``mode``:

    * ``"new"``: create the dataset; if it exists and already holds these
      files (same sha256), do nothing (status ``unchanged``), else refuse.
    * ``"append"``: add the files' events to the stored ones (a file already
      ingested is skipped); users whose sessions continue are re-sessionised.
    * ``"replace"``: rebuild the dataset from these files only.

    ``partition_rows`` (events per user partition) and ``workers``
    (partitions stored at once) trade memory for speed; the first changes
    how the events are split into parts, neither changes their content.

    ``engine="spark"`` stores the events with Spark (``spark`` says where;
    default ``local[*]``), with the same result: the log may then be any
    path or URL Spark reads; the catalogue is still read by polars.

    Raises a `UserError` subclass for anything wrong in the inputs or the
    folder; the stored dataset is then left exactly as it was.
    """
    mapping = _check_column_map(column_map or {})
    if engine not in ENGINES:
        raise UnknownNameError("engine", str(engine), ENGINES)
    if is_url(data) and engine != "spark":
        raise ConfigError(
            f"--data {data} is a URL: only --engine spark writes a dataset there; add "
            "--engine spark, or give a local folder."
        )
    with ThreadPoolExecutor(max_workers=1) as hasher:
        if engine == "spark":
            events_in = _open_spark(events, mapping, hasher, spark or SparkConfig())
        else:
            events_in = _open(Path(events), "events", mapping, hasher)
        items_in = _open(Path(items), "items", mapping, hasher) if items is not None else None
        _check_map_used(mapping, [i for i in (events_in, items_in) if i is not None])
        store: Store
        if is_url(data):
            from recsim_cli.spark.remote import RemoteStore

            store = RemoteStore(str(data), spark)
        else:
            store = LocalStore(Path(data))
        store.check_folder()
        return _run(
            store,
            events_in,
            items_in,
            mode=mode,
            session_gap=session_gap,
            progress=progress,
            partition_rows=partition_rows,
            workers=workers,
        )


def _run(
    store: Store,
    events_in: InputFile,
    items_in: InputFile | None,
    *,
    mode: Mode,
    session_gap: timedelta | None,
    progress: Progress,
    partition_rows: int,
    workers: int,
) -> IngestSummary:
    """Plan the run under the dataset lock, then build and commit the new version."""
    root = store.root
    with store.locked():
        current = store.read_manifest()
        leftovers = tuple(store.remove_leftovers(current))
        status, todo = _plan(
            root, current, events_in=events_in, items_in=items_in, mode=mode, gap=session_gap
        )
        if current is not None and status == "unchanged":
            return _summary(root, current, status=status, added=0, leftovers=leftovers)
        base = current if status == "appended" else None
        if base is not None:
            store.open()  # an append reads the stored files: they must all be there
        reads_events = any(i is events_in for i in todo)
        gap, session_ids = _sessions(root, base, events_in if reads_events else None, session_gap)
        with store.writer(current) as writer:
            manifest, (events_report, items_report) = build_version(
                writer,
                base,
                todo=todo,
                gap=gap,
                session_ids=session_ids,
                progress=progress,
                partition_rows=partition_rows,
                workers=workers,
            )
            writer.commit(manifest)
    return _summary(
        root,
        manifest,
        status=status,
        added=manifest.stats.rows - (base.stats.rows if base else 0),
        events=events_report,
        items=items_report,
        leftovers=leftovers,
    )


class Store(Protocol):
    """Where a dataset is written: a local folder (`LocalStore`) or a URL (`RemoteStore`)."""

    @property
    def root(self) -> Path | str: ...
    def locked(self) -> AbstractContextManager[None]: ...
    def read_manifest(self) -> Manifest | None: ...
    def remove_leftovers(self, current: Manifest | None) -> list[str]: ...
    def open(self) -> Dataset: ...
    def check_folder(self) -> None: ...
    def writer(self, current: Manifest | None) -> AbstractContextManager[VersionTarget]: ...


@dataclass(frozen=True)
class LocalStore:
    """A dataset folder on this machine (`recsim_cli.ingest.store`)."""

    root: Path

    def locked(self) -> AbstractContextManager[None]:
        return locked(self.root)

    def read_manifest(self) -> Manifest | None:
        return read_manifest(self.root)

    def remove_leftovers(self, current: Manifest | None) -> list[str]:
        return _remove_leftovers(self.root, current)

    def open(self) -> Dataset:
        return Dataset.open(self.root)

    def check_folder(self) -> None:
        _check_folder(self.root)

    def writer(self, current: Manifest | None) -> VersionWriter:
        return VersionWriter(self.root, current)


def _open(
    path: Path,
    table: Literal["events", "items"],
    mapping: Mapping[str, str],
    hasher: ThreadPoolExecutor,
) -> InputFile:
    known = EVENTS_SCHEMA.names() if table == "events" else ITEMS_SCHEMA.names()
    required = REQUIRED_EVENTS if table == "events" else REQUIRED_ITEMS
    source = scan_table(path, known=known, required=required, column_map=mapping)
    used = {new: old for new, old in mapping.items() if old in source.found_columns}
    return InputFile(table, source, hasher.submit(sha256_file, path), used)


def _open_spark(
    path: Path | str, mapping: Mapping[str, str], hasher: ThreadPoolExecutor, config: SparkConfig
) -> InputFile:
    """Open the log for Spark: a local file as `_open` does, or a URL Spark reads."""
    from recsim_cli.spark.ingest_source import open_source, sha256_url

    source = open_source(
        path,
        known=EVENTS_SCHEMA.names(),
        required=REQUIRED_EVENTS,
        column_map=mapping,
        config=config,
    )
    used = {new: old for new, old in mapping.items() if old in source.found_columns}
    if is_url(path):
        digest = hasher.submit(sha256_url, str(path), config)
    else:
        digest = hasher.submit(sha256_file, Path(path))
    return InputFile("events", source, digest, used)


def _check_column_map(mapping: Mapping[str, str]) -> dict[str, str]:
    for new in mapping:
        if new not in CONTRACT_COLUMNS:
            raise UserError(
                f"--map {new}={mapping[new]}: '{new}' is not a column of the data contract; "
                f"use one of {', '.join(sorted(CONTRACT_COLUMNS))}."
            )
    return dict(mapping)


def _check_map_used(mapping: Mapping[str, str], inputs: list[InputFile]) -> None:
    for new, old in mapping.items():
        if not any(old in i.source.found_columns for i in inputs):
            first = inputs[0].source
            found = ", ".join(first.found_columns)
            raise UserError(
                f"--map {new}={old}: {first.path} has no column '{old}' (found: {found}); "
                "check the name."
            )


def _check_folder(root: Path) -> None:
    """Refuse to write a dataset into a file, or into a folder holding other things."""
    if root.exists() and not root.is_dir():
        raise DatasetError(f"{root} is a file, not a dataset folder; choose another --data.")
    if not root.is_dir() or (root / MANIFEST_NAME).exists():
        return
    found = foreign_entry(e.name for e in root.iterdir())
    if found is not None:
        raise not_a_dataset(root, found)


def _plan(
    root: Path | str,
    current: Manifest | None,
    *,
    events_in: InputFile,
    items_in: InputFile | None,
    mode: Mode,
    gap: timedelta | None,
) -> tuple[Status, list[InputFile]]:
    """Decide the status of the run and which inputs it must read."""
    inputs = [i for i in (events_in, items_in) if i is not None]
    if mode not in ("new", "append", "replace"):
        raise UserError(f"Unknown ingest mode '{mode}'. Available: append, new, replace.")
    if current is None:
        return "created", inputs
    stored = {(s.table, s.sha256) for s in current.sources}
    todo = [i for i in inputs if (i.table, i.sha256) not in stored]
    if mode == "replace":
        same_files = {
            (s.table, s.sha256, tuple(sorted(s.column_map.items()))) for s in current.sources
        }
        wanted = {(i.table, i.sha256, tuple(sorted(i.column_map.items()))) for i in inputs}
        same_gap = gap is None or gap.total_seconds() == current.session_gap_s
        return ("unchanged", []) if same_files == wanted and same_gap else ("replaced", inputs)
    if not todo:
        return "unchanged", []
    if mode == "append":
        return "appended", todo
    held = ", ".join(sorted({s.file for s in current.sources}))
    new = " and ".join(i.source.name for i in todo)
    raise DatasetError(
        f"{root} already holds a dataset (from {held}); add {new} to it with --append, "
        "or rebuild it from the given files with --replace."
    )


def _sessions(
    root: Path | str, base: Manifest | None, events_in: InputFile | None, gap: timedelta | None
) -> tuple[timedelta, SessionIds]:
    """Return the session gap and whether session ids come from the log or are derived."""
    if base is None:
        if events_in is None:
            raise InternalError("a new dataset must read its events file")
        has_ids = "session_id" in events_in.source.columns
        return gap or DEFAULT_GAP, "log" if has_ids else "derived"
    stored_gap = timedelta(seconds=base.session_gap_s)
    if events_in is not None:
        has_ids = "session_id" in events_in.source.columns
        if has_ids != (base.session_ids == "log"):
            given = "has" if has_ids else "has no"
            kept = "come from the logs" if base.session_ids == "log" else "are derived"
            raise DatasetError(
                f"{events_in.source.path} {given} a session_id column but the sessions in "
                f"{root} {kept}; rebuild with --replace to change how sessions are made."
            )
    if gap is not None and gap != stored_gap and base.session_ids == "derived":
        raise DatasetError(
            f"{root} was sessionised with a {format_duration(stored_gap)} gap, not "
            f"{format_duration(gap)}; drop --session-gap, or rebuild with --replace."
        )
    return stored_gap, base.session_ids


def _summary(
    root: Path | str,
    manifest: Manifest,
    *,
    status: Status,
    added: int,
    leftovers: tuple[str, ...],
    events: TableReport | None = None,
    items: TableReport | None = None,
) -> IngestSummary:
    return IngestSummary(
        status=status,
        data_dir=str(root),
        version=manifest.version,
        rows_added=added,
        stats=manifest.stats,
        session_gap_s=manifest.session_gap_s,
        session_ids=manifest.session_ids,
        events=events,
        items=items,
        leftovers_removed=leftovers,
    )
