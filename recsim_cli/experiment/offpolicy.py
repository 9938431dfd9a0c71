"""Off-policy estimators of per-slate metrics, each ending in per-user sums.

A logged impression ``i`` shows item ``x_i`` at position ``p`` of slate ``k``
of a session (the slot ``s = (k, p)``), with the logging policy's propensity
``pi_b`` and outcomes ``r_i`` (clicked; watch seconds). A target policy is a
precomputed list per (user, day): slot ``s`` shows its rank ``k S + p``. For a
deterministic list ``pi_e(x_i | s) = 1[x_i == target item]``, so the
importance weight is ``w_i = 1[match] / pi_b`` (``--target-epsilon e``
smooths it to ``(1 - e) w_i + e``: the target becomes a mixture with the
logging policy). Each estimator turns every impression into a *pseudo
outcome* ``y_i`` whose per-user sums are the user's estimated clicks or watch
time on the target's slates:

* ``ips``: ``y_i = w_i r_i`` (Horvitz-Thompson; Li et al. 2011).
* ``snips`` (and ``replay``): self-normalised per slot,
  ``theta_s = sum_s w r / sum_s w``; the linearised pseudo outcome
  ``y_i = theta_s + (N_s / B_s) w_i (r_i - theta_s)``, with ``N_s`` the slot's
  impressions and ``B_s`` its weight sum, sums to ``sum_s N_s theta_s`` over
  all users, and its per-user sums carry the ratio's delta-method variance
  into the engine (Swaminathan & Joachims 2015). ``replay`` uses the weights
  ``1[accepted] 1[match]``: accepted impressions are the uniformly random
  ones (the ``explore`` column), or, without it, rejection sampling with
  probability ``min(pi_b) / pi_b`` (Li et al. 2011), its uniform draws a
  hash of the seed and the slot (``replay_uniforms``) so that Spark draws
  the same ones.
* ``dm``: ``y_i = q_i``, the session model's prediction for the target's item
  in the logged slot's context (Dudik et al. 2011).
* ``dr``: ``y_i = q_i + w_i (r_i - q_i)``; on a matched impression the logged
  item is the target's, so one prediction serves both terms (Dudik et al.
  2011, 2014).

Under the position-based click model (a click at a slot depends on the item
there, not on its neighbours) and exact propensities, ``ips`` and ``dr`` are
unbiased for the target's expected clicks at the logged slots, and
``snips``/``replay`` consistent. Formulas, diagnostics and references:
docs/offpolicy.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import polars as pl

from recsim_cli.errors import ConfigError, InternalError

Estimator = Literal["replay", "ips", "snips", "dm", "dr"]
ESTIMATORS: tuple[str, ...] = ("auto", "replay", "ips", "snips", "dm", "dr")
WEIGHTED: tuple[Estimator, ...] = ("replay", "ips", "snips", "dr")
SELF_NORMALISED: tuple[Estimator, ...] = ("replay", "snips")
MIN_MEAN_WEIGHT = (
    0.95  # a mean weight whose CI lies below this: the logs miss what the target shows
)
FloatArray = npt.NDArray[np.float64]

# The columns of the impressions frame the estimators read (``prepare_impressions``).
IMPRESSION_COLUMNS = (
    "user_id",
    "session_id",
    "day",
    "ts",
    "device",
    "slate",
    "position",
    "rank",
    "item_id",
    "clicked",
    "watch_s",
    "propensity",
    "explore",
)


def resolve_estimator(name: str, *, has_propensity: bool, has_explore: bool) -> Estimator:
    """Return the estimator ``name`` means for these logs; ``auto`` picks snips or dm.

    Raises ``ConfigError`` when the logs cannot support it: weighting needs
    propensities, replay needs propensities or the ``explore`` column.
    """
    if name not in ESTIMATORS:
        raise ConfigError(f"--estimator must be one of {', '.join(ESTIMATORS)}; got {name!r}.")
    if name == "auto":
        return "snips" if has_propensity else "dm"
    if name == "replay" and (has_propensity or has_explore):
        return "replay"
    if name in WEIGHTED and not has_propensity:
        extra = " or an explore column" if name == "replay" else ""
        raise ConfigError(
            f"--estimator {name} weights impressions by the logging policy's propensities, but "
            f"the logs in the window have no propensity column values{extra}; log propensities, "
            "or use --estimator dm (model-based: it cannot make the gate ship)."
        )
    return name  # type: ignore[return-value]


def prepare_impressions(events: pl.DataFrame) -> tuple[pl.DataFrame, int, int]:
    """Return the window's impressions with ``day``, ``rank``, and float outcomes; S; slates.

    ``day`` is the UTC date of the session's first event (a session after
    midnight still sees the lists of the day it started), ``rank`` the slot's
    0-based rank ``slate * S + position`` with S the largest position + 1.
    Rows without a slate or position cannot be placed in a list: a
    ``ConfigError`` says so.
    """
    for column in ("slate", "position", "session_id"):
        if column not in events.columns or events.get_column(column).null_count():
            raise ConfigError(
                f"off-policy estimates place each impression in a slate: the events need a "
                f"{column} on every row in the window (see the data contract in docs/data.md)."
            )
    slate_size = int(events.get_column("position").max()) + 1  # type: ignore[arg-type]
    max_slates = int(events.get_column("slate").max()) + 1  # type: ignore[arg-type]
    optional = {
        "device": pl.lit(None, dtype=pl.String),
        "propensity": pl.lit(None, dtype=pl.Float64),
        "explore": pl.lit(None, dtype=pl.Boolean),
    }
    frame = events.with_columns(
        [expr.alias(name) for name, expr in optional.items() if name not in events.columns]
    )
    frame = frame.with_columns(
        pl.lit(None, dtype=pl.Date).alias("day"),
        (pl.col("slate").cast(pl.Int64) * slate_size + pl.col("position"))
        .cast(pl.Int32)
        .alias("rank"),
        pl.col("clicked").cast(pl.Float64),
        pl.col("watch_time_s").cast(pl.Float64).alias("watch_s"),
        pl.col("propensity").cast(pl.Float64),
        pl.col("explore").cast(pl.Boolean),
        pl.col("slate").cast(pl.Int32),
        pl.col("position").cast(pl.Int32),
    ).select(IMPRESSION_COLUMNS)
    # An argsort and one gather: half the peak memory of DataFrame.sort on these string keys.
    order = frame.select(pl.arg_sort_by("user_id", "session_id", "slate", "position")).to_series()
    frame = frame[order]
    if frame.height:
        # Sorted, each session is a run of rows: its day is the date of its earliest event.
        starts = _runs(frame.get_column("user_id"), frame.get_column("session_id"))
        micros = frame.get_column("ts").dt.epoch("us").to_numpy()
        first_day = np.minimum.reduceat(micros, starts) // 86_400_000_000
        counts = np.diff(np.append(starts, frame.height))
        day = pl.Series("day", np.repeat(first_day, counts).astype(np.int32)).cast(pl.Date)
        frame = frame.with_columns(day)
    return frame, slate_size, max_slates


def group_lists(lists: pl.DataFrame) -> pl.DataFrame:
    """Return the lists as one row per (user_id, day) with ``items`` in rank order.

    Ranks must run 0..n-1 within each list (``daily_lists`` output does; a
    file's gaps are filled with nulls), so an item's index in ``items`` is its rank.
    """
    ranked = lists.select("user_id", "day", pl.col("rank").cast(pl.Int32), "item_id")
    width = int(ranked.get_column("rank").max() or 0) + 1  # type: ignore[arg-type]
    grouped = ranked.group_by("user_id", "day").agg(
        pl.col("item_id").sort_by("rank"), pl.col("rank").sort()
    )
    gaps = grouped.select((pl.col("rank").list.last() + 1 != pl.col("rank").list.len()).any())
    if gaps.item():
        # A file skipped ranks: fill every rank up to the longest list, null where missing.
        grid = grouped.select("user_id", "day").join(
            pl.DataFrame({"rank": pl.Series(range(width), dtype=pl.Int32)}), how="cross"
        )
        grouped = (
            grid.join(ranked, on=["user_id", "day", "rank"], how="left")
            .group_by("user_id", "day")
            .agg(pl.col("item_id").sort_by("rank"))
        )
    return grouped.select("user_id", "day", pl.col("item_id").alias("items"))


def attach_targets(impressions: pl.DataFrame, lists: pl.DataFrame) -> pl.Series:
    """Return, per impression, the item the target's list has at its (user, day, rank); or null.

    ``lists`` are long (user_id, day, rank, item_id) or grouped by
    :func:`group_lists`. Long lists whose ranks run 0..n-1 in each (user,
    day) are not copied: each impression finds its list's first row (by a
    binary search on integer user and day codes, ``_list_offsets``) and reads
    ``item_id`` at ``first + rank``, so memory grows with the impressions, not
    with lists x impressions.
    """
    keys = impressions.select("user_id", "day", "rank")
    if "items" in lists.columns:
        joined = keys.join(lists, on=["user_id", "day"], how="left", maintain_order="left")
        return joined.select(
            pl.col("items").list.get(pl.col("rank"), null_on_oob=True).alias("target_item")
        ).to_series()
    if lists.is_empty():
        return pl.Series("target_item", [None] * impressions.height, dtype=pl.String)
    ordered = lists.select("user_id", "day", "rank", "item_id")
    first = _runs(ordered.get_column("user_id"), ordered.get_column("day"))
    count = np.diff(np.append(first, ordered.height))
    starts = ordered.select("user_id", "day")[first]
    rank = ordered.get_column("rank").to_numpy()
    # The offsets hold when each (user, day) is one run, the runs are in order, and each
    # run's ranks are 0..n-1 in order (what daily_lists gives); else look each slot up.
    step = np.diff(rank)
    step[first[1:] - 1] = 1  # a run's first rank is checked against 0 instead
    in_order = (
        _strictly_increasing(starts) and bool((rank[first] == 0).all()) and bool((step == 1).all())
    )
    if not in_order:
        return (
            keys.with_columns(pl.col("rank").cast(pl.Int64))
            .join(
                ordered.with_columns(pl.col("rank").cast(pl.Int64)),
                on=["user_id", "day", "rank"],
                how="left",
                maintain_order="left",
            )
            .get_column("item_id")
            .alias("target_item")
        )
    at = _list_offsets(impressions, starts, first, count)
    if at is None:  # the impressions are not sorted by user: join on (user, day) instead
        starts = starts.with_columns(
            pl.Series("_first", first, dtype=pl.Int64), pl.Series("_n", count, dtype=pl.Int64)
        )
        at = (
            keys.join(
                starts.select("user_id", "day", "_first", "_n"),
                on=["user_id", "day"],
                how="left",
                maintain_order="left",
            )
            .select(
                pl.when((pl.col("rank") >= 0) & (pl.col("rank") < pl.col("_n")))
                .then(pl.col("_first") + pl.col("rank"))
                .otherwise(None)
                .alias("_at")
            )
            .to_series()
        )
    return ordered.get_column("item_id").gather(at).alias("target_item")


def _category_codes(*columns: pl.Series) -> list[npt.NDArray[np.int64]]:
    """Integer codes of string columns, equal for equal strings across the columns.

    The codes of one polars ``Categories``, numbered in order of first sight.
    """
    dtype = pl.Categorical(pl.Categories.random())
    cast = [c.cast(dtype) for c in columns]  # the mapping lives while a column of it does
    return [c.to_physical().to_numpy().astype(np.int64) for c in cast]


def sorted_codes(values: pl.Series) -> tuple[npt.NDArray[np.int64], pl.Series] | None:
    """Return ``(codes, distinct)`` of a column sorted ascending, or None when it is not.

    ``codes[i]`` is the index of ``values[i]`` in ``distinct``, the column's
    values in order without repeats. Found from the runs of equal values, so
    no string is hashed or copied beyond the distinct ones.
    """
    starts = _runs(values)
    distinct = values.gather(starts)
    later = distinct.slice(1) > distinct.slice(0, max(len(distinct) - 1, 0))
    if distinct.null_count() or not bool(later.all()):
        return None
    counts = np.diff(np.append(starts, len(values)))
    return np.repeat(np.arange(len(starts), dtype=np.int64), counts), distinct


def _list_offsets(
    impressions: pl.DataFrame,
    starts: pl.DataFrame,
    first: npt.NDArray[np.int64],
    count: npt.NDArray[np.int64],
) -> pl.Series | None:
    """Row of each impression's target in the long lists (null when its list has none there).

    ``starts`` are the lists' (user_id, day) runs in strictly increasing order,
    ``first`` and ``count`` their first rows and lengths. Impressions sorted by
    user (``prepare_impressions``) are matched with integer keys
    ``user code * days + day`` and a binary search, instead of a join on the
    user strings: a few int64 arrays per impression. None when the
    impressions are not sorted by user.
    """
    window = sorted_codes(impressions.get_column("user_id"))
    listed = sorted_codes(starts.get_column("user_id"))
    if window is None or listed is None or not impressions.height:
        return None
    window_codes, window_users = window
    list_codes, list_users = listed
    # Each window user's code among the listed users; -1 for a user without lists.
    to_list = (
        window_users.to_frame("user_id")
        .join(
            list_users.to_frame("user_id").with_row_index("_code"),
            on="user_id",
            how="left",
            maintain_order="left",
        )
        .get_column("_code")
        .cast(pl.Int64)
        .fill_null(-1)
        .to_numpy()
    )
    # Arrays are updated in place and dropped early: a handful of int64s per impression.
    key = to_list[window_codes]
    del window_codes
    ok = key >= 0
    day = impressions.get_column("day").to_physical().to_numpy()
    list_day = starts.get_column("day").to_physical().to_numpy().astype(np.int64)
    low = min(int(day.min()), int(list_day.min()))
    span = max(int(day.max()), int(list_day.max())) - low + 1
    list_key = list_codes * span + (list_day - low)
    key *= span
    key += day
    key -= low
    pos = np.searchsorted(list_key, key)
    np.minimum(pos, len(list_key) - 1, out=pos)
    ok &= list_key[pos] == key
    del key
    rank = impressions.get_column("rank").to_numpy()
    ok &= (rank >= 0) & (rank < count[pos])
    at = first[pos]
    del pos
    at += rank
    return pl.Series("_at", at).scatter(np.flatnonzero(~ok), None)


def _strictly_increasing(keys: pl.DataFrame) -> bool:
    """Whether the rows of (user_id, day) keys are in strictly increasing order."""
    if keys.height < 2:
        return True
    user, day = pl.col("user_id"), pl.col("day")
    after = (user > user.shift(1)) | ((user == user.shift(1)) & (day > day.shift(1)))
    return bool(keys.select(after.slice(1).all()).item())


@dataclass(frozen=True)
class Weights:
    """Importance weights of one target against the logs, and what they say about coverage."""

    w: FloatArray  # pi_e / pi_b per impression (0 where the target shows another item)
    match: npt.NDArray[np.bool_]  # the target shows the logged item at the logged slot


def importance_weights(
    impressions: pl.DataFrame, target: pl.Series | None, *, target_epsilon: float = 0.0
) -> Weights:
    """Return ``w = (1 - e) 1[match] / pi_b + e`` per impression; 1 everywhere for ``logged``.

    Impressions without a propensity get weight 0 (counted by the caller).
    """
    n = impressions.height
    if target is None:  # the logging policy itself: pi_e = pi_b
        return Weights(np.ones(n), np.ones(n, dtype=np.bool_))
    match = (target == impressions.get_column("item_id")).fill_null(False).to_numpy()
    pi_b = impressions.get_column("propensity").to_numpy().astype(np.float64)
    known = np.isfinite(pi_b) & (pi_b > 0)
    w = np.zeros(n)
    w[known] = match[known] / pi_b[known]
    if target_epsilon:
        w[known] = (1.0 - target_epsilon) * w[known] + target_epsilon
    return Weights(w, np.asarray(match, dtype=np.bool_))


def replay_acceptance(
    impressions: pl.DataFrame, draws: np.random.Generator | FloatArray
) -> FloatArray:
    """Return 1 for impressions replay may use: explored ones, else a rejection sample.

    With the ``explore`` column, the impressions of uniformly random slates.
    Without it, each impression is accepted with probability
    ``min(pi_b) / pi_b`` (the accepted ones are as if logged uniformly): it is
    accepted when its uniform draw ``u < min(pi_b) / pi_b``. ``draws`` are the
    uniforms, one per impression (``replay_uniforms``, which both engines
    compute alike), or a generator to draw them from.
    """
    explore = impressions.get_column("explore")
    if explore.null_count() < explore.len():
        return explore.fill_null(False).cast(pl.Float64).to_numpy()
    pi_b = impressions.get_column("propensity").to_numpy().astype(np.float64)
    known = np.isfinite(pi_b) & (pi_b > 0)
    floor = float(pi_b[known].min()) if known.any() else 1.0
    u = draws.random(len(pi_b)) if isinstance(draws, np.random.Generator) else draws
    return np.where(known & (u < floor / np.where(known, pi_b, 1.0)), 1.0, 0.0)


# -- replay's uniform draws: Spark's xxhash64, so Spark SQL computes the same numbers --------

_U64 = np.uint64
_P1, _P2, _P3, _P4, _P5 = (
    _U64(0x9E3779B185EBCA87),
    _U64(0xC2B2AE3D27D4EB4F),
    _U64(0x165667B19E3779F9),
    _U64(0x85EBCA77C2B2AE63),
    _U64(0x27D4EB2F165667C5),
)
XXHASH_SEED = 42
"""The seed of Spark SQL's ``xxhash64``: the hash of the first column starts from it."""
UintArray = npt.NDArray[np.uint64]


