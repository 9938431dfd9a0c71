"""The serving store, on SQLite and on a real Redis: versions, pointer, grace, ttl, gc.

Lists are written with `write_version` straight from small frames; every
list of export generation ``g`` names its generation (``g2-i7``), so a read
shows which export it came from.
"""

from __future__ import annotations

import math
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from redis_server import RedisServer, redis_server, redis_url  # noqa: F401

from recsim_cli.errors import ConfigError, DatasetError, UserError
from recsim_cli.serve import (
    ExportResult,
    Reader,
    Store,
    open_store,
    read_export,
    write_version,
)
from recsim_cli.serve.store import NewVersion, new_version_id

T0 = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
USERS = 40
K = 5


def lists(generation: int, users: int = USERS, k: int = K) -> pl.DataFrame:
    """user_id, item_id, rank (1-based) of export ``generation``."""
    rows = [
        (f"u{u:03d}", f"g{generation}-i{(u + r) % 50}", r + 1)
        for u in range(users)
        for r in range(k)
    ]
    return pl.DataFrame(rows, schema=["user_id", "item_id", "rank"], orient="row").with_columns(
        pl.col("rank").cast(pl.Int32)
    )


def expected_list(generation: int, user: int, k: int = K) -> list[str]:
    return [f"g{generation}-i{(user + r) % 50}" for r in range(k)]


def fallback(generation: int) -> list[str]:
    return [f"g{generation}-hot{i}" for i in range(K)]


def write(
    store: Store,
    generation: int,
    *,
    at: datetime = T0,
    users: int = USERS,
    grace_s: float = 3600.0,
    ttl_s: float | None = None,
) -> ExportResult:
    """Export generation ``generation`` at time ``at``."""
    return write_version(
        store,
        lists(generation, users),
        model=f"model-{generation}",
        fingerprint=f"{generation:064x}",
        k=K,
        fallback=fallback(generation),
        grace_s=grace_s,
        ttl_s=ttl_s,
        now=at,
    )


