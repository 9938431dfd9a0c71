"""Benchmark `recsim ingest` on large generated logs against a bare polars floor.

For each size in ``--rows`` it writes a CSV log (generated with numpy and
polars, not the simulator: realistic columns, ISO timestamps, slates of ten,
sessions, 0.1% duplicated rows and 0.01% unparsable timestamps), then runs,
each in a fresh subprocess so its peak RSS is its own:

* the floor: ``scan_csv -> parse ts -> sink_parquet``, the least any ingest
  must do;
* ``recsim_cli.ingest.ingest`` into a new dataset folder.

It prints wall time, rows per second, CPU time and peak RSS (the child's own
VmHWM) per run. Peak RSS should stay flat as rows double (bounded memory);
CPU time next to wall time shows whether the machine's cores were shared with
other work (with two free cores, wall is about half the CPU time).

    python bench/ingest.py                       # 10M and 20M rows
    python bench/ingest.py --rows 1000000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

CHUNK_SLATES = 100_000  # slates of ten per generated chunk: 1M rows
DEVICES = np.array(["mobile", "desktop", "tv", "tablet"])
POLICIES = np.array(["als-v1", "als-v2", "popular"])

# Each child reports its own peak RSS from /proc/self/status (VmHWM): the
# ru_maxrss that wait4 returns can include the parent's memory, inherited
# across fork and exec.
PEAK = """
def peak_rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
print("PEAK", peak_rss_mb())
"""

FLOOR = """
import sys, polars as pl
src, out = sys.argv[1], sys.argv[2]
pl.scan_csv(src).with_columns(
    pl.col("ts").str.to_datetime(
        "%Y-%m-%dT%H:%M:%SZ", time_unit="us", time_zone="UTC", strict=False
    )
).sink_parquet(out)
"""

INGEST = """
import json, sys
from recsim_cli.ingest import ingest
summary = ingest(sys.argv[1], data=sys.argv[2])
print(json.dumps(summary.to_dict()))
"""


def generate(rows: int, path: Path, seed: int = 0) -> None:
    """Write a CSV log of about ``rows`` rows, chunk by chunk, in time order."""
    rng = np.random.default_rng(seed)
    users = max(10, rows // 150)
    items = max(10, rows // 500)
    slates_total = max(1, rows // 10)
    start = np.datetime64("2026-01-05T00:00:00", "s").astype(np.int64)
    span = 28 * 86_400
    chunks = max(1, -(-slates_total // CHUNK_SLATES))
    with path.open("wb") as fh:
        for chunk in range(chunks):
            slates = min(CHUNK_SLATES, slates_total - chunk * CHUNK_SLATES)
            frame = _chunk(
                rng, slates, users, items, start + span * chunk // chunks, span // chunks
            )
            frame.write_csv(fh, include_header=chunk == 0)


def _chunk(
    rng: np.random.Generator, slates: int, users: int, items: int, t0: int, span: int
) -> pl.DataFrame:
    # Sessions of about three slates; a slate is ten items shown at one instant.
    sessions = max(1, slates // 3)
    session_user = rng.integers(0, users, sessions)
    session_start = t0 + rng.integers(0, max(1, span), sessions)
    slate_session = np.sort(rng.integers(0, sessions, slates))
    slate_index = np.arange(slates) - np.searchsorted(slate_session, slate_session)
    slate_ts = session_start[slate_session] + slate_index * 45 + rng.integers(0, 30, slates)
    n = slates * 10
    row_slate = np.repeat(np.arange(slates), 10)
    clicked = rng.random(n) < 0.08
    propensity = np.round(rng.uniform(0.01, 1.0, n), 4)
    frame = pl.DataFrame(
        {
            "user_id": session_user[slate_session][row_slate],
            "item_id": np.minimum(rng.zipf(1.2, n), items) - 1,
            "ts": slate_ts[row_slate],
            "slate": slate_index[row_slate],
            "position": np.tile(np.arange(10), slates),
            "clicked": clicked,
            "watch_time_s": np.where(clicked, np.round(rng.exponential(240.0, n), 1), 0.0),
            "device": DEVICES[rng.integers(0, len(DEVICES), sessions)][slate_session][row_slate],
            "propensity": propensity,
            "policy": POLICIES[rng.integers(0, len(POLICIES), n)],
            "explore": rng.random(n) < 0.1,
        }
    ).with_columns(
        pl.format("u{}", "user_id").alias("user_id"),
        pl.format("v{}", "item_id").alias("item_id"),
        pl.from_epoch("ts").dt.strftime("%Y-%m-%dT%H:%M:%SZ").alias("ts"),
    )
    duplicates = frame.sample(fraction=0.001, seed=int(rng.integers(1 << 31)))
    frame = pl.concat([frame, duplicates]).sort("ts", maintain_order=True)
    broken = rng.random(frame.height) < 0.0001
    return frame.with_columns(
        pl.when(pl.Series(broken)).then(pl.lit("not-a-time")).otherwise("ts").alias("ts")
    )


@dataclass(frozen=True)
class Run:
    """One measured subprocess."""

    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    stdout: str


def measure(code: str, *args: str) -> Run:
    """Run ``python -c code args`` and return its wall time, CPU time and peak RSS."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", code + PEAK, *args], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    stdout = proc.stdout.read()
    # wait4 reports the CPU time of this child alone (RUSAGE_CHILDREN accumulates).
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed with exit code {proc.returncode}")
    *lines, peak = stdout.splitlines()
    return Run(wall, usage.ru_utime + usage.ru_stime, float(peak.split()[1]), "\n".join(lines))


