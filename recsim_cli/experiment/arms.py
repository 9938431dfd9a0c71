"""The arms of an A/B test between recommenders, and the daily top lists each one serves.

An arm is named on the command line in one of three ways:

* a registry model or alias (``als-lgbm``, ``production``): its lists are made
  each day of the window as of that day's midnight, from the logged history
  before it (``TwoStageModel.recommend``);
* a recommendations file (``.csv``, ``.csv.gz``, ``.tsv``, ``.parquet``) with
  ``user_id``, ``item_id``, ``rank`` (1-based, as ``recsim recommend`` writes)
  and optionally ``day`` (``YYYY-MM-DD``); without ``day`` the same list
  serves every day;
* ``logged``: the logging policy itself (it has no precomputed lists).

``daily_lists`` turns a model or file arm into one frame of per-(user, day)
ranked lists, the input of both the off-policy estimators and the online
truth inside the simulator (``recsim_cli.simulate.online``).

Two models are comparable only if they were trained on the same dataset:
``check_same_dataset`` accepts two models whose manifests record the same
dataset fingerprint **or** the same dataset folder. The fingerprint hashes
every ingested source file, so appending a day of logs changes it; two models
trained before and after an append are still trained on one dataset, which
only the folder shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import polars as pl

from recsim_cli.errors import (
    ConfigError,
    DatasetError,
    InputFileError,
    InternalError,
    SchemaError,
    UnknownNameError,
)
from recsim_cli.progress import Progress, no_progress
from recsim_cli.times import format_ts, parse_moment

if TYPE_CHECKING:
    from recsim_cli.dataset import Dataset
    from recsim_cli.registry import ModelEntry

__all__ = [
    "LIST_SCHEMA",
    "LOGGED",
    "ArmKind",
    "PolicyArm",
    "check_same_dataset",
    "daily_lists",
    "evaluation_window",
    "model_arm",
    "parse_window",
    "read_list_file",
    "resolve_arm",
]

ArmKind = Literal["model", "file", "logged"]
LOGGED: Final = "logged"
LIST_SUFFIXES: Final = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".parquet")
LIST_SCHEMA: Final = pl.Schema(
    {"user_id": pl.String(), "day": pl.Date(), "rank": pl.Int32(), "item_id": pl.String()}
)
"""What `daily_lists` returns: rank is 0-based; rows sorted by (user_id, day, rank)."""

_FILE_HELP: Final = "user_id, item_id, rank (1-based) and optionally day (YYYY-MM-DD)"


@dataclass(frozen=True)
class PolicyArm:
    """One arm of an A/B test between recommenders, as resolved from what the user named."""

    spec: str
    """What the user gave: a model name or alias, a file path, or ``logged``."""
    kind: ArmKind
    model: str | None = None
    """The registry model's name (an alias resolved)."""
    path: Path | None = None
    """The recommendations file, for ``kind == "file"``."""
    cutoff: datetime | None = None
    """The model's training cutoff (UTC): nothing at or after it reached the model."""
    dataset_fingerprint: str | None = None
    """``manifest["dataset"]["fingerprint"]`` of the model."""
    dataset_path: str | None = None
    """``manifest["dataset"]["path"]`` of the model: the folder it was trained on."""
    registry: Path | None = None
    """The registry holding the model."""
    model_fingerprint: str | None = None
    """`ModelEntry.fingerprint` of the model: promotion checks a report names this very model."""

    @property
    def label(self) -> str:
        """Short display name: the model name, the file name, or ``logged``."""
        if self.kind == "model" and self.model is not None:
            return self.model
        if self.kind == "file" and self.path is not None:
            return self.path.name
        return self.spec

    def to_dict(self) -> dict[str, Any]:
        """Return the arm as JSON-ready values; a file's SHA-256 pins its content."""
        from recsim_cli.io import sha256_file

        return {
            "spec": self.spec,
            "kind": self.kind,
            "label": self.label,
            "model": self.model,
            "path": None if self.path is None else str(self.path),
            "sha256": sha256_file(self.path) if self.path is not None else None,
            "cutoff": format_ts(self.cutoff),
            "dataset_fingerprint": self.dataset_fingerprint,
            "dataset_path": self.dataset_path,
            "model_fingerprint": self.model_fingerprint,
        }


def _is_list_file(spec: str) -> bool:
    return spec.lower().endswith(LIST_SUFFIXES)


