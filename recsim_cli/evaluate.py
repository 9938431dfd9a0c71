"""Offline evaluation: registry models and recommendation files judged on a held-out window.

`evaluate` gathers the inputs (registry models, whose lists are made with
`TwoStageModel.recommend` as of the start of the window, and recommendation
files from any system), builds the truth of the held-out window, computes the
per-user metrics of `recsim_cli.metrics` for every input on the same users,
and summarises them: a 95% t-interval over users per mean (optionally a
seeded Poisson bootstrap), every metric's mean at every cut-off from 1 to the
largest k asked (the curves the HTML report plots), per segment (users first
seen in the window, and ``--by COLUMN``), and, for every pair of inputs, the
paired per-user difference with the statistics engine's paired t-test
(optionally a paired sign-flip randomisation test), Holm-corrected across all
(metric, k) tests of that pair. Definitions: docs/metrics.md.

The window: after the latest cutoff of the registry models (so all are judged
on the same days), or, with files only, the last ``test_days`` days
(`recsim_cli.split.dataset_cutoff`).

Two engines find the truth and compute the per-user metrics: `PolarsJudge`
on this machine, and `recsim_cli.spark.evaluate.SparkJudge` on Spark
(``engine="spark"``, docs/scale.md). Both return the same `HeldOut` and
`Measured`; everything after them (the summaries, pairs and segments) is
shared, so the two reports differ only in the last bits of floats.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

import numpy as np
import polars as pl

from recsim_cli import REPORT_SCHEMA_VERSION, __version__
from recsim_cli.dataset import Dataset, open_dataset
from recsim_cli.errors import ConfigError, DatasetError, InputFileError
from recsim_cli.metrics import (
    METRIC_NAMES,
    METRICS,
    Hits,
    MapDenominator,
    UserMetrics,
    metric_column,
    parse_ks,
    parse_metrics,
    rank_lists,
    user_metrics,
)
from recsim_cli.progress import Progress, no_progress
from recsim_cli.spark.session import ENGINES, Engine, SparkConfig
from recsim_cli.split import complete_items, dataset_cutoff
from recsim_cli.times import format_ts

if TYPE_CHECKING:
    from recsim_cli.models.two_stage import TwoStageModel

FRESH_DAYS: Final = 7
NEW_SEGMENT: Final = "new"
RETURNING_SEGMENT: Final = "returning"
ALPHA: Final = 0.05
KIND: Final = "recsim evaluate report"
SCHEMA_VERSION: Final = REPORT_SCHEMA_VERSION


# -- relevance -------------------------------------------------------------------------


@dataclass(frozen=True)
class Relevance:
    """What counts as relevant: a click, or a watch of at least ``fraction`` of the video."""

    kind: Literal["clicked", "watched"] = "clicked"
    fraction: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Relevance:
        """Parse ``clicked`` or ``watched:0.5``."""
        if text == "clicked":
            return cls()
        match = re.fullmatch(r"watched:([0-9]*\.?[0-9]+)", text)
        if match is None or not 0 < float(match.group(1)) <= 1:
            raise ConfigError(
                f"--relevance {text}: give clicked, or watched:F with F in (0, 1], "
                "e.g. watched:0.5."
            )
        return cls("watched", float(match.group(1)))

    @property
    def label(self) -> str:
        return "clicked" if self.kind == "clicked" else f"watched:{self.fraction:g}"

    def expression(self) -> pl.Expr:
        """True on relevant events (needs clicked, watch_time_s, duration_s)."""
        if self.kind == "clicked":
            return pl.col("clicked")
        return pl.col("clicked") & (pl.col("watch_time_s") >= self.fraction * pl.col("duration_s"))


# -- inputs ------------------------------------------------------------------------------


@dataclass
class EvalInput:
    """One thing evaluated: a registry model or a recommendations file."""

    label: str
    kind: Literal["model", "file"]
    source: str
    cutoff: datetime | None = None
    model: TwoStageModel | None = None
    recs: Any = None  # a file's lists: a polars frame, or a Spark DataFrame with --engine spark


def read_recommendations(path: Path) -> pl.DataFrame:
    """Read a recommendations file (Parquet or CSV) with user_id, item_id and rank or score."""
    from recsim_cli.errors import SchemaError

    if not path.is_file():
        raise InputFileError(f"{path} does not exist; give a Parquet or CSV file to --recs.")
    try:
        if path.suffix == ".parquet":
            frame = pl.read_parquet(path)
        elif path.suffix in (".csv", ".gz") or path.name.endswith(".csv.gz"):
            frame = pl.read_csv(path, infer_schema_length=10_000)
        else:
            raise InputFileError(
                f"{path}: unknown format; give recommendations as .parquet or .csv."
            )
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise InputFileError(f"{path} cannot be read as recommendations ({exc}).") from exc
    missing = [c for c in ("user_id", "item_id") if c not in frame.columns]
    if missing or not ({"rank", "score"} & set(frame.columns)):
        raise SchemaError(
            f"{path} needs columns user_id, item_id and rank or score; found "
            f"{', '.join(frame.columns) or 'none'}."
        )
    return frame.with_columns(pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String))


def _unique_labels(labels: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label}#{seen[label]}")
    return out


# -- results -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MeanCI:
    """A mean over users with its 95% t-interval (and a bootstrap interval when asked)."""

    mean: float
    low: float
    high: float
    n: int
    boot_low: float | None = None
    boot_high: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mean": _num(self.mean),
            "ci_low": _num(self.low),
            "ci_high": _num(self.high),
            "users": self.n,
        }
        if self.boot_low is not None:
            out["bootstrap_low"] = _num(self.boot_low)
            out["bootstrap_high"] = _num(self.boot_high)
        return out


@dataclass(frozen=True)
class PairTest:
    """One (metric, k) paired comparison of ``other`` minus ``base`` over the same users."""

    metric: str
    difference: float
    low: float
    high: float
    p_value: float
    adjusted_p: float
    permutation_p: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "metric": self.metric,
            "difference": _num(self.difference),
            "ci_low": _num(self.low),
            "ci_high": _num(self.high),
            "p_value": _num(self.p_value),
            "holm_p": _num(self.adjusted_p),
        }
        if self.permutation_p is not None:
            out["permutation_p"] = _num(self.permutation_p)
        return out


@dataclass(frozen=True)
class Curve:
    """One metric's mean over users at every cut-off k = 1, 2, ..., K, with 95% t-intervals."""

    mean: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": [_num(v) for v in self.mean],
            "ci_low": [_num(v) for v in self.low],
            "ci_high": [_num(v) for v in self.high],
        }


