"""Check the off-policy estimates of `recsim abtest` against the truth, inside simulated worlds.

Run ``python -m recsim_cli.experiment.validate_offpolicy --out docs/validation.md``
(part of ``make validate``). For each scenario (a world and a pair of models
trained once on its logs):

1. the truth: the online A/B test of the two models' daily lists in the world
   (``simulate.online.run_online_abtest``, common random numbers), with its
   Monte Carlo standard error;
2. the logs of the evaluation window drawn again ``--replicates`` times with
   new log seeds (sessions, pools, behaviour), with no retraining: the models'
   lists and the session model (fit on the logs before the window) are fixed;
3. every estimator on every replicate, through the same code as the command
   (``offpolicy_abtest.estimate_arm`` and ``analyse_estimates``), and per
   estimator and metric: the true lift, the mean estimate, bias, RMSE, the
   coverage of the 95% CI with its Wilson interval, the median CI width and
   the power (the share of replicates that find a significant change in the
   true direction; for a true lift of 0, the false-positive rate).

Then an A/A test through a gate with the split design: identical lists in
both arms, users hashed into arms with a new salt per replicate; the
false-ship rate with its Wilson interval. The section it writes replaces the
"Off-policy estimates" section of the output file and keeps what precedes it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recsim_cli.experiment.arms import PolicyArm, daily_lists
from recsim_cli.experiment.gate import Gate, GuardrailSpec, PrimarySpec, decide
from recsim_cli.experiment.offpolicy import Estimator, attach_targets
from recsim_cli.experiment.offpolicy_abtest import (
    WindowLogs,
    analyse_estimates,
    estimate_arm,
    metric_evidence,
    predict_targets,
)
from recsim_cli.experiment.validate import OFFPOLICY_SECTION
from recsim_cli.io import write_bytes_atomic

SECTION = OFFPOLICY_SECTION
ESTIMATORS: tuple[Estimator, ...] = ("replay", "ips", "snips", "dm", "dr")
SLATE_METRICS = ("first_slate_ctr", "first_slate_clicks", "first_slate_watch_time")
SESSION_METRICS = ("ctr", "watch_time", "session_depth")
ALPHA = 0.05


@dataclass(frozen=True)
class Scenario:
    """A world (by key of ``WORLDS``), two of its models, and the design."""

    name: str
    world: str
    control: str
    treatment: str
    design: str = "paired"


def _world_config(**kwargs: Any) -> Any:
    from recsim_cli.simulate import WorldConfig

    return WorldConfig(**kwargs)


def _models() -> dict[str, Any]:
    from recsim_cli.models.config import TrainConfig

    # exclude_seen off: every list then ranks the whole (small) catalogue, as the truth's
    # list policy needs a full list for every user and day.
    common: dict[str, Any] = {"test_days": 3, "exclude_seen": False}
    return {
        "pop": TrainConfig(candidates="popular", ranker="none", **common),
        "als-lgbm": TrainConfig(n_candidates=80, **common),
        "itemknn-lgbm": TrainConfig(candidates="itemknn", n_candidates=80, **common),
        "fresh": TrainConfig(candidates="fresh", ranker="none", **common),
    }


# Small catalogues whose logging pool is the whole catalogue, so every item a model can
# show has a positive propensity; exploration is heavy enough for a few hundred effective
# samples per replicate. (With the default world, a 100-item pool of 3,000 items, the
# weights say the logs cannot evaluate these models: docs/offpolicy.md.)
WORLDS: dict[str, dict[str, Any]] = {
    "A": {"users": 5000, "items": 80, "pool_size": 80, "epsilon": 0.5, "days": 10, "seed": 101},
    "B": {"users": 5000, "items": 60, "pool_size": 60, "epsilon": 0.6, "days": 10, "seed": 202},
}
SCENARIOS: tuple[Scenario, ...] = (
    Scenario("pop vs als-lgbm", "A", "pop", "als-lgbm"),
    Scenario("pop vs itemknn-lgbm", "A", "pop", "itemknn-lgbm"),
    Scenario("fresh vs als-lgbm", "B", "fresh", "als-lgbm"),
    Scenario("als-lgbm vs itself (split)", "A", "als-lgbm", "als-lgbm", design="split"),
)


@dataclass
class WorldSetup:
    """A world, its dataset, the models' daily lists and the session model, built once."""

    key: str
    world: Any
    days: list[int]  # world day indices of the window
    window: tuple[dt.datetime, dt.datetime]
    lists: dict[str, pl.DataFrame]
    session_model: Any
    list_length: int
    seconds: float = 0.0


