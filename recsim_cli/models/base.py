"""The candidate-model contract every generator implements, and what they share.

A candidate generator narrows the catalogue to a few hundred items per user.
Each one is a subclass of `CandidateModel` and implements three small hooks:

* ``_fit(data, matrix)``: learn from the training events; ``matrix`` is the
  user x item interaction-strength matrix (`interaction_matrix`);
* ``_top(users, k)``: for an array of *known* user indices, return the best
  ``k`` item indices per user (``-1`` = no item) and their scores; a model
  that sets ``filters_exclusions`` also implements ``_top_excluding(users,
  k, exclude)``, leaving out the banned items (a CSR matrix) itself, which is faster
  than asking for more and dropping them afterwards;
* ``_state()`` / ``_set_state(arrays)``: the learned arrays, saved in an
  ``.npz`` read with ``allow_pickle=False``.

The base class does the rest, identically for every generator: id maps,
which items each user has watched ("seen", left out by default), the
``fresh`` fallback for users unseen in training, dropping padding (``-1``,
e.g. from implicit's item-kNN) and seen or duplicate items, and filling
every list to exactly ``k`` real items from the fallback when the catalogue
allows. Recommendations are a frame of user_id, item_id, score, rank
(`RECS_SCHEMA`); items filled in from the fallback have a null score.

Interaction strength (documented in docs/models.md): for user u and item i,
``strength(u, i) = sum over u's clicks of i of (0.1 + 0.9 min(watch_time /
duration, 1))``: a click counts at least 0.1, a full watch 1.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Final, Self

import numpy as np
import numpy.typing as npt
import polars as pl
import scipy.sparse as sp

from recsim_cli.errors import ConfigError, DatasetError
from recsim_cli.io import dumps_json, write_bytes_atomic, write_parquet_atomic
from recsim_cli.split import TrainData

__all__ = [
    "RECS_SCHEMA",
    "CandidateModel",
    "FloatArray",
    "IdMap",
    "IntArray",
    "fresh_scores",
    "interaction_matrix",
    "interaction_strength",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

RECS_SCHEMA: Final = pl.Schema(
    {"user_id": pl.String(), "item_id": pl.String(), "score": pl.Float64(), "rank": pl.Int32()}
)
CLICK_FLOOR: Final = 0.1
"""Strength of a click with no watch time; a full watch adds up to 1."""

FRESH_WINDOW_DAYS: Final = 7
FRESH_HALF_LIFE_DAYS: Final = 3.0
STATE_FILE: Final = "state.npz"
META_FILE: Final = "model.json"
USERS_FILE: Final = "users.parquet"
ITEMS_FILE: Final = "items.parquet"


def interaction_strength(events: pl.DataFrame | pl.LazyFrame, items: pl.DataFrame) -> pl.DataFrame:
    """Per (user_id, item_id) the summed strength of the user's clicks on the item."""
    lazy = events.lazy() if isinstance(events, pl.DataFrame) else events
    return (
        lazy.filter(pl.col("clicked"))
        .join(items.lazy().select("item_id", "duration_s"), on="item_id", how="inner")
        .group_by("user_id", "item_id")
        .agg(
            (
                CLICK_FLOOR
                + (1 - CLICK_FLOOR) * (pl.col("watch_time_s") / pl.col("duration_s")).clip(0, 1)
            )
            .sum()
            .alias("strength")
        )
        .sort("user_id", "item_id")
        .collect()
    )


@dataclass(frozen=True)
class IdMap:
    """Sorted unique ids and their 0-based indices."""

    ids: pl.Series

    @classmethod
    def of(cls, values: pl.Series) -> IdMap:
        return cls(values.unique().sort().rename("id").cast(pl.String))

    def __len__(self) -> int:
        return self.ids.len()

    def index(self, values: pl.Series | Sequence[str]) -> IntArray:
        """Index of each value, -1 for values not in the map (a hash join, vectorised)."""
        series = values if isinstance(values, pl.Series) else pl.Series(values, dtype=pl.String)
        table = self.ids.rename("id").to_frame().with_row_index("_idx")
        found = (
            series.cast(pl.String)
            .rename("id")
            .to_frame()
            .join(table, on="id", how="left", maintain_order="left")["_idx"]
        )
        return found.fill_null(-1).cast(pl.Int64).to_numpy()

    def lookup(self, index: IntArray) -> pl.Series:
        """Ids of the given indices (all must be valid)."""
        return self.ids.gather(pl.Series(index, dtype=pl.Int64))