def main() -> None:
    """Parse arguments, generate each log, measure floor and ingest, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows",
        default="10000000,20000000",
        help="comma-separated log sizes in rows (default: 10000000,20000000)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per size; the best is shown")
    parser.add_argument("--workdir", type=Path, default=None, help="where to put generated files")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--generate", nargs=2, metavar=("ROWS", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:  # a child: write one log and exit, so the parent's memory stays small
        generate(int(args.generate[0]), Path(args.generate[1]))
        return
    sizes = [int(s.replace("_", "")) for s in args.rows.split(",") if s.strip()]
    workdir = Path(tempfile.mkdtemp(prefix="recsim-bench-", dir=args.workdir))
    print(f"cpus: {os.cpu_count()}, polars {pl.__version__}, files under {workdir}")
    header = f"{'rows':>12} {'run':<14} {'wall s':>8} {'rows/s':>9} {'cpu s':>8} {'peak RSS':>9}"
    try:
        results = []
        for rows in sizes:
            log = workdir / f"events-{rows}.csv"
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, __file__, "--generate", str(rows), str(log)], check=True
            )
            lines = _count_rows(log)
            print(
                f"generated {lines:,} rows ({log.stat().st_size / 1e9:.2f} GB) "
                f"in {time.perf_counter() - started:.1f} s",
                flush=True,
            )
            for name, code in (("polars floor", FLOOR), ("recsim ingest", INGEST)):
                best: Run | None = None
                for _attempt in range(args.repeat):
                    out = workdir / "out"
                    target = out / "floor.parquet" if code is FLOOR else out / "dataset"
                    out.mkdir()
                    run = measure(code, str(log), str(target))
                    shutil.rmtree(out)
                    best = run if best is None or run.wall_s < best.wall_s else best
                assert best is not None
                if code is INGEST:
                    summary = json.loads(best.stdout)
                    assert summary["rows_total"] > 0
                results.append((lines, name, best))
                print(_line(lines, name, best), flush=True)
        print()
        print(header)
        for lines, name, run in results:
            print(_line(lines, name, run))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _count_rows(path: Path) -> int:
    return int(pl.scan_csv(path, infer_schema=False).select(pl.len()).collect().item())


def _line(rows: int, name: str, run: Run) -> str:
    rate = rows / run.wall_s / 1e6
    return (
        f"{rows:>12,} {name:<14} {run.wall_s:>8.1f} {rate:>8.2f}M {run.cpu_s:>8.1f} "
        f"{run.peak_rss_mb / 1024:>7.2f} GB"
    )


if __name__ == "__main__":
    main()
