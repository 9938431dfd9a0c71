"""Read a logged A/B test into the engine's per-user sufficient-statistics frame.

:func:`aggregate_experiment` takes the events of a dataset (a polars
LazyFrame of the data contract, ``Dataset.open(root).events()``), the column
that holds each event's arm, and the two arms compared, and returns one row
per (user, arm), the unit the engine tests on (never impressions). For user
``u`` in arm ``a``, over the events of the experiment window
``start <= ts < end``:

=================  =========================  ===============================
metric             numerator (``_num``)       denominator (``_den``)
=================  =========================  ===============================
``ctr``            clicks                     impressions (event rows)
``watch_time``     sum of ``watch_time_s``    distinct sessions
``session_depth``  clicks (videos watched)    distinct sessions
=================  =========================  ===============================

``start`` defaults to the first event of either arm; ``end`` (exclusive) to
none. ``<m>_pre_num`` and ``<m>_pre_den`` are the same sums over *all* the
user's events in the ``pre_days`` days before ``start`` whatever their arm
label (before the experiment nobody was treated), null where the user has
none; the engine gives such users the pooled value. Events with a null arm
label, or another arm's label, are ignored and counted. Users seen in both
arms are left out by default (``both_arms="exclude"``), counted, and named in
a warning; ``both_arms="keep"`` keeps them in both arms, for the paired
design or to let the split design's health check fail. docs/statistics.md,
"Logged experiments", has the details.

With ``by_day``, ``LoggedExperiment.daily`` splits the same sums by day
(UTC date of the event): one row per (user, arm, day) with the ``_num`` and
``_den`` columns, a session counted on the day of its first event, so the
days of a (user, arm) add up to its row of the frame (``daily.py``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import polars as pl

from recsim_cli.errors import ConfigError, SchemaError, UnknownNameError, UserError
from recsim_cli.times import as_utc, format_ts

BothArms = Literal["exclude", "keep"]
BOTH_ARMS: tuple[BothArms, ...] = ("exclude", "keep")
DEFAULT_METRICS: tuple[str, ...] = ("ctr", "watch_time", "session_depth")
DEFAULT_PRE_DAYS = 7
REQUIRED = ("user_id", "ts", "session_id", "clicked", "watch_time_s")
_ARM = "__arm"

# The per-(user, arm) sums every metric is built from.
AGGREGATES: dict[str, pl.Expr] = {
    "impressions": pl.len().cast(pl.Float64),
    "clicks": pl.col("clicked").cast(pl.Float64).sum(),
    "watch_time_s": pl.col("watch_time_s").cast(pl.Float64).sum(),
    "sessions": pl.col("session_id").n_unique().cast(pl.Float64),
}


@dataclass(frozen=True)
class LoggedMetric:
    """A metric read from logs: which per-user sums are its numerator and denominator."""

    name: str
    numerator: str  # a key of AGGREGATES
    denominator: str


LOGGED_METRICS: dict[str, LoggedMetric] = {
    m.name: m
    for m in (
        LoggedMetric("ctr", "clicks", "impressions"),
        LoggedMetric("watch_time", "watch_time_s", "sessions"),
        LoggedMetric("session_depth", "clicks", "sessions"),
    )
}


def get_logged_metric(name: str) -> LoggedMetric:
    """Return the logged metric ``name`` or raise ``Unknown metric 'x'. Available: ...``."""
    try:
        return LOGGED_METRICS[name]
    except KeyError:
        raise UnknownNameError("metric", name, list(LOGGED_METRICS)) from None


@dataclass(frozen=True)
class LoggedCounts:
    """What went into the frame: users per arm, what was left out, the window."""

    arm_column: str
    control: str
    treatment: str
    users_control: int
    users_treatment: int
    both_arm_users: int  # seen in both arms within the window
    excluded_users: int  # of those, left out (both_arms="exclude")
    both_arms: BothArms
    events_used: int  # events of the frame's users and arms within the window
    events_null_arm: int  # within the window, ignored
    events_other_arms: int  # within the window, labelled with another arm, ignored
    other_arms: tuple[str, ...]
    start: dt.datetime
    end: dt.datetime | None  # exclusive; None = up to the last event
    last_event: dt.datetime  # the last event used
    pre_days: int
    pre_users_control: int  # users with pre-period data
    pre_users_treatment: int
    pre_events_with_arm_label: int  # pre-period events labelled control or treatment
    warnings: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """Return the counts as JSON-ready values, times as ISO 8601 UTC text."""
        pre_start = self.start - dt.timedelta(days=self.pre_days) if self.pre_days else None
        return {
            "arm_column": self.arm_column,
            "control": self.control,
            "treatment": self.treatment,
            "users": {self.control: self.users_control, self.treatment: self.users_treatment},
            "both_arm_users": self.both_arm_users,
            "excluded_users": self.excluded_users,
            "both_arms": self.both_arms,
            "events_used": self.events_used,
            "events_null_arm": self.events_null_arm,
            "events_other_arms": self.events_other_arms,
            "other_arms": list(self.other_arms),
            "window": {
                "start": format_ts(self.start),
                "end": format_ts(self.end),
                "last_event": format_ts(self.last_event),
            },
            "pre_period": {
                "days": self.pre_days,
                "start": format_ts(pre_start),
                "users": {
                    self.control: self.pre_users_control,
                    self.treatment: self.pre_users_treatment,
                },
                "events_with_arm_label": self.pre_events_with_arm_label,
            },
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class LoggedExperiment:
    """The sufficient-statistics frame of a logged experiment, and how it was made."""

    frame: pl.DataFrame
    counts: LoggedCounts
    daily: pl.DataFrame | None = None
    """With ``by_day``: the frame's sums per (user_id, arm, day), without the pre-period."""


