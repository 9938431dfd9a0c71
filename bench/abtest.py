"""Benchmark abtest: a logged A/B test's analysis, and estimates of two models from logs.

Run: .venv/bin/python bench/abtest.py [--sizes 1m 5m] [--offpolicy-rows 10000000]
     [--workdir DIR]

Logged: simulates a prod/personal experiment, writes its events as one
Parquet file (what a dataset holds), then times ``aggregate_experiment``
(scan, window, per-user sums, pre-period) and ``analyse`` (three metrics,
CUPED) apart.

Off-policy: simulates a world whose logging pool is its whole catalogue, with
about ``--offpolicy-rows`` impressions in a 3-day window, trains two models
(popular and ALS) on the days before, and prints, separately, the time to
build their daily lists, then, each in a fresh process with its peak RSS:
replay, IPS and SNIPS (paired design, three per-slate metrics, through the
engine), the same IPS and SNIPS written plainly with numpy arrays (the
reference, with its first-slate CTR of the ALS arm to compare), and the
session model's fit with DM and DR.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from recsim_cli.experiment import analyse
from recsim_cli.experiment.logged import aggregate_experiment
from recsim_cli.simulate import WorldConfig, arms_from_names, events_frame, simulate_logs

SIZES = {"1m": 14_000, "5m": 70_000}  # users over 7 days, 20,000 items
METRICS = ["ctr", "watch_time", "session_depth"]


def run(label: str, users: int) -> None:
    arms = arms_from_names(["prod", "personal"])
    logs = simulate_logs(WorldConfig(users=users, items=20_000, days=7, seed=0, arms=arms))
    events = events_frame(logs.world, logs.sessions, logs.impressions, logs.user_arm)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "events.parquet"
        events.write_parquet(path)
        began = time.perf_counter()
        logged = aggregate_experiment(
            pl.scan_parquet(path), control="prod", treatment="personal", pre_days=2
        )
        aggregated = time.perf_counter()
        analyse(logged.frame, METRICS, control="prod", treatment="personal", cuped=True)
        analysed = time.perf_counter()
    print(
        f"{label}: {events.height:,} events of {logged.frame.height:,} users; "
        f"aggregate {aggregated - began:.2f} s ({events.height / (aggregated - began):,.0f} "
        f"events/s); analyse {analysed - aggregated:.2f} s",
        flush=True,
    )


# -- off-policy estimates of two models ----------------------------------------------------

OFFPOLICY_METRICS = ["first_slate_ctr", "first_slate_watch_time", "slate_ctr"]
WEIGHTED = ("replay", "ips", "snips")


def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def prepare_offpolicy(rows: int, folder: Path) -> dict[str, float]:
    """Simulate logs with about ``rows`` impressions in a 3-day window, train two models on
    the days before, and write the window's events, the models' daily lists and the logs
    before the window as Parquet. Returns the time to build the lists."""
    from recsim_cli.dataset import Dataset
    from recsim_cli.experiment.arms import daily_lists, resolve_arm
    from recsim_cli.ingest import ingest
    from recsim_cli.models.config import TrainConfig
    from recsim_cli.models.two_stage import train
    from recsim_cli.simulate import items_frame

    users = max(rows // 18, 1000)  # about 18 window impressions per user at 10M (26 at 2M)
    config = WorldConfig(
        users=users, items=60, pool_size=60, epsilon=0.5, days=7, seed=0, slate_size=10
    )
    logs = simulate_logs(config)
    events = events_frame(logs.world, logs.sessions, logs.impressions).with_columns(
        pl.col("ts").cast(pl.Datetime("us", "UTC"))
    )
    events.write_parquet(folder / "events.parquet")
    items_frame(logs.world).write_parquet(folder / "items.parquet")
    del logs
    ingest(folder / "events.parquet", items=folder / "items.parquet", data=folder / "data")
    common = {"test_days": 3, "exclude_seen": False}
    for name, cfg in (
        ("pop", TrainConfig(candidates="popular", ranker="none", **common)),
        ("als", TrainConfig(ranker="none", **common)),
    ):
        train(name, data=folder / "data", registry=folder / "models", config=cfg)
    dataset = Dataset.open(folder / "data")
    arm = resolve_arm("pop", registry=folder / "models")
    start = arm.cutoff
    assert start is not None
    window = events.filter(pl.col("ts") >= start)
    window.write_parquet(folder / "window.parquet")
    events.filter(pl.col("ts") < start).write_parquet(folder / "before.parquet")
    users_in = window.get_column("user_id").unique().sort()
    days = sorted(set(window.get_column("ts").dt.date().to_list()))
    # The lists an estimate reads: each user's on the days the user had a session.
    user_days = (
        window.group_by("session_id")
        .agg(pl.col("user_id").first(), pl.col("ts").min().dt.date().alias("day"))
        .select("user_id", "day")
        .unique()
    )
    began = time.perf_counter()
    for name in ("pop", "als"):
        lists = daily_lists(
            resolve_arm(name, registry=folder / "models"),
            dataset=dataset,
            users=users_in,
            days=days,
            length=60,
            user_days=user_days,
        )
        lists.write_parquet(folder / f"lists-{name}.parquet")
    return {"lists_s": time.perf_counter() - began, "window_rows": float(window.height)}


def child_estimate(folder: Path, which: str) -> None:
    """Child process: estimate with ``which`` (replay, ips, snips, dm-dr or numpy); print JSON."""
    import json

    from recsim_cli.experiment.offpolicy_abtest import (
        WindowLogs,
        analyse_estimates,
        estimate_arm,
    )

    began = time.perf_counter()
    out: dict[str, float] = {}
    if which == "numpy":
        out.update(_numpy_reference(folder))
    else:
        logs = WindowLogs.of(pl.read_parquet(folder / "window.parquet"))
        out["read_s"] = time.perf_counter() - began
        estimators = [which] if which in WEIGHTED else ["dm", "dr"]
        model = None
        if which == "dm-dr":
            from recsim_cli.experiment.session_model import fit_session_model

            t = time.perf_counter()
            model = fit_session_model(
                pl.read_parquet(folder / "before.parquet"),
                pl.read_parquet(folder / "items.parquet"),
            )
            out["fit_s"] = time.perf_counter() - t
        for estimator in estimators:
            t = time.perf_counter()
            # As `recsim abtest` does: one arm's lists in memory at a time.
            estimates = [
                estimate_arm(
                    logs,
                    pl.read_parquet(folder / f"lists-{name}.parquet"),
                    estimator=estimator,  # type: ignore[arg-type]
                    session_model=model,
                )
                for name in ("pop", "als")
            ]
            result, _ = analyse_estimates(
                (estimates[0], estimates[1]),
                ("pop", "als"),
                logs.users,
                estimator=estimator,  # type: ignore[arg-type]
                design="paired",
                options={
                    "metrics": OFFPOLICY_METRICS,
                    "guardrails": [],
                    "alpha": 0.05,
                    "split": (0.5, 0.5),
                    "correction": "holm",
                    "relative_ci": "fieller",
                },
            )
            out[f"{estimator}_s"] = time.perf_counter() - t
            out[f"{estimator}_first_slate_ctr_treatment"] = result.metrics[0].treatment.estimate
    out["total_s"] = time.perf_counter() - began
    out["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(out))


def _numpy_reference(folder: Path) -> dict[str, float]:
    """IPS and SNIPS of the treatment's first-slate CTR, written plainly with numpy arrays."""
    window = pl.read_parquet(folder / "window.parquet")
    lists = pl.read_parquet(folder / "lists-als.parquet")
    began = time.perf_counter()
    # Integer codes for users and items shared by the lists and the logs (np.unique).
    list_users = lists.get_column("user_id").to_numpy().astype(str)
    log_users = window.get_column("user_id").to_numpy().astype(str)
    _, user_code = np.unique(np.concatenate([list_users, log_users]), return_inverse=True)
    list_items = lists.get_column("item_id").to_numpy().astype(str)
    log_items = window.get_column("item_id").to_numpy().astype(str)
    _, item_code = np.unique(np.concatenate([list_items, log_items]), return_inverse=True)
    lu, u = user_code[: len(list_users)], user_code[len(list_users) :]
    li, item = item_code[: len(list_items)], item_code[len(list_items) :]
    day0 = lists.get_column("day").min()
    ld = (lists.get_column("day").to_numpy() - np.datetime64(day0, "D")).astype(np.int64)
    n_days = int(ld.max()) + 1
    table = np.full((int(user_code.max()) + 1, n_days, 60), -1, dtype=np.int64)
    table[lu, ld, lists.get_column("rank").to_numpy()] = li
    t0 = window.group_by("session_id").agg(pl.col("ts").min().alias("t0"))
    start = window.join(t0, on="session_id", how="left").get_column("t0")
    start_day = start.to_numpy().astype("datetime64[D]")
    d = (start_day - np.datetime64(day0, "D")).astype(np.int64)
    rank = window.get_column("slate").to_numpy() * 10 + window.get_column("position").to_numpy()
    ok = (d >= 0) & (d < n_days) & (rank < 60)
    target = np.full(len(u), -1)
    target[ok] = table[u[ok], d[ok], rank[ok]]
    w = (target == item) / window.get_column("propensity").to_numpy()
    clicked = window.get_column("clicked").to_numpy().astype(float)
    first = window.get_column("slate").to_numpy() == 0
    ips = float((w * clicked)[first].sum() / first.sum())
    slot = rank[first]
    num = np.bincount(slot, weights=(w * clicked)[first])
    den = np.bincount(slot, weights=w[first])
    count = np.bincount(slot)
    snips = float((count * np.divide(num, den, out=np.zeros_like(num), where=den > 0)).sum())
    return {
        "numpy_s": time.perf_counter() - began,
        "numpy_ips_first_slate_ctr": ips,
        "numpy_snips_first_slate_ctr": snips / first.sum(),
    }


