"""Benchmark the ranking metrics of `recsim evaluate` against trec_eval (pytrec_eval).

It generates ``--users`` top-``--k-list`` lists, written the way ``recsim
recommend`` writes them (string ids, sorted by user then rank, with score and
rank), and the relevant items (Poisson with mean ``--relevant-mean`` per user,
about a third of them somewhere in the user's list; users with none, and 2% of
users with relevant items but no list). Then, each in a fresh subprocess so
its peak RSS is its own:

* recsim: ``user_metrics`` (all six metrics at k=10), the mean and 95%
  t-interval of each metric (``mean ± t(0.975, n-1) sd / sqrt(n)`` with numpy),
  and writing the per-user Parquet;
* pytrec_eval: building its input dicts (qrels and run), then ``evaluate()``
  alone, on the same lists (P, recall, map_cut, ndcg_cut, success at 10 and
  recip_rank).

Times are measured inside each child, after reading the Parquet inputs; peak
RSS is the child's own VmHWM and includes the inputs it read. The means of
both are printed side by side as a check (recsim with the |R| MAP denominator,
the one trec_eval uses; users trec_eval leaves out counted as zeros).

    python bench/metrics.py                      # 100,000 users x top-100 (10M rows)
    python bench/metrics.py --million            # also recsim alone on 1M users (100M rows)
    python bench/metrics.py --users 20000 --repeat 3
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
from typing import Any

import numpy as np
import polars as pl

CHUNK_USERS = 100_000
NO_LIST_SHARE = 0.02  # users with relevant items but no list
FROM_LIST_SHARE = 1 / 3  # relevant items drawn from the user's own list

# Each child reports its own peak RSS from /proc/self/status (VmHWM): the
# ru_maxrss that wait4 returns can include the parent's memory, inherited
# across fork and exec.
PROC = """
def proc_mb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
"""

RECSIM = (
    PROC
    + """
import json, sys, time
import numpy as np, polars as pl
from scipy.special import stdtrit
from recsim_cli.metrics import METRIC_NAMES, metric_column, user_metrics

recs = pl.read_parquet(sys.argv[1] + "/recs-*.parquet").rechunk()
truth = pl.read_parquet(sys.argv[1] + "/truth-*.parquet").rechunk()
inputs_mb = proc_mb("VmRSS")
started = time.perf_counter()
result = user_metrics(recs, truth, ks=[10], map_denominator="relevant")
computed = time.perf_counter()
columns = [metric_column(m, 10) for m in METRIC_NAMES]
values = result.per_user.select(columns).to_numpy()
n = values.shape[0]
mean = values.mean(axis=0)
half = stdtrit(n - 1, 0.975) * values.std(axis=0, ddof=1) / np.sqrt(n)
summarised = time.perf_counter()
result.per_user.write_parquet(sys.argv[2])
written = time.perf_counter()
print(json.dumps({
    "rows": recs.height,
    "users": n,
    "users_without_relevant": result.users_without_relevant,
    "users_without_recommendations": result.users_without_recommendations,
    "metrics_s": computed - started,
    "summary_s": summarised - computed,
    "write_s": written - summarised,
    "total_s": written - started,
    "means": dict(zip(columns, mean.tolist())),
    "half_widths": dict(zip(columns, half.tolist())),
    "inputs_mb": inputs_mb,
    "peak_mb": proc_mb("VmHWM"),
}))
"""
)

PYTREC = (
    PROC
    + """
import json, sys, time
import polars as pl
import pytrec_eval