def prepare_world(key: str, models: Sequence[str], folder: Path) -> WorldSetup:
    """Simulate the world's logs, ingest, train ``models``; build their lists, a session model."""
    from recsim_cli.dataset import Dataset
    from recsim_cli.experiment.session_model import fit_session_model
    from recsim_cli.ingest import ingest
    from recsim_cli.models.two_stage import TwoStageModel, train
    from recsim_cli.registry import Registry
    from recsim_cli.simulate import run_simulation
    from recsim_cli.simulate.logs import id_series
    from recsim_cli.simulate.online import list_length
    from recsim_cli.simulate.storage import load_world

    began = time.perf_counter()
    config = _world_config(**WORLDS[key])
    logs = folder / f"world-{key}"
    run_simulation(config, logs)
    data = folder / f"data-{key}"
    ingest(logs / "events.csv.gz", items=logs / "items.csv.gz", data=data, mode="replace")
    registry = folder / "models"
    configs = _models()
    for name in models:
        train(
            f"{key.lower()}-{name}", data=data, registry=registry, config=configs[name], force=True
        )
    world = load_world(logs)
    dataset = Dataset.open(data)
    store = Registry(registry)
    cutoff = max(TwoStageModel.load(store.open(f"{key.lower()}-{name}")).cutoff for name in models)
    start_day = (cutoff.date() - config.start).days
    days = list(range(start_day, config.days))
    window = (
        dt.datetime.combine(config.start + dt.timedelta(days=days[0]), dt.time(), tzinfo=dt.UTC),
        dt.datetime.combine(
            config.start + dt.timedelta(days=days[-1] + 1), dt.time(), tzinfo=dt.UTC
        ),
    )
    users = id_series("u", config.users, 6)
    length = list_length(world)
    lists = {}
    for name in models:
        entry = store.open(f"{key.lower()}-{name}")
        arm = PolicyArm(
            spec=entry.name,
            kind="model",
            model=entry.name,
            cutoff=TwoStageModel.load(entry).cutoff,
            registry=registry,
        )
        lists[name] = daily_lists(
            arm,
            dataset=dataset,
            users=users,
            days=[window[0].date() + dt.timedelta(days=i) for i in range(len(days))],
            length=length,
        )
    before = dataset.events().filter(pl.col("ts") < window[0]).collect()
    session_model = fit_session_model(before, dataset.items().collect(), seed=0, num_threads=1)
    return WorldSetup(
        key, world, days, window, lists, session_model, length, time.perf_counter() - began
    )


def window_logs(setup: WorldSetup, seed: np.random.SeedSequence) -> WindowLogs:
    """Draw the window's logs again: new sessions, pools and behaviour from ``seed``."""
    from recsim_cli.simulate import LoggingPolicy, Sessions, draw_sessions, simulate_sessions
    from recsim_cli.simulate.logs import events_frame

    s_seq, p_seq, b_seq = seed.spawn(3)
    world = setup.world
    drawn = draw_sessions(world, np.random.default_rng(s_seq))
    keep = np.isin(drawn.day, setup.days)
    sessions = Sessions(
        user=drawn.user[keep],
        day=drawn.day[keep],
        start_ts=drawn.start_ts[keep],
        device=drawn.device[keep],
    )
    policy = LoggingPolicy.build(world, sessions.user, sessions.day, np.random.default_rng(p_seq))
    impressions = simulate_sessions(world, policy, sessions, np.random.default_rng(b_seq))
    events = events_frame(world, sessions, impressions).with_columns(
        pl.col("ts").cast(pl.Datetime("us", "UTC"))
    )
    return WindowLogs.of(events)