def run_offpolicy(rows: int, workdir: Path | None = None) -> None:
    """Prepare the logs and lists, then time each estimator in its own process.

    With ``workdir``, the prepared files are kept there and reused by a later
    run with the same ``rows`` (preparing 10M impressions takes minutes).
    """
    if workdir is None:
        with tempfile.TemporaryDirectory() as name:
            _offpolicy_in(rows, Path(name))
    else:
        _offpolicy_in(rows, workdir)


def _offpolicy_in(rows: int, folder: Path) -> None:
    import json
    import subprocess
    import sys

    facts_file = folder / f"prepared-{rows}.json"
    began = time.perf_counter()
    if facts_file.exists():
        facts = json.loads(facts_file.read_text())
        how = f"prepared earlier in {folder}"
    else:
        folder.mkdir(parents=True, exist_ok=True)
        facts = prepare_offpolicy(rows, folder)
        facts_file.write_text(json.dumps(facts))
        how = f"prepared in {time.perf_counter() - began:.0f} s"
    print(
        f"off-policy: {facts['window_rows']:,.0f} window impressions ({how}); "
        f"daily lists of two models: {facts['lists_s']:.1f} s",
        flush=True,
    )
    for which in (*WEIGHTED, "numpy", "dm-dr"):
        proc = subprocess.run(
            [sys.executable, __file__, "--child", which, str(folder)],
            capture_output=True,
            text=True,
            check=True,
        )
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        timings = ", ".join(
            f"{k.removesuffix('_s')} {v:.1f} s" for k, v in out.items() if k.endswith("_s")
        )
        values = ", ".join(f"{k} {v:.5f}" for k, v in out.items() if "first_slate_ctr" in k)
        print(f"  {which}: {timings}; peak RSS {out['peak_rss_mb']:,.0f} MB; {values}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="*", choices=sorted(SIZES), default=sorted(SIZES))
    parser.add_argument("--offpolicy-rows", type=int, default=10_000_000)
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep the prepared off-policy files here and reuse them on the next run",
    )
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_estimate(Path(args.child[1]), args.child[0])
        return
    for label in args.sizes:
        run(label, SIZES[label])
    if args.offpolicy_rows:
        run_offpolicy(args.offpolicy_rows, args.workdir)


if __name__ == "__main__":
    main()