def check_inputs(
    schema: pl.Schema,
    *,
    arm_column: str,
    control: str,
    treatment: str,
    metrics: Sequence[str],
    pre_days: int,
    both_arms: str,
) -> list[LoggedMetric]:
    """Check the options and the events' schema; return the metrics resolved."""
    if control == treatment:
        raise ConfigError(f"control and treatment are both '{control}'; name two different arms.")
    if isinstance(metrics, str) or not metrics:
        raise ConfigError("give the metrics as a non-empty list of names, e.g. ['ctr'].")
    resolved = [get_logged_metric(m) for m in metrics]
    repeated = sorted({m for m in metrics if list(metrics).count(m) > 1})
    if repeated:
        raise ConfigError(
            f"metric '{repeated[0]}' is listed twice; a metric is either a primary or a "
            "guardrail, once."
        )
    if isinstance(pre_days, bool) or not isinstance(pre_days, int) or pre_days < 0:
        raise ConfigError(f"pre_days must be a whole number of days >= 0; got {pre_days!r}.")
    if both_arms not in BOTH_ARMS:
        raise UnknownNameError("both-arms rule", both_arms, BOTH_ARMS)
    found = ", ".join(schema.names())
    if arm_column not in schema:
        raise SchemaError(
            f"the events have no column '{arm_column}' (found: {found}); name the column "
            "that holds each event's arm with --arm-column."
        )
    for column in REQUIRED:
        if column not in schema:
            raise SchemaError(f"the events have no column '{column}' (found: {found}).")
    if not isinstance(schema["ts"], pl.Datetime):
        raise SchemaError(f"column 'ts' must be a datetime; got {schema['ts']}.")
    return resolved


def _utc_ts(dtype: pl.DataType) -> pl.Expr:
    ts = pl.col("ts")
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
        return ts.dt.replace_time_zone("UTC")
    return ts.dt.convert_time_zone("UTC")


def _per_user(events: pl.LazyFrame, keys: list[str], suffix: str = "") -> pl.LazyFrame:
    sums = [expr.alias(name + suffix) for name, expr in AGGREGATES.items()]
    return events.group_by(keys).agg(*sums, pl.col("ts").max().alias("last" + suffix))


def _per_user_day(events: pl.LazyFrame) -> pl.LazyFrame:
    """The AGGREGATES per (user_id, arm, day); a session counts on the day of its first event."""
    dated = events.with_columns(pl.col("ts").dt.date().alias("day"))
    keys = ["user_id", "arm", "day"]
    sums = [expr.alias(name) for name, expr in AGGREGATES.items() if name != "sessions"]
    sessions = (
        dated.group_by("user_id", "arm", "session_id")
        .agg(pl.col("day").min())
        .group_by(keys)
        .agg(pl.len().cast(pl.Float64).alias("sessions"))
    )
    return (
        dated.group_by(keys)
        .agg(*sums)
        .join(sessions, on=keys, how="left")
        .with_columns(pl.col("sessions").fill_null(0.0))
    )


