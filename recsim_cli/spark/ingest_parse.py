"""The rules of `recsim_cli.ingest.values` and `parse` as Spark SQL expressions.

`parse_events` gives a Spark frame the same typed columns, the same first
`REASON` per refused row and the same ``_raw_<column>`` values as the polars
`parse.parse_events` (its tolerant form), with no Python UDF. The column's
polars type (all strings for text; the stored type for Parquet) decides the
rule, as in polars. How the polars rules are spelled here:

* Whitespace is Unicode ``White_Space`` (Rust's ``char::is_whitespace``),
  so "trimmed" means the same on both engines.
* A number is text matching ``[+-]?(d+.?d*|.d+)([eE][+-]?d+)?`` (what the
  polars cast reads, bar inf and NaN, which are refused as not finite anyway),
  read by Java's correctly rounded ``parseDouble``.
* A timestamp is text matched by one regular expression that accepts exactly
  what polars (chrono) accepts for `TS_FORMATS`: 4-digit years (or signed
  years of 4 to 6 digits), 1-2 digit month, day, hour, minute and second, a
  second of 60 (one second later), any fraction (truncated to microseconds),
  ``Z``/``z``/``+hh``/``+hhmm``/``+hh:mm`` offsets under 24 hours, optional
  whitespace before the offset, ``T`` or any whitespace (even none) between
  date and time, and no offset after a space-separated ``hh:mm``. Days since
  the epoch are computed with integer arithmetic (any proleptic Gregorian
  date), epoch numbers rounded half to even (``rint``) as polars rounds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import polars as pl
from pyspark.sql import Column
from pyspark.sql import functions as F

from recsim_cli.dataset import EVENTS_SCHEMA
from recsim_cli.ingest.parse import EVENT_REASONS, RAW_PREFIX, REASON
from recsim_cli.ingest.values import _FALSE, _TRUE, EPOCH_MAX, EPOCH_MS_FROM, KINDS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

SPARK_TYPES: Final = {
    pl.String(): "string",
    pl.Int64(): "bigint",
    pl.Float64(): "double",
    pl.Boolean(): "boolean",
    pl.Datetime("us", "UTC"): "timestamp",
}
"""Spark SQL type of each contract column type."""

_WS: Final = r"\p{IsWhite_Space}"
_TRIM: Final = rf"^{_WS}+|{_WS}+$"
_NUMBER: Final = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_ISO: Final = (
    r"^(\d{4}|[+-]\d{4,6}+)-(\d{1,2}+)-(\d{1,2}+)"
    rf"(?:(T|{_WS}*+)(\d{{1,2}}+):(\d{{1,2}}+)(?::(\d{{1,2}}+)(?:\.(\d++))?)?"
    rf"({_WS}*+(?:[Zz]|([+-])(\d{{2}})(?::?+(\d{{2}}))?))?)?$"
)
_ISO_GROUPS: Final = 12
_MICROS: Final = 1_000_000
_MAX_EXACT_INT: Final = 2.0**53


def parse_events(frame: DataFrame, schema: pl.Schema, keep: list[str]) -> DataFrame:
    """Type the event columns of ``frame`` and give refused rows a reason (see module doc).

    ``frame`` holds the ``keep`` columns and the contract columns named in
    ``schema`` (their polars types); call `check_types` first. Returns
    ``keep``, the typed `EVENTS_SCHEMA` columns, `REASON` and ``_raw_<name>``.
    """
    text = {name for name, dtype in schema.items() if dtype in (pl.String, pl.Null)}
    prepared = frame.select(
        *keep,
        *(
            (F.when(F.length(name) > 0, F.col(name)) if name in text else F.col(name)).alias(name)
            for name in schema.names()
        ),
    )
    parsed = prepared.select(
        *keep,
        *(F.col(name) for name in schema.names()),
        *(parse_value(name, dtype).alias(f"_v_{name}") for name, dtype in schema.items()),
    )

    def v(name: str) -> Column:
        if name in schema:
            return F.col(f"_v_{name}")
        return F.lit(None).cast(SPARK_TYPES[EVENTS_SCHEMA[name]])

    def bad(name: str) -> Column:
        if name not in schema:
            return F.lit(False)
        return F.col(name).isNotNull() & v(name).isNull()

    clicked = v("clicked") if "clicked" in schema else F.lit(True)
    watch = F.coalesce(v("watch_time_s"), F.lit(0.0))
    conditions = [
        v("user_id").isNull(),
        v("item_id").isNull(),
        v("ts").isNull(),
        v("session_id").isNull() if "session_id" in schema else None,
        v("clicked").isNull() if "clicked" in schema else None,
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
    reason: Column = F.lit(None).cast("string")
    for message, condition in reversed(list(zip(EVENT_REASONS, conditions, strict=True))):
        if condition is not None:
            reason = F.when(F.coalesce(condition, F.lit(False)), F.lit(message)).otherwise(reason)
    typed = {name: v(name) for name in EVENTS_SCHEMA.names()}
    typed["clicked"] = clicked
    typed["watch_time_s"] = watch
    return parsed.select(
        *keep,
        *(
            typed[name].cast(SPARK_TYPES[dtype]).alias(name)
            for name, dtype in EVENTS_SCHEMA.items()
        ),
        reason.alias(REASON),
        *(raw_text(name, dtype).alias(RAW_PREFIX + name) for name, dtype in schema.items()),
    )


def parse_value(name: str, dtype: pl.DataType) -> Column:
    """The parsed value of input column ``name`` of polars type ``dtype`` (null if it fails)."""
    parser = {
        "an id": _id,
        "text": _id,
        "a boolean": _bool,
        "a number": _float,
        "an integer": _int,
        "a timestamp": _timestamp,
    }[KINDS[name]]
    return parser(F.col(name), dtype)


def _id(col: Column, dtype: pl.DataType) -> Column:
    """An id or a text: kept exactly as given; null when only whitespace."""
    if dtype != pl.String:
        return col.cast("string")
    return F.when(F.length(trim(col)) > 0, col)


def _bool(col: Column, dtype: pl.DataType) -> Column:
    """A boolean from true/false/t/f/yes/no/1/0 in any case, or a bool or 0/1 column."""
    if dtype == pl.Boolean:
        return col
    if dtype.is_integer():
        return F.when(col == 1, True).when(col == 0, False)
    word = F.lower(trim(col))
    return F.when(word.isin(*_TRUE), True).when(word.isin(*_FALSE), False)


def _float(col: Column, dtype: pl.DataType) -> Column:
    """A finite float; -0.0 becomes 0.0 so equal values have equal bytes."""
    value = _number(col, dtype)
    return F.when(_finite(value), F.when(value == 0, F.lit(0.0)).otherwise(value))


def _int(col: Column, dtype: pl.DataType) -> Column:
    """An integer; a number equal to an integer (``3.0``) counts, ``2.5`` does not."""
    if dtype.is_integer():
        return col.cast("bigint")
    value = _number(col, dtype)
    exact = _finite(value) & (value == F.floor(value)) & (F.abs(value) < _MAX_EXACT_INT)
    return F.when(exact, value.cast("bigint"))


def trim(col: Column) -> Column:
    """``col`` without leading and trailing Unicode whitespace (polars' ``strip_chars``)."""
    return F.regexp_replace(col, _TRIM, "")


def raw_text(name: str, dtype: pl.DataType) -> Column:
    """An input value as text, as polars casts it to a string for the rejected rows."""
    col = F.col(name)
    if isinstance(dtype, pl.Datetime):
        micros = "yyyy-MM-dd HH:mm:ss.SSSSSS"
        if dtype.time_zone is not None:
            return F.date_format(col, micros + "xxx")
        return F.date_format(col.cast("timestamp"), micros)
    return col.cast("string")


def _finite(value: Column) -> Column:
    return value.isNotNull() & ~F.isnan(value) & (F.abs(value) != float("inf"))


def _number(col: Column, dtype: pl.DataType) -> Column:
    if dtype.is_numeric() or dtype == pl.Null:
        return col.cast("double")
    text = trim(col)
    return F.when(text.rlike(_NUMBER), text.cast("double"))


def _timestamp(col: Column, dtype: pl.DataType) -> Column:
    """A UTC timestamp from a datetime, a date, epoch or ISO 8601 text (see the module doc)."""
    if isinstance(dtype, pl.Datetime) or dtype == pl.Date:
        return col.cast("timestamp")
    if dtype.is_numeric() or dtype == pl.Null:
        return _epoch(col.cast("double"))
    text = trim(col)
    return F.coalesce(_iso(text), _epoch(_number(text, pl.String())))


def _epoch(number: Column) -> Column:
    """Epoch seconds, or milliseconds when the magnitude is at least `EPOCH_MS_FROM`."""
    size = F.abs(number)
    micros = F.when(size < EPOCH_MS_FROM, number * 1e6).when(size < EPOCH_MAX, number * 1e3)
    return F.timestamp_micros(F.rint(micros).cast("bigint"))


def _iso(text: Column) -> Column:
    """The instant an ISO 8601 text denotes, or null (see the module doc for what is read)."""
    template = "|".join(f"${i}" for i in range(1, _ISO_GROUPS + 1))
    matched = text.rlike(_ISO)
    # Only a matching text is split, so no cast below ever sees other text.
    parts = F.when(matched, F.split(F.regexp_replace(text, _ISO, template), r"\|"))

    def part(index: int) -> Column:
        return parts.getItem(index - 1)

    def number(index: int) -> Column:
        return F.when(part(index) != "", part(index).cast("bigint"))

    year, month, day = number(1), number(2), number(3)
    hour, minute = F.coalesce(number(5), F.lit(0)), F.coalesce(number(6), F.lit(0))
    second = F.coalesce(number(7), F.lit(0))
    fraction = F.when(part(8) != "", F.rpad(F.substring(part(8), 1, 6), 6, "0").cast("bigint"))
    sign = F.when(part(10) == "-", F.lit(-1)).otherwise(F.lit(1))
    offset = sign * (
        F.coalesce(number(11), F.lit(0)) * 3600 + F.coalesce(number(12), F.lit(0)) * 60
    )
    leap = ((F.pmod(year, F.lit(4)) == 0) & (F.pmod(year, F.lit(100)) != 0)) | (
        F.pmod(year, F.lit(400)) == 0
    )
    month_days = (
        F.when(month == 2, F.when(leap, 29).otherwise(28))
        .when(month.isin(4, 6, 9, 11), 30)
        .otherwise(31)
    )
    spaced_minutes_with_zone = (
        (part(4) != "T") & (part(5) != "") & (part(7) == "") & (part(9) != "")
    )
    valid = (
        matched
        & month.between(1, 12)
        & day.between(1, month_days)
        & (hour <= 23)
        & (minute <= 59)
        & (second <= 60)
        & (F.coalesce(number(11), F.lit(0)) <= 23)
        & (F.coalesce(number(12), F.lit(0)) <= 59)
        & ~spaced_minutes_with_zone
    )
    seconds = _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second
    micros = (seconds - offset) * _MICROS + F.coalesce(fraction, F.lit(0))
    return F.when(valid, F.timestamp_micros(micros))


def _days_from_civil(year: Column, month: Column, day: Column) -> Column:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y = year - (month <= 2).cast("bigint")
    era = F.floor(y / 400)
    yoe = y - era * 400
    shifted = F.when(month > 2, month - 3).otherwise(month + 9)
    doy = F.floor((153 * shifted + 2) / 5) + day - 1
    doe = yoe * 365 + F.floor(yoe / 4) - F.floor(yoe / 100) + doy
    return era * 146097 + doe - 719468
