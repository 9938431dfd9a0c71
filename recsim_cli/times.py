"""UTC timestamps as recsim reads them from flags and writes them in reports.

Every time in recsim is UTC. Text is ISO 8601 ending in ``Z``; a date or a
date-time without a zone given on the command line is taken to be UTC.
"""

from __future__ import annotations

import datetime as dt
from typing import overload

from recsim_cli.errors import ConfigError


def as_utc(moment: dt.datetime) -> dt.datetime:
    """Return ``moment`` in UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


@overload
def format_ts(moment: dt.datetime) -> str: ...
@overload
def format_ts(moment: None) -> None: ...
def format_ts(moment: dt.datetime | None) -> str | None:
    """Return ``moment`` as ISO 8601 UTC text ending in ``Z`` (None stays None)."""
    if moment is None:
        return None
    return as_utc(moment).isoformat().replace("+00:00", "Z")


def parse_moment(text: str, flag: str) -> dt.datetime:
    """Parse ``2026-01-12`` (midnight UTC) or an ISO 8601 date-time (UTC unless it says)."""
    try:
        return as_utc(dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00")))
    except ValueError:
        raise ConfigError(
            f"{flag} {text}: give a date like 2026-01-12 or a UTC time like 2026-01-12T06:00:00Z."
        ) from None
