"""Where a dataset or a log lives: a local path, or a URL (``hdfs://``, ``s3a://``...) for Spark."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

_URL: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(location: Path | str) -> bool:
    """Whether ``location`` is a URL with a scheme (``s3a://...``), not a local path."""
    return isinstance(location, str) and _URL.match(location) is not None


def as_location(value: Path | str) -> Path | str:
    """A ``--data`` value: a URL stays a string, anything else is a local path."""
    return value if is_url(value) else Path(value)
