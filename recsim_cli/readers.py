"""Reading the files users bring: format detection, lazy scanning and column mapping.

The format is decided by content, not by name: Parquet by its ``PAR1`` magic,
gzip by its ``1f 8b`` magic (then the decompressed content decides), JSON lines
by a first character ``{``, and anything else is delimited text whose separator
(tab, comma, semicolon or pipe) is the one the header line contains most.
Delimited text and JSON lines are read with every column as a string, so ids
like ``007`` keep their zeros and each value is validated by ingest itself.
"""

from __future__ import annotations

import difflib
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import polars as pl

from recsim_cli.errors import InputFileError, SchemaError, UserError

ROW: Final = "__recsim_row"
"""Column holding the 1-based number of each record in its file."""

_HEAD_BYTES: Final = 1 << 16
_SAMPLE_BYTES: Final = 1 << 22
_JSON_SCHEMA_ROWS: Final = 10_000
_SEPARATORS: Final = ("\t", ",", ";", "|")

# Names users commonly give the required columns, to suggest the right --map.
_SYNONYMS: Final[Mapping[str, tuple[str, ...]]] = {
    "user_id": ("uid", "user", "userid", "user_key", "visitor_id", "viewer_id", "member_id"),
    "item_id": ("iid", "vid", "item", "itemid", "video_id", "video", "movie_id", "product_id"),
    "ts": ("time", "timestamp", "event_time", "datetime", "date", "created_at", "t"),
}


@dataclass(frozen=True)
class FileFormat:
    """How a file is encoded: its kind, its separator (delimited text) and compression."""

    kind: Literal["csv", "parquet", "jsonl"]
    separator: str = ","
    gzip: bool = False

    @property
    def label(self) -> str:
        """Short name, e.g. ``csv``, ``tsv.gz``, ``parquet``, ``jsonl``."""
        name = "tsv" if self.kind == "csv" and self.separator == "\t" else self.kind
        return f"{name}.gz" if self.gzip else name


@dataclass(frozen=True)
class SourceTable:
    """A user's file opened lazily, its columns renamed to the contract's names.

    ``frame`` holds only the contract columns the file has (with their stored
    types) plus `ROW`; ``unknown_columns`` are the file's other columns, which
    ingest ignores and reports.
    """

    path: Path
    format: FileFormat
    found_columns: tuple[str, ...]
    unknown_columns: tuple[str, ...]
    frame: pl.LazyFrame
    estimated_rows: int

    @property
    def name(self) -> str:
        """The file name, as recorded in the manifest and in rejected rows."""
        return self.path.name

    @property
    def columns(self) -> tuple[str, ...]:
        """The contract columns the file provides (after mapping)."""
        return tuple(c for c in self.frame.collect_schema().names() if c != ROW)


def parse_column_map(specs: Sequence[str], valid: Sequence[str]) -> dict[str, str]:
    """Parse ``--map NEW=OLD`` options into ``{NEW: OLD}``; NEW must be a contract column."""
    mapping: dict[str, str] = {}
    for spec in specs:
        new, sep, old = spec.partition("=")
        new, old = new.strip(), old.strip()
        if not sep or not new or not old:
            raise UserError(f"--map {spec} is not NEW=OLD; write it like --map user_id=uid.")
        if new not in valid:
            raise UserError(
                f"--map {spec}: '{new}' is not a column of the data contract; "
                f"use one of {', '.join(sorted(valid))}."
            )
        if new in mapping:
            raise UserError(f"--map gives {new} twice ({new}={mapping[new]}, {spec}); keep one.")
        mapping[new] = old
    return mapping


