"""The true online A/B test inside a simulated world: the ground truth of an off-policy estimate.

Two policies serve the same sessions of a saved world over a window of days,
each through ``simulate_sessions``; the difference in what users then do is
the effect an online A/B test between them would measure, without its
sampling noise between users (every user is in both arms).

* **Lists.** A recommender arm serves precomputed per-(user, day) lists, the
  same ``daily_lists`` the estimators use (made from the logged history, so
  an arm's own simulated watches never feed back into later days' lists):
  ``ListPolicy`` shows ranks kS .. kS+S-1 on slate k, optionally exploring
  like the logging policy. ``logged`` is the world's own logging policy.
* **Replicates.** Replicate r draws the world's sessions again with a
  generator derived from (seed, r) and keeps those in the window; both arms
  then run them with the same behaviour generator (common random numbers):
  where they show the same item at the same place, users do the same thing.
  An A/A test has a lift of exactly 0.
* **Metrics** are population ratios per replicate (`METRICS`), averaged over
  replicates; the Monte Carlo standard error is their standard deviation over
  replicates divided by sqrt(R). The lift is treatment / control - 1 per
  replicate, averaged likewise; the common random numbers make its MC SE small.

See docs/simulator.md, "Online A/B tests in the world (the truth)".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import polars as pl

from recsim_cli.errors import ConfigError, InternalError
from recsim_cli.progress import Progress, no_progress
from recsim_cli.simulate.logs import id_series
from recsim_cli.simulate.policy import LoggingPolicy, SlatePolicy
from recsim_cli.simulate.sessions import Impressions, Sessions, draw_sessions, simulate_sessions
from recsim_cli.simulate.world import DAY_S, FloatArray, IntArray, World
from recsim_cli.times import format_ts

if TYPE_CHECKING:
    from recsim_cli.experiment.arms import PolicyArm

__all__ = [
    "METRICS",
    "ArmTruth",
    "ListPolicy",
    "OnlineTruth",
    "list_length",
    "logged_policy",
    "run_online_abtest",
    "simulate_abtest",
    "window_days",
]

METRICS: Final[Mapping[str, str]] = {
    "first_slate_ctr": "clicks on slate 0 / impressions on slate 0",
    "first_slate_clicks": "clicks on slate 0 / sessions",
    "first_slate_watch_time": "seconds watched on slate 0 / sessions",
    "slate_ctr": "clicks / impressions",
    "slate_watch_time": "seconds watched / slates shown",
    "ctr": "clicks / impressions (session CTR, the same as slate_ctr)",
    "watch_time": "seconds watched / sessions",
    "session_depth": "clicks / sessions",
    "slates_per_session": "slates shown / sessions",
}
"""Every metric of the online truth, in display order, with its definition."""

DEFAULT_REPLICATES: Final = 20
DayIndices = Sequence[int] | IntArray
"""World day indices (0 = the world's first day)."""
# Per slate index of a replicate: impressions, clicks, seconds watched, slates shown.
_IMPRESSIONS, _CLICKS, _WATCH, _SLATES = range(4)


# -- policies ----------------------------------------------------------------------------


def list_length(world: World) -> int:
    """Items per (user, day) list an arm serves: as many whole slates as the logging pool holds.

    A session then gets at most ``pool_size // slate_size`` slates under either
    arm, as under the logging policy.
    """
    config = world.config
    return (config.pool_size // config.slate_size) * config.slate_size


@dataclass(frozen=True, eq=False)
class ListPolicy(LoggingPolicy):
    """Serve precomputed per-(user, day) ranked lists: slate k shows ranks kS .. kS+S-1.

    The logging policy's mechanics over a list instead of a pool: ``keys`` are
    the sorted ``user * n_days + day``, ``ranking[r]`` the list of ``keys[r]``
    (L items, best first; ``max_slates`` = L // S). With ``epsilon`` > 0 a slate
    is, with that probability, a uniformly random ordered sample of S of the L
    items, and the propensity of item i at position p of slate k is exactly
    ``(1 - epsilon) * 1[rank of i == kS + p] + epsilon / L``; with epsilon 0
    every slate is the list's next S items, propensity 1, never explored.
    """

    @classmethod
    def from_lists(
        cls,
        world: World,
        lists: pl.DataFrame,
        slate_size: int,
        *,
        days: DayIndices | None = None,
        length: int | None = None,
        epsilon: float = 0.0,
        source: str = "the lists",
    ) -> ListPolicy:
        """Build the policy from ``daily_lists`` output (user_id, day, rank 0-based, item_id).

        Every user of the world needs a full list of ``length`` items (default
        `list_length`, a whole number of slates) on every day of ``days``
        (world day indices; default the days the lists cover); ranks at or past
        ``length`` are dropped. An id the world does not know, or a short list,
        is a ConfigError naming it; ``source`` names the lists in messages.
        """
        config = world.config
        if not isinstance(slate_size, int) or slate_size < 1:
            raise ConfigError(f"slate_size must be a whole number of at least 1; got {slate_size}.")
        length = list_length(world) if length is None else length
        if length < slate_size or length % slate_size:
            raise ConfigError(
                f"lists must hold a whole number of slates of {slate_size}; got length {length}."
            )
        if not 0.0 <= epsilon <= 1.0:
            raise ConfigError(
                f"epsilon must be in [0, 1], the share of slates explored; got {epsilon}."
            )
        lists = lists.filter(pl.col("rank").is_between(0, length - 1))
        user = _world_index(lists["user_id"], id_series("u", config.users, 6), "user", source)
        item = _world_index(lists["item_id"], id_series("v", config.items, 6), "item", source)
        epoch_day = (config.start - date(1970, 1, 1)).days
        day = lists["day"].cast(pl.Int64).to_numpy() - epoch_day
        outside = (day < 0) | (day >= config.days)
        if outside.any():
            raise ConfigError(
                f"{source} hold a list for {lists['day'][int(np.argmax(outside))]}, outside the "
                f"world's days {config.start}..{config.start + timedelta(days=config.days - 1)}."
            )
        wanted = np.unique(day) if days is None else np.unique(np.asarray(days, dtype=np.int64))
        if wanted.size and (wanted[0] < 0 or wanted[-1] >= config.days):
            raise InternalError(f"day indices {wanted.tolist()} are not all days of the world.")
        keys = (np.arange(config.users, dtype=np.int64)[:, None] * config.days + wanted).ravel()
        key = user * config.days + day
        row = np.searchsorted(keys, key)
        keep = (row < len(keys)) & (keys[np.minimum(row, len(keys) - 1)] == key)
        ranking = np.full((len(keys), length), -1, dtype=np.int64)
        ranking[row[keep], lists["rank"].to_numpy()[keep]] = item[keep]
        short = (ranking < 0).any(axis=1)
        if short.any():
            first = int(keys[int(np.argmax(short))])
            user_id = id_series("u", config.users, 6)[first // config.days]
            on = config.start + timedelta(days=first % config.days)
            raise ConfigError(
                f"{source} have no full list of {length} items for user {user_id} on {on}; give "
                f"every user of the world at least {length} items (ranks 1..{length}) on every "
                "day of the window."
            )
        return cls(
            keys=keys,
            ranking=ranking,
            epsilon=float(epsilon),
            slate_size=slate_size,
            n_days=config.days,
        )


def _world_index(ids: pl.Series, world_ids: pl.Series, what: str, source: str) -> IntArray:
    """Map ids (``u000042``, ``v000007``) to the world's indices; an unknown id is a ConfigError."""
    lookup = pl.DataFrame({"_id": world_ids, "_index": np.arange(len(world_ids), dtype=np.int64)})
    frame = ids.cast(pl.String).to_frame("_id")
    index = frame.join(lookup, on="_id", how="left", maintain_order="left")["_index"]
    missing = index.is_null()
    if missing.any():
        bad = ids.filter(missing)[0]
        raise ConfigError(
            f"{source} name {what} {bad!r}, which is not in this world (ids run "
            f"{world_ids[0]}..{world_ids[-1]}); make the lists from this world's logs."
        )
    return index.to_numpy().astype(np.int64)


def logged_policy(world: World, days: DayIndices) -> SlatePolicy:
    """Return the world's own logging policy for every user on ``days``: the ``logged`` arm.

    Built as the simulation built it, from the world's seed: the same daily
    production noise and, with arms, the same assignment of users to arms;
    the pools are drawn for every user-day of the window rather than for the
    logged sessions', so they are new draws of the same policy.
    """
    from recsim_cli.rng import spawn_generators
    from recsim_cli.simulate.policies import SplitPolicy
    from recsim_cli.simulate.run import STAGES

    config = world.config
    rng = spawn_generators(config.seed, STAGES)
    day = np.asarray(days, dtype=np.int64)
    users = np.repeat(np.arange(config.users, dtype=np.int64), len(day))
    user_days = np.tile(day, config.users)
    if config.arms:
        return SplitPolicy.build(
            world, users, user_days, assignment=rng["arms"], pools=rng["pools"]
        )
    return LoggingPolicy.build(world, users, user_days, rng["pools"])


def window_days(world: World, start: datetime, end: datetime) -> IntArray:
    """Return the world day indices of the window [start, end), which must be whole world days."""
    config = world.config
    first, last = config.start, config.start + timedelta(days=config.days)
    shown = f"{format_ts(start)}..{format_ts(end)}"
    s, e = int(start.timestamp()), int(end.timestamp())
    if s % DAY_S or e % DAY_S:
        raise ConfigError(
            f"The window {shown} must start and end at midnight UTC: the world's sessions are "
            "simulated in whole days; e.g. --window 2026-01-12..2026-01-15."
        )
    lo, hi = (s - world.start_ts) // DAY_S, (e - world.start_ts) // DAY_S
    if lo < 0 or hi > config.days or lo >= hi:
        raise ConfigError(
            f"The window {shown} is not inside the world's days {first}..{last} (end "
            "exclusive); choose a --window inside them, or models trained on this world's logs."
        )
    return np.arange(lo, hi, dtype=np.int64)


# -- results -----------------------------------------------------------------------------


def _num(value: float) -> float | int | None:
    """JSON-ready number: NaN (undefined, e.g. no sessions) becomes null."""
    if isinstance(value, int):
        return value
    return None if math.isnan(value) else float(value)


@dataclass(frozen=True)
class ArmTruth:
    """What one arm's users did: `METRICS` averaged over replicates, their MC SE, per slate."""

    label: str
    metrics: dict[str, float]
    mc_se: dict[str, float]
    per_slate: list[dict[str, float]]
    """Per slate index k, pooled over replicates: ctr, clicks and watch time per slate shown,
    slates reached per replicate and reach (slates shown / sessions)."""
    arm: dict[str, Any] = field(default_factory=dict)
    """Where the arm came from (``PolicyArm.to_dict()``), when known."""

    def to_dict(self) -> dict[str, Any]:
        """Return the arm's results as JSON-ready values (NaN as null)."""
        return {
            "label": self.label,
            "arm": self.arm,
            "metrics": {k: _num(v) for k, v in self.metrics.items()},
            "mc_se": {k: _num(v) for k, v in self.mc_se.items()},
            "per_slate": [{k: _num(v) for k, v in row.items()} for row in self.per_slate],
        }


@dataclass(frozen=True)
class OnlineTruth:
    """The true online A/B test: both arms, the relative lift, and how it was simulated."""

    control: ArmTruth
    treatment: ArmTruth
    lift: dict[str, float]
    """treatment / control - 1 per metric, averaged over replicates."""
    lift_mc_se: dict[str, float]
    replicates: int
    seed: int
    window: tuple[datetime, datetime]
    """(start, exclusive end), UTC."""
    users: int
    """Users of the world, every one of them served by both arms."""
    sessions_per_replicate: float
    """Mean number of sessions in the window per replicate."""

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-ready values (NaN as null), with the metric definitions."""
        return {
            "control": self.control.to_dict(),
            "treatment": self.treatment.to_dict(),
            "lift": {k: _num(v) for k, v in self.lift.items()},
            "lift_mc_se": {k: _num(v) for k, v in self.lift_mc_se.items()},
            "replicates": self.replicates,
            "seed": self.seed,
            "window": {"start": format_ts(self.window[0]), "end": format_ts(self.window[1])},
            "users": self.users,
            "sessions_per_replicate": _num(self.sessions_per_replicate),
            "definitions": dict(METRICS),
        }


# -- the experiment ----------------------------------------------------------------------


def _in_window(sessions: Sessions, days: IntArray) -> Sessions:
    keep = np.isin(sessions.day, days)
    return Sessions(
        user=sessions.user[keep],
        day=sessions.day[keep],
        start_ts=sessions.start_ts[keep],
        device=sessions.device[keep],
    )


def _totals(impressions: Impressions, n_slates: int) -> FloatArray:
    """Per slate index: impressions, clicks, seconds watched and slates shown, shape (4, K)."""
    slate = impressions.slate
    return np.stack(
        [
            np.bincount(slate, minlength=n_slates).astype(np.float64),
            np.bincount(slate, weights=impressions.clicked.astype(np.float64), minlength=n_slates),
            np.bincount(slate, weights=impressions.watch_time_s, minlength=n_slates),
            np.bincount(slate[impressions.position == 0], minlength=n_slates).astype(np.float64),
        ]
    )


def _metrics(totals: FloatArray, sessions: FloatArray) -> dict[str, FloatArray]:
    """Every metric of `METRICS` per replicate, from totals (R, 4, K) and sessions (R,)."""
    first = totals[:, :, 0]
    whole = totals.sum(axis=2)
    clicks, impressions, watch, slates = (
        whole[:, _CLICKS],
        whole[:, _IMPRESSIONS],
        whole[:, _WATCH],
        whole[:, _SLATES],
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        values = {
            "first_slate_ctr": first[:, _CLICKS] / first[:, _IMPRESSIONS],
            "first_slate_clicks": first[:, _CLICKS] / sessions,
            "first_slate_watch_time": first[:, _WATCH] / sessions,
            "slate_ctr": clicks / impressions,
            "slate_watch_time": watch / slates,
            "ctr": clicks / impressions,
            "watch_time": watch / sessions,
            "session_depth": clicks / sessions,
            "slates_per_session": slates / sessions,
        }
    return {name: np.asarray(values[name], dtype=np.float64) for name in METRICS}


def _mean_and_se(values: FloatArray) -> tuple[float, float]:
    mean = float(np.mean(values))
    se = float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan
    return mean, se


def _per_slate(totals: FloatArray, sessions: FloatArray) -> list[dict[str, float]]:
    pooled = totals.sum(axis=0)
    n_sessions = float(sessions.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        ctr = pooled[_CLICKS] / pooled[_IMPRESSIONS]
        clicks = pooled[_CLICKS] / pooled[_SLATES]
        watch = pooled[_WATCH] / pooled[_SLATES]
        reach = pooled[_SLATES] / n_sessions if n_sessions else np.full(len(ctr), math.nan)
    reached = pooled[_SLATES] / len(totals)
    return [
        {
            "slate": k,
            "ctr": float(ctr[k]),
            "clicks_per_slate": float(clicks[k]),
            "watch_time_per_slate": float(watch[k]),
            "slates_reached": float(reached[k]),
            "reach": float(reach[k]),
        }
        for k in range(pooled.shape[1])
    ]


def _arm_truth(label: str, totals: FloatArray, sessions: FloatArray) -> ArmTruth:
    metrics, mc_se = {}, {}
    for name, values in _metrics(totals, sessions).items():
        metrics[name], mc_se[name] = _mean_and_se(values)
    return ArmTruth(label, metrics, mc_se, _per_slate(totals, sessions))


def _fresh(seq: np.random.SeedSequence) -> np.random.Generator:
    """A new generator from ``seq``'s seed: spawning from it never shifts a later copy."""
    return np.random.default_rng(
        np.random.SeedSequence(seq.entropy, spawn_key=seq.spawn_key, pool_size=seq.pool_size)
    )


def run_online_abtest(
    world: World,
    control: SlatePolicy,
    treatment: SlatePolicy,
    *,
    days: DayIndices,
    replicates: int = DEFAULT_REPLICATES,
    seed: int = 0,
    progress: Progress = no_progress,
    labels: tuple[str, str] = ("control", "treatment"),
) -> OnlineTruth:
    """Run the online A/B test of two policies on ``days`` (world day indices) of ``world``.

    Replicate r draws the world's sessions from a generator derived from
    (seed, r), keeps those on ``days``, and runs them under each policy with
    the same behaviour generator (common random numbers). Both policies must
    serve every user on every one of ``days``.
    """
    if not isinstance(replicates, int) or replicates < 1:
        raise ConfigError(f"--replicates must be a whole number of at least 1; got {replicates}.")
    if control.slate_size != treatment.slate_size:
        raise InternalError("the two arms' policies must show slates of the same size.")
    day = np.unique(np.asarray(days, dtype=np.int64))
    if not day.size:
        raise ConfigError("The window holds no day of the world; choose a longer --window.")
    policies = (control, treatment)
    totals = [np.zeros((replicates, 4, p.max_slates)) for p in policies]
    sessions = np.zeros(replicates)
    progress("replicates", 0, replicates)
    for r, child in enumerate(np.random.SeedSequence(seed).spawn(replicates)):
        session_seq, behaviour_seq = child.spawn(2)
        drawn = _in_window(draw_sessions(world, _fresh(session_seq)), day)
        sessions[r] = len(drawn)
        for arm, policy in enumerate(policies):
            impressions = simulate_sessions(world, policy, drawn, _fresh(behaviour_seq))
            totals[arm][r] = _totals(impressions, policy.max_slates)
        progress("replicates", r + 1, replicates)
    arms = [_arm_truth(label, t, sessions) for label, t in zip(labels, totals, strict=True)]
    per_control, per_treatment = (_metrics(t, sessions) for t in totals)
    lift, lift_se = {}, {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for name in METRICS:
            lift[name], lift_se[name] = _mean_and_se(per_treatment[name] / per_control[name] - 1)
    start = datetime.combine(world.config.start, datetime.min.time(), tzinfo=UTC)
    return OnlineTruth(
        control=arms[0],
        treatment=arms[1],
        lift=lift,
        lift_mc_se=lift_se,
        replicates=replicates,
        seed=seed,
        window=(start + timedelta(days=int(day[0])), start + timedelta(days=int(day[-1]) + 1)),
        users=world.config.users,
        sessions_per_replicate=float(sessions.mean()),
    )


# -- from what the user names to the truth -----------------------------------------------


def simulate_abtest(
    world_dir: Path,
    *,
    control: str,
    treatment: str,
    registry: Path,
    data: Path | None = None,
    window: tuple[datetime, datetime] | None = None,
    replicates: int = DEFAULT_REPLICATES,
    seed: int = 0,
    progress: Progress = no_progress,
) -> OnlineTruth:
    """Run the true online A/B test of two arms (models, list files or ``logged``) in a world.

    The window defaults as in ``evaluation_window`` (from the latest model
    cutoff to the end of the world) and must be whole days of the world. Model
    lists are made from the dataset at ``data`` (default: the first model's
    training dataset) for every user of the world, each day as of its midnight.
    """
    from recsim_cli.dataset import Dataset
    from recsim_cli.experiment.arms import (
        check_same_dataset,
        daily_lists,
        evaluation_window,
        resolve_arm,
    )
    from recsim_cli.simulate.storage import load_world

    world = load_world(world_dir)
    config = world.config
    arms = (resolve_arm(control, registry=registry), resolve_arm(treatment, registry=registry))
    world_start = datetime.fromtimestamp(world.start_ts, tz=UTC)
    start, end = evaluation_window(
        arms,
        window,
        first_event=world_start,
        last_event=world_start + timedelta(days=config.days, seconds=-1),
    )
    days = window_days(world, start, end)
    dates: list[date] = [config.start + timedelta(days=int(d)) for d in days]
    dataset: Dataset | None = None
    events: pl.DataFrame | None = None
    models = [a for a in arms if a.kind == "model"]
    if models:
        path = data if data is not None else models[0].dataset_path
        if path is None:
            raise ConfigError(
                f"Model '{models[0].label}' does not record its dataset; give --data DIR."
            )
        dataset = Dataset.open(path)
        check_same_dataset(arms, dataset.fingerprint)
        events = dataset.events().collect()
    users = id_series("u", config.users, 6).alias("user_id")
    length = list_length(world)

    def policy_of(arm: PolicyArm) -> SlatePolicy:
        if arm.kind == "logged":
            return logged_policy(world, days)
        lists = daily_lists(
            arm,
            dataset=dataset,
            users=users,
            days=dates,
            length=length,
            progress=progress,
            events=events,
        )
        return ListPolicy.from_lists(
            world,
            lists,
            config.slate_size,
            days=days,
            length=length,
            source=f"the lists of {arm.label}",
        )

    policies = (policy_of(arms[0]), policy_of(arms[1]))
    truth = run_online_abtest(
        world,
        policies[0],
        policies[1],
        days=days,
        replicates=replicates,
        seed=seed,
        progress=progress,
        labels=(arms[0].label, arms[1].label),
    )
    return replace(
        truth,
        control=replace(truth.control, arm=arms[0].to_dict()),
        treatment=replace(truth.treatment, arm=arms[1].to_dict()),
    )
