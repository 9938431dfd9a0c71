"""Analyse a logged A/B test from a dataset: logs -> per-user frame -> analysis -> decision.

:func:`run_logged_abtest` is what ``recsim abtest --arm-column ...`` runs: it
opens the dataset, builds the sufficient-statistics frame of the two arms
(``logged.aggregate_experiment``), analyses it (``analyse``) and, given a
gate, decides (``decide``). It returns an :class:`AbTestReport`, whose
``exit_code`` is the gate's (0 ship, 1 no ship, 3 inconclusive, 4 invalid),
or 0 without a gate; ``plan.plan_logged_abtest`` (``--plan``) uses the same
data to size a future experiment. Given a registry, the report records which
model each arm's label names (``models``), resolved when the report is
written, so ``recsim promote`` can check it promotes the model that was
tested. The report also holds the cumulative analysis through each day of
the window (``daily.py``), for the report page's daily plot. Neither prints
nor exits; every error is a ``RecsimError``. Options the gate fixes (metrics,
alpha, split, correction, relative CI) may be repeated but not contradicted.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from recsim_cli import REPORT_SCHEMA_VERSION, __version__
from recsim_cli.dataset import Dataset, open_dataset
from recsim_cli.errors import ConfigError, DatasetError, ExitCode, InternalError
from recsim_cli.experiment.analysis import analyse, validate_split
from recsim_cli.experiment.comparison import check_design
from recsim_cli.experiment.daily import DailyStatistics, daily_statistics, window_days
from recsim_cli.experiment.gate import Decision, Gate, check_alpha, decide, load_gate
from recsim_cli.experiment.logged import (
    DEFAULT_METRICS,
    DEFAULT_PRE_DAYS,
    BothArms,
    LoggedCounts,
    LoggedExperiment,
    aggregate_experiment,
)
from recsim_cli.experiment.metrics import resolve_metric
from recsim_cli.experiment.moments import (
    Collect,
    LoggedMoments,
    analyse_moments,
    analyse_moments_refusal,
    check_collect,
    daily_from_moments,
    daily_moments_from_frames,
    moments_from_frame,
)
from recsim_cli.experiment.results import ExperimentResult, MetricResult
from recsim_cli.progress import Progress, no_progress
from recsim_cli.rng import spawn_generators
from recsim_cli.spark.session import SparkConfig

if TYPE_CHECKING:
    from recsim_cli.spark.session import Engine

FORMAT_VERSION = 1
DEFAULTS: dict[str, Any] = {
    "metrics": DEFAULT_METRICS,
    "guardrails": (),
    "alpha": 0.05,
    "split": (0.5, 0.5),
    "correction": "holm",
    "relative_ci": "fieller",
}


@dataclass(frozen=True)
class Fingerprint:
    """What was analysed: the dataset folder as given, its version and its source files."""

    data: str
    version: int
    schema_version: int
    sources: tuple[tuple[str, str, str], ...]  # (table, file, sha256)

    @classmethod
    def of(cls, data: Path | str, dataset: Dataset) -> Fingerprint:
        """Fingerprint an open dataset from its manifest."""
        manifest = dataset.manifest
        return cls(
            data=str(data),
            version=manifest.version,
            schema_version=manifest.schema_version,
            sources=tuple((s.table, s.file, s.sha256) for s in manifest.sources),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the fingerprint as JSON-ready values."""
        return {
            "data": self.data,
            "dataset_version": self.version,
            "schema_version": self.schema_version,
            "sources": [{"table": t, "file": f, "sha256": h} for t, f, h in self.sources],
        }


class GatedReport:
    """What every A/B-test report shares: its analysis, the gate's decision, its exit code."""

    result: ExperimentResult
    decision: Decision | None
    gate: Gate | None
    warnings: tuple[str, ...]

    def outcome_dict(self) -> dict[str, Any]:
        """The report's closing JSON keys: analysis, verdicts, gate, decision, exit code."""
        return {
            "analysis": self.result.to_dict(),
            "verdicts": {m.metric: self.verdict_of(m) for m in self.result.metrics},
            "gate": None
            if self.gate is None
            else {"file": self.gate.source, **self.gate.to_dict()},
            "decision": None if self.decision is None else self.decision.to_dict(),
            "exit_code": int(self.exit_code),
            "warnings": list(self.warnings),
        }

    @property
    def exit_code(self) -> ExitCode:
        """The gate's exit code (0, 1, 3 or 4); 0 when no gate was given."""
        return ExitCode.OK if self.decision is None else self.decision.exit_code

    def verdict_of(self, metric: MetricResult) -> str:
        """Return a short verdict of one metric: the gate's outcome, else by its p-value."""
        return verdict_label(self.decision, self.result.settings.alpha, metric)


