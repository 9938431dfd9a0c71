"""Check that an experiment can be trusted before reading its effects.

Each check returns a :class:`HealthCheck`; a gate declares the experiment
invalid (exit 4) if any fails.

* ``sample_ratio``: sample-ratio mismatch. The users per arm are tested
  against the intended split: the exact two-sided binomial test (the
  "minimum likelihood" p-value, as ``scipy.stats.binomtest``) when fewer than
  ``EXACT_TEST_MAX_USERS`` users were randomised, where the chi-square
  approximation to a 0.001 tail can be off; Pearson's chi-square test with
  ``k - 1`` degrees of freedom (as ``scipy.stats.chisquare``) above. Flagged
  at ``p < 0.001`` (Kohavi, Tang and Xu, *Trustworthy Online Controlled
  Experiments*, 2020, ch. 21: SRM tests run on every experiment, so a strict
  threshold keeps false alarms rare).
* ``min_users``: every arm has at least ``min_users_per_arm`` users (default
  50), below which the normal approximation behind the CIs is not trusted;
  an empty arm fails here.
* ``one_arm_per_user`` (split design): no user appears in both arms.
* ``metric:<name>``: both arms have a positive denominator sum and non-zero
  variance, without which the ratio or its test is undefined.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

SRM_THRESHOLD = 0.001
EXACT_TEST_MAX_USERS = 10_000
DEFAULT_MIN_USERS = 50
# A per-user standard deviation this small relative to the metric is rounding, not signal.
_ZERO_VARIANCE_RTOL = 1e-10


@dataclass(frozen=True)
class HealthCheck:
    """The outcome of one health check, with a sentence that explains it."""

    name: str
    passed: bool
    detail: str
    p_value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the check as plain JSON-ready values."""
        return {
            "name": self.name,
            "passed": self.passed,
            "detail": self.detail,
            "p_value": self.p_value,
        }


def srm_p_value(counts: Sequence[int], split: Sequence[float]) -> tuple[float, str]:
    """Return the sample-ratio-mismatch p-value and the test used.

    ``split`` is normalised to sum to 1. Two arms with fewer than
    ``EXACT_TEST_MAX_USERS`` users in all: exact binomial; otherwise Pearson's
    chi-square, ``sum (o - e)^2 / e`` on ``k - 1`` df.
    """
    from scipy import stats

    observed = np.asarray(counts, dtype=np.float64)
    shares = np.asarray(split, dtype=np.float64)
    shares = shares / shares.sum()
    total = int(observed.sum())
    if total == 0:
        return 1.0, "none"
    if len(observed) == 2 and total < EXACT_TEST_MAX_USERS:
        return exact_binomial_p_value(int(observed[0]), total, float(shares[0])), "exact binomial"
    expected = total * shares
    statistic = float(((observed - expected) ** 2 / expected).sum())
    return float(stats.chi2.sf(statistic, len(observed) - 1)), "chi-square"


def exact_binomial_p_value(k: int, n: int, p: float) -> float:
    """Return the two-sided exact binomial p-value of ``k`` successes in ``n`` trials.

    The sum of the probabilities of every outcome no more likely than ``k``
    (the "minimum likelihood" method of ``scipy.stats.binomtest``, with its
    relative tolerance 1e-7 for ties).
    """
    from scipy import stats

    pmf = np.asarray(stats.binom.pmf(np.arange(n + 1), n, p), dtype=np.float64)
    observed = pmf[k] * (1 + 1e-7)
    return float(min(1.0, pmf[pmf <= observed].sum()))


def _format_split(split: Sequence[float]) -> str:
    total = sum(split)
    return "/".join(f"{100 * s / total:g}" for s in split)


def check_sample_ratio(
    n_control: int,
    n_treatment: int,
    split: Sequence[float] = (0.5, 0.5),
    threshold: float = SRM_THRESHOLD,
) -> HealthCheck:
    """Test the user counts against the intended (control, treatment) split."""
    p, method = srm_p_value((n_control, n_treatment), split)
    counts = f"{n_control:,} control and {n_treatment:,} treatment users"
    intended = f"the intended {_format_split(split)} split"
    if p < threshold:
        detail = (
            f"Sample-ratio mismatch: {counts} against {intended} ({method} p = {p:.2g} "
            f"< {threshold:g}); the assignment or the logging is broken, so the effects "
            "cannot be trusted."
        )
        return HealthCheck("sample_ratio", False, detail, p)
    detail = f"{counts} match {intended} ({method} p = {p:.2g} >= {threshold:g})."
    return HealthCheck("sample_ratio", True, detail, p)


def check_min_users(counts: dict[str, int], minimum: int = DEFAULT_MIN_USERS) -> HealthCheck:
    """Check that every arm has at least ``minimum`` users (an empty arm fails)."""
    small = {arm: n for arm, n in counts.items() if n < minimum}
    if not small:
        listed = ", ".join(f"{arm} {n:,}" for arm, n in counts.items())
        return HealthCheck("min_users", True, f"Every arm has at least {minimum} users ({listed}).")
    parts = [
        f"arm '{arm}' has no users" if n == 0 else f"arm '{arm}' has only {n:,} users"
        for arm, n in small.items()
    ]
    joined = "; ".join(parts)
    detail = (
        f"{joined[0].upper()}{joined[1:]}, fewer than the {minimum} needed for the normal "
        "approximation; run the experiment longer or on more traffic."
    )
    return HealthCheck("min_users", False, detail)


def check_one_arm_per_user(shared_users: Sequence[object]) -> HealthCheck:
    """Check that no user of a split experiment was assigned to both arms."""
    if not shared_users:
        return HealthCheck("one_arm_per_user", True, "Every user is in exactly one arm.")
    examples = ", ".join(str(u) for u in list(shared_users)[:3])
    detail = (
        f"{len(shared_users):,} users appear in both arms (e.g. {examples}); a split "
        "experiment assigns each user to one arm, so the assignment is broken "
        "(or the design is paired: use design='paired')."
    )
    return HealthCheck("one_arm_per_user", False, detail)


def check_metric(
    metric: str,
    values: dict[str, float],
    per_user_variances: dict[str, float],
    den_sums: dict[str, float],
) -> HealthCheck:
    """Check that each arm's ratio is defined and varies across users."""
    problems = []
    for arm, value in values.items():
        if not den_sums[arm] > 0:
            problems.append(f"arm '{arm}' has a zero denominator sum, so the ratio is undefined")
            continue
        sd = math.sqrt(per_user_variances[arm]) if per_user_variances[arm] >= 0 else math.nan
        if not sd > _ZERO_VARIANCE_RTOL * abs(value):
            problems.append(
                f"arm '{arm}' has zero variance (every user has the same value), "
                "so its test is undefined"
            )
    if problems:
        return HealthCheck(f"metric:{metric}", False, f"{metric}: {'; '.join(problems)}.")
    detail = f"{metric}: both arms have a defined value and non-zero variance."
    return HealthCheck(f"metric:{metric}", True, detail)