def _rotl(x: UintArray, r: int) -> UintArray:
    return (x << _U64(r)) | (x >> _U64(64 - r))


def _fmix(h: UintArray) -> UintArray:
    h = (h ^ (h >> _U64(33))) * _P2
    h = (h ^ (h >> _U64(29))) * _P3
    return h ^ (h >> _U64(32))


def xxhash64_long(values: npt.NDArray[np.int64], seed: UintArray) -> UintArray:
    """XXH64 of each 8-byte little-endian ``values[i]`` with seed ``seed[i]`` (Spark's hashLong)."""
    with np.errstate(over="ignore"):
        h = seed + _P5 + _U64(8)
        h ^= _rotl(values.astype(np.int64).view(np.uint64) * _P2, 31) * _P1
        return _fmix(_rotl(h, 27) * _P1 + _P4)


def xxhash64_int(values: npt.NDArray[np.int32], seed: UintArray) -> UintArray:
    """XXH64 of each 4-byte little-endian ``values[i]`` with seed ``seed[i]`` (Spark's hashInt)."""
    with np.errstate(over="ignore"):
        h = seed + _P5 + _U64(4)
        h ^= values.astype(np.int32).view(np.uint32).astype(np.uint64) * _P1
        return _fmix(_rotl(h, 23) * _P2 + _P3)