def aggregate_experiment(
    events: pl.LazyFrame,
    *,
    control: str,
    treatment: str,
    metrics: Sequence[str] = DEFAULT_METRICS,
    arm_column: str = "policy",
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    pre_days: int = DEFAULT_PRE_DAYS,
    both_arms: BothArms = "exclude",
    by_day: bool = False,
) -> LoggedExperiment:
    """Return the per-user frame of a logged experiment, control against treatment.

    ``pre_days = 0`` leaves out the pre-period columns; ``by_day`` adds the
    per-day sums (``LoggedExperiment.daily``). Raises ``UserError``
    when an arm label is not in ``arm_column`` (naming the labels found) or
    when the window holds no events of an arm.
    """
    schema = events.collect_schema()
    resolved = check_inputs(
        schema,
        arm_column=arm_column,
        control=control,
        treatment=treatment,
        metrics=metrics,
        pre_days=pre_days,
        both_arms=both_arms,
    )
    lf = events.with_columns(_utc_ts(schema["ts"]), pl.col(arm_column).cast(pl.String).alias(_ARM))
    in_arms = pl.col(_ARM).is_in([control, treatment])
    overview = lf.select(
        pl.col(_ARM).drop_nulls().unique().sort().implode().alias("labels"),
        pl.col("ts").filter(in_arms).min().alias("first"),
    ).collect()
    labels: list[str] = overview["labels"][0].to_list()
    check_labels(arm_column, labels, control, treatment)
    begin = as_utc(start if start is not None else overview["first"][0])
    stop = as_utc(end) if end is not None else None
    if stop is not None and stop <= begin:
        raise ConfigError(
            f"the window ends ({format_ts(stop)}) before it starts ({format_ts(begin)}); "
            "give an end after the start."
        )
    window = pl.col("ts") >= begin
    if stop is not None:
        window = window & (pl.col("ts") < stop)
    inside = lf.filter(window)
    arms = inside.filter(in_arms).rename({_ARM: "arm"})
    queries = [
        inside.select(
            pl.col(_ARM).is_null().sum().alias("null"),
            (pl.col(_ARM).is_not_null() & ~in_arms).sum().alias("other"),
            pl.col(_ARM).filter(pl.col(_ARM).is_not_null() & ~in_arms).unique().sort().implode(),
        ),
        _per_user(arms, ["user_id", "arm"]),
    ]
    if by_day:
        queries.append(_per_user_day(arms))
    ignored, per_user, *by_days = pl.collect_all(queries)
    for name in (control, treatment):
        if not (per_user["arm"] == name).any():
            until = "" if stop is None else f" to {format_ts(stop)}"
            raise UserError(
                f"no events of arm '{name}' in column '{arm_column}' from {format_ts(begin)}"
                f"{until}; check the window (--start, --end) and the arm labels."
            )
    shared = per_user.group_by("user_id").agg(pl.len().alias("arms")).filter(pl.col("arms") > 1)
    kept = per_user
    if both_arms == "exclude":
        kept = per_user.join(shared, on="user_id", how="anti")
    columns = [
        *(pl.col(m.numerator).alias(f"{m.name}_num") for m in resolved),
        *(pl.col(m.denominator).alias(f"{m.name}_den") for m in resolved),
    ]
    frame = kept.select("user_id", "arm", *columns)
    daily = None
    if by_days:
        daily = (
            by_days[0]
            .join(kept.select("user_id", "arm"), on=["user_id", "arm"], how="semi")
            .select("user_id", "arm", "day", *columns)
            .sort("user_id", "arm", "day")
        )
    pre_labelled = 0
    if pre_days:
        pre_start = begin - dt.timedelta(days=pre_days)
        pre_events = lf.filter((pl.col("ts") >= pre_start) & (pl.col("ts") < begin))
        pre, labelled = pl.collect_all(
            [_per_user(pre_events, ["user_id"], "_pre"), pre_events.select(in_arms.sum())]
        )
        pre_labelled = int(labelled.item())
        frame = frame.join(pre, on="user_id", how="left").select(
            *frame.columns,
            *(pl.col(f"{m.numerator}_pre").alias(f"{m.name}_pre_num") for m in resolved),
            *(pl.col(f"{m.denominator}_pre").alias(f"{m.name}_pre_den") for m in resolved),
        )
    frame = frame.select(ordered_columns(frame.columns, resolved)).sort("arm", "user_id")
    counts = _counts(
        frame,
        kept,
        ignored,
        arm_column=arm_column,
        control=control,
        treatment=treatment,
        shared=shared.height,
        both_arms=both_arms,
        window=(begin, stop),
        pre_days=pre_days,
        pre_labelled=pre_labelled,
        resolved=resolved,
    )
    return LoggedExperiment(frame, counts, daily)


