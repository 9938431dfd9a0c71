"""Offline ranking metrics: precision, recall, MAP, NDCG, MRR and hit rate at k.

The pure core of ``recsim evaluate``: recommendation lists and the relevant
(user, item) pairs go in as polars frames, one row of metrics per user comes
out. Every metric is binary-relevance and per user; a mean over users is the
caller's business. docs/metrics.md gives each formula, the rules for the
awkward users, and the trec_eval measure each one equals (checked by
tests/test_metrics_parity.py).

Nothing loops over users: lists are ranked with polars, the hits (relevant
items at a position <= the largest k) become flat numpy arrays sorted by
(user, position), and each metric is one ``np.bincount`` over them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import polars as pl

from recsim_cli.errors import ConfigError, SchemaError, UnknownNameError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

MapDenominator = Literal["min", "relevant"]
MAP_DENOMINATORS: tuple[MapDenominator, ...] = ("min", "relevant")

ID_COLUMNS = ("user_id", "item_id")
GRID_BLOCK = 1 << 20  # item hashes sorted per block in `_may_repeat` (8 MiB)


@dataclass(frozen=True)
class Hits:
    """The relevant items each evaluated user was shown, as flat arrays sorted by (user, pos).

    Users are numbered ``0 .. n_users - 1``; every user has ``n_relevant >= 1``.
    ``nth`` is 1 for a user's first hit, 2 for the second, and so on.
    """

    n_users: int
    n_relevant: IntArray
    user: IntArray
    pos: IntArray
    nth: IntArray
    map_denominator: MapDenominator = "min"

    def total(self, k: int, weights: FloatArray | None = None) -> FloatArray:
        """Per user: the number of hits at positions <= ``k`` (or the sum of their weights)."""
        inside = self.pos <= k
        return np.bincount(
            self.user[inside],
            weights=None if weights is None else weights[inside],
            minlength=self.n_users,
        ).astype(np.float64)


def precision(hits: Hits, k: int) -> FloatArray:
    """precision@k = (hits in the top k) / k; equals trec_eval ``P_k``.

    The denominator is always k, even when the list is shorter than k.
    """
    return hits.total(k) / k


def recall(hits: Hits, k: int) -> FloatArray:
    """recall@k = (hits in the top k) / |R|; equals trec_eval ``recall_k``."""
    return hits.total(k) / hits.n_relevant


def average_precision(hits: Hits, k: int) -> FloatArray:
    """AP@k = sum over hits i <= k of precision@i, divided by min(k, |R|) or by |R|.

    With ``map_denominator="min"`` (the default) a perfect list scores 1, as
    in Kaggle's ``apk`` (ml_metrics); with ``"relevant"`` it equals trec_eval
    ``map_cut_k``.
    """
    summed = hits.total(k, weights=hits.nth / hits.pos)
    if hits.map_denominator == "relevant":
        return summed / hits.n_relevant
    return summed / np.minimum(hits.n_relevant, k)


def ndcg(hits: Hits, k: int) -> FloatArray:
    """NDCG@k = DCG@k / IDCG@k, DCG@k = sum over hits i <= k of 1 / log2(i + 1).

    Binary gain; IDCG@k is the DCG of min(k, |R|) hits at the top. Equals
    trec_eval ``ndcg_cut_k`` with relevance 1.
    """
    ideal = np.concatenate(([0.0], np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))))
    dcg = hits.total(k, weights=1.0 / np.log2(hits.pos + 1.0))
    return dcg / ideal[np.minimum(hits.n_relevant, k)]


def reciprocal_rank(hits: Hits, k: int) -> FloatArray:
    """RR@k = 1 / (position of the first hit) if it is <= k, else 0.

    Equals trec_eval ``recip_rank`` on runs cut to their top k.
    """
    return hits.total(k, weights=np.where(hits.nth == 1, 1.0 / hits.pos, 0.0))


def hit_rate(hits: Hits, k: int) -> FloatArray:
    """hit_rate@k = 1 if any of the top k is relevant, else 0; equals trec_eval ``success_k``."""
    return (hits.total(k) > 0).astype(np.float64)


@dataclass(frozen=True)
class RankMetric:
    """One ranking metric: its name in specs (``ndcg@10``), a label, and its per-user values."""

    name: str
    label: str
    reference: str
    compute: Callable[[Hits, int], FloatArray]

    def column(self, k: int) -> str:
        """The per-user column (and spec) of this metric at cut-off ``k``, e.g. ``ndcg@10``."""
        return metric_column(self.name, k)


METRICS: dict[str, RankMetric] = {
    m.name: m
    for m in (
        RankMetric("precision", "Precision", "trec_eval P_k", precision),
        RankMetric("recall", "Recall", "trec_eval recall_k", recall),
        RankMetric("map", "MAP", "Kaggle apk; trec_eval map_cut_k with |R|", average_precision),
        RankMetric("ndcg", "NDCG", "trec_eval ndcg_cut_k", ndcg),
        RankMetric("mrr", "MRR", "trec_eval recip_rank on lists cut to k", reciprocal_rank),
        RankMetric("hit_rate", "Hit rate", "trec_eval success_k", hit_rate),
    )
}
METRIC_NAMES: tuple[str, ...] = ("precision", "recall", "map", "ndcg", "mrr", "hit_rate")


def metric_column(metric: str, k: int) -> str:
    """Name the column of ``metric`` at cut-off ``k``: ``ndcg@10``."""
    return f"{metric}@{k}"


def parse_metrics(text: str | Sequence[str]) -> tuple[str, ...]:
    """Parse ``"precision,ndcg"`` (or a list of such strings) into known metric names.

    Names are case-insensitive; duplicates are dropped, the order is kept.
    """
    parts = [text] if isinstance(text, str) else list(text)
    names: list[str] = []
    for token in (t.strip().lower() for part in parts for t in str(part).split(",")):
        if not token:
            continue
        if token not in METRICS:
            raise UnknownNameError("metric", token, METRIC_NAMES)
        if token not in names:
            names.append(token)
    if not names:
        raise ConfigError(f"No metric given; choose one or more of {', '.join(sorted(METRICS))}.")
    return tuple(names)


def parse_ks(text: str | Sequence[int]) -> tuple[int, ...]:
    """Parse ``"5,10,20"`` (or a list of ints) into sorted, unique cut-offs of at least 1."""
    tokens: list[object] = [text] if isinstance(text, str) else list(text)
    ks: set[int] = set()
    for token in tokens:
        for item in token.split(",") if isinstance(token, str) else [token]:
            if not (isinstance(item, str) and not item.strip()):  # "5,10," is fine
                ks.add(_cutoff(item.strip() if isinstance(item, str) else item))
    if not ks:
        raise ConfigError(f"--k needs at least one cut-off such as 10; got {text!r}.")
    return tuple(sorted(ks))


def _cutoff(value: object) -> int:
    """One cut-off from ``"10"`` or ``10``; anything else is the user's mistake."""
    if (isinstance(value, str) and value.isascii() and value.isdecimal()) or (
        isinstance(value, int | np.integer) and not isinstance(value, bool)
    ):
        k = int(value)
    else:
        k = 0
    if k < 1:
        raise ConfigError(
            f"--k takes whole numbers of at least 1, separated by commas; got {value!r}."
        )
    return k


