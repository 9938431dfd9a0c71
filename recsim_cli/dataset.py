"""The data contract: the columns of a dataset folder and the `Dataset` that reads it.

A dataset is a folder written only by ``recsim ingest`` (see ``docs/data.md``)::

    DIR/manifest.json                       names the current version; swapped atomically
    DIR/v000003/events/part-00000.parquet   events, one part per user-hash partition
    DIR/v000003/items.parquet               the item catalogue (optional)
    DIR/v000003/rejected/*.parquet          rows ingest refused, with their reason

Version folders are immutable once a manifest names them. Every later command
reads the dataset through `Dataset`, never by globbing the folder, so a stray
half-written version from a crash is never read.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import polars as pl

from recsim_cli.errors import DatasetError
from recsim_cli.locations import is_url
from recsim_cli.spark.session import SparkConfig

FORMAT_VERSION: Final = 1
"""Version of the folder layout and manifest; `Dataset.open` refuses newer ones."""

SCHEMA_VERSION: Final = 1
"""Version of the column contract below; bumped when a column changes."""

MANIFEST_NAME: Final = "manifest.json"
TIMESTAMP: Final = pl.Datetime("us", "UTC")

SessionIds = Literal["derived", "log"]


@dataclass(frozen=True)
class Column:
    """One column of the contract: name, polars type, nullability and meaning."""

    name: str
    dtype: pl.DataType
    nullable: bool
    doc: str


EVENTS_COLUMNS: Final = (
    Column("user_id", pl.String(), False, "who saw or interacted"),
    Column("item_id", pl.String(), False, "what was shown or watched"),
    Column("ts", TIMESTAMP, False, "when, in UTC (microseconds)"),
    Column(
        "session_id",
        pl.String(),
        False,
        "the log's session id, or `<user_id>:<epoch seconds of the session start>` "
        "derived from an inactivity gap",
    ),
    Column(
        "slate", pl.Int64(), True, "0-based index of the page of recommendations in the session"
    ),
    Column("position", pl.Int64(), True, "slot on that page, 0 = top"),
    Column("clicked", pl.Boolean(), False, "whether the user clicked (true for a log of watches)"),
    Column("watch_time_s", pl.Float64(), False, "seconds watched, >= 0; 0 when not clicked"),
    Column("device", pl.String(), True, "device class, e.g. mobile, desktop, tv"),
    Column(
        "propensity",
        pl.Float64(),
        True,
        "the logging policy's probability of showing this item in this slot, in (0, 1]",
    ),
    Column("policy", pl.String(), True, "which live policy or arm served the slate"),
    Column("explore", pl.Boolean(), True, "whether the slate was drawn uniformly at random"),
)

ITEMS_COLUMNS: Final = (
    Column("item_id", pl.String(), False, "the item, as in events"),
    Column("published_ts", TIMESTAMP, True, "when the item was published, in UTC"),
    Column("duration_s", pl.Float64(), True, "length of the item in seconds, >= 0"),
    Column("category", pl.String(), True, "the item's category"),
)

REJECTED_META_COLUMNS: Final = (
    Column("table", pl.String(), False, "`events` or `items`: which input the row came from"),
    Column("source", pl.String(), False, "file name of the input"),
    Column("row", pl.Int64(), False, "1-based number of the record in that file (header excluded)"),
    Column("reason", pl.String(), False, "why the row was refused (see docs/data.md)"),
)


def _raw_columns() -> tuple[Column, ...]:
    seen: dict[str, Column] = {}
    for col in (*EVENTS_COLUMNS, *ITEMS_COLUMNS):
        seen.setdefault(col.name, Column(col.name, pl.String(), True, f"raw value of {col.name}"))
    return tuple(seen.values())


REJECTED_COLUMNS: Final = (*REJECTED_META_COLUMNS, *_raw_columns())
"""Rejected rows keep every contract column's original value as a string (null if absent)."""


def schema_of(columns: Sequence[Column]) -> pl.Schema:
    """Return the polars schema of a column list, in contract order."""
    return pl.Schema({c.name: c.dtype for c in columns})


EVENTS_SCHEMA: Final = schema_of(EVENTS_COLUMNS)
ITEMS_SCHEMA: Final = schema_of(ITEMS_COLUMNS)
REJECTED_SCHEMA: Final = schema_of(REJECTED_COLUMNS)
REQUIRED_EVENTS: Final = ("user_id", "item_id", "ts")
REQUIRED_ITEMS: Final = ("item_id",)

_VERSION_DIR = re.compile(r"^v(\d{6})$")


def version_dir_name(version: int) -> str:
    """Return the folder name of a dataset version, e.g. ``v000003``."""
    return f"v{version:06d}"


