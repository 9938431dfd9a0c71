"""Estimate an A/B test of two policies from logs of another: lists -> estimates -> frame -> gate.

:func:`run_offpolicy_abtest` is what ``recsim abtest --control A --treatment B``
runs when A and B are registry models, recommendation files or ``logged``:

1. resolve both arms, check the models were trained on the same data, and fix
   the evaluation window (after the later cutoff, or ``--window``);
2. read the window's impressions and build each arm's daily lists for every
   user who had a session in it;
3. per-slate metrics: weight the logged impressions (``offpolicy``) into
   per-user pseudo outcomes, with the weight diagnostics as health checks;
4. session metrics: roll each arm's slates through a session model fit on
   the logs before the window, with a doubly robust correction on the first
   slate (``session_model``);
5. build the engine's per-user frame (paired: every user in both arms; split:
   users hashed into arms) and analyse it with each metric's evidence, then
   decide with the gate;
6. analyse the same sums through each day of the window (``daily.py``): a
   session's sums count on its day, a user from their first session.

With ``engine="spark"`` steps 2, 3, 4 and the window's counts run in Spark
(``recsim_cli.spark.offpolicy``): the weights in Spark SQL, the session
model's predictions and rollouts in pandas functions over Spark's rows
(``recsim_cli.spark.offpolicy_model``); the model is fit here on the
pre-window impressions Spark brings back. The per-user sums come back and
steps 5 and 6 run here as on polars.

It prints nothing; every error is a ``RecsimError``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from recsim_cli import REPORT_SCHEMA_VERSION, __version__
from recsim_cli.dataset import Dataset, open_dataset
from recsim_cli.errors import ConfigError, DatasetError, InternalError
from recsim_cli.experiment.abtest import Fingerprint, GatedReport, resolve_options
from recsim_cli.experiment.analysis import analyse
from recsim_cli.experiment.arms import (
    PolicyArm,
    check_same_dataset,
    daily_lists,
    evaluation_window,
    resolve_arm,
)
from recsim_cli.experiment.daily import DailyStatistics, daily_statistics
from recsim_cli.experiment.gate import DEFAULT_MIN_ESS, Decision, Gate, decide, load_gate
from recsim_cli.experiment.health import DEFAULT_MIN_USERS, HealthCheck
from recsim_cli.experiment.metrics import Evidence, MetricDef, get_metric
from recsim_cli.experiment.offpolicy import (
    MIN_MEAN_WEIGHT,
    SELF_NORMALISED,
    WEIGHTED,
    Estimator,
    FloatArray,
    WeightDiagnostics,
    attach_targets,
    importance_weights,
    per_user_slate_index_sums,
    per_user_slate_sums,
    prepare_impressions,
    pseudo_outcomes,
    replay_acceptance,
    replay_uniforms,
    resolve_estimator,
    slate_sums,
    sum_runs,
    weight_diagnostics,
)
from recsim_cli.experiment.results import ExperimentResult
from recsim_cli.progress import Progress, no_progress
from recsim_cli.spark.session import ENGINES, Engine, SparkConfig
from recsim_cli.times import format_ts

if TYPE_CHECKING:
    from recsim_cli.experiment.session_model import SessionModel
    from recsim_cli.spark.offpolicy import SparkLogs

FORMAT_VERSION = 1
DESIGNS = ("paired", "split")
DEFAULT_METRICS: tuple[str, ...] = (
    "first_slate_ctr",
    "first_slate_watch_time",
    "watch_time",
    "session_depth",
)
# Per-slate metrics, estimated off-policy; everything else comes from the session model.
SLATE_METRICS = {
    "first_slate_ctr": ("first_clicks", "first_impressions"),
    "first_slate_clicks": ("first_clicks", "first_slates"),
    "first_slate_watch_time": ("first_watch_s", "first_slates"),
    "slate_ctr": ("clicks", "impressions"),
    "slate_watch_time": ("watch_s", "slates"),
}
SESSION_METRICS = {
    "ctr": ("s_clicks", "s_impressions"),
    "watch_time": ("s_watch_s", "sessions"),
    "session_depth": ("s_clicks", "sessions"),
    "slates_per_session": ("s_slates", "sessions"),
}
DEFAULT_SALT = "recsim-abtest"
BY_DAY = ("user_id", "day")
DEFAULT_REPLICATES = 8


def metric_evidence(metric: str, estimator: Estimator) -> Evidence:
    """Return what ``metric``'s estimate rests on under ``estimator``."""
    if metric in SLATE_METRICS and estimator != "dm":
        return "off-policy"
    return "model-based"