@pytest.fixture(params=["sqlite", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'serve' / 'recs.db'}"
    return str(request.getfixturevalue("redis_url"))


@pytest.fixture
def store(url: str):
    with open_store(url, create=True) as opened:
        yield opened


def test_round_trip_through_the_reader_and_read_export(url: str, store: Store) -> None:
    result = write(store, 1)
    assert (result.users, result.rows, result.previous, result.deleted) == (
        USERS,
        USERS * K,
        None,
        (),
    )
    assert result.url == store.url and "s3cret" not in result.url
    with Reader(url) as reader:
        assert reader.version() == result.version
        assert reader.get("u007") == expected_list(1, 7)
        assert reader.get("nobody") == fallback(1)  # unknown user: the version's fallback
    export = read_export(url)
    assert (export.version, export.model, export.fingerprint, export.k) == (
        result.version,
        "model-1",
        f"{1:064x}",
        K,
    )
    assert export.created == result.created
    assert export.fallback == fallback(1)
    expected = lists(1).select(
        "user_id", (pl.col("rank") - 1).cast(pl.Int32).alias("rank"), "item_id"
    )
    assert_frame_equal(export.lists, expected)
    assert export.lists.schema == pl.Schema(
        {"user_id": pl.String, "rank": pl.Int32, "item_id": pl.String}
    )


def test_second_export_retires_the_first(store: Store) -> None:
    first = write(store, 1, at=T0)
    second = write(store, 2, at=T0 + timedelta(minutes=5), grace_s=600)
    assert second.previous == first.version
    assert first.version < second.version  # ids sort by time
    live = store.live()
    assert live is not None and live.version == second.version and live.live
    old, new = store.versions()
    assert (old.version, old.live, new.version, new.live) == (
        first.version,
        False,
        second.version,
        True,
    )
    assert old.retired_at == "2026-01-15T12:05:00.000000Z"
    assert old.delete_after == "2026-01-15T12:15:00.000000Z"
    assert old.expires_at is None
    assert (new.retired_at, new.delete_after, new.expires_at) == (None, None, None)


def test_a_reader_on_the_old_version_reads_it_until_the_grace_period_ends(
    url: str, store: Store
) -> None:
    first = write(store, 1, at=T0)
    with Reader(url) as reader:
        pointer = reader.version()  # read just before the next export switches it
        second = write(store, 2, at=T0 + timedelta(seconds=10), grace_s=60)
        assert reader.get("u003", version=pointer) == expected_list(1, 3)
        assert reader.get("nobody", version=pointer) == fallback(1)
        assert reader.get("u003") == expected_list(2, 3)
        assert store.gc(now=T0 + timedelta(seconds=69)) == 0
        assert reader.get("u003", version=pointer) == expected_list(1, 3)
        assert store.gc(now=T0 + timedelta(seconds=71)) == 1
        with pytest.raises(UserError, match=f"Version {first.version} no longer exists"):
            reader.get("u003", version=pointer)
        assert reader.get("u003") == expected_list(2, 3)
    assert [v.version for v in store.versions()] == [second.version]


def test_exports_delete_expired_versions_at_start_and_end(store: Store) -> None:
    first = write(store, 1, at=T0)
    second = write(store, 2, at=T0 + timedelta(minutes=1), grace_s=60)
    third = write(store, 3, at=T0 + timedelta(minutes=5), grace_s=0)
    # first: grace over before the export began; second: grace 0 after it switched
    assert third.deleted == (first.version, second.version)
    assert [v.version for v in store.versions()] == [third.version]


def test_ttl_is_recorded_for_retired_versions_only(store: Store) -> None:
    first = write(store, 1, at=T0)
    write(store, 2, at=T0 + timedelta(minutes=1), grace_s=60, ttl_s=3600)
    old, new = store.versions()
    assert old.version == first.version
    assert old.expires_at == "2026-01-15T13:01:00.000000Z"
    assert new.live and new.expires_at is None and new.delete_after is None


def test_ttl_shorter_than_the_grace_period_is_refused(store: Store) -> None:
    with pytest.raises(ConfigError, match="--ttl of 60 s is shorter than the grace period"):
        write(store, 1, grace_s=3600, ttl_s=60)
    assert store.versions() == []


def test_redis_expires_retired_keys_never_the_live_ones(redis_url: str) -> None:  # noqa: F811
    import redis

    with open_store(redis_url) as store:
        first = write(store, 1, at=T0)
        second = write(store, 2, at=T0 + timedelta(seconds=1), grace_s=60, ttl_s=600)
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        ttl_of = {key: client.ttl(key) for key in client.scan_iter(match="recsim:*")}
        old = {k: t for k, t in ttl_of.items() if f":v:{first.version}:" in k}
        rest = {k: t for k, t in ttl_of.items() if k not in old}
        assert len(old) == USERS + 2  # users, fallback, meta
        assert all(0 < t <= 600 for t in old.values())
        assert all(t == -1 for t in rest.values()), rest  # live keys, pointer, version sets
        # a rollback makes the first live again: its keys lose their ttl, the second's get one
        assert store.switch(first.version, grace_s=60, ttl_s=600) == second.version
        for key in client.scan_iter(match=f"recsim:v:{first.version}:*"):
            assert client.ttl(key) == -1
        assert client.ttl("recsim:live") == -1
        assert all(
            0 < client.ttl(key) <= 600
            for key in client.scan_iter(match=f"recsim:v:{second.version}:*")
        )
        client.close()


def test_switch_rolls_back_to_a_retired_version(url: str, store: Store) -> None:
    first = write(store, 1, at=T0)
    second = write(store, 2, at=T0 + timedelta(seconds=1))
    assert store.switch(first.version, now=T0 + timedelta(seconds=2)) == second.version
    with Reader(url) as reader:
        assert reader.version() == first.version
        assert reader.get("u001") == expected_list(1, 1)
    versions = {v.version: v for v in store.versions()}
    assert versions[first.version].live and versions[first.version].retired_at is None
    assert versions[second.version].retired_at == "2026-01-15T12:00:02.000000Z"
    assert store.switch(first.version) == first.version  # already live: nothing changes
    with pytest.raises(UserError, match="there is no such version"):
        store.switch("20260101T000000.000000Z-00000000")


def test_switch_refuses_an_incomplete_version(store: Store) -> None:
    write(store, 1)
    new = NewVersion(new_version_id(T0), "m", "f" * 64, K, 1, "2026-01-15T12:00:00.000000Z")
    store.begin(new)
    store.put_lists(new.version, [("u1", "a,b")])
    with pytest.raises(UserError, match="it is not complete"):
        store.switch(new.version)


def test_a_crashed_export_is_collected_once_stale(store: Store) -> None:
    live = write(store, 1, at=T0)
    crashed = NewVersion(new_version_id(T0), "m", "f" * 64, K, 1, "2026-01-15T12:00:00.000000Z")
    store.begin(crashed)
    store.put_lists(crashed.version, [("u1", "a,b")])
    assert store.gc(now=T0 + timedelta(hours=1)) == 0  # may still be an export in progress
    assert store.gc(now=T0 + timedelta(days=2)) == 1
    assert [v.version for v in store.versions()] == [live.version]


def test_a_failed_export_leaves_the_live_version_alone(store: Store, monkeypatch) -> None:
    first = write(store, 1)
    calls = []

    def broken(version: str, pairs) -> None:
        calls.append(version)
        if len(calls) > 1:
            raise OSError("disk full")
        original(version, pairs)

    original = store.put_lists
    monkeypatch.setattr(store, "put_lists", broken)
    with pytest.raises(OSError, match="disk full"):
        write_version(store, lists(2), model="m", fingerprint="f", k=K, fallback=[], batch_users=10)
    assert [v.version for v in store.versions()] == [first.version]
    live = store.live()
    assert live is not None and live.version == first.version


def test_a_reader_polling_during_an_export_sees_one_whole_version(url: str, store: Store) -> None:
    """Every list read matches the first or the second export, and never goes back."""
    write(store, 1, users=300, at=T0)
    seen: list[tuple[int, int, list[str]]] = []
    stop = threading.Event()
    failures: list[BaseException] = []

    def poll() -> None:
        try:
            with Reader(url) as reader:
                i = 0
                while not stop.is_set():
                    user = (i * 37) % 300
                    seen.append((user, i, reader.get(f"u{user:03d}")))
                    i += 1
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=poll)
    thread.start()
    try:
        while len(seen) < 50:
            time.sleep(0.001)
        write_version(
            store,
            lists(2, users=300),
            model="m2",
            fingerprint="f2",
            k=K,
            fallback=fallback(2),
            now=T0 + timedelta(seconds=1),
            batch_users=20,
        )
        deadline = time.monotonic() + 10
        while not any(items[0].startswith("g2-") for _, _, items in seen[-5:]):
            assert time.monotonic() < deadline, "the reader never saw the new version"
            time.sleep(0.001)
    finally:
        stop.set()
        thread.join()
    assert not failures
    generations = []
    for user, _, items in seen:
        matches = [g for g in (1, 2) if items == expected_list(g, user)]
        assert len(matches) == 1, items
        generations.append(matches[0])
    assert generations == sorted(generations)  # never back to the old version
    assert generations[0] == 1 and generations[-1] == 2