@dataclass(frozen=True)
class InputResult:
    """Everything measured for one input."""

    label: str
    kind: str
    source: str
    cutoff: datetime | None
    means: dict[str, MeanCI]
    segments: dict[str, dict[str, dict[str, MeanCI]]]  # segmentation -> value -> metric -> CI
    users_without_relevant: int
    users_without_recommendations: int
    coverage: float
    fresh_share: float
    candidate_recall: MeanCI | None
    curves: dict[str, Curve] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "kind": self.kind,
            "source": self.source,
            "cutoff": format_ts(self.cutoff),
            "metrics": {name: ci.to_dict() for name, ci in self.means.items()},
            "segments": {
                seg: {
                    value: {name: ci.to_dict() for name, ci in cis.items()}
                    for value, cis in values.items()
                }
                for seg, values in self.segments.items()
            },
            "users_without_relevant": self.users_without_relevant,
            "users_without_recommendations": self.users_without_recommendations,
            "catalogue_coverage": _num(self.coverage),
            "fresh_share": _num(self.fresh_share),
            "candidate_recall": None
            if self.candidate_recall is None
            else self.candidate_recall.to_dict(),
            "curves": {name: curve.to_dict() for name, curve in self.curves.items()},
        }


@dataclass(frozen=True)
class EvalReport:
    """The result of `evaluate`: per input, per pair, and the rules that produced it."""

    data: str
    window_start: datetime
    window_end: datetime
    users: int
    new_users: int
    relevant_pairs: int
    ks: tuple[int, ...]
    metrics: tuple[str, ...]
    relevance: Relevance
    map_denominator: MapDenominator
    include_seen: bool
    by: str | None
    bootstrap: int
    permutations: int
    seed: int
    n_candidates: int | None
    catalogue_items: int
    inputs: tuple[InputResult, ...]
    pairs: tuple[tuple[str, str, tuple[PairTest, ...]], ...]
    per_user: pl.DataFrame = field(repr=False)
    seconds: float = 0.0

    @property
    def columns(self) -> list[str]:
        return [metric_column(m, k) for m in self.metrics for k in self.ks]

    def to_dict(self) -> dict[str, Any]:
        """The JSON report (schema: docs/reports.md); everything the HTML report draws."""
        return {
            "kind": KIND,
            "schema_version": REPORT_SCHEMA_VERSION,
            "recsim_version": __version__,
            "data": self.data,
            "window": {
                "start": format_ts(self.window_start),
                "end": format_ts(self.window_end),
            },
            "users": self.users,
            "new_users": self.new_users,
            "relevant_pairs": self.relevant_pairs,
            "k": list(self.ks),
            "curve_k": list(range(1, max(self.ks) + 1)),
            "metrics": list(self.metrics),
            "confidence": 1 - ALPHA,
            "catalogue_items": self.catalogue_items,
            "definitions": definitions(self.map_denominator, self.relevance, self.include_seen),
            "by": self.by,
            "bootstrap": self.bootstrap,
            "permutations": self.permutations,
            "seed": self.seed,
            "n_candidates": self.n_candidates,
            "inputs": [i.to_dict() for i in self.inputs],
            "pairs": [
                {"base": a, "other": b, "tests": [t.to_dict() for t in tests]}
                for a, b, tests in self.pairs
            ],
        }