@dataclass(frozen=True)
class ArmModel:
    """The registry model an arm's label names, pinned by its fingerprint."""

    spec: str
    """The arm's label as given: a model name or an alias."""
    name: str
    """The model's name (an alias resolved when the report was written)."""
    fingerprint: str
    """`ModelEntry.fingerprint` of the model then."""

    def to_dict(self) -> dict[str, Any]:
        """Return the model as JSON-ready values."""
        return {"spec": self.spec, "name": self.name, "fingerprint": self.fingerprint}


def resolve_arm_model(label: str, registry: Path | str) -> ArmModel | None:
    """Return the model ``label`` names in ``registry``, or None if it names none.

    A label that is not a model name or a set alias, a missing registry or an
    unreadable model is no error: a logged test's arms need not be models.
    """
    from recsim_cli.errors import UserError
    from recsim_cli.registry import Registry

    try:
        entry = Registry(registry).open(label)
        return ArmModel(spec=label, name=entry.name, fingerprint=entry.fingerprint)
    except UserError:
        return None


@dataclass(frozen=True)
class AbTestReport(GatedReport):
    """An analysed logged experiment, and the gate's decision when a gate was given."""

    fingerprint: Fingerprint
    logged: LoggedCounts
    result: ExperimentResult
    decision: Decision | None
    gate: Gate | None
    seed: int
    pre_days: int
    warnings: tuple[str, ...]
    models: dict[str, ArmModel | None] = field(
        default_factory=lambda: {"control": None, "treatment": None}
    )
    """The registry model each arm's label named when the test was analysed, or None."""
    daily: DailyStatistics | None = None
    """The analysis through each day of the window; None when it was not computed."""
    engine: str = "polars"
    """Where the events were aggregated: polars or spark."""
    collect: str = "users"
    """What the analysis read: the per-user frame ("users") or per-arm moments ("moments")."""

    def to_dict(self) -> dict[str, Any]:
        """Return every number, method and input of the report as JSON-ready values."""
        return {
            "format_version": FORMAT_VERSION,
            "schema_version": REPORT_SCHEMA_VERSION,
            "kind": "recsim abtest report",
            "mode": "logged",
            "recsim_version": __version__,
            "seed": self.seed,
            "input": self.fingerprint.to_dict(),
            "experiment": self.logged.to_dict(),
            "models": {
                arm: None if model is None else model.to_dict()
                for arm, model in self.models.items()
            },
            "daily": None if self.daily is None else self.daily.to_dict(),
            "computation": {"engine": self.engine, "collect": self.collect},
            **self.outcome_dict(),
        }


OUTCOME_LABELS = {
    "better": "better",
    "better_model_based": "better (model-based: cannot ship)",
    "worse": "worse",
    "no_change": "no significant change",
    "within": "within margin",
    "beyond": "beyond margin",
    "unknown": "margin not shown",
    "undefined": "undefined",
}


def verdict_label(decision: Decision | None, alpha: float, metric: MetricResult) -> str:
    """Return a short verdict of one metric: the gate's outcome, else by its p-value."""
    if decision is not None:
        if decision.verdict == "invalid":
            return "not judged (invalid)"
        for verdict in decision.metrics:
            if verdict.metric == metric.metric:
                return OUTCOME_LABELS[verdict.outcome]
    return significance_label(metric, alpha)


def significance_label(metric: MetricResult, alpha: float) -> str:
    """Say "better", "worse" or "no significant change" from the (adjusted) p-value."""
    p = metric.adjusted_p_value if metric.adjusted_p_value is not None else metric.p_value
    if not math.isfinite(p) or p > alpha:
        return "no significant change"
    up = metric.difference > 0
    return "better" if up == (metric.better == "higher") else "worse"


@dataclass(frozen=True)
class PreparedExperiment:
    """A logged experiment read and checked, with the analysis options resolved."""

    fingerprint: Fingerprint
    logged: LoggedExperiment
    options: dict[str, Any]
    gate: Gate | None
    design: str
    pre_days: int
    warnings: tuple[str, ...] = field(default=())
    engine: str = "polars"


@dataclass(frozen=True)
class PreparedMoments:
    """A logged experiment read as per-arm moments, with the analysis options resolved."""

    fingerprint: Fingerprint
    moments: LoggedMoments
    options: dict[str, Any]
    gate: Gate | None
    design: str
    pre_days: int
    warnings: tuple[str, ...] = field(default=())
    engine: str = "polars"


