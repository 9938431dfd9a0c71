"""Ordering, de-duplication and sessionisation, with the definitions as properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from recsim_cli.dataset import EVENTS_SCHEMA
from recsim_cli.errors import UserError
from recsim_cli.ingest.sessions import (
    IDENTITY,
    SORT_KEY,
    derive_sessions,
    drop_duplicates,
    format_duration,
    parse_duration,
    sort_events,
)

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
GAP = timedelta(minutes=30)


def _frame(rows: list[dict[str, object]]) -> pl.DataFrame:
    full = [
        {
            "session_id": None,
            "slate": None,
            "position": None,
            "clicked": True,
            "watch_time_s": 0.0,
            "device": None,
            "propensity": None,
            "policy": None,
            "explore": None,
            **row,
        }
        for row in rows
    ]
    return pl.DataFrame(full, schema=EVENTS_SCHEMA)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30m", 1800),
        ("30min", 1800),
        ("45min", 2700),
        ("1h", 3600),
        ("90s", 90),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("2 hours", 7200),
        ("1d", 86400),
        (" 10 S ", 10),
    ],
)
def test_parse_duration(text: str, seconds: int) -> None:
    gap = parse_duration(text)
    assert gap == timedelta(seconds=seconds)
    assert parse_duration(format_duration(gap)) == gap


@pytest.mark.parametrize("text", ["", "30", "m", "30x", "1h-5m", "30m garbage"])
def test_parse_duration_refuses_non_durations(text: str) -> None:
    with pytest.raises(UserError) as info:
        parse_duration(text)
    assert str(info.value) == (
        f"--session-gap {text} is not a duration; write a number and a unit, "
        "e.g. 30m, 1h, 90s or 45min."
    )


def test_parse_duration_refuses_less_than_a_second() -> None:
    with pytest.raises(UserError, match="shorter than 1 second"):
        parse_duration("0s")


def test_a_gap_of_exactly_the_threshold_starts_a_new_session() -> None:
    # >= starts a session: exactly 30 minutes apart is two sessions, a microsecond less is one.
    events = _frame(
        [
            {"user_id": "u", "item_id": "a", "ts": T0},
            {"user_id": "u", "item_id": "b", "ts": T0 + GAP - timedelta(microseconds=1)},
            {"user_id": "u", "item_id": "c", "ts": T0 + 2 * GAP - timedelta(microseconds=1)},
            {"user_id": "v", "item_id": "a", "ts": T0 + 2 * GAP},
        ]
    )
    out, sessions = derive_sessions(sort_events(events), GAP)
    start = int(T0.timestamp())
    second = int((T0 + 2 * GAP).timestamp()) - 1
    assert out["session_id"].to_list() == [
        f"u:{start}",
        f"u:{start}",
        f"u:{second}",
        f"v:{second + 1}",
    ]
    assert sessions == 3


def test_session_ids_do_not_change_when_later_events_arrive() -> None:
    first = _frame([{"user_id": "u", "item_id": "a", "ts": T0}])
    later = _frame([{"user_id": "u", "item_id": "b", "ts": T0 + timedelta(minutes=10)}])
    alone, _ = derive_sessions(sort_events(first), GAP)
    both, _ = derive_sessions(sort_events(pl.concat([first, later])), GAP)
    assert both["session_id"].to_list() == alone["session_id"].to_list() * 2


def test_duplicates_ignore_the_session_id_and_keep_the_smallest() -> None:
    row = {"user_id": "u", "item_id": "a", "ts": T0, "slate": 0, "position": 1}
    events = _frame([{**row, "session_id": "s2"}, {**row, "session_id": "s1"}, row])
    kept, dropped = drop_duplicates(sort_events(events))
    assert dropped == 2
    assert kept["session_id"].to_list() == ["s1"]


# A small world so that ties, duplicates and gaps of every kind are common.
_events = st.lists(
    st.fixed_dictionaries(
        {
            "user_id": st.sampled_from(["a", "b", "c", "a:1", "é"]),
            "item_id": st.sampled_from(["x", "y", "z"]),
            "ts": st.integers(0, 4 * 3600).map(lambda s: T0 + timedelta(seconds=s)),
            "slate": st.one_of(st.none(), st.integers(0, 2)),
            "position": st.one_of(st.none(), st.integers(0, 2)),
            "clicked": st.booleans(),
            "device": st.sampled_from([None, "tv", "mobile"]),
            "session_id": st.sampled_from([None, "s1", "s2"]),
        }
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=100, deadline=None)
@given(_events)
def test_sort_matches_a_full_sort_by_the_key(rows: list[dict[str, object]]) -> None:
    events = _frame(rows)
    assert_frame_equal(sort_events(events), events.sort(list(SORT_KEY), nulls_last=True))


@settings(max_examples=100, deadline=None)
@given(_events)
def test_dedupe_drops_exactly_the_repeats(rows: list[dict[str, object]]) -> None:
    events = _frame(rows)
    kept, dropped = drop_duplicates(sort_events(events))
    assert kept.height + dropped == events.height
    assert kept.height == events.select(IDENTITY).unique().height
    assert kept.select(IDENTITY).is_duplicated().sum() == 0


@settings(max_examples=100, deadline=None)
@given(_events, st.integers(1, 3600))
def test_sessions_split_exactly_at_the_gap(rows: list[dict[str, object]], gap_s: int) -> None:
    gap = timedelta(seconds=gap_s)
    kept, _ = drop_duplicates(sort_events(_frame(rows)))
    out, sessions = derive_sessions(kept, gap)
    assert out.select(pl.struct("user_id", "session_id").n_unique()).item() == sessions
    spans = out.group_by("user_id", "session_id").agg(
        start=pl.col("ts").min(),
        end=pl.col("ts").max(),
        inner_gap=pl.col("ts").sort().diff().max(),
    )
    # Inside a session, consecutive events are less than the gap apart...
    inner = spans["inner_gap"].drop_nulls()
    assert (inner < gap).all()
    # ...and consecutive sessions of a user are at least the gap apart.
    between = spans.sort("user_id", "start").select(
        pl.col("start") - pl.col("end").shift(1).over("user_id")
    )
    assert (between.to_series().drop_nulls() >= gap).all()
    # A session id names its user and the epoch second of its first event.
    expected = spans.select(
        pl.format("{}:{}", "user_id", pl.col("start").dt.epoch("s")) == pl.col("session_id")
    )
    assert expected.to_series().all()