def truth_of(setup: WorldSetup, scenario: Scenario, replicates: int, seed: int) -> Any:
    """The online A/B test of the scenario's two lists in the world."""
    from recsim_cli.simulate.online import ListPolicy, run_online_abtest

    size = setup.world.config.slate_size

    def policy(name: str) -> ListPolicy:
        return ListPolicy.from_lists(
            setup.world, setup.lists[name], size, days=setup.days, length=setup.list_length
        )

    return run_online_abtest(
        setup.world,
        policy(scenario.control),
        policy(scenario.treatment),
        days=setup.days,
        replicates=replicates,
        seed=seed,
    )


def _options(metrics: Sequence[str]) -> dict[str, Any]:
    return {
        "metrics": list(metrics),
        "guardrails": [],
        "alpha": ALPHA,
        "split": (0.5, 0.5),
        "correction": "none",
        "relative_ci": "fieller",
    }


def one_replicate(
    setup: WorldSetup, scenario: Scenario, seed: np.random.SeedSequence, index: int
) -> list[dict[str, Any]]:
    """Every estimator's estimates of one replicate of the logs: one row per metric."""
    logs = window_logs(setup, seed)
    users = logs.users
    names = (scenario.control, scenario.treatment)
    shared: dict[str, tuple[Any, Any]] = {}
    for name in set(names):
        target = attach_targets(logs.impressions, setup.lists[name])
        predictions = predict_targets(logs, target, setup.session_model)
        rollout = setup.session_model.rollout(
            logs.sessions,
            setup.lists[name],
            slate_size=logs.slate_size,
            max_slates=logs.max_slates,
            seed=index,
            replicates=2,
        )
        shared[name] = (predictions, rollout)
    rows: list[dict[str, Any]] = []
    for estimator in ESTIMATORS:
        with_sessions = estimator in ("dm", "dr")
        metrics = [*SLATE_METRICS, *(SESSION_METRICS if with_sessions else ())]
        estimates = tuple(
            estimate_arm(
                logs,
                setup.lists[name],
                estimator=estimator,
                need_sessions=with_sessions,
                predictions=shared[name][0],
                rollout=shared[name][1],
                seed=index,
            )
            for name in names
        )
        labels = ("control", "treatment")
        result, _ = analyse_estimates(
            (estimates[0], estimates[1]),
            labels,
            users,
            estimator=estimator,
            design=scenario.design,
            options=_options(metrics),
            salt=f"replicate-{index}",
            min_ess=1,
        )
        ess = min(
            (e.diagnostics.effective_sample_size for e in estimates if e.diagnostics),
            default=math.nan,
        )
        for m in result.metrics:
            lo, hi = m.relative_ci if m.relative_ci is not None else (math.nan, math.nan)
            rows.append(
                {
                    "estimator": estimator,
                    "metric": m.metric,
                    "relative": m.relative if m.relative is not None else math.nan,
                    "low": lo,
                    "high": hi,
                    "p": m.p_value,
                    "control": m.control.estimate,
                    "treatment": m.treatment.estimate,
                    "ess": ess,
                }
            )
    return rows


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (Wilson 1927)."""
    if n == 0:
        return (math.nan, math.nan)
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)


@dataclass
class ScenarioResult:
    """Everything the report says about one scenario."""

    scenario: Scenario
    truth: dict[str, Any]
    rows: pl.DataFrame
    seconds: float
    setup_seconds: float
    truth_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def run_scenario(
    scenario: Scenario,
    replicates: int,
    truth_replicates: int,
    seed: int,
    cache: Path | None = None,
) -> ScenarioResult:
    """Prepare the scenario's world, compute its truth, and run every replicate.

    With ``cache``, the truth and the replicates' estimates are each read from
    (or written to) their own files there, named by what they depend on: the
    truth (``truth-*.json``) on the world, the two models, ``truth_replicates``
    and the seed; the estimates (``estimates-*``) on the world, the models,
    ``replicates``, the seed and the estimators' code. So more truth
    replicates recompute only the truth, and after a change to an estimator
    deleting the ``estimates-*`` files recomputes only the estimates. The
    world is prepared only when one of them is missing.
    """
    slug = _slug(scenario.name)
    truth_file = None if cache is None else cache / f"truth-{slug}-{truth_replicates}-{seed}.json"
    stem = None if cache is None else cache / f"estimates-{slug}-{replicates}-{seed}"
    truth = _read_json(truth_file)
    saved = _read_json(None if stem is None else stem.with_suffix(".json"))
    world: list[WorldSetup] = []

    def setup() -> WorldSetup:
        if not world:
            with tempfile.TemporaryDirectory(prefix="recsim-validate-") as folder:
                models = sorted({scenario.control, scenario.treatment})
                world.append(prepare_world(scenario.world, models, Path(folder)))
        return world[0]

    if truth is None:
        began = time.perf_counter()
        online = truth_of(setup(), scenario, truth_replicates, seed).to_dict()
        truth = {"truth": online, "seconds": time.perf_counter() - began}
        if truth_file is not None:
            write_bytes_atomic(truth_file, json.dumps(truth, allow_nan=True).encode("utf-8"))
    if saved is None or stem is None:
        began = time.perf_counter()
        rows = estimate_replicates(setup(), scenario, replicates, seed)
        saved = {"seconds": time.perf_counter() - began, "setup_seconds": setup().seconds}
        if stem is not None:
            rows.write_parquet(stem.with_suffix(".parquet"))
            write_bytes_atomic(stem.with_suffix(".json"), json.dumps(saved).encode("utf-8"))
    else:
        rows = pl.read_parquet(stem.with_suffix(".parquet"))
    return ScenarioResult(
        scenario,
        truth["truth"],
        rows,
        saved["seconds"],
        saved["setup_seconds"],
        truth_seconds=truth["seconds"],
    )


def estimate_replicates(
    setup: WorldSetup, scenario: Scenario, replicates: int, seed: int
) -> pl.DataFrame:
    """Every estimator on each of ``replicates`` new draws of the window's logs, one row per
    (replicate, estimator, metric)."""
    rows: list[dict[str, Any]] = []
    for index, child in enumerate(np.random.SeedSequence([seed, 1]).spawn(replicates)):
        for row in one_replicate(setup, scenario, child, index):
            rows.append({"replicate": index, **row})
    return pl.DataFrame(rows)


def _read_json(path: Path | None) -> Any:
    if path is None or not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def summarise(result: ScenarioResult) -> pl.DataFrame:
    """Per estimator and metric: bias, RMSE, coverage with its Wilson interval, width, power."""
    truth = result.truth["lift"]
    out = []
    for (estimator, metric), group in result.rows.group_by(
        ["estimator", "metric"], maintain_order=True
    ):
        true = truth[str(metric)]
        rel = group.get_column("relative").to_numpy()
        lo = group.get_column("low").to_numpy()
        hi = group.get_column("high").to_numpy()
        p = group.get_column("p").to_numpy()
        n = len(rel)
        covered = int(((lo <= true) & (true <= hi)).sum())
        significant = p <= ALPHA
        if true == 0:
            detected = int(significant.sum())
        else:
            detected = int((significant & (np.sign(rel) == np.sign(true))).sum())
        defined = np.isfinite(rel)
        out.append(
            {
                "estimator": estimator,
                "metric": metric,
                "evidence": metric_evidence(str(metric), estimator),
                "true_lift": true,
                "mean_estimate": float(np.mean(rel[defined])) if defined.any() else math.nan,
                "bias": float(np.mean(rel[defined]) - true) if defined.any() else math.nan,
                "rmse": float(np.sqrt(np.mean((rel[defined] - true) ** 2)))
                if defined.any()
                else math.nan,
                "coverage": covered / n,
                "coverage_low": wilson(covered, n)[0],
                "coverage_high": wilson(covered, n)[1],
                "median_width": float(np.nanmedian(hi - lo)),
                "power": detected / n,
                "replicates": n,
                "median_ess": _median(group.get_column("ess").to_numpy()),
            }
        )
    return pl.DataFrame(out)


def _median(values: np.ndarray[Any, Any]) -> float:
    """The median of the finite values, NaN when there are none (DM has no weights)."""
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else math.nan


def _pct(x: float, digits: int = 1) -> str:
    return "–" if not math.isfinite(x) else f"{100 * x:+.{digits}f}%"


def render_scenario(result: ScenarioResult) -> list[str]:
    """Markdown of one scenario: the truth, then the estimators' table."""
    s = result.scenario
    truth = result.truth
    table = summarise(result)
    lines = [
        f"### {s.name}",
        "",
        f"World {s.world} ({_describe_world(s.world)}); {s.design} design; window "
        f"{truth['window']['start']} to {truth['window']['end']}; "
        f"{truth['sessions_per_replicate']:,.0f} sessions per replicate; "
        f"{table.height and int(table.get_column('replicates').to_numpy().max())} replicates "
        "of the logs; truth from "
        f"{truth['replicates']} online replicates (setup {result.setup_seconds:.0f} s, truth "
        f"{result.truth_seconds:.0f} s, replicates {result.seconds:.0f} s).",
        "",
        "| metric | true control | true treatment | true lift | MC SE of the true lift |",
        "|---|---:|---:|---:|---:|",
    ]
    for metric in (*SLATE_METRICS, *SESSION_METRICS):
        lines.append(
            f"| {metric} | {truth['control']['metrics'][metric]:.4g} | "
            f"{truth['treatment']['metrics'][metric]:.4g} | {_pct(truth['lift'][metric], 2)} | "
            f"{_pct(truth['lift_mc_se'][metric], 2).lstrip('+')} |"
        )
    lines += [
        "",
        "| estimator | metric | evidence | true lift | mean estimate | bias | RMSE | "
        "coverage of 95% CI (Wilson 95%) | median CI width | "
        + ("false-positive rate" if s.control == s.treatment else "power")
        + " | median ESS |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in table.iter_rows(named=True):
        lines.append(
            f"| {row['estimator']} | {row['metric']} | {row['evidence']} | "
            f"{_pct(row['true_lift'])} | {_pct(row['mean_estimate'])} | {_pct(row['bias'])} | "
            f"{100 * row['rmse']:.1f}% | {100 * row['coverage']:.1f}% "
            f"({100 * row['coverage_low']:.1f}–{100 * row['coverage_high']:.1f}) | "
            f"{100 * row['median_width']:.1f}% | {100 * row['power']:.1f}% | "
            f"{row['median_ess']:,.0f} |"
        )
    ratio = _mc_ratio(result, table)
    lines += [
        "",
        f"Largest ratio of the truth's MC SE to an estimator's median SE: {ratio:.3f} "
        "(the aim is at most 0.1).",
        "",
    ]
    return lines


def _mc_ratio(result: ScenarioResult, table: pl.DataFrame) -> float:
    worst = 0.0
    for row in table.iter_rows(named=True):
        se = row["median_width"] / (2 * 1.96)
        mc = result.truth["lift_mc_se"][row["metric"]]
        if se > 0 and mc is not None and math.isfinite(mc):
            worst = max(worst, mc / se)
    return worst


def _describe_world(key: str) -> str:
    w = WORLDS[key]
    return (
        f"{w['users']:,} users, {w['items']} items all in the logging pool, epsilon "
        f"{w['epsilon']}, {w['days']} days, seed {w['seed']}"
    )


# -- the A/A test through the gate ----------------------------------------------------------


AA_GATE = Gate(
    primary=(PrimarySpec("first_slate_watch_time", "higher"),),
    guardrail=(GuardrailSpec("first_slate_ctr", "higher", 0.05),),
    alpha=ALPHA,
    min_users_per_arm=100,
    min_effective_sample_size=100,
    source="A/A gate",
)


def run_aa_gate(replicates: int, seed: int) -> dict[str, Any]:
    """A/A through ``AA_GATE`` with the split design: how often does it ship?"""
    with tempfile.TemporaryDirectory(prefix="recsim-validate-") as folder:
        setup = prepare_world("A", ["als-lgbm"], Path(folder))
    began = time.perf_counter()
    verdicts: dict[str, int] = {}
    ess: list[float] = []
    options = AA_GATE.analysis_options()
    for index, child in enumerate(np.random.SeedSequence([seed, 2]).spawn(replicates)):
        logs = window_logs(setup, child)
        lists = setup.lists["als-lgbm"]
        estimate = estimate_arm(logs, lists, estimator="snips", seed=index)
        result, _ = analyse_estimates(
            (estimate, estimate),
            ("control", "treatment"),
            logs.users,
            estimator="snips",
            design="split",
            options=options,
            salt=f"aa-{index}",
            min_ess=AA_GATE.min_effective_sample_size,
        )
        verdict = decide(result, AA_GATE).verdict
        verdicts[verdict] = verdicts.get(verdict, 0) + 1
        if estimate.diagnostics is not None:
            ess.append(estimate.diagnostics.effective_sample_size / 2)
    ships = verdicts.get("ship", 0)
    return {
        "replicates": replicates,
        "verdicts": verdicts,
        "ships": ships,
        "wilson": wilson(ships, replicates),
        "median_ess_per_arm": float(np.median(ess)) if ess else math.nan,
        "seconds": time.perf_counter() - began,
    }


def render_aa(aa: dict[str, Any]) -> list[str]:
    """Markdown of the A/A gate run."""
    lo, hi = aa["wilson"]
    counts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(aa["verdicts"].items()))
    return [
        "### A/A through the gate (split design)",
        "",
        f"World A, `als-lgbm` against itself, the same lists in both arms; users hashed "
        f"into arms with a new salt per replicate; snips; gate: primary "
        f"`first_slate_watch_time`, guardrail `first_slate_ctr` (margin 5%), alpha {ALPHA}, "
        f"minimum ESS {AA_GATE.min_effective_sample_size} (median ESS per arm about "
        f"{aa['median_ess_per_arm']:,.0f}). {aa['replicates']:,} replicates "
        f"({aa['seconds']:.0f} s).",
        "",
        f"Decisions: {counts}. False-ship rate: **{aa['ships'] / aa['replicates']:.4f}** "
        f"(Wilson 95% interval {lo:.4f} to {hi:.4f}); alpha is {ALPHA}.",
        "",
    ]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")


