"""Order, de-duplicate and sessionise the events of a set of whole users.

These work on one in-memory partition of users at a time (ingest splits users
by a hash of user_id), so memory is bounded by a partition, not by the log.

Definitions (also in docs/data.md):

* Events are ordered by `SORT_KEY`, with nulls last. The order is total up to
  rows identical in every column, so the output does not depend on input order
  or thread scheduling.
* Two events are duplicates when they agree on every column of `IDENTITY`
  (every contract column but session_id), on the normalised values. The first
  in `SORT_KEY` order is kept (for a log with session ids: the smallest one).
* A derived session is a maximal run of a user's events in which consecutive
  events are less than the gap apart: an event starts a new session when it
  is at least ``gap`` after the previous event of its user (``>=``). Its id is
  ``<user_id>:<epoch seconds of its first event>``, which does not change when
  later events are appended.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Final

import numpy as np
import polars as pl

from recsim_cli.errors import UserError

IDENTITY: Final = (
    "user_id",
    "ts",
    "slate",
    "position",
    "item_id",
    "clicked",
    "watch_time_s",
    "device",
    "propensity",
    "policy",
    "explore",
)
SORT_KEY: Final = (*IDENTITY, "session_id")
DEFAULT_GAP: Final = timedelta(minutes=30)
MIN_GAP: Final = timedelta(seconds=1)

_UNITS: Final = {
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hr": 3600,
    "hrs": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)")


def parse_duration(text: str) -> timedelta:
    """Parse a duration like ``30m``, ``1h``, ``90s``, ``45min`` or ``1h30m``; at least 1 s."""
    cleaned = text.strip().lower()
    parts = _PART.findall(cleaned)
    total = 0.0
    if parts and _PART.sub("", cleaned).strip() == "":
        for number, unit in parts:
            if unit not in _UNITS:
                break
            total += float(number) * _UNITS[unit]
        else:
            if total >= MIN_GAP.total_seconds():
                return timedelta(seconds=total)
            raise UserError(f"--session-gap {text} is shorter than 1 second; use e.g. 30m.")
    raise UserError(
        f"--session-gap {text} is not a duration; write a number and a unit, "
        "e.g. 30m, 1h, 90s or 45min."
    )


def format_duration(gap: timedelta) -> str:
    """Format a duration the way `parse_duration` reads it, e.g. ``30m`` or ``1h30m``."""
    seconds = gap.total_seconds()
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        whole = int(seconds // size)
        if whole:
            out += f"{whole}{unit}"
            seconds -= whole * size
    if seconds or not out:
        out += f"{seconds:g}s"
    return out


def sort_events(events: pl.DataFrame) -> pl.DataFrame:
    """Sort events by `SORT_KEY`, nulls last.

    A multi-column sort over strings is slow, so the order is found in two
    steps: the rows are ordered by integer codes of (user_id, ts, slate,
    position), then the rows that tie on all four (rare: duplicates, or two
    items logged in one slot at one instant) are re-sorted by the full
    `SORT_KEY`, which refines each tied block in place.
    """
    events = events.rechunk()  # gathers from one chunk are several times faster
    if events.height < 2:
        return events
    codes = _sort_codes(events)
    order, same = _order(codes)
    if same.any():
        tie = np.zeros(len(order), dtype=bool)
        tie[1:] |= same
        tie[:-1] |= same
        at = np.flatnonzero(tie)
        tied = events[order[at]].with_row_index("_i")
        refined = tied.sort(list(SORT_KEY), nulls_last=True).get_column("_i").to_numpy()
        order[at] = order[at][refined]
    return events[order]


def _sort_codes(events: pl.DataFrame) -> list[tuple[np.ndarray, int]]:
    """Integer codes (and their cardinality) ordering user_id, ts, slate, position."""
    users = events.get_column("user_id").unique().sort()
    user = events.get_column("user_id").cast(pl.Enum(users)).to_physical().to_numpy()
    codes = [(user.astype(np.uint64), users.len())]
    for name in ("ts", "slate", "position"):
        codes.append(_code(events.get_column(name).to_physical()))
    return codes


def _code(column: pl.Series) -> tuple[np.ndarray, int]:
    """Order-preserving non-negative codes of an integer column, nulls last."""
    present = column.drop_nulls()
    if present.is_empty():
        return np.zeros(column.len(), dtype=np.uint64), 1
    low, high = int(present.min()), int(present.max())  # type: ignore[arg-type]
    offset = (column.fill_null(high) - low).to_numpy().astype(np.uint64)
    # Timestamps in whole seconds (or ms) have a common step: divide it out.
    step = int(np.gcd.reduce(offset)) or 1
    cardinality = (high - low) // step + 1
    if cardinality <= 256 * column.len():  # a few bits more than a rank, and no sort
        code = offset // np.uint64(step)
    else:
        # A wide range (microseconds over months): rank among the distinct values.
        distinct, inverse = np.unique(offset, return_inverse=True)
        code, cardinality = inverse.astype(np.uint64), distinct.size
    if column.null_count():
        code[column.is_null().to_numpy()] = cardinality
        cardinality += 1
    return code, cardinality


def _order(codes: list[tuple[np.ndarray, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Return the order of rows by the codes, and which sorted rows equal their predecessor."""
    bits = [max(1, (cardinality - 1).bit_length()) for _, cardinality in codes]
    if sum(bits) <= 64:
        # Pack the codes into one uint64: one single-key sort instead of a lexsort.
        key = np.zeros(len(codes[0][0]), dtype=np.uint64)
        for (code, _), width in zip(codes, bits, strict=True):
            key = (key << np.uint64(width)) | code
        order = np.argsort(key)
        ordered = key[order]
        return order, ordered[1:] == ordered[:-1]
    order = np.lexsort([code for code, _ in reversed(codes)])
    same = np.ones(len(order) - 1, dtype=bool)
    for code, _ in codes:
        ordered = code[order]
        same &= ordered[1:] == ordered[:-1]
    return order, same


def drop_duplicates(events: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Drop duplicate events from events sorted by `sort_events`; return them and the count.

    Duplicates are adjacent after the sort because `IDENTITY` is a prefix of
    `SORT_KEY`; a vectorised comparison with the previous row finds them.
    """
    repeat = pl.all_horizontal(
        pl.col(c).eq_missing(pl.col(c).shift(1)).fill_null(False) for c in IDENTITY
    )
    kept = events.filter(~repeat)
    return kept, events.height - kept.height


def derive_sessions(events: pl.DataFrame, gap: timedelta) -> tuple[pl.DataFrame, int]:
    """Set session_id from an inactivity ``gap`` on sorted events; return them and the count."""
    user = pl.col("user_id")
    ts = pl.col("ts")
    starts = ((user != user.shift(1)) | ((ts - ts.shift(1)) >= gap)).fill_null(True)
    flags = events.select(starts).to_series()
    # Format one id per session, then spread it over the session's events.
    ids = events.filter(flags).select(pl.format("{}:{}", user, ts.dt.epoch("s"))).to_series()
    index = flags.cast(pl.UInt32).cum_sum() - 1
    return events.with_columns(ids.gather(index).alias("session_id")), ids.len()
