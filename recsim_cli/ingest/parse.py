"""Turn a user's raw columns into the contract's typed columns, and say why a row is refused.

`parse_events` and `parse_items` work on a `LazyFrame`, so the streaming
engine parses a log in bounded memory. A parsed frame has:

* `ROW`, the record's 1-based number in its file;
* the contract columns, typed, with defaults for absent columns;
* `REASON`: null for a good row, else its first problem in the order of
  `EVENT_REASONS` / `ITEM_REASONS`;
* ``_raw_<column>``: each input column's original value (see `raw_columns`),
  kept to record refused rows as the user gave them.

With ``fast=True`` the values are parsed by the fast forms of `values`; a row
they cannot take gets a reason too, and ingest re-parses exactly those rows
with ``fast=False`` (see ``events.stage_events``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

import polars as pl

from recsim_cli.dataset import EVENTS_SCHEMA, ITEMS_SCHEMA
from recsim_cli.ingest.values import TS_FORMATS, check_types, parse_value
from recsim_cli.readers import ROW

REASON: Final = "_reason"
RAW_PREFIX: Final = "_raw_"

EVENT_REASONS: Final = (
    "user_id is empty",
    "item_id is empty",
    "ts is not a timestamp",
    "session_id is empty",
    "clicked is not a boolean",
    "watch_time_s is not a number",
    "watch_time_s is negative",
    "watch_time_s is positive but clicked is false",
    "slate is not an integer",
    "slate is negative",
    "position is not an integer",
    "position is negative",
    "propensity is not a number",
    "propensity is outside (0, 1]",
    "explore is not a boolean",
)
ITEM_REASONS: Final = (
    "item_id is empty",
    "published_ts is not a timestamp",
    "duration_s is not a number",
    "duration_s is negative",
)


def parse_events(
    frame: pl.LazyFrame,
    ts_formats: Sequence[str] = TS_FORMATS,
    *,
    source: str = "the input",
    fast: bool = False,
) -> pl.LazyFrame:
    """Type the event columns of ``frame``, fill defaults, and give refused rows a reason.

    Absent columns take their defaults: clicked true, watch_time_s 0, the
    nullable ones null; session_id stays null (ingest derives it) unless the
    log has it. A missing watch_time_s is 0; a missing optional value is null.
    """
    frame, schema = _prepare(frame, source)
    frame, v = _values(frame, schema, fast, ts_formats)
    bad = _bad(schema, v)
    clicked = v("clicked").fill_null(True) if "clicked" not in schema else v("clicked")
    watch = v("watch_time_s").fill_null(0.0)
    conditions = [
        v("user_id").is_null(),
        v("item_id").is_null(),
        v("ts").is_null(),
        v("session_id").is_null() if "session_id" in schema else None,
        v("clicked").is_null() if "clicked" in schema else None,
        bad("watch_time_s"),
        watch < 0,
        (watch > 0) & ~clicked,
        bad("slate"),
        v("slate") < 0,
        bad("position"),
        v("position") < 0,
        bad("propensity"),
        (v("propensity") <= 0) | (v("propensity") > 1),
        bad("explore"),
    ]
    typed = {name: v(name) for name in EVENTS_SCHEMA.names()}
    typed["clicked"] = clicked
    typed["watch_time_s"] = watch
    return _finish(frame, schema, EVENTS_SCHEMA, typed, zip(EVENT_REASONS, conditions, strict=True))


def parse_items(
    frame: pl.LazyFrame,
    ts_formats: Sequence[str] = TS_FORMATS,
    *,
    source: str = "the input",
    fast: bool = False,
) -> pl.LazyFrame:
    """Type the item columns of ``frame`` and give refused rows a reason."""
    frame, schema = _prepare(frame, source)
    frame, v = _values(frame, schema, fast, ts_formats)
    bad = _bad(schema, v)
    conditions = [
        v("item_id").is_null(),
        bad("published_ts"),
        bad("duration_s"),
        v("duration_s") < 0,
    ]
    typed = {name: v(name) for name in ITEMS_SCHEMA.names()}
    return _finish(frame, schema, ITEMS_SCHEMA, typed, zip(ITEM_REASONS, conditions, strict=True))


def raw_columns(parsed: pl.LazyFrame, *, keep_prefix: bool = False) -> list[pl.Expr]:
    """Expressions giving back the input columns (original types) of a parsed frame.

    Use them after filtering to a few rows: strings are copied, because a
    polars string can be a view into the buffer of a whole scanned batch, and
    a sink holding a few such rows until its row group fills would keep every
    batch's buffer alive, so memory would grow with the log.
    """
    columns = []
    for name, dtype in parsed.collect_schema().items():
        if name.startswith(RAW_PREFIX):
            expr = pl.concat_str(pl.col(name), pl.lit("")) if dtype == pl.String else pl.col(name)
            columns.append(expr.alias(name if keep_prefix else name.removeprefix(RAW_PREFIX)))
    return columns


def _prepare(frame: pl.LazyFrame, source: str) -> tuple[pl.LazyFrame, pl.Schema]:
    """Check the input types; make an empty string missing (null), as in CSV."""
    schema = frame.collect_schema()
    check_types(schema, source)
    text = [name for name, dtype in schema.items() if dtype in (pl.String, pl.Null)]
    frame = frame.with_columns(
        pl.when(pl.col(name).cast(pl.String).str.len_bytes() > 0)
        .then(pl.col(name).cast(pl.String))
        .alias(name)
        for name in text
    )
    return frame, frame.collect_schema()


def _values(
    frame: pl.LazyFrame, schema: pl.Schema, fast: bool, ts_formats: Sequence[str]
) -> tuple[pl.LazyFrame, Callable[[str], pl.Expr]]:
    """Parse every contract column once; return the frame and ``v(name)``, its parsed value."""
    contract = {**EVENTS_SCHEMA, **ITEMS_SCHEMA}
    frame = frame.with_columns(
        parse_value(name, dtype, fast=fast, ts_formats=ts_formats).alias(f"_v_{name}")
        for name, dtype in schema.items()
        if name in contract
    )

    def v(name: str) -> pl.Expr:
        return pl.col(f"_v_{name}") if name in schema else pl.lit(None, contract[name])

    return frame, v


def _bad(schema: pl.Schema, v: Callable[[str], pl.Expr]) -> Callable[[str], pl.Expr]:
    """Return ``bad(name)``: the row has a value in ``name`` that did not parse."""

    def bad(name: str) -> pl.Expr:
        if name not in schema:
            return pl.lit(False)
        return pl.col(name).is_not_null() & v(name).is_null()

    return bad


def _finish(
    frame: pl.LazyFrame,
    schema: pl.Schema,
    target: pl.Schema,
    typed: dict[str, pl.Expr],
    checks: zip[tuple[str, pl.Expr | None]],
) -> pl.LazyFrame:
    """Select `ROW`, the typed contract columns, `REASON` and the raw input columns."""
    reason: pl.Expr = pl.lit(None, pl.String)
    for text, condition in reversed(list(checks)):
        if condition is not None:
            # fill_null: a comparison with a missing value is no problem.
            reason = pl.when(condition.fill_null(False)).then(pl.lit(text)).otherwise(reason)
    return frame.select(
        pl.col(ROW),
        *(typed[name].cast(dtype).alias(name) for name, dtype in target.items()),
        reason.alias(REASON),
        *(pl.col(name).alias(RAW_PREFIX + name) for name in schema.names() if name != ROW),
    )