def rank_lists(recs: pl.DataFrame) -> pl.DataFrame:
    """Normalise any recommendations to user_id, item_id, pos (1-based, Int32), one row per pair.

    Order: by ``rank`` ascending if the column exists, else by ``score``
    descending; equal rank/score broken by item_id ascending; a null (or NaN)
    rank or score comes last. A repeated (user, item) keeps its best position;
    positions are renumbered 1..n per user. Missing user_id/item_id or neither
    rank nor score -> ``SchemaError`` naming the columns found and the ones
    needed. Null ids are dropped. Rows come out sorted by user_id, then pos.
    """
    return _rank(recs)[0]


def _rank(recs: pl.DataFrame) -> tuple[pl.DataFrame, IntArray]:
    """Rank lists as `rank_lists` does; also return the row where each user's list starts."""
    missing = [c for c in ID_COLUMNS if c not in recs.columns]
    key = "rank" if "rank" in recs.columns else "score"
    if missing or key not in recs.columns:
        raise SchemaError(
            f"The recommendations have columns {_listed(recs.columns)} but need user_id, item_id "
            "and rank or score; rename the columns or write lists with `recsim recommend`."
        )
    if not (recs.schema[key].is_numeric() or recs.schema[key] == pl.Null):
        raise SchemaError(
            f"Column '{key}' of the recommendations is {recs.schema[key]}, expected numbers; "
            f"cast it to a numeric type."
        )
    # The item hash is computed alongside (in parallel) for `_may_repeat` and travels with sorts.
    frame = recs.select(*ID_COLUMNS, key, pl.col("item_id").hash().alias("_item_hash"))
    if frame.select(pl.col(*ID_COLUMNS).null_count()).sum_horizontal().item():
        frame = frame.drop_nulls(ID_COLUMNS)
    if frame.schema[key].is_float():
        frame = frame.with_columns(pl.col(key).fill_nan(None))
    descending = key == "score"
    starts = _starts(frame)
    if not _is_ranked(frame, key, starts, descending=descending):
        frame = frame.sort(
            ["user_id", key, "item_id"], descending=[False, descending, False], nulls_last=True
        )
        starts = _starts(frame)
    if _may_repeat(frame, starts):
        # Sorted best first, so the first of a repeated (user, item) is its best position.
        frame = frame.filter(pl.struct(*ID_COLUMNS).is_first_distinct())
        starts = _starts(frame)
    # Positions count up from 1 and jump back to 1 where each user's list starts.
    pos = np.ones(frame.height, dtype=np.int32)
    pos[starts[1:]] = 1 - np.diff(starts).astype(np.int32)
    np.cumsum(pos, out=pos)
    ranked = frame.select(*ID_COLUMNS).with_columns(pl.Series("pos", pos, dtype=pl.Int32))
    return ranked, starts