def resolve_arm(spec: str, *, registry: Path) -> PolicyArm:
    """Resolve ``logged``, a recommendations file, or a registry model or alias into an arm."""
    from recsim_cli.registry import Registry

    if spec == LOGGED:
        return PolicyArm(spec=spec, kind="logged")
    path = Path(spec)
    if path.is_file() or _is_list_file(spec):
        if not path.is_file():
            raise InputFileError(
                f"{spec} does not exist; give an existing recommendations file with {_FILE_HELP}."
            )
        return PolicyArm(spec=spec, kind="file", path=path)
    store = Registry(registry)
    try:
        entry = store.open(spec)
    except (UnknownNameError, ConfigError) as exc:
        # ConfigError: not even a valid model name (e.g. a typo in a file name).
        raise _unknown_arm(spec, store.root, store.names()) from exc
    return model_arm(entry, spec=spec)


def model_arm(entry: ModelEntry, *, spec: str | None = None) -> PolicyArm:
    """The arm of a registry model: its cutoff, dataset and fingerprint from its manifest."""
    try:
        cutoff = datetime.fromisoformat(str(entry.manifest["cutoff"]).replace("Z", "+00:00"))
    except (KeyError, ValueError) as exc:
        raise DatasetError(
            f"Model '{entry.name}' has no valid cutoff in its manifest; train it again with "
            f"recsim train {entry.name} --force."
        ) from exc
    dataset = entry.dataset or {}
    fingerprint, dataset_path = dataset.get("fingerprint"), dataset.get("path")
    return PolicyArm(
        spec=entry.name if spec is None else spec,
        kind="model",
        model=entry.name,
        cutoff=cutoff.astimezone(UTC),
        dataset_fingerprint=fingerprint if isinstance(fingerprint, str) else None,
        dataset_path=dataset_path if isinstance(dataset_path, str) else None,
        registry=entry.path.parent,
        model_fingerprint=entry.fingerprint,
    )


def _unknown_arm(spec: str, root: Path, available: list[str]) -> UnknownNameError:
    error = UnknownNameError("model", spec, available)
    others = (
        f"`{LOGGED}` (the logging policy) or a recommendations file ({', '.join(LIST_SUFFIXES)})"
    )
    if available:
        error.args = (
            f"Unknown model '{spec}'. Available: {', '.join(error.available)}; or give {others}.",
        )
    else:
        error.args = (
            f"Unknown model '{spec}': {root} holds no models; give {others}, "
            f"or train one with recsim train {spec}.",
        )
    return error


def check_same_dataset(arms: Sequence[PolicyArm], dataset_fingerprint: str) -> None:
    """Raise ConfigError if two model arms were trained on different datasets.

    Two models agree when their manifests record the same dataset fingerprint
    or the same dataset folder (appending logs changes the fingerprint, not the
    folder). A model trained on an earlier version of ``dataset_fingerprint``'s
    dataset is normal and no error: the analysed dataset may have grown since.
    """
    models = [a for a in arms if a.kind == "model"]
    if all(a.dataset_fingerprint == dataset_fingerprint for a in models):
        return
    for i, first in enumerate(models):
        for second in models[i + 1 :]:
            pairs = [
                (first.dataset_fingerprint, second.dataset_fingerprint),
                (first.dataset_path, second.dataset_path),
            ]
            known = [(a, b) for a, b in pairs if a is not None and b is not None]
            if known and all(a != b for a, b in known):
                raise ConfigError(
                    f"Models '{first.label}' and '{second.label}' were trained on different "
                    f"datasets ({first.dataset_path} and {second.dataset_path}); retrain one of "
                    "them on the same data so the test compares models, not data."
                )


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def evaluation_window(
    arms: Sequence[PolicyArm],
    window: tuple[datetime, datetime] | None,
    *,
    first_event: datetime,
    last_event: datetime,
) -> tuple[datetime, datetime]:
    """Return the (start, exclusive end) of the test, in UTC.

    An explicit ``window`` always wins. Otherwise it runs from the latest
    training cutoff of the model arms (but not before midnight of the first
    event's day) to midnight after the last event's day. Files and ``logged``
    have no cutoff, so without a model arm the window must be given.
    """
    if window is not None:
        return window
    cutoffs = [a.cutoff for a in arms if a.kind == "model" and a.cutoff is not None]
    if not cutoffs:
        raise ConfigError(
            "--window START..END is required when no arm is a registry model (files and "
            "logged have no training cutoff); e.g. --window 2026-01-12..2026-01-15."
        )
    first_day = _midnight(first_event.astimezone(UTC).date())
    start = max(*cutoffs, first_day)
    end = _midnight(last_event.astimezone(UTC).date()) + timedelta(days=1)
    return start, end


