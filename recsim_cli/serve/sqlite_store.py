"""The embedded store: one SQLite file in WAL mode, no server.

Layout (the reader protocol, docs/serving.md)::

    pointer (name TEXT PRIMARY KEY, version TEXT)      -- one row: ('live', <version>)
    versions(version TEXT PRIMARY KEY, model, fingerprint, k, users, created,
             retired_at, expires_at, meta JSON)         -- meta also holds the fallback list
    lists   (version, user_id, items, PRIMARY KEY (version, user_id)) WITHOUT ROWID

``items`` is the compact list: item ids in rank order joined by commas. WAL
mode lets readers read while an export writes; an export writes a version in
a few transactions and switches the pointer in its own.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote

from recsim_cli.errors import InternalError, UserError
from recsim_cli.serve.store import (
    DEFAULT_GRACE_S,
    FORMAT_VERSION,
    NewVersion,
    Store,
    VersionInfo,
    check_lifetimes,
    not_switchable,
    retire,
    revive,
    utc_now,
)
from recsim_cli.serve.urls import StoreUrl
from recsim_cli.times import as_utc

LIVE: Final = "live"
SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS pointer (
    name TEXT PRIMARY KEY,
    version TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    version TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    k INTEGER NOT NULL,
    users INTEGER NOT NULL,
    created TEXT NOT NULL,
    retired_at TEXT,
    expires_at TEXT,
    meta TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS lists (
    version TEXT NOT NULL,
    user_id TEXT NOT NULL,
    items TEXT NOT NULL,
    PRIMARY KEY (version, user_id)
) WITHOUT ROWID;
"""
# one statement, so the pointer and the list come from the same snapshot
_LOOKUP_LIVE: Final = (
    "SELECT p.version, l.items FROM pointer AS p "
    "LEFT JOIN lists AS l ON l.version = p.version AND l.user_id = ? WHERE p.name = 'live'"
)
_LOOKUP_VERSION: Final = "SELECT items FROM lists WHERE version = ? AND user_id = ?"