def resolve_options(
    gate: Gate | None,
    *,
    metrics: Sequence[str] | None,
    guardrails: Sequence[str] | None,
    alpha: float | None,
    split: Sequence[float] | None,
    correction: str | None,
    relative_ci: str | None,
    default_metrics: Sequence[str] = DEFAULT_METRICS,
) -> dict[str, Any]:
    """Return the ``analyse`` options: the gate's, or the user's over the defaults."""
    given: dict[str, Any] = {
        "metrics": None if metrics is None else list(metrics),
        "guardrails": None if guardrails is None else list(guardrails),
        "split": None if split is None else validate_split(split, "--split"),
        "correction": correction,
        "relative_ci": relative_ci,
    }
    if gate is None:
        options = {k: DEFAULTS[k] if v is None else v for k, v in given.items()}
        if metrics is None:
            options["metrics"] = list(default_metrics)
        options["alpha"] = DEFAULTS["alpha"] if alpha is None else alpha
        return options
    options = gate.analysis_options()
    check_alpha(gate, alpha)
    for key, value in given.items():
        wanted = options[key]
        if value is None or _same(value, wanted):
            continue
        flag = "--" + key.replace("_", "-")
        raise ConfigError(
            f"{flag} {_show(value)} conflicts with {_show(wanted)} in {gate.source}; the gate "
            f"decides, so drop {flag} or change the gate file."
        )
    return options


def _same(a: object, b: object) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9)
    return a == b


def _show(value: object) -> str:
    if isinstance(value, list | tuple):
        if all(isinstance(v, float) for v in value):
            return "/".join(f"{100 * v:g}" for v in value)
        return ",".join(str(v) for v in value) or "(none)"
    return str(value)


def prepare_experiment(
    data: Path | str,
    *,
    control: str,
    treatment: str,
    arm_column: str,
    metrics: Sequence[str] | None,
    guardrails: Sequence[str] | None,
    alpha: float | None,
    design: str,
    cuped: bool,
    pre_days: int,
    start: dt.datetime | None,
    end: dt.datetime | None,
    split: Sequence[float] | None,
    correction: str | None,
    relative_ci: str | None,
    gate: Gate | Path | str | None,
    both_arms: BothArms | None,
    progress: Progress,
    by_day: bool = False,
    engine: Engine = "polars",
    spark: SparkConfig | None = None,
) -> PreparedExperiment:
    """Resolve the options against the gate, open the dataset and build the per-user frame.

    ``by_day`` also builds the per-day sums (``LoggedExperiment.daily``);
    ``engine="spark"`` aggregates the events on Spark (``spark.logged``) and
    collects the frame.
    """
    prepared = read_experiment(
        data,
        control=control,
        treatment=treatment,
        arm_column=arm_column,
        metrics=metrics,
        guardrails=guardrails,
        alpha=alpha,
        design=design,
        cuped=cuped,
        pre_days=pre_days,
        start=start,
        end=end,
        split=split,
        correction=correction,
        relative_ci=relative_ci,
        gate=gate,
        both_arms=both_arms,
        progress=progress,
        by_day=by_day,
        engine=engine,
        spark=spark,
        collect="users",
    )
    if not isinstance(prepared, PreparedExperiment):
        raise InternalError("collect='users' returned moments.")
    return prepared


