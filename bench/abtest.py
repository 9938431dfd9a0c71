"""Benchmark a logged A/B test's analysis: events to per-user frame to result.

Run: .venv/bin/python bench/abtest.py [--sizes 1m 5m]

Simulates a prod/personal experiment, writes its events as one Parquet file
(what a dataset holds), then times ``aggregate_experiment`` (scan, window,
per-user sums, pre-period) and ``analyse`` (three metrics, CUPED) apart.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=sorted(SIZES))
    args = parser.parse_args()
    for label in args.sizes:
        run(label, SIZES[label])


if __name__ == "__main__":
    main()
