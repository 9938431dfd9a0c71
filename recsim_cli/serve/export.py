"""Export a model's top-K lists for every user into a serving store, as a new version.

`export_model` runs the model for every user of its dataset (and for one
user it has never seen, whose list becomes the version's fallback), then
`write_version` writes the lists as a new version, switches the pointer to it
and deletes the versions whose grace period is over.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from recsim_cli import __version__
from recsim_cli.errors import ConfigError, DatasetError, InternalError, UserError
from recsim_cli.progress import Progress, no_progress
from recsim_cli.serve.store import (
    DEFAULT_GRACE_S,
    WRITE_BATCH,
    NewVersion,
    Store,
    backend_errors,
    check_lifetimes,
    format_time,
    new_version_id,
    open_store,
    utc_now,
)
from recsim_cli.times import as_utc

if TYPE_CHECKING:
    import polars as pl

UNKNOWN_USER: Final = "\x00recsim:unknown-user"
"""A user id no dataset holds: the model's list for it is the fallback of unknown users."""
SEPARATOR: Final = ","


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote: the new version, the one it replaced, the ones it deleted."""

    version: str
    url: str
    """The store's URL, password masked."""
    model: str
    fingerprint: str
    k: int
    users: int
    rows: int
    """Items written over all users' lists."""
    created: str
    previous: str | None
    """The version that was live before; kept for ``grace_s`` seconds."""
    deleted: tuple[str, ...]
    grace_s: float
    ttl_s: float | None
    seconds: float
    unknown_users: int = 0
    """Users of the dataset the model never saw in training (they got the fallback list)."""
    fallback: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "url": self.url,
            "model": self.model,
            "fingerprint": self.fingerprint,
            "k": self.k,
            "users": self.users,
            "unknown_users": self.unknown_users,
            "rows": self.rows,
            "fallback_items": len(self.fallback),
            "created": self.created,
            "previous": self.previous,
            "deleted": list(self.deleted),
            "grace_s": self.grace_s,
            "ttl_s": self.ttl_s,
            "seconds": round(self.seconds, 3),
        }


def compact_lists(frame: pl.DataFrame) -> pl.DataFrame:
    """One row per user: user_id and its items in rank order joined by commas, sorted by user.

    ``frame`` has user_id, item_id and rank (any integer order, e.g. 1-based).
    An item id holding a comma cannot be written in this format.
    """
    import polars as pl

    missing = [c for c in ("user_id", "item_id", "rank") if c not in frame.columns]
    if missing:
        raise InternalError(f"lists to export lack the columns {', '.join(missing)}")
    bad = frame.filter(pl.col("item_id").str.contains(SEPARATOR, literal=True))
    if bad.height:
        raise DatasetError(
            f"Item id {bad['item_id'][0]!r} holds a comma, which separates the items of an "
            "exported list; rename such items before exporting."
        )
    return (
        frame.select(pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String), "rank")
        .sort(["user_id", "rank"])
        .group_by("user_id", maintain_order=True)
        .agg(pl.col("item_id").str.join(SEPARATOR).alias("items"))
    )


