"""The estimate through each day of an experiment: cumulative, pointwise, not sequential.

Whatever produces an experiment can also hand over its per-user sums split by
day: a frame with one row per (user_id, arm, day) and the ``<metric>_num`` /
``<metric>_den`` columns of the engine's frame (``frame.py``), summed over the
user's units of that day. :func:`cumulative_frame` adds them up through day
``d``, giving the engine's frame of the experiment as it stood at the end of
``d`` (a user counts from their first day); :func:`daily_statistics` runs
``analyse`` on each day's frame with the final analysis's options, so the
last day's numbers are the final analysis's.

Each day's CI is a fixed-horizon interval computed as if the experiment had
stopped that day. Looking at them day after day and stopping when one
excludes zero is not a sequential test: its false-positive rate is far above
alpha (Johari et al., "Peeking at A/B tests", KDD 2017). The points show
whether an effect holds or fades; the decision is the final analysis's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from recsim_cli.errors import ConfigError
from recsim_cli.experiment.analysis import analyse
from recsim_cli.experiment.frame import ARM, USER
from recsim_cli.experiment.results import ExperimentResult, clean

DAY = "day"
NOTE = (
    "pointwise, not sequential: each day's interval is the final analysis run on the data up "
    "to the end of that day; watching them and stopping early is not a valid test"
)
# Fewer users than this in an arm and a day's analysis has no variance: the day has no numbers.
MIN_USERS = 2


@dataclass(frozen=True)
class DailyMetric:
    """One metric's cumulative estimate through a day."""

    metric: str
    control: float  # the arm's compared estimate (CUPED-adjusted when CUPED is on)
    treatment: float
    difference: float
    ci: tuple[float, float]
    relative: float | None
    relative_ci: tuple[float, float] | None
    p_value: float  # unadjusted, of that day's fixed-horizon test

    def to_dict(self) -> dict[str, Any]:
        """Return the estimate as JSON-ready values (NaN becomes None)."""
        return {
            "metric": self.metric,
            "control": clean(self.control),
            "treatment": clean(self.treatment),
            "difference": clean(self.difference),
            "ci": [clean(self.ci[0]), clean(self.ci[1])],
            "relative": clean(self.relative),
            "relative_ci": None
            if self.relative_ci is None
            else [clean(self.relative_ci[0]), clean(self.relative_ci[1])],
            "p_value": clean(self.p_value),
        }


@dataclass(frozen=True)
class DailyPoint:
    """The experiment as it stood at the end of one day (UTC)."""

    day: dt.date
    users_control: int
    users_treatment: int
    metrics: tuple[DailyMetric, ...]  # empty when an arm had fewer than MIN_USERS users

    def to_dict(self) -> dict[str, Any]:
        """Return the point as JSON-ready values, the day as ISO 8601 text."""
        return {
            "day": self.day.isoformat(),
            "users": {"control": self.users_control, "treatment": self.users_treatment},
            "metrics": [m.to_dict() for m in self.metrics],
        }


@dataclass(frozen=True)
class DailyStatistics:
    """The cumulative estimate of every metric through each day of the window."""

    points: tuple[DailyPoint, ...]

    def to_dict(self) -> dict[str, Any]:
        """Return the points and what they mean as JSON-ready values."""
        return {
            "cumulative": True,
            "note": NOTE,
            "points": [p.to_dict() for p in self.points],
        }


def window_days(first: dt.date, last: dt.date) -> list[dt.date]:
    """Return every day from ``first`` to ``last``, both included."""
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def running_sums(per_day: pl.DataFrame) -> pl.DataFrame:
    """Return ``per_day`` with every numeric column summed over each (user, arm)'s days so far.

    ``per_day`` holds one row per (user_id, arm, day). The sums run in day
    order, one (user, arm) at a time, so they do not depend on threads.
    """
    values = [c for c in per_day.columns if c not in (USER, ARM, DAY)]
    return per_day.sort(USER, ARM, DAY).with_columns(
        pl.col(c).cum_sum().over(USER, ARM) for c in values
    )


def cumulative_frame(
    running: pl.DataFrame,
    through: dt.date,
    *,
    static: pl.DataFrame | None = None,
    paired: bool = False,
) -> pl.DataFrame:
    """Return the engine's frame of the data up to and including day ``through``.

    ``running`` is :func:`running_sums`' frame; each (user, arm) seen by
    ``through`` gets its sums as of its last day up to then. ``static``
    columns (a pre-period's, keyed by user_id and arm) are joined on. With
    ``paired``, only users seen in both arms by then are kept, as the paired
    design needs.
    """
    values = [c for c in running.columns if c not in (USER, ARM, DAY)]
    frame = (
        running.filter(pl.col(DAY) <= through)
        .group_by(USER, ARM, maintain_order=True)
        .agg(pl.col(c).last() for c in values)
    )
    if paired:
        both = frame.group_by(USER).agg(pl.len().alias("_arms")).filter(pl.col("_arms") > 1)
        frame = frame.join(both.select(USER), on=USER, how="semi", maintain_order="left")
    if static is not None:
        frame = frame.join(static, on=[USER, ARM], how="left", maintain_order="left")
    return frame


def daily_point(day: dt.date, result: ExperimentResult) -> DailyPoint:
    """One day's point of the plot: that day's users per arm and its metrics' results."""
    metrics = tuple(
        DailyMetric(
            metric=m.metric,
            control=m.control.estimate,
            treatment=m.treatment.estimate,
            difference=m.difference,
            ci=m.ci,
            relative=m.relative,
            relative_ci=m.relative_ci,
            p_value=m.p_value,
        )
        for m in result.metrics
    )
    return DailyPoint(day, result.n_control, result.n_treatment, metrics)


def daily_statistics(
    per_day: pl.DataFrame,
    days: Sequence[dt.date],
    options: Mapping[str, Any],
    *,
    static: pl.DataFrame | None = None,
) -> DailyStatistics:
    """Analyse the experiment through each of ``days``, with ``analyse``'s ``options``.

    ``options`` are the final analysis's keyword arguments (control,
    treatment, metrics, design, cuped, ...); a bootstrap is left out (each
    day's interval is the analytic one). A day on which an arm has fewer than
    two users has no numbers.
    """
    if "bootstrap" in options or "rng" in options:
        raise ConfigError("daily statistics use the analytic intervals: drop bootstrap and rng.")
    control, treatment = options.get("control", "control"), options.get("treatment", "treatment")
    paired = options.get("design", "split") == "paired"
    running = running_sums(per_day)
    points = []
    for day in days:
        frame = cumulative_frame(running, day, static=static, paired=paired)
        arms = frame.get_column(ARM)
        n_control, n_treatment = int((arms == control).sum()), int((arms == treatment).sum())
        if min(n_control, n_treatment) < MIN_USERS:
            points.append(DailyPoint(day, n_control, n_treatment, ()))
            continue
        points.append(daily_point(day, analyse(frame, **options)))
    return DailyStatistics(tuple(points))