def detect_format(path: Path) -> FileFormat:
    """Decide a file's format from its first bytes (and its name only as a tie-break)."""
    if not path.exists():
        raise InputFileError(f"{path} does not exist; check the path.")
    if path.is_dir():
        if not parquet_parts(path):
            raise InputFileError(
                f"{path} is a directory without Parquet files; give a CSV, TSV, Parquet or "
                "JSON-lines file, or a folder of Parquet files."
            )
        return FileFormat("parquet")
    try:
        with path.open("rb") as fh:
            head = fh.read(_HEAD_BYTES)
    except OSError as exc:
        raise InputFileError(
            f"{path} cannot be read ({exc.strerror}); check its permissions."
        ) from exc
    if not head:
        raise InputFileError(f"{path} is empty; give a file with a header and at least one row.")
    if head.startswith(b"PAR1"):
        return FileFormat("parquet")
    gzipped = head.startswith(b"\x1f\x8b")
    if gzipped:
        head = _gunzip_head(path)
        if not head.strip():
            raise InputFileError(
                f"{path} is empty once decompressed; give a file with a header and rows."
            )
    if b"\x00" in head:
        raise InputFileError(
            f"{path} is not a CSV, TSV, Parquet or JSON-lines file; convert it to one of those."
        )
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
    first = text.lstrip()[:1]
    if first == "{":
        return FileFormat("jsonl", gzip=gzipped)
    if first == "[":
        raise InputFileError(
            f"{path} holds a JSON array; write one JSON object per line (JSON lines) instead."
        )
    header = text.splitlines()[0] if text.splitlines() else ""
    counts = {sep: header.count(sep) for sep in _SEPARATORS}
    separator = max(_SEPARATORS, key=lambda sep: counts[sep])
    if counts[separator] == 0:
        suffixes = [s.lower() for s in path.suffixes]
        separator = "\t" if ".tsv" in suffixes or ".tab" in suffixes else ","
    return FileFormat("csv", separator=separator, gzip=gzipped)


def parquet_parts(folder: Path) -> list[Path]:
    """The Parquet files of a partitioned folder (``date=2026-01-01/part-0.parquet``...), sorted.

    Files and folders whose name starts with ``_`` or ``.`` (``_SUCCESS``,
    ``.crc`` files) are skipped, as Spark and Hive do.
    """
    return sorted(
        p
        for p in folder.rglob("*.parquet")
        if p.is_file()
        and not any(part.startswith(("_", ".")) for part in p.relative_to(folder).parts)
    )


def _gunzip_head(path: Path) -> bytes:
    """Return the first decompressed bytes of a gzip file."""
    decompressor = zlib.decompressobj(wbits=31)
    out = b""
    try:
        with path.open("rb") as fh:
            while len(out) < _HEAD_BYTES and (chunk := fh.read(_HEAD_BYTES)):
                out += decompressor.decompress(chunk, _HEAD_BYTES - len(out))
    except zlib.error as exc:
        raise InputFileError(
            f"{path} starts like gzip but cannot be decompressed ({exc}); re-compress it."
        ) from exc
    return out


def estimate_rows(path: Path, fmt: FileFormat) -> int:
    """Estimate the number of records cheaply, to size the partitions of ingest.

    Parquet knows its row count. For text, the first 4 MiB (decompressed) give
    bytes per line and, for gzip, the compression ratio; both are extrapolated
    to the file size. Over-estimates only make partitions smaller.
    """
    if fmt.kind == "parquet":
        files = parquet_parts(path) if path.is_dir() else [path]
        return int(pl.scan_parquet(files).select(pl.len()).collect().item())
    size = path.stat().st_size
    consumed = 0
    sample = b""
    with path.open("rb") as fh:
        if fmt.gzip:
            decompressor = zlib.decompressobj(wbits=31)
            while len(sample) < _SAMPLE_BYTES and (chunk := fh.read(1 << 16)):
                consumed += len(chunk)
                sample += decompressor.decompress(chunk)
                if decompressor.eof:
                    break
        else:
            sample = fh.read(_SAMPLE_BYTES)
            consumed = len(sample)
    lines = max(1, sample.count(b"\n"))
    if consumed >= size:
        return lines
    return int(size * (len(sample) / max(1, consumed)) / (len(sample) / lines)) + 1