Job = tuple[str, Any, int, int, int, "Path | None"]


def _run(job: Job) -> Any:
    """Run one job, or read its result from the cache folder when an earlier run finished it."""
    kind, what, replicates, truth_replicates, seed, cache = job
    if kind == "scenario":
        return run_scenario(what, replicates, truth_replicates, seed, cache)
    path = None if cache is None else cache / f"aa-{replicates}-{seed}.json"
    saved = _read_json(path)
    if saved is None:
        saved = run_aa_gate(replicates, seed)
        if path is not None:
            write_bytes_atomic(path, json.dumps(saved).encode("utf-8"))
    saved["wilson"] = tuple(saved["wilson"])
    return saved


def section(
    scenarios: Sequence[Scenario],
    *,
    replicates: int,
    truth_replicates: int,
    aa_replicates: int,
    seed: int,
    workers: int,
    cache: Path | None = None,
    reverse: bool = False,
) -> str:
    """Run everything (``workers`` processes) and return the Markdown section.

    With ``cache``, each finished scenario (and its truth) and the A/A run are
    kept in that folder, and a later run with the same arguments reads them
    instead of computing them again: a run stopped half way resumes. Remove
    the folder's ``estimates-*`` and ``aa-*`` files (not its ``truth-*`` ones)
    after changing an estimator (``run_scenario``).
    ``reverse`` runs the jobs last first (the section is the same): a second
    process with the same cache and ``reverse`` works from the other end.
    """
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    jobs: list[Job] = [
        ("scenario", s, replicates, truth_replicates, seed + i, cache)
        for i, s in enumerate(scenarios)
    ]
    if aa_replicates:
        jobs.append(("aa", None, aa_replicates, 0, seed, cache))
    order = list(reversed(jobs)) if reverse else jobs
    if workers > 1:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            results = pool.map(_run, order, chunksize=1)
    else:
        results = [_run(job) for job in order]
    if reverse:
        results.reverse()
    lines = [
        SECTION,
        "",
        "Written by `make validate` (`python -m recsim_cli.experiment.validate_offpolicy "
        f"--replicates {replicates} --truth-replicates {truth_replicates} --aa-replicates "
        f"{aa_replicates} --seed {seed}`); docs/offpolicy.md defines the estimators. Each "
        "scenario trains two models once on a simulated world's logs; the truth is their "
        "online A/B test in the world (docs/simulator.md); the logs of the evaluation window "
        "are then drawn again with new seeds, and every estimator estimates the relative lift "
        "of the treatment from each draw (paired design unless stated). Coverage is the share "
        "of replicates whose 95% CI of the relative lift holds the true lift; power the share "
        "finding a significant change (alpha 0.05) in the true direction. `dm` and `dr` also "
        "give the model-based session metrics (`dr`: the rollout plus the first slate's "
        "doubly robust correction; the weighted estimators share that correction).",
        "",
    ]
    for result in results:
        if isinstance(result, ScenarioResult):
            lines += render_scenario(result)
        else:
            lines += render_aa(result)
    return "\n".join(lines) + "\n"


