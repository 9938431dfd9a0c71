"""The two-stage recommender: train it into the registry, load it, recommend with it.

Training (`train`), for a dataset and a `TrainConfig`:

1. **Split.** The cutoff holds out the last ``test_days`` days
   (`recsim_cli.split`); nothing at or after it reaches the model.
2. **Ranker data, without leakage.** The ranker learns from the logged
   impressions of the last ``ranker_days`` days before the cutoff (the
   ranker window). A first candidate model is fit on the events *before*
   that window, and its score and rank for each impression become features,
   so a label never leaks into its own feature. Every other feature is
   computed as of the impression's time from earlier events only.
3. **Ranker.** LightGBM with the chosen objective (`models.ranker`).
4. **Serving candidates.** The candidate stage is refit on the whole
   training window, so served lists use everything before the cutoff.

Serving (`TwoStageModel.recommend`): lists are computed before the user
arrives, as of a time ``as_of`` (default: the cutoff), with each user's
usual context (most frequent device and hour in the training window, or an
override): candidates -> features as of ``as_of`` -> ranker score -> top k.
Users unseen in training get the candidate stage's fallback (``fresh``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import polars as pl

from recsim_cli.dataset import Dataset
from recsim_cli.errors import ConfigError, DatasetError
from recsim_cli.io import write_parquet_atomic
from recsim_cli.models.config import TrainConfig
from recsim_cli.progress import Progress, no_progress
from recsim_cli.rng import spawn_generators
from recsim_cli.split import TrainData, complete_items, dataset_cutoff, load_training_data
from recsim_cli.times import format_ts

if TYPE_CHECKING:
    from recsim_cli.models.base import CandidateModel
    from recsim_cli.models.ranker import Ranker, RankerSummary
    from recsim_cli.registry import ModelEntry

DEVICE_CODES: Final = ("mobile", "desktop", "tv")
CANDIDATES_DIR: Final = "candidates"
RANKER_DIR: Final = "ranker"
CONTEXT_FILE: Final = "context.parquet"
DEFAULT_BATCH_USERS: Final = 4096


@dataclass(frozen=True)
class Context:
    """The serving context of a list: device class and hour of day (either may be unset)."""

    device: str | None = None
    hour: int | None = None

    @classmethod
    def parse(cls, text: str) -> Context:
        """Parse ``device=tv,hour=20`` (either part optional)."""
        device: str | None = None
        hour: int | None = None
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            key = key.strip()
            value = value.strip()
            if not sep or not value:
                raise ConfigError(
                    f"--context {text}: write key=value pairs, e.g. device=tv,hour=20."
                )
            if key == "device":
                device = value
            elif key == "hour":
                if not value.isdigit() or not 0 <= int(value) <= 23:
                    raise ConfigError(f"--context hour={value}: give a whole hour from 0 to 23.")
                hour = int(value)
            else:
                raise ConfigError(f"--context {key}: unknown key; valid keys: device, hour.")
        return cls(device=device, hour=hour)

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "hour": self.hour}


def usual_context(events: pl.DataFrame) -> pl.DataFrame:
    """Per user the most frequent device and hour of day (ties: the smaller value)."""

    def mode(expr: pl.Expr, name: str) -> pl.DataFrame:
        return (
            events.select("user_id", expr.alias(name))
            .drop_nulls(name)
            .group_by("user_id", name)
            .agg(pl.len().alias("_n"))
            .sort(["user_id", "_n", name], descending=[False, True, False])
            .group_by("user_id", maintain_order=True)
            .first()
            .drop("_n")
        )

    users = events.select(pl.col("user_id").unique()).sort("user_id")
    return (
        users.join(mode(pl.col("device"), "device"), on="user_id", how="left")
        .join(mode(pl.col("ts").dt.hour().cast(pl.Int32), "hour"), on="user_id", how="left")
        .sort("user_id")
    )


def _global_mode(column: pl.Series) -> Any:
    counts = column.drop_nulls().value_counts(sort=False)
    if counts.height == 0:
        return None
    name = column.name
    return counts.sort(["count", name], descending=[True, False])[name][0]


# -- the served model ------------------------------------------------------------------


@dataclass
class TwoStageModel:
    """A trained two-stage model: candidate stage, optional ranker, users' usual context."""

    config: TrainConfig
    cutoff: datetime
    candidates: CandidateModel
    ranker: Ranker | None
    context: pl.DataFrame
    """user_id, device, hour: each training user's usual context."""
    default_context: Context = field(default_factory=Context)
    """Context of users without one (the most frequent device and hour overall)."""

    @property
    def kind(self) -> str:
        return self.config.candidates + ("" if self.ranker is None else f"+{self.config.ranker}")

    def save(self, folder: Path) -> None:
        self.candidates.save(folder / CANDIDATES_DIR)
        if self.ranker is not None:
            self.ranker.save(folder / RANKER_DIR)
        write_parquet_atomic(self.context, folder / CONTEXT_FILE)

    @classmethod
    def load(cls, entry: ModelEntry) -> TwoStageModel:
        """Load a model from its registry entry; a corrupt one is a one-sentence `DatasetError`."""
        from recsim_cli.models.candidates import CANDIDATES
        from recsim_cli.models.ranker import Ranker

        manifest = entry.manifest
        try:
            config = TrainConfig.from_dict(manifest["config"], source=f"{entry.path}/manifest.json")
            cutoff = datetime.fromisoformat(str(manifest["cutoff"]).replace("Z", "+00:00"))
            default = Context(**manifest["default_context"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(
                f"Model '{entry.name}' has an incomplete manifest ({exc}); train it again with "
                f"recsim train {entry.name} --force."
            ) from exc
        generator = CANDIDATES.get(config.candidates)
        if generator is None:
            raise DatasetError(
                f"Model '{entry.name}' uses candidates '{config.candidates}', which this recsim "
                "does not know; upgrade recsim or retrain the model."
            )
        candidates = generator.load(entry.file(CANDIDATES_DIR))
        ranker = None if config.ranker == "none" else Ranker.load(entry.file(RANKER_DIR))
        try:
            context = pl.read_parquet(entry.file(CONTEXT_FILE))
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise DatasetError(
                f"Model '{entry.name}': {CONTEXT_FILE} is unreadable ({exc}); train it again "
                f"with recsim train {entry.name} --force."
            ) from exc
        return cls(config, cutoff, candidates, ranker, context, default)

    def recommend(
        self,
        users: pl.Series,
        k: int,
        *,
        history: pl.DataFrame,
        items: pl.DataFrame,
        as_of: datetime | None = None,
        context: Context | None = None,
        batch_users: int = DEFAULT_BATCH_USERS,
        progress: Progress = no_progress,
    ) -> pl.DataFrame:
        """Top ``k`` per user as of ``as_of``: user_id, item_id, rank, score.

        ``history`` are the dataset's events before ``as_of`` (features and,
        after the cutoff, what users watched since, left out when
        ``exclude_seen``); ``items`` the complete item table.
        """
        from recsim_cli.models.features import build_features

        as_of = self.cutoff if as_of is None else as_of
        if as_of < self.cutoff:
            raise ConfigError(
                f"--as-of {format_ts(as_of)} is before the model's cutoff "
                f"{format_ts(self.cutoff)}; lists can only be made as of the cutoff or later."
            )
        history = history.filter(pl.col("ts") < as_of)
        exclude = None
        if self.config.exclude_seen:
            exclude = history.filter(pl.col("clicked") & (pl.col("ts") >= self.cutoff)).select(
                "user_id", "item_id"
            )
        targets_context = self._context_of(users, context)
        n_cand = max(self.config.n_candidates, k) if self.ranker is not None else k
        frames: list[pl.DataFrame] = []
        total = users.len()
        for start in range(0, total, batch_users):
            batch = users.slice(start, batch_users)
            cands = self.candidates.recommend(
                batch, n_cand, exclude_seen=self.config.exclude_seen, exclude=exclude
            )
            if self.ranker is None:
                frames.append(cands.select("user_id", "item_id", "rank", "score"))
            else:
                targets = cands.select("user_id", "item_id").join(
                    targets_context, on="user_id", how="left"
                )
                targets = targets.with_columns(
                    pl.lit(as_of).cast(pl.Datetime("us", "UTC")).alias("ts"),
                    pl.lit(as_of.weekday()).cast(pl.Int32).alias("dow"),
                )
                features = build_features(
                    history, targets, items, cands, n_candidates=self.config.n_candidates
                )
                score = self.ranker.predict(features)
                frames.append(_top_k(cands, score, k))
            progress("recommend", min(start + batch_users, total), total)
        if not frames:
            return pl.DataFrame(
                schema={
                    "user_id": pl.String,
                    "item_id": pl.String,
                    "rank": pl.Int32,
                    "score": pl.Float64,
                }
            )
        return pl.concat(frames)

    def _context_of(self, users: pl.Series, override: Context | None) -> pl.DataFrame:
        """user_id, device, hour per user: the override where given, else the usual one."""
        override = override or Context()
        default = self.default_context
        device = (
            pl.lit(override.device, dtype=pl.String)
            if override.device is not None
            else pl.col("device").fill_null(pl.lit(default.device, dtype=pl.String))
        )
        hour = (
            pl.lit(override.hour, dtype=pl.Int32)
            if override.hour is not None
            else pl.col("hour").cast(pl.Int32).fill_null(pl.lit(default.hour or 0, dtype=pl.Int32))
        )
        return (
            pl.DataFrame({"user_id": users.cast(pl.String)})
            .join(self.context, on="user_id", how="left")
            .select("user_id", device.alias("device"), hour.alias("hour"))
        )


def _top_k(cands: pl.DataFrame, score: np.ndarray[Any, Any], k: int) -> pl.DataFrame:
    """Re-rank each user's candidates by ``score`` (ties: candidate rank) and keep ``k``."""
    return (
        cands.select("user_id", "item_id", pl.col("rank").alias("_cand_rank"))
        .with_columns(pl.Series("score", np.asarray(score, dtype=np.float64)))
        .with_row_index("_row")
        .with_columns(pl.col("_row").min().over("user_id").alias("_first"))
        .sort(["_first", "score", "_cand_rank"], descending=[False, True, False])
        .with_columns((pl.col("user_id").cum_count().over("user_id")).cast(pl.Int32).alias("rank"))
        .filter(pl.col("rank") <= k)
        .select("user_id", "item_id", "rank", "score")
    )


# -- training --------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainSummary:
    """What `train` did: data used, time per stage, losses, top features."""

    name: str
    kind: str
    path: Path
    cutoff: datetime
    data_start: datetime
    ranker_window: tuple[datetime, datetime] | None
    events: int
    users: int
    items: int
    ranker_examples: int
    ranker_positives: int
    candidate_loss: float | None
    ranker_loss: float | None
    importance: tuple[tuple[str, float], ...]
    timings: Mapping[str, float]
    config: TrainConfig

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "path": str(self.path),
            "cutoff": format_ts(self.cutoff),
            "data_start": format_ts(self.data_start),
            "ranker_window": None
            if self.ranker_window is None
            else [format_ts(self.ranker_window[0]), format_ts(self.ranker_window[1])],
            "events": self.events,
            "users": self.users,
            "items": self.items,
            "ranker_examples": self.ranker_examples,
            "ranker_positives": self.ranker_positives,
            "candidate_loss": self.candidate_loss,
            "ranker_loss": self.ranker_loss,
            "feature_importance": [{"feature": f, "gain": g} for f, g in self.importance],
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "config": self.config.to_dict(),
        }


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    """Add the time spent inside the block to ``timings[stage]``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - started


def fit_two_stage(
    data: TrainData, config: TrainConfig, *, progress: Progress = no_progress
) -> tuple[TwoStageModel, dict[str, Any]]:
    """Fit both stages on ``data`` (events before its cutoff); return the model and its facts."""
    from recsim_cli.models.candidates import candidate_model

    timings: dict[str, float] = {}
    facts: dict[str, Any] = {"ranker_examples": 0, "ranker_positives": 0, "ranker_window": None}
    ranker: Ranker | None = None
    ranker_summary: RankerSummary | None = None
    rngs = spawn_generators(config.seed, ["negatives"])
    if config.ranker == "lightgbm":
        ranker, ranker_summary, window = _fit_ranker(
            data, config, rngs["negatives"], timings, progress
        )
        facts["ranker_window"] = window
        facts["ranker_examples"] = ranker_summary.examples
        facts["ranker_positives"] = ranker_summary.positives
    with _timed(timings, "candidates"):
        progress("candidates", 0, 1)
        candidates = candidate_model(
            config.candidates, config.candidate_params, seed=config.seed
        ).fit(data)
        progress("candidates", 1, 1)
    context = usual_context(data.events)
    default = Context(
        device=_global_mode(data.events["device"]),
        hour=_global_mode(data.events["ts"].dt.hour().cast(pl.Int32)),
    )
    model = TwoStageModel(config, data.cutoff, candidates, ranker, context, default)
    facts["timings"] = timings
    facts["candidate_loss"] = getattr(candidates, "training_loss", None)
    facts["ranker_summary"] = ranker_summary
    return model, facts


def _fit_ranker(
    data: TrainData,
    config: TrainConfig,
    rng: np.random.Generator,
    timings: dict[str, float],
    progress: Progress,
) -> tuple[Ranker, RankerSummary, tuple[datetime, datetime]]:
    from recsim_cli.models.candidates import candidate_model
    from recsim_cli.models.features import build_features, ranker_examples
    from recsim_cli.models.ranker import Ranker

    window_start = data.cutoff - timedelta(days=config.ranker_days)
    before = data.events.filter(pl.col("ts") < window_start)
    window = data.events.filter(pl.col("ts") >= window_start)
    if before.height == 0 or window.height == 0:
        raise DatasetError(
            f"The training window ({format_ts(data.start)} to {format_ts(data.cutoff)}) is too "
            f"short for --ranker-days {config.ranker_days}: the ranker needs events both before "
            "and in its last days; use fewer --ranker-days or --test-days, or --ranker none."
        )
    with _timed(timings, "ranker candidates"):
        progress("ranker candidates", 0, 1)
        pre = TrainData(
            events=before,
            items=data.items.filter(pl.col("published_ts") < window_start),
            cutoff=window_start,
        )
        pre_model = candidate_model(config.candidates, config.candidate_params, seed=config.seed)
        pre_model.fit(pre)
        window_users = window["user_id"].unique().sort()
        cands = pre_model.recommend(
            window_users, config.n_candidates, exclude_seen=config.exclude_seen
        )
        progress("ranker candidates", 1, 1)
    with _timed(timings, "features"):
        progress("features", 0, 1)
        examples = ranker_examples(
            window, cands, negatives_per_positive=config.negatives_per_positive, rng=rng
        )
        features = build_features(
            data.events, examples, data.items, cands, n_candidates=config.n_candidates
        )
        progress("features", 1, 1)
    if examples.height == 0 or not examples["clicked"].any():
        raise DatasetError(
            f"The ranker window ({format_ts(window_start)} to {format_ts(data.cutoff)}) has no "
            "clicks to learn from; use more --ranker-days or --ranker none."
        )
    with _timed(timings, "ranker"):
        ranker = Ranker(
            config.objective, config.ranker_params, seed=config.seed, num_threads=config.num_threads
        )
        summary = ranker.fit(features, examples, progress=progress)
    return ranker, summary, (window_start, data.cutoff)


def train(
    name: str,
    *,
    data: Path,
    registry: Path,
    config: TrainConfig,
    force: bool = False,
    progress: Progress = no_progress,
) -> TrainSummary:
    """Train model ``name`` on the dataset at ``data`` and write it into ``registry``."""
    from recsim_cli.models.candidates import candidate_model
    from recsim_cli.models.features import FEATURES
    from recsim_cli.registry import Registry, validate_name

    validate_name(name)
    # fail before any data is read: an unknown kind or a bad hyper-parameter is a usage error
    candidate_model(config.candidates, config.candidate_params, seed=config.seed)
    store = Registry(registry)
    store.check_writable(name, force=force)
    dataset = Dataset.open(data)
    started = time.perf_counter()
    cutoff = dataset_cutoff(dataset, config.test_days)
    train_data = load_training_data(dataset, cutoff)
    load_s = time.perf_counter() - started
    model, facts = fit_two_stage(train_data, config, progress=progress)
    timings = {"load": load_s, **facts["timings"]}
    ranker_summary = facts["ranker_summary"]
    features = list(FEATURES) if model.ranker is not None else []
    manifest: dict[str, Any] = {
        "kind": model.kind,
        "config": config.to_dict(),
        "seed": config.seed,
        "cutoff": format_ts(cutoff),
        "data_start": format_ts(train_data.start),
        "dataset": {
            "path": str(Path(data).resolve()),
            "fingerprint": dataset.fingerprint,
            "version": dataset.version,
        },
        "features": features,
        "default_context": model.default_context.to_dict(),
        "training": {
            "events": train_data.events.height,
            "users": len(model.candidates.users),
            "items": len(model.candidates.items),
            "ranker_window": None
            if facts["ranker_window"] is None
            else [format_ts(t) for t in facts["ranker_window"]],
            "ranker_examples": facts["ranker_examples"],
            "ranker_positives": facts["ranker_positives"],
            "candidate_loss": facts["candidate_loss"],
            "ranker": None if ranker_summary is None else ranker_summary.to_dict(),
        },
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    entry = store.write(name, manifest, model.save, force=force)
    return TrainSummary(
        name=name,
        kind=model.kind,
        path=entry.path,
        cutoff=cutoff,
        data_start=train_data.start,
        ranker_window=facts["ranker_window"],
        events=train_data.events.height,
        users=len(model.candidates.users),
        items=len(model.candidates.items),
        ranker_examples=facts["ranker_examples"],
        ranker_positives=facts["ranker_positives"],
        candidate_loss=facts["candidate_loss"],
        ranker_loss=None if ranker_summary is None else ranker_summary.loss,
        importance=tuple(ranker_summary.importance[:10]) if ranker_summary is not None else (),
        timings=timings,
        config=config,
    )


# -- recommending ----------------------------------------------------------------------


@dataclass(frozen=True)
class Recommendations:
    """The lists `recommend` made, and facts about them."""

    name: str
    model: str
    as_of: datetime
    k: int
    frame: pl.DataFrame
    users: int
    unknown_users: int
    context: Context | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "resolved": self.model,
            "as_of": format_ts(self.as_of),
            "k": self.k,
            "users": self.users,
            "unknown_users": self.unknown_users,
            "rows": self.frame.height,
            "context": None if self.context is None else self.context.to_dict(),
            "seconds": round(self.seconds, 3),
        }


def serving_inputs(
    dataset: Dataset, as_of: datetime, *, events: pl.DataFrame | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Events before ``as_of`` and the complete item table, as `TwoStageModel.recommend` wants.

    ``events``: the dataset's events when the caller has read them already.
    """
    source = dataset.events() if events is None else events.lazy()
    history = source.filter(pl.col("ts") < as_of).collect()
    items = complete_items(history, dataset.items().collect(), source=str(dataset.root))
    return history, items


def recommend(
    name: str,
    *,
    registry: Path,
    data: Path | None = None,
    users: Sequence[str] | None = None,
    k: int = 10,
    as_of: datetime | None = None,
    context: Context | None = None,
    progress: Progress = no_progress,
) -> Recommendations:
    """Top-``k`` lists of model ``name`` for ``users`` (default: every user in the dataset)."""
    from recsim_cli.registry import Registry

    if k < 1:
        raise ConfigError(f"--k must be at least 1; got {k}.")
    started = time.perf_counter()
    entry = Registry(registry).open(name)
    model = TwoStageModel.load(entry)
    data_path = Path(data) if data is not None else Path(str(entry.manifest["dataset"]["path"]))
    dataset = Dataset.open(data_path)
    when = model.cutoff if as_of is None else as_of
    history, items = serving_inputs(dataset, when)
    if users is None:
        user_ids = dataset.events().select(pl.col("user_id").unique()).collect().to_series().sort()
    else:
        user_ids = pl.Series("user_id", list(users), dtype=pl.String).unique(maintain_order=True)
    unknown = int((model.candidates.users.index(user_ids) < 0).sum())
    frame = model.recommend(
        user_ids, k, history=history, items=items, as_of=when, context=context, progress=progress
    )
    return Recommendations(
        name=name,
        model=entry.name,
        as_of=when,
        k=k,
        frame=frame,
        users=user_ids.len(),
        unknown_users=unknown,
        context=context,
        seconds=time.perf_counter() - started,
    )


def read_user_list(path: Path) -> list[str]:
    """Read user ids from a file: one per line, or a CSV/Parquet with a user_id column."""
    from recsim_cli.errors import InputFileError, SchemaError

    if not path.is_file():
        raise InputFileError(f"{path} does not exist; give a file of user ids to --users.")
    try:
        if path.suffix == ".parquet":
            frame = pl.read_parquet(path)
        else:
            text = path.read_text(encoding="utf-8")
            first = text.splitlines()[0] if text.strip() else ""
            if "," in first or first.strip() == "user_id":
                frame = pl.read_csv(path, infer_schema=False)
            else:
                return [line.strip() for line in text.splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError, pl.exceptions.PolarsError) as exc:
        raise InputFileError(f"{path} cannot be read as a list of users ({exc}).") from exc
    if "user_id" not in frame.columns:
        raise SchemaError(
            f"{path} has no user_id column (found {', '.join(frame.columns)}); "
            "give one user id per line or a user_id column."
        )
    return [str(u) for u in frame["user_id"].drop_nulls().to_list()]