def parse_window(text: str) -> tuple[datetime, datetime]:
    """Parse ``2026-01-12..2026-01-15`` into (start, exclusive end), UTC; a date is midnight."""
    example = "e.g. --window 2026-01-12..2026-01-15 (END exclusive)"
    parts = text.split("..")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise ConfigError(f"--window {text}: give START..END as dates or UTC times, {example}.")
    try:
        start, end = (parse_moment(p, "--window") for p in parts)
    except ConfigError:
        raise ConfigError(
            f"--window {text}: give START..END as dates or UTC times, {example}."
        ) from None
    if start >= end:
        raise ConfigError(f"--window {text} is empty: END must be after START, {example}.")
    return start, end


# -- the lists ---------------------------------------------------------------------------


LIST_BATCH_USERS: Final = 50_000
"""Users per `recommend` call when a model makes its daily lists."""


def daily_lists(
    arm: PolicyArm,
    *,
    dataset: Dataset | None,
    users: pl.Series,
    days: Sequence[date],
    length: int,
    progress: Progress = no_progress,
    events: pl.DataFrame | None = None,
    user_days: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Return each user's top-``length`` list of each day (`LIST_SCHEMA`, rank 0-based).

    A model's list of day d is made as of midnight of d from the dataset's
    events before it (``events`` when the caller has read them); users it does
    not know get its fallback list. A file's lists are read and checked, and a
    list without a ``day`` serves every day. Only ``users`` and ``days`` are
    kept; with ``user_days`` (user_id, day), only those pairs: an estimate
    needs the lists of the days a user had a session, not of every day, which
    keeps a large window's lists a fraction of users x days x ranks.
    ``dataset`` may be None for a file.
    """
    if length < 1:
        raise ConfigError(f"list length must be at least 1; got {length}.")
    users = users.cast(pl.String).alias("user_id")
    wanted = None
    if user_days is not None:
        wanted = user_days.select(
            pl.col("user_id").cast(pl.String), pl.col("day").cast(pl.Date)
        ).join(users.to_frame(), on="user_id", how="semi")
    if arm.kind == "model":
        frame = _model_lists(
            arm,
            dataset,
            users=users,
            days=days,
            length=length,
            progress=progress,
            events=events,
            user_days=wanted,
        )
    elif arm.kind == "file" and arm.path is not None:
        frame = _file_lists(arm.path, users, days, length)
        if wanted is not None:
            frame = frame.join(wanted, on=["user_id", "day"], how="semi")
    else:
        raise InternalError(f"arm '{arm.label}' has no precomputed lists to serve.")
    return frame.select(LIST_SCHEMA.names()).cast(LIST_SCHEMA).sort("user_id", "day", "rank")


def _model_lists(
    arm: PolicyArm,
    dataset: Dataset | None,
    *,
    users: pl.Series,
    days: Sequence[date],
    length: int,
    progress: Progress,
    events: pl.DataFrame | None,
    user_days: pl.DataFrame | None = None,
) -> pl.DataFrame:
    from recsim_cli.models.two_stage import TwoStageModel, serving_inputs
    from recsim_cli.registry import Registry

    if arm.model is None or arm.registry is None or dataset is None:
        raise InternalError(f"model arm '{arm.spec}' needs a resolved model and a dataset.")
    model = TwoStageModel.load(Registry(arm.registry).open(arm.model))
    if events is None:
        events = dataset.events().collect()
    task = f"lists {arm.label}"
    frames: list[pl.DataFrame] = []
    for done, day in enumerate(days):
        progress(task, done, len(days))
        as_of = _midnight(day)
        if as_of < model.cutoff:
            raise ConfigError(
                f"The window starts on {day.isoformat()}, before the training cutoff of model "
                f"'{arm.label}' ({format_ts(model.cutoff)}); start --window at the cutoff or later."
            )
        todays = users
        if user_days is not None:
            todays = user_days.filter(pl.col("day") == day).get_column("user_id").sort()
            if todays.is_empty():
                continue
        history, items = serving_inputs(dataset, as_of, events=events)
        # In batches of users: a model's scoring memory grows with the users it scores at once.
        for start in range(0, todays.len(), LIST_BATCH_USERS):
            batch = todays.slice(start, LIST_BATCH_USERS)
            recs = model.recommend(batch, length, history=history, items=items, as_of=as_of)
            frames.append(
                recs.select(
                    "user_id",
                    pl.lit(day, dtype=pl.Date).alias("day"),
                    (pl.col("rank") - 1).alias("rank"),
                    "item_id",
                )
            )
    progress(task, len(days), len(days))
    if not frames:
        return pl.DataFrame(schema=LIST_SCHEMA)
    return pl.concat(frames)


def _file_lists(path: Path, users: pl.Series, days: Sequence[date], length: int) -> pl.DataFrame:
    lists = read_list_file(path).filter(pl.col("rank") < length)
    lists = lists.join(users.to_frame(), on="user_id", how="semi")
    day_frame = pl.DataFrame({"day": pl.Series(list(days), dtype=pl.Date)})
    if "day" in lists.columns:
        return lists.join(day_frame, on="day", how="semi")
    return lists.join(day_frame, how="cross")


def read_list_file(path: Path) -> pl.DataFrame:
    """Read and check a recommendations file: user_id, item_id, rank (0-based) and maybe day.

    Each problem is one sentence naming the file and the first offending row
    (1-based, header excluded): a missing column, an empty value, a rank that
    is not a whole number of at least 1, a day that is not a date, a (user,
    day, rank) given twice, or an item twice in one list.
    """
    frame = _read_table(path)
    missing = [c for c in ("user_id", "item_id", "rank") if c not in frame.columns]
    if missing:
        raise SchemaError(
            f"{path} has no {missing[0]} column (found {', '.join(frame.columns) or 'none'}); "
            f"a recommendations file needs {_FILE_HELP}."
        )
    has_day = "day" in frame.columns
    columns = ["user_id", "item_id", "rank", *(["day"] if has_day else [])]
    frame = frame.select(columns).with_row_index("_row", offset=1)
    for column in columns:
        empty = frame.filter(pl.col(column).is_null())
        if empty.height:
            raise SchemaError(
                f"{path}: row {empty['_row'][0]} has no {column}; give {_FILE_HELP} on every row."
            )
    frame = frame.with_columns(
        pl.col("user_id").cast(pl.String),
        pl.col("item_id").cast(pl.String),
        _whole_number(frame.schema["rank"]).alias("_rank"),
    )
    bad = frame.filter(pl.col("_rank").is_null() | (pl.col("_rank") < 1))
    if bad.height:
        raise SchemaError(
            f"{path}: rank must be a whole number of at least 1 (1 = top); row "
            f"{bad['_row'][0]} has {bad['rank'][0]!r}."
        )
    frame = frame.with_columns((pl.col("_rank") - 1).cast(pl.Int32).alias("rank")).drop("_rank")
    keys = ["user_id"]
    if has_day:
        frame = frame.with_columns(_as_date(frame.schema["day"]).alias("_day"))
        bad = frame.filter(pl.col("_day").is_null())
        if bad.height:
            raise SchemaError(
                f"{path}: day must be a date like 2026-01-12; row {bad['_row'][0]} has "
                f"{bad['day'][0]!r}."
            )
        frame = frame.with_columns(pl.col("_day").alias("day")).drop("_day")
        keys.append("day")
    _check_unique(frame, path, [*keys, "rank"], "two items at rank {rank}")
    _check_unique(frame, path, [*keys, "item_id"], "item {item_id} twice")
    return frame.drop("_row")


def _read_table(path: Path) -> pl.DataFrame:
    if not path.is_file():
        raise InputFileError(
            f"{path} does not exist; give an existing recommendations file with {_FILE_HELP}."
        )
    name = path.name.lower()
    try:
        if name.endswith(".parquet"):
            return pl.read_parquet(path)
        separator = "\t" if name.endswith((".tsv", ".tsv.gz")) else ","
        return pl.read_csv(path, separator=separator, infer_schema=False)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise InputFileError(
            f"{path} cannot be read as recommendations ({exc}); give CSV, TSV or Parquet with "
            f"{_FILE_HELP}."
        ) from exc


def _whole_number(dtype: pl.DataType) -> pl.Expr:
    """The rank column as Int64, null where it is not a whole number."""
    rank = pl.col("rank")
    if dtype.is_integer():
        return rank.cast(pl.Int64)
    if dtype.is_float():
        return pl.when(rank == rank.round(0)).then(rank.cast(pl.Int64, strict=False))
    number = rank.cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
    return pl.when(number == number.round(0)).then(number.cast(pl.Int64, strict=False))


def _as_date(dtype: pl.DataType) -> pl.Expr:
    """The day column as Date, null where it is not a date."""
    day = pl.col("day")
    if dtype == pl.Date:
        return day
    if isinstance(dtype, pl.Datetime):
        return day.dt.date()
    return day.cast(pl.String).str.strip_chars().str.to_date("%Y-%m-%d", strict=False)


def _check_unique(frame: pl.DataFrame, path: Path, keys: list[str], what: str) -> None:
    repeated = frame.filter(pl.struct(keys).is_duplicated()).sort("_row")
    if repeated.height == 0:
        return
    row = repeated.row(0, named=True)
    day = f" on {row['day'].isoformat()}" if "day" in keys else ""
    detail = what.format(rank=row["rank"] + 1, item_id=row["item_id"])
    raise SchemaError(
        f"{path}: user {row['user_id']} has {detail}{day} (row {row['_row']}); give each "
        "rank and each item once per user and day."
    )