@dataclass(frozen=True)
class WindowLogs:
    """The evaluation window's impressions, ready for the estimators, and its sessions."""

    impressions: pl.DataFrame  # offpolicy.IMPRESSION_COLUMNS
    sessions: pl.DataFrame  # session_id, user_id, day, ts, device
    slate_size: int
    max_slates: int

    @classmethod
    def of(cls, events: pl.DataFrame) -> WindowLogs:
        """Prepare the window's events (the data contract's columns)."""
        impressions, slate_size, max_slates = prepare_impressions(events)
        return cls(impressions, _sessions(impressions), slate_size, max_slates)

    @property
    def users(self) -> pl.DataFrame:
        """The users with a session in the window, sorted, as a one-column frame."""
        return self.sessions.select("user_id").unique().sort("user_id")

    @property
    def user_days(self) -> pl.DataFrame:
        """The (user_id, day) pairs with a session in the window: the lists an estimate reads."""
        return self.sessions.select("user_id", "day").unique().sort("user_id", "day")

    @property
    def list_length(self) -> int:
        """Ranks a list needs to fill every slate a session can reach."""
        return self.slate_size * self.max_slates


@dataclass(frozen=True)
class ArmEstimate:
    """One arm's per-user sums and its diagnostics."""

    slate_sums: pl.DataFrame  # user_id + offpolicy.SLATE_SUMS
    slate_index_sums: pl.DataFrame  # user_id, slate, clicks, watch_s, impressions, slates
    session_sums: pl.DataFrame | None  # user_id, s_clicks, s_impressions, s_watch_s, ...
    diagnostics: WeightDiagnostics | None
    daily_sums: pl.DataFrame | None = None  # user_id, day, the slate and session sums