def interaction_matrix(strengths: pl.DataFrame, users: IdMap, items: IdMap) -> sp.csr_matrix:
    """The users x items CSR matrix of interaction strengths (float32, as implicit wants)."""
    rows = users.index(strengths["user_id"])
    cols = items.index(strengths["item_id"])
    keep = (rows >= 0) & (cols >= 0)
    matrix = sp.csr_matrix(
        (strengths["strength"].to_numpy()[keep].astype(np.float32), (rows[keep], cols[keep])),
        shape=(len(users), len(items)),
        dtype=np.float32,
    )
    matrix.sort_indices()
    return matrix


def fresh_scores(
    data: TrainData, items: IdMap, *, window_days: int, half_life_days: float
) -> FloatArray:
    """Score each item by clicks in the last ``window_days`` x 0.5^(age / half-life).

    Popularity is counted over the window before the cutoff; age is the
    item's age in days at the cutoff. Ties (e.g. items never clicked) are
    broken by the newer item first, then by id (the order of ``items``).
    A tiny age term keeps never-clicked items ordered newest first.
    """
    start = data.cutoff - timedelta(days=window_days)
    clicks = (
        data.events.lazy()
        .filter(pl.col("clicked") & (pl.col("ts") >= start))
        .group_by("item_id")
        .agg(pl.len().alias("clicks"))
        .collect()
    )
    table = (
        pl.DataFrame({"item_id": items.ids})
        .join(data.items.select("item_id", "published_ts"), on="item_id", how="left")
        .join(clicks, on="item_id", how="left")
    )
    age_days = ((pl.lit(data.cutoff) - pl.col("published_ts")).dt.total_seconds() / 86_400.0).clip(
        lower_bound=0.0
    )
    scored = table.select(
        (
            (pl.col("clicks").fill_null(0).cast(pl.Float64) + 1e-3)
            * (0.5 ** (age_days / half_life_days))
        ).fill_null(0.0)
    )
    return scored.to_series().to_numpy().astype(np.float64)