def scan_table(
    path: Path,
    *,
    known: Sequence[str],
    required: Sequence[str],
    column_map: Mapping[str, str],
) -> SourceTable:
    """Open ``path`` lazily with the contract's column names.

    ``column_map`` is ``{NEW: OLD}``; entries whose OLD column the file lacks
    are ignored (the same map serves the events and the items file). Raises
    `SchemaError` naming the columns found and the ``--map`` to use when a
    required column is missing.
    """
    fmt = detect_format(path)
    raw = _scan(path, fmt)
    try:
        found = tuple(c for c in raw.collect_schema().names() if c != ROW)
    except pl.exceptions.PolarsError as exc:
        raise InputFileError(
            f"{path} cannot be read as {fmt.label} ({first_line(exc)}); fix or convert the file."
        ) from exc
    names = contract_names(path, found, column_map=column_map, required=required)
    renames = {old: new for old, new in zip(found, names, strict=True) if old != new}
    present = [c for c in known if c in names]
    unknown = tuple(c for c, n in zip(found, names, strict=True) if n not in known)
    if fmt.kind == "jsonl":
        # Read only the contract columns, each as a string, whatever JSON type it has.
        originals = {n: c for c, n in zip(found, names, strict=True)}
        raw = pl.scan_ndjson(
            path,
            schema={originals[c]: pl.String for c in present},
            row_index_name=ROW,
            row_index_offset=1,
            infer_schema_length=_JSON_SCHEMA_ROWS,
        )
    frame = raw.rename(renames).select(pl.col(ROW).cast(pl.Int64), *(pl.col(c) for c in present))
    return SourceTable(
        path=path,
        format=fmt,
        found_columns=found,
        unknown_columns=unknown,
        frame=frame,
        estimated_rows=estimate_rows(path, fmt),
    )


def _scan(path: Path, fmt: FileFormat) -> pl.LazyFrame:
    if fmt.kind == "parquet":
        if path.is_dir():  # a partitioned folder: hive columns (date=...) become columns
            return pl.scan_parquet(
                parquet_parts(path),
                hive_partitioning=True,
                row_index_name=ROW,
                row_index_offset=1,
            )
        return pl.scan_parquet(path, row_index_name=ROW, row_index_offset=1)
    if fmt.kind == "jsonl":
        return pl.scan_ndjson(
            path, infer_schema_length=_JSON_SCHEMA_ROWS, row_index_name=ROW, row_index_offset=1
        )
    return pl.scan_csv(
        path,
        separator=fmt.separator,
        infer_schema=False,
        row_index_name=ROW,
        row_index_offset=1,
    )


def contract_names(
    path: Path | str,
    found: Sequence[str],
    *,
    column_map: Mapping[str, str],
    required: Sequence[str],
) -> list[str]:
    """The contract name of each column ``found`` in ``path``, after ``--map NEW=OLD``.

    Raises `SchemaError` when a map would give two columns one name, or a
    required column is missing (naming the columns found and the ``--map``
    to use). Both engines read a file's header through it.
    """
    renames = {old: new for new, old in column_map.items() if old in found}
    for old, new in renames.items():
        if new in found and new not in renames:
            raise SchemaError(
                f"{path} has both a column '{new}' and '{old}', which --map {new}={old} "
                f"renames to it; drop the --map or rename one column."
            )
    names = [renames.get(c, c) for c in found]
    missing = [c for c in required if c not in names]
    if missing:
        raise SchemaError(_missing_message(path, missing, found))
    return names


def _missing_message(path: Path | str, missing: Sequence[str], found: Sequence[str]) -> str:
    listed = ", ".join(found) or "none"
    maps = " ".join(f"--map {c}={_guess(c, found)}" for c in missing)
    if len(missing) == 1:
        return f"{path} has no column '{missing[0]}' (found: {listed}); map yours with {maps}."
    names = ", ".join(f"'{c}'" for c in missing)
    return f"{path} has no columns {names} (found: {listed}); map yours with {maps}."


def _guess(column: str, found: Sequence[str]) -> str:
    """Guess which of the file's columns plays the role of ``column``."""
    lowered = {c.lower(): c for c in found}
    for synonym in _SYNONYMS.get(column, ()):
        if synonym in lowered:
            return lowered[synonym]
    close = difflib.get_close_matches(column, list(lowered), n=1, cutoff=0.6)
    return lowered[close[0]] if close else "YOUR_COLUMN"


def first_line(exc: BaseException) -> str:
    """Return the first line of an exception's message (polars messages run long)."""
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(".:") if text else type(exc).__name__