def parse_version_dir(name: str) -> int | None:
    """Return the version number a folder name denotes, or None if it is no version folder."""
    match = _VERSION_DIR.match(name)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class SourceRecord:
    """One input file ingested into the dataset, as recorded in the manifest."""

    table: Literal["events", "items"]
    file: str
    sha256: str
    format: str
    version: int
    rows_read: int
    rows_rejected: int
    duplicates_dropped: int
    unknown_columns: tuple[str, ...] = ()
    column_map: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the manifest form (plain JSON types)."""
        data = asdict(self)
        data["unknown_columns"] = list(self.unknown_columns)
        data["column_map"] = dict(self.column_map)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SourceRecord:
        """Rebuild a record from its manifest form."""
        return cls(
            table=data["table"],
            file=data["file"],
            sha256=data["sha256"],
            format=data["format"],
            version=int(data["version"]),
            rows_read=int(data["rows_read"]),
            rows_rejected=int(data["rows_rejected"]),
            duplicates_dropped=int(data["duplicates_dropped"]),
            unknown_columns=tuple(data.get("unknown_columns", ())),
            column_map=dict(data.get("column_map", {})),
        )


@dataclass(frozen=True)
class DatasetStats:
    """Aggregates of a dataset's events, stored in the manifest so reading them is free."""

    rows: int
    users: int
    items: int
    sessions: int
    clicks: int
    watch_time_s: float
    ts_min: str | None
    ts_max: str | None
    catalogue_items: int
    rejected_rows: int

    @property
    def ctr(self) -> float:
        """Clicked rows over all rows (0 for an empty dataset)."""
        return self.clicks / self.rows if self.rows else 0.0

    @property
    def mean_watch_time_s(self) -> float:
        """Mean watch time of clicked rows (0 when nothing was clicked)."""
        return self.watch_time_s / self.clicks if self.clicks else 0.0

    @property
    def sessions_per_user(self) -> float:
        """Sessions over distinct users (0 for an empty dataset)."""
        return self.sessions / self.users if self.users else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return the manifest form, with the derived ratios."""
        data = asdict(self)
        data["ctr"] = self.ctr
        data["mean_watch_time_s"] = self.mean_watch_time_s
        data["sessions_per_user"] = self.sessions_per_user
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetStats:
        """Rebuild stats from their manifest form (derived ratios are recomputed)."""
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class Manifest:
    """The contents of ``manifest.json``: which version is current and how it was made.

    Holds no wall-clock time, so the same inputs give a byte-identical manifest.
    File paths are relative to the dataset folder.
    """

    version: int
    session_gap_s: float
    session_ids: SessionIds
    partitions: int
    events_files: tuple[str, ...]
    items_file: str | None
    rejected_files: tuple[str, ...]
    sources: tuple[SourceRecord, ...]
    stats: DatasetStats
    rejected_by_reason: Mapping[str, Mapping[str, int]]
    duplicates_dropped: Mapping[str, int]
    written_by: Mapping[str, str]
    format_version: int = FORMAT_VERSION
    schema_version: int = SCHEMA_VERSION

    @property
    def version_dir(self) -> str:
        """Folder of the current version, relative to the dataset folder."""
        return version_dir_name(self.version)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form written to ``manifest.json``."""
        return {
            "format_version": self.format_version,
            "schema_version": self.schema_version,
            "version": self.version,
            "version_dir": self.version_dir,
            "session_gap_s": self.session_gap_s,
            "session_ids": self.session_ids,
            "partitions": self.partitions,
            "files": {
                "events": list(self.events_files),
                "items": self.items_file,
                "rejected": list(self.rejected_files),
            },
            "sources": [s.to_dict() for s in self.sources],
            "stats": self.stats.to_dict(),
            "rejected_by_reason": {k: dict(v) for k, v in self.rejected_by_reason.items()},
            "duplicates_dropped": dict(self.duplicates_dropped),
            "written_by": dict(self.written_by),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        """Rebuild a manifest from its JSON form."""
        files = data["files"]
        return cls(
            format_version=int(data["format_version"]),
            schema_version=int(data["schema_version"]),
            version=int(data["version"]),
            session_gap_s=float(data["session_gap_s"]),
            session_ids=data["session_ids"],
            partitions=int(data["partitions"]),
            events_files=tuple(files["events"]),
            items_file=files["items"],
            rejected_files=tuple(files["rejected"]),
            sources=tuple(SourceRecord.from_dict(s) for s in data["sources"]),
            stats=DatasetStats.from_dict(data["stats"]),
            rejected_by_reason={k: dict(v) for k, v in data["rejected_by_reason"].items()},
            duplicates_dropped=dict(data["duplicates_dropped"]),
            written_by=dict(data["written_by"]),
        )


def read_manifest(root: Path) -> Manifest | None:
    """Return the manifest of the dataset at ``root``, or None if there is none yet."""
    path = root / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(
            f"{path} cannot be read ({exc}); re-create the dataset with recsim ingest --replace."
        ) from exc
    return manifest_from_json(data, path)


def manifest_from_json(data: Any, path: Path | str) -> Manifest:
    """The manifest in ``data`` (parsed JSON read from ``path``); `DatasetError` if it is none."""
    version = data.get("format_version") if isinstance(data, dict) else None
    if not isinstance(version, int):
        raise DatasetError(
            f"{path} is not a recsim manifest; re-create the dataset with recsim ingest --replace."
        )
    if version > FORMAT_VERSION:
        raise DatasetError(
            f"{path} has format_version {version} but this recsim reads up to "
            f"{FORMAT_VERSION}; upgrade recsim."
        )
    try:
        return Manifest.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(
            f"{path} is incomplete (missing {exc}); re-create the dataset with "
            "recsim ingest --replace."
        ) from exc


class Dataset:
    """A dataset folder opened at its current version.

    The manifest is read once at `open`; the frames it returns read exactly the
    files that manifest names, so a concurrent ingest never changes what an
    open `Dataset` sees (until the old version is cleaned up after the swap).
    """

    def __init__(self, root: Path | str, manifest: Manifest) -> None:
        self.root = root  # a local folder; a URL for `recsim_cli.spark.remote.RemoteDataset`
        self.manifest = manifest

    @classmethod
    def open(cls, root: Path | str) -> Dataset:
        """Open the local dataset at ``root``; raise `DatasetError` if there is none.

        A URL (``hdfs://``, ``s3a://``...) is opened by `open_dataset` with Spark.
        """
        if is_url(root):
            raise DatasetError(
                f"--data {root} is a URL: only --engine spark reads a dataset there "
                "(recsim ingest, evaluate and abtest); give a local folder otherwise."
            )
        root = Path(root)
        manifest = read_manifest(root)
        if manifest is None:
            raise DatasetError(
                f"{root} is not a dataset (no {MANIFEST_NAME}); create it with "
                f"recsim ingest LOGS --data {root}."
            )
        missing = [
            name
            for name in (*manifest.events_files, *manifest.rejected_files, manifest.items_file)
            if name is not None and not (root / name).is_file()
        ]
        if missing:
            raise DatasetError(
                f"{root} is incomplete: {missing[0]} is missing; re-create it with "
                "recsim ingest --replace."
            )
        return cls(root, manifest)

    @staticmethod
    def exists(root: Path | str) -> bool:
        """Return whether ``root`` holds a dataset (a manifest)."""
        return (Path(root) / MANIFEST_NAME).is_file()

    @property
    def version(self) -> int:
        """The dataset version the manifest names (1 for a fresh dataset)."""
        return self.manifest.version

    @property
    def stats(self) -> DatasetStats:
        """Aggregates of the events, computed at ingest."""
        return self.manifest.stats

    @property
    def fingerprint(self) -> str:
        """SHA-256 over the source files' digests and the schema: same logs, same fingerprint."""
        lines = [f"schema {self.manifest.schema_version}"]
        lines += sorted(f"{s.table} {s.file} {s.sha256}" for s in self.manifest.sources)
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()

    @property
    def has_items(self) -> bool:
        """Whether an item catalogue was ingested."""
        return self.manifest.items_file is not None

    def events(self) -> pl.LazyFrame:
        """Scan the events (`EVENTS_SCHEMA`); each part holds whole users, sorted by user, ts."""
        return self._scan(self.manifest.events_files, EVENTS_SCHEMA)

    def items(self) -> pl.LazyFrame:
        """Scan the item catalogue (`ITEMS_SCHEMA`), sorted by item_id; empty if none."""
        files = () if self.manifest.items_file is None else (self.manifest.items_file,)
        return self._scan(files, ITEMS_SCHEMA)

    def rejected(self) -> pl.LazyFrame:
        """Scan the rows ingest refused (`REJECTED_SCHEMA`), with their reason."""
        return self._scan(self.manifest.rejected_files, REJECTED_SCHEMA)

    def uri(self, relative: str) -> str:
        """The URI of one of the dataset's files, as Spark reads it."""
        return (Path(self.root) / relative).resolve().as_uri()

    def _scan(self, files: Sequence[str], schema: pl.Schema) -> pl.LazyFrame:
        if not files:
            return pl.LazyFrame(schema=schema)
        return pl.scan_parquet([Path(self.root) / f for f in files], schema=schema)


def open_dataset(root: Path | str, *, spark: SparkConfig | None = None) -> Dataset:
    """Open a dataset: a local folder, or, on Spark (``spark`` given), one at a URL."""
    if is_url(root) and spark is not None:
        from recsim_cli.spark.remote import open_remote

        return open_remote(str(root), spark)
    return Dataset.open(root)