@dataclass(frozen=True)
class OffPolicyReport(GatedReport):
    """An estimated experiment of two policies, and the gate's decision when one was given."""

    control: PolicyArm
    treatment: PolicyArm
    fingerprint: Fingerprint
    estimator: Estimator
    design: str
    traffic: float | None
    target_epsilon: float
    window: tuple[dt.datetime, dt.datetime]
    counts: dict[str, int]
    diagnostics: dict[str, WeightDiagnostics | None]
    session_model: dict[str, Any] | None
    slate_breakdown: tuple[dict[str, Any], ...]
    result: ExperimentResult
    decision: Decision | None
    gate: Gate | None
    seed: int
    warnings: tuple[str, ...] = field(default=())
    daily: DailyStatistics | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return every number, method and input of the report as JSON-ready values."""
        start, end = self.window
        return {
            "format_version": FORMAT_VERSION,
            "schema_version": REPORT_SCHEMA_VERSION,
            "kind": "recsim abtest report",
            "mode": "off-policy",
            "recsim_version": __version__,
            "seed": self.seed,
            "input": self.fingerprint.to_dict(),
            "arms": {"control": self.control.to_dict(), "treatment": self.treatment.to_dict()},
            "estimator": self.estimator,
            "design": self.design,
            "traffic": self.traffic,
            "target_epsilon": self.target_epsilon,
            "target_note": target_note(self.target_epsilon),
            "window": {"start": format_ts(start), "end": format_ts(end)},
            "counts": dict(self.counts),
            "evidence": {m.metric: m.evidence for m in self.result.metrics},
            "diagnostics": {
                arm: None if d is None else d.to_dict() for arm, d in self.diagnostics.items()
            },
            "session_model": self.session_model,
            "slate_breakdown": list(self.slate_breakdown),
            "daily": None if self.daily is None else self.daily.to_dict(),
            **self.outcome_dict(),
        }


def target_note(target_epsilon: float) -> str | None:
    """Say what smoothing the target does to the estimand, or None without it."""
    if not target_epsilon:
        return None
    return (
        f"--target-epsilon {target_epsilon:g}: each arm is estimated as a mixture that follows "
        f"its list with probability {1 - target_epsilon:g} and the logging policy otherwise, "
        "not the arm itself"
    )


def hash_share(ids: pl.Series, salt: str) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Map each id to a number in [0, 1): 64-bit FNV-1a of ``salt:id``, then MurmurHash3's fmix64.

    FNV-1a alone leaves the high bits of similar short ids poorly mixed; the
    finaliser spreads them. Stable across machines and runs (not Python's
    salted ``hash``); vectorised over ids, one step per byte of the longest id.
    """
    raw = [f"{salt}:{u}".encode() for u in ids.cast(pl.String).to_list()]
    width = max((len(r) for r in raw), default=0)
    codes = np.zeros((len(raw), width), dtype=np.uint64)
    lengths = np.array([len(r) for r in raw], dtype=np.int64)
    if width:
        flat = np.frombuffer(b"".join(r.ljust(width, b"\0") for r in raw), dtype=np.uint8)
        codes = flat.reshape(len(raw), width).astype(np.uint64)
    h = np.full(len(raw), 0xCBF29CE484222325, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(width):
            live = lengths > j
            h = np.where(live, (h ^ codes[:, j]) * np.uint64(0x100000001B3), h)
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xFF51AFD7ED558CCD)
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xC4CEB9FE1A85EC53)
        h ^= h >> np.uint64(33)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _window_events(
    dataset: Dataset, start: dt.datetime, end: dt.datetime, data: Path | str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return the events inside [start, end) and those before start."""
    try:
        events = dataset.events()
        inside = events.filter((pl.col("ts") >= start) & (pl.col("ts") < end)).collect()
        before = events.filter(pl.col("ts") < start).collect()
    except (OSError, pl.exceptions.ComputeError) as exc:
        raise DatasetError(
            f"{data}: cannot read the dataset's events ({exc}); re-create it with "
            "recsim ingest --replace."
        ) from exc
    return inside, before


def _days(start: dt.datetime, end: dt.datetime) -> list[dt.date]:
    last = (end - dt.timedelta(microseconds=1)).date()
    n = (last - start.date()).days + 1
    return [start.date() + dt.timedelta(days=i) for i in range(max(n, 0))]


def _sessions(impressions: pl.DataFrame) -> pl.DataFrame:
    """One row per logged session: session_id, user_id, day, ts (start), device."""
    return (
        impressions.group_by("session_id")
        .agg(
            pl.col("user_id").first(),
            pl.col("day").first(),
            pl.col("ts").min(),
            pl.col("device").sort_by("ts").first(),
        )
        .sort("session_id")
    )


def _observed_session_sums(
    slates: pl.DataFrame, keys: tuple[str, ...] = ("user_id",)
) -> pl.DataFrame:
    """Session sums of the logs themselves (the ``logged`` arm) per ``keys``, from its slates."""
    new_session = pl.col("session_id") != pl.col("session_id").shift(1)
    marked = slates.with_columns(new_session.fill_null(True).cast(pl.Float64).alias("_session"))
    return sum_runs(
        marked.sort(*keys, maintain_order=True),
        list(keys),
        {
            "s_clicks": pl.col("clicks"),
            "s_impressions": pl.col("impressions"),
            "s_watch_s": pl.col("watch_s"),
            "s_slates": pl.lit(1.0, dtype=pl.Float64),
            "sessions": pl.col("_session"),
        },
    )


def _dr_correction(
    impressions: pl.DataFrame,
    w: FloatArray,
    residuals: tuple[FloatArray, FloatArray],
    keys: tuple[str, ...] = ("user_id",),
) -> pl.DataFrame:
    """The first slate's doubly robust correction ``w (y - q)`` of clicks and watch, per ``keys``.

    ``residuals`` are ``y - q`` of clicks and of watch seconds per impression.
    """
    first = impressions.get_column("slate").to_numpy() == 0
    frame = impressions.select(*keys).with_columns(
        pl.Series("c", np.where(first, w * residuals[0], 0.0)),
        pl.Series("w", np.where(first, w * residuals[1], 0.0)),
    )
    if keys != ("user_id",):  # the impressions are sorted by user; runs of other keys need a sort
        frame = frame.filter(pl.Series(first)).sort(*keys, maintain_order=True)
    return sum_runs(frame, list(keys), {"dr_clicks": pl.col("c"), "dr_watch_s": pl.col("w")})


def _rollout_session_sums(
    rollout: pl.DataFrame,
    correction: pl.DataFrame | None,
    sessions: pl.DataFrame,
    keys: tuple[str, ...] = ("user_id",),
) -> pl.DataFrame:
    """Session sums of a rollout per ``keys``, plus the first slate's doubly robust correction.

    Every unit (user, or user and day) with a session in ``sessions`` gets a row.
    """
    if "day" in keys:
        rollout = rollout.join(
            sessions.select("session_id", "day"), on="session_id", how="left", maintain_order="left"
        )
    per_user = sum_runs(
        rollout.sort(*keys, "session_id"),
        list(keys),
        {
            "s_clicks": pl.col("clicks"),
            "s_impressions": pl.col("impressions"),
            "s_watch_s": pl.col("watch_s"),
            "s_slates": pl.col("slates"),
            "sessions": pl.lit(1.0, dtype=pl.Float64),
        },
    )
    users = sessions.select(*keys).unique().sort(*keys)
    per_user = users.join(per_user, on=list(keys), how="left").fill_null(0.0)
    if correction is not None:
        per_user = (
            per_user.join(correction, on=list(keys), how="left")
            .with_columns(
                (pl.col("s_clicks") + pl.col("dr_clicks").fill_null(0.0)).alias("s_clicks"),
                (pl.col("s_watch_s") + pl.col("dr_watch_s").fill_null(0.0)).alias("s_watch_s"),
            )
            .drop("dr_clicks", "dr_watch_s")
        )
    return per_user.sort(*keys)


def predict_targets(
    logs: WindowLogs, target: pl.Series, session_model: SessionModel
) -> tuple[FloatArray, FloatArray]:
    """The session model's expected clicks and watch seconds of the arm's item at each slot.

    0 where the arm's list has no item at the slot's rank.
    """
    slots = logs.impressions.select("user_id", "ts", "device", "slate", "position").with_columns(
        target.alias("item_id")
    )
    predicted = session_model.predict(slots)
    q_click = predicted.get_column("p_click").fill_null(0.0).to_numpy().astype(np.float64)
    q_watch = q_click * predicted.get_column("watch_s").fill_null(0.0).to_numpy()
    missing = target.is_null().to_numpy()
    q_click[missing] = 0.0
    q_watch[missing] = 0.0
    return q_click, q_watch


def estimate_arm(
    logs: WindowLogs,
    lists: pl.DataFrame | None,
    *,
    estimator: Estimator,
    target_epsilon: float = 0.0,
    session_model: SessionModel | None = None,
    need_sessions: bool = False,
    seed: int = 0,
    replicates: int = DEFAULT_REPLICATES,
    predictions: tuple[FloatArray, FloatArray] | None = None,
    rollout: pl.DataFrame | None = None,
    by_day: bool = False,
    progress: Progress = no_progress,
) -> ArmEstimate:
    """Weight the logs for one arm (``lists``; None is the logging policy), sum per user.

    With ``need_sessions`` the arm's sessions are rolled out through
    ``session_model`` (the logging policy's are read from the logs). With
    ``by_day`` the same sums per user and session day are kept too
    (``ArmEstimate.daily_sums``).
    ``predictions`` (of ``predict_targets``) and ``rollout`` (of
    ``SessionModel.rollout``), when given, are used instead of computing them:
    they do not depend on the estimator, so comparisons of estimators share them.
    """
    impressions, sessions = logs.impressions, logs.sessions
    target = None if lists is None else attach_targets(impressions, lists)
    weights = importance_weights(
        impressions, target, target_epsilon=0.0 if target is None else target_epsilon
    )
    slot = impressions.get_column("rank").to_numpy().astype(np.int64)
    used = weights.w
    if estimator == "replay" and target is not None:
        used = replay_acceptance(impressions, replay_uniforms(impressions, seed)) * weights.match
    clicks_y = impressions.get_column("clicked").to_numpy().astype(np.float64)
    watch_y = impressions.get_column("watch_s").to_numpy().astype(np.float64)
    q_click = q_watch = None
    need_q = estimator in ("dm", "dr") or (need_sessions and estimator in WEIGHTED)
    if target is not None and need_q:
        if predictions is None:
            if session_model is None:
                raise InternalError(f"the {estimator} estimator needs the session model.")
            predictions = predict_targets(logs, target, session_model)
        q_click, q_watch = predictions
    if target is None:
        clicks_hat, watch_hat = clicks_y, watch_y  # the logs are the logging policy's outcomes
    else:
        clicks_hat = pseudo_outcomes(estimator, clicks_y, w=used, slot=slot, q=q_click)
        watch_hat = pseudo_outcomes(estimator, watch_y, w=used, slot=slot, q=q_watch)
    diagnostics = None
    if estimator in WEIGHTED:
        diagnostics = weight_diagnostics(
            impressions,
            target,
            weights.w,
            effective=used,
            slot=slot if estimator in SELF_NORMALISED else None,
        )
    per_slate = slate_sums(impressions, clicks_hat, watch_hat)
    session_sums = daily_sessions = None
    if need_sessions:
        if target is None or lists is None:  # the slates hold the logs' own outcomes
            session_sums = _observed_session_sums(per_slate)
            if by_day:
                daily_sessions = _observed_session_sums(per_slate, BY_DAY)
        else:
            if rollout is None:
                if session_model is None:
                    raise InternalError("session metrics of a list need the session model.")
                rollout = session_model.rollout(
                    sessions,
                    lists,
                    slate_size=logs.slate_size,
                    max_slates=logs.max_slates,
                    seed=seed,
                    replicates=replicates,
                    progress=progress,
                )
            correction = daily_correction = None
            if estimator in WEIGHTED and q_click is not None and q_watch is not None:
                residuals = (clicks_y - q_click, watch_y - q_watch)
                correction = _dr_correction(impressions, weights.w, residuals)
                if by_day:
                    daily_correction = _dr_correction(impressions, weights.w, residuals, BY_DAY)
            session_sums = _rollout_session_sums(rollout, correction, sessions)
            if by_day:
                daily_sessions = _rollout_session_sums(rollout, daily_correction, sessions, BY_DAY)
    daily = None
    if by_day:
        daily = per_user_slate_sums(per_slate, BY_DAY)
        if daily_sessions is not None:
            daily = daily.join(daily_sessions, on=BY_DAY, how="full", coalesce=True)
            daily = daily.fill_null(0.0).sort(*BY_DAY)
    return ArmEstimate(
        slate_sums=per_user_slate_sums(per_slate),
        slate_index_sums=per_user_slate_index_sums(per_slate),
        session_sums=session_sums,
        diagnostics=diagnostics,
        daily_sums=daily,
    )


def _metric_columns(
    sums: pl.DataFrame, metrics: Sequence[str], table: dict[str, tuple[str, str]]
) -> list[pl.Expr]:
    exprs: list[pl.Expr] = []
    for name in metrics:
        if name in table:
            num, den = table[name]
            exprs += [pl.col(num).alias(f"{name}_num"), pl.col(den).alias(f"{name}_den")]
    return exprs


def _arm_frame(
    estimate: ArmEstimate, label: str, metrics: Sequence[str], users: pl.DataFrame
) -> pl.DataFrame:
    """The engine's rows of one arm: every user of ``users``, one column pair per metric."""
    frame = users.join(
        estimate.slate_sums.select(
            "user_id", *_metric_columns(estimate.slate_sums, metrics, SLATE_METRICS)
        ),
        on="user_id",
        how="left",
    )
    if estimate.session_sums is not None:
        frame = frame.join(
            estimate.session_sums.select(
                "user_id", *_metric_columns(estimate.session_sums, metrics, SESSION_METRICS)
            ),
            on="user_id",
            how="left",
        )
    return frame.fill_null(0.0).with_columns(pl.lit(label).alias("arm"))


def _health_checks(
    diagnostics: dict[str, WeightDiagnostics | None], min_ess: int
) -> list[HealthCheck]:
    checks: list[HealthCheck] = []
    for label, d in diagnostics.items():
        if d is None:
            continue
        lo, hi = d.mean_weight_ci
        checks.append(
            HealthCheck(
                f"weights:{label}",
                d.coverage_ok,
                f"{label}: mean importance weight {d.mean_weight:.3f} (95% CI {lo:.3f} to "
                f"{hi:.3f}) "
                + (
                    "covers what the arm shows"
                    if d.coverage_ok
                    else f"is below {MIN_MEAN_WEIGHT:g}: the logs rarely or never show the items "
                    f"this arm recommends ({100 * d.unlogged_share:.1f}% of its slots hold items "
                    "nobody was shown that day), so missing clicks would be counted as none; "
                    "log with exploration over its candidates, or use --estimator dm "
                    "(model-based, cannot ship)"
                )
                + ".",
            )
        )
        ess = d.effective_sample_size
        checks.append(
            HealthCheck(
                f"effective_sample_size:{label}",
                ess >= min_ess,
                f"{label}: effective sample size {ess:,.0f} of {d.impressions:,} impressions "
                + (
                    f"(minimum {min_ess:,})"
                    if ess >= min_ess
                    else f"is below the minimum {min_ess:,}: too few logged impressions show "
                    "what this arm would show; collect more logs with exploration"
                )
                + ".",
            )
        )
    return checks


def _breakdown(
    estimates: tuple[ArmEstimate, ArmEstimate],
    labels: tuple[str, str],
    users: pl.DataFrame,
    *,
    design: str,
    split: tuple[float, float],
    alpha: float,
    min_users: int,
) -> tuple[dict[str, Any], ...]:
    """Per slate index: CTR and watch time per slate of both arms, with the lift's CI."""
    rows: list[dict[str, Any]] = []
    slates = sorted(
        set(estimates[0].slate_index_sums.get_column("slate").unique().to_list())
        | set(estimates[1].slate_index_sums.get_column("slate").unique().to_list())
    )
    for k in slates:
        defs = [
            MetricDef(f"slate{k}_ctr", f"CTR of slate {k}", "", "clicks", "impressions"),
            MetricDef(f"slate{k}_watch_time", f"Watch time of slate {k}", "", "watch", "slates"),
        ]
        parts = []
        for estimate, label in zip(estimates, labels, strict=True):
            sums = estimate.slate_index_sums.filter(pl.col("slate") == k)
            part = users.join(
                sums.select(
                    "user_id",
                    pl.col("clicks").alias(defs[0].num_column),
                    pl.col("impressions").alias(defs[0].den_column),
                    pl.col("watch_s").alias(defs[1].num_column),
                    pl.col("slates").alias(defs[1].den_column),
                ),
                on="user_id",
                how="left",
            ).fill_null(0.0)
            parts.append(part.with_columns(pl.lit(label).alias("arm")))
        frame = pl.concat(parts, how="vertical")
        if design == "split":
            frame = frame.filter(pl.col("_arm") == pl.col("arm"))
        reached = frame.group_by("arm").agg((pl.col(defs[0].den_column) > 0).sum().alias("n"))
        if reached.height < 2 or int(reached.get_column("n").min() or 0) < min_users:  # type: ignore[arg-type]
            continue
        result = analyse(
            frame.drop("_arm") if "_arm" in frame.columns else frame,
            defs,
            control=labels[0],
            treatment=labels[1],
            design=design,
            alpha=alpha,
            correction="none",
            split=split,
        )
        for m in result.metrics:
            rows.append(
                {
                    "slate": k,
                    "metric": "ctr" if m.metric.endswith("_ctr") else "watch_time",
                    "control": m.control.estimate,
                    "treatment": m.treatment.estimate,
                    "relative": m.relative,
                    "relative_ci": None if m.relative_ci is None else list(m.relative_ci),
                    "p_value": m.p_value if math.isfinite(m.p_value) else None,
                    "users_reaching": {
                        str(r["arm"]): int(r["n"]) for r in reached.iter_rows(named=True)
                    },
                }
            )
    return tuple(rows)


def analyse_estimates(
    estimates: tuple[ArmEstimate, ArmEstimate],
    labels: tuple[str, str],
    users: pl.DataFrame,
    *,
    estimator: Estimator,
    design: str,
    options: dict[str, Any],
    salt: str = DEFAULT_SALT,
    min_ess: int = DEFAULT_MIN_ESS,
) -> tuple[ExperimentResult, pl.DataFrame]:
    """Build the engine's frame of two arms' estimates and analyse it; also return the users.

    ``options`` are ``analyse``'s (metrics, guardrails, alpha, split, ...).
    In the split design, users are hashed with ``salt`` into the arms, the
    treatment taking ``options["split"][1]`` of them; the returned users
    frame then carries each user's arm in ``_arm``.
    """
    names = [*options["metrics"], *options["guardrails"]]
    assigned = users
    if design == "split":
        share = hash_share(users.get_column("user_id"), salt)
        assigned = users.with_columns(
            pl.Series("_arm", np.where(share < options["split"][1], labels[1], labels[0]))
        )
    frame = pl.concat(
        [
            _arm_frame(estimate, label, names, assigned)
            for estimate, label in zip(estimates, labels, strict=True)
        ],
        how="vertical",
    )
    if design == "split":
        frame = frame.filter(pl.col("_arm") == pl.col("arm")).drop("_arm")
    diagnostics = {label: e.diagnostics for label, e in zip(labels, estimates, strict=True)}
    result = analyse(
        frame,
        control=labels[0],
        treatment=labels[1],
        design=design,
        evidence={name: metric_evidence(name, estimator) for name in names},
        checks=_health_checks(diagnostics, min_ess),
        **options,
    )
    return result, assigned


def analyse_daily(
    estimates: tuple[ArmEstimate, ArmEstimate],
    labels: tuple[str, str],
    assigned: pl.DataFrame,
    days: Sequence[dt.date],
    *,
    estimator: Estimator,
    design: str,
    options: dict[str, Any],
) -> DailyStatistics | None:
    """Analyse the estimates through each of ``days``, as `analyse_estimates` does the whole window.

    ``assigned`` is the users frame `analyse_estimates` returned. The sums of
    a day are those of the sessions that started on it; the self-normalised
    estimators' per-slot normalisers are the whole window's. None when the
    estimates were made without ``by_day``.
    """
    names = [*options["metrics"], *options["guardrails"]]
    parts = []
    for estimate, label in zip(estimates, labels, strict=True):
        sums = estimate.daily_sums
        if sums is None:
            return None
        columns = _metric_columns(sums, names, SLATE_METRICS)
        if estimate.session_sums is not None:
            columns += _metric_columns(sums, names, SESSION_METRICS)
        part = sums.select("user_id", pl.lit(label).alias("arm"), "day", *columns)
        if design == "split":
            mine = assigned.filter(pl.col("_arm") == label).select("user_id")
            part = part.join(mine, on="user_id", how="semi", maintain_order="left")
        parts.append(part)
    return daily_statistics(
        pl.concat(parts, how="vertical"),
        days,
        {
            "control": labels[0],
            "treatment": labels[1],
            "design": design,
            "evidence": {name: metric_evidence(name, estimator) for name in names},
            **options,
        },
    )


def run_offpolicy_abtest(
    data: Path | str,
    *,
    control: str,
    treatment: str,
    registry: Path | str,
    estimator: str = "auto",
    design: str = "paired",
    traffic: float | None = None,
    window: tuple[dt.datetime, dt.datetime] | None = None,
    metrics: Sequence[str] | None = None,
    guardrails: Sequence[str] | None = None,
    alpha: float | None = None,
    correction: str | None = None,
    relative_ci: str | None = None,
    gate: Gate | Path | str | None = None,
    target_epsilon: float = 0.0,
    replicates: int = DEFAULT_REPLICATES,
    salt: str = DEFAULT_SALT,
    seed: int = 0,
    progress: Progress = no_progress,
    engine: Engine = "polars",
    spark: SparkConfig | None = None,
) -> OffPolicyReport:
    """Estimate from the logs in ``data`` an A/B test of ``control`` against ``treatment``.

    ``design="paired"`` scores both arms on every user of the window;
    ``design="split"`` hashes users with ``salt`` into arms, ``traffic`` of
    them into the treatment, as the live test would. See the module docstring
    for the steps and docs/offpolicy.md for the estimators.

    ``engine="spark"`` reads the window's impressions with Spark (``spark``
    says where it runs) and estimates them there
    (``recsim_cli.spark.offpolicy``), every estimator and metric, with the
    same numbers as polars up to the last bits of floating sums.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a whole number of at least 0; got {seed!r}.")
    if design not in DESIGNS:
        raise ConfigError(f"--design must be paired or split; got {design!r}.")
    if not 0 <= target_epsilon < 1:
        raise ConfigError(f"--target-epsilon must be in [0, 1); got {target_epsilon!r}.")
    if isinstance(replicates, bool) or not isinstance(replicates, int) or replicates < 1:
        raise ConfigError(f"--replicates must be at least 1; got {replicates!r}.")
    the_gate = load_gate(gate) if isinstance(gate, Path | str) else gate
    split = _split(design, traffic, the_gate)
    options = resolve_options(
        the_gate,
        metrics=metrics,
        guardrails=guardrails,
        alpha=alpha,
        split=split,
        correction=correction,
        relative_ci=relative_ci,
        default_metrics=DEFAULT_METRICS,
    )
    names = [*options["metrics"], *options["guardrails"]]
    for name in names:
        get_metric(name)
        if name not in SLATE_METRICS and name not in SESSION_METRICS:
            raise ConfigError(
                f"metric '{name}' cannot be estimated off-policy; use "
                f"{', '.join([*SLATE_METRICS, *SESSION_METRICS])}."
            )
    if engine not in ENGINES:
        raise ConfigError(f"--engine {engine}: give polars (the default) or spark.")
    arm_c = resolve_arm(control, registry=Path(registry))
    arm_t = resolve_arm(treatment, registry=Path(registry))
    if control == treatment:
        raise ConfigError(f"control and treatment are both '{control}'; name two different arms.")
    dataset = open_dataset(data, spark=(spark or SparkConfig()) if engine == "spark" else None)
    check_same_dataset([arm_c, arm_t], dataset.fingerprint)

    progress("abtest", 0, 5)
    if engine == "spark":
        from recsim_cli.spark import offpolicy as on_spark

        first_last = on_spark.event_bounds(dataset, data, spark)
    else:
        bounds = dataset.events().select(
            pl.col("ts").min().alias("a"), pl.col("ts").max().alias("b")
        )
        first_last = bounds.collect().row(0)
    if first_last[0] is None or first_last[1] is None:
        raise DatasetError(f"{data}: the dataset has no events; ingest logs first.")
    start, end = evaluation_window(
        [arm_c, arm_t], window, first_event=first_last[0], last_event=first_last[1]
    )
    logs: WindowLogs | SparkLogs
    if engine == "spark":
        spark_window = on_spark.read_window(dataset, data, start, end, spark)
        rows = spark_window.rows
    else:
        inside, before = _window_events(dataset, start, end, data)
        rows = inside.height
    if not rows:
        raise ConfigError(
            f"the evaluation window {format_ts(start)} to {format_ts(end)} holds no events of "
            f"the dataset (which runs from {format_ts(first_last[0])} to "
            f"{format_ts(first_last[1])}); give --window START..END inside it, or ingest newer "
            "logs."
        )
    if engine == "spark":
        logs = on_spark.prepare_window(spark_window)
        summary = _LogSummary.of_spark(logs)
    else:
        logs = WindowLogs.of(inside)
        summary = _LogSummary.of(logs, before.height)
    try:
        the_estimator = resolve_estimator(
            estimator, has_propensity=summary.propensities > 0, has_explore=summary.has_explore
        )
        warnings: list[str] = []
        if estimator == "auto" and the_estimator == "dm":
            warnings.append(
                "The logs carry no propensities, so every number is model-based (--estimator "
                "dm): the gate cannot ship on them."
            )
        without = summary.impressions - summary.propensities
        if summary.propensities and without:
            warnings.append(
                f"{without:,} impressions in the window have no propensity and get "
                "weight 0; the mean weight shows how much that costs."
            )
        note = target_note(target_epsilon)
        if note is not None:
            warnings.append(note[0].upper() + note[1:] + ".")
        users = summary.users
        progress("abtest", 1, 5)

        def lists_of(arm: PolicyArm) -> pl.DataFrame | None:
            if arm.kind == "logged":
                return None
            return daily_lists(
                arm,
                dataset=dataset,
                users=users.get_column("user_id"),
                days=_days(start, end),
                length=summary.list_length,
                progress=progress,
                user_days=summary.user_days,
            )

        control_lists = lists_of(arm_c)
        progress("abtest", 2, 5)

        need_sessions = any(name in SESSION_METRICS for name in names)
        session_model = None
        model_summary = None
        if the_estimator in ("dm", "dr") or need_sessions:
            from recsim_cli.experiment.session_model import fit_session_model

            if isinstance(logs, WindowLogs):
                items = dataset.items().collect() if dataset.has_items else _items_from(before)
                fit_rows, events_before = before, before.height
            else:
                from recsim_cli.spark import offpolicy_model as on_spark_model

                fit_rows, items = on_spark_model.fit_inputs(dataset, data, start, spark)
                events_before = summary.events_before
            session_model = fit_session_model(
                fit_rows, items, seed=seed, events_before=events_before, progress=progress
            )
            model_summary = session_model.fit_summary()
        progress("abtest", 3, 5)

        common: dict[str, Any] = {
            "estimator": the_estimator,
            "target_epsilon": target_epsilon,
            "session_model": session_model,
            "need_sessions": need_sessions,
            "seed": seed,
            "replicates": replicates,
            "by_day": True,
        }

        def estimate(lists: pl.DataFrame | None) -> ArmEstimate:
            if isinstance(logs, WindowLogs):
                return estimate_arm(logs, lists, progress=progress, **common)
            return on_spark.estimate_arm(logs, lists, config=spark, **common)

        # One arm's lists at a time: after the window's impressions they are the largest
        # frames (a row per user, day and rank), and an estimate keeps only per-user sums.
        first = estimate(control_lists)
        del control_lists
        estimates = (first, estimate(lists_of(arm_t)))
    finally:
        if not isinstance(logs, WindowLogs):
            logs.close()
    labels = (arm_c.label, arm_t.label)
    if labels[0] == labels[1]:
        labels = (f"control ({labels[0]})", f"treatment ({labels[1]})")
    min_ess = the_gate.min_effective_sample_size if the_gate is not None else DEFAULT_MIN_ESS
    result, assigned = analyse_estimates(
        (estimates[0], estimates[1]),
        labels,
        users,
        estimator=the_estimator,
        design=design,
        salt=salt,
        min_ess=min_ess,
        options=options,
    )
    progress("abtest", 4, 5)
    breakdown = _breakdown(
        (estimates[0], estimates[1]),
        labels,
        assigned,
        design=design,
        split=options["split"],
        alpha=options["alpha"],
        min_users=options.get("min_users_per_arm", DEFAULT_MIN_USERS),
    )
    daily = analyse_daily(
        (estimates[0], estimates[1]),
        labels,
        assigned,
        _days(start, end),
        estimator=the_estimator,
        design=design,
        options=options,
    )
    decision = None if the_gate is None else decide(result, the_gate)
    progress("abtest", 5, 5)
    counts = {
        "users": users.height,
        "sessions": summary.sessions,
        "impressions": summary.impressions,
        "events_before_window": summary.events_before,
        "slate_size": summary.slate_size,
        "max_slates": summary.max_slates,
        "days": len(_days(start, end)),
    }
    return OffPolicyReport(
        control=arm_c,
        treatment=arm_t,
        fingerprint=Fingerprint.of(data, dataset),
        estimator=the_estimator,
        design=design,
        traffic=split[1] if split is not None and design == "split" else None,
        target_epsilon=target_epsilon,
        window=(start, end),
        counts=counts,
        diagnostics={label: e.diagnostics for label, e in zip(labels, estimates, strict=True)},
        session_model=model_summary,
        slate_breakdown=breakdown,
        result=result,
        decision=decision,
        gate=the_gate,
        seed=seed,
        warnings=tuple(warnings),
        daily=daily,
    )


@dataclass(frozen=True)
class _LogSummary:
    """What the report and the lists need of the window's logs, on either engine."""

    user_days: pl.DataFrame  # user_id, day: the pairs with a session, sorted
    sessions: int
    impressions: int
    propensities: int  # impressions with a propensity
    has_explore: bool
    events_before: int
    slate_size: int
    max_slates: int

    @classmethod
    def of(cls, logs: WindowLogs, events_before: int) -> _LogSummary:
        """Summarise the polars engine's logs."""
        imps = logs.impressions
        return cls(
            user_days=logs.user_days,
            sessions=logs.sessions.height,
            impressions=imps.height,
            propensities=imps.height - imps.get_column("propensity").null_count(),
            has_explore=imps.get_column("explore").null_count() < imps.height,
            events_before=events_before,
            slate_size=logs.slate_size,
            max_slates=logs.max_slates,
        )

    @classmethod
    def of_spark(cls, logs: SparkLogs) -> _LogSummary:
        """Summarise the Spark engine's logs (counted in Spark)."""
        window = logs.window
        return cls(
            user_days=logs.user_days,
            sessions=window.sessions,
            impressions=window.rows,
            propensities=window.propensities,
            has_explore=window.explored > 0,
            events_before=window.before,
            slate_size=window.slate_size,
            max_slates=window.max_slates,
        )

    @property
    def users(self) -> pl.DataFrame:
        """The users with a session in the window, sorted, as a one-column frame."""
        return self.user_days.select("user_id").unique().sort("user_id")

    @property
    def list_length(self) -> int:
        """Ranks a list needs to fill every slate a session can reach."""
        return self.slate_size * self.max_slates


def _split(design: str, traffic: float | None, gate: Gate | None) -> tuple[float, float] | None:
    """Return the (control, treatment) shares of the split design; None for paired."""
    if design == "paired":
        if traffic is not None:
            raise ConfigError(
                "--traffic sets the treatment's share of users in the split design; add "
                "--design split or drop --traffic."
            )
        return None
    if traffic is None:
        return gate.split if gate is not None else (0.5, 0.5)
    if not 0 < traffic < 1:
        raise ConfigError(f"--traffic must be a share in (0, 1), e.g. 0.01; got {traffic!r}.")
    return (1.0 - traffic, traffic)


def _items_from(events: pl.DataFrame) -> pl.DataFrame:
    """An item table of ids only, for datasets ingested without items."""
    return events.select(pl.col("item_id").unique().sort())