def xxhash64_strings(values: pl.Series, seed: UintArray) -> UintArray:
    """XXH64 of each string's UTF-8 bytes with seed ``seed[i]`` (Spark's hash of a string).

    Vectorised over the strings of each byte length.
    """
    raw = [v.encode() for v in values.cast(pl.String).to_list()]
    lengths = np.array([len(r) for r in raw], dtype=np.int64)
    out = np.zeros(len(raw), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for length in np.unique(lengths).tolist():
            at = np.flatnonzero(lengths == length)
            data = np.frombuffer(b"".join(raw[i] for i in at), dtype=np.uint8)
            data = data.reshape(len(at), length)
            out[at] = _xxhash64_block(data, seed[at])
    return out


def _xxhash64_block(data: npt.NDArray[np.uint8], seed: UintArray) -> UintArray:
    """XXH64 of each row of ``data`` (rows of equal length) with its seed."""
    length = data.shape[1]

    def word(at: int, size: int) -> UintArray:
        chunk = np.ascontiguousarray(data[:, at : at + size]).view(f"<u{size}")
        return chunk.ravel().astype(np.uint64)

    at = 0
    if length >= 32:
        lanes = [seed + _P1 + _P2, seed + _P2, seed.copy(), seed - _P1]
        while at <= length - 32:
            for j in range(4):
                lanes[j] = _rotl(lanes[j] + word(at + 8 * j, 8) * _P2, 31) * _P1
            at += 32
        h = _rotl(lanes[0], 1) + _rotl(lanes[1], 7) + _rotl(lanes[2], 12) + _rotl(lanes[3], 18)
        for lane in lanes:
            h = (h ^ (_rotl(lane * _P2, 31) * _P1)) * _P1 + _P4
    else:
        h = seed + _P5
    h = h + _U64(length)
    while at <= length - 8:
        h ^= _rotl(word(at, 8) * _P2, 31) * _P1
        h = _rotl(h, 27) * _P1 + _P4
        at += 8
    if at + 4 <= length:
        h ^= word(at, 4) * _P1
        h = _rotl(h, 23) * _P2 + _P3
        at += 4
    while at < length:
        h ^= data[:, at].astype(np.uint64) * _P5
        h = _rotl(h, 11) * _P1
        at += 1
    return _fmix(h)


def replay_uniforms(impressions: pl.DataFrame, seed: int) -> FloatArray:
    """Return replay's uniform draw in [0, 1) for each impression: a hash of seed and slot.

    ``u = (xxhash64(seed, user_id, session_id, slate, position) >>> 11) / 2^53``
    with Spark SQL's ``xxhash64`` (XXH64, seed 42, each column's hash seeding
    the next; ``seed`` a 64-bit, ``slate`` and ``position`` 32-bit integers),
    so both engines accept the same impressions whatever their order. The
    impressions are sorted by user and session (``prepare_impressions``);
    strings are hashed once per session.
    """
    n = impressions.height
    if not n:
        return np.zeros(0)
    start = xxhash64_long(np.array([seed], dtype=np.int64), np.array([XXHASH_SEED], np.uint64))
    starts = _runs(impressions.get_column("user_id"), impressions.get_column("session_id"))
    sessions = impressions.select("user_id", "session_id")[starts]
    h = xxhash64_strings(sessions.get_column("user_id"), np.repeat(start, len(starts)))
    h = xxhash64_strings(sessions.get_column("session_id"), h)
    h = np.repeat(h, np.diff(np.append(starts, n)))
    h = xxhash64_int(impressions.get_column("slate").to_numpy(), h)
    h = xxhash64_int(impressions.get_column("position").to_numpy(), h)
    return (h >> _U64(11)).astype(np.float64) / float(1 << 53)


def self_normalised(y: FloatArray, w: FloatArray, slot: npt.NDArray[np.int64]) -> FloatArray:
    """Return the per-slot self-normalised pseudo outcomes ``theta_s + (N_s/B_s) w (y - theta_s)``.

    Slots whose weights sum to 0 carry no information about the target: their
    pseudo outcomes are 0 (``uncovered_slots`` counts them).
    """
    n_slots = int(slot.max()) + 1 if len(slot) else 0
    count = np.bincount(slot, minlength=n_slots).astype(np.float64)
    weight = np.bincount(slot, weights=w, minlength=n_slots)
    weighted = np.bincount(slot, weights=w * y, minlength=n_slots)
    covered = weight > 0
    theta = np.divide(weighted, weight, out=np.zeros(n_slots), where=covered)
    scale = np.divide(count, weight, out=np.zeros(n_slots), where=covered)
    return np.where(covered[slot], theta[slot] + scale[slot] * w * (y - theta[slot]), 0.0)


def pseudo_outcomes(
    estimator: Estimator,
    y: FloatArray,
    *,
    w: FloatArray,
    slot: npt.NDArray[np.int64],
    q: FloatArray | None = None,
) -> FloatArray:
    """Return each impression's pseudo outcome under ``estimator`` (see the module docstring)."""
    if estimator == "ips":
        return w * y
    if estimator in SELF_NORMALISED:
        return self_normalised(y, w, slot)
    if q is None:
        raise InternalError(f"the {estimator} estimator needs the session model's predictions.")
    if estimator == "dm":
        return q
    return q + w * (y - q)


# The weight histogram's bins: a fixed grid of this many per decade, so arms' bins line up.
BINS_PER_DECADE = 4


@dataclass(frozen=True)
class WeightHistogram:
    """The importance weights' distribution: how many are 0, the rest on a log grid."""

    zeros: int
    edges: tuple[float, ...]  # 10^(k / BINS_PER_DECADE), k consecutive; () when no weight > 0
    counts: tuple[int, ...]  # weights in [edges[j], edges[j + 1]); one fewer than edges

    def to_dict(self) -> dict[str, Any]:
        """Return the histogram as JSON-ready values."""
        total = self.zeros + sum(self.counts)
        return {
            "zeros": self.zeros,
            "zero_share": self.zeros / total if total else None,
            "edges": list(self.edges),
            "counts": list(self.counts),
        }


def weight_histogram(w: FloatArray) -> WeightHistogram:
    """Count the weights ``w``: the zeros, and the others in bins of a quarter decade.

    Bin ``j`` holds ``10^(k/4) <= w < 10^((k+1)/4)`` for ``k = floor(4 log10 w)``,
    from the smallest non-zero weight's bin to the largest's.
    """
    positive = w[w > 0]
    zeros = len(w) - len(positive)
    if not len(positive):
        return WeightHistogram(zeros, (), ())
    k = np.floor(np.log10(positive) * BINS_PER_DECADE).astype(np.int64)
    low, high = int(k.min()), int(k.max())
    counts = np.bincount(k - low, minlength=high - low + 1)
    edges = tuple(10.0 ** (j / BINS_PER_DECADE) for j in range(low, high + 2))
    return WeightHistogram(zeros, edges, tuple(int(c) for c in counts))


@dataclass(frozen=True)
class WeightDiagnostics:
    """How well the logs cover a target: weights, effective sample size, uncovered slots."""

    impressions: int
    effective_sample_size: float  # (sum w)^2 / sum w^2
    nonzero_share: float
    max_weight: float
    mean_weight: float
    mean_weight_ci: tuple[float, float]  # 95%, users as clusters (delta method)
    unlogged_share: float  # target items at logged slots that nobody was shown that day
    missing_share: float  # logged slots where the target's list has no item
    uncovered_slots: int  # self-normalised estimators: slots with no weight at all
    without_propensity: int  # impressions whose propensity is missing (weight 0)
    histogram: WeightHistogram | None = None  # of the importance weights w

    @property
    def coverage_ok(self) -> bool:
        """False when the mean weight's CI lies entirely below ``MIN_MEAN_WEIGHT``."""
        return not self.mean_weight_ci[1] < MIN_MEAN_WEIGHT

    def to_dict(self) -> dict[str, Any]:
        """Return the diagnostics as JSON-ready values."""

        def clean(x: float) -> float | None:
            return x if math.isfinite(x) else None

        return {
            "impressions": self.impressions,
            "effective_sample_size": clean(self.effective_sample_size),
            "nonzero_share": clean(self.nonzero_share),
            "max_weight": clean(self.max_weight),
            "mean_weight": clean(self.mean_weight),
            "mean_weight_ci": [clean(self.mean_weight_ci[0]), clean(self.mean_weight_ci[1])],
            "unlogged_share": clean(self.unlogged_share),
            "missing_share": clean(self.missing_share),
            "uncovered_slots": self.uncovered_slots,
            "without_propensity": self.without_propensity,
            "histogram": None if self.histogram is None else self.histogram.to_dict(),
        }


def weight_diagnostics(
    impressions: pl.DataFrame,
    target: pl.Series | None,
    w: FloatArray,
    *,
    effective: FloatArray | None = None,
    slot: npt.NDArray[np.int64] | None = None,
) -> WeightDiagnostics:
    """Summarise the weights ``w`` of a target; ``effective`` are the weights actually used.

    The mean weight estimates the share of the target's slots the logging
    policy could have shown (``E_b[w] = P_e(pi_b > 0)``); its CI treats users
    as clusters. ``unlogged_share`` is the share of the target's items at the
    logged slots that no user was shown that day: items outside the logging
    policy's reach, which would silently count as no click.
    """
    n = len(w)
    used = w if effective is None else effective
    total, squares = float(used.sum()), float((used**2).sum())
    user = impressions.get_column("user_id")
    sorted_users = sorted_codes(user)
    codes = sorted_users[0] if sorted_users is not None else _category_codes(user)[0]
    per_user = np.bincount(codes, weights=w)
    count = np.bincount(codes).astype(np.float64)
    mean = float(w.sum() / n) if n else math.nan
    users = int((count > 0).sum())
    if users > 1:
        resid = per_user - mean * count
        se = math.sqrt(float((resid**2).sum()) * users / (users - 1)) / float(count.sum())
    else:
        se = math.nan
    unlogged = missing = 0.0
    if target is not None and n:
        # Integer keys day << 32 | item (categorical codes shared by both columns),
        # looked up in the sorted distinct keys the logs show: no per-impression join.
        day = impressions.get_column("day").to_physical().to_numpy().astype(np.int64)
        day -= int(day.min())
        known = target.is_not_null().to_numpy()
        logged, targeted = _category_codes(
            impressions.get_column("item_id"), target.filter(target.is_not_null())
        )
        shown = np.unique((day << 32) | logged)
        probe = (day[known] << 32) | targeted
        at = np.minimum(np.searchsorted(shown, probe), len(shown) - 1)
        missing = float(n - known.sum()) / n
        unlogged = float((shown[at] != probe).sum()) / n
    uncovered = 0
    if slot is not None and effective is not None and len(slot):
        mass = np.bincount(slot, weights=effective)
        present = np.bincount(slot) > 0
        uncovered = int((present & (mass <= 0)).sum())
    propensity = impressions.get_column("propensity")
    return WeightDiagnostics(
        impressions=n,
        effective_sample_size=total**2 / squares if squares > 0 else 0.0,
        nonzero_share=float((used > 0).mean()) if n else math.nan,
        max_weight=float(used.max()) if n else math.nan,
        mean_weight=mean,
        mean_weight_ci=(mean - 1.96 * se, mean + 1.96 * se),
        unlogged_share=unlogged,
        missing_share=missing,
        uncovered_slots=uncovered,
        without_propensity=int(propensity.null_count()) if target is not None else 0,
        histogram=weight_histogram(w),
    )


# -- per-user sums ------------------------------------------------------------------------

SLATE_SUMS = (
    "first_clicks",
    "first_watch_s",
    "first_impressions",
    "first_slates",
    "clicks",
    "watch_s",
    "impressions",
    "slates",
)


def _runs(*keys: pl.Series) -> npt.NDArray[np.int64]:
    """Start offsets of the runs of equal consecutive keys (the frame is sorted by them)."""
    n = len(keys[0])
    change = np.zeros(n, dtype=np.bool_)
    if n:
        change[0] = True
    for key in keys:
        values = key.to_physical().to_numpy() if key.dtype != pl.String else None
        if values is None:
            same = (key.slice(1) == key.slice(0, n - 1)).fill_null(False).to_numpy()
        else:
            same = values[1:] == values[:-1]
        change[1:] |= ~same
    return np.flatnonzero(change).astype(np.int64)


def slate_sums(impressions: pl.DataFrame, clicks: FloatArray, watch: FloatArray) -> pl.DataFrame:
    """Sum pseudo outcomes per logged slate (user_id, session_id, slate): clicks, watch_s, n.

    A ``day`` column of the impressions (the session's, ``prepare_impressions``)
    is kept. ``impressions`` are sorted by user, session and slate,
    so each slate is a run of rows, summed in row order with ``np.add.reduceat``:
    the same inputs give the same bits, whatever the thread count.
    """
    starts = _runs(
        impressions.get_column("user_id"),
        impressions.get_column("session_id"),
        impressions.get_column("slate"),
    )
    key_columns = ["user_id", "session_id", "slate"]
    if "day" in impressions.columns:
        key_columns.append("day")
    if not len(starts):
        return (
            impressions.select(key_columns)
            .clear()
            .with_columns(
                pl.Series(name, [], dtype=pl.Float64)
                for name in ("clicks", "watch_s", "impressions")
            )
        )
    counts = np.diff(np.append(starts, impressions.height)).astype(np.float64)
    keys = impressions.select(key_columns)[starts]
    return keys.with_columns(
        pl.Series("clicks", np.add.reduceat(np.asarray(clicks, dtype=np.float64), starts)),
        pl.Series("watch_s", np.add.reduceat(np.asarray(watch, dtype=np.float64), starts)),
        pl.Series("impressions", counts),
    )


def sum_runs(frame: pl.DataFrame, keys: list[str], columns: dict[str, pl.Expr]) -> pl.DataFrame:
    """Sum each of ``columns`` over runs of equal ``keys`` of a frame sorted by them.

    The sums run in row order (``np.add.reduceat``), so they do not depend on
    threads; returns the keys of each run and one Float64 column per name.
    """
    starts = _runs(*(frame.get_column(k) for k in keys))
    out = frame.select(keys)[starts] if len(starts) else frame.select(keys).clear()
    values = frame.select(**columns)
    return out.with_columns(
        pl.Series(name, np.add.reduceat(values.get_column(name).to_numpy(), starts))
        if len(starts)
        else pl.Series(name, [], dtype=pl.Float64)
        for name in columns
    )


def per_user_slate_sums(slates: pl.DataFrame, keys: tuple[str, ...] = ("user_id",)) -> pl.DataFrame:
    """Sum a ``slate_sums`` frame per user, over first slates and over every logged slate.

    Returns ``user_id`` and ``SLATE_SUMS``, sorted by user; a first slate is
    one per session. ``keys=("user_id", "day")`` sums per user and day instead.
    Sums run in row order (deterministic).
    """
    first = (pl.col("slate") == 0).cast(pl.Float64)
    return sum_runs(
        slates.sort(*keys, maintain_order=True),
        list(keys),
        {
            "first_clicks": pl.col("clicks") * first,
            "first_watch_s": pl.col("watch_s") * first,
            "first_impressions": pl.col("impressions") * first,
            "first_slates": first,
            "clicks": pl.col("clicks"),
            "watch_s": pl.col("watch_s"),
            "impressions": pl.col("impressions"),
            "slates": pl.lit(1.0, dtype=pl.Float64),
        },
    )


def per_user_slate_index_sums(slates: pl.DataFrame) -> pl.DataFrame:
    """Sum a ``slate_sums`` frame per (user, slate index): clicks, watch_s, impressions, slates."""
    return sum_runs(
        slates.sort("user_id", "slate", maintain_order=True),
        ["user_id", "slate"],
        {
            "clicks": pl.col("clicks"),
            "watch_s": pl.col("watch_s"),
            "impressions": pl.col("impressions"),
            "slates": pl.lit(1.0, dtype=pl.Float64),
        },
    )