def test_redis_deletes_a_version_with_unlink_in_batches(redis_url: str) -> None:  # noqa: F811
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    with open_store(redis_url) as store:
        store.delete_batch = 25
        first = write(store, 1, users=200, at=T0)
        write(store, 2, at=T0 + timedelta(seconds=1), grace_s=10)
        client.config_resetstat()
        assert store.gc(now=T0 + timedelta(seconds=12)) == 1
        stats = client.info("commandstats")
        # its 200 user keys; the meta and fallback keys go in the marking step
        assert stats["cmdstat_unlink"]["calls"] == math.ceil(200 / 25)
        assert list(client.scan_iter(match=f"recsim:v:{first.version}:*")) == []
        assert client.smembers("recsim:deleting") == set()
    client.close()


def test_sqlite_deletes_a_version_in_batches(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'recs.db'}"
    with open_store(url, create=True) as store:
        store.delete_batch = 25
        first = write(store, 1, users=200, at=T0)
        write(store, 2, at=T0 + timedelta(seconds=1), grace_s=10)
        statements: list[str] = []
        store.conn.set_trace_callback(statements.append)
        assert store.gc(now=T0 + timedelta(seconds=12)) == 1
        deletes = [s for s in statements if s.startswith("DELETE FROM lists")]
        assert len(deletes) == math.ceil(200 / 25) + 1  # the last finds nothing left
        left = store.conn.execute(
            "SELECT count(*) FROM lists WHERE version = ?", (first.version,)
        ).fetchone()
        assert left == (0,)
        mode = store.conn.execute("PRAGMA journal_mode").fetchone()
        assert mode == ("wal",)


def test_version_ids_sort_by_time_and_are_unique() -> None:
    times = [T0 + timedelta(microseconds=i) for i in (0, 1, 999_999, 1_000_000)]
    ids = [new_version_id(t) for t in times]
    assert ids == sorted(ids)
    assert len({new_version_id(T0) for _ in range(200)}) == 200


def test_reading_a_store_without_a_live_version(url: str, store: Store) -> None:
    message = f"No version is live in {store.url}; export a model first with recsim export"
    with Reader(url) as reader, pytest.raises(UserError, match=message.replace("*", r"\*")):
        reader.get("u1")
    with pytest.raises(UserError, match="No version is live"):
        read_export(url)


def test_a_missing_sqlite_file_is_a_user_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nowhere' / 'recs.db'}"
    with pytest.raises(UserError, match=r"does not exist; export a model to it first"):
        Reader(url)
    assert not (tmp_path / "nowhere").exists()


def test_a_file_that_is_no_store_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("not a database at all, just text " * 100)
    with pytest.raises(UserError, match="is not a recsim store"):
        Reader(f"sqlite:///{path}")


def test_item_ids_with_commas_cannot_be_exported(store: Store) -> None:
    frame = pl.DataFrame({"user_id": ["u1"], "item_id": ["a,b"], "rank": [1]})
    with pytest.raises(DatasetError, match="Item id 'a,b' holds a comma"):
        write_version(store, frame, model="m", fingerprint="f", k=1, fallback=[])
    assert store.versions() == []


def test_the_redis_fixture_serves_a_password_protected_server(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    assert redis_server.url().startswith("redis://:s3cret-pw@127.0.0.1:")
