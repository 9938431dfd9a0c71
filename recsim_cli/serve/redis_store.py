"""The Redis store: one key per user and version, a pointer key to the live version.

Layout (the reader protocol, docs/serving.md), with the prefix ``recsim``::

    recsim:live                      -> version id
    recsim:v:{version}:u:{user_id}   -> compact list: item ids in rank order, comma-separated
    recsim:v:{version}:fallback      -> compact list for users without a key
    recsim:v:{version}:meta          -> JSON: model, fingerprint, k, users, created, complete, ...
    recsim:versions                  -> set of version ids (for listing and clean-up)
    recsim:deleting                  -> set of version ids whose keys are being unlinked

The pointer moves in a MULTI/EXEC transaction that WATCHes it; deletion marks
a version (drops its meta) in a transaction, then UNLINKs its keys in batches.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from recsim_cli.errors import InternalError, UserError
from recsim_cli.serve.store import (
    DEFAULT_GRACE_S,
    NewVersion,
    Store,
    VersionInfo,
    check_lifetimes,
    dumps_meta,
    not_switchable,
    retire,
    revive,
    utc_now,
)
from recsim_cli.serve.urls import StoreUrl
from recsim_cli.times import as_utc

if TYPE_CHECKING:
    import redis
    from redis.client import Pipeline

PREFIX: Final = "recsim"
CONNECT_TIMEOUT_S: Final = 2.0
COMMAND_TIMEOUT_S: Final = 30.0
_GLOB: Final = re.compile(r"([*?\[\]\\])")


def connect(target: StoreUrl) -> redis.Redis:
    """A client holding one connection to the server, checked with PING.

    A missing ``redis`` package, an unreachable server or refused credentials
    are one-sentence `UserError`s naming the masked URL.
    """
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError as exc:
        raise UserError(
            f"{target.masked} needs the redis package; install it with pip install 'recsim[redis]'."
        ) from exc
    client: redis.Redis | None = None
    try:
        # a single-connection client connects in its constructor
        client = redis.Redis(
            host=target.host,
            port=target.port,
            db=target.db,
            username=target.username,
            password=target.password,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            socket_timeout=COMMAND_TIMEOUT_S,
            decode_responses=True,
            single_connection_client=True,
            retry=Retry(NoBackoff(), 0),
        )
        client.ping()
        # connected: from now on a dropped connection (a server restart, an idle timeout)
        # is reconnected once before a command fails
        client.set_retry(Retry(NoBackoff(), 1))
    except Exception as exc:
        if client is not None:
            client.close()
        error = redis_error(exc, target.masked)
        if error is None:
            raise
        raise error from exc
    return client


def redis_error(exc: BaseException, url: str) -> UserError | None:
    """The one-sentence error for a failure talking to Redis, or None if it is no such failure."""
    import redis.exceptions as rex

    if isinstance(exc, rex.AuthenticationError) or (
        isinstance(exc, rex.ResponseError) and str(exc).startswith(("NOAUTH", "WRONGPASS"))
    ):
        return UserError(
            f"Redis at {url} refused the credentials; check the user name and password in the URL."
        )
    if isinstance(exc, rex.TimeoutError):
        return UserError(
            f"Redis at {url} did not answer in time; check that the server is running, "
            "reachable from here and not overloaded."
        )
    if isinstance(exc, rex.ConnectionError):
        return UserError(
            f"Cannot connect to Redis at {url}; check that redis-server is running there and "
            "that the host and port are right."
        )
    if isinstance(exc, rex.ResponseError):
        reason = str(exc).split("\n", 1)[0].rstrip(".")
        return UserError(f"Redis at {url} refused a command ({reason}); check the URL's database.")
    return None


class RedisStore(Store):
    """Versions of exported lists in one Redis database (see the module docstring)."""

    def __init__(self, target: StoreUrl, *, prefix: str = PREFIX) -> None:
        self.url = target.masked
        self.prefix = prefix
        self.client = connect(target)
        self.live_key = f"{prefix}:live"
        self.versions_key = f"{prefix}:versions"
        self.deleting_key = f"{prefix}:deleting"

    # -- keys ------------------------------------------------------------------------

    def _space(self, version: str) -> str:
        return f"{self.prefix}:v:{version}:"

    def meta_key(self, version: str) -> str:
        return f"{self.prefix}:v:{version}:meta"

    def fallback_key(self, version: str) -> str:
        return f"{self.prefix}:v:{version}:fallback"

    def user_key(self, version: str, user_id: str) -> str:
        return f"{self.prefix}:v:{version}:u:{user_id}"

    def _keys(self, pattern_tail: str, version: str) -> Iterator[str]:
        pattern = _GLOB.sub(r"\\\1", self._space(version)) + pattern_tail
        yield from self.client.scan_iter(match=pattern, count=self.delete_batch)

    def _batches(self, version: str, pattern_tail: str = "*") -> Iterator[list[str]]:
        batch: list[str] = []
        for key in self._keys(pattern_tail, version):
            batch.append(key)
            if len(batch) >= self.delete_batch:
                yield batch
                batch = []
        if batch:
            yield batch

    # -- versions --------------------------------------------------------------------

    def live_version(self) -> str | None:
        value = self.client.get(self.live_key)
        return None if value is None else str(value)

    def info(self, version: str) -> VersionInfo | None:
        raw = self.client.get(self.meta_key(version))
        if raw is None:
            return None
        return VersionInfo.from_meta(version, json.loads(raw), live=self.live_version() == version)

    def versions(self) -> list[VersionInfo]:
        live = self.live_version()
        members = sorted(str(v) for v in self.client.smembers(self.versions_key))
        if not members:
            return []
        metas = self.client.mget([self.meta_key(v) for v in members])
        return [
            VersionInfo.from_meta(v, json.loads(raw), live=v == live)
            for v, raw in zip(members, metas, strict=True)
            if raw is not None  # its ttl has run out; `gc` drops it from the set
        ]

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
        outcome: dict[str, Any] = {}

        def move(pipe: Pipeline) -> None:
            raw = pipe.get(self.meta_key(version))
            if raw is None:
                raise not_switchable(self.url, version, "there is no such version")
            meta = json.loads(raw)
            target = VersionInfo.from_meta(version, meta, live=False)
            if not target.complete or target.deleting:
                raise not_switchable(self.url, version, "it is not complete")
            previous = _str(pipe.get(self.live_key))
            outcome.update(previous=previous, revived=target.expires_at is not None)
            if previous == version:
                pipe.multi()
                return
            old_raw = None
            if previous is not None:
                pipe.watch(self.meta_key(previous))  # type: ignore[no-untyped-call]
                old_raw = pipe.get(self.meta_key(previous))
            pipe.multi()
            pipe.set(self.live_key, version)
            pipe.set(self.meta_key(version), dumps_meta(revive(target), **_extra(meta)))
            if previous is not None and old_raw is not None:
                old_meta = json.loads(old_raw)
                old = VersionInfo.from_meta(previous, old_meta, live=False)
                retired = retire(old, moment, grace_s=grace_s, ttl_s=ttl_s)
                pipe.set(self.meta_key(previous), dumps_meta(retired, **_extra(old_meta)))

        self.client.transaction(move, self.live_key, self.meta_key(version))
        previous = outcome.get("previous")
        if outcome.get("revived"):
            self._persist(version)
        if previous is not None and previous != version and ttl_s is not None:
            self._expire(previous, math.ceil(ttl_s))
        return None if previous is None else str(previous)

    def _persist(self, version: str) -> None:
        """Lift the ttl of every key of a version made live again."""
        for batch in self._batches(version):
            pipe = self.client.pipeline(transaction=False)
            for key in batch:
                pipe.persist(key)
            pipe.execute()

    def _expire(self, version: str, ttl_s: int) -> None:
        """Give every key of a retired version a ttl, the meta key first (it dies first)."""
        self.client.expire(self.meta_key(version), ttl_s)
        for batch in self._batches(version):
            pipe = self.client.pipeline(transaction=False)
            for key in batch:
                pipe.expire(key, ttl_s)
            pipe.execute()
        if self.live_version() == version:  # rolled back to while we set the ttls
            self._persist(version)

    def delete(self, version: str) -> None:
        def mark(pipe: Pipeline) -> None:
            if pipe.get(self.live_key) == version:
                raise UserError(
                    f"Version {version} is live in {self.url}; switch to another version "
                    "before deleting it."
                )
            pipe.multi()
            pipe.srem(self.versions_key, version)
            pipe.sadd(self.deleting_key, version)
            # without its meta it can no longer be switched to; without its fallback a
            # reader still on it learns it is gone rather than getting the fallback
            pipe.delete(self.meta_key(version), self.fallback_key(version))

        self.client.transaction(mark, self.live_key, self.meta_key(version))
        self._unlink(version)

    def _unlink(self, version: str) -> None:
        for batch in self._batches(version):
            self.client.unlink(*batch)
        self.client.srem(self.deleting_key, version)

    def _collect_leftovers(self) -> list[str]:
        done = []
        for version in sorted(str(v) for v in self.client.smembers(self.deleting_key)):
            self._unlink(version)  # a gc that stopped half-way
            done.append(version)
        for version in sorted(str(v) for v in self.client.smembers(self.versions_key)):
            if self.client.exists(self.meta_key(version)) == 0:  # its ttl ran out
                self.client.srem(self.versions_key, version)
                self._unlink(version)
                done.append(version)
        return done

    # -- writing ---------------------------------------------------------------------

    def begin(self, new: NewVersion) -> None:
        meta_key = self.meta_key(new.version)
        pipe = self.client.pipeline(transaction=True)
        pipe.set(meta_key, dumps_meta(new.info(), **new.extra), nx=True)
        pipe.sadd(self.versions_key, new.version)
        created, _ = pipe.execute()
        if not created:
            raise InternalError(f"version {new.version} exists already in {self.url}")

    def put_lists(self, version: str, pairs: Sequence[tuple[str, str]]) -> None:
        if pairs:
            self.client.mset({self.user_key(version, user): items for user, items in pairs})

    def finish(self, version: str, fallback: Sequence[str]) -> None:
        raw = self.client.get(self.meta_key(version))
        if raw is None:
            raise InternalError(f"version {version} vanished while it was written")
        meta = json.loads(raw)
        info = VersionInfo.from_meta(version, meta, live=False)
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.fallback_key(version), ",".join(fallback))
        pipe.set(self.meta_key(version), dumps_meta(replace(info, complete=True), **_extra(meta)))
        pipe.execute()

    # -- reading ---------------------------------------------------------------------

    def lookup(self, user_id: str, version: str | None = None) -> tuple[str | None, str | None]:
        # the client decodes replies to str (decode_responses); its types also allow bytes
        get: Any = self.client.get
        if version is None:
            version = get(self.live_key)
            if version is None:
                return None, None
        return version, get(f"{self.prefix}:v:{version}:u:{user_id}")

    def fallback(self, version: str) -> list[str] | None:
        raw = _str(self.client.get(self.fallback_key(version)))
        if raw is None:
            return None
        return raw.split(",") if raw else []

    def lists(self, version: str) -> Iterator[tuple[str, str]]:
        start = len(self.user_key(version, ""))
        for batch in self._batches(version, "u:*"):
            for key, items in zip(batch, self.client.mget(batch), strict=True):
                if items is not None:
                    yield key[start:], str(items)

    def user_ids(self, version: str) -> list[str]:
        start = len(self.user_key(version, ""))
        return sorted(key[start:] for key in self._keys("u:*", version))

    def close(self) -> None:
        self.client.close()


def _str(value: object) -> str | None:
    """A reply as text (the client decodes replies; the types allow bytes)."""
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _extra(meta: dict[str, Any]) -> dict[str, Any]:
    """The meta record's keys beyond `VersionInfo.meta` (rows, recsim version...)."""
    known = VersionInfo("", "", "", 0, 0, "", live=False).meta()
    return {key: value for key, value in meta.items() if key not in known}
