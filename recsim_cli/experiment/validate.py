"""Reproduce the validation figures of docs/statistics.md by simulation.

Run ``python -m recsim_cli.experiment.validate`` (``make validate``) to print,
as Markdown tables:

* the A/A false-positive rate of every metric at alpha = 0.05, for the split
  design with and without CUPED and for the paired design, on the clustered
  data of :mod:`recsim_cli.experiment.synthetic`, with Monte Carlo standard
  errors, beside the rate of a naive binomial test on pooled impressions;
* the coverage of the 95% relative CIs (Fieller, delta, log, and the
  Poisson bootstrap) on log-normal per-user values, when the arms share a
  shape and when they do not.

The test suite runs the same functions with fewer experiments.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recsim_cli.experiment.bootstrap import arm_columns, poisson_bootstrap
from recsim_cli.experiment.comparison import Design, Sample, compare
from recsim_cli.experiment.effects import RELATIVE_METHODS
from recsim_cli.experiment.ratio import FloatArray
from recsim_cli.experiment.synthetic import METRIC_NAMES, simulate_experiments
from recsim_cli.io import write_bytes_atomic
from recsim_cli.rng import spawn_generators

NAIVE = "naive binomial (ctr)"
OFFPOLICY_SECTION = "## Off-policy estimates against the truth"  # validate_offpolicy.SECTION


@dataclass(frozen=True)
class Rate:
    """A Monte Carlo proportion: ``hits / runs`` and its standard error."""

    hits: int
    runs: int

    @property
    def value(self) -> float:
        """The proportion."""
        return self.hits / self.runs

    @property
    def se(self) -> float:
        """Its binomial standard error ``sqrt(p (1 - p) / runs)``."""
        return math.sqrt(self.value * (1 - self.value) / self.runs)

    def __str__(self) -> str:
        return f"{self.value:.4f} ± {self.se:.4f}"


def naive_binomial_p_values(control: Sample, treatment: Sample) -> FloatArray:
    """Return the p-values of a two-proportion z-test that treats impressions as independent.

    This is the *wrong* analysis (users, not impressions, are randomised); it
    is here to show how far its false-positive rate is from alpha.
    """
    from scipy import stats

    clicks_c, imps_c = control.num.sum(axis=-1), control.den.sum(axis=-1)
    clicks_t, imps_t = treatment.num.sum(axis=-1), treatment.den.sum(axis=-1)
    pooled = (clicks_c + clicks_t) / (imps_c + imps_t)
    se = np.sqrt(pooled * (1 - pooled) * (1 / imps_c + 1 / imps_t))
    z = (clicks_t / imps_t - clicks_c / imps_c) / se
    return np.asarray(2 * stats.norm.sf(np.abs(z)), dtype=np.float64)


def aa_false_positive_rates(
    rng: np.random.Generator,
    *,
    experiments: int,
    users: int,
    design: Design = "split",
    cuped_too: bool = False,
    alpha: float = 0.05,
    chunk: int = 500,
) -> dict[str, Rate]:
    """Simulate A/A experiments and count rejections at ``alpha`` per metric.

    Keys: each metric name, ``<metric>+cuped`` when ``cuped_too`` (the same
    experiments analysed with CUPED), and, for the split design, the naive
    binomial test on pooled impressions.
    """
    hits: dict[str, int] = {}
    done = 0
    while done < experiments:
        size = min(chunk, experiments - done)
        samples = simulate_experiments(rng, size, users, design=design, pre_period=cuped_too)
        for metric in METRIC_NAMES:
            control, treatment = samples[metric]
            runs = [(metric, False)] + ([(f"{metric}+cuped", True)] if cuped_too else [])
            for key, cuped in runs:
                result = compare(control, treatment, design=design, alpha=alpha, cuped=cuped)
                hits[key] = hits.get(key, 0) + int((result.p_value < alpha).sum())
        if design == "split":
            naive = naive_binomial_p_values(*samples["ctr"])
            hits[NAIVE] = hits.get(NAIVE, 0) + int((naive < alpha).sum())
        done += size
    return {key: Rate(count, experiments) for key, count in hits.items()}


def lognormal_arms(
    rng: np.random.Generator,
    *,
    runs: int,
    users: int,
    sigma_control: float,
    sigma_treatment: float,
    lift: float,
) -> tuple[FloatArray, FloatArray]:
    """Draw (runs, users) log-normal per-user values; control mean 1, treatment 1 + lift."""
    control = rng.lognormal(-(sigma_control**2) / 2, sigma_control, (runs, users))
    mu_t = math.log1p(lift) - sigma_treatment**2 / 2
    treatment = rng.lognormal(mu_t, sigma_treatment, (runs, users))
    return control, treatment


@dataclass(frozen=True)
class Coverage:
    """How often an interval covered the true value, and on which side it missed."""

    covered: Rate
    missed_low: int  # the whole interval lay below the truth
    missed_high: int
    undefined: int

    def __str__(self) -> str:
        runs = self.covered.runs
        return (
            f"{100 * self.covered.value:.1f}% ± {100 * self.covered.se:.1f} "
            f"({100 * self.missed_low / runs:.1f} / {100 * self.missed_high / runs:.1f})"
        )


def _coverage(low: FloatArray, high: FloatArray, truth: float) -> Coverage:
    defined = np.isfinite(low) & np.isfinite(high)
    below = defined & (high < truth)
    above = defined & (low > truth)
    covered = defined & ~below & ~above
    return Coverage(
        Rate(int(covered.sum()), low.size),
        int(below.sum()),
        int(above.sum()),
        int((~defined).sum()),
    )


def relative_coverage(
    rng: np.random.Generator,
    *,
    runs: int,
    users: int = 200,
    sigma_control: float = 1.5,
    sigma_treatment: float = 1.5,
    lift: float = 0.1,
    alpha: float = 0.05,
    bootstrap_runs: int = 0,
    resamples: int = 1000,
) -> dict[str, Coverage]:
    """Return the coverage of each relative-CI method of the true lift (undefined = missed)."""
    control, treatment = lognormal_arms(
        rng,
        runs=runs,
        users=users,
        sigma_control=sigma_control,
        sigma_treatment=sigma_treatment,
        lift=lift,
    )
    out: dict[str, Coverage] = {}
    for method in RELATIVE_METHODS:
        result = compare(
            Sample.of(control, 1.0), Sample.of(treatment, 1.0), alpha=alpha, relative_method=method
        )
        out[method] = _coverage(result.relative_low, result.relative_high, lift)
    if bootstrap_runs:
        lows = np.empty(bootstrap_runs)
        highs = np.empty(bootstrap_runs)
        ones = np.ones(users)
        for i in range(bootstrap_runs):
            boot = poisson_bootstrap(
                arm_columns(control[i], ones),
                arm_columns(treatment[i], ones),
                resamples=resamples,
                rng=rng,
                alpha=alpha,
            )
            lows[i], highs[i] = boot.relative_low, boot.relative_high
        out["bootstrap"] = _coverage(lows, highs, lift)
    return out


COVERAGE_CASES: tuple[tuple[float, float, float], ...] = (
    # (sigma_control, sigma_treatment, lift)
    (1.5, 1.5, 0.0),
    (1.5, 1.5, 0.1),
    (1.5, 1.0, 0.0),
    (1.5, 1.0, 0.1),
    (1.0, 1.5, 0.1),
)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the validation tables as Markdown (the figures of docs/statistics.md)."""
    parser = argparse.ArgumentParser(
        prog="python -m recsim_cli.experiment.validate",
        description="Reproduce the validation figures of docs/statistics.md by simulation.",
    )
    parser.add_argument("--experiments", type=int, default=10_000, help="A/A experiments")
    parser.add_argument("--users", type=int, default=1_000, help="users per arm in A/A runs")
    parser.add_argument("--runs", type=int, default=10_000, help="coverage runs per case")
    parser.add_argument(
        "--bootstrap-runs", type=int, default=1_000, help="coverage runs of the bootstrap"
    )
    parser.add_argument("--seed", type=int, default=20_261_125)
    parser.add_argument(
        "--out",
        default=None,
        help="also write the tables to this Markdown file (e.g. docs/validation.md)",
    )
    args = parser.parse_args(argv)
    lines: list[str] = []
    out = lines.append  # the report is collected, then printed and written once
    rngs = spawn_generators(args.seed, ["split", "paired", "coverage"])
    start = time.perf_counter()
    split = aa_false_positive_rates(
        rngs["split"], experiments=args.experiments, users=args.users, cuped_too=True
    )
    paired = aa_false_positive_rates(
        rngs["paired"], experiments=args.experiments, users=args.users, design="paired"
    )
    nominal = math.sqrt(0.05 * 0.95 / args.experiments)
    out(
        f"### A/A false-positive rate at alpha = 0.05\n\n{args.experiments:,} simulated "
        f"experiments x {args.users:,} users per arm, seed {args.seed}; rate ± Monte Carlo "
        f"SE (the SE of a correct test is {nominal:.4f}, so 3 SE is "
        f"{0.05 - 3 * nominal:.4f} to {0.05 + 3 * nominal:.4f}).\n"
    )
    out("| design | " + " | ".join(METRIC_NAMES) + f" | {NAIVE} |")
    out("|---|" + "---|" * (len(METRIC_NAMES) + 1))
    rows = (
        ("split (Welch t, delta method)", split, ""),
        ("split + CUPED", split, "+cuped"),
        ("paired (paired t, delta method)", paired, ""),
    )
    for name, rates, suffix in rows:
        cells = [str(rates[m + suffix]) for m in METRIC_NAMES]
        naive = str(rates[NAIVE]) if suffix == "" and NAIVE in rates else "–"
        out(f"| {name} | " + " | ".join(cells) + f" | {naive} |")
    out(
        f"\n### Coverage of the 95% relative CI\n\n{args.runs:,} runs per case "
        f"({args.bootstrap_runs:,} for the bootstrap, 1,000 resamples), 200 users per arm, "
        "log-normal per-user values with control mean 1; coverage ± MC SE (% of runs whose "
        "interval lay wholly below / above the true lift; an undefined interval counts as a "
        "miss).\n"
    )
    methods = [*RELATIVE_METHODS, "bootstrap"]
    out("| sigma control | sigma treatment | true lift | " + " | ".join(methods) + " |")
    out("|---|---|---|" + "---|" * len(methods))
    for sigma_c, sigma_t, lift in COVERAGE_CASES:
        cov = relative_coverage(
            rngs["coverage"],
            runs=args.runs,
            sigma_control=sigma_c,
            sigma_treatment=sigma_t,
            lift=lift,
            bootstrap_runs=args.bootstrap_runs,
        )
        cells = [str(cov[m]) if m in cov else "–" for m in methods]
        out(f"| {sigma_c} | {sigma_t} | {lift:+.0%} | " + " | ".join(cells) + " |")
    report = "\n".join(lines) + "\n"
    sys.stdout.write(report)
    sys.stdout.write(f"\n(computed in {time.perf_counter() - start:.0f} s)\n")
    if args.out is not None:
        header = (
            "# Validation figures\n\n"
            "Written by `make validate` (`python -m recsim_cli.experiment.validate "
            f"--experiments {args.experiments} --users {args.users} --runs {args.runs} "
            f"--bootstrap-runs {args.bootstrap_runs} --seed {args.seed}`); "
            "docs/statistics.md explains them.\n\n"
        )
        # Keep the off-policy section (``validate_offpolicy`` writes it) when there is one.
        path = Path(args.out)
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        kept = (
            OFFPOLICY_SECTION + old.split(OFFPOLICY_SECTION, 1)[1]
            if OFFPOLICY_SECTION in old
            else ""
        )
        write_bytes_atomic(path, (header + report + ("\n" + kept if kept else "")).encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