def read_experiment(
    data: Path | str,
    *,
    control: str,
    treatment: str,
    arm_column: str,
    metrics: Sequence[str] | None,
    guardrails: Sequence[str] | None,
    alpha: float | None,
    design: str,
    cuped: bool,
    pre_days: int,
    start: dt.datetime | None,
    end: dt.datetime | None,
    split: Sequence[float] | None,
    correction: str | None,
    relative_ci: str | None,
    gate: Gate | Path | str | None,
    both_arms: BothArms | None,
    progress: Progress,
    by_day: bool = False,
    engine: Engine = "polars",
    spark: SparkConfig | None = None,
    collect: Collect = "auto",
) -> PreparedExperiment | PreparedMoments:
    """`prepare_experiment` on either engine, reading the per-user frame or per-arm moments.

    ``collect="auto"`` reads the frame on polars (it is in memory anyway) and
    on Spark when it has at most ``moments.MAX_COLLECTED_ROWS`` (user, arm)
    rows, else the moments.
    """
    the_design = check_design(design)
    the_collect = check_collect(collect)
    the_engine = _check_engine(engine)
    if cuped and pre_days < 1:
        raise ConfigError("CUPED needs a pre-period: give pre_days (--pre-days) of 1 or more.")
    the_gate = load_gate(gate) if isinstance(gate, Path | str) else gate
    options = resolve_options(
        the_gate,
        metrics=metrics,
        guardrails=guardrails,
        alpha=alpha,
        split=split,
        correction=correction,
        relative_ci=relative_ci,
    )
    progress("abtest", 0, 3)
    dataset = open_dataset(data, spark=(spark or SparkConfig()) if the_engine == "spark" else None)
    rule: BothArms = both_arms or ("keep" if the_design == "paired" else "exclude")
    read: dict[str, Any] = {
        "control": control,
        "treatment": treatment,
        "metrics": [*options["metrics"], *options["guardrails"]],
        "arm_column": arm_column,
        "start": start,
        "end": end,
        "pre_days": pre_days,
        "both_arms": rule,
        "by_day": by_day,
    }
    try:
        if the_engine == "spark" and dataset.manifest.events_files:
            logged = _read_on_spark(
                dataset, read, spark, collect=the_collect, design=the_design, cuped=cuped
            )
        else:
            logged = aggregate_experiment(dataset.events(), **read)
            if the_collect == "moments":
                logged = _polars_moments(logged, read["metrics"], the_design, cuped)
    except (OSError, pl.exceptions.ComputeError) as exc:
        # A damaged Parquet file of the dataset; a mistake in our own query raises other errors.
        raise DatasetError(
            f"{data}: cannot read the dataset's events ({exc}); re-create it with "
            "recsim ingest --replace."
        ) from exc
    progress("abtest", 1, 3)
    counts = logged.counts
    warnings = list(counts.warnings)
    if cuped and counts.pre_users_control + counts.pre_users_treatment == 0:
        warnings.append(
            f"No user has events in the {pre_days} days before the start, so CUPED "
            "changes nothing; start the analysis later or log a pre-period."
        )
    if cuped and counts.pre_events_with_arm_label:
        warnings.append(
            f"{counts.pre_events_with_arm_label:,} pre-period events are labelled "
            f"'{control}' or '{treatment}': if the experiment was already running, the CUPED "
            "covariate is affected by the treatment; start at the experiment's first day."
        )
    shared: dict[str, Any] = {
        "fingerprint": Fingerprint.of(data, dataset),
        "options": options,
        "gate": the_gate,
        "design": the_design,
        "pre_days": pre_days,
        "warnings": tuple(warnings),
        "engine": the_engine,
    }
    if isinstance(logged, LoggedMoments):
        return PreparedMoments(moments=logged, **shared)
    return PreparedExperiment(logged=logged, **shared)


def _check_engine(engine: str) -> Engine:
    from recsim_cli.errors import UnknownNameError

    if engine == "polars":
        return "polars"
    if engine == "spark":
        return "spark"
    raise UnknownNameError("engine", engine, ["polars", "spark"])


def _read_on_spark(
    dataset: Dataset,
    read: dict[str, Any],
    spark: SparkConfig | None,
    *,
    collect: Collect,
    design: str,
    cuped: bool,
) -> LoggedExperiment | LoggedMoments:
    """Aggregate the dataset's events on Spark (pyspark is imported only here)."""
    from recsim_cli.spark.logged import aggregate_experiment_spark, read_events
    from recsim_cli.spark.session import spark_session

    session = spark_session(spark)
    files = [dataset.uri(f) for f in dataset.manifest.events_files]
    return aggregate_experiment_spark(
        read_events(session, files), collect=collect, design=design, cuped=cuped, **read
    )


def _polars_moments(
    logged: LoggedExperiment, metrics: Sequence[str], design: str, cuped: bool
) -> LoggedMoments:
    """The moments of a polars-built frame (and of each day's cumulative frame)."""
    defs = [resolve_metric(m) for m in metrics]
    counts = logged.counts
    moments = moments_from_frame(
        logged.frame,
        defs,
        control=counts.control,
        treatment=counts.treatment,
        design=design,
        cuped=cuped,
    )
    daily = None
    if logged.daily is not None:
        daily = daily_moments_from_frames(
            logged.daily,
            window_days(counts.start.date(), counts.last_event.date()),
            defs,
            control=counts.control,
            treatment=counts.treatment,
            design=design,
            cuped=cuped,
            static=_static(logged),
        )
    return LoggedMoments(counts, moments, daily)


