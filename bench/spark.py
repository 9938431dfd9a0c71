"""Benchmark the Spark engine against polars: ingest plus a logged A/B test as the log grows.

For each size (default 10M, 25M and 50M rows) it writes a simulated logged
experiment as partitioned Parquet (``date=YYYY-MM-DD/part-NNN.parquet``,
generated with numpy chunk by chunk: a fixed population of users hashed
50/50 into ``control`` and ``treatment``, sessions of slates of ten, a
treatment with a higher click rate), then, for each engine, in a fresh
process:

* ``recsim ingest LOG --data DIR --engine E``;
* ``recsim abtest --data DIR --arm-column policy --control control
  --treatment treatment --engine E``.

It prints wall time, the Python process's peak RSS (its own VmHWM: on Spark
this is the *driver*), the Spark JVM's peak RSS (in local mode the JVM does
the executors' work too, so it is not the driver's), and the bytes Spark
sent to the driver: the sum of the tasks' result sizes, read from Spark's own
event log (``spark.eventLog.enabled``). The number of users is the same at
every size, so a driver whose memory and collected bytes stay flat as rows
grow shows that no step brings events to it, only per-user sums (or per-arm
moments with ``--collect moments``).

    python bench/spark.py                          # 10M, 25M, 50M rows
    python bench/spark.py --rows 2000000 --users 100000 --engines spark
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

DAYS = 14
CHUNK_ROWS = 2_000_000
ITEMS = 50_000
START = np.datetime64("2026-03-02T00:00:00", "s").astype(np.int64)
CTR = {"control": 0.050, "treatment": 0.053}


def generate(rows: int, users: int, folder: Path, seed: int = 0) -> int:
    """Write about ``rows`` events of ``users`` users over `DAYS` days; return the rows written."""
    rng = np.random.default_rng(seed)
    user_ids = np.array([f"u{u:08d}" for u in range(users)], dtype=object)
    # A fixed 50/50 assignment by a multiplicative hash of the user number.
    treated = ((np.arange(users, dtype=np.uint64) * np.uint64(2654435761)) % np.uint64(1 << 32)) < (
        1 << 31
    )
    written = 0
    per_day = rows // DAYS
    for day in range(DAYS):
        date = np.datetime_as_string(np.datetime64(int(START) + day * 86_400, "s"), unit="D")
        target = folder / f"date={date}"
        target.mkdir(parents=True, exist_ok=True)
        left, part = per_day, 0
        while left > 0:
            n = min(CHUNK_ROWS, left)
            frame = _chunk(rng, n, users, user_ids, treated, START + day * 86_400)
            frame.write_parquet(target / f"part-{part:03d}.parquet", compression="zstd")
            written += frame.height
            left -= n
            part += 1
    return written


def _chunk(
    rng: np.random.Generator,
    rows: int,
    users: int,
    user_ids: np.ndarray,
    treated: np.ndarray,
    day_start: int,
) -> pl.DataFrame:
    # Sessions of one to four slates; a slate is ten items shown at one instant.
    slates = max(1, rows // 10)
    sessions = max(1, slates // 2)
    session_user = rng.integers(0, users, sessions)
    session_start = day_start + rng.integers(0, 86_400 - 600, sessions)
    slate_session = np.sort(rng.integers(0, sessions, slates))
    slate_index = np.arange(slates) - np.searchsorted(slate_session, slate_session)
    slate_ts = session_start[slate_session] + slate_index * 40 + rng.integers(0, 20, slates)
    n = slates * 10
    row_slate = np.repeat(np.arange(slates), 10)
    user = session_user[slate_session][row_slate]
    arm_treated = treated[user]
    position = np.tile(np.arange(10), slates)
    ctr = np.where(arm_treated, CTR["treatment"], CTR["control"]) * 2.0 / (2.0 + position)
    clicked = rng.random(n) < ctr * 2.5
    return pl.DataFrame(
        {
            "user_id": user_ids[user],
            "item_id": np.minimum(rng.zipf(1.3, n), ITEMS).astype(np.int64),
            "ts": (slate_ts[row_slate] * 1_000_000).astype("datetime64[us]"),
            "slate": slate_index[row_slate],
            "position": position,
            "clicked": clicked,
            "watch_time_s": np.where(clicked, np.round(rng.exponential(200.0, n), 1), 0.0),
            "policy": np.where(arm_treated, "treatment", "control"),
        },
        schema_overrides={"user_id": pl.String},
    ).with_columns(
        pl.format("v{}", "item_id").alias("item_id"),
        pl.col("ts").dt.replace_time_zone("UTC"),
    )


@dataclass(frozen=True)
class Run:
    """One measured command."""

    wall_s: float
    driver_peak_mb: float
    jvm_peak_mb: float
    collected_bytes: int | None
    exit_code: int


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    children: list[int] = []
    stack = [pid]
    while stack:
        parent = stack.pop()
        path = Path(f"/proc/{parent}/task/{parent}/children")
        try:
            found = [int(c) for c in path.read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            found = []
        children += found
        stack += found
    return children


def measure(args: list[str], event_dir: Path | None) -> Run:
    """Run a command, polling the peak RSS of its Python process and of its JVM children."""
    before = set(event_dir.iterdir()) if event_dir is not None else set()
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peaks = {"driver": 0, "jvm": 0}
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            peaks["driver"] = max(peaks["driver"], _status_kb(proc.pid, "VmHWM"))
            jvm = sum(_status_kb(child, "VmHWM") for child in _descendants(proc.pid))
            peaks["jvm"] = max(peaks["jvm"], jvm)
            done.wait(0.2)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    _stdout, stderr = proc.communicate()
    done.set()
    watcher.join()
    wall = time.perf_counter() - started
    if proc.returncode not in (0, 1, 3):
        tail = "\n".join(stderr.strip().splitlines()[-5:])
        raise SystemExit(f"{' '.join(args[2:4])} failed with exit code {proc.returncode}:\n{tail}")
    collected = None
    if event_dir is not None:
        logs = [p for p in event_dir.iterdir() if p not in before]
        collected = sum(_result_bytes(p) for p in logs)
    return Run(wall, peaks["driver"] / 1024, peaks["jvm"] / 1024, collected, proc.returncode)


def _result_bytes(log: Path) -> int:
    """Bytes the tasks of a Spark application sent to the driver (their result sizes).

    ``log`` is the application's event log: a file, or (Spark 4's rolling
    logs) a folder of ``events_*`` files; written uncompressed (the bench sets
    ``spark.eventLog.compress=false``).
    """
    files = (
        sorted(p for p in log.iterdir() if p.name.startswith("events_")) if log.is_dir() else [log]
    )
    total = 0
    for path in files:
        with path.open() as fh:
            for line in fh:
                if '"SparkListenerTaskEnd"' not in line:
                    continue
                metrics = json.loads(line).get("Task Metrics") or {}
                total += int(metrics.get("Result Size", 0))
    return total


def recsim(*args: str) -> list[str]:
    """The command line of ``recsim ARGS`` with this Python."""
    return [sys.executable, "-m", "recsim_cli", *args]


def main() -> None:
    """Parse arguments, generate each log, measure ingest and abtest on each engine."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows",
        default="10000000,25000000,50000000",
        help="comma-separated log sizes in rows (default: 10M, 25M, 50M)",
    )
    parser.add_argument("--users", type=int, default=200_000, help="users at every size")
    parser.add_argument("--engines", default="polars,spark", help="engines to run")
    parser.add_argument(
        "--collect", default="users,moments", help="abtest --collect modes to run on Spark"
    )
    parser.add_argument("--spark-master", default="local[*]")
    parser.add_argument("--driver-memory", default="6g", help="spark.driver.memory (local mode)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to put generated files")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    args = parser.parse_args()
    sizes = [int(s.replace("_", "")) for s in args.rows.split(",") if s.strip()]
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    workdir = Path(tempfile.mkdtemp(prefix="recsim-spark-bench-", dir=args.workdir))
    print(f"cpus: {os.cpu_count()}, users: {args.users:,}, files under {workdir}", flush=True)
    header = (
        f"{'rows':>12} {'engine':<7} {'step':<15} {'wall s':>8} {'rows/s':>10} "
        f"{'driver MB':>10} {'JVM MB':>8} {'to driver':>12}"
    )
    results = []
    try:
        for rows in sizes:
            log = workdir / f"log-{rows}"
            started = time.perf_counter()
            written = generate(rows, args.users, log)
            size = sum(p.stat().st_size for p in log.rglob("*.parquet"))
            print(
                f"generated {written:,} rows ({size / 1e9:.2f} GB of Parquet in {DAYS} date "
                f"partitions) in {time.perf_counter() - started:.1f} s",
                flush=True,
            )
            print(header, flush=True)
            for engine in engines:
                data = workdir / f"data-{rows}-{engine}"
                spark: list[str] = []
                events = None
                if engine == "spark":
                    events = workdir / f"spark-events-{rows}"
                    events.mkdir()
                    spark = [
                        "--engine",
                        "spark",
                        "--spark-master",
                        args.spark_master,
                        "--spark-conf",
                        f"spark.driver.memory={args.driver_memory}",
                        "--spark-conf",
                        "spark.eventLog.enabled=true",
                        "--spark-conf",
                        "spark.eventLog.compress=false",
                        "--spark-conf",
                        f"spark.eventLog.dir={events.resolve().as_uri()}",
                    ]

                def abtest(
                    label: str,
                    *extra: str,
                    spark: list[str] = spark,
                    rows: int = rows,
                    data: Path = data,
                ) -> list[str]:
                    report = workdir / f"abtest-{rows}-{label}.json"
                    arms = ["--control", "control", "--treatment", "treatment"]
                    return recsim(
                        "abtest", "--data", str(data), "--arm-column", "policy", *arms,
                        "--report", str(report), "--json", *spark, *extra,
                    )  # fmt: skip

                steps = {
                    "ingest": recsim("ingest", str(log), "--data", str(data), "--json", *spark)
                }
                if engine == "spark":
                    for collect in args.collect.split(","):
                        steps[f"abtest {collect}"] = abtest(collect, "--collect", collect)
                else:
                    steps["abtest"] = abtest(engine)
                for step, command in steps.items():
                    run = measure(command, events)
                    to_driver = "-" if run.collected_bytes is None else f"{run.collected_bytes:,}"
                    print(
                        f"{written:>12,} {engine:<7} {step:<15} {run.wall_s:>8.1f} "
                        f"{written / run.wall_s:>10,.0f} {run.driver_peak_mb:>10,.0f} "
                        f"{run.jvm_peak_mb:>8,.0f} {to_driver:>12}",
                        flush=True,
                    )
                    results.append({"rows": written, "engine": engine, "step": step, **vars(run)})
                shutil.rmtree(data, ignore_errors=True)
            _same_answer(workdir, rows, engines)
            shutil.rmtree(log)
    finally:
        if args.json is not None:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
        shutil.rmtree(workdir, ignore_errors=True)


def _same_answer(workdir: Path, rows: int, engines: list[str]) -> None:
    """Print the largest relative difference between polars' abtest numbers and each Spark run's."""
    reference = workdir / f"abtest-{rows}-polars.json"
    if "polars" not in engines or not reference.exists():
        return
    a = json.loads(reference.read_text())["analysis"]["metrics"]
    for other in sorted(workdir.glob(f"abtest-{rows}-*.json")):
        label = other.stem.rsplit("-", 1)[1]
        if label == "polars":
            continue
        b = json.loads(other.read_text())["analysis"]["metrics"]
        worst = max(_differences(a, b), default=0.0)
        print(f"largest relative difference of spark --collect {label} from polars: {worst:.2e}")


def _differences(a: object, b: object) -> list[float]:
    """Relative differences of every pair of floats at the same place in two JSON values."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for key in a.keys() & b.keys() for d in _differences(a[key], b[key])]
    if isinstance(a, list) and isinstance(b, list):
        return [d for x, y in zip(a, b, strict=False) for d in _differences(x, y)]
    if isinstance(a, float) and isinstance(b, float) and a != b:
        return [abs(a - b) / max(abs(a), abs(b))]
    return []


if __name__ == "__main__":
    main()