def check_labels(arm_column: str, labels: list[str], control: str, treatment: str) -> None:
    """Raise `UserError` unless both arms' labels are among the column's ``labels``."""
    missing = [name for name in (control, treatment) if name not in labels]
    if not missing:
        return
    if not labels:
        raise UserError(
            f"column '{arm_column}' holds no arm labels (every value is null); name the column "
            "that says which arm served each event with --arm-column."
        )
    raise UserError(
        f"column '{arm_column}' has no events labelled '{missing[0]}' (labels found: "
        f"{', '.join(labels)}); give --control and --treatment from these."
    )


def ordered_columns(columns: list[str], resolved: list[LoggedMetric]) -> list[str]:
    """The frame's columns in contract order: user_id, arm, then each metric's."""
    order = ["user_id", "arm"]
    for m in resolved:
        order += [c for c in (f"{m.name}_{p}" for p in ("num", "den", "pre_num", "pre_den"))]
    return [c for c in order if c in columns]


def _counts(
    frame: pl.DataFrame,
    kept: pl.DataFrame,
    ignored: pl.DataFrame,
    *,
    arm_column: str,
    control: str,
    treatment: str,
    shared: int,
    both_arms: BothArms,
    window: tuple[dt.datetime, dt.datetime | None],
    pre_days: int,
    pre_labelled: int,
    resolved: list[LoggedMetric],
) -> LoggedCounts:
    users = {a: int((frame["arm"] == a).sum()) for a in (control, treatment)}
    pre_users = dict.fromkeys((control, treatment), 0)
    if pre_days:
        has_pre = frame.filter(pl.col(f"{resolved[0].name}_pre_den").is_not_null())
        pre_users = {a: int((has_pre["arm"] == a).sum()) for a in (control, treatment)}
    last = kept["last"].max()
    return logged_counts(
        arm_column=arm_column,
        control=control,
        treatment=treatment,
        users=users,
        pre_users=pre_users,
        shared=shared,
        both_arms=both_arms,
        ignored=(int(ignored["null"][0]), int(ignored["other"][0])),
        other_arms=tuple(ignored[_ARM][0].to_list()),
        events_used=int(kept["impressions"].sum()),
        last=last if isinstance(last, dt.datetime) else None,
        window=window,
        pre_days=pre_days,
        pre_labelled=pre_labelled,
    )


def logged_counts(
    *,
    arm_column: str,
    control: str,
    treatment: str,
    users: dict[str, int],
    pre_users: dict[str, int],
    shared: int,
    both_arms: BothArms,
    ignored: tuple[int, int],
    other_arms: tuple[str, ...],
    events_used: int,
    last: dt.datetime | None,
    window: tuple[dt.datetime, dt.datetime | None],
    pre_days: int,
    pre_labelled: int,
) -> LoggedCounts:
    """Build the counts and their warnings from the numbers either engine computed.

    ``users`` and ``pre_users`` are per arm label, ``ignored`` the window's
    events with a null label and with another arm's label, ``last`` the last
    event used (None when no event is used).
    """
    null_events, other_events = ignored
    excluded = shared if both_arms == "exclude" else 0
    warnings = []
    if shared:
        seen = users[control] + users[treatment] + excluded
        what = (
            "were left out of the analysis"
            if both_arms == "exclude"
            else "are kept in both arms (--both-arms keep)"
        )
        warnings.append(
            f"{shared:,} of {seen:,} users ({100 * shared / seen:.2g}%) were seen in both "
            f"'{control}' and '{treatment}' and {what}; a user should see one arm only, so "
            "check the assignment and the user ids."
        )
    if null_events:
        warnings.append(
            f"Ignored {_events(null_events)} in the window without a '{arm_column}' label."
        )
    if other_events:
        warnings.append(
            f"Ignored {_events(other_events)} in the window labelled with other arms "
            f"({', '.join(other_arms)})."
        )
    begin, stop = window
    return LoggedCounts(
        arm_column=arm_column,
        control=control,
        treatment=treatment,
        users_control=users[control],
        users_treatment=users[treatment],
        both_arm_users=shared,
        excluded_users=excluded,
        both_arms=both_arms,
        events_used=events_used,
        events_null_arm=null_events,
        events_other_arms=other_events,
        other_arms=other_arms,
        start=begin,
        end=stop,
        last_event=as_utc(last) if last is not None else begin,
        pre_days=pre_days,
        pre_users_control=pre_users[control],
        pre_users_treatment=pre_users[treatment],
        pre_events_with_arm_label=pre_labelled,
        warnings=tuple(warnings),
    )


def _events(n: int) -> str:
    return f"{n:,} event" if n == 1 else f"{n:,} events"
