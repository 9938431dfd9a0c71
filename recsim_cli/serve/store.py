"""The serving store: versioned key spaces of top-K lists and a pointer to the live one.

An export writes a whole new *version* (every user's list, the fallback list
for unknown users, and a meta record), then switches the pointer to it in one
atomic step: a reader sees the old version or the new one, never a mix. The
version that stops being live is *retired*: it stays readable for a grace
period (readers that read the pointer just before the switch finish on it),
then `Store.gc` deletes it in batches. An optional ttl also lets the backend
expire a retired version on its own (Redis EXPIRE), never the live one.

Two backends implement `Store`: `SqliteStore` (``sqlite:///path.db``, embedded)
and `RedisStore` (``redis://host:port/db``); docs/serving.md gives the layout
of each (the reader protocol). `open_store` picks one from a URL.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Final, Self

from recsim_cli.errors import ConfigError, RecsimError, UserError
from recsim_cli.serve.urls import StoreUrl, parse_url
from recsim_cli.times import as_utc

FORMAT_VERSION: Final = 1
"""Version of the store layout; a reader refuses a newer one."""
DEFAULT_GRACE_S: Final = 3600.0
STALE_WRITE_S: Final = 86_400.0
"""A version that was never live and is this old is left over from a crashed export."""
DELETE_BATCH: Final = 1000
"""Keys (Redis) or rows (SQLite) deleted per round trip or transaction."""
WRITE_BATCH: Final = 10_000
"""Users written per Redis MSET or SQLite transaction."""


@dataclass(frozen=True)
class VersionInfo:
    """One exported version: what it serves, and where it is in its life.

    A version is *complete* once every list is written; it is *live* while the
    pointer names it; *retired* (``retired_at`` set) once the pointer moved on.
    ``delete_after`` is the end of its grace period, ``expires_at`` the end of
    its ttl; `Store.gc` deletes a retired version once either has passed.
    """

    version: str
    model: str
    fingerprint: str
    k: int
    users: int
    created: str
    live: bool
    retired_at: str | None = None
    expires_at: str | None = None
    complete: bool = True
    delete_after: str | None = None
    deleting: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "model": self.model,
            "fingerprint": self.fingerprint,
            "k": self.k,
            "users": self.users,
            "created": self.created,
            "live": self.live,
            "complete": self.complete,
            "retired_at": self.retired_at,
            "delete_after": self.delete_after,
            "expires_at": self.expires_at,
        }

    def meta(self) -> dict[str, Any]:
        """The meta record stored with the version (JSON; ``live`` is the pointer's business)."""
        return {
            "format_version": FORMAT_VERSION,
            "model": self.model,
            "fingerprint": self.fingerprint,
            "k": self.k,
            "users": self.users,
            "created": self.created,
            "complete": self.complete,
            "retired_at": self.retired_at,
            "delete_after": self.delete_after,
            "expires_at": self.expires_at,
            "deleting": self.deleting,
        }

    @classmethod
    def from_meta(cls, version: str, meta: dict[str, Any], *, live: bool) -> VersionInfo:
        """Rebuild a version from its stored meta record."""
        try:
            return cls(
                version=version,
                model=str(meta["model"]),
                fingerprint=str(meta["fingerprint"]),
                k=int(meta["k"]),
                users=int(meta["users"]),
                created=str(meta["created"]),
                live=live,
                retired_at=meta.get("retired_at"),
                expires_at=meta.get("expires_at"),
                complete=bool(meta.get("complete", False)),
                delete_after=meta.get("delete_after"),
                deleting=bool(meta.get("deleting", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(
                f"The meta record of version {version} is damaged ({exc}); export the model again."
            ) from exc

    def expired(self, now: datetime) -> bool:
        """Whether `Store.gc` may delete this version at ``now`` (never while it is live)."""
        if self.live:
            return False
        if self.deleting:
            return True
        if self.retired_at is None:
            # never live: an export still writing or about to switch, or one that crashed
            return parse_time(self.created) + timedelta(seconds=STALE_WRITE_S) <= now
        deadlines = [t for t in (self.delete_after, self.expires_at) if t is not None]
        return any(parse_time(t) <= now for t in deadlines) or not deadlines


@dataclass(frozen=True)
class NewVersion:
    """What an export records about the version it is about to write."""

    version: str
    model: str
    fingerprint: str
    k: int
    users: int
    created: str
    extra: dict[str, Any] = field(default_factory=dict)

    def info(self) -> VersionInfo:
        return VersionInfo(
            version=self.version,
            model=self.model,
            fingerprint=self.fingerprint,
            k=self.k,
            users=self.users,
            created=self.created,
            live=False,
            complete=False,
        )


class Store(ABC):
    """Versions of exported lists in one backend, and the pointer to the live one.

    A store holds one connection. The writing methods (`begin`, `put_lists`,
    `finish`) are what `recsim_cli.serve.export.write_version` calls; `switch`
    and `gc` are also for rollback and clean-up on their own.
    """

    url: str
    """The store's URL with the password masked."""
    delete_batch: int = DELETE_BATCH

    # -- versions --------------------------------------------------------------------

    @abstractmethod
    def live_version(self) -> str | None:
        """The version id the pointer names, or None before the first export."""

    @abstractmethod
    def info(self, version: str) -> VersionInfo | None:
        """One version's record, or None if there is no such version."""

    @abstractmethod
    def versions(self) -> list[VersionInfo]:
        """Every version the store holds, oldest first (version ids sort by time)."""

    def live(self) -> VersionInfo | None:
        """The live version, or None before the first export."""
        version = self.live_version()
        return None if version is None else self.info(version)

    @abstractmethod
    def switch(
        self,
        version: str,
        *,
        grace_s: float = DEFAULT_GRACE_S,
        ttl_s: float | None = None,
        now: datetime | None = None,
    ) -> str | None:
        """Point readers at ``version`` (complete, existing) atomically; return the previous.

        The version that stops being live is retired: kept ``grace_s`` seconds
        for readers still on it, and, with ``ttl_s``, expired by the backend
        that long after ``now``. Switching back to a retired version (a
        rollback) makes it live again and lifts its deadlines.
        """

    def gc(self, now: datetime | None = None) -> int:
        """Delete every version whose grace period or ttl is over; return how many."""
        return len(self.collect(now))

    def collect(self, now: datetime | None = None) -> list[str]:
        """Delete every version whose grace period or ttl is over; return their ids."""
        moment = utc_now() if now is None else as_utc(now)
        deleted = []
        for info in self.versions():
            if info.expired(moment):
                self.delete(info.version)
                deleted.append(info.version)
        return deleted + self._collect_leftovers()

    def _collect_leftovers(self) -> list[str]:
        """Clean up what a backend can leave without a version record (Redis ttl)."""
        return []

    @abstractmethod
    def delete(self, version: str) -> None:
        """Delete a version that is not live, in batches of `delete_batch`."""

    # -- writing ---------------------------------------------------------------------

    @abstractmethod
    def begin(self, new: NewVersion) -> None:
        """Record a new, incomplete version."""

    @abstractmethod
    def put_lists(self, version: str, pairs: Sequence[tuple[str, str]]) -> None:
        """Write one batch of (user_id, compact list) of an incomplete version."""

    @abstractmethod
    def finish(self, version: str, fallback: Sequence[str]) -> None:
        """Store the fallback list and mark the version complete (still not live)."""

    # -- reading ---------------------------------------------------------------------

    @abstractmethod
    def lookup(self, user_id: str, version: str | None = None) -> tuple[str | None, str | None]:
        """Read the pointer (unless ``version`` is given), then the user's key.

        Returns (version, compact list), the list None when the user has none;
        (None, None) when no version is live.
        """

    @abstractmethod
    def fallback(self, version: str) -> list[str] | None:
        """The fallback list of ``version``, or None if the version is gone."""

    @abstractmethod
    def lists(self, version: str) -> Iterator[tuple[str, str]]:
        """Every (user_id, compact list) of a version, in no particular order."""

    def user_ids(self, version: str) -> list[str]:
        """Every user with a list in ``version``, sorted."""
        return sorted(user for user, _ in self.lists(version))

    # -- lifetime --------------------------------------------------------------------

    @abstractmethod
    def close(self) -> None:
        """Close the connection."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_store(url: str | StoreUrl, *, create: bool = False) -> Store:
    """Connect to the store a URL names.

    ``create``: for SQLite, create the file (and its folder) if missing, as an
    export does; otherwise a missing file is a `UserError`. A Redis server is
    contacted at once, so an unreachable one fails here in one sentence.
    """
    target = parse_url(url) if isinstance(url, str) else url
    if target.scheme == "sqlite":
        from recsim_cli.serve.sqlite_store import SqliteStore

        return SqliteStore(target, create=create)
    from recsim_cli.serve.redis_store import RedisStore

    return RedisStore(target)


@contextmanager
def backend_errors(url: str) -> Iterator[None]:
    """Turn a failure of a store's connection (SQLite or Redis) into a one-sentence `UserError`."""
    try:
        yield
    except RecsimError:
        raise
    except Exception as exc:
        error = backend_error(exc, url)
        if error is None:
            raise
        raise error from exc


def backend_error(exc: Exception, url: str) -> UserError | None:
    """The one-sentence error for a failure of a store's backend, or None for any other error."""
    if isinstance(exc, sqlite3.Error):
        return UserError(
            f"{url} could not be read or written ({exc}); check the file, the permissions of "
            "its folder and the free disk space."
        )
    if sys.modules.get("redis") is not None:  # only a Redis store has loaded it
        from recsim_cli.serve.redis_store import redis_error

        return redis_error(exc, url)
    return None


def no_live_version(url: str) -> UserError:
    """The error of reading a store no export has made live yet."""
    return UserError(
        f"No version is live in {url}; export a model first with recsim export NAME --to {url}."
    )


def new_version_id(now: datetime) -> str:
    """A unique version id that sorts by creation time: ``20260115T120000.123456Z-3f9a1c0b``."""
    return as_utc(now).strftime("%Y%m%dT%H%M%S.%fZ") + "-" + secrets.token_hex(4)


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    """ISO 8601 UTC to the microsecond, ending in ``Z``."""
    return as_utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


def check_lifetimes(grace_s: float, ttl_s: float | None) -> None:
    """Refuse a negative grace period, or a ttl that would end a grace period early."""
    if grace_s < 0:
        raise ConfigError(f"--grace must be 0 or more seconds; got {grace_s:g}.")
    if ttl_s is not None and ttl_s < max(grace_s, 1.0):
        raise ConfigError(
            f"--ttl of {ttl_s:g} s is shorter than the grace period of {grace_s:g} s (or 1 s); "
            "a reader still on the retired version would lose it, so give a --ttl of at least "
            "the --grace."
        )


def retire(info: VersionInfo, now: datetime, *, grace_s: float, ttl_s: float | None) -> VersionInfo:
    """``info`` as it is once the pointer has moved off it at ``now``."""
    return replace(
        info,
        live=False,
        retired_at=format_time(now),
        delete_after=format_time(now + timedelta(seconds=grace_s)),
        expires_at=None if ttl_s is None else format_time(now + timedelta(seconds=ttl_s)),
    )


def revive(info: VersionInfo) -> VersionInfo:
    """``info`` as it is once it is live again (a rollback): no deadlines."""
    return replace(info, live=True, retired_at=None, delete_after=None, expires_at=None)


def dumps_meta(info: VersionInfo, **extra: Any) -> str:
    return json.dumps({**info.meta(), **extra}, sort_keys=True, separators=(",", ":"))


def not_switchable(url: str, version: str, reason: str) -> UserError:
    return UserError(
        f"Cannot make version {version} live in {url}: {reason}; pick a complete version "
        "that has not been deleted."
    )