class SqliteStore(Store):
    """Versions of exported lists in one SQLite file (see the module docstring)."""

    def __init__(self, target: StoreUrl, *, create: bool = False) -> None:
        if target.path is None:
            raise InternalError("a sqlite:// URL without a path reached SqliteStore")
        self.url = target.masked
        self.path = target.path
        self._fallbacks: dict[str, tuple[str, list[str] | None]] = {}
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif not self.path.is_file():
            raise UserError(
                f"{self.url}: {self.path} does not exist; export a model to it first with "
                f"recsim export NAME --to {self.url}."
            )
        mode = "rwc" if create else "rw"
        try:
            self.conn = sqlite3.connect(
                f"file:{quote(str(self.path))}?mode={mode}",
                uri=True,
                timeout=10.0,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise UserError(
                f"Cannot open {self.url} ({exc}); check that the file and its folder are "
                "readable and writable."
            ) from exc
        try:
            self._prepare(create=create)
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise UserError(
                f"{self.url} is not a recsim store ({exc}); point --to/--from at a file "
                "written by recsim export."
            ) from exc
        except BaseException:
            self.conn.close()
            raise

    def _prepare(self, *, create: bool) -> None:
        conn = self.conn
        conn.execute("PRAGMA busy_timeout = 10000")
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > FORMAT_VERSION:
            raise UserError(
                f"{self.url} has store format version {version}, but this recsim reads only "
                f"version {FORMAT_VERSION}; upgrade recsim to read it."
            )
        if create and version == 0:
            conn.executescript(f"BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {FORMAT_VERSION};")
            conn.execute("COMMIT")
            conn.execute("PRAGMA journal_mode = WAL")
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if not {"pointer", "versions", "lists"} <= tables:
            raise UserError(
                f"{self.url} is not a recsim store (it lacks the pointer, versions and lists "
                "tables); point --to/--from at a file written by recsim export."
            )
        # WAL allows one writer next to many readers; NORMAL sync keeps it consistent on crash
        conn.execute("PRAGMA synchronous = NORMAL")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (IMMEDIATE) so it never fails half-way."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # -- versions --------------------------------------------------------------------

    def live_version(self) -> str | None:
        row = self.conn.execute("SELECT version FROM pointer WHERE name = ?", (LIVE,)).fetchone()
        return None if row is None else str(row[0])

    def info(self, version: str) -> VersionInfo | None:
        meta = self._meta(version)
        if meta is None:
            return None
        return VersionInfo.from_meta(version, meta, live=self.live_version() == version)

    def versions(self) -> list[VersionInfo]:
        live = self.live_version()
        rows = self.conn.execute("SELECT version, meta FROM versions ORDER BY version").fetchall()
        return [VersionInfo.from_meta(v, json.loads(m), live=v == live) for v, m in rows]

    def _meta(self, version: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT meta FROM versions WHERE version = ?", (version,)
        ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def _set_meta(self, conn: sqlite3.Connection, info: VersionInfo, meta: dict[str, Any]) -> None:
        merged = {**meta, **info.meta()}
        conn.execute(
            "UPDATE versions SET retired_at = ?, expires_at = ?, meta = ? WHERE version = ?",
            (info.retired_at, info.expires_at, _dumps(merged), info.version),
        )

    def switch(
        self,
        version: str,
        *,
        grace_s: float = DEFAULT_GRACE_S,
        ttl_s: float | None = None,
        now: datetime | None = None,
    ) -> str | None:
        check_lifetimes(grace_s, ttl_s)
        moment = utc_now() if now is None else as_utc(now)
        with self._transaction() as conn:
            meta = self._meta(version)
            if meta is None:
                raise not_switchable(self.url, version, "there is no such version")
            target = VersionInfo.from_meta(version, meta, live=False)
            if not target.complete or target.deleting:
                raise not_switchable(self.url, version, "it is not complete")
            previous = self.live_version()
            if previous == version:
                return previous
            conn.execute(
                "INSERT INTO pointer (name, version) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET version = excluded.version",
                (LIVE, version),
            )
            self._set_meta(conn, revive(target), meta)
            old_meta = None if previous is None else self._meta(previous)
            if previous is not None and old_meta is not None:
                old = VersionInfo.from_meta(previous, old_meta, live=False)
                self._set_meta(conn, retire(old, moment, grace_s=grace_s, ttl_s=ttl_s), old_meta)
        return previous

    def delete(self, version: str) -> None:
        with self._transaction() as conn:
            if self.live_version() == version:
                raise UserError(
                    f"Version {version} is live in {self.url}; switch to another version "
                    "before deleting it."
                )
            meta = self._meta(version)
            if meta is None:
                return
            # marked first, so a rollback cannot pick a version that is half deleted
            conn.execute(
                "UPDATE versions SET meta = ? WHERE version = ?",
                (_dumps({**meta, "deleting": True, "complete": False}), version),
            )
        while True:
            with self._transaction() as conn:
                cursor = conn.execute(
                    "DELETE FROM lists WHERE version = ? AND user_id IN "
                    "(SELECT user_id FROM lists WHERE version = ? LIMIT ?)",
                    (version, version, self.delete_batch),
                )
            if cursor.rowcount == 0:
                break
        with self._transaction() as conn:
            conn.execute("DELETE FROM versions WHERE version = ?", (version,))

    # -- writing ---------------------------------------------------------------------

    def begin(self, new: NewVersion) -> None:
        info = new.info()
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO versions (version, model, fingerprint, k, users, created, meta) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    info.version,
                    info.model,
                    info.fingerprint,
                    info.k,
                    info.users,
                    info.created,
                    _dumps({**new.extra, **info.meta()}),
                ),
            )

    def put_lists(self, version: str, pairs: Sequence[tuple[str, str]]) -> None:
        with self._transaction() as conn:
            conn.executemany(
                "INSERT INTO lists (version, user_id, items) VALUES (?, ?, ?)",
                ((version, user, items) for user, items in pairs),
            )

    def finish(self, version: str, fallback: Sequence[str]) -> None:
        with self._transaction() as conn:
            meta = self._meta(version)
            if meta is None:
                raise InternalError(f"version {version} vanished while it was written")
            meta.update(complete=True, fallback=list(fallback))
            conn.execute("UPDATE versions SET meta = ? WHERE version = ?", (_dumps(meta), version))

    # -- reading ---------------------------------------------------------------------

    def lookup(self, user_id: str, version: str | None = None) -> tuple[str | None, str | None]:
        if version is None:
            row = self.conn.execute(_LOOKUP_LIVE, (user_id,)).fetchone()
            return (None, None) if row is None else (row[0], row[1])
        row = self.conn.execute(_LOOKUP_VERSION, (version, user_id)).fetchone()
        return version, None if row is None else row[0]

    def fallback(self, version: str) -> list[str] | None:
        row = self.conn.execute(
            "SELECT meta FROM versions WHERE version = ?", (version,)
        ).fetchone()
        if row is None:
            return None
        # the meta changes only when the version is retired or deleted: parse it once per change
        raw = str(row[0])
        cached = self._fallbacks.get(version)
        if cached is None or cached[0] != raw:
            meta = json.loads(raw)
            items = None if meta.get("deleting") else [str(i) for i in meta.get("fallback", [])]
            cached = (raw, items)
            self._fallbacks[version] = cached
        return None if cached[1] is None else list(cached[1])

    def lists(self, version: str) -> Iterator[tuple[str, str]]:
        cursor = self.conn.execute(
            "SELECT user_id, items FROM lists WHERE version = ? ORDER BY user_id", (version,)
        )
        for user, items in cursor:
            yield str(user), str(items)

    def user_ids(self, version: str) -> list[str]:
        cursor = self.conn.execute(
            "SELECT user_id FROM lists WHERE version = ? ORDER BY user_id", (version,)
        )
        return [str(row[0]) for row in cursor]

    def close(self) -> None:
        self.conn.close()


def _dumps(meta: dict[str, Any]) -> str:
    return json.dumps(meta, sort_keys=True, separators=(",", ":"))