def _starts(frame: pl.DataFrame) -> IntArray:
    """The rows where a new run of user_id begins."""
    users = frame["user_id"]
    if users.is_empty():
        return np.zeros(0, dtype=np.int64)
    changed = (users.slice(1) != users.slice(0, users.len() - 1)).arg_true().to_numpy()
    return np.concatenate(([0], changed.astype(np.int64) + 1))


def _is_ranked(frame: pl.DataFrame, key: str, starts: IntArray, *, descending: bool) -> bool:
    """Whether ``frame`` is already sorted by user, then key, then item (no sort needed).

    Checked with numpy on the key and on the first row of each user, so that
    lists written in order (as `recsim recommend` writes them) skip the sort.
    """
    if frame[key].null_count():
        return False
    firsts = frame["user_id"].gather(starts)
    if not (firsts.slice(1) > firsts.slice(0, max(len(firsts) - 1, 0))).all():
        return False  # users out of order, or one user's rows not together
    values = frame[key].to_numpy()
    between_users = starts[1:] - 1  # steps from one user's last row to the next one's first
    worse = values[1:] > values[:-1] if descending else values[1:] < values[:-1]
    worse[between_users] = False
    if worse.any():
        return False
    tied = values[1:] == values[:-1]
    tied[between_users] = False
    rows = np.flatnonzero(tied)
    items = frame["item_id"]
    return bool((items.gather(rows + 1) > items.gather(rows)).all())