def definitions(
    map_denominator: MapDenominator, relevance: Relevance, include_seen: bool
) -> dict[str, str]:
    """The rules used, in words (written into the JSON report)."""
    ap_den = "min(k, |R|)" if map_denominator == "min" else "|R| (trec_eval map_cut)"
    return {
        "precision": "hits in the top k / k (always k)",
        "recall": "hits in the top k / |R|",
        "map": f"sum of precision@i at each relevant rank i <= k / {ap_den}",
        "ndcg": "binary gain, discount 1/log2(rank + 1), ideal over min(k, |R|)",
        "mrr": "1 / rank of the first hit within k, 0 if none",
        "hit_rate": "1 if any hit within k",
        "relevance": relevance.label,
        "seen_items": "kept in the truth"
        if include_seen
        else "items the user clicked before the window are left out of the truth",
        "users": "users with no relevant item are excluded (counted); users with relevant "
        "items but no recommendations score 0",
        "ties": "equal rank or score broken by item id ascending",
        "ci": "95% t-interval over users; pairs: paired t-test, Holm across (metric, k)",
        "coverage": "distinct items in the top max(k) lists / items in the catalogue",
        "fresh_share": f"share of top max(k) recommendations published within {FRESH_DAYS} "
        "days before the window",
    }


def _num(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


# -- statistics --------------------------------------------------------------------------


def mean_ci(values: np.ndarray[Any, Any], alpha: float = ALPHA) -> tuple[float, float, float]:
    """Mean and its t-interval: ``mean ± t_{1-alpha/2, n-1} sd / sqrt(n)`` (NaN for n < 2)."""
    from scipy import stats

    n = values.size
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if n < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(1 - alpha / 2, n - 1) * values.std(ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half


def bootstrap_ci(
    matrix: np.ndarray[Any, Any], resamples: int, rng: np.random.Generator, alpha: float = ALPHA
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Percentile CIs of column means by the Poisson bootstrap (weights ~ Poisson(1) per user).

    ``matrix`` is users x columns; each resample weighs users by independent
    Poisson(1) counts and takes the weighted mean (Hanley and MacGibbon 2006).
    Vectorised in chunks of resamples.
    """
    n, m = matrix.shape
    estimates = np.empty((resamples, m))
    chunk = max(1, min(resamples, 2_000_000 // max(n, 1)))
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        weights = rng.poisson(1.0, (size, n)).astype(np.float64)
        totals = np.maximum(weights.sum(axis=1, keepdims=True), 1.0)
        estimates[start : start + size] = (weights @ matrix) / totals
    low = np.quantile(estimates, alpha / 2, axis=0)
    high = np.quantile(estimates, 1 - alpha / 2, axis=0)
    return low, high


def sign_flip_p(
    differences: np.ndarray[Any, Any], permutations: int, rng: np.random.Generator
) -> np.ndarray[Any, Any]:
    """Two-sided p-values of a paired randomisation test, one per column of ``differences``.

    Under the null each user's difference is as likely to have either sign;
    ``p = (1 + #{|mean(s d)| >= |mean(d)|}) / (1 + N)`` over N random sign
    vectors ``s`` (the +1 keeps p > 0 and the test exact-valid).
    """
    n, m = differences.shape
    observed = np.abs(differences.mean(axis=0))
    count = np.zeros(m)
    chunk = max(1, min(permutations, 2_000_000 // max(n, 1)))
    for start in range(0, permutations, chunk):
        size = min(chunk, permutations - start)
        signs = rng.integers(0, 2, (size, n), dtype=np.int8).astype(np.float64) * 2 - 1
        flipped = np.abs(signs @ differences) / n
        count += (flipped >= observed - 1e-12).sum(axis=0)
    result: np.ndarray[Any, Any] = (1 + count) / (1 + permutations)
    return result


def _summaries(
    frame: pl.DataFrame,
    columns: Sequence[str],
    bootstrap: int,
    rng: np.random.Generator | None,
) -> dict[str, MeanCI]:
    matrix = frame.select(columns).to_numpy().astype(np.float64)
    boots: tuple[Any, Any] | None = None
    if bootstrap and rng is not None and frame.height > 0:
        boots = bootstrap_ci(matrix, bootstrap, rng)
    out = {}
    for j, column in enumerate(columns):
        mean, low, high = mean_ci(matrix[:, j])
        out[column] = MeanCI(
            mean,
            low,
            high,
            frame.height,
            None if boots is None else float(boots[0][j]),
            None if boots is None else float(boots[1][j]),
        )
    return out


def metric_curves(
    ranked: pl.DataFrame,
    truth: pl.DataFrame,
    metrics: Sequence[str],
    max_k: int,
    map_denominator: MapDenominator = "min",
) -> dict[str, Curve]:
    """Each metric's mean over the users of ``truth`` at every k from 1 to ``max_k``, with CIs.

    ``ranked``: user_id, item_id, rank (1-based, as `rank_lists` numbers them);
    ``truth``: the unique relevant (user_id, item_id) pairs. The hits are
    found once; each (metric, k) is then one ``np.bincount`` over them with the
    metric's own function, so the curves equal the per-user metrics at every k
    and memory stays one value per user.
    """
    users = truth.group_by("user_id").agg(pl.len().cast(pl.Int64).alias("n_relevant"))
    ids = {c: truth.schema[c] for c in ("user_id", "item_id")}
    found = (
        ranked.select(pl.col(c).cast(dtype) for c, dtype in ids.items())
        .with_columns(ranked["rank"].cast(pl.Int64).alias("pos"))
        .filter(pl.col("pos") <= max_k)
        .join(truth.select(list(ids)), on=list(ids), how="semi")
        .select("user_id", "pos")
    )
    return hit_curves(hits_of(users, found, map_denominator), metrics, max_k)


def hits_of(users: pl.DataFrame, found: pl.DataFrame, map_denominator: MapDenominator) -> Hits:
    """The `Hits` of ``users`` (user_id, n_relevant) from ``found`` (user_id, pos of each hit).

    Users are numbered in user_id order; a hit of a user not in ``users`` is ignored.
    """
    users = users.sort("user_id").with_row_index("_user")
    found = found.join(users.select("user_id", "_user"), on="user_id")
    user = found["_user"].to_numpy().astype(np.int64)
    pos = found["pos"].to_numpy().astype(np.int64)
    order = np.lexsort((pos, user))
    user, pos = user[order], pos[order]
    first = np.flatnonzero(np.diff(user, prepend=-1) != 0)
    nth = np.arange(1, user.size + 1) - np.repeat(first, np.diff(np.append(first, user.size)))
    n_relevant = users["n_relevant"].to_numpy().astype(np.int64)
    return Hits(users.height, n_relevant, user, pos, nth.astype(np.int64), map_denominator)


def hit_curves(hits: Hits, metrics: Sequence[str], max_k: int) -> dict[str, Curve]:
    """Each metric's mean over the users of ``hits`` at every k from 1 to ``max_k``, with CIs."""
    from scipy import stats

    n = hits.n_users
    t = float(stats.t.ppf(1 - ALPHA / 2, n - 1)) if n > 1 else math.nan
    curves = {}
    for name in metrics:
        means, halves = np.empty(max_k), np.empty(max_k)
        for k in range(1, max_k + 1):
            values = METRICS[name].compute(hits, k)
            means[k - 1] = values.mean() if n else math.nan
            halves[k - 1] = t * values.std(ddof=1) / math.sqrt(n) if n > 1 else math.nan
        lows, highs = (means - halves).tolist(), (means + halves).tolist()
        curves[name] = Curve(tuple(means.tolist()), tuple(lows), tuple(highs))
    return curves


def compare_pair(
    base: pl.DataFrame,
    other: pl.DataFrame,
    columns: Sequence[str],
    *,
    permutations: int,
    rng: np.random.Generator | None,
) -> tuple[PairTest, ...]:
    """Paired per-user comparison of every column (``other - base``), Holm across columns."""
    from recsim_cli.experiment.comparison import Sample, compare
    from recsim_cli.experiment.multiple import adjust

    x = base.select(columns).to_numpy().astype(np.float64)
    y = other.select(columns).to_numpy().astype(np.float64)
    if x.shape[0] < 2:
        raise DatasetError("A paired comparison needs at least 2 users with relevant items.")
    result = compare(Sample.of(x.T, 1.0), Sample.of(y.T, 1.0), design="paired", alpha=ALPHA)
    p = np.asarray(result.p_value, dtype=np.float64)
    # a column that is identical for both inputs has no variance: no evidence of a difference
    p = np.where(np.isnan(p), 1.0, p)
    adjusted = adjust(p, "holm")
    flips = sign_flip_p(y - x, permutations, rng) if permutations and rng is not None else None
    return tuple(
        PairTest(
            metric=column,
            difference=float(result.difference[j]),
            low=float(result.ci_low[j]),
            high=float(result.ci_high[j]),
            p_value=float(p[j]),
            adjusted_p=float(adjusted[j]),
            permutation_p=None if flips is None else float(flips[j]),
        )
        for j, column in enumerate(columns)
    )


# -- the held-out window, on either engine ---------------------------------------------------


@dataclass(frozen=True)
class HeldOut:
    """The held-out window as an engine finds it: the judged users and the item table.

    ``users``: one row per user with a relevant item, sorted by user_id:
    user_id, n_relevant (Int64), ``first_seen`` (``new`` if the user has no
    event before the window, else ``returning``) and, with ``by``, ``by_value``
    (the user's most frequent value of that column in the window, ties to the
    smallest as text, null if none). ``items``: the complete item table
    (`complete_items`) of the whole dataset.
    """

    start: datetime
    end: datetime
    users: pl.DataFrame
    relevant_pairs: int
    items: pl.DataFrame
    by: str | None = None

    @property
    def new_users(self) -> int:
        """Users first seen in the window."""
        return int((self.users["first_seen"] == NEW_SEGMENT).sum())

    def segments(self) -> dict[str, pl.DataFrame]:
        """Each segmentation as user_id, segment: ``first_seen``, then ``by`` if asked."""
        out = {"first_seen": self.users.select("user_id", pl.col("first_seen").alias("segment"))}
        if self.by is not None:
            out[self.by] = self.users.select("user_id", pl.col("by_value").alias("segment"))
        return out

    @property
    def catalogue(self) -> pl.DataFrame:
        """Items published before the window: what a recommender could have shown."""
        return self.items.filter(pl.col("published_ts") < self.start)

    @property
    def fresh_since(self) -> datetime:
        """Items published at or after this (and before the window) are fresh."""
        return self.start - timedelta(days=FRESH_DAYS)


@dataclass(frozen=True)
class Measured:
    """One input judged: its per-user metrics, curves, catalogue coverage and fresh share."""

    metrics: UserMetrics
    curves: dict[str, Curve]
    coverage: float
    fresh_share: float


class Judge(Protocol):
    """What an engine provides to `evaluate`: the held-out window and the per-user metrics.

    ``recs`` is a polars frame (a registry model's lists, made on this machine)
    or what the engine's `read` returned for a recommendations file.
    """

    held_out: HeldOut

    def user_metrics(
        self,
        recs: Any,
        *,
        ks: Sequence[int],
        metrics: Sequence[str],
        map_denominator: MapDenominator,
    ) -> UserMetrics:
        """`recsim_cli.metrics.user_metrics` of ``recs`` against the held-out truth."""
        ...

    def measure(
        self,
        recs: Any,
        *,
        ks: Sequence[int],
        metrics: Sequence[str],
        map_denominator: MapDenominator,
    ) -> Measured:
        """The per-user metrics, the curves to ``max(ks)``, coverage and fresh share of ``recs``."""
        ...

    def serving_inputs(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The history before the window and the item table, for registry models to score."""
        ...

    def close(self) -> None:
        """Release what the engine holds for the window (Spark's cached truth)."""
        ...


def no_held_out_events(root: Path | str, start: datetime, owner: str) -> DatasetError:
    """The error for a window without events; ``owner`` is the input whose cutoff set it."""
    return DatasetError(
        f"The held-out window after {format_ts(start)} (the cutoff of "
        f"{owner}) holds no events in {root}; train with more --test-days or "
        "evaluate on a dataset with later logs."
    )


def no_relevant_users(relevance: Relevance, start: datetime) -> DatasetError:
    """The error for a window in which no user has a relevant item."""
    return DatasetError(
        f"No user has a relevant item ({relevance.label}) in the held-out window after "
        f"{format_ts(start)}; try --relevance clicked or --include-seen."
    )


def unknown_by(by: str, columns: Sequence[str]) -> ConfigError:
    """The error for ``--by`` naming no column of the dataset."""
    return ConfigError(
        f"--by {by}: the dataset has no such column; choose one of "
        f"{', '.join(c for c in columns if c not in ('ts', 'item_id'))}."
    )


def _segment_of(events: pl.DataFrame, users: pl.Series, column: str) -> pl.DataFrame:
    """Each user's most frequent value of ``column`` in ``events`` (ties: smallest; else null)."""
    counts = (
        events.select("user_id", pl.col(column).cast(pl.String).alias("segment"))
        .drop_nulls("segment")
        .group_by("user_id", "segment")
        .agg(pl.len().alias("_n"))
        .sort(["user_id", "_n", "segment"], descending=[False, True, False])
        .group_by("user_id", maintain_order=True)
        .first()
        .drop("_n")
    )
    return pl.DataFrame({"user_id": users}).join(counts, on="user_id", how="left")


class PolarsJudge:
    """The held-out window and the metrics computed with polars on this machine."""

    def __init__(
        self,
        dataset: Dataset,
        start: datetime | None,
        *,
        test_days: int,
        relevance: Relevance,
        include_seen: bool,
        by: str | None,
        owner: str,
    ) -> None:
        start = start if start is not None else dataset_cutoff(dataset, test_days)
        self.dataset = dataset
        self.events = events = dataset.events().collect()
        window = events.filter(pl.col("ts") >= start)
        if window.height == 0:
            raise no_held_out_events(dataset.root, start, owner)
        end = window["ts"].max()
        assert isinstance(end, datetime)
        before = events.filter(pl.col("ts") < start)
        items = complete_items(events, dataset.items().collect(), source=str(dataset.root))
        if by is not None and by not in events.columns:
            raise unknown_by(by, events.columns)
        truth = (
            window.join(items.select("item_id", "duration_s"), on="item_id", how="left")
            .filter(relevance.expression())
            .select("user_id", "item_id")
            .unique()
        )
        if not include_seen:
            seen = before.filter(pl.col("clicked")).select("user_id", "item_id").unique()
            truth = truth.join(seen, on=["user_id", "item_id"], how="anti")
        self.truth = truth.sort("user_id", "item_id")
        if self.truth.height == 0:
            raise no_relevant_users(relevance, start)
        known = before.select(pl.col("user_id").unique())
        users = (
            self.truth.group_by("user_id")
            .agg(pl.len().cast(pl.Int64).alias("n_relevant"))
            .sort("user_id")
            .with_columns(
                pl.when(pl.col("user_id").is_in(known["user_id"].implode()))
                .then(pl.lit(RETURNING_SEGMENT))
                .otherwise(pl.lit(NEW_SEGMENT))
                .alias("first_seen")
            )
        )
        if by is not None:
            by_value = _segment_of(window, users["user_id"], by).rename({"segment": "by_value"})
            users = users.join(by_value, on="user_id", how="left", maintain_order="left")
        self.held_out = HeldOut(start, end, users, self.truth.height, items, by)

    def user_metrics(
        self,
        recs: Any,
        *,
        ks: Sequence[int],
        metrics: Sequence[str],
        map_denominator: MapDenominator,
    ) -> UserMetrics:
        return user_metrics(
            recs, self.truth, ks=ks, metrics=metrics, map_denominator=map_denominator
        )

    def measure(
        self,
        recs: Any,
        *,
        ks: Sequence[int],
        metrics: Sequence[str],
        map_denominator: MapDenominator,
    ) -> Measured:
        max_k = max(ks)
        # ranked once: the metrics read the positions as ranks, coverage and freshness the top
        ranked = rank_lists(recs).rename({"pos": "rank"})
        measured = self.user_metrics(
            ranked, ks=ks, metrics=metrics, map_denominator=map_denominator
        )
        curves = metric_curves(ranked, self.truth, metrics, max_k, map_denominator)
        held = self.held_out
        top = ranked.filter(
            (pl.col("rank") <= max_k) & pl.col("user_id").is_in(held.users["user_id"].implode())
        )
        catalogue = held.catalogue
        fresh_items = catalogue.filter(pl.col("published_ts") >= held.fresh_since)
        coverage = top["item_id"].n_unique() / max(catalogue.height, 1)
        fresh = top.join(fresh_items.select("item_id"), on="item_id", how="semi").height / max(
            top.height, 1
        )
        return Measured(measured, curves, coverage, fresh)

    def serving_inputs(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        from recsim_cli.models.two_stage import serving_inputs

        return serving_inputs(self.dataset, self.held_out.start, events=self.events)

    def close(self) -> None:
        """Nothing to release: the frames go with the judge."""


# -- the evaluation ------------------------------------------------------------------------


def evaluate(
    models: Sequence[str] = (),
    recs_files: Sequence[Path] = (),
    *,
    data: Path | str | None = None,
    registry: Path = Path("recsim-models"),
    ks: Sequence[int] | str = (5, 10, 20),
    metrics: Sequence[str] | str = METRIC_NAMES,
    relevance: Relevance | None = None,
    map_denominator: MapDenominator = "min",
    include_seen: bool = False,
    by: str | None = None,
    test_days: int = 2,
    bootstrap: int = 0,
    permutations: int = 0,
    seed: int = 0,
    n_candidates: int | None = None,
    progress: Progress = no_progress,
    engine: Engine = "polars",
    spark: SparkConfig | None = None,
) -> EvalReport:
    """Evaluate registry ``models`` and ``recs_files`` on the held-out window of a dataset.

    ``engine="spark"`` joins the held-out truth and the lists and computes the
    per-user metrics on Spark (``spark`` says where; docs/scale.md); the
    summaries below are the same code on both engines.
    """
    from recsim_cli.models.two_stage import TwoStageModel
    from recsim_cli.registry import Registry
    from recsim_cli.rng import spawn_generators

    started = time.perf_counter()
    ks = parse_ks(ks)
    metric_names = parse_metrics(metrics)
    relevance = relevance or Relevance()
    if map_denominator not in ("min", "relevant"):
        raise ConfigError(
            f"--map-denominator {map_denominator}: give min (the default) or relevant."
        )
    if engine not in ENGINES:
        raise ConfigError(f"--engine {engine}: give polars (the default) or spark.")
    if not models and not recs_files:
        raise ConfigError("Nothing to evaluate: name registry models and/or give --recs FILE.")
    for number, name in ((bootstrap, "--bootstrap"), (permutations, "--permutations")):
        if number < 0:
            raise ConfigError(f"{name} must be 0 or more; got {number}.")
    if engine == "spark":
        from recsim_cli.spark.evaluate import SparkJudge, read_recommendations_spark
        from recsim_cli.spark.session import spark_session

        session = spark_session(spark)
    inputs: list[EvalInput] = []
    store = Registry(registry)
    for name in models:
        entry = store.open(name)
        model = TwoStageModel.load(entry)
        inputs.append(EvalInput(name, "model", str(entry.path), model.cutoff, model))
        if data is None:
            data = Path(str(entry.manifest["dataset"]["path"]))
    for path in recs_files:
        recs = (
            read_recommendations_spark(session, path)
            if engine == "spark"
            else read_recommendations(path)
        )
        inputs.append(EvalInput(path.stem, "file", str(path), recs=recs))
    for item, label in zip(inputs, _unique_labels([i.label for i in inputs]), strict=True):
        item.label = label
    dataset = open_dataset(
        data if data is not None else Path("recsim-data"),
        spark=(spark or SparkConfig()) if engine == "spark" else None,
    )
    cutoffs = [i.cutoff for i in inputs if i.cutoff is not None]
    start = max(cutoffs) if cutoffs else None
    owner = next((i.label for i in inputs if i.cutoff is not None and i.cutoff == start), None)
    progress("truth", 0, 1)
    options: dict[str, Any] = dict(
        test_days=test_days,
        relevance=relevance,
        include_seen=include_seen,
        by=by,
        owner=owner or "--test-days",
    )
    judge: Judge = (
        SparkJudge(session, dataset, start, **options)
        if engine == "spark"
        else PolarsJudge(dataset, start, **options)
    )
    progress("truth", 1, 1)
    held = judge.held_out
    try:
        measured = _judge_inputs(
            judge,
            inputs,
            ks=ks,
            metrics=metric_names,
            map_denominator=map_denominator,
            n_candidates=n_candidates,
            progress=progress,
        )
    finally:
        judge.close()
    users = held.users["user_id"]
    segments = held.segments()
    rngs = spawn_generators(seed, ["bootstrap", "permutations"])
    columns = [metric_column(m, k) for m in metric_names for k in ks]
    per_input: list[tuple[EvalInput, pl.DataFrame]] = []
    results: list[InputResult] = []
    for item, judged, candidate_recall in measured:
        frame = judged.metrics.per_user
        per_input.append((item, frame))
        seg_results: dict[str, dict[str, dict[str, MeanCI]]] = {}
        for seg_name, seg_frame in segments.items():
            joined = frame.join(seg_frame, on="user_id", how="left")
            seg_results[seg_name] = {
                str(value): _summaries(part, columns, 0, None)
                for (value,), part in joined.group_by("segment", maintain_order=False)
                if value is not None
            }
            seg_results[seg_name] = dict(sorted(seg_results[seg_name].items()))
        results.append(
            InputResult(
                label=item.label,
                kind=item.kind,
                source=item.source,
                cutoff=item.cutoff,
                means=_summaries(frame, columns, bootstrap, rngs["bootstrap"]),
                segments=seg_results,
                users_without_relevant=judged.metrics.users_without_relevant,
                users_without_recommendations=judged.metrics.users_without_recommendations,
                coverage=judged.coverage,
                fresh_share=judged.fresh_share,
                candidate_recall=candidate_recall,
                curves=judged.curves,
            )
        )
    pairs = []
    for i in range(len(per_input)):
        for j in range(i + 1, len(per_input)):
            (a, fa), (b, fb) = per_input[i], per_input[j]
            tests = compare_pair(
                fa, fb, columns, permutations=permutations, rng=rngs["permutations"]
            )
            pairs.append((a.label, b.label, tests))
    per_user = pl.concat(
        [frame.select(pl.lit(item.label).alias("input"), pl.all()) for item, frame in per_input]
    )
    for seg_name, seg_frame in segments.items():
        per_user = per_user.join(
            seg_frame.rename({"segment": f"segment_{seg_name}"}), on="user_id", how="left"
        )
    return EvalReport(
        data=str(dataset.root),
        window_start=held.start,
        window_end=held.end,
        users=users.len(),
        new_users=held.new_users,
        relevant_pairs=held.relevant_pairs,
        ks=ks,
        metrics=metric_names,
        relevance=relevance,
        map_denominator=map_denominator,
        include_seen=include_seen,
        by=by,
        bootstrap=bootstrap,
        permutations=permutations,
        seed=seed,
        n_candidates=n_candidates,
        catalogue_items=held.catalogue.height,
        inputs=tuple(results),
        pairs=tuple(pairs),
        per_user=per_user,
        seconds=time.perf_counter() - started,
    )


def _judge_inputs(
    judge: Judge,
    inputs: Sequence[EvalInput],
    *,
    ks: Sequence[int],
    metrics: Sequence[str],
    map_denominator: MapDenominator,
    n_candidates: int | None,
    progress: Progress,
) -> list[tuple[EvalInput, Measured, MeanCI | None]]:
    """Measure every input with ``judge``; registry models make their lists here first.

    The third element is the candidate stage's recall of a model with a ranker.
    """
    held = judge.held_out
    users = held.users["user_id"]
    if any(item.model is not None for item in inputs):
        history, serving_items = judge.serving_inputs()
    out = []
    for number, item in enumerate(inputs):
        progress("evaluate", number, len(inputs))
        candidate_recall = None
        if item.model is not None:
            recs = item.model.recommend(
                users, max(ks), history=history, items=serving_items, as_of=held.start
            )
            n_cand = n_candidates or item.model.config.n_candidates
            if item.model.ranker is not None:
                cands = item.model.candidates.recommend(
                    users, n_cand, exclude_seen=item.model.config.exclude_seen
                )
                recall = metric_column("recall", n_cand)
                stage = judge.user_metrics(
                    cands, ks=[n_cand], metrics=["recall"], map_denominator=map_denominator
                ).per_user
                candidate_recall = _summaries(stage, [recall], 0, None)[recall]
        else:
            assert item.recs is not None
            recs = item.recs
        measured = judge.measure(recs, ks=ks, metrics=metrics, map_denominator=map_denominator)
        out.append((item, measured, candidate_recall))
    progress("evaluate", len(inputs), len(inputs))
    return out
