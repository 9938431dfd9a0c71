"""Store URLs: what parses, what is refused, and that a password is never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsim_cli.errors import UserError
from recsim_cli.serve.urls import mask_url, parse_url


def test_sqlite_relative_and_absolute_paths() -> None:
    relative = parse_url("sqlite:///out/recs.db")
    assert (relative.scheme, relative.path) == ("sqlite", Path("out/recs.db"))
    absolute = parse_url("sqlite:////srv/data/recs.db")
    assert absolute.path == Path("/srv/data/recs.db")
    assert absolute.masked == "sqlite:////srv/data/recs.db"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://localhost", ("localhost", 6379, 0, None, None)),
        ("redis://cache.internal:6380/3", ("cache.internal", 6380, 3, None, None)),
        ("redis://:pw@127.0.0.1:6379/0", ("127.0.0.1", 6379, 0, None, "pw")),
        ("redis://alice:p%40ss@host:7000/1", ("host", 7000, 1, "alice", "p@ss")),
        ("redis://alice:a@b/c@host:7000/2", ("host", 7000, 2, "alice", "a@b/c")),
    ],
)
def test_redis_urls(url: str, expected: tuple[object, ...]) -> None:
    parsed = parse_url(url)
    assert (parsed.host, parsed.port, parsed.db, parsed.username, parsed.password) == expected
    assert parsed.password is None or parsed.password not in parsed.masked


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:secret@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://bob:secret@host:6379/0", "redis://bob:***@host:6379/0"),
        ("redis://:se@cr/et@host/0", "redis://:***@host/0"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("postgres://u:secret@db/app", "postgres://u:***@db/app"),
        ("sqlite:///a@b:c.db", "sqlite:///a@b:c.db"),
        ("recs.db", "recs.db"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


@pytest.mark.parametrize(
    "url", ["recs.db", "postgres://u:secret@db/app", "http://host/x", "sqlite:recs.db", ""]
)
def test_unsupported_scheme_names_the_supported_ones(url: str) -> None:
    with pytest.raises(UserError) as info:
        parse_url(url)
    message = str(info.value)
    assert message.startswith(f"Unsupported store URL {mask_url(url)!r}; give sqlite:///")
    assert "redis://[:password@]host:port/db" in message
    assert "secret" not in message


@pytest.mark.parametrize(
    "url", ["sqlite://", "sqlite:///", "redis://", "redis://:pw@host:port/0", "redis://h/x"]
)
def test_malformed_urls_are_user_errors(url: str) -> None:
    with pytest.raises(UserError) as info:
        parse_url(url)
    assert "pw" not in str(info.value)
