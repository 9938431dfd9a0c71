"""Validation by simulation: A/A false-positive rates and the coverage of relative CIs.

The figures in docs/statistics.md come from the same functions with more runs:
``python -m recsim_cli.experiment.validate``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from recsim_cli.experiment.synthetic import METRIC_NAMES
from recsim_cli.experiment.validate import (
    NAIVE,
    Rate,
    aa_false_positive_rates,
    relative_coverage,
)

ALPHA = 0.05


def assert_nominal(rates: dict[str, Rate], keys: list[str]) -> None:
    """Every rate lies within 3 Monte Carlo standard errors of alpha."""
    for key in keys:
        rate = rates[key]
        band = 3 * math.sqrt(ALPHA * (1 - ALPHA) / rate.runs)
        assert abs(rate.value - ALPHA) <= band, f"{key}: FPR {rate} outside {ALPHA} ± {band:.4f}"


def run_aa(experiments: int, design: str, seed: int) -> dict[str, Rate]:
    return aa_false_positive_rates(
        np.random.default_rng(seed),
        experiments=experiments,
        users=1_000,
        design=design,  # type: ignore[arg-type]
        cuped_too=design == "split",
    )


def test_split_aa_false_positive_rate_is_nominal_and_the_naive_test_is_not() -> None:
    """2,000 A/A experiments x 1,000 users per arm on clustered, heavy-tailed data."""
    rates = run_aa(2_000, "split", seed=101)
    assert_nominal(rates, [*METRIC_NAMES, *(f"{m}+cuped" for m in METRIC_NAMES)])
    # Treating impressions as independent: a binomial test on pooled impressions.
    assert rates[NAIVE].value > 0.4


def test_paired_aa_false_positive_rate_is_nominal() -> None:
    assert_nominal(run_aa(2_000, "paired", seed=102), list(METRIC_NAMES))


def test_fieller_covers_the_true_lift_on_log_normal_users() -> None:
    """Log-normal (sigma 1.5) users, 200 per arm, treatment = control x 1.1: >= 94% coverage."""
    coverage = relative_coverage(np.random.default_rng(103), runs=4_000, lift=0.1)
    # An undefined interval (one huge user can make the control mean indistinguishable
    # from 0) counts as a miss.
    assert coverage["fieller"].covered.value >= 0.94


@pytest.mark.slow
@pytest.mark.parametrize("design", ["split", "paired"])
def test_aa_false_positive_rate_over_10000_experiments(design) -> None:
    rates = run_aa(10_000, design, seed=104)
    keys = list(METRIC_NAMES)
    if design == "split":
        keys += [f"{m}+cuped" for m in METRIC_NAMES]
        assert rates[NAIVE].value > 0.4
    assert_nominal(rates, keys)


@pytest.mark.slow
def test_fieller_coverage_over_20000_runs() -> None:
    coverage = relative_coverage(np.random.default_rng(105), runs=20_000, lift=0.1)
    assert coverage["fieller"].covered.value >= 0.94