def _may_repeat(frame: pl.DataFrame, starts: IntArray) -> bool:
    """Whether a user's list may hold an item twice: exact when False (hash collisions only add).

    Each list's item hashes go in one row of a grid (padded with distinct
    values), the rows are sorted, and a repeat is two equal neighbours: much
    faster than a hash set over every row, which remains for very ragged lists.
    """
    n, users = frame.height, starts.size
    lengths = np.diff(starts, append=n)
    width = int(lengths.max(initial=0))
    if users * width > 2 * n + 1024:
        pair = pl.col("user_id").hash(seed=1) ^ pl.col("_item_hash")  # seeds differ: no symmetry
        return bool(frame.select(pair.n_unique()).item() < n)
    hashes = frame["_item_hash"].to_numpy()
    if users * width == n:
        grid = hashes.reshape(users, width)
    else:
        grid = np.tile(np.iinfo(np.uint64).max - np.arange(width, dtype=np.uint64), (users, 1))
        cell = np.arange(n) + np.repeat(np.arange(users) * width - starts, lengths)
        grid.ravel()[cell] = hashes
    block = max(1, GRID_BLOCK // max(width, 1))  # blocks of rows that stay in cache
    for first in range(0, users, block):
        ordered = np.sort(grid[first : first + block], axis=1)
        if (ordered[:, 1:] == ordered[:, :-1]).any():
            return True
    return False


@dataclass(frozen=True)
class UserMetrics:
    """Every requested metric at every cut-off, one row per user with a relevant item.

    ``per_user``: user_id, n_relevant (Int64), n_recommended (Int64), then one
    Float64 column per (metric, k) named ``metric@k``, ordered by metric then
    k; sorted by user_id. A user with relevant items but no list has
    n_recommended 0 and every metric 0.
    """

    per_user: pl.DataFrame
    users_without_relevant: int
    users_without_recommendations: int


def user_metrics(
    recs: pl.DataFrame,
    truth: pl.DataFrame,
    *,
    ks: Sequence[int],
    metrics: Sequence[str] = METRIC_NAMES,
    map_denominator: MapDenominator = "min",
) -> UserMetrics:
    """Compute ``metrics`` at every cut-off in ``ks`` for each user with a relevant item.

    ``recs``: anything `rank_lists` accepts. ``truth``: user_id, item_id, the
    relevant pairs (duplicates and null ids ignored). Users with a list but no
    relevant item are left out of ``per_user`` and counted in
    ``users_without_relevant``; users with relevant items but no list are kept
    with zeros and counted in ``users_without_recommendations``. Metric
    columns follow the order of ``metrics``.
    """
    names = parse_metrics(metrics)
    cutoffs = parse_ks(ks)
    if map_denominator not in MAP_DENOMINATORS:
        raise ConfigError(
            f"--map-denominator must be one of {', '.join(MAP_DENOMINATORS)}; "
            f"got {map_denominator!r}."
        )
    missing = [c for c in ID_COLUMNS if c not in truth.columns]
    if missing:
        raise SchemaError(
            f"The relevant items have columns {_listed(truth.columns)} but need user_id and "
            "item_id; rename the columns."
        )
    ranked, starts = _rank(recs)
    relevant = truth.select(ID_COLUMNS).drop_nulls()  # repeated pairs: n_unique and semi-join
    ranked, relevant = _align_ids(ranked, relevant)

    users = (
        relevant.group_by("user_id")
        .agg(pl.col("item_id").n_unique().cast(pl.Int64).alias("n_relevant"))
        .sort("user_id")
        .with_row_index("_user")
    )
    listed = pl.DataFrame(
        {
            "user_id": ranked["user_id"].gather(starts),
            "n_recommended": np.diff(np.append(starts, ranked.height)),
        },
        schema_overrides={"n_recommended": pl.Int64},
    )
    table = users.join(listed, on="user_id", how="left", maintain_order="left").with_columns(
        pl.col("n_recommended").fill_null(0)
    )
    evaluated_listed = listed.join(users, on="user_id", how="semi").height

    found = (
        ranked.filter(pl.col("pos") <= cutoffs[-1])
        .join(relevant, on=list(ID_COLUMNS), how="semi")
        .join(users.select("user_id", "_user"), on="user_id")
        .select("_user", "pos")
    )
    hits = _hits(
        users["n_relevant"].to_numpy().astype(np.int64),
        found["_user"].to_numpy().astype(np.int64),
        found["pos"].to_numpy().astype(np.int64),
        map_denominator,
    )
    values = [
        pl.Series(metric_column(name, k), METRICS[name].compute(hits, k), dtype=pl.Float64)
        for name in names
        for k in cutoffs
    ]
    per_user = table.select("user_id", "n_relevant", "n_recommended").hstack(values)
    return UserMetrics(
        per_user=per_user,
        users_without_relevant=listed.height - evaluated_listed,
        users_without_recommendations=int((table["n_recommended"] == 0).sum()),
    )


def _hits(
    n_relevant: IntArray, user: IntArray, pos: IntArray, map_denominator: MapDenominator
) -> Hits:
    """Sort the hits by (user, position) and number each user's hits 1, 2, ..."""
    order = np.lexsort((pos, user))
    user, pos = user[order], pos[order]
    first = np.flatnonzero(np.diff(user, prepend=-1) != 0)
    nth = np.arange(1, user.size + 1) - np.repeat(first, np.diff(np.append(first, user.size)))
    return Hits(n_relevant.size, n_relevant, user, pos, nth.astype(np.int64), map_denominator)


def _align_ids(ranked: pl.DataFrame, relevant: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Give both frames' id columns one type: a Null column (no rows) takes the other's."""
    for column in ID_COLUMNS:
        left, right = ranked.schema[column], relevant.schema[column]
        if left == pl.Null:
            ranked = ranked.with_columns(pl.col(column).cast(right))
        elif right == pl.Null:
            relevant = relevant.with_columns(pl.col(column).cast(left))
        elif left != right and not (left.is_numeric() and right.is_numeric()):
            raise SchemaError(
                f"Column '{column}' is {left} in the recommendations but {right} in the relevant "
                "items; cast one so both have the same type."
            )
    return ranked, relevant


def _listed(columns: Sequence[str]) -> str:
    return ", ".join(columns) if columns else "(none)"
