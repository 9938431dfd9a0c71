"""Read exported lists as a serving client does: `Reader` per request, `read_export` in bulk.

A `Reader` holds one connection and follows the reader protocol
(docs/serving.md): read the pointer, then the user's key in the version it
names; a user without a key gets that version's fallback list.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Self

from recsim_cli.errors import RecsimError, UserError
from recsim_cli.serve.store import (
    Store,
    backend_error,
    backend_errors,
    no_live_version,
    open_store,
)

if TYPE_CHECKING:
    import polars as pl


class Reader:
    """One persistent connection to a store, answering ``get(user_id)`` with the live list.

    >>> with Reader("sqlite:///recs.db") as reader:  # doctest: +SKIP
    ...     reader.get("u42")
    ['i7', 'i3', 'i19']
    """

    def __init__(self, url: str) -> None:
        self.store: Store = open_store(url)
        self.url = self.store.url

    def get(self, user_id: str, *, version: str | None = None) -> list[str]:
        """The user's list in the live version (or in ``version``), best first.

        A user the version has no list for gets its fallback list. A reader
        that read the pointer just before an export switched it keeps getting
        answers from the old version for its grace period; if the old version
        is already gone, the pointer is read again.
        """
        try:
            return self._get(user_id, version)
        except RecsimError:
            raise
        except Exception as exc:
            error = backend_error(exc, self.url)
            if error is None:
                raise
            raise error from exc

    def _get(self, user_id: str, version: str | None) -> list[str]:
        for _ in range(2):
            live, items = self.store.lookup(user_id, version)
            if live is None:
                raise no_live_version(self.url)
            if items is not None:
                return items.split(",") if items else []
            fallback = self.store.fallback(live)
            if fallback is not None:
                return fallback
            if version is not None:
                break
            # the version was deleted between the two reads: follow the pointer again
        raise UserError(
            f"Version {version or live} no longer exists in {self.url}; read the live version."
        )

    def version(self) -> str:
        """The version id the pointer names now."""
        with backend_errors(self.url):
            live = self.store.live_version()
        if live is None:
            raise no_live_version(self.url)
        return live

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass(frozen=True)
class Export:
    """One whole exported version, read back: its lists as a frame and its fallback."""

    version: str
    model: str
    fingerprint: str
    k: int
    created: str
    lists: pl.DataFrame
    """user_id (str), rank (int32, 0-based), item_id (str); sorted by user_id, rank."""
    fallback: list[str]


def read_export(url: str, *, version: str | None = None) -> Export:
    """Read the live version (or ``version``) of a store whole, as `Export`."""
    import polars as pl

    with open_store(url) as store, backend_errors(store.url):
        info = store.live() if version is None else store.info(version)
        if info is None:
            if version is None:
                raise no_live_version(store.url)
            raise UserError(f"Version {version} does not exist in {store.url}.")
        pairs = list(store.lists(info.version))
        fallback = store.fallback(info.version)
        if fallback is None or len(pairs) != info.users:
            raise UserError(
                f"Version {info.version} in {store.url} was deleted while it was read; "
                "read the live version again."
            )
    users = pl.Series("user_id", [u for u, _ in pairs], dtype=pl.String)
    items = pl.Series("items", [i for _, i in pairs], dtype=pl.String)
    lists = (
        pl.DataFrame([users, items])
        .filter(pl.col("items") != "")
        .select("user_id", pl.col("items").str.split(",").alias("item_id"))
        .with_columns(pl.int_ranges(0, pl.col("item_id").list.len(), dtype=pl.Int32).alias("rank"))
        .explode(["item_id", "rank"])
        .select("user_id", "rank", "item_id")
        .sort(["user_id", "rank"])
    )
    return Export(
        version=info.version,
        model=info.model,
        fingerprint=info.fingerprint,
        k=info.k,
        created=info.created,
        lists=lists,
        fallback=fallback,
    )