def write_version(
    store: Store,
    lists: pl.DataFrame,
    *,
    model: str,
    fingerprint: str,
    k: int,
    fallback: Sequence[str],
    grace_s: float = DEFAULT_GRACE_S,
    ttl_s: float | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
    batch_users: int = WRITE_BATCH,
) -> ExportResult:
    """Write ``lists`` (user_id, item_id, rank) as a new version and make it live.

    In order: delete the versions whose grace period or ttl is over; write
    the new version in batches of ``batch_users`` users; mark it complete;
    switch the pointer (the old live version is retired: kept ``grace_s``
    seconds, with ``ttl_s`` also expired by the backend); delete what has
    expired since. A failure before the switch deletes the half-written
    version and leaves the live one as it was.
    """
    check_lifetimes(grace_s, ttl_s)
    progress = progress or no_progress
    bad_fallback = [item for item in fallback if SEPARATOR in item]
    if bad_fallback:
        raise DatasetError(
            f"Item id {bad_fallback[0]!r} holds a comma, which separates the items of an "
            "exported list; rename such items before exporting."
        )
    started = time.perf_counter()
    moment = utc_now() if now is None else as_utc(now)
    with backend_errors(store.url):
        deleted = store.collect(moment)
        compact = compact_lists(lists)
        users = compact.height
        new = NewVersion(
            version=new_version_id(moment),
            model=model,
            fingerprint=fingerprint,
            k=k,
            users=users,
            created=format_time(moment),
            extra={"rows": lists.height, "recsim_version": __version__},
        )
        store.begin(new)
        try:
            progress("write", 0, users)
            for start in range(0, users, batch_users):
                batch = compact.slice(start, batch_users)
                store.put_lists(new.version, list(batch.iter_rows()))
                progress("write", min(start + batch_users, users), users)
            store.finish(new.version, fallback)
            previous = store.switch(new.version, grace_s=grace_s, ttl_s=ttl_s, now=moment)
        except BaseException:
            _discard(store, new.version)
            raise
        deleted += store.collect(moment)
    return ExportResult(
        version=new.version,
        url=store.url,
        model=model,
        fingerprint=fingerprint,
        k=k,
        users=users,
        rows=lists.height,
        created=new.created,
        previous=previous,
        deleted=tuple(deleted),
        grace_s=grace_s,
        ttl_s=ttl_s,
        seconds=time.perf_counter() - started,
        fallback=tuple(fallback),
    )


def _discard(store: Store, version: str) -> None:
    """Delete a version whose export failed; if that fails too, a later gc finds it stale."""
    try:
        if store.live_version() != version:
            store.delete(version)
    except Exception:  # the export's own error is the one to report
        pass


def export_model(
    name: str,
    *,
    registry: Path,
    url: str,
    k: int = 100,
    data: Path | None = None,
    grace_s: float = DEFAULT_GRACE_S,
    ttl_s: float | None = None,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> ExportResult:
    """Export model ``name``'s top-``k`` lists for every user of its dataset to ``url``.

    ``data`` overrides the model's dataset. The store is opened (and a Redis
    server contacted) before the model runs, so a bad URL fails at once.
    """
    import polars as pl

    from recsim_cli.models.two_stage import recommend
    from recsim_cli.registry import Registry

    if k < 1:
        raise ConfigError(f"--k must be at least 1; got {k}.")
    check_lifetimes(grace_s, ttl_s)
    started = time.perf_counter()
    entry = Registry(registry).open(name)
    fingerprint = entry.fingerprint
    open_store(url, create=True).close()  # an unreachable store fails before the model runs
    users = _dataset_users(entry.manifest, data)
    recs = recommend(
        name,
        registry=registry,
        data=data,
        users=[*users, UNKNOWN_USER],
        k=k,
        progress=progress or no_progress,
    )
    if Registry(registry).open(name).fingerprint != fingerprint:
        raise UserError(
            f"Model '{entry.name}' was replaced while it was exported; export it again."
        )
    unknown = pl.col("user_id") == UNKNOWN_USER
    fallback = recs.frame.filter(unknown).sort("rank")["item_id"].to_list()
    with open_store(url, create=True) as store:
        result = write_version(
            store,
            recs.frame.filter(~unknown),
            model=entry.name,
            fingerprint=fingerprint,
            k=k,
            fallback=fallback,
            grace_s=grace_s,
            ttl_s=ttl_s,
            now=now,
            progress=progress,
        )
    return replace(
        result,
        unknown_users=recs.unknown_users - 1,
        seconds=time.perf_counter() - started,
    )


def _dataset_users(manifest: dict[str, Any], data: Path | None) -> list[str]:
    """Every user of the model's dataset (or of ``data``), sorted."""
    import polars as pl

    from recsim_cli.dataset import Dataset

    if data is None:
        dataset = manifest.get("dataset")
        if not isinstance(dataset, dict) or not isinstance(dataset.get("path"), str):
            raise DatasetError(
                f"Model '{manifest.get('name')}' does not name its dataset; give one with --data."
            )
        data = Path(dataset["path"])
    path = Path(data)
    users = (
        Dataset.open(path)
        .events()
        .select(pl.col("user_id").unique())
        .collect()
        .to_series()
        .sort()
        .to_list()
    )
    if UNKNOWN_USER in users:
        raise InternalError("the dataset holds recsim's reserved unknown-user id")
    return [str(u) for u in users]
