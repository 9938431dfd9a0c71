"""Parse one raw column into its contract type: ids, text, booleans, numbers, timestamps.

Each parser is a polars expression (no Python loop over rows) and comes in two
forms. The *fast* form takes the common spellings only: ``true``/``false``
(``True``, ``1``, ``yes``...), plain numbers, ids without leading blanks, and
timestamps in the log's primary format. The *tolerant* form also takes
surrounding whitespace, any letter case, and every timestamp format. Ingest
runs the fast form over the whole log and the tolerant form only over the
rows the fast form could not take, so a clean log pays for one cheap parse
per value; the result is the same as running the tolerant form everywhere.

Values typed by the file (Parquet) are converted the same way in both forms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import polars as pl

from recsim_cli.dataset import TIMESTAMP
from recsim_cli.errors import SchemaError

EPOCH: Final = "epoch"
"""Stands for epoch seconds or milliseconds among the timestamp formats."""
# Timestamp spellings; the first three have a fast path in polars. A string
# two formats both accept denotes the same instant, so the order (and the
# sniffed primary format moved to the front) never changes a result.
TS_FORMATS: Final = (
    "%Y-%m-%dT%H:%M:%SZ",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M%#z",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
    EPOCH,
)
EPOCH_MS_FROM: Final = 1e11
"""Numbers with magnitude at least this are epoch milliseconds; smaller ones are seconds."""
EPOCH_MAX: Final = 1e14
"""Numbers with magnitude at least this are refused as timestamps (beyond year 5000 in ms)."""

KINDS: Final = {
    "user_id": "an id",
    "item_id": "an id",
    "session_id": "an id",
    "device": "text",
    "policy": "text",
    "category": "text",
    "clicked": "a boolean",
    "explore": "a boolean",
    "watch_time_s": "a number",
    "propensity": "a number",
    "duration_s": "a number",
    "slate": "an integer",
    "position": "an integer",
    "ts": "a timestamp",
    "published_ts": "a timestamp",
}
"""What each contract column holds (the wording of the type error)."""

_TRUE: Final = ("true", "1", "yes", "t")
_FALSE: Final = ("false", "0", "no", "f")
_TRUE_FAST: Final = (*_TRUE, "True", "TRUE", "Yes", "YES", "T")
_FALSE_FAST: Final = (*_FALSE, "False", "FALSE", "No", "NO", "F")
_MAX_EXACT_INT: Final = 2.0**53


def check_types(schema: pl.Schema, source: str) -> None:
    """Raise `SchemaError` if a typed input column (Parquet) cannot hold its contract value."""
    for name, dtype in schema.items():
        kind = KINDS.get(name)
        if kind is not None and not _accepts(kind, dtype):
            raise SchemaError(
                f"{source} column '{name}' has type {dtype}, which cannot hold {kind}; "
                "store it as a string or a number."
            )


def _accepts(kind: str, dtype: pl.DataType) -> bool:
    if dtype in (pl.String, pl.Null):
        return True
    if kind in ("an id", "text"):
        return dtype.is_numeric() or dtype == pl.Boolean
    if kind == "a boolean":
        return dtype == pl.Boolean or dtype.is_integer()
    if kind == "a timestamp":
        return dtype.is_numeric() or isinstance(dtype, pl.Datetime) or dtype == pl.Date
    return dtype.is_numeric()


def parse_value(
    name: str, dtype: pl.DataType, *, fast: bool, ts_formats: Sequence[str] = TS_FORMATS
) -> pl.Expr:
    """Return the parsed value of input column ``name`` (null where it does not parse).

    Call `check_types` first; an empty string must already be null.
    """
    kind = KINDS[name]
    col = pl.col(name)
    if kind in ("an id", "text"):
        return _id(col, dtype, fast)
    if kind == "a boolean":
        return _bool(col, dtype, fast)
    if kind == "a number":
        return _float(col, dtype, fast)
    if kind == "an integer":
        return _int(col, dtype, fast)
    return _timestamp(col, dtype, fast, ts_formats)


def sniff_ts_formats(sample: pl.Series) -> tuple[str, ...]:
    """Order `TS_FORMATS` so the one matching most of ``sample`` (strings) is tried first."""
    if sample.dtype != pl.String or sample.null_count() == len(sample):
        return TS_FORMATS
    frame = sample.rename("ts").to_frame()
    hits = {
        fmt: int(frame.select(_text_ts(pl.col("ts"), fmt).is_not_null().sum()).item())
        for fmt in TS_FORMATS
    }
    best = max(TS_FORMATS, key=lambda fmt: hits[fmt])
    return (best, *(f for f in TS_FORMATS if f != best))


def _id(col: pl.Expr, dtype: pl.DataType, fast: bool) -> pl.Expr:
    """An id or a text: kept exactly as given; null when only whitespace."""
    if dtype != pl.String:
        return col.cast(pl.String)
    if fast:
        # A value starting with any blank (a space, a tab, a no-break space...) is left to
        # the tolerant form, which makes one that is only blanks missing.
        return pl.when(~col.str.contains(r"^\s")).then(col)
    return pl.when(col.str.strip_chars().str.len_bytes() > 0).then(col)


def _bool(col: pl.Expr, dtype: pl.DataType, fast: bool) -> pl.Expr:
    """A boolean from true/false/t/f/yes/no/1/0 in any case, or a bool or 0/1 column."""
    if dtype == pl.Boolean:
        return col
    if dtype.is_integer():
        return pl.when(col == 1).then(True).when(col == 0).then(False)
    # is_in, not replace_strict: the latter makes the streaming engine hold the column.
    if fast:
        return pl.when(col.is_in(_TRUE_FAST)).then(True).when(col.is_in(_FALSE_FAST)).then(False)
    word = col.str.strip_chars().str.to_lowercase()
    return pl.when(word.is_in(_TRUE)).then(True).when(word.is_in(_FALSE)).then(False)


def _number(col: pl.Expr, dtype: pl.DataType, fast: bool) -> pl.Expr:
    if dtype.is_numeric() or dtype == pl.Null:
        return col.cast(pl.Float64)
    text = col if fast else col.str.strip_chars()
    return text.cast(pl.Float64, strict=False)


def _float(col: pl.Expr, dtype: pl.DataType, fast: bool) -> pl.Expr:
    """A finite float; -0.0 becomes 0.0 so equal values have equal bytes."""
    value = _number(col, dtype, fast)
    return pl.when(value.is_finite()).then(value) + 0.0


def _int(col: pl.Expr, dtype: pl.DataType, fast: bool) -> pl.Expr:
    """An integer; a number equal to an integer (``3.0``) counts, ``2.5`` does not."""
    if dtype.is_integer():
        return col.cast(pl.Int64, strict=False)
    value = _number(col, dtype, fast)
    exact = value.is_finite() & (value == value.floor()) & (value.abs() < _MAX_EXACT_INT)
    return pl.when(exact).then(value.cast(pl.Int64))


def _timestamp(col: pl.Expr, dtype: pl.DataType, fast: bool, formats: Sequence[str]) -> pl.Expr:
    """A UTC timestamp from a datetime, a date, epoch or ISO 8601 text.

    Text is decided per row: ``formats`` (`EPOCH` or strptime formats) are
    tried in turn, then once more with surrounding whitespace removed. The
    fast form tries only the first (the primary) format.
    """
    if isinstance(dtype, pl.Datetime):
        zoned = col.dt.replace_time_zone("UTC") if dtype.time_zone is None else col
        return zoned.dt.convert_time_zone("UTC").cast(TIMESTAMP)
    if dtype == pl.Date:
        return col.cast(pl.Datetime("us")).dt.replace_time_zone("UTC").cast(TIMESTAMP)
    if dtype.is_numeric() or dtype == pl.Null:
        return _epoch(col.cast(pl.Float64)).cast(TIMESTAMP)
    if fast:
        return _text_ts(col, formats[0]).cast(TIMESTAMP)
    trimmed = col.str.strip_chars()
    return pl.coalesce(
        *(_text_ts(col, fmt) for fmt in formats),
        *(_text_ts(trimmed, fmt) for fmt in formats),
    ).cast(TIMESTAMP)


def _text_ts(text: pl.Expr, fmt: str) -> pl.Expr:
    if fmt == EPOCH:
        return _epoch(text.cast(pl.Float64, strict=False))
    # A format without a zone reads the value as UTC; one with a zone converts to UTC.
    return text.str.to_datetime(fmt, strict=False, time_unit="us", time_zone="UTC")


def _epoch(number: pl.Expr) -> pl.Expr:
    """Epoch seconds, or milliseconds when the magnitude is at least `EPOCH_MS_FROM`."""
    size = number.abs()
    micros = (
        pl.when(size < EPOCH_MS_FROM).then(number * 1e6).when(size < EPOCH_MAX).then(number * 1e3)
    )
    return pl.from_epoch(micros.round(0).cast(pl.Int64), time_unit="us").dt.replace_time_zone("UTC")