def run_logged_abtest(
    data: Path | str,
    *,
    control: str,
    treatment: str,
    arm_column: str = "policy",
    metrics: Sequence[str] | None = None,
    guardrails: Sequence[str] | None = None,
    alpha: float | None = None,
    design: str = "split",
    cuped: bool = False,
    pre_days: int = DEFAULT_PRE_DAYS,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    split: Sequence[float] | None = None,
    correction: str | None = None,
    relative_ci: str | None = None,
    bootstrap: int = 0,
    winsorize: float | None = None,
    gate: Gate | Path | str | None = None,
    both_arms: BothArms | None = None,
    seed: int = 0,
    registry: Path | str | None = None,
    progress: Progress = no_progress,
    engine: Engine = "polars",
    spark: SparkConfig | None = None,
    collect: Collect = "auto",
) -> AbTestReport:
    """Analyse the logged experiment ``control`` against ``treatment`` in dataset ``data``.

    Options left None take the gate's value, or without a gate the defaults:
    metrics ctr, watch_time and session_depth, no guardrails, alpha 0.05,
    a 50/50 split, Holm, Fieller. ``both_arms`` defaults to "exclude" in the
    split design and "keep" in the paired one. ``seed`` seeds the bootstrap.
    With ``registry``, an arm label that names a model or an alias there is
    recorded with the model's name and fingerprint (`ArmModel`). The
    report's ``daily`` holds the analysis through each day of the window
    (``daily.py``). ``engine="spark"`` aggregates the events on Spark
    (``spark``: where and how); ``collect`` says what the analysis reads:
    the per-user frame ("users"), per-arm moments ("moments": no bootstrap
    or winsorisation), or ("auto") the frame up to
    ``moments.MAX_COLLECTED_ROWS`` (user, arm) rows on Spark, always on polars.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a whole number of at least 0; got {seed!r}.")
    if collect == "moments" and (bootstrap or winsorize is not None):
        # refused before the events are read; analyse_moments refuses them too
        analyse_moments_refusal(bootstrap=bootstrap, winsorize_at=winsorize)
    prepared = read_experiment(
        data,
        control=control,
        treatment=treatment,
        arm_column=arm_column,
        metrics=metrics,
        guardrails=guardrails,
        alpha=alpha,
        design=design,
        cuped=cuped,
        pre_days=pre_days,
        start=start,
        end=end,
        split=split,
        correction=correction,
        relative_ci=relative_ci,
        gate=gate,
        both_arms=both_arms,
        progress=progress,
        by_day=True,
        engine=engine,
        spark=spark,
        collect=collect,
    )
    rng = spawn_generators(seed, ["bootstrap"])["bootstrap"] if bootstrap else None
    options: dict[str, Any] = {
        "control": control,
        "treatment": treatment,
        "design": prepared.design,
        "cuped": cuped,
        "winsorize_at": winsorize,
        "evidence": dict.fromkeys(
            [*prepared.options["metrics"], *prepared.options["guardrails"]], "online"
        ),
        **prepared.options,
    }
    if isinstance(prepared, PreparedMoments):
        logged_counts = prepared.moments.counts
        result = analyse_moments(prepared.moments.moments, bootstrap=bootstrap, **options)
        daily = (
            None
            if prepared.moments.daily is None
            else daily_from_moments(prepared.moments.daily, options)
        )
        collected = "moments"
    else:
        logged_counts = prepared.logged.counts
        result = analyse(prepared.logged.frame, bootstrap=bootstrap, rng=rng, **options)
        daily = _logged_daily(prepared, options)
        collected = "users"
    progress("abtest", 2, 3)
    decision = None if prepared.gate is None else decide(result, prepared.gate)
    progress("abtest", 3, 3)
    return AbTestReport(
        fingerprint=prepared.fingerprint,
        logged=logged_counts,
        result=result,
        decision=decision,
        gate=prepared.gate,
        seed=seed,
        pre_days=pre_days,
        warnings=prepared.warnings,
        models={
            "control": None if registry is None else resolve_arm_model(control, registry),
            "treatment": None if registry is None else resolve_arm_model(treatment, registry),
        },
        daily=daily,
        engine=prepared.engine,
        collect=collected,
    )


def _static(logged: LoggedExperiment) -> pl.DataFrame | None:
    """The frame's pre-period columns per (user_id, arm), joined onto each day's frame."""
    pre = [c for c in logged.frame.columns if "_pre_" in c]
    return logged.frame.select("user_id", "arm", *pre) if pre else None


def _logged_daily(prepared: PreparedExperiment, options: dict[str, Any]) -> DailyStatistics | None:
    """The analysis through each day from the window's start to its last event."""
    logged = prepared.logged
    if logged.daily is None:
        return None
    counts = logged.counts
    days = window_days(counts.start.date(), counts.last_event.date())
    return daily_statistics(logged.daily, days, options, static=_static(logged))
