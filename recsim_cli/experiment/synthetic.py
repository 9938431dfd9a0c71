"""Simulate clustered per-user experiment data, vectorised over many experiments.

The statistics are validated on data shaped like a video recommender's logs,
not on textbook normals: users differ wildly in activity, click propensity and
watch time, and every metric is a ratio of per-user sums. Per user:

* activity ``lambda ~ Gamma(0.6, scale 7)`` (mean 4.2, heavy right tail);
  post-period sessions ``S = 1 + Poisson(lambda)``; pre-period sessions
  ``Poisson(lambda)`` (0 means the user has no pre-period data), and 20% of
  users are new, with no pre-period at all;
* impressions ``Poisson(S mu)``, ``mu ~ Gamma(2, scale 5)`` per session;
  clicks ``Binomial(impressions, p)`` with ``p ~ Beta(0.4, 8)`` (mean 4.8%,
  from almost never to often);
* watch time, a sum of ``S`` Gamma(0.7, ``theta``) session times with
  ``theta ~ LogNormal(0, 1.2)``: ``Gamma(0.7 S, theta)``, heavy-tailed;
* videos watched ``Poisson(S nu)``, ``nu ~ Gamma(1.5, scale 2)``.

Metrics: ``ctr`` = clicks / impressions, ``watch_time`` = watch time /
sessions, ``session_depth`` = videos / sessions. A treatment multiplies ``p``,
``theta`` or ``nu`` by ``1 + lift``. In the ``split`` design each arm draws its
own users; in the ``paired`` design both arms observe the same users (same
latent traits, independent outcomes), as two models replayed on one log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl

from recsim_cli.errors import UnknownNameError
from recsim_cli.experiment.comparison import Design, Sample
from recsim_cli.experiment.frame import frame_from_arrays
from recsim_cli.experiment.ratio import FloatArray

METRIC_NAMES = ("ctr", "watch_time", "session_depth")
NEW_USER_SHARE = 0.2


@dataclass(frozen=True)
class Population:
    """Latent per-user traits, shape (..., n)."""

    activity: FloatArray
    impressions_rate: FloatArray
    click_prob: FloatArray
    watch_scale: FloatArray
    depth_rate: FloatArray
    has_history: np.ndarray


def draw_population(rng: np.random.Generator, shape: tuple[int, ...]) -> Population:
    """Draw the latent traits of users arranged in ``shape`` (experiments x users)."""
    return Population(
        activity=rng.gamma(0.6, 7.0, shape),
        impressions_rate=rng.gamma(2.0, 5.0, shape),
        click_prob=rng.beta(0.4, 8.0, shape),
        watch_scale=rng.lognormal(0.0, 1.2, shape),
        depth_rate=rng.gamma(1.5, 2.0, shape),
        has_history=rng.random(shape) >= NEW_USER_SHARE,
    )


def draw_period(
    rng: np.random.Generator,
    population: Population,
    lift: Mapping[str, float] | None = None,
    *,
    pre_period: bool = False,
) -> dict[str, tuple[FloatArray, FloatArray]]:
    """Draw one period's per-user (numerator, denominator) sums for every metric.

    In the pre-period a user without history (new, or 0 sessions) gets NaN.
    """
    lift = dict(lift or {})
    for name in lift:
        if name not in METRIC_NAMES:
            raise UnknownNameError("metric", name, METRIC_NAMES)
    extra = np.zeros_like(population.activity) if pre_period else 1.0
    sessions = extra + rng.poisson(population.activity)
    impressions = rng.poisson(sessions * population.impressions_rate)
    click_prob = np.minimum(population.click_prob * (1 + lift.get("ctr", 0.0)), 1.0)
    clicks = rng.binomial(impressions, click_prob)
    scale = population.watch_scale * (1 + lift.get("watch_time", 0.0))
    # Gamma(0) is 0: a user without sessions watched nothing.
    watch = np.where(sessions > 0, rng.gamma(np.maximum(0.7 * sessions, 1e-12), scale), 0.0)
    videos = rng.poisson(sessions * population.depth_rate * (1 + lift.get("session_depth", 0.0)))
    out = {
        "ctr": (clicks.astype(np.float64), impressions.astype(np.float64)),
        "watch_time": (watch, sessions.astype(np.float64)),
        "session_depth": (videos.astype(np.float64), sessions.astype(np.float64)),
    }
    if pre_period:
        missing = ~population.has_history | (sessions == 0)
        out = {
            k: (np.where(missing, np.nan, a), np.where(missing, np.nan, b))
            for k, (a, b) in out.items()
        }
    return out


def simulate_experiments(
    rng: np.random.Generator,
    n_experiments: int,
    n_users: int,
    *,
    design: Design = "split",
    lift: Mapping[str, float] | None = None,
    pre_period: bool = False,
) -> dict[str, tuple[Sample, Sample]]:
    """Simulate ``n_experiments`` experiments of ``n_users`` users per arm.

    Returns, per metric, the (control, treatment) samples with shape
    ``(n_experiments, n_users)``, including pre-period arrays if asked.
    """
    shape = (n_experiments, n_users)
    pop_c = draw_population(rng, shape)
    pop_t = pop_c if design == "paired" else draw_population(rng, shape)
    post_c = draw_period(rng, pop_c)
    post_t = draw_period(rng, pop_t, lift)
    pre_c = draw_period(rng, pop_c, pre_period=True) if pre_period else None
    pre_t = (
        (pre_c if design == "paired" else draw_period(rng, pop_t, pre_period=True))
        if pre_period
        else None
    )
    samples = {}
    for metric in METRIC_NAMES:
        if pre_c is not None and pre_t is not None:
            c = Sample(*post_c[metric], *pre_c[metric])
            t = Sample(*post_t[metric], *pre_t[metric])
        else:
            c, t = Sample(*post_c[metric]), Sample(*post_t[metric])
        samples[metric] = (c, t)
    return samples


def experiment_frame(
    rng: np.random.Generator,
    users: int,
    *,
    design: Design = "split",
    lift: Mapping[str, float] | None = None,
    pre_period: bool = False,
    control: str = "control",
    treatment: str = "treatment",
) -> pl.DataFrame:
    """Simulate one experiment as a sufficient-statistics frame (see ``frame.py``)."""
    samples = simulate_experiments(rng, 1, users, design=design, lift=lift, pre_period=pre_period)
    arms: dict[str, dict[str, FloatArray]] = {control: {}, treatment: {}}
    for metric, pair in samples.items():
        for arm, sample in zip((control, treatment), pair, strict=True):
            arms[arm][f"{metric}_num"] = sample.num[0]
            arms[arm][f"{metric}_den"] = sample.den[0]
            if sample.pre_num is not None and sample.pre_den is not None:
                arms[arm][f"{metric}_pre_num"] = sample.pre_num[0]
                arms[arm][f"{metric}_pre_den"] = sample.pre_den[0]
    return frame_from_arrays(arms, paired=design == "paired")