class CandidateModel(ABC):
    """Base of every candidate generator (see the module docstring for the contract)."""

    kind: ClassVar[str]
    """The registry name of the generator (``popular``, ``als``...)."""

    def __init__(self, params: Mapping[str, Any] | None = None, *, seed: int = 0) -> None:
        self.params: dict[str, Any] = self.validate_params(dict(params or {}))
        self.seed = seed
        self.users = IdMap(pl.Series("id", [], dtype=pl.String))
        self.items = IdMap(pl.Series("id", [], dtype=pl.String))
        self.seen_indptr: IntArray = np.zeros(1, dtype=np.int64)
        self.seen_indices: IntArray = np.zeros(0, dtype=np.int64)
        self.fallback_order: IntArray = np.zeros(0, dtype=np.int64)
        self.fallback_score: FloatArray = np.zeros(0, dtype=np.float64)
        self.cutoff: datetime | None = None

    # -- hooks -----------------------------------------------------------------------

    defaults: ClassVar[Mapping[str, Any]] = {}
    """Hyper-parameters and their defaults; `validate_params` refuses other keys."""

    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Check ``params`` against `defaults` (unknown keys, types) and fill in defaults."""
        unknown = sorted(set(params) - set(cls.defaults))
        if unknown:
            raise ConfigError(
                f"Unknown parameter '{unknown[0]}' for candidates '{cls.kind}'; valid: "
                f"{', '.join(sorted(cls.defaults)) or 'none'}."
            )
        out = dict(cls.defaults)
        for key, given in params.items():
            default = cls.defaults[key]
            value = given
            if isinstance(default, bool) or isinstance(value, bool):
                ok = isinstance(value, bool) and isinstance(default, bool)
            elif isinstance(default, float):
                ok = isinstance(value, int | float)
                value = float(value) if ok else value
            else:
                ok = isinstance(value, type(default))
            if not ok:
                raise ConfigError(
                    f"Parameter '{key}' of candidates '{cls.kind}' must be "
                    f"{type(default).__name__}; got {value!r}."
                )
            out[key] = value
        return out

    @abstractmethod
    def _fit(self, data: TrainData, matrix: sp.csr_matrix) -> None:
        """Learn from ``data``; ``matrix`` is users x items interaction strength."""

    filters_exclusions: ClassVar[bool] = False
    """True when the model implements `_top_excluding`; otherwise the base asks `_top`
    for more items and drops the banned ones afterwards."""

    def _top_excluding(
        self, users: IntArray, k: int, exclude: sp.csr_matrix
    ) -> tuple[IntArray, FloatArray]:
        """Like `_top`, leaving out each user's items in row ``i`` of ``exclude`` (CSR)."""
        raise NotImplementedError(f"{type(self).__name__} does not filter exclusions itself")

    @abstractmethod
    def _top(self, users: IntArray, k: int) -> tuple[IntArray, FloatArray]:
        """Best ``k`` item indices (``-1`` = none) and scores for known ``users``, best first."""

    @abstractmethod
    def _state(self) -> dict[str, npt.NDArray[Any]]:
        """The learned arrays to save."""

    @abstractmethod
    def _set_state(self, arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        """Restore the learned arrays from `_state`."""

    # -- shared behaviour ------------------------------------------------------------

    def fit(self, data: TrainData) -> Self:
        """Fit on ``data`` (events before its cutoff) and return self."""
        strengths = interaction_strength(data.events, data.items)
        self.users = IdMap.of(data.events["user_id"])
        self.items = IdMap(data.items["item_id"].rename("id"))
        matrix = interaction_matrix(strengths, self.users, self.items)
        self.seen_indptr = matrix.indptr.astype(np.int64)
        self.seen_indices = matrix.indices.astype(np.int64)
        score = fresh_scores(
            data, self.items, window_days=FRESH_WINDOW_DAYS, half_life_days=FRESH_HALF_LIFE_DAYS
        )
        self.fallback_order = np.lexsort((np.arange(len(score)), -score)).astype(np.int64)
        self.fallback_score = score
        self.cutoff = data.cutoff
        self._fit(data, matrix)
        return self

    def seen_matrix(self) -> sp.csr_matrix:
        """Users x items boolean CSR of what each training user watched."""
        n = len(self.seen_indices)
        return sp.csr_matrix(
            (np.ones(n, dtype=np.float32), self.seen_indices, self.seen_indptr),
            shape=(len(self.users), len(self.items)),
        )

    def recommend(
        self,
        users: pl.Series | Sequence[str],
        k: int,
        *,
        exclude_seen: bool = True,
        exclude: pl.DataFrame | None = None,
    ) -> pl.DataFrame:
        """Exactly ``min(k, allowed items)`` distinct items per user, best first (`RECS_SCHEMA`).

        ``exclude`` adds (user_id, item_id) pairs to leave out (e.g. what a
        user watched after the cutoff). Unknown users get the fallback list.
        """
        if k < 1:
            raise ConfigError(f"k must be at least 1; got {k}.")
        user_ids = (
            users if isinstance(users, pl.Series) else pl.Series("user_id", users, dtype=pl.String)
        ).cast(pl.String)
        n = user_ids.len()
        n_items = len(self.items)
        if n == 0 or n_items == 0:
            return pl.DataFrame(schema=RECS_SCHEMA)
        uidx = self.users.index(user_ids)
        known = uidx >= 0
        want = min(k, n_items)
        items = np.full((n, want), -1, dtype=np.int64)
        scores = np.full((n, want), np.nan, dtype=np.float64)
        banned = self._banned_keys(uidx, user_ids, exclude_seen=exclude_seen, exclude=exclude)
        if known.any():
            rows = np.flatnonzero(known)
            if self.filters_exclusions:
                top_items, top_scores = self._top_excluding(
                    uidx[known], want, _rows_matrix(banned, rows, n, n_items)
                )
            else:
                # ask for enough that dropping a user's banned items still leaves ``want``
                per_row = np.bincount(banned // n_items, minlength=n)[known]
                extra = int(per_row.max()) if banned.size else 0
                top_items, top_scores = self._top(uidx[known], min(want + extra, n_items))
            got_i, got_s = _clean(
                rows,
                top_items=top_items,
                top_scores=top_scores,
                banned=banned,
                n_items=n_items,
                want=want,
            )
            items[known] = got_i
            scores[known] = got_s
        items, scores = _fill(items, scores, self.fallback_order, banned, n_items)
        return _to_frame(user_ids, items, scores, self.items)

    def _banned_keys(
        self,
        uidx: IntArray,
        user_ids: pl.Series,
        *,
        exclude_seen: bool,
        exclude: pl.DataFrame | None,
    ) -> IntArray:
        """Sorted keys ``row * n_items + item`` (row: position in the batch) not to recommend."""
        n_items = len(self.items)
        parts: list[IntArray] = []
        if exclude_seen:
            known_rows = np.flatnonzero(uidx >= 0)
            u = uidx[uidx >= 0]
            counts = self.seen_indptr[u + 1] - self.seen_indptr[u]
            starts = np.repeat(self.seen_indptr[u], counts)
            offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            item = self.seen_indices[starts + offsets]
            parts.append(np.repeat(known_rows, counts) * n_items + item)
        if exclude is not None and exclude.height:
            row_of = pl.DataFrame({"user_id": user_ids, "_row": np.arange(len(user_ids))})
            pairs = exclude.select("user_id", "item_id").join(row_of, on="user_id", how="inner")
            item = self.items.index(pairs["item_id"])
            ok = item >= 0
            parts.append(pairs["_row"].to_numpy()[ok].astype(np.int64) * n_items + item[ok])
        if not parts:
            return np.zeros(0, dtype=np.int64)
        return np.unique(np.concatenate(parts))

    # -- persistence -----------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """Write the model into ``folder`` (created): json meta, Parquet ids, npz arrays."""
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "kind": self.kind,
            "params": self.params,
            "seed": self.seed,
            "cutoff": None if self.cutoff is None else self.cutoff.isoformat(),
        }
        write_bytes_atomic(folder / META_FILE, dumps_json(meta).encode())
        write_parquet_atomic(self.users.ids.rename("user_id").to_frame(), folder / USERS_FILE)
        write_parquet_atomic(self.items.ids.rename("item_id").to_frame(), folder / ITEMS_FILE)
        arrays: dict[str, npt.NDArray[Any]] = {
            "_seen_indptr": self.seen_indptr,
            "_seen_indices": self.seen_indices,
            "_fallback_order": self.fallback_order,
            "_fallback_score": self.fallback_score,
        }
        for key, value in self._state().items():
            if key.startswith("_"):
                raise ValueError(f"state key {key!r} may not start with '_'")
            arrays[key] = value
        tmp = folder / f".{STATE_FILE}.tmp.npz"
        np.savez(tmp, allow_pickle=False, **arrays)
        tmp.replace(folder / STATE_FILE)

    @classmethod
    def load(cls, folder: Path) -> Self:
        """Read a model written by `save`; raise `DatasetError` if it is missing or corrupt."""
        try:
            meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
            if meta.get("kind") != cls.kind:
                raise ValueError(f"kind {meta.get('kind')!r} is not {cls.kind!r}")
            model = cls(meta["params"], seed=int(meta["seed"]))
            model.cutoff = (
                None if meta["cutoff"] is None else datetime.fromisoformat(meta["cutoff"])
            )
            model.users = IdMap(pl.read_parquet(folder / USERS_FILE)["user_id"].rename("id"))
            model.items = IdMap(pl.read_parquet(folder / ITEMS_FILE)["item_id"].rename("id"))
            with np.load(folder / STATE_FILE, allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files}
            model.seen_indptr = arrays.pop("_seen_indptr").astype(np.int64)
            model.seen_indices = arrays.pop("_seen_indices").astype(np.int64)
            model.fallback_order = arrays.pop("_fallback_order").astype(np.int64)
            model.fallback_score = arrays.pop("_fallback_score").astype(np.float64)
            model._set_state(arrays)
        except (OSError, ValueError, KeyError, TypeError, pl.exceptions.PolarsError) as exc:
            raise DatasetError(
                f"The {cls.kind} candidate model in {folder} is missing or corrupt ({exc}); "
                "train it again with recsim train --force."
            ) from exc
        return model


def _rows_matrix(banned: IntArray, rows: IntArray, n: int, n_items: int) -> sp.csr_matrix:
    """CSR (len(rows) x n_items) of the banned items of each of ``rows`` (keys row*n_items+item)."""
    position = np.full(n, -1, dtype=np.int64)
    position[rows] = np.arange(rows.size)
    row = position[banned // n_items]
    keep = row >= 0
    matrix = sp.csr_matrix(
        (np.ones(int(keep.sum()), dtype=np.float32), (row[keep], banned[keep] % n_items)),
        shape=(rows.size, n_items),
    )
    matrix.sort_indices()
    return matrix


def _member(keys: IntArray, sorted_keys: IntArray) -> npt.NDArray[np.bool_]:
    """Whether each of ``keys`` is in ``sorted_keys`` (sorted ascending), by binary search."""
    if sorted_keys.size == 0:
        return np.zeros(keys.shape, dtype=bool)
    pos = np.searchsorted(sorted_keys, keys)
    found: npt.NDArray[np.bool_] = sorted_keys[np.minimum(pos, sorted_keys.size - 1)] == keys
    return found


def _clean(
    rows: IntArray,
    *,
    top_items: IntArray,
    top_scores: FloatArray,
    banned: IntArray,
    n_items: int,
    want: int,
) -> tuple[IntArray, FloatArray]:
    """Drop padding, banned and duplicate items; keep the first ``want`` per row (-1 pads)."""
    m = top_items.shape[1]
    keys = rows[:, None] * n_items + np.where(top_items >= 0, top_items, 0)
    valid = (top_items >= 0) & (top_items < n_items) & np.isfinite(top_scores)
    if banned.size:
        valid &= ~_member(keys, banned)
    # duplicates within a row: keep the first occurrence
    order = np.argsort(np.where(valid, top_items, n_items), axis=1, kind="stable")
    sorted_items = np.take_along_axis(np.where(valid, top_items, n_items), order, axis=1)
    dup_sorted = np.zeros_like(valid)
    dup_sorted[:, 1:] = (sorted_items[:, 1:] == sorted_items[:, :-1]) & (
        sorted_items[:, 1:] < n_items
    )
    dup = np.zeros_like(valid)
    np.put_along_axis(dup, order, dup_sorted, axis=1)
    valid &= ~dup
    # stable compaction of the valid entries to the left
    pos = np.argsort(~valid, axis=1, kind="stable")
    items = np.take_along_axis(np.where(valid, top_items, -1), pos, axis=1)[:, : min(want, m)]
    scores = np.take_along_axis(np.where(valid, top_scores, np.nan), pos, axis=1)[:, : min(want, m)]
    if items.shape[1] < want:
        pad = want - items.shape[1]
        items = np.pad(items, ((0, 0), (0, pad)), constant_values=-1)
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=np.nan)
    return items, scores


def _fill(
    items: IntArray,
    scores: FloatArray,
    order: IntArray,
    banned: IntArray,
    n_items: int,
) -> tuple[IntArray, FloatArray]:
    """Fill the -1 slots of each row with the first allowed items of ``order``, in order."""
    missing = (items < 0).sum(axis=1)
    rows = np.flatnonzero(missing)
    if rows.size == 0:
        return items, scores
    # how far down the fallback order a row may have to look: what it needs plus what it skips
    banned_rows = banned // n_items
    chosen_per_row = (items[rows] >= 0).sum(axis=1)
    banned_per_row = np.bincount(banned_rows, minlength=items.shape[0])[rows]
    depth = int(min(len(order), (missing[rows] + chosen_per_row + banned_per_row).max()))
    cand = np.broadcast_to(order[:depth], (rows.size, depth))
    keys = rows[:, None] * n_items + cand
    taken = np.sort(
        (rows[:, None] * n_items + np.where(items[rows] >= 0, items[rows], 0))[items[rows] >= 0]
    )
    allowed = ~_member(keys, banned) & ~_member(keys, taken)
    rank = np.cumsum(allowed, axis=1)
    use = allowed & (rank <= missing[rows][:, None])
    fill_items = np.full((rows.size, items.shape[1]), -1, dtype=np.int64)
    # place the chosen fallback items after the model's own items, in fallback order
    slot = chosen_per_row[:, None] + rank - 1
    r, c = np.nonzero(use)
    fill_items[r, slot[r, c]] = cand[r, c]
    sub = items[rows]
    sub = np.where(sub >= 0, sub, fill_items)
    items = items.copy()
    items[rows] = sub
    return items, scores


def _to_frame(
    user_ids: pl.Series, items: IntArray, scores: FloatArray, item_map: IdMap
) -> pl.DataFrame:
    """Long frame of the non-empty slots, rank 1..k per user."""
    n, k = items.shape
    flat = items.ravel()
    ok = flat >= 0
    user_rows = np.repeat(np.arange(n), k)[ok]
    ranks = np.tile(np.arange(1, k + 1, dtype=np.int32), n)[ok]
    return pl.DataFrame(
        {
            "user_id": user_ids.gather(pl.Series(user_rows, dtype=pl.Int64)),
            "item_id": item_map.lookup(flat[ok]),
            "score": pl.Series(scores.ravel()[ok], dtype=pl.Float64).fill_nan(None),
            "rank": pl.Series(ranks, dtype=pl.Int32),
        },
        schema=RECS_SCHEMA,
    )