recs = pl.read_parquet(sys.argv[1] + "/recs-*.parquet").rechunk()
truth = pl.read_parquet(sys.argv[1] + "/truth-*.parquet").rechunk()
inputs_mb = proc_mb("VmRSS")
started = time.perf_counter()
qrels = {
    user: dict.fromkeys(items, 1)
    for user, items in truth.group_by("user_id").agg("item_id").iter_rows()
}
run = {
    user: dict(zip(items, scores))
    for user, items, scores in recs.group_by("user_id").agg("item_id", "score").iter_rows()
}
built = time.perf_counter()
built_mb = proc_mb("VmHWM")
measures = {"P.10", "recall.10", "map_cut.10", "ndcg_cut.10", "success.10", "recip_rank"}
evaluator = pytrec_eval.RelevanceEvaluator(qrels, measures)
constructed = time.perf_counter()
results = evaluator.evaluate(run)
evaluated = time.perf_counter()
names = {"precision@10": "P_10", "recall@10": "recall_10", "map@10": "map_cut_10",
         "ndcg@10": "ndcg_cut_10", "mrr@10": "recip_rank", "hit_rate@10": "success_10"}
# trec_eval leaves out users with relevant items but no list: count them as zeros.
means = {
    ours: sum(r[theirs] for r in results.values()) / len(qrels) for ours, theirs in names.items()
}
print(json.dumps({
    "users": len(results),
    "build_s": built - started,
    "evaluator_s": constructed - built,
    "evaluate_s": evaluated - constructed,
    "means": means,
    "inputs_mb": inputs_mb,
    "built_mb": built_mb,
    "peak_mb": proc_mb("VmHWM"),
}))
"""
)


def generate(
    users: int, k_list: int, relevant_mean: float, items: int, folder: Path, seed: int
) -> None:
    """Write recs-*.parquet and truth-*.parquet under ``folder``, chunk by chunk."""
    rng = np.random.default_rng(seed)
    for number, first in enumerate(range(0, users, CHUNK_USERS)):
        n = min(CHUNK_USERS, users - first)
        recs, truth = _chunk(rng, first, n, k_list, relevant_mean, items)
        recs.write_parquet(folder / f"recs-{number:04d}.parquet")
        truth.write_parquet(folder / f"truth-{number:04d}.parquet")
    # Users after the last list: relevant items, never recommended.
    extra = max(1, int(users * NO_LIST_SHARE))
    n_rel = rng.poisson(relevant_mean, extra) + 1
    user = np.repeat(np.arange(users, users + extra), n_rel)
    _ids(
        pl.DataFrame({"user_id": user, "item_id": rng.integers(0, items, user.size)})
    ).write_parquet(folder / "truth-extra.parquet")


def _chunk(
    rng: np.random.Generator, first: int, n: int, k_list: int, relevant_mean: float, items: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    # Distinct items per list: a user's offset plus distinct steps, modulo the catalogue.
    steps = rng.choice(items, size=k_list, replace=False)
    listed = (rng.integers(0, items, n)[:, None] + steps[None, :]) % items
    score = np.sort(rng.random((n, k_list)), axis=1)[:, ::-1]
    recs = pl.DataFrame(
        {
            "user_id": np.repeat(np.arange(first, first + n), k_list),
            "item_id": listed.ravel(),
            "score": score.ravel(),
            "rank": np.tile(np.arange(1, k_list + 1, dtype=np.int32), n),
        }
    )
    n_rel = rng.poisson(relevant_mean, n)
    user = np.repeat(np.arange(n), n_rel)
    from_list = rng.random(user.size) < FROM_LIST_SHARE
    position = np.minimum(rng.geometric(0.05, user.size), k_list) - 1
    item = np.where(from_list, listed[user, position], rng.integers(0, items, user.size))
    truth = pl.DataFrame({"user_id": user + first, "item_id": item})
    return _ids(recs), _ids(truth)


def _ids(frame: pl.DataFrame) -> pl.DataFrame:
    """String ids as a dataset has them: u0000042, v1234."""
    return frame.with_columns(
        pl.format("u{}", pl.col("user_id").cast(pl.String).str.zfill(7)).alias("user_id"),
        pl.format("v{}", pl.col("item_id")).alias("item_id"),
    )


@dataclass(frozen=True)
class Run:
    """One measured subprocess: its wall and CPU time and the JSON it printed."""

    wall_s: float
    cpu_s: float
    report: dict[str, Any]


def measure(code: str, *args: str) -> Run:
    """Run ``python -c code args`` and return its wall time, CPU time and JSON report."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    stdout = proc.stdout.read()
    # wait4 reports the CPU time of this child alone (RUSAGE_CHILDREN accumulates).
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"benchmark child failed with exit code {code}")
    return Run(wall, usage.ru_utime + usage.ru_stime, json.loads(stdout.splitlines()[-1]))


