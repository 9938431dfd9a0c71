"""Benchmark `recsim simulate`: impressions per second for about 1M and 5M impressions.

Run: .venv/bin/python bench/simulate.py [--sizes 1m 5m] [--no-write]

Generation (world, pools, sessions) and writing (gzipped CSV, world arrays)
are timed apart; a world of U users over 7 days gives about 10.4 U impressions
with the default behaviour.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from recsim_cli.simulate import WorldConfig, simulate_logs, write_logs

SIZES = {"1m": 14_000, "5m": 70_000}  # users over 7 days, 20,000 items


def run(label: str, users: int, write: bool) -> None:
    config = WorldConfig(users=users, items=20_000, days=7, seed=0)
    began = time.perf_counter()
    logs = simulate_logs(config)
    generated = time.perf_counter()
    n = len(logs.impressions)
    line = (
        f"{label}: {n:,} impressions, {len(logs.sessions):,} sessions; "
        f"generate {generated - began:.2f} s ({n / (generated - began):,.0f} impressions/s)"
    )
    if write:
        with tempfile.TemporaryDirectory() as out:
            write_logs(logs, out)
        written = time.perf_counter()
        line += (
            f"; write {written - generated:.2f} s; total {written - began:.2f} s "
            f"({n / (written - began):,.0f} impressions/s)"
        )
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=["1m", "5m"])
    parser.add_argument("--no-write", action="store_true", help="time generation only")
    args = parser.parse_args()
    for size in args.sizes:
        run(size, SIZES[size], write=not args.no_write)


if __name__ == "__main__":
    main()