def replace_section(path: Path, text: str) -> None:
    """Write ``text`` as the file's off-policy section, keeping what precedes it."""
    old = path.read_text(encoding="utf-8") if path.exists() else "# Validation figures\n\n"
    keep = old.split(SECTION, 1)[0].rstrip("\n") + "\n\n"
    write_bytes_atomic(path, (keep + text).encode("utf-8"))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the off-policy validation and print (and optionally write) its Markdown."""
    parser = argparse.ArgumentParser(
        prog="python -m recsim_cli.experiment.validate_offpolicy",
        description="Check recsim abtest's off-policy estimates against the truth.",
    )
    parser.add_argument("--replicates", type=int, default=200, help="log replicates per scenario")
    parser.add_argument(
        "--truth-replicates", type=int, default=1000, help="online replicates per truth"
    )
    parser.add_argument("--aa-replicates", type=int, default=1000, help="A/A gate replicates")
    parser.add_argument("--scenarios", type=int, default=len(SCENARIOS), help="how many to run")
    parser.add_argument("--workers", type=int, default=2, help="processes")
    parser.add_argument("--seed", type=int, default=20_261_126)
    parser.add_argument("--out", default=None, help="Markdown file whose section to replace")
    parser.add_argument(
        "--cache", default=None, help="folder keeping finished parts, so a stopped run resumes"
    )
    parser.add_argument(
        "--reverse", action="store_true", help="run the last job first (a second process)"
    )
    args = parser.parse_args(argv)
    began = time.perf_counter()
    text = section(
        SCENARIOS[: args.scenarios],
        replicates=args.replicates,
        truth_replicates=args.truth_replicates,
        aa_replicates=args.aa_replicates,
        seed=args.seed,
        workers=args.workers,
        cache=None if args.cache is None else Path(args.cache),
        reverse=args.reverse,
    )
    sys.stdout.write(text)
    sys.stdout.write(f"\n(computed in {time.perf_counter() - began:.0f} s)\n")
    if args.out is not None:
        replace_section(Path(args.out), text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