def best_of(repeat: int, key: str, code: str, *args: str) -> Run:
    """The run with the smallest ``report[key]`` out of ``repeat``."""
    runs = [measure(code, *args) for _ in range(repeat)]
    return min(runs, key=lambda run: run.report[key])


def main() -> None:
    """Parse arguments, generate the data, run recsim and pytrec_eval, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000, help="users with a list")
    parser.add_argument("--k-list", type=int, default=100, help="length of each list")
    parser.add_argument("--relevant-mean", type=float, default=5.0, help="relevant items per user")
    parser.add_argument("--items", type=int, default=50_000, help="catalogue size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement; best shown")
    parser.add_argument("--million", action="store_true", help="also time recsim on 1M users")
    parser.add_argument("--workdir", type=Path, default=None, help="where to put generated files")
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:  # a child: write the data and exit, so the parent's memory stays small
        generate(args.users, args.k_list, args.relevant_mean, args.items, args.generate, args.seed)
        return
    import importlib.metadata

    versions = f"polars {pl.__version__}, numpy {np.__version__}, pytrec_eval " + (
        importlib.metadata.version("pytrec-eval-terrier")
    )
    workdir = Path(tempfile.mkdtemp(prefix="recsim-bench-", dir=args.workdir))
    print(f"cpus: {os.cpu_count()}, {versions}, files under {workdir}", flush=True)
    try:
        data = _generated(args, args.users, workdir / "data")
        recsim = best_of(
            args.repeat, "total_s", RECSIM, str(data), str(workdir / "per_user.parquet")
        )
        pytrec = best_of(args.repeat, "evaluate_s", PYTREC, str(data))
        _report(recsim, pytrec)
        time_evaluate_command(data, workdir / "command")
        if args.million:
            million = _generated(args, 1_000_000, workdir / "million")
            shutil.rmtree(data)
            run = best_of(
                args.repeat, "total_s", RECSIM, str(million), str(workdir / "million.parquet")
            )
            r = run.report
            print(
                f"\nrecsim alone, {r['rows']:,} rows ({r['users']:,} users evaluated): "
                f"user_metrics {r['metrics_s']:.2f} s, total {r['total_s']:.2f} s, "
                f"peak RSS {r['peak_mb'] / 1024:.2f} GB "
                f"(inputs {r['inputs_mb'] / 1024:.2f} GB)"
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def time_evaluate_command(data: Path, folder: Path) -> None:
    """Time the whole ``recsim evaluate --recs FILE`` command on the same lists and truth.

    The truth becomes a dataset (every relevant pair a click on the last day,
    ingested with the library; not timed); the lists one Parquet file. The
    command then reads both, ranks, computes the six metrics at k=10 with
    t-intervals and writes the JSON report and the per-user Parquet.
    """

    from recsim_cli.ingest import ingest

    folder.mkdir(parents=True)
    truth = pl.concat([pl.read_parquet(f) for f in sorted(data.glob("truth-*.parquet"))])
    events = truth.with_columns(
        pl.lit("2026-01-02T12:00:00Z").alias("ts"),
        pl.lit(True).alias("clicked"),
        pl.lit(1.0).alias("watch_time_s"),
    )
    events.write_parquet(folder / "events.parquet")
    ingest(folder / "events.parquet", data=folder / "dataset")
    recs = folder / "recs.parquet"
    pl.concat([pl.read_parquet(f) for f in sorted(data.glob("recs-*.parquet"))]).write_parquet(recs)
    command = [
        sys.executable, "-m", "recsim_cli", "evaluate", "--recs", str(recs),
        "--data", str(folder / "dataset"), "--test-days", "1", "--k", "10",
        "--json", str(folder / "report.json"), "--per-user", str(folder / "per_user.parquet"),
    ]  # fmt: skip
    # a fresh watcher process whose only child is the command, so RUSAGE_CHILDREN is its peak
    watcher = (
        "import json, resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "subprocess.run(json.loads(sys.argv[1]), check=True, stdout=subprocess.DEVNULL)\n"
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run(
        [sys.executable, "-c", watcher, json.dumps(command)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    wall, peak_gb = float(out[0]), int(out[1]) / 1024 / 1024
    print(
        f"\nwhole command `recsim evaluate --recs FILE --k 10 --json F --per-user F` on the "
        f"same {truth.height:,} relevant pairs: {wall:.2f} s, peak RSS {peak_gb:.2f} GB"
    )


def _generated(args: argparse.Namespace, users: int, folder: Path) -> Path:
    folder.mkdir(parents=True)
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            __file__,
            "--generate",
            str(folder),
            "--users",
            str(users),
            "--k-list",
            str(args.k_list),
            "--relevant-mean",
            str(args.relevant_mean),
            "--items",
            str(args.items),
            "--seed",
            str(args.seed),
        ],
        check=True,
    )
    print(
        f"generated {users:,} users x top-{args.k_list} in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    return folder


def _report(recsim: Run, pytrec: Run) -> None:
    r, p = recsim.report, pytrec.report
    gb = 1 / 1024
    print(
        f"\n{r['rows']:,} list rows; {r['users']:,} users evaluated, "
        f"{r['users_without_relevant']:,} with a list but nothing relevant (left out), "
        f"{r['users_without_recommendations']:,} with relevant items but no list (zeros)\n"
    )
    print(f"{'':44} {'seconds':>8} {'peak RSS':>10}")
    print(f"{'recsim user_metrics, six metrics at k=10':44} {r['metrics_s']:>8.2f}")
    print(f"{'  means and 95% t-intervals':44} {r['summary_s']:>8.3f}")
    print(f"{'  write the per-user Parquet':44} {r['write_s']:>8.3f}")
    print(
        f"{'  recsim total':44} {r['total_s']:>8.2f} {r['peak_mb'] * gb:>7.2f} GB"
        f"   (inputs read: {r['inputs_mb'] * gb:.2f} GB; child CPU {recsim.cpu_s:.1f} s)"
    )
    print(
        f"{'pytrec_eval: build input dicts':44} {p['build_s']:>8.2f} {p['built_mb'] * gb:>7.2f} GB"
    )
    print(f"{'  RelevanceEvaluator(qrels, measures)':44} {p['evaluator_s']:>8.2f}")
    print(
        f"{'  evaluate() alone':44} {p['evaluate_s']:>8.2f} {p['peak_mb'] * gb:>7.2f} GB"
        f"   (inputs read: {p['inputs_mb'] * gb:.2f} GB)"
    )
    evaluate_s, total_s = p["evaluate_s"], r["total_s"]
    with_build = evaluate_s + p["build_s"] + p["evaluator_s"]
    print(
        f"\nrecsim total vs pytrec_eval evaluate() alone: {evaluate_s / total_s:.1f}x faster; "
        f"vs pytrec_eval dicts + evaluate(): {with_build / total_s:.1f}x"
    )
    print(f"\n{'mean over users':16} {'recsim (95% CI)':>26} {'pytrec_eval':>12}")
    means, halves, theirs = r["means"], r["half_widths"], p["means"]
    for column in means:
        note = "  (recip_rank over the whole list)" if column.startswith("mrr") else ""
        print(
            f"{column:16} {means[column]:>12.5f} ± {halves[column]:.5f} "
            f"{theirs[column]:>12.5f}{note}"
        )


if __name__ == "__main__":
    main()
