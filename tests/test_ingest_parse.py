"""Parsing raw columns: timestamps, booleans, numbers, defaults and every rejection reason."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from recsim_cli.dataset import EVENTS_SCHEMA, ITEMS_SCHEMA
from recsim_cli.errors import SchemaError
from recsim_cli.ingest.parse import (
    EVENT_REASONS,
    ITEM_REASONS,
    REASON,
    parse_events,
    parse_items,
)
from recsim_cli.ingest.values import EPOCH, TS_FORMATS, sniff_ts_formats
from recsim_cli.readers import ROW

T0 = datetime(2026, 1, 5, 8, 15, 3, tzinfo=UTC)


def _events(fast: bool = False, **columns: list[object]) -> pl.DataFrame:
    """Parse a small raw frame; columns default to one valid row each."""
    height = max(len(v) for v in columns.values()) if columns else 1
    base: dict[str, list[object]] = {
        "user_id": ["u1"] * height,
        "item_id": ["v1"] * height,
        "ts": ["2026-01-05T08:15:03Z"] * height,
    }
    base.update(columns)
    raw = pl.DataFrame(base).with_row_index(ROW, offset=1).with_columns(pl.col(ROW).cast(pl.Int64))
    return parse_events(raw.lazy(), fast=fast).collect()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-05T08:15:03Z", T0),
        ("2026-01-05T08:15:03z", T0),
        ("2026-01-05T08:15:03.250Z", T0.replace(microsecond=250_000)),
        ("2026-01-05T10:15:03+02:00", T0),
        ("2026-01-05T10:15:03+0200", T0),
        ("2026-01-05T03:15:03-05", T0),
        ("2026-01-05T08:15:03", T0),  # naive = UTC
        ("2026-01-05 08:15:03", T0),
        ("2026-01-05 10:15:03.000+02:00", T0),
        ("2026-01-05T08:15", T0.replace(second=0)),
        ("2026-01-05", T0.replace(hour=0, minute=0, second=0)),
        ("1767600903", T0),  # epoch seconds
        ("1767600903.25", T0.replace(microsecond=250_000)),
        ("1767600903000", T0),  # epoch milliseconds (>= 1e11)
        ("1767600903250", T0.replace(microsecond=250_000)),
        ("  2026-01-05T08:15:03Z ", T0),  # surrounding whitespace is tolerated
        (" 1767600903 ", T0),
        ("99999999999", datetime(5138, 11, 16, 9, 46, 39, tzinfo=UTC)),  # below 1e11: s
        ("100000000000", datetime(1973, 3, 3, 9, 46, 40, tzinfo=UTC)),  # from 1e11: ms
        ("1e14", None),  # too large to be seconds or milliseconds
        ("2026-13-05T08:15:03Z", None),
        ("yesterday", None),
        ("", None),
    ],
)
def test_timestamp_spellings(text: str, expected: datetime | None) -> None:
    out = _events(ts=[text])
    assert out["ts"].to_list() == [expected]
    assert out[REASON].to_list() == [None if expected else "ts is not a timestamp"]


def test_mixed_timestamp_formats_in_one_column_are_decided_per_row() -> None:
    spellings = ["2026-01-05T08:15:03Z", "1767600903", "1767600903000", "2026-01-05T09:15:03+01:00"]
    assert _events(ts=spellings)["ts"].to_list() == [T0] * 4


def test_typed_timestamp_columns() -> None:
    naive = datetime(2026, 1, 5, 8, 15, 3)
    frames = [
        pl.DataFrame({"ts": [naive]}),
        pl.DataFrame({"ts": [naive]}).with_columns(pl.col("ts").dt.replace_time_zone("UTC")),
        pl.DataFrame({"ts": [T0]}).with_columns(pl.col("ts").dt.convert_time_zone("Asia/Tokyo")),
        pl.DataFrame({"ts": [1767600903]}),
        pl.DataFrame({"ts": [1767600903000]}),
    ]
    for frame in frames:
        raw = frame.with_columns(
            pl.lit("u1").alias("user_id"), pl.lit("v1").alias("item_id"), pl.lit(1).alias(ROW)
        )
        assert parse_events(raw.lazy()).collect()["ts"].to_list() == [T0]


def test_sniff_puts_the_commonest_format_first() -> None:
    assert sniff_ts_formats(pl.Series(["2026-01-05 08:15:03"] * 3))[0] == "%Y-%m-%d %H:%M:%S"
    assert sniff_ts_formats(pl.Series(["1767600903", "x"]))[0] == EPOCH
    assert sorted(sniff_ts_formats(pl.Series(["x"]))) == sorted(TS_FORMATS)


def test_defaults_when_columns_are_absent() -> None:
    out = _events()
    row = out.drop(ROW, REASON).row(0, named=True)
    assert row == {
        "user_id": "u1",
        "item_id": "v1",
        "ts": T0,
        "session_id": None,  # derived later from the gap
        "slate": None,
        "position": None,
        "clicked": True,  # a log of watches
        "watch_time_s": 0.0,
        "device": None,
        "propensity": None,
        "policy": None,
        "explore": None,
        **{c: row[c] for c in row if c.startswith("_raw_")},
    }
    assert out.select(EVENTS_SCHEMA.names()).schema == EVENTS_SCHEMA


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        ("TRUE", True),
        ("True", True),
        ("t", True),
        ("T", True),
        ("1", True),
        ("yes", True),
        ("YES", True),
        (" yes ", True),
        ("false", False),
        ("F", False),
        ("0", False),
        ("no", False),
        ("No", False),
    ],
)
def test_boolean_spellings(text: str, value: bool) -> None:
    out = _events(clicked=[text], explore=[text])
    assert out.select("clicked", "explore", REASON).row(0) == (value, value, None)


def test_numbers() -> None:
    out = _events(
        watch_time_s=["1.5", " 2 ", "", "3e1"],
        clicked=["true"] * 4,
        slate=["0", "3.0", "", " 7 "],
        position=["1", "2", "3", "4"],
        propensity=["0.5", "1", "", "1e-3"],
    )
    assert out["watch_time_s"].to_list() == [1.5, 2.0, 0.0, 30.0]
    assert out["slate"].to_list() == [0, 3, None, 7]
    assert out["propensity"].to_list() == [0.5, 1.0, None, 0.001]
    assert out[REASON].to_list() == [None] * 4


def test_whitespace_only_ids_are_empty_and_ids_are_kept_verbatim() -> None:
    out = _events(user_id=["  ", "\t", " u1 ", "007"])
    assert out[REASON].to_list() == ["user_id is empty", "user_id is empty", None, None]
    assert out["user_id"].to_list()[2:] == [" u1 ", "007"]


# One row per reason; every other value is valid.
REASON_ROWS: dict[str, dict[str, str | None]] = {
    "user_id is empty": {"user_id": None},
    "item_id is empty": {"item_id": ""},
    "ts is not a timestamp": {"ts": "2026-02-30T00:00:00Z"},
    "session_id is empty": {"session_id": " "},
    "clicked is not a boolean": {"clicked": "maybe"},
    "watch_time_s is not a number": {"watch_time_s": "ten"},
    "watch_time_s is negative": {"watch_time_s": "-1"},
    "watch_time_s is positive but clicked is false": {"clicked": "false", "watch_time_s": "5"},
    "slate is not an integer": {"slate": "1.5"},
    "slate is negative": {"slate": "-1"},
    "position is not an integer": {"position": "top"},
    "position is negative": {"position": "-2"},
    "propensity is not a number": {"propensity": "nan"},
    "propensity is outside (0, 1]": {"propensity": "0"},
    "explore is not a boolean": {"explore": "sometimes"},
}
VALID_ROW = {
    "user_id": "u1",
    "item_id": "v1",
    "ts": "2026-01-05T08:15:03Z",
    "session_id": "s1",
    "clicked": "true",
    "watch_time_s": "1",
    "slate": "0",
    "position": "0",
    "propensity": "0.5",
    "explore": "false",
}


def test_reason_table_covers_every_event_reason() -> None:
    assert set(REASON_ROWS) == set(EVENT_REASONS)


@pytest.mark.parametrize("reason", EVENT_REASONS)
def test_each_event_reason(reason: str) -> None:
    row = {**VALID_ROW, **REASON_ROWS[reason]}
    out = _events(**{k: [v] for k, v in row.items()})
    assert out[REASON].to_list() == [reason]
    # The refused row keeps the user's original strings (an empty one is missing).
    raw = {k: out[f"_raw_{k}"][0] for k in row}
    assert raw == {k: v if v != "" else None for k, v in row.items()}


def test_valid_row_has_no_reason() -> None:
    out = _events(**{k: [v] for k, v in VALID_ROW.items()})
    assert out[REASON].to_list() == [None]


def test_first_reason_in_documented_order_wins() -> None:
    out = _events(user_id=[""], ts=["never"], clicked=["maybe"])
    assert out[REASON].to_list() == ["user_id is empty"]


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("item_id", "", "item_id is empty"),
        ("published_ts", "soon", "published_ts is not a timestamp"),
        ("duration_s", "long", "duration_s is not a number"),
        ("duration_s", "-5", "duration_s is negative"),
    ],
)
def test_each_item_reason(column: str, value: str, reason: str) -> None:
    assert reason in ITEM_REASONS
    row = {"item_id": "v1", "published_ts": "2025-12-01", "duration_s": "60", "category": "a"}
    row[column] = value
    raw = pl.DataFrame({k: [v] for k, v in row.items()}).with_columns(pl.lit(1).alias(ROW))
    out = parse_items(raw.lazy()).collect()
    assert out[REASON].to_list() == [reason]


def test_items_defaults_and_types() -> None:
    raw = pl.DataFrame({"item_id": ["v1"], ROW: [1]})
    out = parse_items(raw.lazy()).collect()
    assert out.select(ITEMS_SCHEMA.names()).schema == ITEMS_SCHEMA
    assert out.select(ITEMS_SCHEMA.names()).row(0) == ("v1", None, None, None)


def test_a_column_of_an_impossible_type_is_a_schema_error() -> None:
    raw = pl.DataFrame({"user_id": ["u1"], "item_id": ["v1"], "ts": [[1, 2]], ROW: [1]})
    with pytest.raises(SchemaError) as info:
        parse_events(raw.lazy(), source="events.parquet")
    assert str(info.value) == (
        "events.parquet column 'ts' has type List(Int64), which cannot hold a timestamp; "
        "store it as a string or a number."
    )


# Spellings the fast forms take, and ones only the tolerant forms take.
_SPELLINGS = {
    "user_id": ["u1", " u1", "\tu2", "  ", "007", "\u00a0", "\u2003u3"],
    "ts": [
        "2026-01-05T08:15:03Z",
        "2026-01-05 08:15:03",
        " 2026-01-05T08:15:03Z",
        "1767600903",
        "2026-01-05",
        "bad",
    ],
    "clicked": ["true", "False", "1", " yes", "NO", "maybe"],
    "watch_time_s": ["0", "1.5", " 2", "-1", "x"],
    "slate": ["0", "2.0", " 3", "1.5", "-1"],
    "propensity": ["0.5", " 1", "0", "nan"],
}


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries({k: st.sampled_from(v) for k, v in _SPELLINGS.items()}),
        min_size=1,
        max_size=20,
    )
)
def test_the_fast_pass_agrees_with_the_tolerant_one(rows: list[dict[str, str]]) -> None:
    columns = {k: [r[k] for r in rows] for k in _SPELLINGS}
    fast = _events(fast=True, item_id=["v1"] * len(rows), **columns)
    tolerant = _events(fast=False, item_id=["v1"] * len(rows), **columns)
    taken = fast[REASON].is_null()
    # What the fast pass takes, it types exactly as the tolerant pass does;
    # everything else is re-parsed by the tolerant pass.
    assert_frame_equal(fast.filter(taken), tolerant.filter(taken))
    assert (
        tolerant.filter(~taken)[REASON].null_count() + taken.sum() >= tolerant[REASON].null_count()
    )
