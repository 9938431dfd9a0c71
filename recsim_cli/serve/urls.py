"""Store URLs: ``sqlite:///path.db`` or ``redis://[[user]:password@]host[:port][/db]``.

Every URL recsim prints goes through `mask_url` first, so a Redis password
never reaches a terminal, a log or a JSON report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal
from urllib.parse import unquote, urlsplit

from recsim_cli.errors import UserError

SCHEMES: Final = ("sqlite", "redis")
DEFAULT_REDIS_PORT: Final = 6379
_SUPPORTED: Final = (
    "give sqlite:///relative/path.db, sqlite:////absolute/path.db or "
    "redis://[:password@]host:port/db"
)
_SCHEME: Final = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)$", re.S)


@dataclass(frozen=True)
class StoreUrl:
    """A parsed store URL: the SQLite file, or the Redis server and database."""

    scheme: Literal["sqlite", "redis"]
    masked: str
    """The URL as it may be printed: the password replaced by ``***``."""
    path: Path | None = None
    host: str = ""
    port: int = DEFAULT_REDIS_PORT
    db: int = 0
    username: str | None = None
    password: str | None = None


def mask_url(url: str) -> str:
    """Return ``url`` with its password replaced by ``***``: ``redis://:***@host:6379/0``.

    Works on any text shaped like a URL, also one recsim refuses, so an error
    about a bad URL never shows its password either.
    """
    match = _SCHEME.match(url)
    if match is None or match["scheme"].lower() == "sqlite":
        return url
    rest = match["rest"]
    # the last '@' ends the credentials: a password may hold '@' or '/', a host never does
    userinfo, at, hostpart = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{match['scheme']}://{user}:***@{hostpart}"


def parse_url(url: str) -> StoreUrl:
    """Parse a store URL; anything else is a one-sentence `UserError` naming the schemes."""
    masked = mask_url(url)
    match = _SCHEME.match(url)
    scheme = match["scheme"].lower() if match else ""
    if scheme == "sqlite":
        return _parse_sqlite(url, masked)
    if scheme == "redis":
        return _parse_redis(url, masked)
    raise UserError(f"Unsupported store URL {masked!r}; {_SUPPORTED}.")


def _parse_sqlite(url: str, masked: str) -> StoreUrl:
    rest = url.split("://", 1)[1]
    # sqlite:///rel.db has an empty host and the path "rel.db"; sqlite:////abs.db the path "/abs.db"
    if not rest.startswith("/") or len(rest) < 2:
        raise UserError(
            f"Store URL {masked!r} names no SQLite file; write sqlite:///relative/path.db "
            "or sqlite:////absolute/path.db."
        )
    path = rest[1:].split("?", 1)[0]
    return StoreUrl(scheme="sqlite", masked=masked, path=Path(unquote(path)))


def _parse_redis(url: str, masked: str) -> StoreUrl:
    # the password may hold '@' or '/'; split the credentials off at the last '@' first
    rest = url.split("://", 1)[1]
    userinfo, at, hostpart = rest.rpartition("@")
    username: str | None = None
    password: str | None = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    try:
        parts = urlsplit(f"redis://{hostpart}")
        host = parts.hostname or ""
        port = parts.port or DEFAULT_REDIS_PORT
        db_text = parts.path.strip("/")
        query = parts.query
    except ValueError:  # a port that is no number
        host, port, db_text, query = "", 0, "", ""
    if not host or port == 0 or (db_text and not db_text.isdigit()) or query:
        raise UserError(
            f"Store URL {masked!r} is not a Redis URL recsim understands; write "
            "redis://[:password@]host:port/db, e.g. redis://localhost:6379/0."
        )
    return StoreUrl(
        scheme="redis",
        masked=masked,
        host=host,
        port=port,
        db=int(db_text or 0),
        username=username,
        password=password,
    )
